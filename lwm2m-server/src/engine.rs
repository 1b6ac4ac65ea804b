//! The sans-IO LwM2M server engine.
//!
//! It wraps a CoAP [`Endpoint`] and adds the LwM2M Registration interface on
//! `/rd` (Register, Update, De-register; TS Core §6.2) and device-management
//! requests to registered clients (Read, Write, Execute, Discover, Create,
//! Delete, Write-Attributes, Observe; TS Core §6.3, §6.4). Like the endpoint
//! it owns no socket, clock or task: the driver feeds it datagrams and time
//! and sends what [`Engine::poll_transmit`] returns. Randomness (registration
//! ids, CoAP tokens) comes from the sources passed to [`Engine::new`].
//!
//! Decisions where the TS is silent:
//! - **Registration ids** are 80 random bits as 20 lowercase hex digits, so a
//!   client's location cannot be guessed to update or delete another's.
//! - **Expiry** happens at `last update + lifetime + grace`. The grace
//!   ([`ServerConfig::lifetime_grace`], default 15 s) covers an Update sent
//!   right at the end of the lifetime that needs its first retransmissions
//!   (2 + 4 + 8 s at the default ACK_TIMEOUT) and transit delays.
//! - **Limits**: [`ServerConfig::max_registrations`] in total and
//!   [`ServerConfig::max_registrations_per_address`] per source address.
//!   A Register beyond either is answered 5.03 Service Unavailable: the
//!   condition is the server's, temporary, and a client treats a 5.xx as
//!   "retry later" rather than a misconfiguration. Re-registering an
//!   endpoint name that is already registered replaces it and never counts
//!   against the limits.
//! - **Duplicate endpoint names**: the newer Register wins; the old
//!   registration is reported in `ServerEvent::Registered { replaced }`, its
//!   observations end, requests held for it carry over to the new one.
//! - **Several server nodes** may share one store (Redis): when the store
//!   says it is shared, the engine reads a registration back before acting
//!   on an Update, a De-register or its expiry, so a client registered on
//!   another node can update here and a registration updated elsewhere is
//!   not expired here. Device-management requests reach only the clients
//!   this engine knows (loaded at start or seen since).
//! - **Update from another address** moves the registration there (NAT
//!   rebinding); the per-address limit applies to Register only. Anyone who
//!   knows a registration id can update it: without DTLS the id's 80 random
//!   bits are the only protection.
//! - **Queue mode**: a client in queue mode is taken to listen for
//!   [`ServerConfig::awake_time`] (default 93 s, MAX_TRANSMIT_WAIT) after its
//!   Register or Update. Requests for it outside that window are held (at
//!   most [`ServerConfig::max_queued_requests`], each for at most
//!   [`ServerConfig::queued_request_timeout`]) and sent when it is next
//!   heard from.
//! - Register with no payload is refused (4.00): TS Core §6.2.1 makes the
//!   object list mandatory. A Content-Format other than 40 is 4.15; none at
//!   all is accepted as link-format, since the payload can be nothing else.
//! - Error responses carry a diagnostic payload (RFC 7252 §5.5.2) saying what
//!   was wrong and what was expected.
//! - **Send** (`POST /dp`, TS Core 1.1 §6.4.6): the sender is found by its
//!   source address (without DTLS nothing else identifies it). If several
//!   registrations share that address (a NAT), the most recently updated one
//!   is taken. An unknown sender is answered 4.04, a payload in a format
//!   that carries no paths 4.15, an undecodable one 4.00. A Send shows the
//!   client is awake, so requests held for a queue-mode client go out.
//! - **Security** (Leshan's `SecurityChecker`): the driver tells the engine
//!   who sent each datagram ([`Engine::handle_datagram_secured`]: the DTLS
//!   identity, or none for plain CoAP); an [`Authorizer`] given with
//!   [`Engine::set_authorizer`] decides whether that sender may act as the
//!   endpoint name (the tokio driver uses [`crate::security::SecurityChecker`]
//!   over the credentials store; the lookup is a synchronous call, like the
//!   registration store's). Register from a sender the authorizer refuses is
//!   answered 4.03 Forbidden; the registration records the identity
//!   ([`Registration::security`]) and Update, De-register and Send must come
//!   from that same identity and still pass the authorizer (credentials
//!   removed or changed through the admin API apply at once), else 4.03.
//!   Without an authorizer every sender may register (an unsecured server),
//!   but a registration made over DTLS still only accepts that identity.
//!   [`Engine::expects_security`] tells a driver not to send a secured
//!   client's requests in clear when its DTLS session is gone.
//! - **Firmware packages** ([`Engine::set_firmware`]): `GET /fw/{id}`
//!   serves a package of the [`crate::firmware::FirmwareStore`] block by
//!   block (Block2, RFC 7959), each block read from the store when it is
//!   asked for, at any block number (a device resuming a download asks for
//!   block N first), in blocks of at most [`EndpointConfig::block_size`].
//!   Anyone who can reach the server may download a package whose id they
//!   know (as with an HTTP download URL); an unknown id is 4.04, a block
//!   past the end 4.00, a store failure 5.00.
//! - **Composite operations** (TS Core 1.1 §6.3.8, §6.3.9, §6.4.3) target
//!   `/` (or the client's alternate path); their answers decode to
//!   [`Content::Values`] when they come in SenML JSON/CBOR or LwM2M CBOR.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use lwm2m_core::coap::endpoint::{IncomingId, RequestError, SendError};
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{
    BlockValue, Code, Endpoint, EndpointConfig, Event, Request, RequestId, Response, Token,
    Transmit,
};
use lwm2m_core::format::link::{decode_discover, DiscoverEntry};
use lwm2m_core::format::{self, ContentFormat, FormatError};
use lwm2m_core::model::{
    AttributeUpdate, Instance, ModelLookup, Node, ObjectNode, Path, TimestampedValue, Version,
};
use lwm2m_core::rng::RandomSource;
use lwm2m_core::time::{Duration, Instant};

use crate::firmware::SharedFirmwareStore;
use crate::registration::{
    parse_links, RegistrationError, RegistrationParams, RegistrationSecurity, DEFAULT_LIFETIME,
};
use crate::security::{AuthorizationError, Authorizer, PeerIdentity};
use crate::store::{RegistrationStore, StoredObservation};
use crate::Registration;

/// Configuration of an [`Engine`].
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// CoAP transmission parameters and bounds.
    pub coap: EndpointConfig,
    /// Most registrations at once.
    pub max_registrations: usize,
    /// Most registrations from one source address (NATs put many devices
    /// behind one address, so this is a guard against floods, not a quota).
    pub max_registrations_per_address: usize,
    /// Extra time after the lifetime before a registration expires.
    pub lifetime_grace: Duration,
    /// How long a queue-mode client listens after Register/Update.
    pub awake_time: Duration,
    /// Most requests held for one queue-mode client.
    pub max_queued_requests: usize,
    /// How long a request is held for a sleeping queue-mode client.
    pub queued_request_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            coap: EndpointConfig::default(),
            max_registrations: 1_000_000,
            max_registrations_per_address: 1_000,
            lifetime_grace: Duration::from_secs(15),
            awake_time: Duration::from_secs(93),
            max_queued_requests: 16,
            queued_request_timeout: Duration::from_secs(600),
        }
    }
}

/// Handle of a device-management request (or observation) the server sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DmRequestId(pub u64);

/// Write mode (TS Core §6.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// PUT: replace the target.
    Replace,
    /// POST: partial update.
    Partial,
}

/// The decoded body of a device-management response.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// No payload (or an error response).
    None,
    /// A Read / Observe / Notify payload, decoded.
    Node(Node),
    /// A Discover answer.
    Links(Vec<DiscoverEntry>),
    /// The instance a Create made (from the Location-Path), if the client said.
    Created(Option<Path>),
    /// Timestamped path/value records: the answer of a Read-Composite or
    /// an Observe-Composite (and its notifications).
    Values(Vec<TimestampedValue>),
    /// A payload in a format this server does not decode (yet), kept as is.
    Raw {
        /// Its Content-Format, if the response had one.
        content_format: Option<u16>,
        /// The bytes.
        payload: Vec<u8>,
    },
}

/// A response to a device-management request.
#[derive(Debug, Clone, PartialEq)]
pub struct DmResponse {
    /// CoAP response code (2.05 Content, 4.04 Not Found...).
    pub code: Code,
    /// Decoded payload.
    pub content: Content,
}

/// Why a device-management request failed.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DmError {
    /// No registered client has this endpoint name.
    UnknownEndpoint,
    /// No such request or observation.
    UnknownRequest,
    /// The queue of requests held for this queue-mode client is full.
    QueueFull,
    /// The client did not wake up before the held request timed out.
    QueueTimeout,
    /// The client deregistered or expired before answering.
    Deregistered,
    /// The node could not be encoded in the requested format.
    Encode(FormatError),
    /// The CoAP layer refused the request.
    Send(SendError),
    /// The CoAP exchange failed (timeout, reset...).
    Request(RequestError),
    /// The server (driver) stopped before the request was answered.
    ServerStopped,
    /// The response payload did not decode.
    Decode {
        /// The response code.
        code: Code,
        /// What was wrong.
        error: FormatError,
    },
}

impl fmt::Display for DmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DmError::UnknownEndpoint => f.write_str("no client registered with this endpoint name"),
            DmError::UnknownRequest => f.write_str("no such request or observation"),
            DmError::QueueFull => f.write_str("too many requests held for this queue-mode client"),
            DmError::QueueTimeout => {
                f.write_str("queue-mode client did not wake up before the request timed out")
            }
            DmError::Deregistered => f.write_str("client deregistered before answering"),
            DmError::Encode(e) => write!(f, "cannot encode request payload: {e}"),
            DmError::Send(e) => write!(f, "cannot send request: {e}"),
            DmError::Request(e) => write!(f, "request failed: {e:?}"),
            DmError::ServerStopped => f.write_str("server stopped"),
            DmError::Decode { code, error } => {
                write!(f, "response {code:?} payload did not decode: {error}")
            }
        }
    }
}

impl std::error::Error for DmError {}

/// What happened, for the application.
// `Registered` carries two registrations by value; events are made once per
// registration change and handed out at once, so boxing them would cost an
// allocation each and a public API change for no measurable gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent<P> {
    /// A client registered.
    Registered {
        /// The new registration.
        registration: Registration<P>,
        /// The registration with the same endpoint name it replaced.
        replaced: Option<Registration<P>>,
    },
    /// A client updated its registration.
    Updated {
        /// The registration after the Update.
        registration: Registration<P>,
    },
    /// A client deregistered.
    Deregistered {
        /// The registration that ended.
        registration: Registration<P>,
    },
    /// A registration's lifetime (plus grace) ran out.
    Expired {
        /// The registration that ended.
        registration: Registration<P>,
    },
    /// A device-management request was answered (or failed).
    Response {
        /// The request.
        id: DmRequestId,
        /// The client's endpoint name.
        endpoint: String,
        /// The answer.
        result: Result<DmResponse, DmError>,
    },
    /// A notification for an observation.
    Notification {
        /// The observe request.
        id: DmRequestId,
        /// The client's endpoint name.
        endpoint: String,
        /// The notification.
        result: Result<DmResponse, DmError>,
    },
    /// A registered client reported values unasked (Send, `POST /dp`).
    Send {
        /// The sender's endpoint name.
        endpoint: String,
        /// The Content-Format the values came in.
        content_format: ContentFormat,
        /// The values, with their timestamps if the client gave them.
        values: Vec<TimestampedValue>,
    },
    /// The registration store failed; the engine carries on in memory.
    StoreFailed {
        /// What went wrong.
        error: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Discover,
    Write,
    Execute,
    Create,
    Delete,
    WriteAttributes,
    Observe,
    CancelObserve,
    ReadComposite,
    WriteComposite,
    ObserveComposite,
    CancelObserveComposite,
}

#[derive(Debug)]
struct Held {
    id: DmRequestId,
    request: Request,
    deadline: Instant,
}

#[derive(Debug)]
struct Pending {
    endpoint: String,
    path: Path,
    kind: Kind,
    /// The CoAP request once sent; `None` while held for a queue-mode client.
    coap: Option<RequestId>,
    /// An observe whose first response was a success: later events are notifications.
    established: bool,
}

#[derive(Debug)]
struct Client<P> {
    reg: Registration<P>,
    queue: HeldQueue,
}

/// Requests held for a sleeping queue-mode client. Most clients never have
/// one, so the queue is a pointer that stays null until the first request
/// (8 bytes in every registration instead of a `VecDeque`'s 32).
// The box is the point (one pointer inline rather than the deque's four
// words), which is what clippy's box_collection warns about.
#[allow(clippy::box_collection)]
#[derive(Debug, Default)]
struct HeldQueue(Option<Box<VecDeque<Held>>>);

impl HeldQueue {
    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.len())
    }

    fn iter(&self) -> impl Iterator<Item = &Held> {
        self.0.iter().flat_map(|q| q.iter())
    }

    fn push_back(&mut self, held: Held) {
        self.0.get_or_insert_with(Default::default).push_back(held);
    }

    fn retain(&mut self, keep: impl FnMut(&Held) -> bool) {
        if let Some(q) = &mut self.0 {
            q.retain(keep);
            if q.is_empty() {
                self.0 = None;
            }
        }
    }

    fn extend(&mut self, other: HeldQueue) {
        for h in other {
            self.push_back(h);
        }
    }

    /// Empties the queue, returning what it held in order.
    fn take(&mut self) -> VecDeque<Held> {
        self.0.take().map(|q| *q).unwrap_or_default()
    }
}

impl IntoIterator for HeldQueue {
    type Item = Held;
    type IntoIter = std::collections::vec_deque::IntoIter<Held>;
    fn into_iter(mut self) -> Self::IntoIter {
        self.take().into_iter()
    }
}

/// Live registrations by id.
type Clients<P> = BTreeMap<Arc<str>, Box<Client<P>>>;

/// Registration ids by endpoint name, keyed by a hash of the name so the
/// index holds no copy of it (a million names would be a million
/// allocations): a hit is confirmed against the registration's own name,
/// and a name whose hash another name already holds goes to `collisions`,
/// keyed by the name itself. The hash is keyed per engine (`RandomState`),
/// so a peer cannot aim names at one slot.
#[derive(Debug, Default)]
struct EndpointIndex {
    hasher: std::collections::hash_map::RandomState,
    by_hash: BTreeMap<u64, Arc<str>>,
    collisions: BTreeMap<Box<str>, Arc<str>>,
    /// Tests: every name hashes alike, so the collision path is taken.
    #[cfg(test)]
    collide_all: bool,
}

impl EndpointIndex {
    fn hash(&self, endpoint: &str) -> u64 {
        use std::hash::BuildHasher;
        #[cfg(test)]
        if self.collide_all {
            return 0;
        }
        self.hasher.hash_one(endpoint)
    }

    /// The id registered under `endpoint`.
    fn get<P>(&self, clients: &Clients<P>, endpoint: &str) -> Option<Arc<str>> {
        let confirmed = self.by_hash.get(&self.hash(endpoint)).filter(|id| {
            clients
                .get(&***id)
                .is_some_and(|c| c.reg.endpoint == endpoint)
        });
        confirmed.or_else(|| self.collisions.get(endpoint)).cloned()
    }

    /// Files `id` under `endpoint`, replacing what was filed there.
    fn insert<P>(&mut self, clients: &Clients<P>, endpoint: &str, id: Arc<str>) {
        let h = self.hash(endpoint);
        let taken_by_other = self.by_hash.get(&h).is_some_and(|held| {
            clients
                .get(&**held)
                .is_some_and(|c| c.reg.endpoint != endpoint)
        });
        if taken_by_other {
            self.collisions.insert(endpoint.into(), id);
        } else {
            self.collisions.remove(endpoint);
            self.by_hash.insert(h, id);
        }
    }

    /// Removes `endpoint` if it is filed under `id` (works after the
    /// registration left `clients`).
    fn remove(&mut self, endpoint: &str, id: &str) {
        let h = self.hash(endpoint);
        if self.by_hash.get(&h).is_some_and(|held| &**held == id) {
            self.by_hash.remove(&h);
        } else if self
            .collisions
            .get(endpoint)
            .is_some_and(|held| &**held == id)
        {
            self.collisions.remove(endpoint);
        }
    }
}

/// The LwM2M server engine. `P` is the peer address type (`SocketAddr` for
/// a real driver, a small integer in the simulator).
pub struct Engine<P, R> {
    config: ServerConfig,
    endpoint: Endpoint<P, R>,
    rng: R,
    store: Box<dyn RegistrationStore<P>>,
    models: Box<dyn ModelLookup + Send>,
    /// Live registrations by id. The id is allocated once per
    /// registration and shared by the three indexes (a million
    /// registrations make every byte per entry count: see BENCHMARKS.md),
    /// and clients are boxed so that the map's nodes, which are at best
    /// half to three-quarters full, hold pointers rather than
    /// registrations.
    clients: Clients<P>,
    by_endpoint: EndpointIndex,
    per_address: BTreeMap<P, u32>,
    expiries: BTreeSet<(Instant, Arc<str>)>,
    pending: BTreeMap<DmRequestId, Pending>,
    by_coap: BTreeMap<RequestId, DmRequestId>,
    queue_deadlines: BTreeSet<(Instant, DmRequestId)>,
    events: VecDeque<ServerEvent<P>>,
    next_dm: u64,
    /// Established observations written to the store: registration id and
    /// token, to remove them from the store when they end.
    persisted: BTreeMap<DmRequestId, (String, Vec<u8>)>,
    /// Decides who may act as which endpoint; `None`: everyone.
    authorizer: Option<Box<dyn Authorizer>>,
    /// The DTLS identity of the datagram being processed.
    identity: Option<PeerIdentity>,
    /// Registrations made over DTLS per address, by identity.
    secured_per_address: BTreeMap<P, BTreeMap<RegistrationSecurity, usize>>,
    /// The packages `GET /fw/{id}` serves; `None`: 4.04.
    firmware: Option<SharedFirmwareStore>,
}

impl<P, R> fmt::Debug for Engine<P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("registrations", &self.clients.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// The first Uri-Path segment of firmware downloads (`/fw/{id}`).
const FIRMWARE_SEGMENT: &[u8] = b"fw";
/// Content-Format application/octet-stream.
const OCTET_STREAM: u16 = 42;

fn error_response(code: Code, message: &str) -> Response {
    // Diagnostic payload: no Content-Format (RFC 7252 §5.5.2).
    let mut r = Response::new(code);
    r.payload = message.as_bytes().to_vec();
    r
}

impl<P: Clone + Ord + fmt::Debug, R: RandomSource> Engine<P, R> {
    /// A server engine. `rng` makes registration ids and `coap_rng` CoAP
    /// tokens and message ids; both must be unpredictable in production.
    /// Registrations already in `store` are restored (their lifetimes run
    /// from their last update).
    pub fn new(
        config: ServerConfig,
        rng: R,
        coap_rng: R,
        mut store: Box<dyn RegistrationStore<P>>,
        models: Box<dyn ModelLookup + Send>,
    ) -> Result<Self, crate::StoreError> {
        let stored = store.load()?;
        let mut engine = Engine {
            endpoint: Endpoint::new(config.coap.clone(), coap_rng),
            config,
            rng,
            store,
            models,
            clients: BTreeMap::new(),
            by_endpoint: EndpointIndex::default(),
            per_address: BTreeMap::new(),
            expiries: BTreeSet::new(),
            pending: BTreeMap::new(),
            by_coap: BTreeMap::new(),
            queue_deadlines: BTreeSet::new(),
            events: VecDeque::new(),
            next_dm: 1,
            persisted: BTreeMap::new(),
            authorizer: None,
            identity: None,
            secured_per_address: BTreeMap::new(),
            firmware: None,
        };
        for reg in stored {
            // Two stored registrations with one endpoint name cannot come from
            // this engine; if a store has them, the most recent one wins.
            if let Some(old) = engine.by_endpoint.get(&engine.clients, &reg.endpoint) {
                let newer = engine
                    .clients
                    .get(&old)
                    .is_some_and(|c| c.reg.last_update >= reg.last_update);
                if newer {
                    continue;
                }
                let old = old.clone();
                engine.unlink(&old);
            }
            engine.link(reg, HeldQueue::default());
        }
        let observations = engine.store.load_observations()?;
        for obs in observations {
            engine.restore_observation(obs);
        }
        Ok(engine)
    }

    /// Re-attaches a stored observation to the CoAP endpoint so the client's
    /// next notification (with the old token) is delivered, under the old
    /// [`DmRequestId`] if it is free. One whose registration is gone, or
    /// that does not parse, is dropped from the store.
    fn restore_observation(&mut self, obs: StoredObservation) {
        let client = self
            .clients
            .get(obs.registration_id.as_str())
            .filter(|c| c.reg.endpoint == obs.endpoint);
        let path = obs.path.parse::<Path>().ok();
        let token = Token::new(&obs.token).filter(|t| !t.as_bytes().is_empty());
        let (Some(c), Some(path), Some(token)) = (client, path, token) else {
            self.store_remove_observation(&obs.registration_id, &obs.token);
            return;
        };
        // The same request submit() built, so an active cancel matches it.
        let mut req = Request::new(Code::GET).with_uint_option(number::OBSERVE, 0);
        if let Some(cf) = obs.accept {
            req = req.with_uint_option(number::ACCEPT, u32::from(cf));
        }
        let mut target = c.reg.links.root.clone().unwrap_or_default();
        if path != Path::Root || target.is_empty() {
            target.push_str(&path.to_path_string());
        }
        req.options.set_uri_path(&target);
        let address = c.reg.address.clone();
        let endpoint = c.reg.endpoint.clone();
        let Some(coap) = self.endpoint.restore_observation(address, token, req) else {
            self.store_remove_observation(&obs.registration_id, &obs.token);
            return;
        };
        let mut id = DmRequestId(obs.id);
        if obs.id == 0 || self.pending.contains_key(&id) {
            id = self.next_dm_id();
        }
        self.next_dm = self.next_dm.max(id.0.saturating_add(1));
        self.by_coap.insert(coap, id);
        self.pending.insert(
            id,
            Pending {
                endpoint,
                path,
                kind: Kind::Observe,
                coap: Some(coap),
                established: true,
            },
        );
        if id.0 != obs.id {
            // Keep the store in step with the new handle.
            let stored = StoredObservation { id: id.0, ..obs };
            if let Err(e) = self.store.put_observation(&stored) {
                self.events.push_back(ServerEvent::StoreFailed {
                    error: e.to_string(),
                });
            }
            self.persisted
                .insert(id, (stored.registration_id, stored.token));
        } else {
            self.persisted.insert(id, (obs.registration_id, obs.token));
        }
    }

    /// Writes the observation `id`, just established, to the store.
    fn persist_observation(&mut self, id: DmRequestId) {
        let Some(p) = self.pending.get(&id) else {
            return;
        };
        let Some(coap) = p.coap else {
            return;
        };
        let Some(reg_id) = self.by_endpoint.get(&self.clients, &p.endpoint) else {
            return;
        };
        let Some(token) = self.endpoint.request_token(coap) else {
            return;
        };
        let accept = self
            .endpoint
            .request(coap)
            .and_then(|r| r.options.uint(number::ACCEPT))
            .and_then(|cf| u16::try_from(cf).ok());
        let obs = StoredObservation {
            id: id.0,
            registration_id: reg_id.to_string(),
            endpoint: p.endpoint.clone(),
            path: p.path.to_path_string(),
            token: token.as_bytes().to_vec(),
            accept,
        };
        if let Err(e) = self.store.put_observation(&obs) {
            self.events.push_back(ServerEvent::StoreFailed {
                error: e.to_string(),
            });
        }
        self.persisted.insert(id, (reg_id.to_string(), obs.token));
    }

    /// Removes the observation `id` from the store if it was written there.
    fn unpersist_observation(&mut self, id: DmRequestId) {
        if let Some((reg_id, token)) = self.persisted.remove(&id) {
            self.store_remove_observation(&reg_id, &token);
        }
    }

    fn store_remove_observation(&mut self, reg_id: &str, token: &[u8]) {
        if let Err(e) = self.store.remove_observation(reg_id, token) {
            self.events.push_back(ServerEvent::StoreFailed {
                error: e.to_string(),
            });
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Number of live registrations.
    pub fn registration_count(&self) -> usize {
        self.clients.len()
    }

    /// The registration of `endpoint`, if registered.
    pub fn registration(&self, endpoint: &str) -> Option<&Registration<P>> {
        let id = self.by_endpoint.get(&self.clients, endpoint)?;
        self.clients.get(&id).map(|c| &c.reg)
    }

    /// Every live registration, by id.
    pub fn registrations(&self) -> impl Iterator<Item = &Registration<P>> {
        self.clients.values().map(|c| &c.reg)
    }

    /// Every established observation: its handle, endpoint name and path
    /// (including those restored from the store at start).
    pub fn observations(&self) -> impl Iterator<Item = (DmRequestId, &str, &Path)> {
        self.pending
            .iter()
            .filter(|(_, p)| p.kind == Kind::Observe && p.established)
            .map(|(id, p)| (*id, p.endpoint.as_str(), &p.path))
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        self.endpoint.poll_transmit()
    }

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<ServerEvent<P>> {
        self.events.pop_front()
    }

    /// When [`Engine::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.endpoint.poll_timeout(),
            self.expiries.first().map(|(t, _)| *t),
            self.queue_deadlines.first().map(|(t, _)| *t),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The transport to `peer` is gone (its CoAP-over-TCP connection
    /// closed): requests to it fail now instead of at their response
    /// timeout ([`Endpoint::peer_gone`]).
    pub fn peer_gone(&mut self, now: Instant, peer: &P) {
        self.endpoint.peer_gone(now, peer);
        self.process(now);
    }

    /// A datagram arrived from `peer` over plain CoAP (no identity).
    pub fn handle_datagram(&mut self, now: Instant, peer: P, bytes: &[u8]) {
        self.handle_datagram_secured(now, peer, None, bytes);
    }

    /// A datagram arrived from `peer`, decrypted by a DTLS session whose
    /// peer authenticated as `identity` (`None`: plain CoAP). The identity
    /// applies to the requests in this datagram only.
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

    /// Serves the packages of `store` on `GET /fw/{id}` (see the module
    /// doc); `None` stops serving them.
    pub fn set_firmware(&mut self, store: Option<SharedFirmwareStore>) {
        if store.is_some() {
            self.endpoint.serve_block2_in_application(FIRMWARE_SEGMENT);
        }
        self.firmware = store;
    }

    /// One block of a firmware package: the answer to `GET /fw/{id}`.
    fn firmware_block(&self, req: &Request, id: &[u8]) -> Response {
        if req.code != Code::GET {
            return error_response(Code::METHOD_NOT_ALLOWED, "/fw/{id} accepts GET only");
        }
        let Some(store) = &self.firmware else {
            return error_response(Code::NOT_FOUND, "this server serves no firmware packages");
        };
        let Ok(id) = std::str::from_utf8(id) else {
            return error_response(Code::NOT_FOUND, "no such firmware package");
        };
        let ours = self.config.coap.block_size;
        let asked = match req.options.uint(number::BLOCK2) {
            // The endpoint refuses malformed Block2 options before this.
            Some(v) => BlockValue::decode(v).unwrap_or(BlockValue {
                num: 0,
                more: false,
                szx: 6,
            }),
            None => BlockValue::new(0, false, ours).expect("validated block size"),
        };
        // A smaller block size than asked keeps the client's offset (RFC
        // 7959 §2.4: the block number is scaled to the size chosen).
        let size = asked.size().min(ours);
        let offset = asked.offset() as u64;
        let package = match store.get(id) {
            Ok(Some(p)) => p,
            Ok(None) => return error_response(Code::NOT_FOUND, "no such firmware package"),
            Err(e) => return error_response(Code::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        if offset >= package.size && offset > 0 {
            return error_response(
                Code::BAD_REQUEST,
                &format!(
                    "block {} of {} bytes starts past the package's {} bytes",
                    asked.num,
                    asked.size(),
                    package.size
                ),
            );
        }
        let bytes = match store.read_range(id, offset, size) {
            Ok(Some(b)) => b,
            Ok(None) => return error_response(Code::NOT_FOUND, "no such firmware package"),
            Err(e) => return error_response(Code::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        let more = offset + (bytes.len() as u64) < package.size;
        let num = u32::try_from(offset / size as u64).unwrap_or(u32::MAX);
        let Some(block) = BlockValue::new(num, more, size) else {
            return error_response(Code::BAD_REQUEST, "block number out of range");
        };
        let mut resp = Response::new(Code::CONTENT).with_payload(OCTET_STREAM, bytes);
        resp.options.set_uint(number::BLOCK2, block.encode());
        resp.options.set_uint(
            number::SIZE2,
            u32::try_from(package.size).unwrap_or(u32::MAX),
        );
        resp
    }

    /// Sets who decides whether a sender may act as an endpoint (see the
    /// module doc); `None` allows everyone.
    pub fn set_authorizer(&mut self, authorizer: Option<Box<dyn Authorizer>>) {
        self.authorizer = authorizer;
    }

    /// Whether a registration at `peer` was made over DTLS: a driver must
    /// then send to `peer` only through its DTLS session, never in clear.
    pub fn expects_security(&self, peer: &P) -> bool {
        self.secured_per_address.contains_key(peer)
    }

    /// The DTLS identities of the registrations at `peer`. A driver sends
    /// this engine's own requests to `peer` only through a session whose
    /// identity is one of them (after another identity took the address
    /// over, they would reach the wrong client).
    pub fn identities_at(&self, peer: &P) -> impl Iterator<Item = &RegistrationSecurity> {
        self.secured_per_address
            .get(peer)
            .into_iter()
            .flat_map(BTreeMap::keys)
    }

    /// Asks the authorizer whether the current sender may act as `endpoint`.
    fn authorize(&self, endpoint: &str) -> Result<(), Response> {
        let Some(a) = &self.authorizer else {
            return Ok(());
        };
        a.authorize(endpoint, self.identity.as_ref())
            .map_err(|e| match e {
                AuthorizationError::Forbidden(m) => error_response(Code::FORBIDDEN, &m),
                AuthorizationError::Unavailable(m) => error_response(Code::SERVICE_UNAVAILABLE, &m),
            })
    }

    /// Whether the current sender may act on an existing registration: the
    /// identity it registered with, still authorized for its endpoint.
    fn authorize_existing(&self, reg: &Registration<P>) -> Result<(), Response> {
        let sender = self.identity.as_ref().map(RegistrationSecurity::of);
        if sender != reg.security {
            let name = |s: &Option<RegistrationSecurity>| match s {
                Some(s) => format!("{} identity {:?}", s.kind(), s.identity()),
                None => "plain CoAP (no DTLS)".to_string(),
            };
            return Err(error_response(
                Code::FORBIDDEN,
                &format!(
                    "registration of {:?} was made with {}; this request came with {}",
                    reg.endpoint,
                    name(&reg.security),
                    name(&sender)
                ),
            ));
        }
        self.authorize(&reg.endpoint)
    }

    /// Time passed: retransmissions, registration expiry, held-request timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.endpoint.handle_timeout(now);
        while let Some((t, id)) = self.expiries.first().cloned() {
            if t > now {
                break;
            }
            if self.store.is_shared() {
                let due = self.clients.get(&id).map(|c| c.reg.clone());
                self.sync_from_store(now, &id);
                if !self.expiries.contains(&(t, id.clone())) {
                    // Another node took an Update (a later expiry is now
                    // queued) or ended the registration. Ended: as far as
                    // this node knows, its lifetime ran out (every node
                    // holding it reports that, whichever removed it first).
                    if !self.clients.contains_key(&id) {
                        if let Some(reg) = due {
                            self.events
                                .push_back(ServerEvent::Expired { registration: reg });
                        }
                    }
                    continue;
                }
            }
            if let Some(reg) = self.remove_client(now, &id) {
                self.events
                    .push_back(ServerEvent::Expired { registration: reg });
            } else {
                self.expiries.remove(&(t, id));
            }
        }
        while let Some((t, id)) = self.queue_deadlines.first().copied() {
            if t > now {
                break;
            }
            self.queue_deadlines.remove(&(t, id));
            if let Some(p) = self.pending.remove(&id) {
                if let Some(c) = self
                    .by_endpoint
                    .get(&self.clients, &p.endpoint)
                    .and_then(|rid| self.clients.get_mut(&rid))
                {
                    c.queue.retain(|h| h.id != id);
                }
                self.events.push_back(ServerEvent::Response {
                    id,
                    endpoint: p.endpoint,
                    result: Err(DmError::QueueTimeout),
                });
            }
        }
        self.process(now);
    }

    // ------------------------------------------------------------------
    // Registration bookkeeping
    // ------------------------------------------------------------------

    fn expiry_of(&self, reg: &Registration<P>) -> Instant {
        reg.last_update + Duration::from_secs(u64::from(reg.lifetime)) + self.config.lifetime_grace
    }

    /// Adds a registration to the indexes (not the store).
    fn link(&mut self, reg: Registration<P>, queue: HeldQueue) {
        let expires = self.expiry_of(&reg);
        let key: Arc<str> = Arc::from(reg.id.as_str());
        self.expiries.insert((expires, key.clone()));
        self.by_endpoint
            .insert(&self.clients, &reg.endpoint, key.clone());
        *self.per_address.entry(reg.address.clone()).or_insert(0) += 1;
        if let Some(sec) = &reg.security {
            *self
                .secured_per_address
                .entry(reg.address.clone())
                .or_default()
                .entry(sec.clone())
                .or_insert(0) += 1;
        }
        self.clients.insert(key, Box::new(Client { reg, queue }));
    }

    /// Removes a registration from the indexes (not the store); returns it
    /// with its held requests.
    fn unlink(&mut self, id: &str) -> Option<Client<P>> {
        let (key, c) = self.clients.remove_entry(id)?;
        let c = *c;
        // The registration is not changed while linked, so its expiry is
        // the one `link` filed it under.
        self.expiries.remove(&(self.expiry_of(&c.reg), key));
        self.by_endpoint.remove(&c.reg.endpoint, id);
        self.dec_address(&c.reg.address);
        if let Some(sec) = &c.reg.security {
            if let Some(at) = self.secured_per_address.get_mut(&c.reg.address) {
                if let Some(n) = at.get_mut(sec) {
                    *n -= 1;
                    if *n == 0 {
                        at.remove(sec);
                    }
                }
                if at.is_empty() {
                    self.secured_per_address.remove(&c.reg.address);
                }
            }
        }
        Some(c)
    }

    fn dec_address(&mut self, addr: &P) {
        if let Some(n) = self.per_address.get_mut(addr) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(addr);
            }
        }
    }

    /// Ends a registration: store, held requests, observations.
    fn remove_client(&mut self, now: Instant, id: &str) -> Option<Registration<P>> {
        let c = self.unlink(id)?;
        self.store_remove(id);
        for h in c.queue {
            self.queue_deadlines.remove(&(h.deadline, h.id));
            if let Some(p) = self.pending.remove(&h.id) {
                self.events.push_back(ServerEvent::Response {
                    id: h.id,
                    endpoint: p.endpoint,
                    result: Err(DmError::Deregistered),
                });
            }
        }
        self.end_observations(now, &c.reg.endpoint);
        Some(c.reg)
    }

    /// Observations of a client end with its registration (and with a new
    /// Register, after which the client holds none, TS Core §6.4.1): forget
    /// them so a late notification is answered with RST (passive cancel,
    /// RFC 7641 §3.6), and tell the application with a final notification
    /// event carrying [`DmError::Deregistered`].
    fn end_observations(&mut self, now: Instant, endpoint: &str) {
        let ended: Vec<DmRequestId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.endpoint == endpoint && p.established)
            .map(|(id, _)| *id)
            .collect();
        for dm in ended {
            self.unpersist_observation(dm);
            if let Some(p) = self.pending.remove(&dm) {
                if let Some(coap) = p.coap {
                    self.by_coap.remove(&coap);
                    self.endpoint.cancel_request(now, coap);
                }
                self.events.push_back(ServerEvent::Notification {
                    id: dm,
                    endpoint: p.endpoint,
                    result: Err(DmError::Deregistered),
                });
            }
        }
    }

    fn store_put(&mut self, id: &str) {
        let Some(c) = self.clients.get(id) else {
            return;
        };
        if let Err(e) = self.store.put(&c.reg) {
            self.events.push_back(ServerEvent::StoreFailed {
                error: e.to_string(),
            });
        }
    }

    /// With a store several server nodes share, brings registration `id` up
    /// to date with the store before this engine acts on it: another node
    /// may have registered it, taken its Updates, replaced or ended it. The
    /// stored copy wins unless this engine's is more recent (a write that
    /// failed); a store error keeps what this engine knows. A registration
    /// ended elsewhere is dropped here, its held requests and observations
    /// ending as on De-register; the caller reports it (an expiry) or not
    /// (an Update or De-register for it is answered 4.04).
    fn sync_from_store(&mut self, now: Instant, id: &str) {
        if !self.store.is_shared() {
            return;
        }
        let stored = match self.store.get(id) {
            Ok(s) => s,
            Err(e) => {
                self.events.push_back(ServerEvent::StoreFailed {
                    error: e.to_string(),
                });
                return;
            }
        };
        match stored {
            Some(reg) => {
                if let Some(c) = self.clients.get(id) {
                    if c.reg == reg || c.reg.last_update > reg.last_update {
                        return;
                    }
                }
                let mut queue = self.unlink(id).map(|c| c.queue).unwrap_or_default();
                // This node may still hold the endpoint under an older id
                // that a Register on another node replaced.
                if let Some(older) = self.by_endpoint.get(&self.clients, &reg.endpoint) {
                    if let Some(c) = self.unlink(&older) {
                        self.end_observations(now, &c.reg.endpoint);
                        queue.extend(c.queue);
                    }
                }
                self.link(reg, queue);
            }
            None => {
                if self.clients.contains_key(id) {
                    self.remove_client(now, id);
                }
            }
        }
    }

    fn store_remove(&mut self, id: &str) {
        if let Err(e) = self.store.remove(id) {
            self.events.push_back(ServerEvent::StoreFailed {
                error: e.to_string(),
            });
        }
    }

    fn new_registration_id(&mut self) -> String {
        loop {
            let mut b = [0u8; 10];
            self.rng.fill_bytes(&mut b);
            let id: String = b.iter().map(|x| format!("{x:02x}")).collect();
            if !self.clients.contains_key(id.as_str()) {
                return id;
            }
        }
    }

    // ------------------------------------------------------------------
    // Incoming requests
    // ------------------------------------------------------------------

    fn process(&mut self, now: Instant) {
        while let Some(ev) = self.endpoint.poll_event() {
            match ev {
                Event::Request { id, peer, request } => self.on_request(now, id, peer, request),
                Event::Response { id, response } => self.on_response(id, response, false),
                Event::Notification { id, response } => self.on_response(id, response, true),
                Event::RequestFailed { id, error } => self.on_failed(id, error),
                // The server serves no observations.
                Event::ObservationCancelled { .. } => {}
            }
        }
    }

    fn on_request(&mut self, now: Instant, id: IncomingId, peer: P, req: Request) {
        let segs: Vec<&[u8]> = req.options.get_all(number::URI_PATH).collect();
        let mut flush = None;
        let response = match segs.as_slice() {
            [dp] if *dp == b"dp" => {
                if req.code == Code::POST {
                    match self.on_send(&peer, &req) {
                        Ok((reg_id, resp)) => {
                            flush = Some(reg_id);
                            resp
                        }
                        Err(resp) => resp,
                    }
                } else {
                    error_response(Code::METHOD_NOT_ALLOWED, "/dp accepts POST (Send) only")
                }
            }
            [rd] if *rd == b"rd" => {
                if req.code == Code::POST {
                    match self.register(now, peer, &req) {
                        Ok((reg_id, resp)) => {
                            flush = Some(reg_id);
                            resp
                        }
                        Err(resp) => resp,
                    }
                } else {
                    error_response(Code::METHOD_NOT_ALLOWED, "/rd accepts POST (Register) only")
                }
            }
            [rd, loc] if *rd == b"rd" => {
                let loc = String::from_utf8_lossy(loc).into_owned();
                match req.code {
                    Code::POST => match self.update(now, peer, &loc, &req) {
                        Ok(resp) => {
                            flush = Some(loc);
                            resp
                        }
                        Err(resp) => resp,
                    },
                    Code::DELETE => self.deregister(now, &loc).unwrap_or_else(|r| r),
                    _ => error_response(
                        Code::METHOD_NOT_ALLOWED,
                        "/rd/{id} accepts POST (Update) and DELETE (De-register)",
                    ),
                }
            }
            [fw, package] if *fw == FIRMWARE_SEGMENT => self.firmware_block(&req, package),
            _ => error_response(Code::NOT_FOUND, "no such resource on this LwM2M server"),
        };
        self.endpoint.respond(now, id, response);
        if let Some(reg_id) = flush {
            self.flush(now, &reg_id);
        }
    }

    /// Send (TS Core 1.1 §6.4.6): values a registered client reports
    /// unasked. Returns the sender's registration id (to flush requests
    /// held for it) and the response.
    fn on_send(&mut self, peer: &P, req: &Request) -> Result<(String, Response), Response> {
        // The most recently updated registration at this address.
        let reg = self
            .clients
            .values()
            .filter(|c| c.reg.address == *peer)
            .max_by_key(|c| c.reg.last_update)
            .ok_or_else(|| {
                error_response(
                    Code::NOT_FOUND,
                    "Send from an address with no registration: register first",
                )
            })?;
        self.authorize_existing(&reg.reg)?;
        let reg = (reg.reg.id.clone(), reg.reg.endpoint.clone());
        let cf = match req.options.uint(number::CONTENT_FORMAT) {
            Some(cf) => u16::try_from(cf).map(ContentFormat).ok(),
            None => None,
        };
        let cf = cf
            .filter(|cf| {
                matches!(
                    *cf,
                    ContentFormat::SENML_JSON
                        | ContentFormat::SENML_CBOR
                        | ContentFormat::LWM2M_CBOR
                )
            })
            .ok_or_else(|| {
                error_response(
                    Code::UNSUPPORTED_CONTENT_FORMAT,
                    "Send payload must be SenML JSON (110), SenML CBOR (112) or LwM2M CBOR (11544)",
                )
            })?;
        let values = format::decode_values(cf, &req.payload, &*self.models).map_err(|e| {
            let (class, detail) = e.coap_code();
            error_response(
                Code::new(class, detail),
                &format!("Send payload did not decode: {e}"),
            )
        })?;
        self.events.push_back(ServerEvent::Send {
            endpoint: reg.1,
            content_format: cf,
            values,
        });
        Ok((reg.0, Response::new(Code::CHANGED)))
    }

    fn check_link_format(req: &Request) -> Result<(), RegistrationError> {
        match req.options.uint(number::CONTENT_FORMAT) {
            Some(cf) if cf != u32::from(ContentFormat::LINK_FORMAT.0) => Err(
                RegistrationError::UnsupportedContentFormat(u16::try_from(cf).unwrap_or(u16::MAX)),
            ),
            _ => Ok(()),
        }
    }

    fn register(
        &mut self,
        now: Instant,
        peer: P,
        req: &Request,
    ) -> Result<(String, Response), Response> {
        let refuse = |e: RegistrationError| error_response(e.code(), &e.to_string());
        Self::check_link_format(req).map_err(refuse)?;
        let params =
            RegistrationParams::parse(req.options.get_all(number::URI_QUERY)).map_err(refuse)?;
        let endpoint = params
            .endpoint
            .clone()
            .ok_or(RegistrationError::InvalidEndpoint)
            .map_err(refuse)?;
        self.authorize(&endpoint)?;
        if req.payload.is_empty() {
            return Err(refuse(RegistrationError::InvalidPayload(
                "empty; Register must list the client's objects".into(),
            )));
        }
        let links = parse_links(&req.payload).map_err(refuse)?;

        let existing = self.by_endpoint.get(&self.clients, &endpoint);
        let same_address = existing
            .as_ref()
            .and_then(|id| self.clients.get(id))
            .is_some_and(|c| c.reg.address == peer);
        if existing.is_none() && self.clients.len() >= self.config.max_registrations {
            return Err(error_response(
                Code::SERVICE_UNAVAILABLE,
                "server has reached its registration limit; retry later",
            ));
        }
        let from_address = self.per_address.get(&peer).copied().unwrap_or(0);
        if !same_address && from_address as usize >= self.config.max_registrations_per_address {
            return Err(error_response(
                Code::SERVICE_UNAVAILABLE,
                "too many registrations from this address; retry later",
            ));
        }

        // A re-registration keeps the requests held for the endpoint: they
        // were meant for the device, which is now awake.
        let (replaced, queue) = match existing {
            Some(old) => match self.unlink(&old) {
                Some(c) => {
                    self.store_remove(&old);
                    self.end_observations(now, &c.reg.endpoint);
                    (Some(c.reg), c.queue)
                }
                None => (None, HeldQueue::default()),
            },
            None => (None, HeldQueue::default()),
        };
        let binding = params.binding.clone().unwrap_or_else(|| "U".into());
        let id = self.new_registration_id();
        let reg = Registration {
            id: id.clone(),
            endpoint,
            address: peer,
            lifetime: params.lifetime.unwrap_or(DEFAULT_LIFETIME),
            lwm2m_version: params.version.unwrap_or(Version::new(1, 0)),
            // 1.0 carries queue mode as a Q in the binding, 1.1+ as the Q parameter.
            queue_mode: params.queue || binding.contains('Q'),
            binding,
            sms: params.sms.clone(),
            links,
            registered_at: now,
            last_update: now,
            security: self.identity.as_ref().map(RegistrationSecurity::of),
        };
        self.link(reg.clone(), queue);
        self.store_put(&id);
        self.events.push_back(ServerEvent::Registered {
            registration: reg,
            replaced,
        });
        let mut resp = Response::new(Code::CREATED);
        resp.options.push(number::LOCATION_PATH, b"rd".to_vec());
        resp.options
            .push(number::LOCATION_PATH, id.as_bytes().to_vec());
        Ok((id, resp))
    }

    fn update(
        &mut self,
        now: Instant,
        peer: P,
        id: &str,
        req: &Request,
    ) -> Result<Response, Response> {
        let refuse = |e: RegistrationError| error_response(e.code(), &e.to_string());
        self.sync_from_store(now, id);
        let Some(c) = self.clients.get(id) else {
            return Err(error_response(
                Code::NOT_FOUND,
                "no such registration; register again",
            ));
        };
        self.authorize_existing(&c.reg)?;
        if !req.payload.is_empty() {
            Self::check_link_format(req).map_err(refuse)?;
        }
        let params =
            RegistrationParams::parse(req.options.get_all(number::URI_QUERY)).map_err(refuse)?;
        let links = if req.payload.is_empty() {
            None
        } else {
            Some(parse_links(&req.payload).map_err(refuse)?)
        };
        let Some(mut c) = self.unlink(id) else {
            return Err(error_response(Code::NOT_FOUND, "no such registration"));
        };
        if let Some(lt) = params.lifetime {
            c.reg.lifetime = lt;
        }
        if let Some(b) = params.binding {
            if c.reg.lwm2m_version == Version::new(1, 0) {
                c.reg.queue_mode = b.contains('Q');
            }
            c.reg.binding = b;
        }
        if params.queue {
            c.reg.queue_mode = true;
        }
        if let Some(sms) = params.sms {
            c.reg.sms = Some(sms);
        }
        if let Some(links) = links {
            c.reg.links = links;
        }
        // The client may have moved (NAT rebinding, new bearer): requests go
        // to where the Update came from.
        c.reg.address = peer;
        c.reg.last_update = now;
        let reg = c.reg.clone();
        self.link(c.reg, c.queue);
        self.store_put(id);
        self.events
            .push_back(ServerEvent::Updated { registration: reg });
        Ok(Response::new(Code::CHANGED))
    }

    fn deregister(&mut self, now: Instant, id: &str) -> Result<Response, Response> {
        self.sync_from_store(now, id);
        if let Some(c) = self.clients.get(id) {
            self.authorize_existing(&c.reg)?;
        }
        match self.remove_client(now, id) {
            Some(reg) => {
                self.events
                    .push_back(ServerEvent::Deregistered { registration: reg });
                Ok(Response::new(Code::DELETED))
            }
            None => Err(error_response(Code::NOT_FOUND, "no such registration")),
        }
    }

    // ------------------------------------------------------------------
    // Device management
    // ------------------------------------------------------------------

    /// Read (TS Core §6.3.1): GET `path`, optionally with an Accept format.
    pub fn read(
        &mut self,
        now: Instant,
        endpoint: &str,
        path: Path,
        accept: Option<ContentFormat>,
    ) -> Result<DmRequestId, DmError> {
        let mut req = Request::new(Code::GET);
        if let Some(cf) = accept {
            req = req.with_uint_option(number::ACCEPT, u32::from(cf.0));
        }
        self.submit(now, endpoint, Kind::Read, path, req)
    }

    /// Discover (TS Core §6.3.2): GET with Accept: application/link-format.
    pub fn discover(
        &mut self,
        now: Instant,
        endpoint: &str,
        path: Path,
    ) -> Result<DmRequestId, DmError> {
        let req = Request::new(Code::GET)
            .with_uint_option(number::ACCEPT, u32::from(ContentFormat::LINK_FORMAT.0));
        self.submit(now, endpoint, Kind::Discover, path, req)
    }

    /// Write (TS Core §6.3.3): `node` (at `path`) encoded in `format`, PUT
    /// for [`WriteMode::Replace`] or POST for [`WriteMode::Partial`].
    pub fn write(
        &mut self,
        now: Instant,
        endpoint: &str,
        path: Path,
        mode: WriteMode,
        format: ContentFormat,
        node: &Node,
    ) -> Result<DmRequestId, DmError> {
        let mut payload = Vec::new();
        format::encode(format, node, &path, &mut payload).map_err(DmError::Encode)?;
        let code = match mode {
            WriteMode::Replace => Code::PUT,
            WriteMode::Partial => Code::POST,
        };
        let req = Request::new(code).with_payload(format.0, payload);
        self.submit(now, endpoint, Kind::Write, path, req)
    }

    /// Execute (TS Core §6.3.5): POST with the arguments (`0='v',1`) as text.
    pub fn execute(
        &mut self,
        now: Instant,
        endpoint: &str,
        path: Path,
        args: Option<&str>,
    ) -> Result<DmRequestId, DmError> {
        let mut req = Request::new(Code::POST);
        if let Some(a) = args.filter(|a| !a.is_empty()) {
            req = req.with_payload(ContentFormat::TEXT.0, a.as_bytes().to_vec());
        }
        self.submit(now, endpoint, Kind::Execute, path, req)
    }

    /// Create (TS Core §6.3.6): POST `/object` with `instance` encoded in `format`.
    pub fn create(
        &mut self,
        now: Instant,
        endpoint: &str,
        object: u16,
        format: ContentFormat,
        instance: Instance,
    ) -> Result<DmRequestId, DmError> {
        let path = Path::Object(object);
        let mut node = ObjectNode {
            id: object,
            instances: BTreeMap::new(),
        };
        node.instances.insert(instance.id, instance);
        let mut payload = Vec::new();
        format::encode(format, &Node::Object(node), &path, &mut payload)
            .map_err(DmError::Encode)?;
        let req = Request::new(Code::POST).with_payload(format.0, payload);
        self.submit(now, endpoint, Kind::Create, path, req)
    }

    /// Delete (TS Core §6.3.7): DELETE `path`.
    pub fn delete(
        &mut self,
        now: Instant,
        endpoint: &str,
        path: Path,
    ) -> Result<DmRequestId, DmError> {
        self.submit(
            now,
            endpoint,
            Kind::Delete,
            path,
            Request::new(Code::DELETE),
        )
    }

    /// Write-Attributes (TS Core §6.3.4): PUT with the attributes as Uri-Query.
    pub fn write_attributes(
        &mut self,
        now: Instant,
        endpoint: &str,
        path: Path,
        update: &AttributeUpdate,
    ) -> Result<DmRequestId, DmError> {
        let mut req = Request::new(Code::PUT);
        for q in update.to_query() {
            req = req.with_query(&q);
        }
        self.submit(now, endpoint, Kind::WriteAttributes, path, req)
    }

    /// Observe (TS Core §6.4.1): GET with Observe = 0. The first response
    /// comes as [`ServerEvent::Response`], later ones as
    /// [`ServerEvent::Notification`] with the same id.
    pub fn observe(
        &mut self,
        now: Instant,
        endpoint: &str,
        path: Path,
        accept: Option<ContentFormat>,
    ) -> Result<DmRequestId, DmError> {
        let mut req = Request::new(Code::GET).with_uint_option(number::OBSERVE, 0);
        if let Some(cf) = accept {
            req = req.with_uint_option(number::ACCEPT, u32::from(cf.0));
        }
        self.submit(now, endpoint, Kind::Observe, path, req)
    }

    /// Read-Composite (TS Core 1.1 §6.3.8): FETCH `/` with the path list
    /// encoded in `format` (SenML JSON/CBOR or LwM2M CBOR) and, if given,
    /// an Accept for the answer (otherwise the client answers in `format`).
    pub fn read_composite(
        &mut self,
        now: Instant,
        endpoint: &str,
        paths: &[Path],
        format: ContentFormat,
        accept: Option<ContentFormat>,
    ) -> Result<DmRequestId, DmError> {
        let req = composite_fetch(paths, format, accept)?;
        self.submit(now, endpoint, Kind::ReadComposite, Path::Root, req)
    }

    /// Write-Composite (TS Core 1.1 §6.3.9): iPATCH `/` with `values`
    /// encoded in `format` (SenML JSON/CBOR or LwM2M CBOR).
    pub fn write_composite(
        &mut self,
        now: Instant,
        endpoint: &str,
        values: &[TimestampedValue],
        format: ContentFormat,
    ) -> Result<DmRequestId, DmError> {
        let mut payload = Vec::new();
        format::encode_values(format, values, &mut payload).map_err(DmError::Encode)?;
        let req = Request::new(Code::IPATCH).with_payload(format.0, payload);
        self.submit(now, endpoint, Kind::WriteComposite, Path::Root, req)
    }

    /// Observe-Composite (TS Core 1.1 §6.4.3): FETCH `/` with Observe = 0
    /// and the path list. Answers and notifications as for
    /// [`Engine::observe`]; cancel with [`Engine::cancel_observe`].
    pub fn observe_composite(
        &mut self,
        now: Instant,
        endpoint: &str,
        paths: &[Path],
        format: ContentFormat,
        accept: Option<ContentFormat>,
    ) -> Result<DmRequestId, DmError> {
        let mut req = composite_fetch(paths, format, accept)?;
        req.options.set_uint(number::OBSERVE, 0);
        self.submit(now, endpoint, Kind::ObserveComposite, Path::Root, req)
    }

    /// Cancel Observation (TS Core §6.4.2), actively: sends GET with
    /// Observe = 1; its answer comes as a [`ServerEvent::Response`] for the
    /// returned id. An observe still held for a sleeping client is dropped
    /// and `Ok(None)` returned.
    pub fn cancel_observe(
        &mut self,
        now: Instant,
        id: DmRequestId,
    ) -> Result<Option<DmRequestId>, DmError> {
        let p = self.pending.get(&id).ok_or(DmError::UnknownRequest)?;
        if !matches!(p.kind, Kind::Observe | Kind::ObserveComposite) {
            return Err(DmError::UnknownRequest);
        }
        let Some(coap) = p.coap else {
            let p = self.pending.remove(&id).ok_or(DmError::UnknownRequest)?;
            self.drop_held(&p.endpoint, id);
            return Ok(None);
        };
        let p = self.pending.remove(&id).ok_or(DmError::UnknownRequest)?;
        self.unpersist_observation(id);
        self.by_coap.remove(&coap);
        let new_coap = self
            .endpoint
            .cancel_observe(now, coap)
            .ok_or(DmError::UnknownRequest)?;
        let new_id = self.next_dm_id();
        self.by_coap.insert(new_coap, new_id);
        self.pending.insert(
            new_id,
            Pending {
                endpoint: p.endpoint,
                path: p.path,
                kind: if p.kind == Kind::ObserveComposite {
                    Kind::CancelObserveComposite
                } else {
                    Kind::CancelObserve
                },
                coap: Some(new_coap),
                established: false,
            },
        );
        Ok(Some(new_id))
    }

    /// The caller of `id` no longer waits for its answer (it gave up): a
    /// request still held for a sleeping queue-mode client is dropped, so
    /// it never reaches the device; one already sent is forgotten by the
    /// CoAP layer (a late answer is refused with RST). No event comes for
    /// it. An observation already established is left alone (cancel it
    /// with [`Engine::cancel_observe`]). Returns whether `id` was such a
    /// request.
    ///
    /// Without this, a caller that polls a sleeping device with short
    /// timeouts (as firmware updates do) would leave every given-up read
    /// queued for the device's wake-up, filling its queue
    /// ([`ServerConfig::max_queued_requests`]) with answers nobody wants.
    pub fn abandon(&mut self, now: Instant, id: DmRequestId) -> bool {
        if self.pending.get(&id).is_none_or(|p| p.established) {
            return false;
        }
        let Some(p) = self.pending.remove(&id) else {
            return false;
        };
        match p.coap {
            None => self.drop_held(&p.endpoint, id),
            Some(coap) => {
                self.by_coap.remove(&coap);
                self.endpoint.cancel_request(now, coap);
                self.unpersist_observation(id);
            }
        }
        true
    }

    /// Removes request `id` from the queue held for `endpoint`.
    fn drop_held(&mut self, endpoint: &str, id: DmRequestId) {
        let Some(c) = self
            .by_endpoint
            .get(&self.clients, endpoint)
            .and_then(|rid| self.clients.get_mut(&rid))
        else {
            return;
        };
        if let Some(h) = c.queue.iter().find(|h| h.id == id) {
            self.queue_deadlines.remove(&(h.deadline, id));
        }
        c.queue.retain(|h| h.id != id);
    }

    fn next_dm_id(&mut self) -> DmRequestId {
        let id = DmRequestId(self.next_dm);
        self.next_dm += 1;
        id
    }

    fn submit(
        &mut self,
        now: Instant,
        endpoint: &str,
        kind: Kind,
        path: Path,
        mut req: Request,
    ) -> Result<DmRequestId, DmError> {
        let reg_id = self
            .by_endpoint
            .get(&self.clients, endpoint)
            .ok_or(DmError::UnknownEndpoint)?;
        let c = self.clients.get(&reg_id).ok_or(DmError::UnknownEndpoint)?;
        // Targets live under the client's alternate path if it announced one.
        let mut target = c.reg.links.root.clone().unwrap_or_default();
        if path != Path::Root || target.is_empty() {
            target.push_str(&path.to_path_string());
        }
        req.options.set_uri_path(&target);
        let asleep = c.reg.queue_mode && now >= c.reg.last_update + self.config.awake_time;
        if asleep && c.queue.len() >= self.config.max_queued_requests {
            return Err(DmError::QueueFull);
        }
        let address = c.reg.address.clone();
        let id = self.next_dm_id();
        let coap = if asleep {
            let deadline = now + self.config.queued_request_timeout;
            if let Some(c) = self.clients.get_mut(&reg_id) {
                c.queue.push_back(Held {
                    id,
                    request: req,
                    deadline,
                });
            }
            self.queue_deadlines.insert((deadline, id));
            None
        } else {
            let coap = self
                .endpoint
                .send_request(now, address, req)
                .map_err(DmError::Send)?;
            self.by_coap.insert(coap, id);
            Some(coap)
        };
        self.pending.insert(
            id,
            Pending {
                endpoint: endpoint.to_string(),
                path,
                kind,
                coap,
                established: false,
            },
        );
        Ok(id)
    }

    /// Sends the requests held for a queue-mode client that was just heard from.
    fn flush(&mut self, now: Instant, reg_id: &str) {
        let Some(c) = self.clients.get_mut(reg_id) else {
            return;
        };
        let address = c.reg.address.clone();
        let held = c.queue.take();
        for h in held {
            self.queue_deadlines.remove(&(h.deadline, h.id));
            match self.endpoint.send_request(now, address.clone(), h.request) {
                Ok(coap) => {
                    self.by_coap.insert(coap, h.id);
                    if let Some(p) = self.pending.get_mut(&h.id) {
                        p.coap = Some(coap);
                    }
                }
                Err(e) => {
                    if let Some(p) = self.pending.remove(&h.id) {
                        self.events.push_back(ServerEvent::Response {
                            id: h.id,
                            endpoint: p.endpoint,
                            result: Err(DmError::Send(e)),
                        });
                    }
                }
            }
        }
    }

    fn on_response(&mut self, coap: RequestId, response: Response, notification: bool) {
        let Some(&id) = self.by_coap.get(&coap) else {
            return;
        };
        let Some(p) = self.pending.get_mut(&id) else {
            self.by_coap.remove(&coap);
            return;
        };
        // Same rule as the CoAP endpoint: an observation exists only if the
        // success response carries Observe (RFC 7641 §3.2 otherwise means
        // "not observed, here is the plain answer").
        let keep = matches!(p.kind, Kind::Observe | Kind::ObserveComposite)
            && response.code.is_success()
            && response.options.contains(number::OBSERVE);
        let newly_established = keep && !p.established;
        p.established = keep;
        let root = self
            .by_endpoint
            .get(&self.clients, &p.endpoint)
            .and_then(|rid| self.clients.get(&rid))
            .and_then(|c| c.reg.links.root.clone());
        let result = decode_response(p.kind, &p.path, root.as_deref(), &*self.models, response);
        let endpoint = p.endpoint.clone();
        if !keep {
            self.by_coap.remove(&coap);
            self.pending.remove(&id);
            self.unpersist_observation(id);
        } else if newly_established {
            self.persist_observation(id);
        }
        self.events.push_back(if notification {
            ServerEvent::Notification {
                id,
                endpoint,
                result,
            }
        } else {
            ServerEvent::Response {
                id,
                endpoint,
                result,
            }
        });
    }

    fn on_failed(&mut self, coap: RequestId, error: RequestError) {
        let Some(id) = self.by_coap.remove(&coap) else {
            return;
        };
        self.unpersist_observation(id);
        if let Some(p) = self.pending.remove(&id) {
            let result = Err(DmError::Request(error));
            self.events.push_back(if p.established {
                ServerEvent::Notification {
                    id,
                    endpoint: p.endpoint,
                    result,
                }
            } else {
                ServerEvent::Response {
                    id,
                    endpoint: p.endpoint,
                    result,
                }
            });
        }
    }
}

/// The FETCH `/` of Read-Composite and Observe-Composite.
fn composite_fetch(
    paths: &[Path],
    format: ContentFormat,
    accept: Option<ContentFormat>,
) -> Result<Request, DmError> {
    let mut payload = Vec::new();
    format::encode_paths(format, paths, &mut payload).map_err(DmError::Encode)?;
    let mut req = Request::new(Code::FETCH).with_payload(format.0, payload);
    if let Some(cf) = accept {
        req = req.with_uint_option(number::ACCEPT, u32::from(cf.0));
    }
    Ok(req)
}

fn decode_response(
    kind: Kind,
    path: &Path,
    root: Option<&str>,
    models: &dyn ModelLookup,
    response: Response,
) -> Result<DmResponse, DmError> {
    let code = response.code;
    let cf = response
        .options
        .uint(number::CONTENT_FORMAT)
        .and_then(|c| u16::try_from(c).ok());
    if kind == Kind::Create && code == Code::CREATED {
        let segs: Vec<String> = response
            .options
            .get_all(number::LOCATION_PATH)
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        // The location is /O/I, possibly under the alternate path: take the
        // last two segments.
        let created = match segs.as_slice() {
            [.., o, i] => Path::from_segments([o.as_str(), i.as_str()]).ok(),
            _ => None,
        };
        return Ok(DmResponse {
            code,
            content: Content::Created(created),
        });
    }
    if !code.is_success() || response.payload.is_empty() {
        return Ok(DmResponse {
            code,
            content: Content::None,
        });
    }
    let decode_err = |error| DmError::Decode { code, error };
    let content = match (kind, cf) {
        (Kind::Discover, Some(40) | None) => Content::Links(
            decode_discover(&response.payload, root)
                .map_err(|e| decode_err(FormatError::from(e)))?,
        ),
        (Kind::ReadComposite | Kind::ObserveComposite | Kind::CancelObserveComposite, Some(cf)) => {
            match format::decode_values(ContentFormat(cf), &response.payload, models) {
                Ok(values) => Content::Values(values),
                Err(FormatError::UnsupportedFormat(_)) => Content::Raw {
                    content_format: Some(cf),
                    payload: response.payload,
                },
                Err(e) => return Err(decode_err(e)),
            }
        }
        (_, Some(cf)) => match format::decode(ContentFormat(cf), &response.payload, path, models) {
            Ok(node) => Content::Node(node),
            Err(FormatError::UnsupportedFormat(_)) => Content::Raw {
                content_format: Some(cf),
                payload: response.payload,
            },
            Err(e) => return Err(decode_err(e)),
        },
        (_, None) => Content::Raw {
            content_format: None,
            payload: response.payload,
        },
    };
    Ok(DmResponse { code, content })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lwm2m_core::format::link::RegistrationLinks;

    fn client(id: &str, endpoint: &str) -> Box<Client<u32>> {
        Box::new(Client {
            reg: Registration {
                id: id.into(),
                endpoint: endpoint.into(),
                address: 1,
                lifetime: 60,
                lwm2m_version: Version::new(1, 1),
                binding: "U".into(),
                sms: None,
                queue_mode: false,
                links: RegistrationLinks::default(),
                registered_at: Instant::ZERO,
                last_update: Instant::ZERO,
                security: None,
            },
            queue: HeldQueue::default(),
        })
    }

    #[test]
    fn endpoint_index_keeps_colliding_names_apart() {
        let mut index = EndpointIndex {
            collide_all: true,
            ..EndpointIndex::default()
        };
        let mut clients: Clients<u32> = BTreeMap::new();
        for (id, ep) in [("id-a", "ep-a"), ("id-b", "ep-b"), ("id-c", "ep-c")] {
            let key: Arc<str> = Arc::from(id);
            index.insert(&clients, ep, key.clone());
            clients.insert(key, client(id, ep));
        }
        assert_eq!(index.by_hash.len(), 1);
        assert_eq!(index.collisions.len(), 2);
        for (id, ep) in [("id-a", "ep-a"), ("id-b", "ep-b"), ("id-c", "ep-c")] {
            assert_eq!(index.get(&clients, ep).as_deref(), Some(id));
        }
        assert_eq!(index.get(&clients, "ep-d"), None);

        // The holder of the hash leaves: the others are still found.
        clients.remove("id-a");
        index.remove("ep-a", "id-a");
        assert_eq!(index.get(&clients, "ep-a"), None);
        assert_eq!(index.get(&clients, "ep-b").as_deref(), Some("id-b"));

        // ep-b registers again under a new id: filed once, found under it.
        clients.remove("id-b");
        index.remove("ep-b", "id-b");
        let key: Arc<str> = Arc::from("id-b2");
        index.insert(&clients, "ep-b", key.clone());
        clients.insert(key, client("id-b2", "ep-b"));
        assert_eq!(index.get(&clients, "ep-b").as_deref(), Some("id-b2"));
        assert_eq!(index.get(&clients, "ep-c").as_deref(), Some("id-c"));
        assert_eq!(index.by_hash.len() + index.collisions.len(), 2);

        // Removing under a stale id changes nothing.
        index.remove("ep-c", "id-old");
        assert_eq!(index.get(&clients, "ep-c").as_deref(), Some("id-c"));
    }
}
