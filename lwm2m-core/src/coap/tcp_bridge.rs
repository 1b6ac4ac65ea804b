//! Serves a CoAP-over-TCP connection through the UDP [`Endpoint`](super::Endpoint)
//! and whatever engine sits on it, so that registration, device management,
//! observe and block-wise logic exist once.
//!
//! A [`DatagramBridge`] owns one [`TcpConnection`] and translates in both
//! directions at the message level:
//!
//! * a request frame from the peer becomes a NON datagram (fresh message id,
//!   the peer's token) for the endpoint; the endpoint's NON or CON response
//!   with that token goes back as a response frame;
//! * a CON request the endpoint sends becomes a request frame with the
//!   endpoint's token, and an empty ACK goes straight back to the endpoint
//!   (the stream is reliable: nothing is retransmitted); the peer's response
//!   frames (and Observe notifications) come to the endpoint as NON
//!   responses with that token;
//! * a request that cannot go out (the connection is closed, or the frame
//!   exceeds the peer's Max-Message-Size) is answered with RST, so the
//!   endpoint fails it at once instead of after its timeouts; requests in
//!   flight when the connection closes are the driver's to fail, with
//!   [`Endpoint::peer_gone`](super::Endpoint::peer_gone), once
//!   [`DatagramBridge::is_closed`];
//! * Empty ACK/RST datagrams of the endpoint mean nothing over TCP and are dropped.
//!
//! Block-wise transfers stay the endpoint's: Block1/Block2 options pass
//! through unchanged, as RFC 8323 §6 uses them over TCP.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use super::code::{Code, MessageType};
use super::endpoint::{IncomingId, Request, Response};
use super::message::{Message, MessageWriter, OptionList, Token};
use super::tcp_endpoint::{CloseReason, TcpConfig, TcpConnection, TcpEvent, TcpObservationId};
use crate::rng::RandomSource;

/// One TCP connection seen by a UDP endpoint as a datagram peer (see the [module docs](self)).
#[derive(Debug)]
pub struct DatagramBridge<R> {
    conn: TcpConnection<R>,
    next_mid: u16,
    to_endpoint: VecDeque<Vec<u8>>,
    /// Requests from the peer the endpoint has not answered, by token.
    incoming: BTreeMap<Token, IncomingId>,
    /// Observations the endpoint serves to the peer (it is a client's
    /// endpoint), by token: its later notifications go out with
    /// [`TcpConnection::notify`].
    observing: BTreeMap<Token, TcpObservationId>,
    closed: Option<CloseReason>,
}

/// An empty message (ACK or RST) with message id `mid`.
fn empty(mtype: MessageType, mid: u16) -> Vec<u8> {
    let mut buf = Vec::with_capacity(4);
    if let Ok(w) = MessageWriter::udp(&mut buf, mtype, Code::EMPTY, mid, &[]) {
        w.finish(&[]);
    }
    buf
}

/// The RST a driver feeds its endpoint for a datagram it cannot deliver
/// (addressed to a TCP connection that is gone), so a CON request fails at
/// once. `None` for anything else: NON messages and Empty ones need no answer.
pub fn undeliverable(datagram: &[u8]) -> Option<Vec<u8>> {
    let m = Message::parse(datagram).ok()?;
    (m.mtype == MessageType::Con && !m.code.is_empty())
        .then(|| empty(MessageType::Rst, m.message_id))
}

impl<R: RandomSource> DatagramBridge<R> {
    /// A bridge over a new connection (whose CSM waits in the outgoing buffer).
    pub fn new(config: TcpConfig, mut rng: R) -> Self {
        // A random first message id: a new connection from the same
        // address (a client reconnecting to its server) must not repeat
        // the ids the endpoint still deduplicates from the last one.
        let next_mid = (rng.next_u64() & 0xFFFF) as u16;
        DatagramBridge {
            conn: TcpConnection::new(config, rng),
            next_mid,
            to_endpoint: VecDeque::new(),
            incoming: BTreeMap::new(),
            observing: BTreeMap::new(),
            closed: None,
        }
    }

    /// The connection (its peer's settings, whether it is open).
    pub fn connection(&self) -> &TcpConnection<R> {
        &self.conn
    }

    /// Bytes to write to the stream (drained).
    pub fn take_outgoing(&mut self) -> Vec<u8> {
        self.conn.take_outgoing()
    }

    /// Whether the connection is closed; once the outgoing bytes are written
    /// the driver closes the socket and drops the bridge.
    pub fn is_closed(&self) -> bool {
        self.conn.is_closed()
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.closed.as_ref()
    }

    /// The next datagram to pass to the endpoint's `handle_datagram` with
    /// this connection as the peer.
    pub fn poll_datagram(&mut self) -> Option<Vec<u8>> {
        self.to_endpoint.pop_front()
    }

    /// Bytes read from the stream, split anywhere.
    pub fn handle_bytes(&mut self, bytes: &[u8]) {
        self.conn.handle_bytes(bytes);
        self.pump();
    }

    /// The peer closed the stream.
    pub fn handle_eof(&mut self) {
        self.conn.handle_eof();
        self.pump();
    }

    /// Writes 7.04 Release (the server is shutting down or drops the client).
    pub fn release(&mut self) {
        self.conn.release();
        self.pump();
    }

    /// A datagram the endpoint sent to this peer.
    pub fn handle_transmit(&mut self, datagram: &[u8]) {
        let Ok(m) = Message::parse(datagram) else {
            return;
        };
        let confirmable = m.mtype == MessageType::Con;
        let Some(token) = Token::new(m.token) else {
            return;
        };
        if m.code.is_request() {
            let mut request = Request::new(m.code);
            request.options = OptionList::from_message(&m);
            request.payload = m.payload.to_vec();
            let sent = self.conn.send_request_with_token(token, request).is_ok();
            if confirmable {
                let answer = if sent {
                    MessageType::Ack
                } else {
                    MessageType::Rst
                };
                self.to_endpoint.push_back(empty(answer, m.message_id));
            }
        } else if m.code.is_response() {
            let mut response = Response::new(m.code);
            response.options = OptionList::from_message(&m);
            response.payload = m.payload.to_vec();
            // A success with Observe starts (or continues) an observation;
            // anything else ends it (RFC 7641 §4.2).
            let observe = m.code.is_success() && m.observe().is_some();
            // Sends are refused only when the connection closed or the
            // peer's limit is too small: the peer then gets no answer, as
            // on a lost link.
            if let Some(id) = self.incoming.remove(&token) {
                if observe {
                    if let Ok(obs) = self.conn.respond_observe(id, response) {
                        self.observing.insert(token, obs);
                    }
                } else {
                    let _ = self.conn.respond(id, response);
                }
            } else if let Some(&obs) = self.observing.get(&token) {
                let _ = self.conn.notify(obs, response);
                if !observe {
                    self.conn.end_observation(obs);
                    self.observing.remove(&token);
                }
            }
            if confirmable {
                self.to_endpoint
                    .push_back(empty(MessageType::Ack, m.message_id));
            }
        }
        self.pump();
    }

    fn fresh_mid(&mut self) -> u16 {
        self.next_mid = self.next_mid.wrapping_add(1);
        self.next_mid
    }

    /// Turns the connection's events into datagrams for the endpoint.
    fn pump(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            let (code, token, options, payload) = match event {
                TcpEvent::Request { id, request } => {
                    let token = self.conn.incoming_token(id).unwrap_or_default();
                    // A new request with an observation's token (its
                    // deregistration, RFC 7641 §3.6) replaces it.
                    if let Some(obs) = self.observing.remove(&token) {
                        self.conn.end_observation(obs);
                    }
                    self.incoming.insert(token, id);
                    (request.code, token, request.options, request.payload)
                }
                TcpEvent::Response {
                    token, response, ..
                }
                | TcpEvent::Notification {
                    token, response, ..
                } => (response.code, token, response.options, response.payload),
                TcpEvent::Closed(reason) => {
                    self.incoming.clear();
                    self.observing.clear();
                    self.closed = Some(reason);
                    continue;
                }
                // Requests failed by the close were acknowledged to the
                // endpoint already: the driver fails them there with
                // `Endpoint::peer_gone` once the bridge is closed; new ones
                // get RST (`handle_transmit`).
                TcpEvent::RequestFailed { .. } | TcpEvent::Csm { .. } | TcpEvent::Pong { .. } => {
                    continue
                }
            };
            let mid = self.fresh_mid();
            let mut buf = Vec::new();
            let Ok(mut w) =
                MessageWriter::udp(&mut buf, MessageType::Non, code, mid, token.as_bytes())
            else {
                continue;
            };
            if options.write_to(&mut w).is_ok() {
                w.finish(&payload);
                self.to_endpoint.push_back(buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coap::endpoint::{Endpoint, EndpointConfig, Event, RequestError};
    use crate::coap::option::number;
    use crate::rng::SplitMix64;
    use crate::time::Instant;
    use alloc::vec;

    const PEER: u8 = 1;

    struct Rig {
        server: Endpoint<u8, SplitMix64>,
        bridge: DatagramBridge<SplitMix64>,
        client: TcpConnection<SplitMix64>,
    }

    impl Rig {
        fn new() -> Rig {
            let mut rig = Rig {
                server: Endpoint::new(EndpointConfig::default(), SplitMix64::new(1)),
                bridge: DatagramBridge::new(TcpConfig::default(), SplitMix64::new(2)),
                client: TcpConnection::new(TcpConfig::default(), SplitMix64::new(3)),
            };
            rig.run();
            assert!(rig.client.is_open() && rig.bridge.connection().is_open());
            // The client's Csm event.
            assert!(rig.client.poll_event().is_some());
            rig
        }

        /// The endpoint sends GET `path` to the TCP peer.
        fn server_get(&mut self, path: &str) -> crate::coap::RequestId {
            let id = self
                .server
                .send_request(Instant::ZERO, PEER, Request::new(Code::GET).with_path(path))
                .unwrap();
            self.run();
            id
        }

        /// Moves bytes and datagrams until nothing moves.
        fn run(&mut self) {
            loop {
                let mut moved = false;
                let to_client = self.bridge.take_outgoing();
                if !to_client.is_empty() {
                    self.client.handle_bytes(&to_client);
                    moved = true;
                }
                let to_bridge = self.client.take_outgoing();
                if !to_bridge.is_empty() {
                    self.bridge.handle_bytes(&to_bridge);
                    moved = true;
                }
                while let Some(d) = self.bridge.poll_datagram() {
                    self.server.handle_datagram(Instant::ZERO, PEER, &d);
                    moved = true;
                }
                while let Some(t) = self.server.poll_transmit() {
                    assert_eq!(t.peer, PEER);
                    self.bridge.handle_transmit(&t.bytes);
                    moved = true;
                }
                if !moved {
                    return;
                }
            }
        }
    }

    /// A NON response datagram from the endpoint, as a client's endpoint
    /// notifies: `code`, `token`, an Observe value if any, `payload`.
    fn response_datagram(
        code: Code,
        token: &[u8],
        observe: Option<u32>,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = MessageWriter::udp(&mut buf, MessageType::Non, code, 77, token).unwrap();
        if let Some(seq) = observe {
            w.uint_option(number::OBSERVE, seq).unwrap();
        }
        w.finish(payload);
        buf
    }

    #[test]
    fn the_endpoints_notifications_go_out_as_frames_of_the_observation() {
        let mut rig = Rig::new();
        let sent = rig
            .client
            .send_request(
                Request::new(Code::GET)
                    .with_path("/3/0/0")
                    .with_uint_option(number::OBSERVE, 0),
            )
            .unwrap();
        rig.run();
        // The endpoint got the request; its answers are written by hand.
        assert!(matches!(
            rig.server.poll_event(),
            Some(Event::Request { .. })
        ));
        let token = rig.client.request_token(sent).unwrap().as_bytes().to_vec();
        // The first answer, two notifications, then a final error one.
        for (code, observe, body) in [
            (Code::CONTENT, Some(3), b"a".as_slice()),
            (Code::CONTENT, Some(4), b"b"),
            (Code::CONTENT, Some(9), b"c"),
            (Code::NOT_FOUND, None, b""),
            (Code::CONTENT, Some(10), b"after the end"),
        ] {
            rig.bridge
                .handle_transmit(&response_datagram(code, &token, observe, body));
        }
        rig.client.handle_bytes(&rig.bridge.take_outgoing());
        let mut seen = Vec::new();
        while let Some(e) = rig.client.poll_event() {
            match e {
                TcpEvent::Response { id, response, .. } => {
                    assert_eq!(id, sent);
                    seen.push((false, response.code, response.payload));
                }
                TcpEvent::Notification { id, response, .. } => {
                    assert_eq!(id, sent);
                    seen.push((true, response.code, response.payload));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(
            seen,
            [
                (false, Code::CONTENT, b"a".to_vec()),
                (true, Code::CONTENT, b"b".to_vec()),
                (true, Code::CONTENT, b"c".to_vec()),
                (true, Code::NOT_FOUND, Vec::new()),
            ]
        );
    }

    #[test]
    fn a_request_from_the_tcp_peer_is_served_by_the_udp_endpoint() {
        let mut rig = Rig::new();
        let sent = rig
            .client
            .send_request(
                Request::new(Code::POST)
                    .with_path("/rd")
                    .with_query("ep=tcp-1")
                    .with_query("b=T")
                    .with_payload(40, b"</1/0>,</3/0>".to_vec()),
            )
            .unwrap();
        rig.run();
        let Some(Event::Request { id, peer, request }) = rig.server.poll_event() else {
            panic!("the endpoint got no request")
        };
        assert_eq!(peer, PEER);
        assert_eq!(request.path(), "/rd");
        assert_eq!(request.payload, b"</1/0>,</3/0>");
        let mut created = Response::new(Code::CREATED);
        created.options.push(number::LOCATION_PATH, b"rd".to_vec());
        created.options.push(number::LOCATION_PATH, b"abc".to_vec());
        rig.server.respond(Instant::ZERO, id, created);
        rig.run();
        match rig.client.poll_event() {
            Some(TcpEvent::Response { id, response, .. }) => {
                assert_eq!(id, sent);
                assert_eq!(response.code, Code::CREATED);
                assert_eq!(
                    response
                        .options
                        .get_all(number::LOCATION_PATH)
                        .collect::<Vec<_>>(),
                    [&b"rd"[..], &b"abc"[..]]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_request_of_the_endpoint_reaches_the_tcp_peer_and_back() {
        let mut rig = Rig::new();
        let out = rig.server_get("/3/0/0");
        // ACKed by the bridge: past the last retransmission time nothing is sent again.
        rig.server.handle_timeout(Instant::from_millis(60_000));
        assert!(rig.server.poll_transmit().is_none());
        assert!(rig.server.poll_event().is_none());
        let Some(TcpEvent::Request { id, request }) = rig.client.poll_event() else {
            panic!("the client got no request")
        };
        assert_eq!(request.path(), "/3/0/0");
        rig.client
            .respond(
                id,
                Response::new(Code::CONTENT).with_payload(0, b"Open Mobile Alliance".to_vec()),
            )
            .unwrap();
        rig.run();
        match rig.server.poll_event() {
            Some(Event::Response { id, response }) => {
                assert_eq!(id, out);
                assert_eq!(response.payload, b"Open Mobile Alliance");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_large_response_is_fetched_block_wise_by_the_endpoint() {
        let mut rig = Rig::new();
        let out = rig.server_get("/5/0/0");
        let body: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
        // The client answers block by block (Block2, 1024-byte blocks).
        for n in 0..2u32 {
            let Some(TcpEvent::Request { id, request }) = rig.client.poll_event() else {
                panic!("no block request {n}")
            };
            assert_eq!(
                request
                    .options
                    .uint(number::BLOCK2)
                    .map(|b| b >> 4)
                    .unwrap_or(0),
                n
            );
            let start = n as usize * 1024;
            let end = (start + 1024).min(body.len());
            let more = u32::from(end < body.len());
            let mut r = Response::new(Code::CONTENT).with_payload(42, body[start..end].to_vec());
            r.options
                .set_uint(number::BLOCK2, (n << 4) | (more << 3) | 6);
            rig.client.respond(id, r).unwrap();
            rig.run();
        }
        match rig.server.poll_event() {
            Some(Event::Response { id, response }) => {
                assert_eq!(id, out);
                assert_eq!(response.payload, body);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn notifications_of_the_tcp_peer_reach_the_endpoint_without_acks() {
        let mut rig = Rig::new();
        let out = rig
            .server
            .send_request(
                Instant::ZERO,
                PEER,
                Request::new(Code::GET)
                    .with_path("/3/0/9")
                    .with_uint_option(number::OBSERVE, 0),
            )
            .unwrap();
        rig.run();
        let Some(TcpEvent::Request { id, .. }) = rig.client.poll_event() else {
            panic!("the client got no request")
        };
        let content = |level: &[u8]| Response::new(Code::CONTENT).with_payload(0, level.to_vec());
        let obs = rig.client.respond_observe(id, content(b"90")).unwrap();
        rig.run();
        rig.client.notify(obs, content(b"80")).unwrap();
        rig.run();
        assert!(
            matches!(rig.server.poll_event(), Some(Event::Response { id, response }) if id == out && response.payload == b"90")
        );
        assert!(
            matches!(rig.server.poll_event(), Some(Event::Notification { id, response }) if id == out && response.payload == b"80")
        );
        // Nothing came back to the client for the notifications (no ACK, no RST).
        assert!(rig.client.poll_event().is_none());
    }

    #[test]
    fn a_request_in_flight_when_the_connection_closes_fails_through_peer_gone() {
        let mut rig = Rig::new();
        let out = rig.server_get("/3/0/0");
        assert!(matches!(
            rig.client.poll_event(),
            Some(TcpEvent::Request { .. })
        ));
        rig.bridge.handle_eof();
        rig.run();
        assert!(rig.bridge.is_closed());
        // The bridge acknowledged the request: the endpoint alone would wait
        // for the response until its timeout.
        assert!(rig.server.poll_event().is_none());
        rig.server.peer_gone(Instant::ZERO, &PEER);
        assert_eq!(
            rig.server.poll_event(),
            Some(Event::RequestFailed {
                id: out,
                error: RequestError::Disconnected
            })
        );
        assert!(rig.server.poll_transmit().is_none());
    }

    #[test]
    fn requests_to_a_closed_connection_fail_at_once() {
        let mut rig = Rig::new();
        rig.bridge.handle_eof();
        assert_eq!(rig.bridge.close_reason(), Some(&CloseReason::Eof));
        let out = rig.server_get("/3/0/0");
        assert_eq!(
            rig.server.poll_event(),
            Some(Event::RequestFailed {
                id: out,
                error: RequestError::Reset
            })
        );
        // The same for a driver that already dropped the bridge.
        let t = vec![0x41, 0x01, 0x12, 0x34, 0xAA];
        assert_eq!(undeliverable(&t), Some(vec![0x70, 0x00, 0x12, 0x34]));
        assert_eq!(undeliverable(&[0x60, 0x00, 0x12, 0x34]), None);
    }
}
