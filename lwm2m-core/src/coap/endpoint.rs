//! The sans-IO CoAP message layer (RFC 7252 §4), block-wise transfers
//! (RFC 7959) and observe plumbing (RFC 7641), for CoAP over UDP.
//!
//! An [`Endpoint`] is both client and server: it sends requests and answers
//! them. It owns no socket, clock or task. The driver:
//!
//! 1. passes every received datagram to [`Endpoint::handle_datagram`],
//! 2. sends what [`Endpoint::poll_transmit`] returns,
//! 3. calls [`Endpoint::handle_timeout`] when [`Endpoint::poll_timeout`] is due,
//! 4. reads [`Event`]s from [`Endpoint::poll_event`] and answers incoming
//!    requests with [`Endpoint::respond`].
//!
//! What it does for the application: CON retransmission with the RFC 7252
//! timers, piggybacked and separate responses, RST handling, duplicate
//! detection with a bounded response cache, message-id and token generation,
//! NSTART with a bounded queue per peer, token matching, transparent
//! block-wise transfers in both directions and both roles, and observe
//! registrations with sequence numbers and the freshness rule.
//!
//! ```
//! use lwm2m_core::coap::{Code, Endpoint, EndpointConfig, Event, Request, Response};
//! use lwm2m_core::rng::SplitMix64;
//! use lwm2m_core::time::Instant;
//!
//! let now = Instant::ZERO;
//! let mut client = Endpoint::new(EndpointConfig::default(), SplitMix64::new(1));
//! let mut server = Endpoint::new(EndpointConfig::default(), SplitMix64::new(2));
//! let id = client.send_request(now, "server", Request::new(Code::GET).with_path("/3/0/0")).unwrap();
//! let t = client.poll_transmit().unwrap();
//! server.handle_datagram(now, "client", &t.bytes);
//! let Some(Event::Request { id: incoming, .. }) = server.poll_event() else { panic!() };
//! server.respond(now, incoming, Response::new(Code::CONTENT).with_payload(0, b"Open Mobile Alliance".to_vec()));
//! let t = server.poll_transmit().unwrap();
//! client.handle_datagram(now, "server", &t.bytes);
//! match client.poll_event() {
//!     Some(Event::Response { id: r, response }) => {
//!         assert_eq!(r, id);
//!         assert_eq!(response.payload, b"Open Mobile Alliance");
//!     }
//!     other => panic!("{other:?}"),
//! }
//! ```

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::fmt::Debug;

use super::block::{size_to_szx, BlockValue};
use super::code::{Code, MessageType};
use super::message::{Message, MessageWriter, OptionList, Token};
use super::observe::{is_newer, SeqCounter};
use super::option::{self, number};
use crate::rng::RandomSource;
use crate::time::{Duration, Instant};

/// Transmission parameters (RFC 7252 §4.8) and the bounds of an [`Endpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// ACK_TIMEOUT (2 s).
    pub ack_timeout: Duration,
    /// ACK_RANDOM_FACTOR in percent (150 = 1.5).
    pub ack_random_factor_percent: u32,
    /// MAX_RETRANSMIT (4).
    pub max_retransmit: u8,
    /// NSTART: outstanding interactions per peer (1).
    pub nstart: usize,
    /// EXCHANGE_LIFETIME (247 s): how long message ids are remembered for CON.
    pub exchange_lifetime: Duration,
    /// NON_LIFETIME (145 s): how long message ids are remembered for NON.
    pub non_lifetime: Duration,
    /// How long to wait for a response once a request was sent (and, for
    /// CON, acknowledged with an empty ACK). Defaults to EXCHANGE_LIFETIME.
    pub response_timeout: Duration,
    /// How long the application may take to answer a CON request before an
    /// empty ACK is sent and the answer becomes a separate response.
    pub piggyback_delay: Duration,
    /// Token length for new requests, 4 to 8 bytes.
    pub token_len: usize,
    /// Requests queued per peer behind NSTART before `send_request` refuses.
    pub max_queued_per_peer: usize,
    /// Remembered message ids (with cached replies) per peer.
    pub max_dedup_per_peer: usize,
    /// Remembered message ids over all peers.
    pub max_dedup_total: usize,
    /// Incoming requests the application has not answered yet, over all peers;
    /// beyond it requests are answered 5.03.
    pub max_pending_incoming: usize,
    /// Preferred block size for block-wise transfers (16..=1024).
    pub block_size: usize,
    /// Largest body reassembled from blocks, in either direction (4.13 beyond).
    pub max_body_size: usize,
    /// How long an unfinished block-wise transfer is kept.
    pub blockwise_timeout: Duration,
    /// How many times one block exchange of a block-wise transfer is started
    /// again (fresh message id, same block) after it timed out, before the
    /// whole transfer fails. One lost block should not cost a firmware
    /// download of a thousand blocks.
    pub max_block_retries: u8,
    /// Block-wise transfers held at once, each direction: Block1 uploads
    /// being reassembled (a new one beyond this is answered 5.03) and Block2
    /// bodies kept for the next blocks (the oldest is dropped).
    pub max_blockwise_transfers: usize,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            ack_timeout: Duration::from_secs(2),
            ack_random_factor_percent: 150,
            max_retransmit: 4,
            nstart: 1,
            exchange_lifetime: Duration::from_secs(247),
            non_lifetime: Duration::from_secs(145),
            response_timeout: Duration::from_secs(247),
            piggyback_delay: Duration::from_millis(1000),
            token_len: 8,
            max_queued_per_peer: 64,
            max_dedup_per_peer: 32,
            max_dedup_total: 1 << 16,
            max_pending_incoming: 1024,
            block_size: 1024,
            max_body_size: 16 << 20,
            blockwise_timeout: Duration::from_secs(247),
            max_block_retries: 2,
            max_blockwise_transfers: 64,
        }
    }
}

/// Handle of a request this endpoint sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Handle of a request this endpoint received, to answer it with [`Endpoint::respond`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IncomingId(pub u64);

/// Handle of an observation this endpoint serves (it sends the notifications).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObservationId(pub u64);

/// A request, as the application builds it or receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Method.
    pub code: Code,
    /// Options (Uri-Path, Uri-Query, Content-Format...).
    pub options: OptionList,
    /// Whole body; block-wise transfer is done by the endpoint.
    pub payload: Vec<u8>,
    /// Sent as CON (default) or NON.
    pub confirmable: bool,
    /// With a Block2 option: ask for that one block and get its response as
    /// is, Block2 included; the caller asks for the next one (RFC 7959 §2.4
    /// random access, to store a download block by block and resume it at
    /// block N). Without it (default) a Block2 option in a request only
    /// proposes the block size and the endpoint reassembles the body. Set by
    /// [`Request::single_block`]; always false on received requests.
    pub single_block: bool,
}

impl Request {
    /// A confirmable request with no options.
    pub fn new(code: Code) -> Request {
        Request {
            code,
            options: OptionList::new(),
            payload: Vec::new(),
            confirmable: true,
            single_block: false,
        }
    }

    /// Asks for block `block` of the response only (see
    /// [`Request::single_block`](Request#structfield.single_block)).
    pub fn with_single_block2(mut self, block: BlockValue) -> Request {
        self.options.set_uint(number::BLOCK2, block.encode());
        self.single_block = true;
        self
    }

    /// Sets the Uri-Path from `"/a/b"`.
    pub fn with_path(mut self, path: &str) -> Request {
        self.options.set_uri_path(path);
        self
    }

    /// Adds a Uri-Query parameter.
    pub fn with_query(mut self, query: &str) -> Request {
        self.options
            .push(number::URI_QUERY, query.as_bytes().to_vec());
        self
    }

    /// Sets the payload and its Content-Format.
    pub fn with_payload(mut self, content_format: u16, payload: Vec<u8>) -> Request {
        self.options
            .set_uint(number::CONTENT_FORMAT, u32::from(content_format));
        self.payload = payload;
        self
    }

    /// Adds or replaces a uint option.
    pub fn with_uint_option(mut self, option: u16, value: u32) -> Request {
        self.options.set_uint(option, value);
        self
    }

    /// Sends as NON instead of CON.
    pub fn non_confirmable(mut self) -> Request {
        self.confirmable = false;
        self
    }

    /// Uri-Path segments joined with `/`, with a leading `/`.
    pub fn path(&self) -> alloc::string::String {
        let mut s = alloc::string::String::new();
        for seg in self.options.get_all(number::URI_PATH) {
            s.push('/');
            s.push_str(&alloc::string::String::from_utf8_lossy(seg));
        }
        if s.is_empty() {
            s.push('/');
        }
        s
    }
}

/// A response, as the application builds it or receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Response code.
    pub code: Code,
    /// Options.
    pub options: OptionList,
    /// Whole body; block-wise transfer is done by the endpoint.
    pub payload: Vec<u8>,
}

impl Response {
    /// A response with no options and no payload.
    pub fn new(code: Code) -> Response {
        Response {
            code,
            options: OptionList::new(),
            payload: Vec::new(),
        }
    }

    /// Sets the payload and its Content-Format.
    pub fn with_payload(mut self, content_format: u16, payload: Vec<u8>) -> Response {
        self.options
            .set_uint(number::CONTENT_FORMAT, u32::from(content_format));
        self.payload = payload;
        self
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit<P> {
    /// Destination.
    pub peer: P,
    /// The datagram.
    pub bytes: Vec<u8>,
}

/// Why a request this endpoint sent did not get a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// No ACK after MAX_RETRANSMIT retransmissions, or no response in time.
    Timeout,
    /// The peer answered with RST.
    Reset,
    /// A block-wise response grew beyond `max_body_size`.
    BodyTooLarge,
    /// The peer broke the block-wise protocol (unexpected block number or size).
    BlockwiseProtocol,
    /// The request was cancelled by the application.
    Cancelled,
    /// The transport to the peer is gone (its TCP connection closed):
    /// [`Endpoint::peer_gone`].
    Disconnected,
}

/// Why `send_request` refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The peer already has `max_queued_per_peer` requests waiting for NSTART.
    QueueFull,
    /// The payload is larger than `max_body_size`.
    BodyTooLarge,
}

impl core::fmt::Display for SendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SendError::QueueFull => "too many requests queued for this peer",
            SendError::BodyTooLarge => "request body larger than the configured maximum",
        })
    }
}

/// Why an observation this endpoint served ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// The observer answered a notification with RST.
    Reset,
    /// The observer sent a GET with Observe = 1.
    Deregistered,
    /// A confirmable notification was never acknowledged.
    Timeout,
    /// The observer registered again with the same token.
    Replaced,
    /// The transport to the observer is gone: [`Endpoint::peer_gone`].
    Disconnected,
}

/// What happened, for the application.
#[derive(Debug, Clone, PartialEq)]
pub enum Event<P> {
    /// A request arrived (reassembled if it came in blocks). Answer it with
    /// [`Endpoint::respond`] or [`Endpoint::respond_observe`].
    Request {
        /// Handle to answer with.
        id: IncomingId,
        /// Who sent it.
        peer: P,
        /// The request.
        request: Request,
    },
    /// The response to a request (reassembled if it came in blocks). For an
    /// observe request this is the first response; later ones are
    /// [`Event::Notification`]s.
    Response {
        /// The request it answers.
        id: RequestId,
        /// The response.
        response: Response,
    },
    /// A notification newer than the last one, for an observe request.
    Notification {
        /// The observe request.
        id: RequestId,
        /// The notification.
        response: Response,
    },
    /// A request failed.
    RequestFailed {
        /// The request.
        id: RequestId,
        /// Why.
        error: RequestError,
    },
    /// An observation this endpoint served has ended.
    ObservationCancelled {
        /// The observation.
        id: ObservationId,
        /// Why.
        reason: CancelReason,
    },
}

/// What the endpoint remembers about a received message id.
#[derive(Debug, Clone)]
enum Reply {
    /// The request is with the application; nothing sent yet.
    Nothing,
    /// An empty ACK was sent; the response will be separate.
    EmptyAck,
    /// This datagram was the answer (piggybacked response, RST...).
    Bytes(Vec<u8>),
}

#[derive(Debug)]
struct Dedup {
    mid: u16,
    reply: Reply,
}

#[derive(Debug, Default)]
struct PeerState {
    next_mid: u16,
    outstanding: usize,
    queue: VecDeque<RequestId>,
    dedup: VecDeque<Dedup>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConOwner {
    Request(RequestId),
    SeparateResponse,
    Notification(ObservationId),
}

#[derive(Debug)]
struct PendingCon {
    bytes: Vec<u8>,
    transmissions: u8,
    interval: Duration,
    next: Instant,
    owner: ConOwner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Queued,
    AwaitingAck(u16),
    AwaitingResponse,
    Observing,
}

#[derive(Debug)]
struct OutRequest<P> {
    peer: P,
    token: Token,
    request: Request,
    phase: Phase,
    outstanding: bool,
    deadline: Option<Instant>,
    /// Block1 upload: block size in use and bytes acknowledged so far.
    block1: Option<(usize, usize)>,
    /// Block2 download: body so far.
    block2: Option<Vec<u8>>,
    observe: bool,
    last_notification: Option<(u32, Instant)>,
    /// Set on an internal request that fetches the rest of a block-wise
    /// notification for the observe request given here.
    notification_of: Option<RequestId>,
    /// Block exchanges restarted after a timeout so far.
    block_retries: u8,
    /// The caller asked for one block ([`Request::single_block`]): the
    /// response comes as is (no reassembly).
    caller_block2: bool,
}

impl<P> OutRequest<P> {
    /// A request not sent yet: queued, no block-wise or observe state.
    fn queued(peer: P, token: Token, request: Request) -> Self {
        OutRequest {
            peer,
            token,
            request,
            phase: Phase::Queued,
            outstanding: false,
            deadline: None,
            block1: None,
            block2: None,
            observe: false,
            last_notification: None,
            notification_of: None,
            block_retries: 0,
            caller_block2: false,
        }
    }
}

#[derive(Debug)]
struct InRequest<P> {
    peer: P,
    mid: u16,
    token: Token,
    confirmable: bool,
    key: Vec<u8>,
    acked: bool,
    block1_echo: Option<BlockValue>,
    block2_szx: Option<u8>,
    observe: bool,
}

#[derive(Debug)]
struct Observation<P> {
    peer: P,
    token: Token,
    key: Vec<u8>,
    seq: SeqCounter,
    con_mid: Option<u16>,
    non_mids: VecDeque<u16>,
}

#[derive(Debug)]
struct Block1Recv {
    body: Vec<u8>,
    expires: Instant,
}

#[derive(Debug)]
struct Block2Cache {
    code: Code,
    options: OptionList,
    body: Vec<u8>,
    expires: Instant,
}

#[derive(Debug, Clone)]
enum Timer<P> {
    Retransmit(P, u16),
    Deadline(RequestId),
    Piggyback(IncomingId),
    /// An incoming request the application never answered is dropped after EXCHANGE_LIFETIME.
    Abandon(IncomingId),
    Expire,
}

/// The sans-IO CoAP-over-UDP endpoint. `P` is the peer address type
/// (`SocketAddr` for a real driver, a small integer in the simulator); `R`
/// supplies tokens, initial message ids and retransmission jitter.
#[derive(Debug)]
pub struct Endpoint<P, R> {
    config: EndpointConfig,
    rng: R,
    peers: BTreeMap<P, PeerState>,
    pending: BTreeMap<(P, u16), PendingCon>,
    out: BTreeMap<RequestId, OutRequest<P>>,
    by_token: BTreeMap<(P, Token), RequestId>,
    incoming: BTreeMap<IncomingId, InRequest<P>>,
    observations: BTreeMap<ObservationId, Observation<P>>,
    observation_by_token: BTreeMap<(P, Token), ObservationId>,
    block1_recv: BTreeMap<(P, Vec<u8>), Block1Recv>,
    block2_cache: BTreeMap<(P, Vec<u8>), Block2Cache>,
    dedup_order: VecDeque<(Instant, P, u16)>,
    /// When the Expire timer for `dedup_order` is due: one timer for the
    /// queue, not one per remembered message.
    dedup_timer: Option<Instant>,
    timers: BTreeMap<(Instant, u64), Timer<P>>,
    timer_seq: u64,
    next_id: u64,
    transmits: VecDeque<Transmit<P>>,
    events: VecDeque<Event<P>>,
    /// First Uri-Path segments whose GET requests the application answers
    /// block by block itself ([`Endpoint::serve_block2_in_application`]).
    app_block2: Vec<Vec<u8>>,
}

impl<P: Clone + Ord + Debug, R: RandomSource> Endpoint<P, R> {
    /// A new endpoint.
    ///
    /// # Panics
    /// If `config.token_len` is not within 4..=8 or `config.block_size` is
    /// not a power of two within 16..=1024: both are programming errors.
    pub fn new(config: EndpointConfig, rng: R) -> Self {
        assert!(
            (4..=8).contains(&config.token_len),
            "token_len must be 4..=8"
        );
        assert!(
            size_to_szx(config.block_size).is_some(),
            "block_size must be a power of two in 16..=1024"
        );
        Endpoint {
            config,
            rng,
            peers: BTreeMap::new(),
            pending: BTreeMap::new(),
            out: BTreeMap::new(),
            by_token: BTreeMap::new(),
            incoming: BTreeMap::new(),
            observations: BTreeMap::new(),
            observation_by_token: BTreeMap::new(),
            block1_recv: BTreeMap::new(),
            block2_cache: BTreeMap::new(),
            dedup_order: VecDeque::new(),
            dedup_timer: None,
            timers: BTreeMap::new(),
            timer_seq: 0,
            next_id: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            app_block2: Vec::new(),
        }
    }

    /// GET requests whose first Uri-Path segment is `first_segment` are
    /// handed to the application with their Block2 option (block 0 too,
    /// and none at all for a request without one), never answered from the
    /// block-wise cache: the application answers each block with a
    /// response that carries its own Block2 option, which is sent as is.
    /// For large bodies served from storage (firmware packages), so that
    /// no transfer holds a copy of the body and any block can be asked
    /// for first (a resumed download).
    pub fn serve_block2_in_application(&mut self, first_segment: &[u8]) {
        if !self.app_block2.iter().any(|s| s == first_segment) {
            self.app_block2.push(first_segment.to_vec());
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        self.transmits.pop_front()
    }

    /// Next event for the application.
    pub fn poll_event(&mut self) -> Option<Event<P>> {
        self.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.keys().next().map(|(t, _)| *t)
    }

    /// Number of peers with state (outstanding exchanges, queued requests or remembered message ids).
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Number of timers waiting (diagnostics: memory use grows with it).
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// Number of incoming requests the application has not answered yet.
    pub fn pending_incoming(&self) -> usize {
        self.incoming.len()
    }

    /// Number of received message ids remembered for duplicate detection.
    pub fn remembered_ids(&self) -> usize {
        self.peers.values().map(|p| p.dedup.len()).sum()
    }

    /// Number of observations this endpoint serves.
    pub fn observation_count(&self) -> usize {
        self.observations.len()
    }

    fn schedule(&mut self, at: Instant, timer: Timer<P>) {
        self.timer_seq += 1;
        self.timers.insert((at, self.timer_seq), timer);
    }

    fn next_handle(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn peer(&mut self, peer: &P) -> &mut PeerState {
        if !self.peers.contains_key(peer) {
            // A random first message id makes ids of a restarted endpoint
            // unlikely to collide with ids the peer still remembers.
            let next_mid = self.rng.next_u64() as u16;
            self.peers.insert(
                peer.clone(),
                PeerState {
                    next_mid,
                    ..PeerState::default()
                },
            );
        }
        self.peers.get_mut(peer).expect("inserted above")
    }

    fn next_mid(&mut self, peer: &P) -> u16 {
        loop {
            let p = self.peer(peer);
            let mid = p.next_mid;
            p.next_mid = p.next_mid.wrapping_add(1);
            if !self.pending.contains_key(&(peer.clone(), mid)) {
                return mid;
            }
        }
    }

    fn new_token(&mut self, peer: &P) -> Token {
        loop {
            let mut b = [0u8; 8];
            self.rng.fill_bytes(&mut b);
            let token = Token::new(&b[..self.config.token_len]).expect("token_len <= 8");
            if !self.by_token.contains_key(&(peer.clone(), token)) {
                return token;
            }
        }
    }

    fn initial_interval(&mut self) -> Duration {
        let base = self.config.ack_timeout.as_millis() as u64;
        let spread =
            base * u64::from(self.config.ack_random_factor_percent.saturating_sub(100)) / 100;
        Duration::from_millis(base + self.rng.below(spread + 1))
    }

    fn send_con(&mut self, now: Instant, peer: P, mid: u16, bytes: Vec<u8>, owner: ConOwner) {
        let interval = self.initial_interval();
        self.send_con_with(now, peer, mid, bytes, owner, 1, interval);
    }

    #[allow(clippy::too_many_arguments)]
    fn send_con_with(
        &mut self,
        now: Instant,
        peer: P,
        mid: u16,
        bytes: Vec<u8>,
        owner: ConOwner,
        transmissions: u8,
        interval: Duration,
    ) {
        let next = now + interval;
        self.transmits.push_back(Transmit {
            peer: peer.clone(),
            bytes: bytes.clone(),
        });
        self.schedule(next, Timer::Retransmit(peer.clone(), mid));
        self.pending.insert(
            (peer, mid),
            PendingCon {
                bytes,
                transmissions,
                interval,
                next,
                owner,
            },
        );
    }

    // ----------------------------------------------------------------------
    // Sending requests
    // ----------------------------------------------------------------------

    /// Sends `request` to `peer`, queuing it behind NSTART if needed. Bodies
    /// larger than the block size go out block-wise (Block1); block-wise
    /// responses are reassembled. An Observe = 0 option makes it an observe
    /// request: its first response comes as [`Event::Response`], later ones
    /// as [`Event::Notification`]. A request (not an observe) made with
    /// [`Request::with_single_block2`] asks for that one block (RFC 7959
    /// §2.4, to resume a download at block N, say): its response comes as
    /// is, with its Block2 option, and the caller asks for the next block.
    pub fn send_request(
        &mut self,
        now: Instant,
        peer: P,
        request: Request,
    ) -> Result<RequestId, SendError> {
        if request.payload.len() > self.config.max_body_size {
            return Err(SendError::BodyTooLarge);
        }
        let nstart = self.config.nstart;
        let max_queue = self.config.max_queued_per_peer;
        let state = self.peer(&peer);
        let must_queue = state.outstanding >= nstart;
        if must_queue && state.queue.len() >= max_queue {
            return Err(SendError::QueueFull);
        }
        let id = RequestId(self.next_handle());
        let token = self.new_token(&peer);
        let observe = request.code == Code::GET || request.code == Code::FETCH;
        let observe = observe && request.options.uint(number::OBSERVE) == Some(0);
        let caller_block2 =
            !observe && request.single_block && request.options.uint(number::BLOCK2).is_some();
        self.by_token.insert((peer.clone(), token), id);
        self.out.insert(
            id,
            OutRequest {
                observe,
                caller_block2,
                ..OutRequest::queued(peer.clone(), token, request)
            },
        );
        if must_queue {
            self.peer(&peer).queue.push_back(id);
        } else {
            self.start_request(now, id);
        }
        Ok(id)
    }

    /// The token of request `id` while it is in flight or observing (`None`
    /// once it finished or for an unknown id). A server persists it with an
    /// observation so it can [`Endpoint::restore_observation`] after a restart.
    pub fn request_token(&self, id: RequestId) -> Option<Token> {
        self.out.get(&id).map(|r| r.token)
    }

    /// The request `id` as sent (with its options and payload) while it is
    /// in flight or observing; `None` once it finished or for an unknown id.
    pub fn request(&self, id: RequestId) -> Option<&Request> {
        self.out.get(&id).map(|r| &r.request)
    }

    /// Re-attaches an observation this endpoint (or an earlier process of
    /// the same application) established with `peer` under `token`, e.g.
    /// after a restart that lost the in-memory state: notifications carrying
    /// `token` from `peer` then come as [`Event::Notification`] for the
    /// returned id, and [`Endpoint::cancel_observe`] works on it. `request`
    /// is the original observe request (GET or FETCH with Observe = 0, its
    /// Uri-Path, Accept...), reused for the active cancellation. Nothing is
    /// sent. Returns `None` if `request` is not an observe request or the
    /// token is already in use with that peer.
    pub fn restore_observation(
        &mut self,
        peer: P,
        token: Token,
        request: Request,
    ) -> Option<RequestId> {
        let observe = (request.code == Code::GET || request.code == Code::FETCH)
            && request.options.uint(number::OBSERVE) == Some(0);
        if !observe || self.by_token.contains_key(&(peer.clone(), token)) {
            return None;
        }
        let id = RequestId(self.next_handle());
        self.by_token.insert((peer.clone(), token), id);
        self.out.insert(
            id,
            OutRequest {
                observe: true,
                // Established: not outstanding (it holds no NSTART slot), no
                // deadline, and any sequence number counts as fresh for the
                // first notification since the old ordering state is lost.
                phase: Phase::Observing,
                ..OutRequest::queued(peer, token, request)
            },
        );
        Some(id)
    }

    /// Forgets a request: no event will come for it, and a later response or
    /// notification with its token is answered with RST (for an observe
    /// request this is the passive cancellation of RFC 7641 §3.6).
    pub fn cancel_request(&mut self, now: Instant, id: RequestId) {
        if let Some(r) = self.out.remove(&id) {
            self.by_token.remove(&(r.peer.clone(), r.token));
            if let Phase::AwaitingAck(mid) = r.phase {
                self.pending.remove(&(r.peer.clone(), mid));
            }
            if let Some(q) = self.peers.get_mut(&r.peer) {
                q.queue.retain(|x| *x != id);
            }
            if r.outstanding {
                self.release_outstanding(now, &r.peer);
            }
        }
    }

    /// The transport to `peer` is gone (a driver carrying this endpoint over
    /// connections saw the peer's close): each request to it fails now with
    /// [`RequestError::Disconnected`] (queued ones, ones awaiting an ACK or a
    /// response, observe requests holding an observation), each observation
    /// it held of ours ends with [`CancelReason::Disconnected`], and what the
    /// endpoint kept for it (message ids, pending confirmables, datagrams not
    /// yet polled, block-wise state) is forgotten. Without this, a request already handed to the
    /// closed connection would fail only at its response timeout.
    ///
    /// ```
    /// use lwm2m_core::coap::endpoint::RequestError;
    /// use lwm2m_core::coap::{Code, Endpoint, EndpointConfig, Event, Request};
    /// use lwm2m_core::rng::SplitMix64;
    /// use lwm2m_core::time::Instant;
    ///
    /// let mut ep = Endpoint::new(EndpointConfig::default(), SplitMix64::new(7));
    /// let now = Instant::from_millis(0);
    /// let id = ep.send_request(now, 1u8, Request::new(Code::GET)).unwrap();
    /// ep.peer_gone(now, &1);
    /// assert_eq!(
    ///     ep.poll_event(),
    ///     Some(Event::RequestFailed { id, error: RequestError::Disconnected })
    /// );
    /// ```
    pub fn peer_gone(&mut self, now: Instant, peer: &P) {
        // Queued requests must not start when the outstanding ones fail.
        if let Some(state) = self.peers.get_mut(peer) {
            state.queue.clear();
        }
        let requests: Vec<RequestId> = self
            .out
            .iter()
            .filter(|(_, r)| r.peer == *peer)
            .map(|(id, _)| *id)
            .collect();
        for id in requests {
            self.fail_request(now, id, RequestError::Disconnected);
        }
        let observations: Vec<ObservationId> = self
            .observations
            .iter()
            .filter(|(_, o)| o.peer == *peer)
            .map(|(id, _)| *id)
            .collect();
        for id in observations {
            self.end_observation(id, CancelReason::Disconnected);
        }
        self.pending.retain(|(p, _), _| p != peer);
        self.transmits.retain(|t| t.peer != *peer);
        self.block1_recv.retain(|(p, _), _| p != peer);
        self.block2_cache.retain(|(p, _), _| p != peer);
        self.peers.remove(peer);
    }

    /// Actively cancels an observation (RFC 7641 §3.6): sends a GET with
    /// Observe = 1 and the observe request's token and options. Its answer
    /// comes as an [`Event::Response`] for the returned id.
    pub fn cancel_observe(&mut self, now: Instant, id: RequestId) -> Option<RequestId> {
        let r = self.out.get(&id)?;
        if !r.observe {
            return None;
        }
        let (peer, token) = (r.peer.clone(), r.token);
        let mut request = r.request.clone();
        request.options.set_uint(number::OBSERVE, 1);
        // The block size kept from a block-wise first response is not part of the deregistration.
        request.options.remove(number::BLOCK2);
        self.cancel_request(now, id);
        let new_id = RequestId(self.next_handle());
        self.by_token.insert((peer.clone(), token), new_id);
        self.out
            .insert(new_id, OutRequest::queued(peer.clone(), token, request));
        if self.peer(&peer).outstanding >= self.config.nstart {
            self.peer(&peer).queue.push_back(new_id);
        } else {
            self.start_request(now, new_id);
        }
        Some(new_id)
    }

    fn start_request(&mut self, now: Instant, id: RequestId) {
        let block_size = self.config.block_size;
        let Some(r) = self.out.get_mut(&id) else {
            return;
        };
        r.outstanding = true;
        if r.request.payload.len() > block_size && r.block1.is_none() {
            r.block1 = Some((block_size, 0));
        }
        let peer = r.peer.clone();
        self.peer(&peer).outstanding += 1;
        self.transmit_request(now, id);
    }

    /// Builds and sends the next datagram of request `id`: the request itself,
    /// its next Block1 block, or the next Block2 request.
    fn transmit_request(&mut self, now: Instant, id: RequestId) {
        let Some(r) = self.out.get(&id) else { return };
        let peer = r.peer.clone();
        let mut options = r.request.options.clone();
        let mut payload: &[u8] = &r.request.payload;
        if let Some((size, acked)) = r.block1 {
            let end = (acked + size).min(payload.len());
            let more = end < payload.len();
            let num = (acked / size) as u32;
            let block = BlockValue::new(num, more, size).expect("block size validated");
            options.set_uint(number::BLOCK1, block.encode());
            if num == 0 {
                options.set_uint(number::SIZE1, payload.len() as u32);
            }
            payload = &payload[acked..end];
        }
        if let Some(body) = &r.block2 {
            // Follow-up requests for the next response block (RFC 7959 §2.4):
            // same request without Observe and without a request body.
            let size = options
                .uint(number::BLOCK2)
                .and_then(BlockValue::decode)
                .map(|b| b.size());
            let size = size.unwrap_or(self.config.block_size);
            let num = (body.len() / size) as u32;
            let block = BlockValue::new(num, false, size).expect("size from a valid block");
            options.set_uint(number::BLOCK2, block.encode());
            options.remove(number::OBSERVE);
            options.remove(number::BLOCK1);
            options.remove(number::SIZE1);
            if r.block1.is_none() {
                payload = &[];
            }
        }
        let payload = payload.to_vec();
        let confirmable = r.request.confirmable;
        let (code, token) = (r.request.code, r.token);
        let mid = self.next_mid(&peer);
        let mtype = if confirmable {
            MessageType::Con
        } else {
            MessageType::Non
        };
        let bytes = encode(mtype, code, mid, token, &options, &payload);
        let timeout = self.config.response_timeout;
        let r = self.out.get_mut(&id).expect("checked above");
        if confirmable {
            r.phase = Phase::AwaitingAck(mid);
            r.deadline = None;
            self.send_con(now, peer, mid, bytes, ConOwner::Request(id));
        } else {
            r.phase = Phase::AwaitingResponse;
            r.deadline = Some(now + timeout);
            self.schedule(now + timeout, Timer::Deadline(id));
            self.transmits.push_back(Transmit { peer, bytes });
        }
    }

    fn release_outstanding(&mut self, now: Instant, peer: &P) {
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        state.outstanding = state.outstanding.saturating_sub(1);
        if state.outstanding < self.config.nstart {
            if let Some(next) = state.queue.pop_front() {
                self.start_request(now, next);
            }
        }
    }

    fn finish_request(&mut self, now: Instant, id: RequestId, event: Option<Event<P>>) {
        let Some(r) = self.out.get_mut(&id) else {
            return;
        };
        let keep_observing = r.observe
            && matches!(&event, Some(Event::Response { response, .. }) if response.code.is_success() && response.options.contains(number::OBSERVE));
        let was_outstanding = r.outstanding;
        r.outstanding = false;
        let peer = r.peer.clone();
        if keep_observing {
            r.phase = Phase::Observing;
            r.deadline = None;
        } else {
            let r = self.out.remove(&id).expect("present");
            self.by_token.remove(&(r.peer, r.token));
        }
        if let Some(e) = event {
            self.events.push_back(e);
        }
        if was_outstanding {
            self.release_outstanding(now, &peer);
        }
    }

    fn fail_request(&mut self, now: Instant, id: RequestId, error: RequestError) {
        let parent = self.out.get(&id).and_then(|r| r.notification_of);
        match parent {
            // A failed fetch of a block-wise notification just loses that notification.
            Some(_) => self.finish_request(now, id, None),
            None => self.finish_request(now, id, Some(Event::RequestFailed { id, error })),
        }
    }

    // ----------------------------------------------------------------------
    // Receiving
    // ----------------------------------------------------------------------

    /// Processes one received datagram from `peer`.
    pub fn handle_datagram(&mut self, now: Instant, peer: P, bytes: &[u8]) {
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(_) => {
                // RFC 7252 §4.2: a CON with a message format error is rejected
                // with RST when its message id is readable; anything else is dropped.
                if bytes.len() >= 4
                    && bytes[0] >> 6 == 1
                    && MessageType::from_bits(bytes[0] >> 4) == MessageType::Con
                {
                    let mid = u16::from_be_bytes([bytes[2], bytes[3]]);
                    self.send_empty(peer, MessageType::Rst, mid);
                }
                return;
            }
        };
        match msg.mtype {
            MessageType::Ack => self.handle_ack(now, peer, &msg),
            MessageType::Rst => self.handle_rst(now, peer, msg.message_id),
            MessageType::Con | MessageType::Non => {
                if msg.code.is_empty() {
                    // CoAP ping (CON Empty) is answered with RST; NON Empty is meaningless.
                    if msg.mtype == MessageType::Con {
                        self.send_empty(peer, MessageType::Rst, msg.message_id);
                    }
                } else if msg.code.is_request() {
                    self.handle_request(now, peer, &msg);
                } else {
                    self.handle_separate_response(now, peer, &msg);
                }
            }
        }
    }

    /// Queues an empty message (code 0.00, no token) of type `mtype` (RST
    /// or ACK) with message id `mid` to `peer`, and returns its bytes so the
    /// caller can remember them as the reply to a duplicate.
    fn send_empty(&mut self, peer: P, mtype: MessageType, mid: u16) -> Vec<u8> {
        let bytes = encode(
            mtype,
            Code::EMPTY,
            mid,
            Token::EMPTY,
            &OptionList::new(),
            &[],
        );
        self.transmits.push_back(Transmit {
            peer,
            bytes: bytes.clone(),
        });
        bytes
    }

    fn handle_ack(&mut self, now: Instant, peer: P, msg: &Message<'_>) {
        let Some(pending) = self.pending.remove(&(peer.clone(), msg.message_id)) else {
            return;
        };
        match pending.owner {
            ConOwner::Request(id) => {
                let token_ok = self
                    .out
                    .get(&id)
                    .is_some_and(|r| r.token.as_bytes() == msg.token);
                if msg.code.is_empty() {
                    // Separate response follows (RFC 7252 §5.2.2); the interaction
                    // is no longer outstanding for NSTART purposes.
                    let timeout = self.config.response_timeout;
                    if let Some(r) = self.out.get_mut(&id) {
                        r.phase = Phase::AwaitingResponse;
                        r.deadline = Some(now + timeout);
                        self.schedule(now + timeout, Timer::Deadline(id));
                    }
                } else if token_ok {
                    self.handle_response(now, id, msg);
                } else {
                    // A piggybacked response with a foreign token: RFC 7252 §5.3.2
                    // says the ACK still acknowledges, the response is not ours.
                    self.fail_request(now, id, RequestError::Reset);
                }
            }
            ConOwner::Notification(obs) => {
                if let Some(o) = self.observations.get_mut(&obs) {
                    if o.con_mid == Some(msg.message_id) {
                        o.con_mid = None;
                    }
                }
            }
            ConOwner::SeparateResponse => {}
        }
    }

    fn handle_rst(&mut self, now: Instant, peer: P, mid: u16) {
        if let Some(pending) = self.pending.remove(&(peer.clone(), mid)) {
            match pending.owner {
                ConOwner::Request(id) => self.fail_request(now, id, RequestError::Reset),
                ConOwner::Notification(obs) => self.end_observation(obs, CancelReason::Reset),
                ConOwner::SeparateResponse => {}
            }
            return;
        }
        // RST to a NON notification cancels the observation (RFC 7641 §3.6).
        let hit = self
            .observations
            .iter()
            .find(|(_, o)| o.peer == peer && o.non_mids.contains(&mid))
            .map(|(id, _)| *id);
        if let Some(obs) = hit {
            self.end_observation(obs, CancelReason::Reset);
        }
    }

    fn handle_separate_response(&mut self, now: Instant, peer: P, msg: &Message<'_>) {
        let confirmable = msg.mtype == MessageType::Con;
        // A duplicate (its ACK or RST was lost) gets the same answer again
        // (RFC 7252 §4.5) and is not processed twice. Without the new ACK the
        // server retransmits until it gives up, and drops an observation.
        if let Some(reply) = self.cached_reply(&peer, msg.message_id) {
            if let (true, Reply::Bytes(b)) = (confirmable, reply) {
                let bytes = b.clone();
                self.transmits.push_back(Transmit { peer, bytes });
            }
            return;
        }
        let id = Token::new(msg.token)
            .and_then(|token| self.by_token.get(&(peer.clone(), token)).copied());
        let Some(id) = id else {
            // Unknown token: reject, which also cancels a forgotten
            // observation (RFC 7641 §3.6). A CON is rejected with RST
            // *instead of* an ACK (RFC 7252 §5.3.2): an ACK first tells the
            // server the notification was wanted, and it ignores the RST.
            let rst = self.send_empty(peer.clone(), MessageType::Rst, msg.message_id);
            self.remember(now, &peer, msg.message_id, Reply::Bytes(rst), confirmable);
            return;
        };
        if confirmable {
            let ack = self.send_empty(peer.clone(), MessageType::Ack, msg.message_id);
            self.remember(now, &peer, msg.message_id, Reply::Bytes(ack), true);
        } else {
            self.remember(now, &peer, msg.message_id, Reply::Nothing, false);
        }
        if let Some(Phase::AwaitingAck(mid)) = self.out.get(&id).map(|r| r.phase) {
            // The response overtook the ACK: stop retransmitting (RFC 7252 §5.2.2).
            self.pending.remove(&(peer.clone(), mid));
        }
        self.handle_response(now, id, msg);
    }

    fn handle_response(&mut self, now: Instant, id: RequestId, msg: &Message<'_>) {
        let Some(r) = self.out.get_mut(&id) else {
            return;
        };
        let response = Response {
            code: msg.code,
            options: OptionList::from_message(msg),
            payload: msg.payload.to_vec(),
        };

        // Notifications on an established observation.
        if r.phase == Phase::Observing {
            let Some(seq) = msg.observe() else {
                // A final response without Observe ends the observation.
                self.finish_request(now, id, Some(Event::Notification { id, response }));
                return;
            };
            let fresh = r
                .last_notification
                .is_none_or(|(v1, t1)| is_newer(v1, t1, seq, now));
            if !fresh {
                return;
            }
            r.last_notification = Some((seq, now));
            if let Some(b2) = msg.block2().filter(|b| b.more && b.num == 0) {
                self.fetch_notification_rest(now, id, b2, response);
            } else {
                let ended = !response.code.is_success();
                self.events.push_back(Event::Notification { id, response });
                if ended {
                    if let Some(r) = self.out.remove(&id) {
                        self.by_token.remove(&(r.peer, r.token));
                    }
                }
            }
            return;
        }

        // Block1 upload in progress.
        if let Some((size, acked)) = r.block1 {
            let total = r.request.payload.len();
            let sent_end = (acked + size).min(total);
            if msg.code == Code::CONTINUE && sent_end < total {
                // The server may ask for smaller blocks (RFC 7959 §2.5 early negotiation).
                let next_size = msg
                    .block1()
                    .map(|b| b.size())
                    .filter(|s| *s < size)
                    .unwrap_or(size);
                let acked_now = match msg.block1() {
                    Some(b) if b.size() < size => b.offset() + b.size(),
                    _ => sent_end,
                };
                r.block1 = Some((next_size, acked_now));
                self.transmit_request(now, id);
                return;
            }
            if msg.code == Code::REQUEST_ENTITY_TOO_LARGE && acked == 0 {
                if let Some(b) = msg.block1().filter(|b| b.size() < size) {
                    // 4.13 with a smaller Block1: start over with that size.
                    r.block1 = Some((b.size(), 0));
                    self.transmit_request(now, id);
                    return;
                }
            }
            if msg.code == Code::CONTINUE {
                self.fail_request(now, id, RequestError::BlockwiseProtocol);
                return;
            }
            // Final response to the last block: fall through, it may carry Block2.
            r.block1 = None;
            r.request.payload.clear();
            r.request.options.remove(number::SIZE1);
        }

        // Block2 download (unless the caller asked for one block).
        if let Some(b2) = msg.block2().filter(|_| !r.caller_block2) {
            let max = self.config.max_body_size;
            let body = r.block2.get_or_insert_with(Vec::new);
            if b2.offset() != body.len() {
                self.fail_request(now, id, RequestError::BlockwiseProtocol);
                return;
            }
            if body.len() + msg.payload.len() > max {
                self.fail_request(now, id, RequestError::BodyTooLarge);
                return;
            }
            body.extend_from_slice(msg.payload);
            if b2.more {
                if msg.payload.len() != b2.size() {
                    self.fail_request(now, id, RequestError::BlockwiseProtocol);
                    return;
                }
                if r.observe && b2.num == 0 {
                    r.last_notification = msg.observe().map(|s| (s, now));
                }
                // Keep the server's block size for the following requests.
                r.request.options.set_uint(
                    number::BLOCK2,
                    BlockValue {
                        num: 0,
                        more: false,
                        szx: b2.szx,
                    }
                    .encode(),
                );
                self.transmit_request(now, id);
                return;
            }
            let body = r.block2.take().unwrap_or_default();
            let mut response = response;
            response.payload = body;
            response.options.remove(number::BLOCK2);
            if let Some(parent) = r.notification_of {
                self.finish_request(now, id, None);
                if self.out.contains_key(&parent) {
                    self.events.push_back(Event::Notification {
                        id: parent,
                        response,
                    });
                }
                return;
            }
            if r.observe {
                // The first response of an observation keeps the Observe value of block 0.
                if let Some((seq, _)) = r.last_notification {
                    response.options.set_uint(number::OBSERVE, seq);
                }
            }
            self.finish_request(now, id, Some(Event::Response { id, response }));
            return;
        }

        if r.observe {
            if let Some(seq) = msg.observe() {
                r.last_notification = Some((seq, now));
            }
        }
        self.finish_request(now, id, Some(Event::Response { id, response }));
    }

    /// A notification arrived with Block2 M=1: fetch the rest with a normal
    /// GET carrying Block2, as RFC 7959 §2.6 describes, then deliver it.
    fn fetch_notification_rest(
        &mut self,
        now: Instant,
        parent: RequestId,
        b2: BlockValue,
        first: Response,
    ) {
        let Some(r) = self.out.get(&parent) else {
            return;
        };
        let peer = r.peer.clone();
        let mut request = r.request.clone();
        request.options.remove(number::OBSERVE);
        request.options.set_uint(
            number::BLOCK2,
            BlockValue {
                num: 0,
                more: false,
                szx: b2.szx,
            }
            .encode(),
        );
        if request.code == Code::FETCH {
            // FETCH bodies are kept: they select what the notification carries.
        } else {
            request.payload.clear();
        }
        let token = self.new_token(&peer);
        let id = RequestId(self.next_handle());
        self.by_token.insert((peer.clone(), token), id);
        self.out.insert(
            id,
            OutRequest {
                block2: Some(first.payload),
                notification_of: Some(parent),
                ..OutRequest::queued(peer.clone(), token, request)
            },
        );
        if self.peer(&peer).outstanding >= self.config.nstart {
            self.peer(&peer).queue.push_back(id);
        } else {
            // Mark outstanding without resetting block2 state.
            if let Some(r) = self.out.get_mut(&id) {
                r.outstanding = true;
            }
            self.peer(&peer).outstanding += 1;
            self.transmit_request(now, id);
        }
    }

    /// Records a received message id (and what was answered) for duplicate detection.
    fn remember(&mut self, now: Instant, peer: &P, mid: u16, reply: Reply, confirmable: bool) {
        let lifetime = if confirmable {
            self.config.exchange_lifetime
        } else {
            self.config.non_lifetime
        };
        let per_peer = self.config.max_dedup_per_peer;
        let state = self.peer(peer);
        if state.dedup.len() >= per_peer {
            state.dedup.pop_front();
        }
        if state.dedup.capacity() == 0 {
            // Most peers (a fleet of devices each sending one Update) have
            // one remembered id at a time: room for one, not the four a
            // first push would reserve.
            state.dedup.reserve_exact(1);
        }
        state.dedup.push_back(Dedup { mid, reply });
        self.dedup_order
            .push_back((now + lifetime, peer.clone(), mid));
        if self.dedup_order.len() > self.config.max_dedup_total {
            if let Some((_, p, m)) = self.dedup_order.pop_front() {
                self.forget_mid(&p, m);
            }
        }
        self.schedule_dedup_expiry();
    }

    /// Keeps one Expire timer at the expiry of the oldest remembered id.
    fn schedule_dedup_expiry(&mut self) {
        let front = self.dedup_order.front().map(|(at, _, _)| *at);
        if let Some(at) = front {
            if self.dedup_timer != Some(at) {
                self.dedup_timer = Some(at);
                self.schedule(at, Timer::Expire);
            }
        }
    }

    fn forget_mid(&mut self, peer: &P, mid: u16) {
        if let Some(state) = self.peers.get_mut(peer) {
            if let Some(pos) = state.dedup.iter().position(|d| d.mid == mid) {
                state.dedup.remove(pos);
            }
        }
        self.prune_peer(peer);
    }

    /// Drops the state of a peer with nothing in progress. Message-id
    /// collisions with CONs still pending after a restart of the counter are
    /// avoided by `next_mid`.
    fn prune_peer(&mut self, peer: &P) {
        if self
            .peers
            .get(peer)
            .is_some_and(|s| s.outstanding == 0 && s.queue.is_empty() && s.dedup.is_empty())
        {
            self.peers.remove(peer);
        }
    }

    fn cached_reply(&self, peer: &P, mid: u16) -> Option<&Reply> {
        self.peers
            .get(peer)?
            .dedup
            .iter()
            .find(|d| d.mid == mid)
            .map(|d| &d.reply)
    }

    fn set_reply(&mut self, peer: &P, mid: u16, reply: Reply) {
        if let Some(d) = self
            .peers
            .get_mut(peer)
            .and_then(|p| p.dedup.iter_mut().find(|d| d.mid == mid))
        {
            d.reply = reply;
        }
    }

    fn handle_request(&mut self, now: Instant, peer: P, msg: &Message<'_>) {
        let confirmable = msg.mtype == MessageType::Con;
        if let Some(reply) = self.cached_reply(&peer, msg.message_id) {
            // Duplicate (RFC 7252 §4.5): answer again, never run the handler twice.
            match reply {
                Reply::Bytes(b) => {
                    let bytes = b.clone();
                    self.transmits.push_back(Transmit { peer, bytes });
                }
                Reply::EmptyAck if confirmable => {
                    self.send_empty(peer, MessageType::Ack, msg.message_id);
                }
                _ => {}
            }
            return;
        }
        self.remember(now, &peer, msg.message_id, Reply::Nothing, confirmable);
        let token = Token::new(msg.token).unwrap_or_default();

        if msg.check_options().is_err() {
            self.answer_directly(&peer, msg, Response::new(Code::BAD_OPTION));
            return;
        }
        if !matches!(
            msg.code,
            Code::GET
                | Code::POST
                | Code::PUT
                | Code::DELETE
                | Code::FETCH
                | Code::PATCH
                | Code::IPATCH
        ) {
            self.answer_directly(&peer, msg, Response::new(Code::METHOD_NOT_ALLOWED));
            return;
        }
        let malformed_block = (msg.has_option(number::BLOCK1) && msg.block1().is_none())
            || (msg.has_option(number::BLOCK2) && msg.block2().is_none());
        if malformed_block {
            self.answer_directly(&peer, msg, Response::new(Code::BAD_REQUEST));
            return;
        }
        let key = request_key(msg);
        let app_block2 = msg.code == Code::GET
            && msg
                .uri_path()
                .next()
                .is_some_and(|first| self.app_block2.iter().any(|s| s == first));

        // A request for a later block of a response we hold (RFC 7959 §2.4).
        if let Some(b2) = msg.block2().filter(|_| !app_block2) {
            if b2.num > 0 {
                self.serve_block2(now, &peer, msg, &key, b2);
                return;
            }
        }

        // Block1 upload (RFC 7959 §2.5).
        let mut payload = msg.payload.to_vec();
        let mut block1_echo = None;
        if let Some(b1) = msg.block1() {
            match self.receive_block1(now, &peer, msg, &key, b1) {
                Block1Outcome::Answered => return,
                Block1Outcome::Complete(body, echo) => {
                    payload = body;
                    block1_echo = Some(echo);
                }
            }
        }

        if self.incoming.len() >= self.config.max_pending_incoming {
            self.answer_directly(&peer, msg, Response::new(Code::SERVICE_UNAVAILABLE));
            return;
        }

        // Observe deregistration by GET with Observe = 1 (RFC 7641 §3.6).
        let observe = msg.observe();
        if observe == Some(1) {
            if let Some(obs) = self
                .observation_by_token
                .get(&(peer.clone(), token))
                .copied()
            {
                self.end_observation(obs, CancelReason::Deregistered);
            }
        }

        let mut options = OptionList::from_message(msg);
        options.remove(number::BLOCK1);
        options.remove(number::SIZE1);
        let block2_szx = msg.block2().map(|b| b.szx).filter(|_| !app_block2);
        if !app_block2 {
            options.remove(number::BLOCK2);
        }
        let id = IncomingId(self.next_handle());
        self.incoming.insert(
            id,
            InRequest {
                peer: peer.clone(),
                mid: msg.message_id,
                token,
                confirmable,
                key,
                acked: false,
                block1_echo,
                block2_szx,
                observe: observe == Some(0) && matches!(msg.code, Code::GET | Code::FETCH),
            },
        );
        if confirmable {
            self.schedule(now + self.config.piggyback_delay, Timer::Piggyback(id));
        } else {
            self.schedule(now + self.config.exchange_lifetime, Timer::Abandon(id));
        }
        let request = Request {
            code: msg.code,
            options,
            payload,
            confirmable,
            single_block: false,
        };
        self.events.push_back(Event::Request { id, peer, request });
    }

    /// Answers a request without involving the application (errors, 2.31, cached blocks).
    fn answer_directly(&mut self, peer: &P, msg: &Message<'_>, response: Response) {
        let token = Token::new(msg.token).unwrap_or_default();
        // Piggybacked on the ACK of a CON; a NON gets a NON with a new id.
        let (mtype, mid) = if msg.mtype == MessageType::Con {
            (MessageType::Ack, msg.message_id)
        } else {
            (MessageType::Non, self.next_mid(peer))
        };
        let bytes = encode(
            mtype,
            response.code,
            mid,
            token,
            &response.options,
            &response.payload,
        );
        self.send_reply(peer, msg.message_id, bytes);
    }

    /// Queues `bytes` to `peer` and remembers them as the reply to the
    /// request with message id `request_mid`, for its duplicates.
    fn send_reply(&mut self, peer: &P, request_mid: u16, bytes: Vec<u8>) {
        self.transmits.push_back(Transmit {
            peer: peer.clone(),
            bytes: bytes.clone(),
        });
        self.set_reply(peer, request_mid, Reply::Bytes(bytes));
    }

    fn receive_block1(
        &mut self,
        now: Instant,
        peer: &P,
        msg: &Message<'_>,
        key: &[u8],
        b1: BlockValue,
    ) -> Block1Outcome {
        let max = self.config.max_body_size;
        let our_szx = size_to_szx(self.config.block_size).expect("validated");
        let too_large = |this: &mut Self| {
            let mut resp = Response::new(Code::REQUEST_ENTITY_TOO_LARGE);
            resp.options.set_uint(number::SIZE1, max as u32);
            this.block1_recv.remove(&(peer.clone(), key.to_vec()));
            this.answer_directly(peer, msg, resp);
            Block1Outcome::Answered
        };
        if msg.size1().is_some_and(|s| s as usize > max) {
            return too_large(self);
        }
        let map_key = (peer.clone(), key.to_vec());
        if b1.num == 0 {
            self.block1_recv.remove(&map_key);
        }
        let received = self.block1_recv.get(&map_key).map_or(0, |s| s.body.len());
        if b1.more && b1.num > 0 && b1.offset() + b1.size().min(self.config.block_size) == received
        {
            // The block we acknowledged last, sent again in a new exchange
            // after our 2.31 was lost: acknowledge it again, append nothing.
            let szx = b1.szx.min(our_szx);
            let num = (b1.offset() / (1usize << (szx + 4))) as u32;
            let mut resp = Response::new(Code::CONTINUE);
            resp.options.set_uint(
                number::BLOCK1,
                BlockValue {
                    num,
                    more: true,
                    szx,
                }
                .encode(),
            );
            self.answer_directly(peer, msg, resp);
            return Block1Outcome::Answered;
        }
        if b1.num == 0 && self.block1_recv.len() >= self.config.max_blockwise_transfers {
            self.answer_directly(peer, msg, Response::new(Code::SERVICE_UNAVAILABLE));
            return Block1Outcome::Answered;
        }
        if b1.offset() != received || (b1.num > 0 && !self.block1_recv.contains_key(&map_key)) {
            self.block1_recv.remove(&map_key);
            self.answer_directly(peer, msg, Response::new(Code::REQUEST_ENTITY_INCOMPLETE));
            return Block1Outcome::Answered;
        }
        if b1.more && msg.payload.len() != b1.size() {
            // Only the last block may be short (RFC 7959 §2.2).
            self.block1_recv.remove(&map_key);
            self.answer_directly(peer, msg, Response::new(Code::BAD_REQUEST));
            return Block1Outcome::Answered;
        }
        // Early negotiation: keep only our block size, and say so in the 2.31.
        let (take, szx) = if b1.szx > our_szx && b1.more {
            (self.config.block_size, our_szx)
        } else {
            (msg.payload.len(), b1.szx)
        };
        let chunk = &msg.payload[..take.min(msg.payload.len())];
        if received + chunk.len() > max {
            return too_large(self);
        }
        let expires = now + self.config.blockwise_timeout;
        let state = self
            .block1_recv
            .entry(map_key.clone())
            .or_insert(Block1Recv {
                body: Vec::new(),
                expires,
            });
        state.body.extend_from_slice(chunk);
        state.expires = expires;
        let acked_num = (received / (1usize << (szx + 4))) as u32;
        let more_to_come = b1.more || chunk.len() < msg.payload.len();
        if more_to_come {
            self.schedule(expires, Timer::Expire);
            let mut resp = Response::new(Code::CONTINUE);
            resp.options.set_uint(
                number::BLOCK1,
                BlockValue {
                    num: acked_num,
                    more: true,
                    szx,
                }
                .encode(),
            );
            self.answer_directly(peer, msg, resp);
            return Block1Outcome::Answered;
        }
        let body = self
            .block1_recv
            .remove(&map_key)
            .map(|s| s.body)
            .unwrap_or_default();
        Block1Outcome::Complete(
            body,
            BlockValue {
                num: b1.num,
                more: false,
                szx: b1.szx,
            },
        )
    }

    fn serve_block2(
        &mut self,
        now: Instant,
        peer: &P,
        msg: &Message<'_>,
        key: &[u8],
        b2: BlockValue,
    ) {
        let map_key = (peer.clone(), key.to_vec());
        let Some(cache) = self.block2_cache.get_mut(&map_key) else {
            // RFC 7959 does not name a code for a block of a body we no longer
            // hold; 4.08 tells the client to start the transfer again.
            self.answer_directly(peer, msg, Response::new(Code::REQUEST_ENTITY_INCOMPLETE));
            return;
        };
        cache.expires = now + self.config.blockwise_timeout;
        let start = b2.offset();
        if start >= cache.body.len() && !(start == 0 && cache.body.is_empty()) {
            self.answer_directly(peer, msg, Response::new(Code::BAD_REQUEST));
            return;
        }
        let end = (start + b2.size()).min(cache.body.len());
        let more = end < cache.body.len();
        let mut resp = Response {
            code: cache.code,
            options: cache.options.clone(),
            payload: cache.body[start..end].to_vec(),
        };
        resp.options.remove(number::OBSERVE);
        resp.options.set_uint(
            number::BLOCK2,
            BlockValue {
                num: b2.num,
                more,
                szx: b2.szx,
            }
            .encode(),
        );
        // The body stays cached after the last block until it expires: the
        // client may ask for that block again if our answer was lost.
        self.answer_directly(peer, msg, resp);
    }

    // ----------------------------------------------------------------------
    // Answering requests
    // ----------------------------------------------------------------------

    /// Answers an incoming request: piggybacked on the ACK while the
    /// piggyback delay runs, as a separate CON response after it, as a NON
    /// response to a NON request. Bodies larger than the block size (or the
    /// block size the client asked for) go out block-wise. Returns false if
    /// `id` is unknown or already answered.
    pub fn respond(&mut self, now: Instant, id: IncomingId, response: Response) -> bool {
        let Some(req) = self.incoming.remove(&id) else {
            return false;
        };
        self.send_response(now, req, response, None);
        true
    }

    /// Answers an observe request (GET/FETCH with Observe = 0) and, if the
    /// response is a success, registers the observation: later notifications
    /// go out with [`Endpoint::notify`]. An existing observation with the
    /// same peer and token is replaced. Returns `None` if the request was not
    /// an observe request, the response not a success, or `id` unknown (the
    /// response is sent all the same in the first two cases).
    pub fn respond_observe(
        &mut self,
        now: Instant,
        id: IncomingId,
        response: Response,
    ) -> Option<ObservationId> {
        let req = self.incoming.remove(&id)?;
        if !req.observe || !response.code.is_success() {
            self.send_response(now, req, response, None);
            return None;
        }
        let obs = ObservationId(id.0);
        if let Some(old) = self
            .observation_by_token
            .get(&(req.peer.clone(), req.token))
            .copied()
        {
            self.end_observation(old, CancelReason::Replaced);
        }
        let first = self.rng.below(1 << 16) as u32 + 2;
        let mut seq = SeqCounter::new(first);
        let value = seq.next_value();
        self.observations.insert(
            obs,
            Observation {
                peer: req.peer.clone(),
                token: req.token,
                key: req.key.clone(),
                seq,
                con_mid: None,
                non_mids: VecDeque::new(),
            },
        );
        self.observation_by_token
            .insert((req.peer.clone(), req.token), obs);
        self.send_response(now, req, response, Some(value));
        Some(obs)
    }

    /// Sends a notification for an observation this endpoint serves, CON or
    /// NON. A CON notification still being retransmitted is replaced by this
    /// newer one, which keeps its retransmission state (RFC 7641 §4.5.2). A
    /// non-success code ends the observation. Returns false if the
    /// observation is unknown.
    pub fn notify(
        &mut self,
        now: Instant,
        id: ObservationId,
        response: Response,
        confirmable: bool,
    ) -> bool {
        let Some(o) = self.observations.get_mut(&id) else {
            return false;
        };
        let seq = o.seq.next_value();
        let (peer, token, key) = (o.peer.clone(), o.token, o.key.clone());
        let previous_con = o.con_mid.take();
        let mut options = response.options.clone();
        let ends = !response.code.is_success();
        if !ends {
            options.set_uint(number::OBSERVE, seq);
        }
        let block_size = self.config.block_size;
        let payload = if response.payload.len() > block_size {
            self.cache_block2(now, &peer, key, &response);
            options.set_uint(
                number::BLOCK2,
                BlockValue::new(0, true, block_size)
                    .expect("valid")
                    .encode(),
            );
            options.set_uint(number::SIZE2, response.payload.len() as u32);
            &response.payload[..block_size]
        } else {
            &response.payload[..]
        };
        let mid = self.next_mid(&peer);
        let mtype = if confirmable {
            MessageType::Con
        } else {
            MessageType::Non
        };
        let bytes = encode(mtype, response.code, mid, token, &options, payload);
        if confirmable {
            let carried = previous_con.and_then(|m| self.pending.remove(&(peer.clone(), m)));
            match carried {
                Some(p) => self.send_con_with(
                    now,
                    peer,
                    mid,
                    bytes,
                    ConOwner::Notification(id),
                    p.transmissions,
                    p.interval,
                ),
                None => self.send_con(now, peer, mid, bytes, ConOwner::Notification(id)),
            }
            if let Some(o) = self.observations.get_mut(&id) {
                o.con_mid = Some(mid);
            }
        } else {
            self.transmits.push_back(Transmit { peer, bytes });
            if let Some(o) = self.observations.get_mut(&id) {
                if o.non_mids.len() >= 4 {
                    o.non_mids.pop_front();
                }
                o.non_mids.push_back(mid);
            }
        }
        if ends {
            self.remove_observation(id);
        }
        true
    }

    /// Stops serving an observation without telling the observer (its next
    /// notification would simply never come). Prefer [`Endpoint::notify`]
    /// with an error code, which tells it.
    pub fn remove_observation(&mut self, id: ObservationId) -> bool {
        let Some(o) = self.observations.remove(&id) else {
            return false;
        };
        self.observation_by_token.remove(&(o.peer, o.token));
        true
    }

    fn end_observation(&mut self, id: ObservationId, reason: CancelReason) {
        if self.remove_observation(id) {
            self.events
                .push_back(Event::ObservationCancelled { id, reason });
        }
    }

    fn cache_block2(&mut self, now: Instant, peer: &P, key: Vec<u8>, response: &Response) {
        let expires = now + self.config.blockwise_timeout;
        let mut options = response.options.clone();
        options.set_uint(number::SIZE2, response.payload.len() as u32);
        let map_key = (peer.clone(), key);
        if !self.block2_cache.contains_key(&map_key)
            && self.block2_cache.len() >= self.config.max_blockwise_transfers
        {
            let oldest = self
                .block2_cache
                .iter()
                .min_by_key(|(_, c)| c.expires)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.block2_cache.remove(&k);
            }
        }
        self.block2_cache.insert(
            map_key,
            Block2Cache {
                code: response.code,
                options,
                body: response.payload.clone(),
                expires,
            },
        );
        self.schedule(expires, Timer::Expire);
    }

    fn send_response(
        &mut self,
        now: Instant,
        req: InRequest<P>,
        response: Response,
        observe: Option<u32>,
    ) {
        let mut options = response.options.clone();
        if let Some(seq) = observe {
            options.set_uint(number::OBSERVE, seq);
        }
        if let Some(echo) = req.block1_echo {
            options.set_uint(number::BLOCK1, echo.encode());
        }
        let block_size = req.block2_szx.map_or(self.config.block_size, |szx| {
            (1usize << (szx + 4)).min(self.config.block_size)
        });
        // A response that carries its own Block2 option is one block the
        // application cut (see `serve_block2_in_application`).
        let own_block = response.options.uint(number::BLOCK2).is_some();
        let payload: &[u8] = if own_block {
            &response.payload
        } else if response.payload.len() > block_size {
            self.cache_block2(now, &req.peer, req.key.clone(), &response);
            options.set_uint(
                number::BLOCK2,
                BlockValue::new(0, true, block_size)
                    .expect("valid")
                    .encode(),
            );
            options.set_uint(number::SIZE2, response.payload.len() as u32);
            &response.payload[..block_size]
        } else {
            if req.block2_szx.is_some() {
                options.set_uint(
                    number::BLOCK2,
                    BlockValue::new(0, false, block_size)
                        .expect("valid")
                        .encode(),
                );
            }
            &response.payload
        };
        if req.confirmable && !req.acked {
            let bytes = encode(
                MessageType::Ack,
                response.code,
                req.mid,
                req.token,
                &options,
                payload,
            );
            self.send_reply(&req.peer, req.mid, bytes);
        } else if req.confirmable {
            let mid = self.next_mid(&req.peer);
            let bytes = encode(
                MessageType::Con,
                response.code,
                mid,
                req.token,
                &options,
                payload,
            );
            self.send_con(now, req.peer, mid, bytes, ConOwner::SeparateResponse);
        } else {
            let mid = self.next_mid(&req.peer);
            let bytes = encode(
                MessageType::Non,
                response.code,
                mid,
                req.token,
                &options,
                payload,
            );
            self.send_reply(&req.peer, req.mid, bytes);
        }
    }

    // ----------------------------------------------------------------------
    // Timers
    // ----------------------------------------------------------------------

    /// Runs everything due at `now`: retransmissions, exchange failures,
    /// empty ACKs for slow answers, expiry of remembered ids and transfers.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            match timer {
                Timer::Retransmit(peer, mid) => self.retransmit(now, peer, mid),
                Timer::Deadline(id) => {
                    let due = self.out.get(&id).is_some_and(|r| {
                        r.phase == Phase::AwaitingResponse && r.deadline.is_some_and(|d| d <= now)
                    });
                    if due {
                        self.fail_request(now, id, RequestError::Timeout);
                    }
                }
                Timer::Piggyback(id) => {
                    if let Some(req) = self.incoming.get_mut(&id) {
                        if !req.acked {
                            req.acked = true;
                            let (peer, mid) = (req.peer.clone(), req.mid);
                            self.send_empty(peer.clone(), MessageType::Ack, mid);
                            self.set_reply(&peer, mid, Reply::EmptyAck);
                        }
                        let abandon = now + self.config.exchange_lifetime;
                        self.schedule(abandon, Timer::Abandon(id));
                    }
                }
                Timer::Abandon(id) => {
                    self.incoming.remove(&id);
                }
                Timer::Expire => self.expire(now),
            }
        }
    }

    fn retransmit(&mut self, now: Instant, peer: P, mid: u16) {
        let key = (peer.clone(), mid);
        let Some(p) = self.pending.get_mut(&key) else {
            return;
        };
        if p.next > now {
            return;
        }
        if p.transmissions > self.config.max_retransmit {
            let p = self.pending.remove(&key).expect("present");
            match p.owner {
                ConOwner::Request(id) => {
                    let max_retries = self.config.max_block_retries;
                    let retry = self.out.get_mut(&id).is_some_and(|r| {
                        let mid_transfer =
                            r.block1.is_some_and(|(_, acked)| acked > 0) || r.block2.is_some();
                        let ok = mid_transfer && r.block_retries < max_retries;
                        if ok {
                            r.block_retries += 1;
                        }
                        ok
                    });
                    if retry {
                        self.transmit_request(now, id);
                    } else {
                        self.fail_request(now, id, RequestError::Timeout);
                    }
                }
                ConOwner::Notification(obs) => self.end_observation(obs, CancelReason::Timeout),
                ConOwner::SeparateResponse => {}
            }
            return;
        }
        p.transmissions += 1;
        p.interval *= 2;
        p.next = now + p.interval;
        let (next, bytes) = (p.next, p.bytes.clone());
        self.transmits.push_back(Transmit {
            peer: peer.clone(),
            bytes,
        });
        self.schedule(next, Timer::Retransmit(peer, mid));
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _, _)) = self.dedup_order.front() {
            if *at > now {
                break;
            }
            let (_, peer, mid) = self.dedup_order.pop_front().expect("front exists");
            self.forget_mid(&peer, mid);
        }
        if self.dedup_timer.is_some_and(|t| t <= now) {
            self.dedup_timer = None;
        }
        self.schedule_dedup_expiry();
        self.block1_recv.retain(|_, s| s.expires > now);
        self.block2_cache.retain(|_, s| s.expires > now);
    }
}

enum Block1Outcome {
    Answered,
    Complete(Vec<u8>, BlockValue),
}

/// The options that identify "the same resource request" for block-wise
/// transfers: code plus every cache-key option except the block options
/// themselves and Observe.
fn request_key(msg: &Message<'_>) -> Vec<u8> {
    let mut key = Vec::with_capacity(32);
    key.push(msg.code.0);
    for o in msg.options() {
        if matches!(o.number, number::BLOCK1 | number::BLOCK2 | number::OBSERVE)
            || option::is_no_cache_key(o.number)
        {
            continue;
        }
        key.extend_from_slice(&o.number.to_be_bytes());
        key.extend_from_slice(&(o.value.len() as u16).to_be_bytes());
        key.extend_from_slice(o.value);
    }
    if msg.code == Code::FETCH {
        // FETCH bodies select the resource (RFC 8132 §2.1).
        key.extend_from_slice(msg.payload);
    }
    key
}

fn encode(
    mtype: MessageType,
    code: Code,
    mid: u16,
    token: Token,
    options: &OptionList,
    payload: &[u8],
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(16 + payload.len());
    let mut w =
        MessageWriter::udp(&mut buf, mtype, code, mid, token.as_bytes()).expect("token <= 8 bytes");
    options
        .write_to(&mut w)
        .expect("OptionList is sorted and values are bounded");
    w.finish(payload);
    buf
}
