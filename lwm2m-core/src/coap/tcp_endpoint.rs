//! The sans-IO CoAP-over-TCP message layer of one connection (RFC 8323).
//!
//! Over a reliable stream there are no message types, message ids,
//! acknowledgements or duplicates: a [`TcpConnection`] frames messages, runs
//! the Capabilities and Settings exchange (7.01 CSM, which must be the first
//! message each side sends), answers Ping with Pong, handles Release and
//! Abort, and matches responses to requests by token only. Observe
//! notifications are plain responses with the request's token and need no
//! acknowledgement.
//!
//! The driver owns the socket and:
//!
//! 1. sends [`TcpConnection::take_outgoing`] after creating the connection
//!    (our CSM is already in it) and after every call that writes a frame,
//! 2. passes every chunk it reads, split anywhere, to
//!    [`TcpConnection::handle_bytes`],
//! 3. reads [`TcpEvent`]s from [`TcpConnection::poll_event`],
//! 4. closes the socket once [`TcpConnection::is_closed`] and the outgoing
//!    buffer is flushed, and calls [`TcpConnection::handle_eof`] when the
//!    peer closes first.
//!
//! Block-wise transfer (RFC 8323 §6) is not done here: bodies travel in one
//! frame, bounded by the peer's Max-Message-Size and our own.
//!
//! ```
//! use lwm2m_core::coap::tcp_endpoint::{TcpConfig, TcpConnection, TcpEvent};
//! use lwm2m_core::coap::{Code, Request, Response};
//! use lwm2m_core::rng::SplitMix64;
//!
//! let mut server = TcpConnection::new(TcpConfig::default(), SplitMix64::new(1));
//! let mut client = TcpConnection::new(TcpConfig::default(), SplitMix64::new(2));
//! client.handle_bytes(&server.take_outgoing());
//! server.handle_bytes(&client.take_outgoing());
//! let id = server.send_request(Request::new(Code::GET).with_path("/3/0/0")).unwrap();
//! client.handle_bytes(&server.take_outgoing());
//! let incoming = loop {
//!     match client.poll_event() {
//!         Some(TcpEvent::Request { id, .. }) => break id,
//!         Some(_) => continue,
//!         None => panic!("no request"),
//!     }
//! };
//! client.respond(incoming, Response::new(Code::CONTENT).with_payload(0, b"OMA".to_vec())).unwrap();
//! server.handle_bytes(&client.take_outgoing());
//! let response = loop {
//!     match server.poll_event() {
//!         Some(TcpEvent::Response { id: r, response, .. }) if r == id => break response,
//!         Some(_) => continue,
//!         None => panic!("no response"),
//!     }
//! };
//! assert_eq!(response.payload, b"OMA");
//! ```

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::code::Code;
use super::endpoint::{IncomingId, Request, RequestId, Response};
use super::message::{Message, MessageWriter, OptionList, ParseError, Token, WriteError};
use super::option::{self, number};
use super::tcp::{self, signal_option, DEFAULT_MAX_MESSAGE_SIZE};
use crate::rng::RandomSource;

/// Bounds and settings of a [`TcpConnection`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpConfig {
    /// Largest frame we accept, advertised as Max-Message-Size in our CSM.
    /// A peer frame announcing more aborts the connection.
    pub max_message_size: usize,
    /// Requests we sent that may wait for a response at once (observations included).
    pub max_pending_requests: usize,
    /// Requests received and not answered yet; more are answered 5.03.
    pub max_pending_incoming: usize,
    /// Token length for our requests, 1 to 8 bytes.
    pub token_len: usize,
    /// Events queued for the application; past this the connection aborts
    /// (the application is not reading, so the peer must be slowed down).
    pub max_queued_events: usize,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            max_message_size: 64 * 1024,
            max_pending_requests: 32,
            max_pending_incoming: 32,
            token_len: 4,
            max_queued_events: 256,
        }
    }
}

/// Handle of an observation this connection serves (sends notifications for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TcpObservationId(pub u64);

/// Why the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// We sent 7.05 Abort: the peer broke the protocol.
    WeAborted(ProtocolError),
    /// The peer sent 7.05 Abort, with its diagnostic payload.
    PeerAborted(String),
    /// We sent 7.04 Release.
    WeReleased,
    /// The peer sent 7.04 Release.
    PeerReleased,
    /// The stream ended ([`TcpConnection::handle_eof`]).
    Eof,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::WeAborted(e) => write!(f, "aborted: {e}"),
            CloseReason::PeerAborted(d) => write!(f, "peer aborted: {d:?}"),
            CloseReason::WeReleased => f.write_str("released by us"),
            CloseReason::PeerReleased => f.write_str("released by the peer"),
            CloseReason::Eof => f.write_str("stream closed"),
        }
    }
}

/// How the peer broke RFC 8323; each one makes us send 7.05 Abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The peer's first message is not a CSM (RFC 8323 §5.3).
    FirstMessageNotCsm(Code),
    /// A CSM carries a critical option we do not know.
    BadCsmOption(u16),
    /// A frame does not parse (or announces more than our Max-Message-Size).
    Frame(ParseError),
    /// An unknown signalling code, or a class 7 message with a critical option we do not know.
    BadSignal(Code),
    /// The application fell behind by more than `max_queued_events` events.
    EventQueueFull,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::FirstMessageNotCsm(c) => {
                write!(f, "first message has code {c} (expected 7.01 CSM)")
            }
            ProtocolError::BadCsmOption(n) => {
                write!(f, "CSM carries the unknown critical option {n}")
            }
            ProtocolError::Frame(e) => write!(f, "bad frame: {e}"),
            ProtocolError::BadSignal(c) => write!(
                f,
                "signalling message {c} is unknown or carries an unknown critical option"
            ),
            ProtocolError::EventQueueFull => {
                f.write_str("too many events queued for the application")
            }
        }
    }
}

/// Why a request, response or signal could not be written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TcpSendError {
    /// The connection is closed.
    Closed,
    /// `max_pending_requests` requests already wait for a response.
    TooManyPending,
    /// The frame would exceed the peer's Max-Message-Size (there is no
    /// block-wise transfer over TCP here).
    FrameTooLarge {
        /// Size of the frame.
        size: usize,
        /// The peer's Max-Message-Size.
        max: usize,
    },
    /// The id is not a request waiting for our answer (or observation we serve).
    UnknownIncoming,
    /// The options cannot be encoded.
    Write(WriteError),
}

impl fmt::Display for TcpSendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TcpSendError::Closed => f.write_str("the connection is closed"),
            TcpSendError::TooManyPending => {
                f.write_str("too many requests waiting for a response on this connection")
            }
            TcpSendError::FrameTooLarge { size, max } => write!(
                f,
                "frame of {size} bytes exceeds the peer's Max-Message-Size of {max}"
            ),
            TcpSendError::UnknownIncoming => {
                f.write_str("no request or observation with this id waits for an answer")
            }
            TcpSendError::Write(e) => write!(f, "cannot encode the message: {e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TcpSendError {}

/// What happened on the connection, for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpEvent {
    /// The peer's CSM arrived (the first one, or an update later).
    Csm {
        /// The peer's Max-Message-Size (1152 when it sent none).
        max_message_size: usize,
        /// The peer supports block-wise transfer over this connection.
        block_wise: bool,
    },
    /// A request arrived. Answer with [`TcpConnection::respond`] or
    /// [`TcpConnection::respond_observe`].
    Request {
        /// Handle to answer with.
        id: IncomingId,
        /// The request.
        request: Request,
    },
    /// The first response to one of our requests.
    Response {
        /// The request it answers.
        id: RequestId,
        /// The request's token.
        token: Token,
        /// The response.
        response: Response,
    },
    /// A later response (with Observe) to one of our observe requests.
    Notification {
        /// The observe request.
        id: RequestId,
        /// The observe request's token.
        token: Token,
        /// The notification.
        response: Response,
    },
    /// A request of ours will get no response: the connection closed first.
    RequestFailed {
        /// The request.
        id: RequestId,
    },
    /// The Pong answering our [`TcpConnection::ping`].
    Pong {
        /// The Ping's token.
        token: Token,
    },
    /// The connection is closed; nothing more is sent or received.
    Closed(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Our CSM is written; the peer's has not arrived.
    AwaitingCsm,
    Open,
    Closed,
}

#[derive(Debug)]
struct Pending {
    id: RequestId,
    observe: bool,
    /// A first response arrived: later ones are notifications.
    answered: bool,
}

#[derive(Debug)]
struct Served {
    token: Token,
    /// Next Observe sequence number, for an observation.
    observe_seq: Option<u32>,
}

/// One CoAP-over-TCP connection, either side (see the [module docs](self)).
#[derive(Debug)]
pub struct TcpConnection<R> {
    config: TcpConfig,
    rng: R,
    state: State,
    input: Vec<u8>,
    output: Vec<u8>,
    events: VecDeque<TcpEvent>,
    peer_max_message_size: usize,
    peer_block_wise: bool,
    pending: BTreeMap<Token, Pending>,
    incoming: BTreeMap<IncomingId, Served>,
    next_id: u64,
}

impl<R: RandomSource> TcpConnection<R> {
    /// A connection whose CSM (Max-Message-Size = `config.max_message_size`)
    /// is already in the outgoing buffer: RFC 8323 §5.3 wants it first.
    pub fn new(config: TcpConfig, rng: R) -> Self {
        let mut c = TcpConnection {
            config,
            rng,
            state: State::AwaitingCsm,
            input: Vec::new(),
            output: Vec::new(),
            events: VecDeque::new(),
            peer_max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            peer_block_wise: false,
            pending: BTreeMap::new(),
            incoming: BTreeMap::new(),
            next_id: 0,
        };
        let max = u32::try_from(c.config.max_message_size).unwrap_or(u32::MAX);
        c.write_signal(
            Code::CSM,
            &[],
            &[(signal_option::MAX_MESSAGE_SIZE, max)],
            b"",
        );
        c
    }

    /// Bytes to send on the stream (drained).
    pub fn take_outgoing(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.output)
    }

    /// Whether bytes wait in the outgoing buffer.
    pub fn has_outgoing(&self) -> bool {
        !self.output.is_empty()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<TcpEvent> {
        self.events.pop_front()
    }

    /// Whether the connection is closed (after Release, Abort or end of stream).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the peer's CSM arrived and the connection is not closed.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// The peer's Max-Message-Size (1152 until its CSM says otherwise).
    pub fn peer_max_message_size(&self) -> usize {
        self.peer_max_message_size
    }

    /// Whether the peer's CSM offered block-wise transfer.
    pub fn peer_block_wise(&self) -> bool {
        self.peer_block_wise
    }

    /// Requests waiting for a response (observations included).
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// Bytes received and not yet forming a whole frame.
    pub fn buffered_input(&self) -> usize {
        self.input.len()
    }

    /// Feeds bytes read from the stream, split anywhere. Complete frames are
    /// processed at once; the rest waits for the next call. A protocol
    /// violation writes 7.05 Abort and closes the connection.
    pub fn handle_bytes(&mut self, bytes: &[u8]) {
        if self.state == State::Closed {
            return;
        }
        self.input.extend_from_slice(bytes);
        let mut start = 0;
        while self.state != State::Closed {
            let rest = &self.input[start..];
            let len = match tcp::frame_len(rest, self.config.max_message_size) {
                Ok(Some(len)) if len <= rest.len() => len,
                Ok(_) => break,
                Err(e) => {
                    self.abort(ProtocolError::Frame(e));
                    break;
                }
            };
            let frame = self.input[start..start + len].to_vec();
            start += len;
            self.handle_frame(&frame);
        }
        if self.state == State::Closed {
            self.input = Vec::new();
        } else {
            self.input.drain(..start);
        }
    }

    /// The peer closed the stream: pending requests fail and the connection closes.
    pub fn handle_eof(&mut self) {
        if self.state != State::Closed {
            self.close(CloseReason::Eof);
        }
    }

    fn handle_frame(&mut self, frame: &[u8]) {
        let m = match tcp::parse(frame) {
            Ok(m) => m,
            Err(e) => return self.abort(ProtocolError::Frame(e)),
        };
        if self.state == State::AwaitingCsm && m.code != Code::CSM {
            return self.abort(ProtocolError::FirstMessageNotCsm(m.code));
        }
        if m.code.is_signalling() {
            self.handle_signal(&m);
        } else if m.code.is_request() {
            self.handle_request(&m);
        } else if m.code.is_response() {
            self.handle_response(&m);
        }
        // 0.00 Empty is a keep-alive and is ignored (RFC 8323 §3.4).
        if self.events.len() > self.config.max_queued_events {
            self.abort(ProtocolError::EventQueueFull);
        }
    }

    fn handle_signal(&mut self, m: &Message<'_>) {
        // In signalling messages even option numbers are critical (RFC 8323 §5.2);
        // each code defines its own, all of which we know are below 5.
        let known: &[u16] = match m.code {
            Code::CSM => &[
                signal_option::MAX_MESSAGE_SIZE,
                signal_option::BLOCK_WISE_TRANSFER,
            ],
            Code::PING | Code::PONG => &[signal_option::CUSTODY],
            Code::RELEASE => &[signal_option::ALTERNATIVE_ADDRESS, signal_option::HOLD_OFF],
            Code::ABORT => &[signal_option::BAD_CSM_OPTION],
            other => return self.abort(ProtocolError::BadSignal(other)),
        };
        if let Some(o) = m
            .options()
            .find(|o| o.number % 2 == 0 && !known.contains(&o.number))
        {
            return self.abort(if m.code == Code::CSM {
                ProtocolError::BadCsmOption(o.number)
            } else {
                ProtocolError::BadSignal(m.code)
            });
        }
        match m.code {
            Code::CSM => {
                if let Some(v) = m.option(signal_option::MAX_MESSAGE_SIZE) {
                    let Some(size) = option::decode_uint(v) else {
                        return self
                            .abort(ProtocolError::BadCsmOption(signal_option::MAX_MESSAGE_SIZE));
                    };
                    self.peer_max_message_size = size as usize;
                }
                if m.has_option(signal_option::BLOCK_WISE_TRANSFER) {
                    self.peer_block_wise = true;
                }
                self.state = State::Open;
                self.events.push_back(TcpEvent::Csm {
                    max_message_size: self.peer_max_message_size,
                    block_wise: self.peer_block_wise,
                });
            }
            Code::PING => self.write_signal(Code::PONG, m.token, &[], b""),
            Code::PONG => {
                if let Some(token) = Token::new(m.token) {
                    self.events.push_back(TcpEvent::Pong { token });
                }
            }
            Code::RELEASE => self.close(CloseReason::PeerReleased),
            _ => {
                let diagnostic = String::from_utf8_lossy(m.payload).into_owned();
                self.close(CloseReason::PeerAborted(diagnostic));
            }
        }
    }

    fn handle_request(&mut self, m: &Message<'_>) {
        let token = Token::new(m.token).unwrap_or_default();
        if let Err(bad) = m.check_options() {
            let mut r = Response::new(Code::BAD_OPTION);
            r.payload = alloc::format!("{bad}").into_bytes();
            // Only fails if even an error response exceeds the peer's limit: then it gets none.
            let _ = self.write_response(token, &r, None);
            return;
        }
        if self.incoming.len() >= self.config.max_pending_incoming {
            let _ = self.write_response(token, &Response::new(Code::SERVICE_UNAVAILABLE), None);
            return;
        }
        let id = IncomingId(self.fresh_id());
        self.incoming.insert(
            id,
            Served {
                token,
                observe_seq: None,
            },
        );
        let mut request = Request::new(m.code);
        request.options = OptionList::from_message(m);
        request.payload = m.payload.to_vec();
        request.confirmable = false;
        self.events.push_back(TcpEvent::Request { id, request });
    }

    fn handle_response(&mut self, m: &Message<'_>) {
        let Some(token) = Token::new(m.token) else {
            return;
        };
        let Some(pending) = self.pending.get_mut(&token) else {
            // A response nobody waits for (late, or for a cancelled request): dropped.
            return;
        };
        let mut response = Response::new(m.code);
        response.options = OptionList::from_message(m);
        response.payload = m.payload.to_vec();
        let id = pending.id;
        let keeps_observing = pending.observe && m.observe().is_some() && m.code.is_success();
        if pending.answered {
            self.events.push_back(TcpEvent::Notification {
                id,
                token,
                response,
            });
        } else {
            pending.answered = true;
            self.events.push_back(TcpEvent::Response {
                id,
                token,
                response,
            });
        }
        if !keeps_observing {
            self.pending.remove(&token);
        }
    }

    /// Writes a request. With an Observe option 0 the token stays registered
    /// and later responses come as [`TcpEvent::Notification`]s until
    /// [`TcpConnection::cancel_request`]. Requests may be written before the
    /// peer's CSM arrives; they are then bounded by the default 1152 bytes.
    pub fn send_request(&mut self, request: Request) -> Result<RequestId, TcpSendError> {
        let token = self.fresh_token();
        self.send_request_with_token(token, request)
    }

    /// [`TcpConnection::send_request`] with the caller's token (a layer above
    /// that matches by token itself). A request still pending with that
    /// token is forgotten: its answers now go to this one.
    pub fn send_request_with_token(
        &mut self,
        token: Token,
        request: Request,
    ) -> Result<RequestId, TcpSendError> {
        if self.state == State::Closed {
            return Err(TcpSendError::Closed);
        }
        let replaces = self.pending.contains_key(&token);
        if !replaces && self.pending.len() >= self.config.max_pending_requests {
            return Err(TcpSendError::TooManyPending);
        }
        self.write_message(request.code, token, &request.options, &request.payload)?;
        let id = RequestId(self.fresh_id());
        let observe = request.options.uint(number::OBSERVE) == Some(0);
        self.pending.insert(
            token,
            Pending {
                id,
                observe,
                answered: false,
            },
        );
        Ok(id)
    }

    /// The token of a request still waiting for a response or observing.
    pub fn request_token(&self, id: RequestId) -> Option<Token> {
        self.pending
            .iter()
            .find(|(_, p)| p.id == id)
            .map(|(t, _)| *t)
    }

    /// The token of a received request (or served observation) not answered yet.
    pub fn incoming_token(&self, id: IncomingId) -> Option<Token> {
        self.incoming.get(&id).map(|s| s.token)
    }

    /// Forgets a request: a later response to it is dropped. Returns whether it was pending.
    pub fn cancel_request(&mut self, id: RequestId) -> bool {
        match self.request_token(id) {
            Some(t) => self.pending.remove(&t).is_some(),
            None => false,
        }
    }

    /// The token of received request `id` if it waits for its first answer.
    fn unanswered(&self, id: IncomingId) -> Result<Token, TcpSendError> {
        match self.incoming.get(&id) {
            Some(served) if served.observe_seq.is_none() => Ok(served.token),
            _ => Err(TcpSendError::UnknownIncoming),
        }
    }

    /// Answers a received request.
    pub fn respond(&mut self, id: IncomingId, response: Response) -> Result<(), TcpSendError> {
        let token = self.unanswered(id)?;
        self.write_response(token, &response, None)?;
        self.incoming.remove(&id);
        Ok(())
    }

    /// Answers a received observe request with its first notification
    /// (Observe 0 is added) and keeps serving it: send the next ones with
    /// [`TcpConnection::notify`], end it with [`TcpConnection::end_observation`].
    pub fn respond_observe(
        &mut self,
        id: IncomingId,
        response: Response,
    ) -> Result<TcpObservationId, TcpSendError> {
        let token = self.unanswered(id)?;
        self.write_response(token, &response, Some(0))?;
        if let Some(s) = self.incoming.get_mut(&id) {
            s.observe_seq = Some(1);
        }
        Ok(TcpObservationId(id.0))
    }

    /// Sends a notification of an observation (no acknowledgement over TCP).
    pub fn notify(&mut self, id: TcpObservationId, response: Response) -> Result<(), TcpSendError> {
        let served = self
            .incoming
            .get(&IncomingId(id.0))
            .ok_or(TcpSendError::UnknownIncoming)?;
        let (token, Some(seq)) = (served.token, served.observe_seq) else {
            return Err(TcpSendError::UnknownIncoming);
        };
        self.write_response(token, &response, Some(seq))?;
        if let Some(s) = self.incoming.get_mut(&IncomingId(id.0)) {
            // Observe is 24 bits (RFC 7641 §3.2).
            s.observe_seq = Some((seq + 1) & 0xFF_FFFF);
        }
        Ok(())
    }

    /// Stops serving an observation. Returns whether it existed.
    pub fn end_observation(&mut self, id: TcpObservationId) -> bool {
        self.incoming.remove(&IncomingId(id.0)).is_some()
    }

    /// Writes 7.02 Ping with a fresh token; the peer's Pong comes as [`TcpEvent::Pong`].
    pub fn ping(&mut self) -> Result<Token, TcpSendError> {
        if self.state == State::Closed {
            return Err(TcpSendError::Closed);
        }
        let token = self.fresh_token();
        self.write_signal(Code::PING, token.as_bytes(), &[], b"");
        Ok(token)
    }

    /// Writes 7.04 Release and closes the connection (the driver flushes
    /// the outgoing buffer, then closes the socket).
    pub fn release(&mut self) {
        if self.state != State::Closed {
            self.write_signal(Code::RELEASE, &[], &[], b"");
            self.close(CloseReason::WeReleased);
        }
    }

    fn abort(&mut self, error: ProtocolError) {
        let bad_csm: &[(u16, u32)] = match error {
            ProtocolError::BadCsmOption(n) => &[(signal_option::BAD_CSM_OPTION, n as u32)],
            _ => &[],
        };
        let diagnostic = alloc::format!("{error}");
        self.write_signal(Code::ABORT, &[], bad_csm, diagnostic.as_bytes());
        self.close(CloseReason::WeAborted(error));
    }

    fn close(&mut self, reason: CloseReason) {
        self.state = State::Closed;
        for (_, p) in core::mem::take(&mut self.pending) {
            self.events.push_back(TcpEvent::RequestFailed { id: p.id });
        }
        self.incoming.clear();
        self.events.push_back(TcpEvent::Closed(reason));
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn fresh_token(&mut self) -> Token {
        let len = self
            .config
            .token_len
            .clamp(1, super::message::MAX_TOKEN_LEN);
        loop {
            let mut bytes = [0u8; super::message::MAX_TOKEN_LEN];
            self.rng.fill_bytes(&mut bytes[..len]);
            let token = Token::new(&bytes[..len]).unwrap_or_default();
            if !self.pending.contains_key(&token) {
                return token;
            }
        }
    }

    fn write_response(
        &mut self,
        token: Token,
        response: &Response,
        observe: Option<u32>,
    ) -> Result<(), TcpSendError> {
        if self.state == State::Closed {
            return Err(TcpSendError::Closed);
        }
        let mut options = response.options.clone();
        if let Some(seq) = observe {
            options.set_uint(number::OBSERVE, seq);
        }
        self.write_message(response.code, token, &options, &response.payload)
    }

    /// Writes one frame, refusing it if it exceeds the peer's limit.
    fn write_message(
        &mut self,
        code: Code,
        token: Token,
        options: &OptionList,
        payload: &[u8],
    ) -> Result<(), TcpSendError> {
        let start = self.output.len();
        let mut w = MessageWriter::tcp(&mut self.output, code, token.as_bytes())
            .map_err(TcpSendError::Write)?;
        if let Err(e) = options.write_to(&mut w) {
            self.output.truncate(start);
            return Err(TcpSendError::Write(e));
        }
        let size = w.finish(payload);
        if size > self.peer_max_message_size {
            self.output.truncate(start);
            return Err(TcpSendError::FrameTooLarge {
                size,
                max: self.peer_max_message_size,
            });
        }
        Ok(())
    }

    /// Writes a signalling message; its options are uints and ours are tiny,
    /// so encoding cannot fail.
    fn write_signal(&mut self, code: Code, token: &[u8], options: &[(u16, u32)], payload: &[u8]) {
        if let Ok(mut w) = MessageWriter::tcp(&mut self.output, code, token) {
            for &(n, v) in options {
                let _ = w.uint_option(n, v);
            }
            w.finish(payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coap::tcp::tests::frame;
    use crate::rng::SplitMix64;
    use alloc::vec;

    type Conn = TcpConnection<SplitMix64>;

    fn conn(config: TcpConfig) -> Conn {
        TcpConnection::new(config, SplitMix64::new(7))
    }

    fn events(c: &mut Conn) -> Vec<TcpEvent> {
        core::iter::from_fn(|| c.poll_event()).collect()
    }

    /// A CSM from the peer with Max-Message-Size 1152 (0x0480).
    const PEER_CSM: [u8; 5] = [0x30, 0xE1, 0x22, 0x04, 0x80];

    /// A connection that has sent its CSM and received the peer's.
    fn open(config: TcpConfig) -> Conn {
        let mut c = conn(config);
        c.take_outgoing();
        c.handle_bytes(&PEER_CSM);
        assert_eq!(
            events(&mut c),
            [TcpEvent::Csm {
                max_message_size: 1152,
                block_wise: false
            }]
        );
        c
    }

    #[test]
    fn our_csm_comes_first_with_our_max_message_size() {
        let mut c = conn(TcpConfig::default());
        // Len 4, TKL 0, 7.01, option delta 2 length 3, 65536 = 0x010000.
        assert_eq!(c.take_outgoing(), [0x40, 0xE1, 0x23, 0x01, 0x00, 0x00]);
        assert!(!c.is_open());
        c.handle_bytes(&[0x30, 0xE1, 0x22, 0x04, 0x80, 0x10, 0xE1, 0x40]);
        // A second CSM (here Block-Wise-Transfer only) updates the settings.
        assert_eq!(
            events(&mut c),
            [
                TcpEvent::Csm {
                    max_message_size: 1152,
                    block_wise: false
                },
                TcpEvent::Csm {
                    max_message_size: 1152,
                    block_wise: true
                }
            ]
        );
        assert!(c.is_open());
    }

    #[test]
    fn first_message_not_csm_is_aborted() {
        let mut c = conn(TcpConfig::default());
        c.take_outgoing();
        let get = frame(Code::GET, &[1], &[(number::URI_PATH, b"3")], b"");
        c.handle_bytes(&get);
        let diag = b"first message has code 0.01 (expected 7.01 CSM)";
        assert_eq!(c.take_outgoing(), frame(Code::ABORT, &[], &[], diag));
        assert_eq!(
            events(&mut c),
            [TcpEvent::Closed(CloseReason::WeAborted(
                ProtocolError::FirstMessageNotCsm(Code::GET)
            ))]
        );
        assert!(c.is_closed());
        // Nothing more is read or written.
        c.handle_bytes(&PEER_CSM);
        assert!(events(&mut c).is_empty());
        assert_eq!(
            c.send_request(Request::new(Code::GET)),
            Err(TcpSendError::Closed)
        );
    }

    #[test]
    fn unknown_critical_csm_option_is_aborted_with_bad_csm_option() {
        let mut c = conn(TcpConfig::default());
        c.take_outgoing();
        // CSM with option 6 (even: critical, unknown), empty.
        c.handle_bytes(&[0x10, 0xE1, 0x60]);
        let out = c.take_outgoing();
        let m = tcp::parse(&out).unwrap();
        assert_eq!(m.code, Code::ABORT);
        assert_eq!(m.uint_option(signal_option::BAD_CSM_OPTION), Some(6));
        // An elective (odd) unknown option is ignored.
        let mut c = conn(TcpConfig::default());
        c.take_outgoing();
        c.handle_bytes(&[0x10, 0xE1, 0x70]);
        assert!(c.is_open());
        assert!(c.take_outgoing().is_empty());
    }

    #[test]
    fn frame_beyond_our_limit_is_aborted_before_it_is_buffered() {
        let mut c = open(TcpConfig {
            max_message_size: 100,
            ..TcpConfig::default()
        });
        // Len nibble 13, extended 200-13: a 203-byte frame announced.
        c.handle_bytes(&[0xD0, 187, 0x45]);
        assert_eq!(
            events(&mut c),
            [TcpEvent::Closed(CloseReason::WeAborted(
                ProtocolError::Frame(ParseError::FrameTooLarge {
                    size: 203,
                    max: 100
                })
            ))]
        );
        assert_eq!(tcp::parse(&c.take_outgoing()).unwrap().code, Code::ABORT);
        assert_eq!(c.buffered_input(), 0);
    }

    #[test]
    fn ping_is_answered_with_pong_echoing_the_token() {
        let mut c = open(TcpConfig::default());
        c.handle_bytes(&[0x01, 0xE2, 0xAB]);
        assert_eq!(c.take_outgoing(), [0x01, 0xE3, 0xAB]);
        let token = c.ping().unwrap();
        let ping = c.take_outgoing();
        assert_eq!(ping[1], 0xE2);
        assert_eq!(&ping[2..], token.as_bytes());
        let mut pong = ping.clone();
        pong[1] = 0xE3;
        c.handle_bytes(&pong);
        assert_eq!(events(&mut c), [TcpEvent::Pong { token }]);
    }

    #[test]
    fn responses_match_requests_by_token() {
        let mut c = open(TcpConfig::default());
        let a = c
            .send_request(Request::new(Code::GET).with_path("/3/0/0"))
            .unwrap();
        let b = c
            .send_request(Request::new(Code::GET).with_path("/3/0/1"))
            .unwrap();
        let out = c.take_outgoing();
        let first_len = tcp::frame_len(&out, usize::MAX).unwrap().unwrap();
        let (fa, fb) = out.split_at(first_len);
        let (ma, mb) = (tcp::parse(fa).unwrap(), tcp::parse(fb).unwrap());
        assert_eq!(ma.token.len(), 4);
        assert_eq!(Some(Token::new(ma.token).unwrap()), c.request_token(a));
        assert_eq!(
            ma.uri_path().collect::<Vec<_>>(),
            [&b"3"[..], &b"0"[..], &b"0"[..]]
        );
        // Answered in the other order, with an unknown token in between (dropped).
        let mut input = frame(Code::CONTENT, mb.token, &[], b"1");
        input.extend(frame(Code::CONTENT, &[9, 9, 9, 9, 9], &[], b"?"));
        input.extend(frame(Code::NOT_FOUND, ma.token, &[], b""));
        c.handle_bytes(&input);
        let ev = events(&mut c);
        assert_eq!(ev.len(), 2);
        assert!(
            matches!(&ev[0], TcpEvent::Response { id, response, .. } if *id == b && response.payload == b"1")
        );
        assert!(
            matches!(&ev[1], TcpEvent::Response { id, response, .. } if *id == a && response.code == Code::NOT_FOUND)
        );
        assert_eq!(c.pending_requests(), 0);
    }

    #[test]
    fn observe_notifications_follow_the_first_response_without_acks() {
        let mut c = open(TcpConfig::default());
        let id = c
            .send_request(
                Request::new(Code::GET)
                    .with_path("/3/0/9")
                    .with_uint_option(number::OBSERVE, 0),
            )
            .unwrap();
        let out = c.take_outgoing();
        let token = tcp::parse(&out).unwrap().token.to_vec();
        for (seq, body) in [(0u8, b"90"), (1, b"80"), (2, b"70")] {
            c.handle_bytes(&frame(
                Code::CONTENT,
                &token,
                &[(number::OBSERVE, &[seq])],
                body,
            ));
        }
        let ev = events(&mut c);
        assert!(matches!(&ev[0], TcpEvent::Response { id: r, .. } if *r == id));
        assert!(
            matches!(&ev[1], TcpEvent::Notification { id: r, response, .. } if *r == id && response.payload == b"80")
        );
        assert!(
            matches!(&ev[2], TcpEvent::Notification { id: r, response, .. } if *r == id && response.payload == b"70")
        );
        // Nothing is written back: no ACKs over TCP.
        assert!(c.take_outgoing().is_empty());
        assert!(c.cancel_request(id));
        c.handle_bytes(&frame(
            Code::CONTENT,
            &token,
            &[(number::OBSERVE, &[3])],
            b"60",
        ));
        assert!(events(&mut c).is_empty());
    }

    #[test]
    fn requests_are_answered_and_observations_served() {
        let mut c = open(TcpConfig::default());
        c.handle_bytes(&frame(
            Code::GET,
            &[0x42],
            &[(number::OBSERVE, &[]), (number::URI_PATH, b"3")],
            b"",
        ));
        let Some(TcpEvent::Request { id, request }) = c.poll_event() else {
            panic!("no request")
        };
        assert_eq!(request.path(), "/3");
        let obs = c.respond_observe(id, Response::new(Code::CONTENT)).unwrap();
        c.notify(obs, Response::new(Code::CONTENT)).unwrap();
        // Token 0x42, Observe 0 (empty value), then Observe 1.
        assert_eq!(
            c.take_outgoing(),
            [0x11, 0x45, 0x42, 0x60, 0x21, 0x45, 0x42, 0x61, 0x01]
        );
        assert_eq!(
            c.respond(id, Response::new(Code::CONTENT)),
            Err(TcpSendError::UnknownIncoming)
        );
        assert!(c.end_observation(obs));
        assert_eq!(
            c.notify(obs, Response::new(Code::CONTENT)),
            Err(TcpSendError::UnknownIncoming)
        );
    }

    #[test]
    fn unknown_critical_option_in_a_request_gets_4_02() {
        let mut c = open(TcpConfig::default());
        // Option 9 is critical (odd) and unknown.
        c.handle_bytes(&frame(Code::GET, &[5], &[(9, b"x")], b""));
        assert!(events(&mut c).is_empty());
        let out = c.take_outgoing();
        let m = tcp::parse(&out).unwrap();
        assert_eq!((m.code, m.token), (Code::BAD_OPTION, &[5u8][..]));
    }

    #[test]
    fn bounds_on_pending_requests_and_incoming_requests() {
        let mut c = open(TcpConfig {
            max_pending_requests: 2,
            max_pending_incoming: 1,
            ..TcpConfig::default()
        });
        c.send_request(Request::new(Code::GET)).unwrap();
        c.send_request(Request::new(Code::GET)).unwrap();
        assert_eq!(
            c.send_request(Request::new(Code::GET)),
            Err(TcpSendError::TooManyPending)
        );
        c.take_outgoing();
        c.handle_bytes(&frame(Code::GET, &[1], &[], b""));
        c.handle_bytes(&frame(Code::GET, &[2], &[], b""));
        assert_eq!(events(&mut c).len(), 1);
        assert_eq!(c.take_outgoing(), [0x01, 0xA3, 0x02]);
    }

    #[test]
    fn frames_beyond_the_peers_limit_are_refused() {
        let mut c = open(TcpConfig::default());
        let err = c
            .send_request(Request::new(Code::PUT).with_payload(0, vec![0; 1200]))
            .unwrap_err();
        assert!(matches!(err, TcpSendError::FrameTooLarge { max: 1152, .. }));
        assert!(c.take_outgoing().is_empty());
        assert_eq!(c.pending_requests(), 0);
    }

    #[test]
    fn release_and_eof_fail_pending_requests() {
        let mut c = open(TcpConfig::default());
        let id = c.send_request(Request::new(Code::GET)).unwrap();
        c.handle_bytes(&[0x00, 0xE4]);
        assert_eq!(
            events(&mut c),
            [
                TcpEvent::RequestFailed { id },
                TcpEvent::Closed(CloseReason::PeerReleased)
            ]
        );
        let mut c = open(TcpConfig::default());
        let id = c.send_request(Request::new(Code::GET)).unwrap();
        c.handle_eof();
        assert_eq!(
            events(&mut c),
            [
                TcpEvent::RequestFailed { id },
                TcpEvent::Closed(CloseReason::Eof)
            ]
        );
        let mut c = open(TcpConfig::default());
        c.take_outgoing();
        c.release();
        assert_eq!(c.take_outgoing(), [0x00, 0xE4]);
        assert!(c.is_closed());
    }

    #[test]
    fn peer_abort_carries_its_diagnostic() {
        let mut c = open(TcpConfig::default());
        c.handle_bytes(&frame(Code::ABORT, &[], &[], b"bye"));
        assert_eq!(
            events(&mut c),
            [TcpEvent::Closed(CloseReason::PeerAborted("bye".into()))]
        );
        assert!(c.take_outgoing().is_empty());
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        /// A peer stream: its CSM, then requests, pings, responses to unknown tokens.
        fn stream() -> Vec<u8> {
            let mut s = PEER_CSM.to_vec();
            s.extend(frame(Code::GET, &[1, 2], &[(number::URI_PATH, b"3")], b""));
            s.extend([0x01, 0xE2, 0x07]);
            s.extend(frame(
                Code::PUT,
                &[3],
                &[(number::URI_PATH, b"1")],
                &[0xAA; 400],
            ));
            s.extend([0x00, 0x00]);
            s.extend(frame(Code::CONTENT, &[4], &[], b"late"));
            s.extend(frame(
                Code::POST,
                &[],
                &[(number::URI_QUERY, b"ep=x")],
                b"</1/0>",
            ));
            s
        }

        fn run(chunks: &[&[u8]]) -> (Vec<TcpEvent>, Vec<u8>) {
            let mut c = conn(TcpConfig::default());
            c.take_outgoing();
            for chunk in chunks {
                c.handle_bytes(chunk);
            }
            (events(&mut c), c.take_outgoing())
        }

        proptest! {
            #[test]
            fn any_split_of_the_stream_gives_the_same_events(mut cuts in proptest::collection::vec(0usize..1000, 0..20)) {
                let s = stream();
                let whole = run(&[&s]);
                // CSM and three requests; Ping, Empty and the stray response make none.
                prop_assert_eq!(whole.0.len(), 4);
                prop_assert_eq!(&whole.1, &[0x01, 0xE3, 0x07]);
                cuts.iter_mut().for_each(|c| *c %= s.len() + 1);
                cuts.sort_unstable();
                let mut chunks = Vec::new();
                let mut last = 0;
                for &c in &cuts {
                    chunks.push(&s[last..c]);
                    last = c;
                }
                chunks.push(&s[last..]);
                prop_assert_eq!(run(&chunks), whole);
            }

            #[test]
            fn arbitrary_bytes_never_panic(first_csm in any::<bool>(), bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
                let mut c = conn(TcpConfig { max_message_size: 256, ..TcpConfig::default() });
                if first_csm {
                    c.handle_bytes(&PEER_CSM);
                }
                c.handle_bytes(&bytes);
                let _ = events(&mut c);
                prop_assert!(c.buffered_input() <= 256);
            }
        }
    }
}
