//! The sans-IO LwM2M Bootstrap Server (TS Core §5.2, §6.1).
//!
//! [`BootstrapEngine`] runs on its own CoAP [`Endpoint`] (its own port) and
//! serves:
//! - **Bootstrap-Request** `POST /bs?ep=NAME[&pct=CF]`: answered 2.04 if a
//!   [`BootstrapConfig`] exists for NAME (4.00 otherwise, as TS Core
//!   §6.1.7.1 asks for a client the server does not know), then a session
//!   runs: Bootstrap-Discover (optional), Bootstrap-Read of each configured
//!   path (optional, 1.1; reported in the Finished event), Bootstrap-Delete of each
//!   configured path, Bootstrap-Write of each Security / Server / ACL
//!   instance, Bootstrap-Finish (`POST /bs`).
//! - **Bootstrap-Pack-Request** `GET /bspack?ep=NAME` (TS Core 1.2): the
//!   whole configuration as one SenML CBOR payload (SenML JSON or LwM2M
//!   CBOR on Accept 110 / 11544).
//! - **Server-initiated bootstrap**: [`BootstrapEngine::start_session`]
//!   runs the same sequence for a client at a known address, without a
//!   Bootstrap-Request.
//!
//! Decisions where the TS is silent:
//! - **Write format**: the configuration's `content_format` if set, else the
//!   client's `pct` if this server can encode it (TLV, SenML CBOR/JSON,
//!   LwM2M CBOR), else SenML CBOR for a client whose Bootstrap-Discover said
//!   `lwm2m=1.1` or later (Leshan does the same; SenML CBOR is the format
//!   1.1 composite operations rely on), else TLV, the one binary format
//!   every 1.0 client has.
//! - **The client's bootstrap-server account is never overwritten**: after
//!   a Bootstrap-Discover, a configured server-account Security instance
//!   whose id is that of a /0 instance the client listed without `ssid` is
//!   written under the smallest free id instead.
//! - **Bootstrap-Discover errors** (4.xx) do not fail the session: a 1.0
//!   client has no Bootstrap-Discover and may answer 4.00/4.04/4.05; the
//!   session carries on as for a 1.0 client. Every other step's 4.xx/5.xx,
//!   a CoAP timeout or reset ends the session with
//!   [`BootstrapEvent::Failed`] naming the step.
//! - **A new Bootstrap-Request during a session** replaces it (the client
//!   restarted): the old one fails with [`BootstrapFailure::Replaced`].
//! - **Security** ([`credentials`], Leshan's `BootstrapSecurityChecker`):
//!   a datagram comes with the DTLS identity its sender authenticated as
//!   ([`BootstrapEngine::handle_datagram_secured`]) or none (plain CoAP).
//!   A Bootstrap-Request or Bootstrap-Pack-Request for NAME is answered
//!   4.03 Forbidden, and no session starts, unless that identity is what
//!   the bootstrap-server account of NAME's configuration asks
//!   ([`credentials::authorize_bootstrap`]): its PSK identity, its raw
//!   public key, or a certificate with NAME as Common Name; a
//!   configuration without a secured bootstrap account is for plain CoAP
//!   only. (Leshan answers 4.00 "Unauthorized"; 4.03 says the request was
//!   understood and refused, is what this server's Register answers for
//!   the same refusal, and keeps it apart from an unknown endpoint's
//!   4.00.) A session started with an identity is secured:
//!   [`BootstrapEngine::expects_security`] tells the driver never to send
//!   its requests (which carry the DM server's keys) in clear, and
//!   [`BootstrapEngine::identities_at`] to send them only through a DTLS
//!   session of the identity the session was authorized for (not to
//!   another client that took the address over with its own handshake).
//! - **Bounds**: at most [`BootstrapServerConfig::max_sessions`] at once
//!   (beyond: 5.03, temporary) and each session ends after
//!   [`BootstrapServerConfig::session_timeout`].

pub mod config;
pub mod credentials;
#[cfg(feature = "tokio")]
pub mod driver;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use lwm2m_core::coap::endpoint::{IncomingId, RequestError, SendError};
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::Transmit;
use lwm2m_core::coap::{Code, Endpoint, EndpointConfig, Event, Request, RequestId, Response};
use lwm2m_core::format::link::BootstrapDiscover;
use lwm2m_core::format::{self, ContentFormat, FormatError};
use lwm2m_core::model::{Instance, Node, Path, ResourceValue, Value, Version};
use lwm2m_core::rng::RandomSource;
use lwm2m_core::time::{Duration, Instant};

use crate::security::{AuthorizationError, PeerIdentity};

#[cfg(feature = "redis")]
pub use config::RedisConfigStore;
#[cfg(feature = "sqlite")]
pub use config::SqliteConfigStore;
pub use config::{
    AclInstance, BootstrapConfig, BootstrapConfigStore, BootstrapFile, ConfigError,
    MemoryConfigStore, SecurityInstance, SecurityMode, ServerInstance,
};

/// Configuration of a [`BootstrapEngine`].
#[derive(Debug, Clone)]
pub struct BootstrapServerConfig {
    /// CoAP transmission parameters and bounds.
    pub coap: EndpointConfig,
    /// Most bootstrap sessions at once.
    pub max_sessions: usize,
    /// How long one session may take, from start to Bootstrap-Finish's answer.
    pub session_timeout: Duration,
}

impl Default for BootstrapServerConfig {
    fn default() -> Self {
        BootstrapServerConfig {
            coap: EndpointConfig::default(),
            max_sessions: 10_000,
            // A step that times out takes ~93 s in CoAP (MAX_TRANSMIT_WAIT)
            // before it fails by itself; ten minutes leaves room for several
            // slow steps on a lossy link and still frees a stuck session.
            session_timeout: Duration::from_secs(600),
        }
    }
}

/// One step of a bootstrap session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapStep {
    /// Bootstrap-Discover: GET `/` with Accept: application/link-format.
    Discover,
    /// Bootstrap-Read (1.1; Server and Access Control objects only): GET.
    Read(Path),
    /// Bootstrap-Delete: DELETE on the path.
    Delete(Path),
    /// Bootstrap-Write: PUT of the instance at the path.
    Write(Path),
    /// Bootstrap-Finish: POST `/bs`.
    Finish,
}

impl fmt::Display for BootstrapStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootstrapStep::Discover => f.write_str("Bootstrap-Discover /"),
            BootstrapStep::Read(p) => write!(f, "Bootstrap-Read {p}"),
            BootstrapStep::Delete(p) => write!(f, "Bootstrap-Delete {p}"),
            BootstrapStep::Write(p) => write!(f, "Bootstrap-Write {p}"),
            BootstrapStep::Finish => f.write_str("Bootstrap-Finish"),
        }
    }
}

/// Why a bootstrap session failed.
#[derive(Debug, Clone, PartialEq)]
pub enum BootstrapFailure {
    /// The client answered with this error code.
    Code(Code),
    /// The CoAP exchange failed (no answer, reset).
    Request(RequestError),
    /// The CoAP layer refused to send the request.
    Send(SendError),
    /// The instance could not be encoded in the chosen format.
    Encode(FormatError),
    /// A Bootstrap-Read answer did not decode (or had no Content-Format).
    Decode(FormatError),
    /// The session took longer than the session timeout.
    SessionTimeout,
    /// The client sent a new Bootstrap-Request; a new session replaced this one.
    Replaced,
}

impl fmt::Display for BootstrapFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootstrapFailure::Code(c) => write!(f, "client answered {c}"),
            BootstrapFailure::Request(e) => write!(f, "request failed: {e:?}"),
            BootstrapFailure::Send(e) => write!(f, "cannot send: {e}"),
            BootstrapFailure::Encode(e) => write!(f, "cannot encode: {e}"),
            BootstrapFailure::Decode(e) => write!(f, "answer did not decode: {e}"),
            BootstrapFailure::SessionTimeout => f.write_str("session timed out"),
            BootstrapFailure::Replaced => f.write_str("replaced by a new Bootstrap-Request"),
        }
    }
}

/// Why [`BootstrapEngine::start_session`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartSessionError {
    /// No configuration for this endpoint name.
    UnknownEndpoint,
    /// A session for this endpoint is already running.
    AlreadyRunning,
    /// [`BootstrapServerConfig::max_sessions`] are running.
    TooManySessions,
    /// The bootstrap server (driver) has stopped.
    Stopped,
    /// The configuration store failed.
    Store(String),
    /// The client's DTLS identity (or its lack of one) may not bootstrap
    /// this endpoint (the reason says what the configuration asks).
    Forbidden(String),
}

impl fmt::Display for StartSessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StartSessionError::UnknownEndpoint => "no bootstrap configuration for this endpoint",
            StartSessionError::AlreadyRunning => "a bootstrap session for this endpoint is running",
            StartSessionError::TooManySessions => "too many bootstrap sessions at once",
            StartSessionError::Stopped => "bootstrap server stopped",
            StartSessionError::Store(m) => return write!(f, "bootstrap configuration store: {m}"),
            StartSessionError::Forbidden(m) => return write!(f, "not allowed to bootstrap: {m}"),
        })
    }
}

impl std::error::Error for StartSessionError {}

/// What happened, for the application.
#[derive(Debug, Clone, PartialEq)]
pub enum BootstrapEvent<P> {
    /// A session started.
    Started {
        /// Client endpoint name.
        endpoint: String,
        /// Client address.
        peer: P,
        /// True for a Bootstrap-Request, false for [`BootstrapEngine::start_session`].
        client_initiated: bool,
    },
    /// The client acknowledged Bootstrap-Finish.
    Finished {
        /// Client endpoint name.
        endpoint: String,
        /// What Bootstrap-Discover returned, if it was asked and answered.
        discovered: Option<BootstrapDiscover>,
        /// What each Bootstrap-Read returned, decoded with the object models.
        read: Vec<(Path, Node)>,
        /// The format the instances were written in.
        format: ContentFormat,
    },
    /// The session ended without Bootstrap-Finish being acknowledged.
    Failed {
        /// Client endpoint name.
        endpoint: String,
        /// The step that failed.
        step: BootstrapStep,
        /// Why.
        reason: BootstrapFailure,
    },
    /// A Bootstrap-Pack was served.
    PackServed {
        /// Client endpoint name.
        endpoint: String,
        /// Client address.
        peer: P,
    },
}

#[derive(Debug)]
struct Session<P> {
    peer: P,
    config: BootstrapConfig,
    steps: VecDeque<BootstrapStep>,
    current: Option<(BootstrapStep, RequestId)>,
    deadline: Instant,
    /// The DTLS identity it was authorized for: its requests go over a
    /// session of that identity only.
    identity: Option<PeerIdentity>,
    pct: Option<ContentFormat>,
    discovered: Option<BootstrapDiscover>,
    read: Vec<(Path, Node)>,
    /// The instances to write, by the path they are written to.
    writes: BTreeMap<Path, Instance>,
}

impl<P> Session<P> {
    /// Moves configured server-account Security instances off the ids of the
    /// client's own bootstrap-server accounts (the /0 instances its
    /// Bootstrap-Discover listed without `ssid`): writing over the account
    /// would cut the client off from this server, and the client keeps it
    /// through Bootstrap-Delete anyway. The new id is the smallest one used
    /// by neither side.
    fn avoid_bootstrap_accounts(&mut self) {
        let Some(d) = &self.discovered else {
            return;
        };
        let theirs: BTreeSet<u16> = d
            .entries
            .iter()
            .filter(|e| e.attributes.ssid.is_none())
            .filter_map(|e| match e.path {
                Path::Instance(o, i) if o == lwm2m_objects::security::ID => Some(i),
                _ => None,
            })
            .collect();
        let clashes: Vec<Path> = self
            .writes
            .iter()
            .filter(|(p, inst)| {
                matches!(p, Path::Instance(o, i) if *o == lwm2m_objects::security::ID && theirs.contains(i))
                    && !is_bootstrap_account(inst)
            })
            .map(|(p, _)| *p)
            .collect();
        for old in clashes {
            let used = |id: u16| {
                theirs.contains(&id)
                    || self
                        .writes
                        .contains_key(&Path::Instance(lwm2m_objects::security::ID, id))
            };
            // 65535 is reserved (TS Core §7.3); fewer than that many ids
            // are ever in use, so a free one is always found.
            let Some(free) = (0..u16::MAX).find(|id| !used(*id)) else {
                continue;
            };
            let Some(mut inst) = self.writes.remove(&old) else {
                continue;
            };
            inst.id = free;
            let new = Path::Instance(lwm2m_objects::security::ID, free);
            self.writes.insert(new, inst);
            for step in self.steps.iter_mut() {
                if *step == BootstrapStep::Write(old) {
                    *step = BootstrapStep::Write(new);
                }
            }
        }
    }
}

fn is_bootstrap_account(inst: &Instance) -> bool {
    inst.resources
        .get(&lwm2m_objects::security::BOOTSTRAP_SERVER)
        .is_some_and(|r| r.value == ResourceValue::Single(Value::Boolean(true)))
}

impl<P> Session<P> {
    /// The write format (see the module documentation).
    fn format(&self) -> ContentFormat {
        if let Some(cf) = self.config.content_format {
            return ContentFormat(cf);
        }
        if let Some(cf) = self.pct {
            return cf;
        }
        match self.discovered.as_ref().and_then(|d| d.lwm2m) {
            Some(v) if v >= Version::new(1, 1) => ContentFormat::SENML_CBOR,
            _ => ContentFormat::TLV,
        }
    }
}

/// Formats this server writes instances in.
fn encodable(cf: ContentFormat) -> bool {
    matches!(
        cf,
        ContentFormat::TLV
            | ContentFormat::LEGACY_TLV
            | ContentFormat::SENML_CBOR
            | ContentFormat::SENML_JSON
            | ContentFormat::LWM2M_CBOR
            | ContentFormat::LWM2M_JSON
    )
}

/// The bootstrap server engine. `P` is the peer address type.
pub struct BootstrapEngine<P, R> {
    config: BootstrapServerConfig,
    endpoint: Endpoint<P, R>,
    store: Box<dyn BootstrapConfigStore>,
    sessions: BTreeMap<String, Session<P>>,
    by_coap: BTreeMap<RequestId, String>,
    deadlines: BTreeSet<(Instant, String)>,
    events: VecDeque<BootstrapEvent<P>>,
    /// Object models for decoding Bootstrap-Read answers (objects 1 and 2).
    models: lwm2m_objects::Registry,
    /// The DTLS identity of the datagram being handled (`None`: plain CoAP).
    identity: Option<PeerIdentity>,
    /// Peers with secured sessions, with each session's identity (one
    /// lookup per transmit).
    secured_peers: BTreeMap<P, Vec<PeerIdentity>>,
}

impl<P, R> fmt::Debug for BootstrapEngine<P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapEngine")
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

fn error_response(code: Code, message: &str) -> Response {
    let mut r = Response::new(code);
    r.payload = message.as_bytes().to_vec();
    r
}

/// `ep` and `pct` of a Bootstrap-Request / Bootstrap-Pack-Request.
fn query_params(req: &Request) -> Result<(String, Option<ContentFormat>), &'static str> {
    let mut ep = None;
    let mut pct = None;
    for q in req.options.get_all(number::URI_QUERY) {
        let q = std::str::from_utf8(q).map_err(|_| "query is not UTF-8")?;
        match q.split_once('=') {
            Some(("ep", v)) if !v.is_empty() => ep = Some(v.to_string()),
            Some(("pct", v)) => {
                let cf: u16 = v
                    .parse()
                    .map_err(|_| "pct must be a content-format number like 112")?;
                pct = Some(ContentFormat(cf));
            }
            // Unknown parameters are ignored, as for Register.
            _ => {}
        }
    }
    ep.map(|ep| (ep, pct))
        .ok_or("missing ep=<endpoint name> query parameter")
}

impl<P: Clone + Ord + fmt::Debug, R: RandomSource> BootstrapEngine<P, R> {
    /// A bootstrap engine; `coap_rng` makes CoAP tokens and message ids.
    pub fn new(
        config: BootstrapServerConfig,
        coap_rng: R,
        store: Box<dyn BootstrapConfigStore>,
    ) -> Self {
        BootstrapEngine {
            endpoint: Endpoint::new(config.coap.clone(), coap_rng),
            config,
            store,
            sessions: BTreeMap::new(),
            by_coap: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            events: VecDeque::new(),
            models: lwm2m_objects::Registry::standard(),
            identity: None,
            secured_peers: BTreeMap::new(),
        }
    }

    /// The configuration store.
    pub fn store(&self) -> &dyn BootstrapConfigStore {
        &*self.store
    }

    /// The configuration store, to add or remove configurations.
    pub fn store_mut(&mut self) -> &mut dyn BootstrapConfigStore {
        &mut *self.store
    }

    /// Number of running sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        self.endpoint.poll_transmit()
    }

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<BootstrapEvent<P>> {
        self.events.pop_front()
    }

    /// When [`BootstrapEngine::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.endpoint.poll_timeout(),
            self.deadlines.first().map(|(t, _)| *t),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The transport to `peer` is gone: requests to it fail now instead of
    /// at their response timeout ([`Endpoint::peer_gone`]).
    pub fn peer_gone(&mut self, now: Instant, peer: &P) {
        self.endpoint.peer_gone(now, peer);
        self.process(now);
    }

    /// A plain CoAP datagram arrived from `peer`.
    pub fn handle_datagram(&mut self, now: Instant, peer: P, bytes: &[u8]) {
        self.handle_datagram_secured(now, peer, None, bytes);
    }

    /// A datagram arrived from `peer`, which authenticated as `identity`
    /// in its DTLS handshake (`None`: plain CoAP); the identity decides
    /// which endpoints it may bootstrap (module doc, **Security**).
    pub fn handle_datagram_secured(
        &mut self,
        now: Instant,
        peer: P,
        identity: Option<&PeerIdentity>,
        bytes: &[u8],
    ) {
        self.identity = identity.cloned();
        self.endpoint.handle_datagram(now, peer, bytes);
        self.process(now);
        self.identity = None;
    }

    /// Whether a running session with `peer` was started over DTLS: its
    /// datagrams must not be sent in clear (the driver drops them when the
    /// DTLS session is gone).
    pub fn expects_security(&self, peer: &P) -> bool {
        self.secured_peers.contains_key(peer)
    }

    /// The DTLS identities the secured sessions with `peer` were
    /// authorized for: the driver sends this engine's requests to `peer`
    /// only through a DTLS session of one of them.
    pub fn identities_at(&self, peer: &P) -> impl Iterator<Item = &PeerIdentity> {
        self.secured_peers.get(peer).into_iter().flatten()
    }

    /// Ends the bookkeeping of `ep`'s session.
    fn remove_session(&mut self, ep: &str) -> Option<Session<P>> {
        let s = self.sessions.remove(ep)?;
        self.deadlines.remove(&(s.deadline, ep.to_string()));
        if let (Some(identity), Some(ids)) = (&s.identity, self.secured_peers.get_mut(&s.peer)) {
            if let Some(i) = ids.iter().position(|x| x == identity) {
                ids.swap_remove(i);
            }
            if ids.is_empty() {
                self.secured_peers.remove(&s.peer);
            }
        }
        Some(s)
    }

    /// Time passed: retransmissions and session timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.endpoint.handle_timeout(now);
        self.process(now);
        while let Some((t, ep)) = self.deadlines.first().cloned() {
            if t > now {
                break;
            }
            self.deadlines.remove(&(t, ep.clone()));
            let step = self
                .sessions
                .get(&ep)
                .and_then(|s| s.current.as_ref().map(|c| c.0.clone()))
                .unwrap_or(BootstrapStep::Finish);
            self.fail(now, &ep, step, BootstrapFailure::SessionTimeout);
        }
    }

    /// Server-initiated bootstrap: runs the configured sequence for
    /// `endpoint`, which listens at `peer`, without a Bootstrap-Request.
    pub fn start_session(
        &mut self,
        now: Instant,
        endpoint: &str,
        peer: P,
    ) -> Result<(), StartSessionError> {
        self.start_session_secured(now, endpoint, peer, None)
    }

    /// [`BootstrapEngine::start_session`] for a client that has a DTLS
    /// session with this server as `identity` (`None`: plain CoAP): refused
    /// with [`StartSessionError::Forbidden`] if the endpoint's
    /// configuration asks for other credentials, as a Bootstrap-Request
    /// would be.
    pub fn start_session_secured(
        &mut self,
        now: Instant,
        endpoint: &str,
        peer: P,
        identity: Option<&PeerIdentity>,
    ) -> Result<(), StartSessionError> {
        if self.sessions.contains_key(endpoint) {
            return Err(StartSessionError::AlreadyRunning);
        }
        if self.sessions.len() >= self.config.max_sessions {
            return Err(StartSessionError::TooManySessions);
        }
        let config = self
            .store
            .get(endpoint)
            .map_err(|e| StartSessionError::Store(e.to_string()))?
            .ok_or(StartSessionError::UnknownEndpoint)?;
        credentials::authorize_bootstrap(endpoint, identity, &config)
            .map_err(|e| StartSessionError::Forbidden(e.to_string()))?;
        self.identity = identity.cloned();
        self.begin(now, endpoint, peer, config, None, false);
        self.identity = None;
        Ok(())
    }

    fn process(&mut self, now: Instant) {
        while let Some(ev) = self.endpoint.poll_event() {
            match ev {
                Event::Request { id, peer, request } => self.on_request(now, id, peer, request),
                Event::Response { id, response } | Event::Notification { id, response } => {
                    self.on_response(now, id, response)
                }
                Event::RequestFailed { id, error } => {
                    if let Some(ep) = self.by_coap.remove(&id) {
                        let step = self.current_step(&ep);
                        self.fail(now, &ep, step, BootstrapFailure::Request(error));
                    }
                }
                Event::ObservationCancelled { .. } => {}
            }
        }
    }

    fn current_step(&self, ep: &str) -> BootstrapStep {
        self.sessions
            .get(ep)
            .and_then(|s| s.current.as_ref().map(|c| c.0.clone()))
            .unwrap_or(BootstrapStep::Finish)
    }

    fn on_request(&mut self, now: Instant, id: IncomingId, peer: P, req: Request) {
        let segs: Vec<&[u8]> = req.options.get_all(number::URI_PATH).collect();
        let response = match segs.as_slice() {
            [bs] if *bs == b"bs" => {
                if req.code != Code::POST {
                    error_response(
                        Code::METHOD_NOT_ALLOWED,
                        "/bs accepts POST (Bootstrap-Request) only",
                    )
                } else {
                    match self.bootstrap_request(&req) {
                        Ok((ep, pct, config)) => {
                            // Answer first: the client waits for 2.04 before
                            // it accepts bootstrap operations.
                            self.endpoint.respond(now, id, Response::new(Code::CHANGED));
                            if self.sessions.contains_key(&ep) {
                                let step = self.current_step(&ep);
                                self.fail(now, &ep, step, BootstrapFailure::Replaced);
                            }
                            self.begin(now, &ep, peer, config, pct, true);
                            return;
                        }
                        Err(r) => r,
                    }
                }
            }
            [bspack] if *bspack == b"bspack" => {
                if req.code != Code::GET {
                    error_response(
                        Code::METHOD_NOT_ALLOWED,
                        "/bspack accepts GET (Bootstrap-Pack-Request) only",
                    )
                } else {
                    self.bootstrap_pack(peer, &req)
                }
            }
            _ => error_response(
                Code::NOT_FOUND,
                "no such resource on this bootstrap server (POST /bs, GET /bspack)",
            ),
        };
        self.endpoint.respond(now, id, response);
    }

    #[allow(clippy::type_complexity)]
    fn bootstrap_request(
        &mut self,
        req: &Request,
    ) -> Result<(String, Option<ContentFormat>, BootstrapConfig), Response> {
        let (ep, pct) = query_params(req).map_err(|m| error_response(Code::BAD_REQUEST, m))?;
        let config = self.authorized(&ep)?;
        if !self.sessions.contains_key(&ep) && self.sessions.len() >= self.config.max_sessions {
            return Err(error_response(
                Code::SERVICE_UNAVAILABLE,
                "too many bootstrap sessions; retry later",
            ));
        }
        // A pct this server cannot write is ignored, not refused: the client
        // said what it prefers, not what it only accepts.
        Ok((ep, pct.filter(|cf| encodable(*cf)), config))
    }

    /// The configuration of `ep`, or the error response: 4.00 for an
    /// unknown endpoint (TS Core §6.1.7.1), 5.00 if the store failed.
    fn lookup(&self, ep: &str) -> Result<BootstrapConfig, Response> {
        match self.store.get(ep) {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err(error_response(
                Code::BAD_REQUEST,
                "no bootstrap configuration for this endpoint name",
            )),
            Err(e) => Err(error_response(
                Code::INTERNAL_SERVER_ERROR,
                &format!("bootstrap configuration store failed: {e}"),
            )),
        }
    }

    /// The configuration of `ep` if the sender of the datagram being
    /// handled may bootstrap it, or the error response (4.03 if not, see
    /// the module doc).
    fn authorized(&self, ep: &str) -> Result<BootstrapConfig, Response> {
        let config = self.lookup(ep)?;
        match credentials::authorize_bootstrap(ep, self.identity.as_ref(), &config) {
            Ok(()) => Ok(config),
            Err(AuthorizationError::Forbidden(m)) => Err(error_response(Code::FORBIDDEN, &m)),
            Err(AuthorizationError::Unavailable(m)) => {
                Err(error_response(Code::SERVICE_UNAVAILABLE, &m))
            }
        }
    }

    fn bootstrap_pack(&mut self, peer: P, req: &Request) -> Response {
        let (ep, _) = match query_params(req) {
            Ok(x) => x,
            Err(m) => return error_response(Code::BAD_REQUEST, m),
        };
        let cf = match req.options.uint(number::ACCEPT) {
            None => ContentFormat::SENML_CBOR,
            Some(a) if a == u32::from(ContentFormat::SENML_CBOR.0) => ContentFormat::SENML_CBOR,
            Some(a) if a == u32::from(ContentFormat::LWM2M_CBOR.0) => ContentFormat::LWM2M_CBOR,
            Some(a) if a == u32::from(ContentFormat::SENML_JSON.0) => ContentFormat::SENML_JSON,
            Some(_) => {
                return error_response(
                    Code::NOT_ACCEPTABLE,
                    "Bootstrap-Pack is served as SenML CBOR (112), SenML JSON (110) or LwM2M CBOR (11544)",
                )
            }
        };
        let config = match self.authorized(&ep) {
            Ok(c) => c,
            Err(r) => return r,
        };
        let mut payload = Vec::new();
        if let Err(e) = format::encode_values(cf, &config.to_values(), &mut payload) {
            return error_response(
                Code::INTERNAL_SERVER_ERROR,
                &format!("cannot encode the bootstrap pack: {e}"),
            );
        }
        self.events
            .push_back(BootstrapEvent::PackServed { endpoint: ep, peer });
        Response::new(Code::CONTENT).with_payload(cf.0, payload)
    }

    fn begin(
        &mut self,
        now: Instant,
        ep: &str,
        peer: P,
        config: BootstrapConfig,
        pct: Option<ContentFormat>,
        client_initiated: bool,
    ) {
        let mut steps = VecDeque::new();
        if config.discover {
            steps.push_back(BootstrapStep::Discover);
        }
        steps.extend(config.read.iter().cloned().map(BootstrapStep::Read));
        steps.extend(config.delete.iter().cloned().map(BootstrapStep::Delete));
        let writes: Vec<(Path, Instance)> = config.writes();
        steps.extend(writes.iter().map(|(p, _)| BootstrapStep::Write(*p)));
        steps.push_back(BootstrapStep::Finish);
        let deadline = now + self.config.session_timeout;
        self.deadlines.insert((deadline, ep.to_string()));
        if let Some(identity) = &self.identity {
            self.secured_peers
                .entry(peer.clone())
                .or_default()
                .push(identity.clone());
        }
        self.sessions.insert(
            ep.to_string(),
            Session {
                peer: peer.clone(),
                config,
                writes: writes.into_iter().collect(),
                steps,
                current: None,
                deadline,
                identity: self.identity.clone(),
                pct,
                discovered: None,
                read: Vec::new(),
            },
        );
        self.events.push_back(BootstrapEvent::Started {
            endpoint: ep.to_string(),
            peer,
            client_initiated,
        });
        self.next_step(now, ep);
    }

    /// Sends the session's next request, or ends it after Bootstrap-Finish.
    fn next_step(&mut self, now: Instant, ep: &str) {
        let Some(s) = self.sessions.get_mut(ep) else {
            return;
        };
        let Some(step) = s.steps.pop_front() else {
            return;
        };
        let req = match &step {
            BootstrapStep::Discover => Request::new(Code::GET)
                .with_path("/")
                .with_uint_option(number::ACCEPT, u32::from(ContentFormat::LINK_FORMAT.0)),
            BootstrapStep::Read(p) => Request::new(Code::GET)
                .with_path(&p.to_string())
                .with_uint_option(number::ACCEPT, u32::from(s.format().0)),
            BootstrapStep::Delete(p) => Request::new(Code::DELETE).with_path(&p.to_string()),
            BootstrapStep::Write(p) => {
                let cf = s.format();
                let mut payload = Vec::new();
                let encoded = match s.writes.get(p) {
                    Some(inst) => {
                        format::encode(cf, &Node::Instance(inst.clone()), p, &mut payload)
                    }
                    None => Err(FormatError::UnsupportedFormat(cf)),
                };
                if let Err(e) = encoded {
                    self.fail(now, ep, step, BootstrapFailure::Encode(e));
                    return;
                }
                Request::new(Code::PUT)
                    .with_path(&p.to_string())
                    .with_payload(cf.0, payload)
            }
            BootstrapStep::Finish => Request::new(Code::POST).with_path("/bs"),
        };
        match self.endpoint.send_request(now, s.peer.clone(), req) {
            Ok(coap) => {
                s.current = Some((step, coap));
                self.by_coap.insert(coap, ep.to_string());
            }
            Err(e) => self.fail(now, ep, step, BootstrapFailure::Send(e)),
        }
    }

    fn on_response(&mut self, now: Instant, coap: RequestId, response: Response) {
        let Some(ep) = self.by_coap.remove(&coap) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&ep) else {
            return;
        };
        let Some((step, _)) = s.current.take() else {
            return;
        };
        let code = response.code;
        match step {
            BootstrapStep::Discover => {
                // Errors and undecodable answers: carry on as for a 1.0
                // client (see the module documentation).
                if code.is_success() {
                    s.discovered = BootstrapDiscover::decode(&response.payload).ok();
                    s.avoid_bootstrap_accounts();
                }
                self.next_step(now, &ep);
            }
            BootstrapStep::Finish if code.is_success() => {
                if let Some(s) = self.remove_session(&ep) {
                    self.events.push_back(BootstrapEvent::Finished {
                        endpoint: ep,
                        format: s.format(),
                        discovered: s.discovered,
                        read: s.read,
                    });
                }
            }
            BootstrapStep::Read(path) if code.is_success() => {
                let cf = response
                    .options
                    .uint(number::CONTENT_FORMAT)
                    .and_then(|c| u16::try_from(c).ok())
                    .map(ContentFormat);
                let decoded = match cf {
                    Some(cf) => format::decode(cf, &response.payload, &path, &self.models),
                    None => Err(FormatError::UnsupportedFormat(ContentFormat(u16::MAX))),
                };
                match decoded {
                    Ok(node) => {
                        s.read.push((path, node));
                        self.next_step(now, &ep);
                    }
                    Err(e) => self.fail(
                        now,
                        &ep,
                        BootstrapStep::Read(path),
                        BootstrapFailure::Decode(e),
                    ),
                }
            }
            _ if code.is_success() => self.next_step(now, &ep),
            step => self.fail(now, &ep, step, BootstrapFailure::Code(code)),
        }
    }

    /// Ends a session with a Failed event, cancelling its outstanding request.
    fn fail(&mut self, now: Instant, ep: &str, step: BootstrapStep, reason: BootstrapFailure) {
        let Some(s) = self.remove_session(ep) else {
            return;
        };
        if let Some((_, coap)) = s.current {
            self.by_coap.remove(&coap);
            self.endpoint.cancel_request(now, coap);
        }
        self.events.push_back(BootstrapEvent::Failed {
            endpoint: ep.to_string(),
            step,
            reason,
        });
    }
}
