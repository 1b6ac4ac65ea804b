//! Our own LwM2M client (`lwm2m-client`'s engine and tokio driver) run on a
//! thread of its own, for tests that need a real device on 127.0.0.1.
//!
//! The client engine holds its objects as `Box<dyn Object>` without `Send`,
//! so it cannot move between the threads of a multi-threaded runtime: it
//! gets a thread with a current-thread runtime, and the test talks to it
//! through channels and shared atomics.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use lwm2m_client::objects::{
    ConnectivityMonitoring, Device, DeviceInfo, Security, Server, ServerConfig,
};
use lwm2m_client::{Client, ClientConfig, ClientEvent};
use lwm2m_core::model::Version;
use tokio::sync::{mpsc, oneshot};

use crate::OsRng;

/// How [`OurClient::start`] sets the client up.
#[derive(Debug, Clone)]
pub struct OurClientOptions {
    /// Endpoint client name.
    pub endpoint: String,
    /// The LwM2M server (plain CoAP).
    pub server: SocketAddr,
    /// Registration lifetime, seconds (also the Server object's lifetime).
    pub lifetime: u32,
    /// LwM2M version announced.
    pub version: Version,
    /// Device Manufacturer (/3/0/0).
    pub manufacturer: String,
    /// Re-read observed resources at this period
    /// ([`ClientConfig::poll_observed`]), so a change of [`OurClient::clock`]
    /// is noticed without the application calling `changed`.
    pub poll_observed: Option<Duration>,
    /// Queue mode with this awake time ([`ClientConfig::queue_mode`]).
    pub queue_mode: Option<Duration>,
}

impl OurClientOptions {
    /// LwM2M 1.1, lifetime 60 s, manufacturer `lwm2m-rs`, observed values
    /// polled every 100 ms, no queue mode.
    pub fn new(endpoint: &str, server: SocketAddr) -> OurClientOptions {
        OurClientOptions {
            endpoint: endpoint.to_string(),
            server,
            lifetime: 60,
            version: Version::new(1, 1),
            manufacturer: "lwm2m-rs".to_string(),
            poll_observed: Some(Duration::from_millis(100)),
            queue_mode: None,
        }
    }
}

/// A running client with Security (0), Server (1), Device (3) and
/// Connectivity Monitoring (4), on a socket bound to `127.0.0.1:0`.
///
/// Dropping it asks the client to shut down (De-register) and leaves the
/// thread to finish by itself (bounded by the driver's De-register wait);
/// [`OurClient::shutdown`] waits for it.
pub struct OurClient {
    local_addr: SocketAddr,
    events: mpsc::UnboundedReceiver<ClientEvent>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<io::Result<()>>>,
    /// How often the Device object's Reboot (/3/0/4) hook ran.
    pub reboots: Arc<AtomicUsize>,
    /// What the Device object's Current Time (/3/0/13) reads (before any
    /// offset a server Write adds); set it to make the value change.
    pub clock: Arc<AtomicI64>,
}

impl std::fmt::Debug for OurClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OurClient")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl OurClient {
    /// Binds the socket and starts the client (it registers at once).
    pub fn start(options: OurClientOptions) -> io::Result<OurClient> {
        let reboots = Arc::new(AtomicUsize::new(0));
        let clock = Arc::new(AtomicI64::new(1_700_000_000));
        let (ev_tx, events) = mpsc::unbounded_channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (r, c) = (reboots.clone(), clock.clone());
        let thread = thread::Builder::new()
            .name(format!("client-{}", options.endpoint))
            .spawn(move || -> io::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let socket = match tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await {
                        Ok(s) => s,
                        Err(e) => {
                            let _ = addr_tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                            return Err(e);
                        }
                    };
                    let _ = addr_tx.send(socket.local_addr());
                    let mut client = build_client(&options, r, c);
                    let shutdown = async {
                        // A dropped sender (the guard went away) also stops it.
                        let _ = stop_rx.await;
                    };
                    lwm2m_client::tokio_driver::run(&mut client, &socket, shutdown, |e| {
                        eprintln!("[our client {}] {e:?}", options.endpoint);
                        let _ = ev_tx.send(e.clone());
                    })
                    .await
                })
            })?;
        let local_addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|e| io::Error::other(format!("client thread did not start: {e}")))??;
        Ok(OurClient {
            local_addr,
            events,
            stop: Some(stop),
            thread: Some(thread),
            reboots,
            clock,
        })
    }

    /// The client's UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next client event, `None` after `timeout` (or if the client
    /// thread ended).
    pub async fn next_event(&mut self, timeout: Duration) -> Option<ClientEvent> {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Waits for an event matching `pred`, skipping others; panics with the
    /// events seen if none comes within `timeout`.
    pub async fn expect_event(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&ClientEvent) -> bool,
    ) -> ClientEvent {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Some(e) if pred(&e) => return e,
                Some(e) => seen.push(e),
                None => panic!("our client: no {what} within {timeout:?}; events seen: {seen:?}"),
            }
        }
    }

    /// Blocking form of [`OurClient::expect_event`] for tests without a runtime.
    pub fn expect_event_blocking(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&ClientEvent) -> bool,
    ) -> ClientEvent {
        let deadline = std::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            match self.events.try_recv() {
                Ok(e) if pred(&e) => return e,
                Ok(e) => seen.push(e),
                Err(mpsc::error::TryRecvError::Empty) if std::time::Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(10));
                }
                Err(_) => {
                    panic!("our client: no {what} within {timeout:?}; events seen: {seen:?}")
                }
            }
        }
    }

    /// Asks the client to De-register and waits (up to `timeout`) for its
    /// thread to end. Returns the events it reported that were not read yet.
    pub fn shutdown(mut self, timeout: Duration) -> io::Result<Vec<ClientEvent>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let deadline = std::time::Instant::now() + timeout;
        if let Some(t) = self.thread.take() {
            while !t.is_finished() {
                if std::time::Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("client did not stop within {timeout:?}"),
                    ));
                }
                thread::sleep(Duration::from_millis(10));
            }
            t.join()
                .map_err(|_| io::Error::other("client thread panicked"))??;
        }
        let mut rest = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            rest.push(e);
        }
        Ok(rest)
    }
}

impl Drop for OurClient {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn build_client(
    o: &OurClientOptions,
    reboots: Arc<AtomicUsize>,
    clock: Arc<AtomicI64>,
) -> Client<SocketAddr, OsRng> {
    let mut config = ClientConfig::new(&o.endpoint);
    config.lifetime = o.lifetime;
    config.lwm2m_version = o.version;
    config.poll_observed = o.poll_observed;
    config.queue_mode = o.queue_mode;
    let uri = format!("coap://{}", o.server);
    let mut client = Client::new(config, o.server, OsRng);
    client.add_object(Box::new(Security::new(&uri, 1)));
    client.add_object(Box::new(Server::new(ServerConfig::new(o.lifetime))));
    let info = DeviceInfo {
        manufacturer: o.manufacturer.clone(),
        model_number: "interop".into(),
        serial_number: o.endpoint.clone(),
        firmware_version: "0.1.0".into(),
        supported_binding: "U".into(),
    };
    let device = Device::new(info)
        .on_reboot(move || {
            reboots.fetch_add(1, Ordering::SeqCst);
        })
        .with_clock(move || Some(clock.load(Ordering::SeqCst)));
    client.add_object(Box::new(device));
    client.add_object(Box::new(ConnectivityMonitoring::ethernet(vec![
        "127.0.0.1".into(),
    ])));
    client
}
