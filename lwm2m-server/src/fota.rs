//! Firmware updates of devices over the async API ([`ServerHandle`]):
//! where devices pull packages from ([`FirmwareUris`]) and the update of
//! one device ([`update_device`]), which the admin API's jobs run.
//!
//! The update of one device (Firmware Update object 5, instance 0):
//!
//! 1. Deliver: push writes the package to Package (/5/0/0) as opaque
//!    (the CoAP endpoint sends it block-wise, Block1); a pull writes
//!    Package URI (/5/0/1) with `{base}/fw/{id}` ([`FirmwareUris`]).
//! 2. Wait for State (/5/0/3) 2, Downloaded. State and Update Result
//!    (/5/0/5) are observed; each notification, each Register or Update of
//!    the device and, without notifications, every poll interval leads to
//!    a Read of both (reads are the truth: a notification may be lost, and
//!    a device may not support observing).
//! 3. Execute Update (/5/0/2).
//! 4. Wait for Update Result 1 (success). A device that reboots into the
//!    new image re-registers: its Register (or Update) triggers the next
//!    Read, and reads that fail while it is away are waited through.
//!
//! Any Update Result from 2 to 10 is a failure, kept with its meaning
//! ([`UpdateError::Device`]); so are a refused Write or Execute, a failed
//! request and a step that does not finish in time. Update Result 11
//! (deferred by the device) keeps the wait going until its timeout.
//!
//! Limits: a push holds the package in memory for the transfer (the CoAP
//! endpoint sends a request body from memory, block by block; pulls are
//! served from the store a block at a time). For a sleeping queue-mode
//! device the requests wait in the server's queue until it wakes; reads
//! given up after a poll interval stay queued (up to the queue's bound).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use lwm2m_core::coap::Code;
use lwm2m_core::format::ContentFormat;
use lwm2m_core::model::{Node, Path, Resource, ResourceValue, Value};
use tokio::sync::broadcast;

use crate::driver::ServerHandle;
use crate::engine::{Content, DmError, ServerEvent, WriteMode};
use crate::firmware::{FirmwarePackage, FirmwareStore};

const PACKAGE: Path = Path::Resource(5, 0, 0);
const PACKAGE_URI: Path = Path::Resource(5, 0, 1);
const UPDATE: Path = Path::Resource(5, 0, 2);
const STATE: Path = Path::Resource(5, 0, 3);
const UPDATE_RESULT: Path = Path::Resource(5, 0, 5);
/// State 2: Downloaded.
const DOWNLOADED: i64 = 2;
/// Update Result 1: firmware updated successfully.
const SUCCESS: i64 = 1;

/// How a package reaches the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// Write of Package (/5/0/0), block-wise (Block1) by the server.
    Push,
    /// Write of Package URI (/5/0/1) with a `coap://` URI (`coaps://` for a
    /// device registered over DTLS): the device pulls `GET /fw/{id}`.
    Coap,
    /// Write of Package URI with an `http://` URI to the admin HTTP server.
    Http,
}

impl Delivery {
    /// The name used in the admin API (`push`, `coap`, `http`).
    pub fn name(self) -> &'static str {
        match self {
            Delivery::Push => "push",
            Delivery::Coap => "coap",
            Delivery::Http => "http",
        }
    }

    /// The delivery named `name` in the admin API.
    pub fn parse(name: &str) -> Option<Delivery> {
        match name {
            "push" => Some(Delivery::Push),
            "coap" => Some(Delivery::Coap),
            "http" => Some(Delivery::Http),
            _ => None,
        }
    }
}

/// Base URIs written into Package URI (`{base}/fw/{id}`), and the
/// addresses the server is bound to, to make a base when none is given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirmwareUris {
    /// `coap://HOST:PORT` (flag `--firmware-coap-uri`).
    pub coap: Option<String>,
    /// `coaps://HOST:PORT` (flag `--firmware-coaps-uri`).
    pub coaps: Option<String>,
    /// `http://HOST:PORT` (flag `--firmware-http-uri`).
    pub http: Option<String>,
    /// The CoAP socket's address.
    pub coap_addr: Option<SocketAddr>,
    /// The CoAPS socket's address.
    pub coaps_addr: Option<SocketAddr>,
    /// The admin HTTP server's address.
    pub http_addr: Option<SocketAddr>,
}

impl FirmwareUris {
    /// The URI device `device` (its registration address) pulls package
    /// `id` from with `delivery` (`secure`: it registered over DTLS, so
    /// CoAP pulls use `coaps://`); `None` for push, or when the server has
    /// no such socket. Without a configured base the bound address is used;
    /// an unspecified one (0.0.0.0, ::) is replaced by the local address
    /// the system routes towards the device, so the device is given an
    /// address it can reach.
    pub fn package_uri(
        &self,
        delivery: Delivery,
        secure: bool,
        device: SocketAddr,
        id: &str,
    ) -> Option<String> {
        let (configured, bound, scheme) = match (delivery, secure) {
            (Delivery::Push, _) => return None,
            (Delivery::Coap, false) => (&self.coap, self.coap_addr, "coap"),
            (Delivery::Coap, true) => (&self.coaps, self.coaps_addr, "coaps"),
            (Delivery::Http, _) => (&self.http, self.http_addr, "http"),
        };
        let base = match configured {
            Some(b) => b.trim_end_matches('/').to_string(),
            None => {
                let mut addr = bound?;
                if addr.ip().is_unspecified() {
                    addr.set_ip(local_ip_towards(device).unwrap_or(addr.ip()));
                }
                format!("{scheme}://{addr}")
            }
        };
        Some(format!("{base}/fw/{id}"))
    }
}

/// Where an update is (the admin API's per-device status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Not started.
    Pending,
    /// The package is being written or its URI was written; the device
    /// downloads.
    Delivering,
    /// The device has the package (State 2).
    Downloaded,
    /// Update executed; waiting for Update Result 1.
    Updating,
    /// Update Result 1.
    Succeeded,
    /// Failed (see [`UpdateError`]).
    Failed,
}

impl Phase {
    /// The phase's name in the admin API.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Delivering => "delivering",
            Phase::Downloaded => "downloaded",
            Phase::Updating => "updating",
            Phase::Succeeded => "succeeded",
            Phase::Failed => "failed",
        }
    }

    /// The phase named `name`.
    pub fn parse(name: &str) -> Option<Phase> {
        [
            Phase::Pending,
            Phase::Delivering,
            Phase::Downloaded,
            Phase::Updating,
            Phase::Succeeded,
            Phase::Failed,
        ]
        .into_iter()
        .find(|p| p.name() == name)
    }

    /// Succeeded or failed.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// The meaning of Update Result `n` (TS Core, object 5).
pub fn update_result_meaning(n: i64) -> &'static str {
    match n {
        0 => "initial value",
        1 => "firmware updated successfully",
        2 => "not enough flash memory for the new package",
        3 => "out of RAM during download",
        4 => "connection lost during download",
        5 => "integrity check failure",
        6 => "unsupported package type",
        7 => "invalid URI",
        8 => "firmware update failed",
        9 => "unsupported protocol",
        10 => "firmware update cancelled",
        11 => "firmware update deferred",
        _ => "unknown update result",
    }
}

/// Why the update of a device failed.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateError {
    /// The server has no socket (or base URI) for this pull delivery.
    NoUri(Delivery),
    /// The package could not be read from the store (or is gone).
    Package(String),
    /// A request to the device failed.
    Request {
        /// What the request was for ("write Package", ...).
        step: &'static str,
        /// Why it failed.
        error: DmError,
    },
    /// The device answered a request with an error code.
    Refused {
        /// What the request was for.
        step: &'static str,
        /// The device's answer.
        code: Code,
    },
    /// The device reported a failure Update Result (2 to 10).
    Device {
        /// While waiting for what ("download", "update").
        step: &'static str,
        /// The Update Result.
        result: i64,
    },
    /// The task updating the device failed (it panicked).
    Task(String),
    /// A step did not finish in time.
    Timeout {
        /// The step.
        step: &'static str,
        /// The last State read, if any.
        state: Option<i64>,
        /// The last Update Result read, if any.
        result: Option<i64>,
    },
}

impl std::fmt::Display for UpdateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpdateError::NoUri(d) => write!(
                f,
                "the server has no {} address for devices to pull from",
                d.name()
            ),
            UpdateError::Package(e) => write!(f, "firmware package: {e}"),
            UpdateError::Task(e) => write!(f, "the update task failed: {e}"),
            UpdateError::Request { step, error } => write!(f, "{step}: {error}"),
            UpdateError::Refused { step, code } => {
                write!(f, "{step}: the device answered {code}, expected success")
            }
            UpdateError::Device { step, result } => write!(
                f,
                "{step}: device reported Update Result {result} ({})",
                update_result_meaning(*result)
            ),
            UpdateError::Timeout {
                step,
                state,
                result,
            } => {
                let show = |v: &Option<i64>| v.map_or("unknown".to_string(), |v| v.to_string());
                write!(
                    f,
                    "{step}: timed out (last State {}, Update Result {})",
                    show(state),
                    show(result)
                )
            }
        }
    }
}

impl std::error::Error for UpdateError {}

/// What [`update_device`] does.
#[derive(Debug, Clone)]
pub struct UpdatePlan {
    /// The device.
    pub endpoint: String,
    /// The package.
    pub package: FirmwarePackage,
    /// How it reaches the device.
    pub delivery: Delivery,
    /// Longest wait for Downloaded after the delivery started.
    pub download_timeout: Duration,
    /// Longest wait for Update Result 1 after Execute Update.
    pub update_timeout: Duration,
    /// Reads of State and Update Result at least this often while waiting.
    pub poll_interval: Duration,
}

impl UpdatePlan {
    /// A plan with 10 min to download, 10 min to update, reads every 5 s.
    pub fn new(endpoint: &str, package: FirmwarePackage, delivery: Delivery) -> UpdatePlan {
        UpdatePlan {
            endpoint: endpoint.to_string(),
            package,
            delivery,
            download_timeout: Duration::from_secs(600),
            update_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(5),
        }
    }
}

/// Updates the firmware of one device (see the module doc); `progress` is
/// told each phase as it begins (not [`Phase::Failed`]: the error is the
/// result).
pub async fn update_device(
    server: &ServerHandle,
    store: &dyn FirmwareStore,
    uris: &FirmwareUris,
    plan: &UpdatePlan,
    mut progress: impl FnMut(Phase),
) -> Result<(), UpdateError> {
    let ep = plan.endpoint.as_str();
    // Subscribed before the first request, so no event is missed.
    let mut events = server.events();
    let registration = server.registration(ep).await.ok_or(UpdateError::Request {
        step: "find the device",
        error: DmError::UnknownEndpoint,
    })?;
    let mut observations = Vec::new();
    for path in [STATE, UPDATE_RESULT] {
        // Best effort: the reads below do not depend on it.
        if let Ok((id, r)) = server.observe(ep, path, None).await {
            if r.code.is_success() {
                observations.push(id);
            }
        }
    }
    let outcome = run_update(
        server,
        store,
        uris,
        plan,
        &registration,
        &mut events,
        &observations,
        &mut progress,
    )
    .await;
    for id in observations {
        let _ = server.cancel_observe(id).await;
    }
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn run_update(
    server: &ServerHandle,
    store: &dyn FirmwareStore,
    uris: &FirmwareUris,
    plan: &UpdatePlan,
    registration: &crate::Registration<SocketAddr>,
    events: &mut broadcast::Receiver<ServerEvent<SocketAddr>>,
    observations: &[crate::DmRequestId],
    progress: &mut impl FnMut(Phase),
) -> Result<(), UpdateError> {
    let ep = plan.endpoint.as_str();
    let package = &plan.package;
    progress(Phase::Delivering);
    let (step, written) = match plan.delivery {
        Delivery::Push => {
            let size = usize::try_from(package.size).unwrap_or(usize::MAX);
            let bytes = store
                .read_range(&package.id, 0, size)
                .map_err(|e| UpdateError::Package(e.to_string()))?
                .ok_or_else(|| UpdateError::Package(format!("{:?} is gone", package.id)))?;
            let node = Node::Resource(Resource::single(0, Value::Opaque(bytes)));
            let step = "write Package (/5/0/0)";
            let r = server
                .write(ep, PACKAGE, WriteMode::Replace, ContentFormat::OPAQUE, node)
                .await;
            (step, r)
        }
        Delivery::Coap | Delivery::Http => {
            let uri = uris
                .package_uri(
                    plan.delivery,
                    registration.security.is_some(),
                    registration.address,
                    &package.id,
                )
                .ok_or(UpdateError::NoUri(plan.delivery))?;
            let node = Node::Resource(Resource::single(1, Value::String(uri)));
            let step = "write Package URI (/5/0/1)";
            let r = server
                .write(
                    ep,
                    PACKAGE_URI,
                    WriteMode::Replace,
                    ContentFormat::TEXT,
                    node,
                )
                .await;
            (step, r)
        }
    };
    check(step, written)?;
    wait_for(
        server,
        events,
        plan,
        observations,
        "download",
        plan.download_timeout,
        |state, _| state == Some(DOWNLOADED),
    )
    .await?;
    progress(Phase::Downloaded);
    let step = "execute Update (/5/0/2)";
    check(step, server.execute(ep, UPDATE, None).await)?;
    progress(Phase::Updating);
    wait_for(
        server,
        events,
        plan,
        observations,
        "update",
        plan.update_timeout,
        |_, result| result == Some(SUCCESS),
    )
    .await?;
    progress(Phase::Succeeded);
    Ok(())
}

fn check(step: &'static str, r: Result<crate::DmResponse, DmError>) -> Result<(), UpdateError> {
    match r {
        Ok(r) if r.code.is_success() => Ok(()),
        Ok(r) => Err(UpdateError::Refused { step, code: r.code }),
        Err(error) => Err(UpdateError::Request { step, error }),
    }
}

/// An integer resource's value in a Read answer or notification.
fn integer(r: Result<crate::DmResponse, DmError>) -> Option<i64> {
    match r.ok()?.content {
        Content::Node(Node::Resource(Resource {
            value: ResourceValue::Single(v),
            ..
        })) => match v {
            Value::Integer(n) => Some(n),
            Value::UnsignedInteger(n) => i64::try_from(n).ok(),
            _ => None,
        },
        _ => None,
    }
}

/// Reads State and Update Result until `done` says so (Ok), a failure
/// result comes (Err), or `timeout` passes.
async fn wait_for(
    server: &ServerHandle,
    events: &mut broadcast::Receiver<ServerEvent<SocketAddr>>,
    plan: &UpdatePlan,
    observations: &[crate::DmRequestId],
    step: &'static str,
    timeout: Duration,
    done: impl Fn(Option<i64>, Option<i64>) -> bool,
) -> Result<(), UpdateError> {
    let ep = plan.endpoint.as_str();
    let deadline = tokio::time::Instant::now() + timeout;
    let (mut state, mut result) = (None, None);
    // A read of a device that is away (rebooting) would wait for the
    // whole CoAP exchange timeout; it is given up after a poll interval
    // so that the read after its re-registration goes out.
    let read = |path| async move {
        tokio::time::timeout(plan.poll_interval, server.read(ep, path))
            .await
            .ok()
            .and_then(integer)
    };
    loop {
        if let Some(s) = read(STATE).await {
            state = Some(s);
        }
        if let Some(r) = read(UPDATE_RESULT).await {
            result = Some(r);
        }
        if done(state, result) {
            return Ok(());
        }
        if let Some(r) = result.filter(|r| (2..=10).contains(r)) {
            return Err(UpdateError::Device { step, result: r });
        }
        // Until something happens on the device (or the poll interval).
        let wake = tokio::time::Instant::now() + plan.poll_interval;
        loop {
            let until = wake.min(deadline);
            let ev = match tokio::time::timeout_at(until, events.recv()).await {
                Err(_) => break,
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => break,
                Ok(Err(broadcast::error::RecvError::Closed)) => {
                    return Err(UpdateError::Request {
                        step,
                        error: DmError::ServerStopped,
                    })
                }
                Ok(Ok(ev)) => ev,
            };
            let ours = match &ev {
                ServerEvent::Notification { id, .. } => observations.contains(id),
                ServerEvent::Registered { registration, .. }
                | ServerEvent::Updated { registration } => registration.endpoint == ep,
                _ => false,
            };
            if ours {
                break;
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(UpdateError::Timeout {
                step,
                state,
                result,
            });
        }
    }
}

/// The local address the system would send from to reach `peer` (a UDP
/// "connect" sends nothing); `None` if there is no route.
fn local_ip_towards(peer: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = match peer {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let s = UdpSocket::bind(any).ok()?;
    s.connect(peer).ok()?;
    Some(s.local_addr().ok()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_uris() {
        let device: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let mut u = FirmwareUris {
            coap_addr: Some("0.0.0.0:5683".parse().unwrap()),
            http_addr: Some("127.0.0.1:8080".parse().unwrap()),
            ..FirmwareUris::default()
        };
        assert_eq!(
            u.package_uri(Delivery::Coap, false, device, "ab")
                .as_deref(),
            Some("coap://127.0.0.1:5683/fw/ab")
        );
        assert_eq!(
            u.package_uri(Delivery::Http, false, device, "ab")
                .as_deref(),
            Some("http://127.0.0.1:8080/fw/ab")
        );
        assert_eq!(u.package_uri(Delivery::Coap, true, device, "ab"), None);
        assert_eq!(u.package_uri(Delivery::Push, false, device, "ab"), None);
        u.coap = Some("coap://fw.example:5683/".into());
        assert_eq!(
            u.package_uri(Delivery::Coap, false, device, "ab")
                .as_deref(),
            Some("coap://fw.example:5683/fw/ab")
        );
        assert_eq!(Delivery::parse("http"), Some(Delivery::Http));
        assert_eq!(Delivery::parse("ftp"), None);
    }
}
