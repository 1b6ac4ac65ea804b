//! The CoAP message layer in the simulated network: reliability at loss,
//! deduplication, RFC 7252 timers, NSTART, separate responses, block-wise
//! transfers and observe. Every test prints its seed when it fails.

use lwm2m_core::coap::endpoint::{CancelReason, IncomingId, ObservationId, RequestError};
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{
    BlockValue, Code, Endpoint, EndpointConfig, Event, Message, MessageType, MessageWriter,
    Request, RequestId, Response,
};
use lwm2m_core::rng::SplitMix64;
use lwm2m_core::sim::{seeds, LinkConfig, Network, SeedGuard, SimAddr, SimNode};
use lwm2m_core::time::{Duration, Instant};

type Ep = Endpoint<SimAddr, SplitMix64>;

/// What a test server does with a request.
enum Handling {
    /// Answer at once with this function's response.
    Answer(fn(&Request) -> Response),
    /// Keep the request unanswered (the test answers later).
    Hold,
    /// Answer observe requests with `respond_observe`.
    Observe,
    /// Answer observe requests with `respond_observe` and a 3000-byte body.
    ObserveBig,
}

/// An endpoint plus the application logic a test needs.
struct App {
    ep: Ep,
    handling: Handling,
    now: Instant,
    requests: Vec<(IncomingId, SimAddr, Request)>,
    events: Vec<Event<SimAddr>>,
    observations: Vec<ObservationId>,
}

impl App {
    fn new(seed: u64, config: EndpointConfig, handling: Handling) -> App {
        App {
            ep: Endpoint::new(config, SplitMix64::new(seed)),
            handling,
            now: Instant::ZERO,
            requests: Vec::new(),
            events: Vec::new(),
            observations: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Some(e) = self.ep.poll_event() {
            match e {
                Event::Request { id, peer, request } => {
                    match self.handling {
                        Handling::Answer(f) => {
                            let resp = f(&request);
                            assert!(self.ep.respond(self.now, id, resp));
                        }
                        Handling::Observe | Handling::ObserveBig => {
                            let body = match self.handling {
                                Handling::ObserveBig => vec![b'x'; 3000],
                                _ => b"v0".to_vec(),
                            };
                            let resp = Response::new(Code::CONTENT).with_payload(0, body);
                            if let Some(obs) = self.ep.respond_observe(self.now, id, resp) {
                                self.observations.push(obs);
                            }
                        }
                        Handling::Hold => {}
                    }
                    self.requests.push((id, peer, request));
                }
                other => self.events.push(other),
            }
        }
    }

    fn response_for(&self, id: RequestId) -> Option<&Response> {
        self.events.iter().find_map(|e| match e {
            Event::Response { id: i, response } if *i == id => Some(response),
            _ => None,
        })
    }

    fn failure_for(&self, id: RequestId) -> Option<RequestError> {
        self.events.iter().find_map(|e| match e {
            Event::RequestFailed { id: i, error } if *i == id => Some(*error),
            _ => None,
        })
    }

    fn done(&self, id: RequestId) -> bool {
        self.response_for(id).is_some() || self.failure_for(id).is_some()
    }
}

impl SimNode for App {
    fn handle_datagram(&mut self, now: Instant, from: SimAddr, bytes: &[u8]) {
        self.now = now;
        self.ep.handle_datagram(now, from, bytes);
        self.drain();
    }
    fn poll_transmit(&mut self) -> Option<(SimAddr, Vec<u8>)> {
        self.ep.poll_transmit().map(|t| (t.peer, t.bytes))
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.ep.poll_timeout()
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.ep.handle_timeout(now);
        self.drain();
    }
}

fn echo_path(req: &Request) -> Response {
    Response::new(Code::CONTENT).with_payload(0, req.path().into_bytes())
}

fn echo_body(req: &Request) -> Response {
    Response::new(Code::CHANGED).with_payload(42, req.payload.clone())
}

fn pair(seed: u64, link: LinkConfig, handling: Handling) -> (Network<App>, SimAddr, SimAddr) {
    let mut net = Network::new(seed, link);
    let client = net.add(App::new(
        seed ^ 1,
        EndpointConfig::default(),
        Handling::Hold,
    ));
    let server = net.add(App::new(seed ^ 2, EndpointConfig::default(), handling));
    (net, client, server)
}

fn send(net: &mut Network<App>, from: SimAddr, to: SimAddr, req: Request) -> RequestId {
    let now = net.now();
    let app = net.node_mut(from);
    app.now = now;
    app.ep.send_request(now, to, req).unwrap()
}

fn secs(s: u64) -> Instant {
    Instant::ZERO + Duration::from_secs(s)
}

#[test]
fn con_exchange_completes_at_30_percent_loss() {
    let mut completed = 0;
    let all = seeds(30, 100);
    for &seed in &all {
        let _g = SeedGuard(seed);
        let (mut net, c, s) = pair(seed, LinkConfig::lossy(30), Handling::Answer(echo_path));
        net.enable_trace();
        let id = send(&mut net, c, s, Request::new(Code::GET).with_path("/3/0/0"));
        net.run_until(secs(300), |n| n.node(c).done(id));
        match (net.node(c).response_for(id), net.node(c).failure_for(id)) {
            (Some(r), None) => {
                assert_eq!(r.code, Code::CONTENT);
                assert_eq!(r.payload, b"/3/0/0");
                assert_eq!(
                    net.node(s).requests.len(),
                    1,
                    "handler ran once despite retransmissions"
                );
                completed += 1;
            }
            (None, Some(RequestError::Timeout)) => {
                // Only allowed after all 5 transmissions went out.
                let sent = net.trace().iter().filter(|t| t.from == c).count();
                assert_eq!(sent, 5);
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    // Per try, request and response both survive with 0.49; five tries fail
    // with 0.51^5 = 3.5%.
    if all.len() == 100 {
        assert!(
            completed >= 90,
            "only {completed} of 100 exchanges completed"
        );
    }
}

#[test]
fn duplicate_request_runs_handler_once_and_gets_cached_response() {
    for seed in seeds(31, 20) {
        let _g = SeedGuard(seed);
        let link = LinkConfig {
            duplicate_permille: 1000,
            jitter: Duration::from_millis(30),
            ..LinkConfig::default()
        };
        let (mut net, c, s) = pair(seed, link, Handling::Answer(echo_path));
        net.enable_trace();
        let id = send(&mut net, c, s, Request::new(Code::GET).with_path("/1/0/1"));
        net.run_until(secs(10), |_| false);
        assert_eq!(net.node(s).requests.len(), 1);
        assert_eq!(net.node(c).response_for(id).unwrap().payload, b"/1/0/1");
        let responses = net
            .node(c)
            .events
            .iter()
            .filter(|e| matches!(e, Event::Response { .. }))
            .count();
        assert_eq!(responses, 1);
        // The server answered both copies with identical bytes.
        let from_server: Vec<&Vec<u8>> = net
            .trace()
            .iter()
            .filter(|t| t.from == s)
            .map(|t| &t.bytes)
            .collect();
        assert_eq!(from_server.len(), 2);
        assert_eq!(from_server[0], from_server[1]);
    }
}

#[test]
fn duplicate_is_detected_by_peer_and_message_id() {
    let mut server = App::new(5, EndpointConfig::default(), Handling::Answer(echo_path));
    let mut buf = Vec::new();
    let mut w =
        MessageWriter::udp(&mut buf, MessageType::Con, Code::GET, 0x0102, &[7, 7, 7, 7]).unwrap();
    w.option(number::URI_PATH, b"3").unwrap();
    w.finish(&[]);
    server.handle_datagram(Instant::ZERO, 9, &buf);
    let first = server.poll_transmit().unwrap();
    server.handle_datagram(Instant::from_millis(500), 9, &buf);
    let second = server.poll_transmit().unwrap();
    assert_eq!(first, second);
    assert_eq!(server.requests.len(), 1);
    // The same message id from another peer is a different message.
    server.handle_datagram(Instant::from_millis(600), 10, &buf);
    assert_eq!(server.requests.len(), 2);
    // After EXCHANGE_LIFETIME the id is forgotten and the state is gone.
    server.handle_timeout(secs(248));
    assert_eq!(server.ep.remembered_ids(), 0);
    assert_eq!(server.ep.peer_count(), 0);
}

#[test]
fn retransmissions_follow_rfc7252_timers_and_fail_after_fifth_transmission() {
    for seed in seeds(32, 30) {
        let _g = SeedGuard(seed);
        let (mut net, c, s) = pair(seed, LinkConfig::lossy(100), Handling::Answer(echo_path));
        net.enable_trace();
        let id = send(&mut net, c, s, Request::new(Code::GET).with_path("/x"));
        net.run_until(secs(200), |n| n.node(c).done(id));
        let times: Vec<u64> = net
            .trace()
            .iter()
            .filter(|t| t.from == c)
            .map(|t| t.at.as_millis())
            .collect();
        assert_eq!(times.len(), 5, "1 transmission + MAX_RETRANSMIT (4)");
        let t0 = times[1] - times[0];
        assert!(
            (2000..=3000).contains(&t0),
            "initial timeout {t0} ms outside [ACK_TIMEOUT, ACK_TIMEOUT*1.5]"
        );
        for (i, w) in times.windows(2).enumerate() {
            assert_eq!(w[1] - w[0], t0 << i, "timeout doubles");
        }
        assert_eq!(net.node(c).failure_for(id), Some(RequestError::Timeout));
        // The failure comes one more doubled timeout after the 5th transmission.
        assert_eq!(net.now().as_millis(), times[4] + (t0 << 4));
        // All identical bytes (same message id).
        let bytes: Vec<&Vec<u8>> = net
            .trace()
            .iter()
            .filter(|t| t.from == c)
            .map(|t| &t.bytes)
            .collect();
        assert!(bytes.windows(2).all(|w| w[0] == w[1]));
    }
}

#[test]
fn nstart_one_queues_requests_per_peer() {
    let (mut net, c, s) = pair(33, LinkConfig::default(), Handling::Answer(echo_path));
    net.enable_trace();
    let ids: Vec<RequestId> = (0..3)
        .map(|i| {
            send(
                &mut net,
                c,
                s,
                Request::new(Code::GET).with_path(&format!("/{i}")),
            )
        })
        .collect();
    net.run_until(secs(10), |n| ids.iter().all(|id| n.node(c).done(*id)));
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            net.node(c).response_for(*id).unwrap().payload,
            format!("/{i}").as_bytes()
        );
    }
    // Requests and responses strictly alternate on the wire.
    let senders: Vec<SimAddr> = net.trace().iter().map(|t| t.from).collect();
    assert_eq!(senders, [c, s, c, s, c, s]);
}

#[test]
fn peer_gone_fails_every_request_to_the_peer_and_ends_its_observations() {
    let (mut net, c, s) = pair(41, LinkConfig::default(), Handling::Observe);
    let other = net.add(App::new(
        41 ^ 3,
        EndpointConfig::default(),
        Handling::Answer(echo_path),
    ));
    let observe = send(
        &mut net,
        c,
        s,
        Request::new(Code::GET)
            .with_path("/3/0/9")
            .with_uint_option(number::OBSERVE, 0),
    );
    net.run_until(secs(5), |n| n.node(c).done(observe));
    assert!(net.node(c).response_for(observe).is_some());
    let obs = net.node(s).observations[0];
    // NSTART 1: the first goes out (not yet polled), the two others queue.
    let ids: Vec<RequestId> = (0..3)
        .map(|i| {
            send(
                &mut net,
                c,
                s,
                Request::new(Code::GET).with_path(&format!("/{i}")),
            )
        })
        .collect();
    let elsewhere = send(&mut net, c, other, Request::new(Code::GET).with_path("/o"));

    let now = net.now();
    net.node_mut(c).ep.peer_gone(now, &s);
    net.node_mut(c).drain();
    net.node_mut(s).ep.peer_gone(now, &c);
    net.node_mut(s).drain();
    for id in ids.iter().chain([&observe]) {
        assert_eq!(
            net.node(c).failure_for(*id),
            Some(RequestError::Disconnected),
            "{id:?}"
        );
    }
    assert!(net.node(s).events.contains(&Event::ObservationCancelled {
        id: obs,
        reason: CancelReason::Disconnected
    }));
    assert_eq!(net.node(s).ep.observation_count(), 0);
    assert!(!net
        .node_mut(s)
        .ep
        .notify(now, obs, Response::new(Code::CONTENT), true));

    net.enable_trace();
    net.run_until(now + Duration::from_secs(300), |_| false);
    // Nothing more went between the two (no queued request started, no
    // retransmission), each failure came once, the other peer was served.
    assert!(
        net.trace().iter().all(|t| t.from != s && t.to != s),
        "{:?}",
        net.trace()
    );
    let failures = net
        .node(c)
        .events
        .iter()
        .filter(|e| matches!(e, Event::RequestFailed { .. }))
        .count();
    assert_eq!(failures, 4);
    assert_eq!(net.node(c).response_for(elsewhere).unwrap().payload, b"/o");
    // The peer can be talked to again (a new connection from the same address).
    let again = send(&mut net, c, s, Request::new(Code::GET).with_path("/3/0/0"));
    net.run_until(net.now() + Duration::from_secs(5), |n| {
        n.node(c).done(again)
    });
    assert!(net.node(c).response_for(again).is_some());
}

#[test]
fn queue_per_peer_is_bounded() {
    let config = EndpointConfig {
        max_queued_per_peer: 2,
        ..EndpointConfig::default()
    };
    let mut ep: Ep = Endpoint::new(config, SplitMix64::new(1));
    for _ in 0..3 {
        ep.send_request(Instant::ZERO, 1, Request::new(Code::GET))
            .unwrap();
    }
    assert_eq!(
        ep.send_request(Instant::ZERO, 1, Request::new(Code::GET)),
        Err(lwm2m_core::coap::endpoint::SendError::QueueFull)
    );
    // Another peer has its own queue.
    assert!(ep
        .send_request(Instant::ZERO, 2, Request::new(Code::GET))
        .is_ok());
}

#[test]
fn slow_answer_becomes_separate_response() {
    let (mut net, c, s) = pair(34, LinkConfig::default(), Handling::Hold);
    net.enable_trace();
    let id = send(&mut net, c, s, Request::new(Code::POST).with_path("/3/0/4"));
    net.run_until(secs(5), |_| false);
    // The server sent an empty ACK after the piggyback delay.
    let acks: Vec<_> = net.trace().iter().filter(|t| t.from == s).collect();
    assert_eq!(acks.len(), 1);
    let ack = Message::parse(&acks[0].bytes).unwrap();
    assert_eq!((ack.mtype, ack.code), (MessageType::Ack, Code::EMPTY));
    assert_eq!(
        acks[0].at.as_millis(),
        10 + 1000,
        "after the 10 ms link delay and the 1 s piggyback delay"
    );
    assert!(!net.node(c).done(id));
    // Now the application answers: a CON response, acknowledged by the client.
    let (incoming, _, _) = net.node(s).requests[0].clone();
    let now = net.now();
    assert!(net
        .node_mut(s)
        .ep
        .respond(now, incoming, Response::new(Code::CHANGED)));
    assert!(
        !net.node_mut(s)
            .ep
            .respond(now, incoming, Response::new(Code::CHANGED)),
        "answered once only"
    );
    net.run_until(secs(10), |_| false);
    assert_eq!(net.node(c).response_for(id).unwrap().code, Code::CHANGED);
    let wire: Vec<Message<'_>> = net
        .trace()
        .iter()
        .map(|t| Message::parse(&t.bytes).unwrap())
        .collect();
    let request_token = wire[0].token;
    let separate = wire
        .iter()
        .find(|m| m.mtype == MessageType::Con && m.code == Code::CHANGED)
        .unwrap();
    assert_eq!(separate.token, request_token);
    let client_ack = wire
        .iter()
        .rev()
        .find(|m| m.mtype == MessageType::Ack)
        .unwrap();
    assert_eq!(
        (client_ack.code, client_ack.message_id),
        (Code::EMPTY, separate.message_id)
    );
    // No retransmission of the separate response once acknowledged.
    assert_eq!(wire.iter().filter(|m| m.code == Code::CHANGED).count(), 1);
}

#[test]
fn ping_gets_rst_and_malformed_con_gets_rst() {
    let mut ep: Ep = Endpoint::new(EndpointConfig::default(), SplitMix64::new(1));
    ep.handle_datagram(Instant::ZERO, 1, &[0x40, 0x00, 0x12, 0x34]);
    assert_eq!(ep.poll_transmit().unwrap().bytes, [0x70, 0x00, 0x12, 0x34]);
    // CON with a reserved option nibble: format error, rejected with RST.
    ep.handle_datagram(Instant::ZERO, 1, &[0x40, 0x01, 0x55, 0x66, 0xF1, 0]);
    assert_eq!(ep.poll_transmit().unwrap().bytes, [0x70, 0x00, 0x55, 0x66]);
    // The same error in a NON is silently dropped.
    ep.handle_datagram(Instant::ZERO, 1, &[0x50, 0x01, 0x55, 0x67, 0xF1, 0]);
    assert!(ep.poll_transmit().is_none());
    assert!(ep.poll_event().is_none());
}

fn raw_request(
    mid: u16,
    token: &[u8],
    code: Code,
    options: &[(u16, &[u8])],
    payload: &[u8],
) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = MessageWriter::udp(&mut buf, MessageType::Con, code, mid, token).unwrap();
    for (n, v) in options {
        w.option(*n, v).unwrap();
    }
    w.finish(payload);
    buf
}

#[test]
fn unknown_critical_option_answers_4_02_and_keeps_serving() {
    let mut server = App::new(3, EndpointConfig::default(), Handling::Answer(echo_path));
    server.handle_datagram(
        Instant::ZERO,
        1,
        &raw_request(
            0x10,
            &[1, 2, 3, 4],
            Code::GET,
            &[(number::URI_PATH, b"3"), (2049, b"?")],
            &[],
        ),
    );
    let reply = server.poll_transmit().unwrap().1;
    assert_eq!(
        reply,
        [0x64, 0x82, 0x00, 0x10, 1, 2, 3, 4],
        "ACK 4.02 echoing mid and token"
    );
    assert!(server.requests.is_empty());
    // An unknown method code: 4.05.
    server.handle_datagram(
        Instant::ZERO,
        1,
        &raw_request(0x11, &[5], Code::new(0, 20), &[], &[]),
    );
    assert_eq!(
        server.poll_transmit().unwrap().1,
        [0x61, 0x85, 0x00, 0x11, 5]
    );
    // Then a good request is served.
    server.handle_datagram(
        Instant::ZERO,
        1,
        &raw_request(0x12, &[6], Code::GET, &[(number::URI_PATH, b"ok")], &[]),
    );
    let m_bytes = server.poll_transmit().unwrap().1;
    let m = Message::parse(&m_bytes).unwrap();
    assert_eq!((m.code, m.payload), (Code::CONTENT, &b"/ok"[..]));
}

#[test]
fn block1_gap_gives_4_08_and_oversize_gives_4_13_with_size1() {
    let config = EndpointConfig {
        max_body_size: 4096,
        ..EndpointConfig::default()
    };
    let mut server = App::new(3, config, Handling::Answer(echo_body));
    let block = |num: u32, more: bool| BlockValue::new(num, more, 1024).unwrap().encode();
    let b = |v: u32| lwm2m_core::coap::option::encode_uint(v);
    let opt = |v: u32| {
        let (buf, n) = b(v);
        buf[4 - n..].to_vec()
    };
    // Block 0 then block 2: gap.
    let b0 = opt(block(0, true));
    server.handle_datagram(
        Instant::ZERO,
        1,
        &raw_request(
            1,
            &[1],
            Code::PUT,
            &[(number::URI_PATH, b"5"), (number::BLOCK1, &b0)],
            &[0; 1024],
        ),
    );
    let cont = server.poll_transmit().unwrap().1;
    let m = Message::parse(&cont).unwrap();
    assert_eq!(m.code, Code::CONTINUE);
    assert_eq!(
        m.block1(),
        Some(BlockValue {
            num: 0,
            more: true,
            szx: 6
        })
    );
    let b2 = opt(block(2, true));
    server.handle_datagram(
        Instant::ZERO,
        1,
        &raw_request(
            2,
            &[1],
            Code::PUT,
            &[(number::URI_PATH, b"5"), (number::BLOCK1, &b2)],
            &[0; 1024],
        ),
    );
    let m_bytes = server.poll_transmit().unwrap().1;
    assert_eq!(
        Message::parse(&m_bytes).unwrap().code,
        Code::REQUEST_ENTITY_INCOMPLETE
    );
    // Size1 announcing more than the maximum: 4.13 with our Size1.
    let size1 = opt(100_000);
    server.handle_datagram(
        Instant::ZERO,
        1,
        &raw_request(
            3,
            &[1],
            Code::PUT,
            &[
                (number::URI_PATH, b"5"),
                (number::BLOCK1, &b0),
                (number::SIZE1, &size1),
            ],
            &[0; 1024],
        ),
    );
    let m_bytes = server.poll_transmit().unwrap().1;
    let m = Message::parse(&m_bytes).unwrap();
    assert_eq!(m.code, Code::REQUEST_ENTITY_TOO_LARGE);
    assert_eq!(m.size1(), Some(4096));
    // Growing past the maximum without Size1: 4.13 on the block that crosses it.
    for num in 0..4u32 {
        let bv = opt(block(num, true));
        server.handle_datagram(
            Instant::ZERO,
            1,
            &raw_request(
                10 + num as u16,
                &[2],
                Code::PUT,
                &[(number::URI_PATH, b"6"), (number::BLOCK1, &bv)],
                &[1; 1024],
            ),
        );
        assert_eq!(
            Message::parse(&server.poll_transmit().unwrap().1)
                .unwrap()
                .code,
            Code::CONTINUE
        );
    }
    let bv = opt(block(4, false));
    server.handle_datagram(
        Instant::ZERO,
        1,
        &raw_request(
            20,
            &[2],
            Code::PUT,
            &[(number::URI_PATH, b"6"), (number::BLOCK1, &bv)],
            &[1; 10],
        ),
    );
    assert_eq!(
        Message::parse(&server.poll_transmit().unwrap().1)
            .unwrap()
            .code,
        Code::REQUEST_ENTITY_TOO_LARGE
    );
    assert!(
        server.requests.is_empty(),
        "no partial body reached the application"
    );
    // An abandoned transfer is dropped after the block-wise timeout: block 1 then gets 4.08.
    server.handle_datagram(
        Instant::ZERO,
        1,
        &raw_request(
            30,
            &[3],
            Code::PUT,
            &[(number::URI_PATH, b"7"), (number::BLOCK1, &b0)],
            &[0; 1024],
        ),
    );
    server.poll_transmit();
    server.handle_timeout(secs(300));
    let b1 = opt(block(1, false));
    server.handle_datagram(
        secs(300),
        1,
        &raw_request(
            31,
            &[3],
            Code::PUT,
            &[(number::URI_PATH, b"7"), (number::BLOCK1, &b1)],
            &[0; 5],
        ),
    );
    assert_eq!(
        Message::parse(&server.poll_transmit().unwrap().1)
            .unwrap()
            .code,
        Code::REQUEST_ENTITY_INCOMPLETE
    );
}

fn pseudo_random_body(len: usize, seed: u64) -> Vec<u8> {
    let mut r = SplitMix64::new(seed);
    let mut v = vec![0u8; len];
    lwm2m_core::rng::RandomSource::fill_bytes(&mut r, &mut v);
    v
}

#[test]
fn blockwise_1mib_upload_and_download_at_10_percent_loss() {
    fn big_download(_: &Request) -> Response {
        Response::new(Code::CONTENT).with_payload(42, pseudo_random_body(1 << 20, 99))
    }
    for seed in seeds(35, 2) {
        let _g = SeedGuard(seed);
        let body = pseudo_random_body(1 << 20, seed);
        let (mut net, c, s) = pair(seed, LinkConfig::lossy(10), Handling::Answer(echo_body));
        let up = send(
            &mut net,
            c,
            s,
            Request::new(Code::PUT)
                .with_path("/5/0/0")
                .with_payload(42, body.clone()),
        );
        net.run_until(secs(20_000), |n| n.node(c).done(up));
        let resp = net
            .node(c)
            .response_for(up)
            .unwrap_or_else(|| panic!("upload failed: {:?}", net.node(c).failure_for(up)));
        assert_eq!(resp.code, Code::CHANGED);
        assert_eq!(
            net.node(s).requests.len(),
            1,
            "the application saw one reassembled request"
        );
        assert!(
            net.node(s).requests[0].2.payload == body,
            "server reassembled the exact body"
        );
        assert!(resp.payload == body, "client reassembled the echoed body");
        assert!(
            net.stats().lost > 100,
            "the link did lose datagrams ({:?})",
            net.stats()
        );

        net.node_mut(s).handling = Handling::Answer(big_download);
        let down = send(&mut net, c, s, Request::new(Code::GET).with_path("/fw"));
        net.run_until(secs(40_000), |n| n.node(c).done(down));
        let resp = net
            .node(c)
            .response_for(down)
            .unwrap_or_else(|| panic!("download failed: {:?}", net.node(c).failure_for(down)));
        assert!(resp.payload == pseudo_random_body(1 << 20, 99));
        assert_eq!(
            resp.options.uint(number::BLOCK2),
            None,
            "block options are the endpoint's business"
        );
        assert_eq!(
            net.node(s).requests.len(),
            2,
            "later blocks were served from the cache, not the application"
        );
    }
}

#[test]
fn a_request_with_block2_gets_that_one_block_as_is() {
    fn body(_: &Request) -> Response {
        Response::new(Code::CONTENT).with_payload(42, pseudo_random_body(5000, 7))
    }
    let (mut net, c, s) = pair(3, LinkConfig::default(), Handling::Answer(body));
    let get = |num: u32| {
        Request::new(Code::GET)
            .with_path("/fw")
            .with_single_block2(BlockValue::new(num, false, 1024).unwrap())
    };
    let expected = pseudo_random_body(5000, 7);
    let mut got = Vec::new();
    // The caller asks block by block, starting (as when resuming) at block 2
    // after block 0: each answer comes as is, with its Block2 option.
    for num in [0, 2, 3, 4] {
        let id = send(&mut net, c, s, get(num));
        net.run_until(secs(100 + u64::from(num) * 100), |n| n.node(c).done(id));
        let resp = net.node(c).response_for(id).expect("block answer").clone();
        let b = BlockValue::decode(resp.options.uint(number::BLOCK2).unwrap()).unwrap();
        assert_eq!((b.num, b.more, b.size()), (num, num < 4, 1024));
        let start = num as usize * 1024;
        assert_eq!(resp.payload, expected[start..(start + 1024).min(5000)]);
        got.push(resp.payload.len());
    }
    assert_eq!(got, [1024, 1024, 1024, 904]);
    // Blocks 2.. came from the server endpoint's cache of the body.
    assert_eq!(net.node(s).requests.len(), 1);
}

#[test]
fn block1_early_negotiation_to_smaller_blocks() {
    let mut net = Network::new(36, LinkConfig::default());
    let c = net.add(App::new(1, EndpointConfig::default(), Handling::Hold));
    let small = EndpointConfig {
        block_size: 256,
        ..EndpointConfig::default()
    };
    let s = net.add(App::new(2, small, Handling::Answer(echo_body)));
    net.enable_trace();
    let body = pseudo_random_body(3000, 1);
    let id = send(
        &mut net,
        c,
        s,
        Request::new(Code::PUT)
            .with_path("/x")
            .with_payload(42, body.clone()),
    );
    net.run_until(secs(60), |n| n.node(c).done(id));
    assert!(net.node(s).requests[0].2.payload == body);
    // First block at 1024, then 256-byte blocks from offset 256.
    let blocks: Vec<BlockValue> = net
        .trace()
        .iter()
        .filter(|t| t.from == c)
        .filter_map(|t| Message::parse(&t.bytes).unwrap().block1())
        .collect();
    assert_eq!(
        blocks[0],
        BlockValue {
            num: 0,
            more: true,
            szx: 6
        }
    );
    assert_eq!(
        blocks[1],
        BlockValue {
            num: 1,
            more: true,
            szx: 4
        }
    );
    assert_eq!(blocks.last().unwrap().offset() + 3000 % 256, 3000);
    // The response to a 3000-byte echo came back in the client's default block size.
    assert!(net.node(c).response_for(id).unwrap().payload == body);
}

#[test]
fn observe_notifications_freshness_and_cancellation() {
    let (mut net, c, s) = pair(37, LinkConfig::default(), Handling::Observe);
    let id = send(
        &mut net,
        c,
        s,
        Request::new(Code::GET)
            .with_path("/3/0/9")
            .with_uint_option(number::OBSERVE, 0),
    );
    net.run_until(secs(5), |n| n.node(c).done(id));
    let first = net.node(c).response_for(id).unwrap();
    assert_eq!(first.payload, b"v0");
    assert!(first.options.contains(number::OBSERVE));
    let obs = net.node(s).observations[0];
    for (i, con) in [(1, true), (2, false), (3, true)] {
        let now = net.now();
        let resp = Response::new(Code::CONTENT).with_payload(0, format!("v{i}").into_bytes());
        assert!(net.node_mut(s).ep.notify(now, obs, resp, con));
        net.run_until(net.now() + Duration::from_secs(1), |_| false);
    }
    let notes: Vec<Vec<u8>> = net
        .node(c)
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Notification { id: i, response } if *i == id => Some(response.payload.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(notes, [b"v1".to_vec(), b"v2".to_vec(), b"v3".to_vec()]);

    // Passive cancel: the client forgets, the next notification gets RST.
    let now = net.now();
    net.node_mut(c).ep.cancel_request(now, id);
    net.node_mut(s)
        .ep
        .notify(now, obs, Response::new(Code::CONTENT), false);
    net.run_until(net.now() + Duration::from_secs(1), |_| false);
    assert!(net.node(s).events.contains(&Event::ObservationCancelled {
        id: obs,
        reason: CancelReason::Reset
    }));
    assert_eq!(net.node(s).ep.observation_count(), 0);
}

/// Regression: a CON notification for an observation the client forgot was
/// acknowledged *and* reset; the ACK came first, so the server ignored the
/// RST and kept the observation forever. It must get a RST only.
#[test]
fn observe_passive_cancel_of_a_con_notification() {
    let (mut net, c, s) = pair(39, LinkConfig::default(), Handling::Observe);
    net.enable_trace();
    let id = send(
        &mut net,
        c,
        s,
        Request::new(Code::GET)
            .with_path("/3/0/9")
            .with_uint_option(number::OBSERVE, 0),
    );
    net.run_until(secs(5), |n| n.node(c).done(id));
    let obs = net.node(s).observations[0];
    let now = net.now();
    net.node_mut(c).ep.cancel_request(now, id);
    let before = net.trace().len();
    assert!(net
        .node_mut(s)
        .ep
        .notify(now, obs, Response::new(Code::CONTENT), true));
    net.run_until(net.now() + Duration::from_secs(1), |_| false);
    assert!(net.node(s).events.contains(&Event::ObservationCancelled {
        id: obs,
        reason: CancelReason::Reset
    }));
    assert_eq!(net.node(s).ep.observation_count(), 0);
    let replies: Vec<MessageType> = net.trace()[before..]
        .iter()
        .filter(|t| t.from == c)
        .map(|t| Message::parse(&t.bytes).unwrap().mtype)
        .collect();
    assert_eq!(replies, [MessageType::Rst]);
}

#[test]
fn observe_active_cancel_and_stale_notification() {
    let (mut net, c, s) = pair(38, LinkConfig::default(), Handling::Observe);
    net.enable_trace();
    let id = send(
        &mut net,
        c,
        s,
        Request::new(Code::GET)
            .with_path("/3/0/13")
            .with_uint_option(number::OBSERVE, 0),
    );
    net.run_until(secs(5), |n| n.node(c).done(id));
    let obs = net.node(s).observations[0];
    let now = net.now();
    net.node_mut(s).ep.notify(
        now,
        obs,
        Response::new(Code::CONTENT).with_payload(0, b"new".to_vec()),
        false,
    );
    net.run_until(net.now() + Duration::from_secs(1), |_| false);
    // Replay the first response (an older Observe value) as a NON notification: it is dropped.
    let first_resp = net
        .trace()
        .iter()
        .find(|t| t.from == s)
        .unwrap()
        .bytes
        .clone();
    let m = Message::parse(&first_resp).unwrap();
    let mut replay = Vec::new();
    let mut w = MessageWriter::udp(&mut replay, MessageType::Non, m.code, 0x7777, m.token).unwrap();
    for o in m.options() {
        w.option(o.number, o.value).unwrap();
    }
    w.finish(b"old");
    let now = net.now();
    net.node_mut(c).handle_datagram(now, s, &replay);
    let notes = net
        .node(c)
        .events
        .iter()
        .filter(|e| matches!(e, Event::Notification { .. }))
        .count();
    assert_eq!(notes, 1, "the stale notification was not delivered");

    // Active cancel: GET with Observe=1 and the same token.
    let now = net.now();
    let cancel = net.node_mut(c).ep.cancel_observe(now, id).unwrap();
    net.run_until(net.now() + Duration::from_secs(2), |n| {
        n.node(c).done(cancel)
    });
    assert!(net.node(s).events.contains(&Event::ObservationCancelled {
        id: obs,
        reason: CancelReason::Deregistered
    }));
    let last_req = Message::parse(
        &net.trace()
            .iter()
            .rev()
            .find(|t| t.from == c && Message::parse(&t.bytes).unwrap().code == Code::GET)
            .unwrap()
            .bytes,
    )
    .unwrap()
    .observe();
    assert_eq!(last_req, Some(1));
}

#[test]
fn unacknowledged_con_notification_ends_observation() {
    let (mut net, c, s) = pair(39, LinkConfig::default(), Handling::Observe);
    let id = send(
        &mut net,
        c,
        s,
        Request::new(Code::GET)
            .with_path("/6/0/0")
            .with_uint_option(number::OBSERVE, 0),
    );
    net.run_until(secs(5), |n| n.node(c).done(id));
    let obs = net.node(s).observations[0];
    net.set_link(LinkConfig::lossy(100));
    let now = net.now();
    net.node_mut(s)
        .ep
        .notify(now, obs, Response::new(Code::CONTENT), true);
    net.run_until(secs(300), |_| false);
    assert!(net.node(s).events.contains(&Event::ObservationCancelled {
        id: obs,
        reason: CancelReason::Timeout
    }));
}

#[test]
fn blockwise_notification_is_reassembled() {
    let (mut net, c, s) = pair(40, LinkConfig::lossy(5), Handling::Observe);
    let id = send(
        &mut net,
        c,
        s,
        Request::new(Code::GET)
            .with_path("/3/0")
            .with_uint_option(number::OBSERVE, 0),
    );
    net.run_until(secs(60), |n| n.node(c).done(id));
    let obs = net.node(s).observations[0];
    let big = pseudo_random_body(5000, 7);
    let now = net.now();
    net.node_mut(s).ep.notify(
        now,
        obs,
        Response::new(Code::CONTENT).with_payload(112, big.clone()),
        true,
    );
    net.run_until(secs(600), |n| {
        n.node(c)
            .events
            .iter()
            .any(|e| matches!(e, Event::Notification { .. }))
    });
    let got = net.node(c).events.iter().find_map(|e| match e {
        Event::Notification { id: i, response } if *i == id => Some(response.clone()),
        _ => None,
    });
    let got = got.expect("notification delivered");
    assert!(got.payload == big);
    assert_eq!(got.options.uint(number::CONTENT_FORMAT), Some(112));
}

#[test]
fn dedup_memory_is_bounded_per_peer_and_overall() {
    let config = EndpointConfig {
        max_dedup_per_peer: 8,
        max_dedup_total: 100,
        ..EndpointConfig::default()
    };
    let mut server = App::new(3, config, Handling::Answer(echo_path));
    for peer in 0..50u16 {
        for mid in 0..20u16 {
            server.handle_datagram(
                Instant::ZERO,
                peer,
                &raw_request(mid, &[1], Code::GET, &[], &[]),
            );
            server.poll_transmit();
        }
    }
    assert!(
        server.ep.remembered_ids() <= 100,
        "{}",
        server.ep.remembered_ids()
    );
    assert_eq!(server.requests.len(), 1000);
}

#[test]
fn mtu_drops_oversized_datagrams_and_smaller_blocks_get_through() {
    fn big(_: &Request) -> Response {
        Response::new(Code::CONTENT).with_payload(42, pseudo_random_body(4000, 3))
    }
    let link = LinkConfig {
        mtu: 600,
        ..LinkConfig::default()
    };
    // 1024-byte blocks never fit a 600-byte MTU: the exchange times out.
    let (mut net, c, s) = pair(41, link.clone(), Handling::Answer(big));
    let id = send(&mut net, c, s, Request::new(Code::GET).with_path("/big"));
    net.run_until(secs(600), |n| n.node(c).done(id));
    assert_eq!(net.node(c).failure_for(id), Some(RequestError::Timeout));
    assert!(net.stats().too_big >= 5, "{:?}", net.stats());
    // With 512-byte blocks the same body arrives.
    let mut net = Network::new(41, link);
    let c = net.add(App::new(1, EndpointConfig::default(), Handling::Hold));
    let small = EndpointConfig {
        block_size: 512,
        ..EndpointConfig::default()
    };
    let s = net.add(App::new(2, small, Handling::Answer(big)));
    let id = send(&mut net, c, s, Request::new(Code::GET).with_path("/big"));
    net.run_until(secs(600), |n| n.node(c).done(id));
    assert!(net.node(c).response_for(id).unwrap().payload == pseudo_random_body(4000, 3));
    assert_eq!(net.stats().too_big, 0);
}

#[test]
fn deregistration_after_blockwise_first_response_carries_no_block2() {
    let (mut net, c, s) = pair(42, LinkConfig::default(), Handling::ObserveBig);
    net.enable_trace();
    let id = send(
        &mut net,
        c,
        s,
        Request::new(Code::GET)
            .with_path("/3/0")
            .with_uint_option(number::OBSERVE, 0),
    );
    net.run_until(secs(10), |n| n.node(c).done(id));
    assert_eq!(net.node(c).response_for(id).unwrap().payload.len(), 3000);
    let now = net.now();
    let cancel = net.node_mut(c).ep.cancel_observe(now, id).unwrap();
    net.run_until(secs(20), |n| n.node(c).done(cancel));
    let deregistration = net
        .trace()
        .iter()
        .map(|t| Message::parse(&t.bytes).unwrap())
        .find(|m| m.code == Code::GET && m.observe() == Some(1))
        .expect("a GET with Observe=1 went out");
    assert_eq!(deregistration.block2(), None);
    // Its answer (the whole resource again) was reassembled.
    assert_eq!(
        net.node(c).response_for(cancel).unwrap().payload.len(),
        3000
    );
}

#[test]
fn one_expiry_timer_serves_all_remembered_ids() {
    let mut server = App::new(3, EndpointConfig::default(), Handling::Answer(echo_path));
    for mid in 0..1000u16 {
        let at = Instant::from_millis(u64::from(mid));
        server.handle_datagram(at, mid % 50, &raw_request(mid, &[1], Code::GET, &[], &[]));
        server.poll_transmit();
    }
    assert_eq!(server.ep.remembered_ids(), 1000);
    // Piggyback timers of answered requests and one expiry timer; not one timer per id.
    assert!(
        server.ep.timer_count() <= 1001,
        "{} timers",
        server.ep.timer_count()
    );
    server.handle_timeout(secs(2));
    assert_eq!(server.ep.timer_count(), 1, "only the expiry timer is left");
    // Ids expire in order as time passes; the timer follows the oldest.
    server.handle_timeout(Instant::from_millis(247_000 + 499));
    assert_eq!(server.ep.remembered_ids(), 500);
    server.handle_timeout(secs(248));
    assert_eq!(server.ep.remembered_ids(), 0);
    assert_eq!(server.ep.timer_count(), 0);
}

#[test]
fn unanswered_requests_are_dropped_after_exchange_lifetime() {
    let config = EndpointConfig {
        max_pending_incoming: 2,
        ..EndpointConfig::default()
    };
    let mut server = App::new(3, config, Handling::Hold);
    server.handle_datagram(Instant::ZERO, 1, &raw_request(1, &[1], Code::GET, &[], &[]));
    server.handle_datagram(Instant::ZERO, 1, &raw_request(2, &[2], Code::GET, &[], &[]));
    server.handle_datagram(Instant::ZERO, 1, &raw_request(3, &[3], Code::GET, &[], &[]));
    let replies: Vec<Vec<u8>> =
        std::iter::from_fn(|| server.poll_transmit().map(|t| t.1)).collect();
    assert_eq!(
        Message::parse(replies.last().unwrap()).unwrap().code,
        Code::SERVICE_UNAVAILABLE
    );
    assert_eq!(server.ep.pending_incoming(), 2);
    server.handle_timeout(secs(1));
    server.handle_timeout(secs(249));
    assert_eq!(server.ep.pending_incoming(), 0);
    let (held, _, _) = server.requests[0].clone();
    assert!(!server
        .ep
        .respond(secs(249), held, Response::new(Code::CONTENT)));
    // Room again for new requests.
    server.handle_datagram(secs(250), 1, &raw_request(4, &[4], Code::GET, &[], &[]));
    assert_eq!(server.ep.pending_incoming(), 1);
}

#[test]
fn concurrent_block1_uploads_are_bounded() {
    let config = EndpointConfig {
        max_blockwise_transfers: 2,
        ..EndpointConfig::default()
    };
    let mut server = App::new(3, config, Handling::Answer(echo_body));
    let (b, n) =
        lwm2m_core::coap::option::encode_uint(BlockValue::new(0, true, 1024).unwrap().encode());
    let block0 = b[4 - n..].to_vec();
    let codes: Vec<Code> = (0..3u16)
        .map(|i| {
            let path = format!("f{i}");
            server.handle_datagram(
                Instant::ZERO,
                1,
                &raw_request(
                    i,
                    &[1],
                    Code::PUT,
                    &[
                        (number::URI_PATH, path.as_bytes()),
                        (number::BLOCK1, &block0),
                    ],
                    &[0; 1024],
                ),
            );
            Message::parse(&server.poll_transmit().unwrap().1)
                .unwrap()
                .code
        })
        .collect();
    assert_eq!(
        codes,
        [Code::CONTINUE, Code::CONTINUE, Code::SERVICE_UNAVAILABLE]
    );
}

/// An observer that lost its memory (a restarted server) re-attaches the
/// observation by token: the next notification is delivered for the new
/// id, and the active cancel reaches the observed endpoint.
#[test]
fn restored_observation_gets_notifications_and_cancels() {
    let (mut net, c, s) = pair(41, LinkConfig::default(), Handling::Observe);
    let observe = Request::new(Code::GET)
        .with_path("/3/0/9")
        .with_uint_option(number::OBSERVE, 0);
    let id = send(&mut net, c, s, observe.clone());
    net.run_until(secs(5), |n| n.node(c).done(id));
    let token = net.node(c).ep.request_token(id).expect("observing");
    let obs = net.node(s).observations[0];

    // "Restart": a fresh endpoint that knows nothing of the observation.
    *net.node_mut(c) = App::new(99, EndpointConfig::default(), Handling::Hold);
    assert_eq!(
        net.node_mut(c).ep.restore_observation(
            s,
            token,
            Request::new(Code::GET).with_path("/3/0/9")
        ),
        None,
        "not an observe request"
    );
    let restored = net
        .node_mut(c)
        .ep
        .restore_observation(s, token, observe.clone())
        .expect("restored");
    assert_eq!(
        net.node_mut(c)
            .ep
            .restore_observation(s, token, observe.clone()),
        None,
        "token already in use"
    );
    assert_eq!(net.node(c).ep.request_token(restored), Some(token));
    assert_eq!(net.node(c).ep.request(restored), Some(&observe));

    let now = net.now();
    let resp = Response::new(Code::CONTENT).with_payload(0, b"after".to_vec());
    assert!(net.node_mut(s).ep.notify(now, obs, resp, true));
    net.run_until(net.now() + Duration::from_secs(1), |_| false);
    let notes: Vec<Vec<u8>> = net
        .node(c)
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Notification { id: i, response } if *i == restored => {
                Some(response.payload.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(notes, [b"after".to_vec()]);
    assert_eq!(net.node(s).ep.observation_count(), 1, "not reset");

    let now = net.now();
    let cancel = net.node_mut(c).ep.cancel_observe(now, restored).unwrap();
    net.run_until(net.now() + Duration::from_secs(2), |n| {
        n.node(c).done(cancel)
    });
    assert!(net.node(c).done(cancel));
    assert!(net.node(s).events.contains(&Event::ObservationCancelled {
        id: obs,
        reason: CancelReason::Deregistered
    }));
    assert_eq!(net.node(s).ep.observation_count(), 0);
}

/// One request from `client` to `server` and back, without a network:
/// the server's events before it answers, and the client's events after.
fn exchange(
    client: &mut Endpoint<&'static str, SplitMix64>,
    server: &mut Endpoint<&'static str, SplitMix64>,
    request: Request,
    answer: impl Fn(&Request) -> Response,
) -> (Request, Event<&'static str>) {
    let now = Instant::ZERO;
    client.send_request(now, "server", request).unwrap();
    let t = client.poll_transmit().unwrap();
    server.handle_datagram(now, "client", &t.bytes);
    let Some(Event::Request { id, request, .. }) = server.poll_event() else {
        panic!("the server application got no request");
    };
    assert!(server.respond(now, id, answer(&request)));
    let t = server.poll_transmit().unwrap();
    client.handle_datagram(now, "server", &t.bytes);
    (request, client.poll_event().unwrap())
}

#[test]
fn block2_served_by_the_application_for_its_paths() {
    let config = EndpointConfig::default();
    let mut client = Endpoint::new(config.clone(), SplitMix64::new(1));
    let mut server = Endpoint::new(config, SplitMix64::new(2));
    server.serve_block2_in_application(b"fw");
    // Block 5 of 64 bytes, asked first: the application sees the Block2
    // option and its own one-block answer goes out as it is.
    let ask = BlockValue::new(5, false, 64).unwrap();
    let req = Request::new(Code::GET)
        .with_path("/fw/abc")
        .with_single_block2(ask);
    let (seen, ev) = exchange(&mut client, &mut server, req, |r| {
        let b = BlockValue::decode(r.options.uint(number::BLOCK2).unwrap()).unwrap();
        let mut resp = Response::new(Code::CONTENT).with_payload(42, vec![b.num as u8; 64]);
        resp.options.set_uint(
            number::BLOCK2,
            BlockValue::new(b.num, true, 64).unwrap().encode(),
        );
        resp
    });
    assert_eq!(seen.options.uint(number::BLOCK2), Some(ask.encode()));
    let Event::Response { response, .. } = ev else {
        panic!("{ev:?}");
    };
    assert_eq!(response.payload, vec![5u8; 64]);
    let b = BlockValue::decode(response.options.uint(number::BLOCK2).unwrap()).unwrap();
    assert_eq!((b.num, b.more, b.size()), (5, true, 64));

    // Another path keeps the endpoint's own block-wise handling: block 5
    // of a body it does not hold is 4.08, without the application.
    let req = Request::new(Code::GET)
        .with_path("/other")
        .with_single_block2(ask);
    client.send_request(Instant::ZERO, "server", req).unwrap();
    let t = client.poll_transmit().unwrap();
    server.handle_datagram(Instant::ZERO, "client", &t.bytes);
    assert!(server.poll_event().is_none());
    let t = server.poll_transmit().unwrap();
    client.handle_datagram(Instant::ZERO, "server", &t.bytes);
    let Some(Event::Response { response, .. }) = client.poll_event() else {
        panic!("no answer");
    };
    assert_eq!(response.code, Code::REQUEST_ENTITY_INCOMPLETE);
}
