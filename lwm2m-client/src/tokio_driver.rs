//! A tokio driver: runs a [`Client`] over a UDP socket.
//!
//! The driver is the only part that owns I/O: it moves datagrams between the
//! socket and the engine, turns the engine's [`Client::poll_timeout`] into a
//! tokio sleep, and maps wall-clock time to the engine's
//! [`Instant`] (milliseconds since the driver
//! started). Events are logged with `tracing`.
//!
//! # DTLS (feature `dtls`)
//!
//! Traffic with a peer whose Security instance has a `coaps://` URI
//! ([`Client::peer_security`]) goes through a [`DtlsSession`] of its
//! own: created when the engine first sends to that peer (the CoAP
//! datagram waits for the handshake), kept across Updates, replaced when
//! the Security instance's credentials change. Datagrams from the peer
//! are decrypted before [`Client::handle_datagram`]; datagrams from a
//! secured peer without a session are dropped. A failed handshake
//! (an alert, a refused certificate, no answer within
//! [`DtlsConfig::handshake_timeout`]) is logged with its reason and
//! reported with [`Client::peer_unreachable`], so the registration retry
//! schedule runs at once; the next Register then starts a new handshake.
//! After a failed Update or Register (or Bootstrap-Request) the session
//! is dropped too: the server may have lost it, and the next request
//! starts afresh. Plain peers are unchanged. At exit established
//! sessions are closed (close_notify).
//!
//! # CoAP over TCP
//!
//! Traffic with a peer whose Security instance has a `coap+tcp://` URI
//! ([`Client::peer_is_tcp`]) goes over a TCP connection (RFC 8323) of its
//! own, opened when the engine first sends to that peer (the datagrams
//! wait for the connection) and carried by the core's
//! [`DatagramBridge`]: the engine's CON requests are acknowledged by the
//! bridge at once (nothing is retransmitted over a reliable stream),
//! requests and Observe notifications go as frames. A failed connect, a
//! connection the server closed (or released) and a failed write are
//! logged and reported with [`Client::peer_unreachable`]: requests in
//! flight fail, and the registration retry schedule connects again and
//! registers anew. At exit, after the De-register, every connection gets
//! 7.04 Release and is closed.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;

use lwm2m_core::coap::tcp_bridge::DatagramBridge;
use lwm2m_core::coap::tcp_endpoint::TcpConfig;
use lwm2m_core::coap::Message;
use lwm2m_core::rng::{RandomSource, SplitMix64};
use lwm2m_core::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

#[cfg(feature = "dtls")]
use crate::dtls::{DtlsConfig, DtlsSession, DtlsState};
use crate::engine::{Client, ClientEvent, ServerEvent};
#[cfg(feature = "dtls")]
use crate::security::SecurityParams;

/// How long shutdown waits for the De-register answer before giving up.
pub const DEREGISTER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `coap://host[:port]` (port 5683 by default), `coap+tcp://host[:port]`
/// (5683) or `coaps://host[:port]` (5684) to a socket address, the first the resolver gives; for
/// [`Client::set_resolver`]. Anything after the authority (a path) is
/// ignored. Blocking DNS: it runs once per bootstrap (and per
/// [`Client::peer_security`] lookup of a peer that is no server's).
pub fn resolve_coap_uri(uri: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    let (rest, default_port) = if let Some(rest) = strip_scheme(uri, "coap://") {
        (rest, 5683)
    } else if let Some(rest) = strip_scheme(uri, "coap+tcp://") {
        (rest, 5683)
    } else {
        (strip_scheme(uri, "coaps://")?, 5684)
    };
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
        format!("{authority}:{default_port}")
    };
    target.to_socket_addrs().ok()?.next()
}

/// `uri` without its `scheme` prefix (compared case-insensitively).
fn strip_scheme<'a>(uri: &'a str, scheme: &str) -> Option<&'a str> {
    let head = uri.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme)
        .then(|| uri.get(scheme.len()..))
        .flatten()
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
    let mut sessions = Sessions::default();
    let mut links = TcpLinks::default();
    let mut out: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    client.start(engine_now(start));
    tokio::pin!(shutdown);
    let mut shutting_down: Option<tokio::time::Instant> = None;
    loop {
        if let Some(f) = fetcher.as_mut() {
            f.pump();
        }
        // A failed session fails the engine's requests, which queues new
        // events and datagrams: a few rounds until all is quiet.
        for _ in 0..4 {
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
                    sessions.close_all(&mut out);
                    send_all(socket, &mut out).await;
                    links.close_all().await;
                    return Ok(());
                }
                if matches!(
                    event,
                    ClientEvent::UpdateFailed { .. }
                        | ClientEvent::RegistrationFailed { .. }
                        | ClientEvent::BootstrapFailed { .. }
                ) {
                    if let Some(peer) = client.server_peer(ssid).copied() {
                        sessions.forget(peer, &mut out);
                    }
                }
            }
            let now = engine_now(start);
            while let Some(t) = client.poll_transmit() {
                if client.peer_is_tcp(&t.peer) {
                    links.outgoing(client, now, t.peer, &t.bytes);
                } else {
                    sessions.outgoing(client, now, t.peer, &t.bytes, &mut out);
                }
            }
            send_all(socket, &mut out).await;
            links.flush().await;
            let failed = sessions.reap(client, now, &mut out) | links.reap(client, now);
            send_all(socket, &mut out).await;
            if !failed {
                break;
            }
        }
        if shutting_down.is_some_and(|t| tokio::time::Instant::now() >= t) {
            warn!("no answer to De-register, exiting anyway");
            sessions.close_all(&mut out);
            send_all(socket, &mut out).await;
            links.close_all().await;
            return Ok(());
        }
        let wake = [client.poll_timeout(), sessions.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
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
            Some(event) = links.next_event() => {
                links.handle_event(client, engine_now(start), event);
            },
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, from)) => {
                    let bytes = buf.get(..n).unwrap_or_default();
                    debug!(%from, len = n, "datagram");
                    sessions.incoming(client, engine_now(start), from, bytes, &mut out);
                }
                // ICMP port unreachable and friends: the server is not
                // there yet; retransmissions and retries handle it.
                Err(e) => warn!(error = %e, "receive failed"),
            },
            () = sleep => {
                let now = engine_now(start);
                sessions.handle_timeout(now);
                client.handle_timeout(now);
            },
            () = &mut shutdown, if shutting_down.is_none() => {
                info!("shutting down: De-register");
                shutting_down = Some(tokio::time::Instant::now() + DEREGISTER_WAIT);
                client.deregister(engine_now(start));
            }
        }
    }
}

/// Sends (and empties) `out`; failures are logged and left to the
/// retransmissions.
async fn send_all(socket: &UdpSocket, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
    for (peer, bytes) in out.drain(..) {
        if let Err(e) = socket.send_to(&bytes, peer).await {
            warn!(%peer, error = %e, "send failed");
        }
    }
}

/// The DTLS sessions of the secured peers; see the
/// [module documentation](self#dtls-feature-dtls). Without the `dtls`
/// feature, traffic to a secured peer is refused (logged, and the engine
/// told with [`Client::peer_unreachable`]).
#[derive(Default)]
struct Sessions {
    #[cfg(feature = "dtls")]
    map: std::collections::HashMap<SocketAddr, (SecurityParams, DtlsSession)>,
    #[cfg(feature = "dtls")]
    config: DtlsConfig,
    /// Peers whose session could not even be created, to report.
    #[cfg(feature = "dtls")]
    refused: Vec<SocketAddr>,
}

/// The CoAP-over-TCP connections (RFC 8323) of the peers whose Security
/// instance has a `coap+tcp://` URI ([`Client::peer_is_tcp`]); see the
/// [module documentation](self#coap-over-tcp). Each goes through a
/// [`DatagramBridge`], so the engine keeps speaking datagrams.
struct TcpLinks {
    links: HashMap<SocketAddr, Link>,
    events_tx: mpsc::UnboundedSender<(SocketAddr, u64, LinkEvent)>,
    events_rx: mpsc::UnboundedReceiver<(SocketAddr, u64, LinkEvent)>,
    /// Tells a link's events from those of the one it replaced.
    next_gen: u64,
    /// Peers whose connect failed, to report to the engine.
    dead: Vec<SocketAddr>,
    /// Peers whose open connection ended, to report to the engine.
    lost: Vec<SocketAddr>,
}

enum Link {
    /// Connecting; the engine's datagrams wait (one per message id: the
    /// endpoint's retransmissions are not queued twice).
    Connecting { gen: u64, queued: Vec<Vec<u8>> },
    Open {
        gen: u64,
        // Boxed: a bridge is much larger than a queue.
        bridge: Box<DatagramBridge<SplitMix64>>,
        write: OwnedWriteHalf,
    },
}

impl Link {
    fn gen(&self) -> u64 {
        match self {
            Link::Connecting { gen, .. } | Link::Open { gen, .. } => *gen,
        }
    }
}

/// What a link's connect or reader task saw.
enum LinkEvent {
    Connected(TcpStream),
    ConnectFailed(io::Error),
    Bytes(Vec<u8>),
    /// The peer closed the stream, or reading failed (the text says why).
    Eof(Option<io::Error>),
}

impl Default for TcpLinks {
    fn default() -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        TcpLinks {
            links: HashMap::new(),
            events_tx,
            events_rx,
            next_gen: 0,
            dead: Vec::new(),
            lost: Vec::new(),
        }
    }
}

impl TcpLinks {
    /// A datagram from the engine to TCP peer `peer`: through its
    /// connection, opened on the first one.
    fn outgoing<R: RandomSource>(
        &mut self,
        client: &mut Client<SocketAddr, R>,
        now: Instant,
        peer: SocketAddr,
        bytes: &[u8],
    ) {
        match self.links.get_mut(&peer) {
            Some(Link::Connecting { queued, .. }) => {
                let mid = |d: &[u8]| Message::parse(d).ok().map(|m| m.message_id);
                let this = mid(bytes);
                if this.is_none() || !queued.iter().any(|q| mid(q) == this) {
                    queued.push(bytes.to_vec());
                }
            }
            Some(Link::Open { bridge, .. }) => {
                bridge.handle_transmit(bytes);
                Self::to_engine(client, now, peer, bridge);
            }
            None => {
                self.next_gen += 1;
                let gen = self.next_gen;
                info!(%peer, "connecting over TCP");
                self.links.insert(
                    peer,
                    Link::Connecting {
                        gen,
                        queued: vec![bytes.to_vec()],
                    },
                );
                let tx = self.events_tx.clone();
                tokio::spawn(async move {
                    let event = match TcpStream::connect(peer).await {
                        Ok(stream) => LinkEvent::Connected(stream),
                        Err(e) => LinkEvent::ConnectFailed(e),
                    };
                    let _ = tx.send((peer, gen, event));
                });
            }
        }
    }

    /// Passes the bridge's datagrams to the engine (and its answers back).
    fn to_engine<R: RandomSource>(
        client: &mut Client<SocketAddr, R>,
        now: Instant,
        peer: SocketAddr,
        bridge: &mut DatagramBridge<SplitMix64>,
    ) {
        while let Some(d) = bridge.poll_datagram() {
            client.handle_datagram(now, peer, &d);
        }
    }

    /// The next event of a connect or reader task.
    async fn next_event(&mut self) -> Option<(SocketAddr, u64, LinkEvent)> {
        self.events_rx.recv().await
    }

    /// Handles a task's event (stale ones, of a replaced link, are dropped).
    fn handle_event<R: RandomSource>(
        &mut self,
        client: &mut Client<SocketAddr, R>,
        now: Instant,
        (peer, gen, event): (SocketAddr, u64, LinkEvent),
    ) {
        if self.links.get(&peer).map(Link::gen) != Some(gen) {
            return;
        }
        match event {
            LinkEvent::Connected(stream) => {
                let Some(Link::Connecting { queued, .. }) = self.links.remove(&peer) else {
                    return;
                };
                info!(%peer, "TCP connection open");
                let _ = stream.set_nodelay(true);
                let (mut read, write) = stream.into_split();
                let seed = gen ^ u64::from(peer.port()).rotate_left(48);
                let mut bridge = Box::new(DatagramBridge::new(
                    TcpConfig::default(),
                    SplitMix64::new(seed),
                ));
                for d in &queued {
                    bridge.handle_transmit(d);
                }
                Self::to_engine(client, now, peer, &mut bridge);
                self.links.insert(peer, Link::Open { gen, bridge, write });
                let tx = self.events_tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let event = match read.read(&mut buf).await {
                            Ok(0) => LinkEvent::Eof(None),
                            Ok(n) => LinkEvent::Bytes(buf.get(..n).unwrap_or_default().to_vec()),
                            Err(e) => LinkEvent::Eof(Some(e)),
                        };
                        let last = matches!(event, LinkEvent::Eof(_));
                        if tx.send((peer, gen, event)).is_err() || last {
                            return;
                        }
                    }
                });
            }
            LinkEvent::ConnectFailed(e) => {
                warn!(%peer, error = %e, "TCP connect failed");
                self.links.remove(&peer);
                self.dead.push(peer);
            }
            LinkEvent::Bytes(bytes) => {
                if let Some(Link::Open { bridge, .. }) = self.links.get_mut(&peer) {
                    bridge.handle_bytes(&bytes);
                    Self::to_engine(client, now, peer, bridge);
                }
            }
            LinkEvent::Eof(error) => {
                if let Some(Link::Open { bridge, .. }) = self.links.get_mut(&peer) {
                    match error {
                        Some(e) => warn!(%peer, error = %e, "TCP read failed"),
                        None => info!(%peer, "TCP connection closed by the server"),
                    }
                    bridge.handle_eof();
                    Self::to_engine(client, now, peer, bridge);
                }
            }
        }
    }

    /// Writes what the bridges have to send; drops closed connections
    /// (their last bytes written) and those whose write failed.
    async fn flush(&mut self) {
        let mut closed = Vec::new();
        for (peer, link) in &mut self.links {
            let Link::Open { bridge, write, .. } = link else {
                continue;
            };
            let bytes = bridge.take_outgoing();
            if !bytes.is_empty() {
                if let Err(e) = write.write_all(&bytes).await {
                    warn!(%peer, error = %e, "TCP write failed");
                    closed.push(*peer);
                    continue;
                }
            }
            if bridge.is_closed() {
                if let Some(reason) = bridge.close_reason() {
                    info!(%peer, ?reason, "TCP connection ended");
                }
                let _ = write.shutdown().await;
                closed.push(*peer);
            }
        }
        for peer in closed {
            self.links.remove(&peer);
            self.lost.push(peer);
        }
    }

    /// Reports failed and ended connections: the engine's requests to the
    /// peer fail at once. After a connection ended the engine updates its
    /// registrations at once, over a new connection: the server cannot
    /// reach the client otherwise. A failed connect fails the Update or
    /// Register that needed it, and the registration retry schedule (its
    /// backoff) decides when to connect again. True if there was one.
    fn reap<R: RandomSource>(&mut self, client: &mut Client<SocketAddr, R>, now: Instant) -> bool {
        let dead = core::mem::take(&mut self.dead);
        let lost = core::mem::take(&mut self.lost);
        for peer in dead.iter().chain(&lost) {
            client.peer_unreachable(now, peer);
        }
        if !lost.is_empty() {
            client.trigger_update(now);
        }
        !dead.is_empty() || !lost.is_empty()
    }

    /// Sends 7.04 Release on every connection and closes them (shutdown).
    async fn close_all(&mut self) {
        for link in self.links.values_mut() {
            if let Link::Open { bridge, .. } = link {
                bridge.release();
            }
        }
        self.flush().await;
        self.links.clear();
        self.dead.clear();
        self.lost.clear();
    }
}

#[cfg(feature = "dtls")]
impl Sessions {
    /// A CoAP datagram from the engine to `peer`: through its session
    /// (created or replaced as needed) or plain.
    fn outgoing<R: RandomSource>(
        &mut self,
        client: &Client<SocketAddr, R>,
        now: Instant,
        peer: SocketAddr,
        bytes: &[u8],
        out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) {
        let params = match client.peer_security(&peer) {
            Some(p) if p.is_secure() => p,
            _ => {
                out.push((peer, bytes.to_vec()));
                return;
            }
        };
        let reuse = self.map.get(&peer).is_some_and(|(p, s)| {
            *p == params && matches!(s.state(), DtlsState::Handshaking | DtlsState::Established)
        });
        if !reuse {
            match DtlsSession::connect(&params, &self.config, now) {
                Ok(session) => {
                    info!(%peer, security = ?params, "DTLS handshake started");
                    self.map.insert(peer, (params, session));
                }
                Err(e) => {
                    warn!(%peer, error = %e, "cannot secure the traffic with this server");
                    self.map.remove(&peer);
                    if !self.refused.contains(&peer) {
                        self.refused.push(peer);
                    }
                    return;
                }
            }
        }
        if let Some((_, session)) = self.map.get_mut(&peer) {
            if let Err(e) = session.send(bytes) {
                debug!(%peer, error = %e, "datagram not sent over DTLS");
            }
            flush(peer, session, out);
        }
    }

    /// A datagram from `from`: decrypted by its session, or plain when
    /// `from` is not a secured peer.
    fn incoming<R: RandomSource>(
        &mut self,
        client: &mut Client<SocketAddr, R>,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
        out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) {
        if let Some((_, session)) = self.map.get_mut(&from) {
            let was = session.state();
            let plain = session.handle_datagram(now, bytes);
            if was == DtlsState::Handshaking && session.state() == DtlsState::Established {
                info!(peer = %from, "DTLS session established");
            }
            flush(from, session, out);
            for p in plain {
                client.handle_datagram(now, from, &p);
            }
        } else if client.peer_security(&from).is_some_and(|p| p.is_secure()) {
            debug!(%from, "datagram from a DTLS peer without a session, dropped");
        } else {
            client.handle_datagram(now, from, bytes);
        }
    }

    /// The earliest session timer.
    fn poll_timeout(&self) -> Option<Instant> {
        self.map
            .values()
            .filter_map(|(_, s)| s.poll_timeout())
            .min()
    }

    /// Drives the handshakes (retransmissions, deadlines).
    fn handle_timeout(&mut self, now: Instant) {
        for (_, s) in self.map.values_mut() {
            s.handle_timeout(now);
        }
    }

    /// Drops `peer`'s session (closing it if established): the next
    /// datagram to it starts a new handshake.
    fn forget(&mut self, peer: SocketAddr, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        if let Some((_, mut session)) = self.map.remove(&peer) {
            session.close();
            flush(peer, &mut session, out);
        }
    }

    /// Reports failed and closed sessions: logged, removed (their last
    /// datagrams, alerts, sent), the engine's requests to the peer failed.
    /// True if there was one.
    fn reap<R: RandomSource>(
        &mut self,
        client: &mut Client<SocketAddr, R>,
        now: Instant,
        out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) -> bool {
        let mut dead: Vec<SocketAddr> = core::mem::take(&mut self.refused);
        for (peer, (_, session)) in &mut self.map {
            if matches!(session.state(), DtlsState::Failed | DtlsState::Closed) {
                flush(*peer, session, out);
                match session.error() {
                    Some(e) => warn!(%peer, error = %e, "DTLS session ended"),
                    None => warn!(%peer, "DTLS session ended"),
                }
                dead.push(*peer);
            }
        }
        for peer in &dead {
            self.map.remove(peer);
            client.peer_unreachable(now, peer);
        }
        !dead.is_empty()
    }

    /// Closes every session (shutdown).
    fn close_all(&mut self, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        for (peer, (_, mut session)) in self.map.drain() {
            session.close();
            flush(peer, &mut session, out);
        }
    }
}

/// Moves what `session` has to send into `out`.
#[cfg(feature = "dtls")]
fn flush(peer: SocketAddr, session: &mut DtlsSession, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
    while let Some(d) = session.poll_transmit() {
        out.push((peer, d));
    }
}

#[cfg(not(feature = "dtls"))]
impl Sessions {
    fn outgoing<R: RandomSource>(
        &mut self,
        client: &mut Client<SocketAddr, R>,
        now: Instant,
        peer: SocketAddr,
        bytes: &[u8],
        out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) {
        if client.peer_security(&peer).is_some_and(|p| p.is_secure()) {
            warn!(%peer, "coaps:// needs the dtls feature, which this build lacks");
            client.peer_unreachable(now, &peer);
        } else {
            out.push((peer, bytes.to_vec()));
        }
    }
    fn incoming<R: RandomSource>(
        &mut self,
        client: &mut Client<SocketAddr, R>,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
        _out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) {
        client.handle_datagram(now, from, bytes);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn forget(&mut self, _peer: SocketAddr, _out: &mut Vec<(SocketAddr, Vec<u8>)>) {}
    fn reap<R: RandomSource>(
        &mut self,
        _client: &mut Client<SocketAddr, R>,
        _now: Instant,
        _out: &mut Vec<(SocketAddr, Vec<u8>)>,
    ) -> bool {
        false
    }
    fn close_all(&mut self, _out: &mut Vec<(SocketAddr, Vec<u8>)>) {}
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
        assert_eq!(r("coaps://127.0.0.1").as_deref(), Some("127.0.0.1:5684"));
        assert_eq!(r("COAPS://127.0.0.1:9/fw").as_deref(), Some("127.0.0.1:9"));
        assert_eq!(r("coaps://"), None);
        assert_eq!(r("coap+tcp://127.0.0.1").as_deref(), Some("127.0.0.1:5683"));
        assert_eq!(r("coap+tcp://"), None);
        assert_eq!(r("coap://"), None);
    }
}
