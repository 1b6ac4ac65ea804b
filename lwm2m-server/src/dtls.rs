//! A sans-IO DTLS 1.2 server for many peers on one socket (feature `dtls`,
//! OpenSSL through the `openssl` crate).
//!
//! The driver feeds every datagram of the coaps socket to
//! [`DtlsServer::handle_datagram`]; decrypted datagrams come out of
//! [`DtlsServer::poll_received`] with the identity the peer authenticated
//! with ([`PeerIdentity`]), for [`crate::Engine::handle_datagram_secured`].
//! Plaintext for a peer goes in with [`DtlsServer::send`]; everything to put
//! on the wire (handshake flights, alerts, records) comes out of
//! [`DtlsServer::poll_transmit`]. Time comes in with
//! [`DtlsServer::handle_timeout`] when [`DtlsServer::poll_timeout`] says.
//!
//! Each peer's session is an OpenSSL `SslStream` over a
//! [`DatagramPipe`], so every BIO write is one datagram (MTU
//! [`DtlsConfig::mtu`], `NO_QUERY_MTU`).
//!
//! Authentication:
//! - **PSK**: the key of the handshake's identity comes from a
//!   [`PskLookup`] (the server's [`crate::SecurityStore`] with
//!   [`psk_from_store`]); an unknown identity or a wrong key fails the
//!   handshake.
//! - **X.509**: with [`DtlsConfig::x509`], the server presents its
//!   certificate and requires one from a client that picks a certificate
//!   cipher suite, verified against the configured CA file; the identity is
//!   the certificate (DER) and its subject Common Name.
//! - **RPK** is not offered (OpenSSL ≥ 3.2 only; see [`PeerIdentity`]).
//!
//! Denial of service:
//! - **Cookie exchange** (RFC 6347 §4.2.1): a first ClientHello is answered
//!   with a HelloVerifyRequest carrying HMAC-SHA256(random secret, peer
//!   address); the handshake goes on only when the ClientHello echoes it,
//!   so a spoofed source address gets no further than one small datagram.
//!   The `openssl` crate has no `DTLSv1_listen` (and this crate forbids
//!   `unsafe`), so the OpenSSL object that answers the first ClientHello is
//!   kept until the second one comes: half-open sessions are bounded by
//!   [`DtlsConfig::max_handshakes`], and when that is reached the oldest
//!   handshake whose cookie never verified is dropped to make room, so a
//!   flood of spoofed ClientHellos cannot lock real clients out.
//! - Only a datagram that starts with a ClientHello record makes a new
//!   session; anything else from an unknown peer is dropped without
//!   allocating.
//! - [`DtlsConfig::max_sessions`] sessions in total (when full, the session
//!   idle longest is closed if it has been idle for more than
//!   [`DtlsConfig::handshake_timeout`]), [`DtlsConfig::max_sessions_per_ip`]
//!   from one IP address, [`DtlsConfig::handshake_timeout`] to finish a
//!   handshake, [`DtlsConfig::idle_timeout`] without traffic before an
//!   established session is closed (checked every [`SWEEP_INTERVAL`]).
//! - A new ClientHello from a peer with an established session starts a new
//!   handshake beside it (RFC 6347 §4.2.8); the old session keeps working
//!   and is replaced only when the new handshake completes.
//!
//! Retransmission: the `openssl` crate has no binding for
//! `DTLSv1_get_timeout`/`DTLSv1_handle_timeout`. OpenSSL retransmits its
//! last flight when the handshake is driven after its internal timer
//! (1 s, doubling; real time, not the driver's clock) expired, so while any
//! handshake is in progress [`DtlsServer::poll_timeout`] asks to be woken
//! every [`RETRANSMIT_TICK`] and [`DtlsServer::handle_timeout`] drives each
//! handshake once.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use lwm2m_core::datagram_pipe::DatagramPipe;
use lwm2m_core::time::{Duration, Instant};
use openssl::error::ErrorStack;
use openssl::ex_data::Index;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use openssl::ssl::{
    ErrorCode, Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions, SslStream, SslVersion,
};

use crate::peer_auth::{configure_authentication, identity_of};
pub use crate::peer_auth::{psk_from_store, PskLookup, X509Files};
use crate::security::PeerIdentity;

/// How often handshakes in progress are driven (for OpenSSL's
/// retransmission timer, see the module doc).
pub const RETRANSMIT_TICK: Duration = Duration::from_millis(250);

/// How often established sessions are checked for idleness.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// Most received datagrams queued for one session before OpenSSL reads them.
const PIPE_DEPTH: usize = 16;

/// Largest plaintext of one DTLS record.
const MAX_PLAINTEXT: usize = 16_384;

/// Limits and settings of a [`DtlsServer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtlsConfig {
    /// Most peers with a session or handshake at once.
    pub max_sessions: usize,
    /// Most handshakes in progress at once (half-open sessions).
    pub max_handshakes: usize,
    /// Most peers from one IP address (NATs put many devices behind one).
    pub max_sessions_per_ip: usize,
    /// Time a handshake may take.
    pub handshake_timeout: Duration,
    /// Time without traffic after which an established session is closed.
    pub idle_timeout: Duration,
    /// Largest datagram sent (handshake flights are fragmented to it).
    pub mtu: u32,
    /// Certificate authentication; `None`: PSK only.
    pub x509: Option<X509Files>,
    /// Raw public key authentication (RFC 7250, feature `rpk`): the
    /// server's private key (PEM) whose public half it presents; clients
    /// may then present raw public keys, checked against
    /// [`Credentials::Rpk`](crate::security::Credentials::Rpk) when they
    /// register. `None`: no raw public keys.
    pub rpk_private_key: Option<PathBuf>,
}

impl Default for DtlsConfig {
    fn default() -> Self {
        DtlsConfig {
            max_sessions: 10_000,
            max_handshakes: 256,
            max_sessions_per_ip: 256,
            handshake_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(24 * 3600),
            mtu: 1232,
            x509: None,
            rpk_private_key: None,
        }
    }
}

/// Why a [`DtlsServer`] could not be set up.
#[derive(Debug)]
pub enum DtlsError {
    /// OpenSSL refused a setting (the message says which).
    Setup(String),
    /// A certificate, key or CA file could not be used.
    File {
        /// Which file (certificate, private key, CA).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// OpenSSL's reason.
        reason: String,
    },
}

impl fmt::Display for DtlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtlsError::Setup(m) => write!(f, "DTLS setup: {m}"),
            DtlsError::File { what, path, reason } => write!(
                f,
                "DTLS {what} {}: {reason} (expected a readable PEM file)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for DtlsError {}

/// Why [`DtlsServer::send`] sent nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtlsSendError {
    /// The peer has no established session (it must handshake first).
    NoSession,
    /// OpenSSL refused to encrypt (the session was closed).
    Failed(String),
}

impl fmt::Display for DtlsSendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtlsSendError::NoSession => f.write_str("no established DTLS session with the peer"),
            DtlsSendError::Failed(m) => write!(f, "DTLS write failed, session closed: {m}"),
        }
    }
}

impl std::error::Error for DtlsSendError {}

/// A decrypted datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Who sent it.
    pub peer: SocketAddr,
    /// Who the sender authenticated as.
    pub identity: Arc<PeerIdentity>,
    /// The plaintext (one CoAP message).
    pub data: Vec<u8>,
}

/// What the OpenSSL callbacks need to know about a session.
struct PeerData {
    addr: SocketAddr,
    cookie_ok: bool,
}

struct Session {
    stream: SslStream<DatagramPipe>,
    started: Instant,
    last_activity: Instant,
    /// `Some` once the handshake completed.
    identity: Option<Arc<PeerIdentity>>,
}

#[derive(Default)]
struct PeerState {
    established: Option<Session>,
    handshake: Option<Session>,
}

/// What driving a session led to.
enum Outcome {
    Continue,
    Close,
}

/// The DTLS server layer. See the module doc.
pub struct DtlsServer {
    config: DtlsConfig,
    ctx: SslContext,
    peer_index: Index<Ssl, PeerData>,
    peers: HashMap<SocketAddr, PeerState>,
    per_ip: HashMap<IpAddr, usize>,
    /// Peers with a handshake in progress.
    handshaking: BTreeSet<SocketAddr>,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    received: VecDeque<Received>,
    next_sweep: Option<Instant>,
    buf: Vec<u8>,
}

impl fmt::Debug for DtlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsServer")
            .field("peers", &self.peers.len())
            .field("handshakes", &self.handshaking.len())
            .finish_non_exhaustive()
    }
}

pub(crate) fn setup(e: ErrorStack) -> DtlsError {
    DtlsError::Setup(e.to_string())
}

/// The cookie of `addr`: HMAC-SHA256 under `secret`.
fn cookie(secret: &[u8], addr: &SocketAddr) -> Result<Vec<u8>, ErrorStack> {
    let key = PKey::hmac(secret)?;
    let mut signer = Signer::new(MessageDigest::sha256(), &key)?;
    signer.update(addr.to_string().as_bytes())?;
    signer.sign_to_vec()
}

/// A datagram whose first record is a ClientHello (handshake, epoch 0).
fn is_client_hello(bytes: &[u8]) -> bool {
    bytes.first() == Some(&22) && bytes.get(3..5) == Some(&[0, 0][..]) && bytes.get(13) == Some(&1)
}

impl DtlsServer {
    /// A server with `config`, PSK keys from `psk` and cookies keyed with
    /// `cookie_secret` (random, from the driver).
    pub fn new(
        config: DtlsConfig,
        psk: PskLookup,
        cookie_secret: [u8; 32],
    ) -> Result<DtlsServer, DtlsError> {
        let peer_index = Ssl::new_ex_index::<PeerData>().map_err(setup)?;
        let mut b = SslContextBuilder::new(SslMethod::dtls_server()).map_err(setup)?;
        b.set_min_proto_version(Some(SslVersion::DTLS1_2))
            .map_err(setup)?;
        b.set_options(
            SslOptions::COOKIE_EXCHANGE | SslOptions::NO_QUERY_MTU | SslOptions::NO_RENEGOTIATION,
        );
        configure_authentication(
            &mut b,
            psk,
            config.x509.as_ref(),
            config.rpk_private_key.as_deref(),
        )?;
        b.set_cookie_generate_cb(move |ssl, out| {
            let addr = ssl.ex_data(peer_index).map(|d| d.addr);
            let addr = addr.ok_or_else(ErrorStack::get)?;
            let c = cookie(&cookie_secret, &addr)?;
            let n = c.len().min(out.len());
            if let (Some(dst), Some(src)) = (out.get_mut(..n), c.get(..n)) {
                dst.copy_from_slice(src);
            }
            Ok(n)
        });
        b.set_cookie_verify_cb(move |ssl, got| {
            let Some(addr) = ssl.ex_data(peer_index).map(|d| d.addr) else {
                return false;
            };
            let ok = cookie(&cookie_secret, &addr).is_ok_and(|want| {
                want.get(..got.len().min(want.len()))
                    .is_some_and(|w| w.len() == got.len() && openssl::memcmp::eq(w, got))
            });
            if let Some(d) = ssl.ex_data_mut(peer_index) {
                d.cookie_ok |= ok;
            }
            ok
        });
        Ok(DtlsServer {
            config,
            ctx: b.build(),
            peer_index,
            peers: HashMap::new(),
            per_ip: HashMap::new(),
            handshaking: BTreeSet::new(),
            transmits: VecDeque::new(),
            received: VecDeque::new(),
            next_sweep: None,
            buf: vec![0; MAX_PLAINTEXT],
        })
    }

    /// Number of peers with a session or a handshake.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Number of handshakes in progress.
    pub fn handshake_count(&self) -> usize {
        self.handshaking.len()
    }

    /// The identity of `peer`'s established session.
    pub fn session_identity(&self, peer: &SocketAddr) -> Option<&PeerIdentity> {
        self.peers
            .get(peer)?
            .established
            .as_ref()?
            .identity
            .as_deref()
    }

    /// Whether `peer` has an established session.
    pub fn has_session(&self, peer: &SocketAddr) -> bool {
        self.session_identity(peer).is_some()
    }

    /// Next ciphertext datagram to send, and to whom.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// Next decrypted datagram.
    pub fn poll_received(&mut self) -> Option<Received> {
        self.received.pop_front()
    }

    /// When [`DtlsServer::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let sweep = if self.peers.is_empty() {
            None
        } else {
            self.next_sweep
        };
        let tick = (!self.handshaking.is_empty()).then_some(());
        match (sweep, tick) {
            (s, None) => s,
            // The tick is relative to the last call; the sweep time is a
            // fine anchor since handle_timeout moves it on.
            (Some(s), Some(())) => Some(s.min(self.tick_base() + RETRANSMIT_TICK)),
            (None, Some(())) => Some(self.tick_base() + RETRANSMIT_TICK),
        }
    }

    /// The time handshake ticks count from: the latest activity of any
    /// handshake (their last drive).
    fn tick_base(&self) -> Instant {
        self.handshaking
            .iter()
            .filter_map(|p| self.peers.get(p)?.handshake.as_ref())
            .map(|s| s.last_activity)
            .min()
            .unwrap_or(Instant::ZERO)
    }

    /// A datagram arrived on the coaps socket from `peer`.
    pub fn handle_datagram(&mut self, now: Instant, peer: SocketAddr, bytes: &[u8]) {
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + SWEEP_INTERVAL);
        }
        let hello = is_client_hello(bytes);
        let content_type = bytes.first().copied().unwrap_or(0);
        let (to_handshake, known) = match self.peers.get(&peer) {
            None => (true, false),
            Some(st) => {
                let to_handshake = match (&st.handshake, &st.established) {
                    (_, None) => true,
                    (None, Some(_)) => hello,
                    // Both: handshake records (ClientHello, CCS, Finished,
                    // alerts) belong to the new handshake, data to the
                    // session in use.
                    (Some(_), Some(_)) => content_type != 23,
                };
                (to_handshake, true)
            }
        };
        if to_handshake {
            let exists = self
                .peers
                .get(&peer)
                .is_some_and(|st| st.handshake.is_some());
            if !exists && (!hello || !self.start_handshake(now, peer, known)) {
                return;
            }
            let outcome = match self
                .peers
                .get_mut(&peer)
                .and_then(|st| st.handshake.as_mut())
            {
                Some(s) => {
                    s.stream.get_mut().push_incoming(bytes.to_vec());
                    s.last_activity = now;
                    Self::drive_handshake(s)
                }
                None => return,
            };
            self.after_handshake_step(peer, outcome);
            self.read_established(now, peer);
        } else {
            if let Some(s) = self
                .peers
                .get_mut(&peer)
                .and_then(|st| st.established.as_mut())
            {
                s.stream.get_mut().push_incoming(bytes.to_vec());
                s.last_activity = now;
            }
            self.read_established(now, peer);
        }
    }

    /// Encrypts `plaintext` to `peer`'s established session.
    pub fn send(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        plaintext: &[u8],
    ) -> Result<(), DtlsSendError> {
        let s = self
            .peers
            .get_mut(&peer)
            .and_then(|st| st.established.as_mut())
            .ok_or(DtlsSendError::NoSession)?;
        let r = s.stream.ssl_write(plaintext);
        s.last_activity = now;
        let s_out = Self::drain(&mut s.stream);
        self.transmits.extend(s_out.into_iter().map(|d| (peer, d)));
        match r {
            Ok(_) => Ok(()),
            Err(e) => {
                self.close_established(peer, false);
                Err(DtlsSendError::Failed(e.to_string()))
            }
        }
    }

    /// Time passed: handshakes are driven (retransmission) or expire, idle
    /// sessions are closed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let peers: Vec<SocketAddr> = self.handshaking.iter().copied().collect();
        for peer in peers {
            let outcome = match self
                .peers
                .get_mut(&peer)
                .and_then(|st| st.handshake.as_mut())
            {
                Some(s)
                    if now.saturating_duration_since(s.started)
                        >= self.config.handshake_timeout =>
                {
                    Outcome::Close
                }
                Some(s) => {
                    s.last_activity = now;
                    Self::drive_handshake(s)
                }
                None => Outcome::Close,
            };
            self.after_handshake_step(peer, outcome);
            self.read_established(now, peer);
        }
        if self.next_sweep.is_some_and(|t| t <= now) {
            let idle = self.config.idle_timeout;
            let expired: Vec<SocketAddr> = self
                .peers
                .iter()
                .filter(|(_, st)| {
                    st.established
                        .as_ref()
                        .is_some_and(|s| now.saturating_duration_since(s.last_activity) >= idle)
                })
                .map(|(p, _)| *p)
                .collect();
            for peer in expired {
                self.close_established(peer, true);
            }
            self.next_sweep = Some(now + SWEEP_INTERVAL);
        }
    }

    /// Makes room for and creates a handshake session for `peer`. `false`
    /// if a limit says no (the datagram is then dropped).
    fn start_handshake(&mut self, now: Instant, peer: SocketAddr, known: bool) -> bool {
        if !known {
            let from_ip = self.per_ip.get(&peer.ip()).copied().unwrap_or(0);
            if from_ip >= self.config.max_sessions_per_ip {
                tracing::debug!(%peer, "DTLS per-address limit reached; ClientHello dropped");
                return false;
            }
        }
        if self.handshaking.len() >= self.config.max_handshakes && !self.evict_unverified() {
            tracing::debug!(%peer, "DTLS handshake limit reached; ClientHello dropped");
            return false;
        }
        if !known && self.peers.len() >= self.config.max_sessions && !self.evict_idle(now) {
            tracing::debug!(%peer, "DTLS session limit reached; ClientHello dropped");
            return false;
        }
        let stream = match self.new_stream(peer) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%peer, "cannot create a DTLS session: {e}");
                return false;
            }
        };
        let st = self.peers.entry(peer).or_insert_with(|| {
            *self.per_ip.entry(peer.ip()).or_insert(0) += 1;
            PeerState::default()
        });
        st.handshake = Some(Session {
            stream,
            started: now,
            last_activity: now,
            identity: None,
        });
        self.handshaking.insert(peer);
        true
    }

    fn new_stream(&self, peer: SocketAddr) -> Result<SslStream<DatagramPipe>, ErrorStack> {
        let mut ssl = Ssl::new(&self.ctx)?;
        ssl.set_ex_data(
            self.peer_index,
            PeerData {
                addr: peer,
                cookie_ok: false,
            },
        );
        ssl.set_mtu(self.config.mtu)?;
        ssl.set_accept_state();
        SslStream::new(ssl, DatagramPipe::new(PIPE_DEPTH))
    }

    /// Drops the oldest handshake whose cookie never verified; `false` if
    /// every handshake in progress has a verified cookie.
    fn evict_unverified(&mut self) -> bool {
        let idx = self.peer_index;
        let victim = self
            .handshaking
            .iter()
            .filter_map(|p| {
                let s = self.peers.get(p)?.handshake.as_ref()?;
                let verified = s.stream.ssl().ex_data(idx).is_some_and(|d| d.cookie_ok);
                (!verified).then_some((s.started, *p))
            })
            .min();
        match victim {
            Some((_, p)) => {
                self.close_handshake(p);
                true
            }
            None => false,
        }
    }

    /// Closes the established session idle longest, if it has been idle for
    /// more than a handshake timeout; `false` if none qualifies.
    fn evict_idle(&mut self, now: Instant) -> bool {
        let victim = self
            .peers
            .iter()
            .filter(|(_, st)| st.handshake.is_none())
            .filter_map(|(p, st)| Some((st.established.as_ref()?.last_activity, *p)))
            .min();
        match victim {
            Some((t, p)) if now.saturating_duration_since(t) > self.config.handshake_timeout => {
                self.close_established(p, true);
                true
            }
            _ => false,
        }
    }

    fn drain(stream: &mut SslStream<DatagramPipe>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(d) = stream.get_mut().pop_outgoing() {
            out.push(d);
        }
        out
    }

    fn drive_handshake(s: &mut Session) -> Outcome {
        match s.stream.do_handshake() {
            Ok(()) => match identity_of(s.stream.ssl()) {
                Some(id) => {
                    s.identity = Some(Arc::new(id));
                    Outcome::Continue
                }
                None => Outcome::Close,
            },
            Err(e) if e.code() == ErrorCode::WANT_READ || e.code() == ErrorCode::WANT_WRITE => {
                Outcome::Continue
            }
            Err(e) => {
                tracing::debug!("DTLS handshake failed: {e}");
                Outcome::Close
            }
        }
    }

    /// Sends what a handshake step wrote; closes a failed handshake and
    /// promotes a finished one over the session it replaces.
    fn after_handshake_step(&mut self, peer: SocketAddr, outcome: Outcome) {
        let Some(st) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(s) = st.handshake.as_mut() else {
            return;
        };
        let out = Self::drain(&mut s.stream);
        let done = s.identity.is_some();
        self.transmits.extend(out.into_iter().map(|d| (peer, d)));
        match outcome {
            Outcome::Close => self.close_handshake(peer),
            Outcome::Continue if done => {
                if let Some(s) = st.handshake.take() {
                    if let Some(id) = &s.identity {
                        tracing::debug!(%peer, identity = %id, "DTLS session established");
                    }
                    st.established = Some(s);
                }
                self.handshaking.remove(&peer);
            }
            Outcome::Continue => {}
        }
    }

    /// Reads every record queued for `peer`'s established session.
    fn read_established(&mut self, now: Instant, peer: SocketAddr) {
        let Some(s) = self
            .peers
            .get_mut(&peer)
            .and_then(|st| st.established.as_mut())
        else {
            return;
        };
        let Some(identity) = s.identity.clone() else {
            return;
        };
        let (mut close, mut notify) = (false, false);
        loop {
            match s.stream.ssl_read(&mut self.buf) {
                Ok(n) => {
                    s.last_activity = now;
                    if let Some(data) = self.buf.get(..n) {
                        self.received.push_back(Received {
                            peer,
                            identity: identity.clone(),
                            data: data.to_vec(),
                        });
                    }
                }
                Err(e) if e.code() == ErrorCode::WANT_READ => break,
                Err(e) => {
                    // close_notify (ZERO_RETURN: answered with ours) or a
                    // fatal error.
                    tracing::debug!(%peer, "DTLS session ended: {e}");
                    close = true;
                    notify = e.code() == ErrorCode::ZERO_RETURN;
                    break;
                }
            }
        }
        let out = Self::drain(&mut s.stream);
        self.transmits.extend(out.into_iter().map(|d| (peer, d)));
        if close {
            self.close_established(peer, notify);
        }
    }

    fn close_handshake(&mut self, peer: SocketAddr) {
        self.handshaking.remove(&peer);
        if let Some(st) = self.peers.get_mut(&peer) {
            st.handshake = None;
        }
        self.forget_if_empty(peer);
    }

    /// Closes `peer`'s established session, with a close_notify if `notify`.
    fn close_established(&mut self, peer: SocketAddr, notify: bool) {
        if let Some(st) = self.peers.get_mut(&peer) {
            if let Some(mut s) = st.established.take() {
                if notify {
                    let _ = s.stream.shutdown();
                    let out = Self::drain(&mut s.stream);
                    self.transmits.extend(out.into_iter().map(|d| (peer, d)));
                }
            }
        }
        self.forget_if_empty(peer);
    }

    fn forget_if_empty(&mut self, peer: SocketAddr) {
        let empty = self
            .peers
            .get(&peer)
            .is_some_and(|st| st.handshake.is_none() && st.established.is_none());
        if empty {
            self.peers.remove(&peer);
            if let Some(n) = self.per_ip.get_mut(&peer.ip()) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_ip.remove(&peer.ip());
                }
            }
        }
    }
}

// The test PKI the client's DTLS and https tests use.
#[cfg(test)]
#[path = "../../lwm2m-client/tests/support/pki.rs"]
pub(crate) mod test_pki;

#[cfg(test)]
mod tests {
    use super::test_pki;
    use super::*;
    use openssl::pkey::Private;
    use openssl::ssl::{SslRef, SslVerifyMode};
    use openssl::x509::X509;

    const T0: Instant = Instant::from_millis(1_000_000);

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    fn keys() -> PskLookup {
        Arc::new(|id| (id == "dev-1").then(|| b"secret-key-1".to_vec()))
    }

    fn server(config: DtlsConfig) -> DtlsServer {
        DtlsServer::new(config, keys(), [7; 32]).unwrap()
    }

    fn client_ctx() -> SslContextBuilder {
        let mut b = SslContextBuilder::new(SslMethod::dtls_client()).unwrap();
        b.set_options(SslOptions::NO_QUERY_MTU);
        b
    }

    fn psk_client(identity: &str, key: &[u8]) -> SslStream<DatagramPipe> {
        let mut b = client_ctx();
        b.set_cipher_list("PSK-AES128-CCM8:PSK-AES128-CBC-SHA256")
            .unwrap();
        let (identity, key) = (identity.as_bytes().to_vec(), key.to_vec());
        b.set_psk_client_callback(move |_: &mut SslRef, _hint, id_out, key_out| {
            id_out[..identity.len()].copy_from_slice(&identity);
            id_out[identity.len()] = 0;
            key_out[..key.len()].copy_from_slice(&key);
            Ok(key.len())
        });
        stream(b)
    }

    fn stream(b: SslContextBuilder) -> SslStream<DatagramPipe> {
        let mut ssl = Ssl::new(&b.build()).unwrap();
        ssl.set_mtu(1232).unwrap();
        ssl.set_connect_state();
        SslStream::new(ssl, DatagramPipe::new(16)).unwrap()
    }

    /// Steps the client's handshake and carries datagrams both ways until
    /// nothing moves; returns every datagram the server sent.
    fn exchange(
        s: &mut DtlsServer,
        c: &mut SslStream<DatagramPipe>,
        from: SocketAddr,
    ) -> Vec<Vec<u8>> {
        let mut sent = Vec::new();
        for _ in 0..20 {
            let _ = c.do_handshake();
            let mut moved = false;
            while let Some(d) = c.get_mut().pop_outgoing() {
                s.handle_datagram(T0, from, &d);
                moved = true;
            }
            while let Some((to, d)) = s.poll_transmit() {
                assert_eq!(to, from);
                sent.push(d.clone());
                c.get_mut().push_incoming(d);
                moved = true;
            }
            if !moved {
                break;
            }
        }
        sent
    }

    fn handshake_type(d: &[u8]) -> Option<u8> {
        (d.first() == Some(&22))
            .then(|| d.get(13).copied())
            .flatten()
    }

    #[test]
    fn psk_handshake_starts_with_a_cookie_and_carries_data_both_ways() {
        let mut s = server(DtlsConfig::default());
        let mut c = psk_client("dev-1", b"secret-key-1");
        let sent = exchange(&mut s, &mut c, peer(1));
        // First server flight: one HelloVerifyRequest (handshake type 3).
        assert_eq!(handshake_type(&sent[0]), Some(3), "{:?}", sent[0]);
        assert!(c.ssl().is_init_finished());
        assert_eq!(
            s.session_identity(&peer(1)),
            Some(&PeerIdentity::Psk("dev-1".into()))
        );
        assert_eq!(s.handshake_count(), 0);

        c.ssl_write(b"coap request").unwrap();
        while let Some(d) = c.get_mut().pop_outgoing() {
            s.handle_datagram(T0, peer(1), &d);
        }
        let r = s.poll_received().unwrap();
        assert_eq!(r.peer, peer(1));
        assert_eq!(*r.identity, PeerIdentity::Psk("dev-1".into()));
        assert_eq!(r.data, b"coap request");
        assert!(s.poll_received().is_none());

        s.send(T0, peer(1), b"coap response").unwrap();
        let (to, d) = s.poll_transmit().unwrap();
        assert_eq!(to, peer(1));
        assert!(!d.windows(13).any(|w| w == b"coap response"), "encrypted");
        c.get_mut().push_incoming(d);
        let mut buf = [0u8; 100];
        let n = c.ssl_read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"coap response");
        assert_eq!(
            s.send(T0, peer(2), b"x"),
            Err(DtlsSendError::NoSession),
            "no session, nothing sent"
        );
        assert!(s.poll_transmit().is_none());
    }

    #[test]
    fn wrong_key_and_unknown_identity_fail_the_handshake() {
        for (id, key) in [("dev-1", &b"wrong-key"[..]), ("nobody", b"secret-key-1")] {
            let mut s = server(DtlsConfig::default());
            let mut c = psk_client(id, key);
            exchange(&mut s, &mut c, peer(1));
            assert!(!c.ssl().is_init_finished(), "{id}");
            assert!(!s.has_session(&peer(1)), "{id}");
            // A wrong key shows as a Finished that does not decrypt, which
            // DTLS drops silently: that handshake is forgotten at its timeout.
            s.handle_timeout(T0 + Duration::from_secs(61));
            assert_eq!(s.peer_count(), 0, "{id}: failed handshake forgotten");
            assert_eq!(s.poll_timeout(), None);
            c.ssl_write(b"x").unwrap_err();
        }
    }

    #[test]
    fn garbage_from_unknown_peers_allocates_nothing_and_never_panics() {
        let mut s = server(DtlsConfig::default());
        let mut seed = 0x1234_5678_u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for i in 0..2000u16 {
            let len = (next() % 200) as usize;
            let mut d: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if i % 3 == 0 && d.len() > 14 {
                // Looks like a ClientHello record header, then garbage.
                d[0] = 22;
                d[3] = 0;
                d[4] = 0;
                d[13] = 1;
            }
            s.handle_datagram(T0, peer(i % 7), &d);
            s.handle_timeout(T0 + Duration::from_millis(u64::from(i)));
        }
        while s.poll_transmit().is_some() {}
        assert!(s.poll_received().is_none());
        // Garbage ClientHellos never finish; they expire.
        s.handle_timeout(T0 + Duration::from_secs(61));
        assert_eq!(s.handshake_count(), 0);
        // A real client still gets through.
        let mut c = psk_client("dev-1", b"secret-key-1");
        exchange(&mut s, &mut c, peer(9));
        assert!(s.has_session(&peer(9)));
        // Garbage to an established session is dropped, the session stays.
        for _ in 0..50 {
            let d: Vec<u8> = (0..40).map(|_| next() as u8).collect();
            s.handle_datagram(T0, peer(9), &d);
        }
        assert!(s.poll_received().is_none());
        assert!(s.has_session(&peer(9)));
    }

    fn first_flight(port: u16, ip: [u8; 4]) -> (SocketAddr, Vec<u8>) {
        let mut c = psk_client("dev-1", b"secret-key-1");
        let _ = c.do_handshake();
        (
            SocketAddr::from((ip, port)),
            c.get_mut().pop_outgoing().unwrap(),
        )
    }

    #[test]
    fn a_client_hello_flood_cannot_evict_a_verified_handshake() {
        let config = DtlsConfig {
            max_handshakes: 2,
            ..DtlsConfig::default()
        };
        let mut s = server(config);
        // A real client verifies its cookie (second ClientHello) ...
        let mut real = psk_client("dev-1", b"secret-key-1");
        for _ in 0..2 {
            let _ = real.do_handshake();
            while let Some(d) = real.get_mut().pop_outgoing() {
                s.handle_datagram(T0, peer(100), &d);
            }
            while let Some((_, d)) = s.poll_transmit() {
                real.get_mut().push_incoming(d);
            }
        }
        assert_eq!(s.handshake_count(), 1);
        // ... then first ClientHellos flood in from many addresses.
        for i in 1..20u8 {
            let (from, hello) = first_flight(5683, [203, 0, 113, i]);
            s.handle_datagram(T0, from, &hello);
            assert!(s.handshake_count() <= 2);
        }
        while s.poll_transmit().is_some() {}
        // The verified handshake was never evicted: it completes.
        exchange(&mut s, &mut real, peer(100));
        assert!(s.has_session(&peer(100)));
    }

    #[test]
    fn one_ip_address_gets_at_most_its_share_of_sessions() {
        let config = DtlsConfig {
            max_sessions_per_ip: 3,
            ..DtlsConfig::default()
        };
        let mut s = server(config);
        for port in 1..10 {
            let (from, hello) = first_flight(port, [192, 0, 2, 1]);
            s.handle_datagram(T0, from, &hello);
        }
        assert_eq!(s.peer_count(), 3);
        let answered: BTreeSet<SocketAddr> = std::iter::from_fn(|| s.poll_transmit())
            .map(|(p, _)| p)
            .collect();
        assert_eq!(answered, (1..4).map(peer).collect());
        // Another address is not held back by the first one's peers.
        let other = SocketAddr::from(([198, 51, 100, 7], 5000));
        let mut c = psk_client("dev-1", b"secret-key-1");
        exchange(&mut s, &mut c, other);
        assert!(s.has_session(&other));
    }

    #[test]
    fn session_limit_drops_new_peers_while_sessions_are_busy() {
        let config = DtlsConfig {
            max_sessions: 1,
            ..DtlsConfig::default()
        };
        let mut s = server(config);
        let mut c = psk_client("dev-1", b"secret-key-1");
        exchange(&mut s, &mut c, peer(1));
        assert!(s.has_session(&peer(1)));
        let mut c2 = psk_client("dev-1", b"secret-key-1");
        let sent = exchange(&mut s, &mut c2, peer(2));
        assert!(sent.is_empty(), "no answer when full");
        assert!(!s.has_session(&peer(2)));
    }

    #[test]
    fn a_new_client_hello_replaces_the_session_once_it_completes() {
        let mut s = server(DtlsConfig::default());
        let mut c = psk_client("dev-1", b"secret-key-1");
        exchange(&mut s, &mut c, peer(1));
        // The same address starts over (a rebooted device).
        let mut c2 = psk_client("dev-1", b"secret-key-1");
        let _ = c2.do_handshake();
        let hello = c2.get_mut().pop_outgoing().unwrap();
        s.handle_datagram(T0, peer(1), &hello);
        while let Some((_, d)) = s.poll_transmit() {
            c2.get_mut().push_incoming(d);
        }
        // Meanwhile the old session still works.
        c.ssl_write(b"old").unwrap();
        let d = c.get_mut().pop_outgoing().unwrap();
        s.handle_datagram(T0, peer(1), &d);
        assert_eq!(s.poll_received().unwrap().data, b"old");
        exchange(&mut s, &mut c2, peer(1));
        assert!(c2.ssl().is_init_finished());
        c2.ssl_write(b"new").unwrap();
        let d = c2.get_mut().pop_outgoing().unwrap();
        s.handle_datagram(T0, peer(1), &d);
        assert_eq!(s.poll_received().unwrap().data, b"new");
        assert_eq!(s.peer_count(), 1);
    }

    #[test]
    fn idle_sessions_close_with_close_notify() {
        let config = DtlsConfig {
            idle_timeout: Duration::from_secs(30),
            ..DtlsConfig::default()
        };
        let mut s = server(config);
        let mut c = psk_client("dev-1", b"secret-key-1");
        exchange(&mut s, &mut c, peer(1));
        let wake = s.poll_timeout().unwrap();
        assert!(wake > T0);
        s.handle_timeout(T0 + Duration::from_secs(20));
        assert!(s.has_session(&peer(1)), "not idle long enough yet");
        s.handle_timeout(T0 + Duration::from_secs(40));
        assert!(!s.has_session(&peer(1)));
        let (_, d) = s.poll_transmit().expect("close_notify");
        assert_eq!(d.first(), Some(&21), "an alert record");
        assert_eq!(s.poll_timeout(), None, "nothing left to time");
    }

    fn key() -> PKey<Private> {
        test_pki::ec_key()
    }

    fn cert(cn: &str, key: &PKey<Private>, issuer: Option<(&X509, &PKey<Private>)>) -> X509 {
        test_pki::certificate(cn, key, issuer)
    }

    #[test]
    fn x509_client_certificates_verify_against_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = key();
        let ca = cert("Test CA", &ca_key, None);
        let server_key = key();
        let server_cert = cert("server", &server_key, Some((&ca, &ca_key)));
        let write = |name: &str, pem: Vec<u8>| {
            let p = dir.path().join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        let files = X509Files {
            certificate: write("server.pem", server_cert.to_pem().unwrap()),
            private_key: write("server.key", server_key.private_key_to_pem_pkcs8().unwrap()),
            ca: write("ca.pem", ca.to_pem().unwrap()),
        };
        let config = DtlsConfig {
            x509: Some(files.clone()),
            ..DtlsConfig::default()
        };
        let x509_client = |cn: &str, signer: Option<(&X509, &PKey<Private>)>| {
            let k = key();
            let c = cert(cn, &k, signer);
            let mut b = client_ctx();
            b.set_certificate(&c).unwrap();
            b.set_private_key(&k).unwrap();
            stream(b)
        };
        let mut s = server(config.clone());
        let mut c = x509_client("ep-x", Some((&ca, &ca_key)));
        exchange(&mut s, &mut c, peer(1));
        assert!(c.ssl().is_init_finished());
        match s.session_identity(&peer(1)) {
            Some(PeerIdentity::X509 { common_name, der }) => {
                assert_eq!(common_name, "ep-x");
                assert_eq!(
                    X509::from_der(der)
                        .unwrap()
                        .subject_name()
                        .entries()
                        .count(),
                    1
                );
            }
            other => panic!("{other:?}"),
        }
        // PSK still works beside certificates.
        let mut p = psk_client("dev-1", b"secret-key-1");
        exchange(&mut s, &mut p, peer(2));
        assert!(s.has_session(&peer(2)));
        // A self-signed client certificate is refused.
        let mut bad = x509_client("ep-y", None);
        exchange(&mut s, &mut bad, peer(3));
        assert!(!s.has_session(&peer(3)));
        // Unusable files say which one.
        let broken = DtlsConfig {
            x509: Some(X509Files {
                ca: dir.path().join("missing.pem"),
                ..files
            }),
            ..DtlsConfig::default()
        };
        let err = DtlsServer::new(broken, keys(), [0; 32]).unwrap_err();
        assert!(err.to_string().contains("DTLS CA"), "{err}");
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }

    /// A client presenting `own` as a raw public key and accepting any
    /// server key (the client side's checks are the client crate's).
    #[cfg(feature = "rpk")]
    fn rpk_client(own: &PKey<Private>) -> SslStream<DatagramPipe> {
        let mut b = client_ctx();
        b.set_private_key(own).unwrap();
        lwm2m_dtls::rpk::offer_only_raw_public_keys(&mut b).unwrap();
        b.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
        stream(b)
    }

    #[cfg(feature = "rpk")]
    #[test]
    fn raw_public_key_clients_are_identified_by_their_key_beside_psk_and_x509() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: Vec<u8>| {
            let p = dir.path().join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        let server_key = key();
        let key_file = write("rpk.pem", server_key.private_key_to_pem_pkcs8().unwrap());
        // RPK alone (no certificate), with PSK beside it.
        let mut s = server(DtlsConfig {
            rpk_private_key: Some(key_file.clone()),
            ..DtlsConfig::default()
        });
        let device = key();
        let mut c = rpk_client(&device);
        exchange(&mut s, &mut c, peer(1));
        assert!(c.ssl().is_init_finished());
        assert_eq!(
            s.session_identity(&peer(1)),
            Some(&PeerIdentity::Rpk {
                public_key: device.public_key_to_der().unwrap()
            })
        );
        // The client saw the server's key.
        assert_eq!(
            lwm2m_dtls::rpk::peer_public_key(c.ssl()),
            Some(server_key.public_key_to_der().unwrap())
        );
        let mut p = psk_client("dev-1", b"secret-key-1");
        exchange(&mut s, &mut p, peer(2));
        assert!(s.has_session(&peer(2)));

        // With a certificate: RPK uses the certificate's key, X.509 clients
        // still get the certificate.
        let ca_key = key();
        let ca = cert("Test CA", &ca_key, None);
        let server_cert = cert("server", &server_key, Some((&ca, &ca_key)));
        let files = X509Files {
            certificate: write("server.pem", server_cert.to_pem().unwrap()),
            private_key: key_file.clone(),
            ca: write("ca.pem", ca.to_pem().unwrap()),
        };
        let mut s = server(DtlsConfig {
            x509: Some(files.clone()),
            rpk_private_key: Some(key_file),
            ..DtlsConfig::default()
        });
        let mut c = rpk_client(&device);
        exchange(&mut s, &mut c, peer(3));
        assert!(matches!(
            s.session_identity(&peer(3)),
            Some(PeerIdentity::Rpk { .. })
        ));
        let k = key();
        let mut b = client_ctx();
        b.set_certificate(&cert("ep-x", &k, Some((&ca, &ca_key))))
            .unwrap();
        b.set_private_key(&k).unwrap();
        let mut x = stream(b);
        exchange(&mut s, &mut x, peer(4));
        assert!(matches!(
            s.session_identity(&peer(4)),
            Some(PeerIdentity::X509 { common_name, .. }) if common_name == "ep-x"
        ));
        // An RPK key other than the certificate's is refused at setup.
        let other = write("other.pem", key().private_key_to_pem_pkcs8().unwrap());
        let err = DtlsServer::new(
            DtlsConfig {
                x509: Some(files),
                rpk_private_key: Some(other),
                ..DtlsConfig::default()
            },
            keys(),
            [0; 32],
        )
        .unwrap_err();
        assert!(err.to_string().contains("certificate's own key"), "{err}");
    }
}
