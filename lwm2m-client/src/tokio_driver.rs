//! A tokio driver: runs a [`Client`] over a UDP socket.
//!
//! The driver is the only part that owns I/O: it moves datagrams between the
//! socket and the engine, turns the engine's [`Client::poll_timeout`] into a
//! tokio sleep, and maps wall-clock time to the engine's
//! [`Instant`] (milliseconds since the driver
//! started). Events are logged with `tracing`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use lwm2m_core::rng::RandomSource;
use lwm2m_core::time::Instant;
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use crate::engine::{Client, ClientEvent, ServerEvent};

/// How long shutdown waits for the De-register answer before giving up.
pub const DEREGISTER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `coap://host[:port]` (port 5683 by default) to a socket address, the
/// first the resolver gives; for [`Client::set_resolver`]. Blocking DNS:
/// it runs once per bootstrap. Only plain CoAP: this slice has no DTLS.
pub fn resolve_coap_uri(uri: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    let rest = uri.strip_prefix("coap://")?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return None;
    }
    let has_port = match authority.rfind(']') {
        Some(bracket) => authority.get(bracket..).is_some_and(|t| t.contains(':')),
        None => authority.contains(':'),
    };
    let target = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:5683")
    };
    target.to_socket_addrs().ok()?.next()
}

/// The engine's clock: milliseconds since `start`.
fn engine_now(start: tokio::time::Instant) -> Instant {
    Instant::from_millis(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX))
}

/// Starts `client` (Register) and runs it on `socket` until `shutdown`
/// completes; then De-registers and returns once the server answered, the
/// request failed, or [`DEREGISTER_WAIT`] passed. `on_event` sees every
/// [`ClientEvent`] (after it was logged).
///
/// Send errors (an unreachable server, ICMP errors reported on the next
/// receive) are logged and left to the CoAP retransmissions; only errors on
/// a socket that cannot be used at all end the loop.
pub async fn run<R: RandomSource>(
    client: &mut Client<SocketAddr, R>,
    socket: &UdpSocket,
    shutdown: impl Future<Output = ()>,
    on_event: impl FnMut(&ClientEvent),
) -> io::Result<()> {
    run_loop(client, socket, shutdown, on_event, None).await
}

/// Like [`run`], and runs the downloads the Firmware object leaves to its
/// host (`http://`, `https://` Package URIs) with `fetcher`.
#[cfg(feature = "http")]
pub async fn run_with_fetcher<R: RandomSource>(
    client: &mut Client<SocketAddr, R>,
    socket: &UdpSocket,
    shutdown: impl Future<Output = ()>,
    on_event: impl FnMut(&ClientEvent),
    fetcher: &mut Fetcher<'_>,
) -> io::Result<()> {
    run_loop(client, socket, shutdown, on_event, Some(fetcher)).await
}

#[cfg(feature = "http")]
use crate::http_fetch::Fetcher;

/// Without the `http` feature there is never a fetcher.
#[cfg(not(feature = "http"))]
struct Fetcher<'a>(core::convert::Infallible, core::marker::PhantomData<&'a ()>);

#[cfg(not(feature = "http"))]
impl Fetcher<'_> {
    fn pump(&mut self) {}
    async fn next(&mut self) -> Option<(u32, core::convert::Infallible)> {
        match self.0 {}
    }
    fn deliver(&mut self, _id: u32, report: core::convert::Infallible, _now: Instant) {
        match report {}
    }
}

async fn run_loop<R: RandomSource>(
    client: &mut Client<SocketAddr, R>,
    socket: &UdpSocket,
    shutdown: impl Future<Output = ()>,
    mut on_event: impl FnMut(&ClientEvent),
    mut fetcher: Option<&mut Fetcher<'_>>,
) -> io::Result<()> {
    let start = tokio::time::Instant::now();
    let mut buf = vec![0u8; 65_535];
    client.start(engine_now(start));
    tokio::pin!(shutdown);
    let mut shutting_down: Option<tokio::time::Instant> = None;
    loop {
        if let Some(f) = fetcher.as_mut() {
            f.pump();
        }
        while let Some(t) = client.poll_transmit() {
            if let Err(e) = socket.send_to(&t.bytes, t.peer).await {
                warn!(peer = %t.peer, error = %e, "send failed");
            }
        }
        while let Some(ServerEvent { ssid, event }) = client.poll_server_event() {
            match ssid {
                // Which server the event concerns, in the log line.
                Some(ssid) => {
                    let _server = tracing::info_span!("server", ssid).entered();
                    log_event(&event);
                }
                None => log_event(&event),
            }
            on_event(&event);
            if shutting_down.is_some() && event == ClientEvent::Deregistered {
                return Ok(());
            }
        }
        if shutting_down.is_some_and(|t| tokio::time::Instant::now() >= t) {
            warn!("no answer to De-register, exiting anyway");
            return Ok(());
        }
        let wake = client
            .poll_timeout()
            .map(|t| start + std::time::Duration::from_millis(t.as_millis()));
        let wake = match (wake, shutting_down) {
            (Some(w), Some(s)) => Some(w.min(s)),
            (w, s) => w.or(s),
        };
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let report = async {
            match fetcher.as_mut() {
                Some(f) => f.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some((id, report)) = report => {
                let now = engine_now(start);
                if let Some(f) = fetcher.as_mut() {
                    f.deliver(id, report, now);
                }
                // Lets the engine notify what the download changed.
                client.handle_timeout(now);
            },
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, from)) => {
                    let bytes = buf.get(..n).unwrap_or_default();
                    debug!(%from, len = n, "datagram");
                    client.handle_datagram(engine_now(start), from, bytes);
                }
                // ICMP port unreachable and friends: the server is not
                // there yet; retransmissions and retries handle it.
                Err(e) => warn!(error = %e, "receive failed"),
            },
            () = sleep => client.handle_timeout(engine_now(start)),
            () = &mut shutdown, if shutting_down.is_none() => {
                info!("shutting down: De-register");
                shutting_down = Some(tokio::time::Instant::now() + DEREGISTER_WAIT);
                client.deregister(engine_now(start));
            }
        }
    }
}

fn log_event(event: &ClientEvent) {
    match event {
        ClientEvent::Registered { location } => info!(%location, "registered"),
        ClientEvent::Updated => info!("registration updated"),
        ClientEvent::RegistrationFailed { code, retry_at } => match retry_at {
            Some(at) => warn!(
                code = ?code.map(|c| c.to_string()),
                retry_at_ms = at.as_millis(),
                "registration failed, will retry"
            ),
            None => warn!(code = ?code.map(|c| c.to_string()), "registration failed, giving up"),
        },
        ClientEvent::UpdateFailed { code } => {
            warn!(code = ?code.map(|c| c.to_string()), "update failed, registering again")
        }
        ClientEvent::Deregistered => info!("deregistered"),
        ClientEvent::Disabled { until } => {
            info!(
                until_ms = until.as_millis(),
                "server disabled, deregistered"
            )
        }
        ClientEvent::Bootstrapped => info!("bootstrap finished, registering"),
        ClientEvent::BootstrapOnRegistrationFailure { code } => warn!(
            code = ?code.map(|c| c.to_string()),
            "registration failed, bootstrapping"
        ),
        ClientEvent::BootstrapFailed { code, retry_at } => match retry_at {
            Some(at) => warn!(
                code = ?code.map(|c| c.to_string()),
                retry_at_ms = at.as_millis(),
                "bootstrap failed, will retry"
            ),
            None => warn!(code = ?code.map(|c| c.to_string()), "bootstrap failed, giving up"),
        },
        ClientEvent::Sleeping => info!("queue mode: sleeping until the next uplink"),
        ClientEvent::SendCompleted { id, code } => {
            info!(id = id.0, code = ?code.map(|c| c.to_string()), "send answered")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::resolve_coap_uri;

    #[test]
    fn coap_uris_resolve_with_the_default_port() {
        let r = |u| resolve_coap_uri(u).map(|a| a.to_string());
        assert_eq!(
            r("coap://127.0.0.1:5700").as_deref(),
            Some("127.0.0.1:5700")
        );
        assert_eq!(r("coap://127.0.0.1").as_deref(), Some("127.0.0.1:5683"));
        assert_eq!(r("coap://127.0.0.1/rd").as_deref(), Some("127.0.0.1:5683"));
        assert_eq!(r("coap://[::1]:9").as_deref(), Some("[::1]:9"));
        assert_eq!(r("coap://[::1]").as_deref(), Some("[::1]:5683"));
        assert_eq!(r("coaps://127.0.0.1"), None);
        assert_eq!(r("coap://"), None);
    }
}
