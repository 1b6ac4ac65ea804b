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

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use lwm2m_core::rng::RandomSource;
use lwm2m_core::time::Instant;
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

#[cfg(feature = "dtls")]
use crate::dtls::{DtlsConfig, DtlsSession, DtlsState};
use crate::engine::{Client, ClientEvent, ServerEvent};
#[cfg(feature = "dtls")]
use crate::security::SecurityParams;

/// How long shutdown waits for the De-register answer before giving up.
pub const DEREGISTER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `coap://host[:port]` (port 5683 by default) or `coaps://host[:port]`
/// (5684) to a socket address, the first the resolver gives; for
/// [`Client::set_resolver`]. Anything after the authority (a path) is
/// ignored. Blocking DNS: it runs once per bootstrap (and per
/// [`Client::peer_security`] lookup of a peer that is no server's).
pub fn resolve_coap_uri(uri: &str) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs;
    let (rest, default_port) = if let Some(rest) = strip_scheme(uri, "coap://") {
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
                sessions.outgoing(client, now, t.peer, &t.bytes, &mut out);
            }
            let failed = sessions.reap(client, now, &mut out);
            send_all(socket, &mut out).await;
            if !failed {
                break;
            }
        }
        if shutting_down.is_some_and(|t| tokio::time::Instant::now() >= t) {
            warn!("no answer to De-register, exiting anyway");
            sessions.close_all(&mut out);
            send_all(socket, &mut out).await;
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
        assert_eq!(r("coap+tcp://127.0.0.1"), None);
        assert_eq!(r("coap://"), None);
    }
}
