//! The bootstrap server engine against scripted clients in lwm2m-core's
//! simulated network: request paths, methods, formats and payloads of the
//! whole sequence, failures, loss, server-initiated sessions, Bootstrap-Pack.

use std::collections::BTreeMap;

use lwm2m_core::coap::endpoint::RequestError;
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Endpoint, EndpointConfig, Event, Request, RequestId, Response};
use lwm2m_core::format::link::BootstrapDiscover;
use lwm2m_core::format::{self, ContentFormat};
use lwm2m_core::model::{Node, Path, ResourceValue, Value, Version};
use lwm2m_core::rng::SplitMix64;
use lwm2m_core::sim::{LinkConfig, Network, SimAddr, SimNode};
use lwm2m_core::time::{Duration, Instant};
use lwm2m_server::bootstrap::{
    AclInstance, BootstrapConfig, BootstrapEngine, BootstrapEvent, BootstrapFailure,
    BootstrapServerConfig, BootstrapStep, MemoryConfigStore, SecurityInstance, SecurityMode,
    ServerInstance, StartSessionError,
};

type Handler = fn(&Request) -> Option<Response>;

struct Client {
    ep: Endpoint<SimAddr, SplitMix64>,
    handler: Handler,
    requests: Vec<Request>,
    responses: Vec<(RequestId, Response)>,
    failures: Vec<(RequestId, RequestError)>,
}

enum Peer {
    Server(
        Box<BootstrapEngine<SimAddr, SplitMix64>>,
        Vec<BootstrapEvent<SimAddr>>,
    ),
    Client(Box<Client>),
}

impl Peer {
    fn drain(&mut self, now: Instant) {
        match self {
            Peer::Server(s, events) => {
                while let Some(e) = s.poll_event() {
                    events.push(e);
                }
            }
            Peer::Client(c) => {
                while let Some(e) = c.ep.poll_event() {
                    match e {
                        Event::Request { id, request, .. } => {
                            c.requests.push(request.clone());
                            if let Some(r) = (c.handler)(&request) {
                                c.ep.respond(now, id, r);
                            }
                        }
                        Event::Response { id, response } => c.responses.push((id, response)),
                        Event::RequestFailed { id, error } => c.failures.push((id, error)),
                        _ => {}
                    }
                }
            }
        }
    }
}

impl SimNode for Peer {
    fn handle_datagram(&mut self, now: Instant, from: SimAddr, bytes: &[u8]) {
        match self {
            Peer::Server(s, _) => s.handle_datagram(now, from, bytes),
            Peer::Client(c) => c.ep.handle_datagram(now, from, bytes),
        }
        self.drain(now);
    }
    fn poll_transmit(&mut self) -> Option<(SimAddr, Vec<u8>)> {
        match self {
            Peer::Server(s, _) => s.poll_transmit().map(|t| (t.peer, t.bytes)),
            Peer::Client(c) => c.ep.poll_transmit().map(|t| (t.peer, t.bytes)),
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Peer::Server(s, _) => s.poll_timeout(),
            Peer::Client(c) => c.ep.poll_timeout(),
        }
    }
    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Peer::Server(s, _) => s.handle_timeout(now),
            Peer::Client(c) => c.ep.handle_timeout(now),
        }
        self.drain(now);
    }
}

const SERVER: SimAddr = 0;
const CLIENT: SimAddr = 1;

/// A device with one LwM2M server account (ssid 101) and an ACL.
fn dev_config() -> BootstrapConfig {
    BootstrapConfig {
        security: vec![SecurityInstance {
            id: 1,
            uri: "coap://lwm2m.example:5683".into(),
            bootstrap_server: false,
            security_mode: SecurityMode::NoSec,
            public_key_or_identity: vec![],
            server_public_key: vec![],
            secret_key: vec![],
            short_server_id: Some(101),
            client_hold_off_time: None,
            bootstrap_server_account_timeout: None,
        }],
        servers: vec![ServerInstance {
            id: 0,
            short_server_id: 101,
            lifetime: 300,
            default_min_period: Some(5),
            default_max_period: None,
            notification_storing: false,
            binding: "UQ".into(),
        }],
        acls: vec![AclInstance {
            id: 0,
            object_id: 3,
            object_instance_id: 0,
            acl: BTreeMap::from([(101, 0b1111)]),
            owner: 101,
        }],
        ..BootstrapConfig::default()
    }
}

fn store_with(configs: &[(&str, BootstrapConfig)]) -> MemoryConfigStore {
    use lwm2m_server::bootstrap::BootstrapConfigStore;
    let mut store = MemoryConfigStore::new();
    for (ep, c) in configs {
        store.put(ep, c.clone()).unwrap();
    }
    store
}

fn net(
    seed: u64,
    link: LinkConfig,
    cfg: BootstrapServerConfig,
    store: MemoryConfigStore,
    handler: Handler,
) -> Network<Peer> {
    let mut net = Network::new(seed, link);
    net.add(Peer::Server(
        Box::new(BootstrapEngine::new(
            cfg,
            SplitMix64::new(seed),
            Box::new(store),
        )),
        Vec::new(),
    ));
    net.add(Peer::Client(Box::new(Client {
        ep: Endpoint::new(EndpointConfig::default(), SplitMix64::new(seed ^ 0xc1)),
        handler,
        requests: Vec::new(),
        responses: Vec::new(),
        failures: Vec::new(),
    })));
    net
}

fn server(
    net: &mut Network<Peer>,
) -> (
    &mut BootstrapEngine<SimAddr, SplitMix64>,
    &mut Vec<BootstrapEvent<SimAddr>>,
) {
    match net.node_mut(SERVER) {
        Peer::Server(s, e) => (s, e),
        Peer::Client(_) => unreachable!(),
    }
}

fn client(net: &mut Network<Peer>) -> &mut Client {
    match net.node_mut(CLIENT) {
        Peer::Client(c) => c,
        Peer::Server(..) => unreachable!(),
    }
}

fn events(net: &mut Network<Peer>) -> Vec<BootstrapEvent<SimAddr>> {
    server(net).1.clone()
}

fn ended(net: &mut Network<Peer>) -> bool {
    events(net).iter().any(|e| {
        matches!(
            e,
            BootstrapEvent::Finished { .. } | BootstrapEvent::Failed { .. }
        )
    })
}

/// Sends `req` from the client; runs until it is answered; returns the answer.
fn send(net: &mut Network<Peer>, req: Request) -> Response {
    let now = net.now();
    let id = client(net).ep.send_request(now, SERVER, req).unwrap();
    let deadline = now + Duration::from_secs(300);
    net.run_until(deadline, |n| {
        client(n).responses.iter().any(|(r, _)| *r == id)
    });
    client(net)
        .responses
        .iter()
        .find(|(r, _)| *r == id)
        .map(|(_, r)| r.clone())
        .expect("answered")
}

fn bs_request(query: &[&str]) -> Request {
    let mut r = Request::new(Code::POST).with_path("/bs");
    for q in query {
        r = r.with_query(q);
    }
    r
}

fn run_to_end(net: &mut Network<Peer>) {
    let deadline = net.now() + Duration::from_secs(3600);
    assert!(net.run_until(deadline, ended), "session never ended");
}

/// Answers every bootstrap operation with success.
fn obliging(req: &Request) -> Option<Response> {
    Some(Response::new(match req.code {
        Code::DELETE => Code::DELETED,
        _ => Code::CHANGED,
    }))
}

fn method_path_cf(r: &Request) -> (Code, String, Option<u32>) {
    (r.code, r.path(), r.options.uint(number::CONTENT_FORMAT))
}

fn decode_write(r: &Request, models: &lwm2m_objects::Registry) -> Node {
    let cf = r.options.uint(number::CONTENT_FORMAT).unwrap() as u16;
    let path: Path = r.path().parse().unwrap();
    format::decode(ContentFormat(cf), &r.payload, &path, models).unwrap()
}

fn single(node: &Node, res: u16) -> Value {
    let Node::Instance(i) = node else {
        panic!("not an instance: {node:?}")
    };
    match &i.resources[&res].value {
        ResourceValue::Single(v) => v.clone(),
        ResourceValue::Multiple(m) => panic!("resource {res} is multiple: {m:?}"),
    }
}

#[test]
fn client_initiated_sequence_writes_tlv_to_an_unknown_version_client() {
    let store = store_with(&[("dev-1", dev_config())]);
    let mut net = net(
        1,
        LinkConfig::default(),
        BootstrapServerConfig::default(),
        store,
        obliging,
    );
    let resp = send(&mut net, bs_request(&["ep=dev-1"]));
    assert_eq!(resp.code, Code::CHANGED);
    run_to_end(&mut net);

    let reqs = client(&mut net).requests.clone();
    let tlv = Some(11542);
    assert_eq!(
        reqs.iter().map(method_path_cf).collect::<Vec<_>>(),
        vec![
            (Code::DELETE, "/0".to_string(), None),
            (Code::DELETE, "/1".to_string(), None),
            (Code::PUT, "/0/1".to_string(), tlv),
            (Code::PUT, "/1/0".to_string(), tlv),
            (Code::PUT, "/2/0".to_string(), tlv),
            (Code::POST, "/bs".to_string(), None),
        ]
    );
    let models = lwm2m_objects::Registry::standard();
    let sec = decode_write(&reqs[2], &models);
    assert_eq!(
        single(&sec, 0),
        Value::String("coap://lwm2m.example:5683".into())
    );
    assert_eq!(single(&sec, 1), Value::Boolean(false));
    assert_eq!(as_int(&single(&sec, 2)), Some(3));
    assert_eq!(as_int(&single(&sec, 10)), Some(101));
    let srv = decode_write(&reqs[3], &models);
    assert_eq!(as_int(&single(&srv, 0)), Some(101));
    assert_eq!(as_int(&single(&srv, 1)), Some(300));
    assert_eq!(as_int(&single(&srv, 2)), Some(5));
    assert_eq!(single(&srv, 6), Value::Boolean(false));
    assert_eq!(single(&srv, 7), Value::String("UQ".into()));
    let acl = decode_write(&reqs[4], &models);
    let Node::Instance(acl) = acl else { panic!() };
    assert_eq!(
        acl.resources[&2].value,
        ResourceValue::Multiple(BTreeMap::from([(101, Value::Integer(15))]))
    );

    let ev = events(&mut net);
    assert_eq!(
        ev,
        vec![
            BootstrapEvent::Started {
                endpoint: "dev-1".into(),
                peer: CLIENT,
                client_initiated: true
            },
            BootstrapEvent::Finished {
                endpoint: "dev-1".into(),
                discovered: None,
                read: vec![],
                format: ContentFormat::TLV
            },
        ]
    );
    assert_eq!(server(&mut net).0.session_count(), 0);
}

fn discover_1_1(req: &Request) -> Option<Response> {
    if req.code == Code::GET {
        assert_eq!(req.path(), "/");
        assert_eq!(req.options.uint(number::ACCEPT), Some(40));
        let body = br#"</>;lwm2m=1.1,</0/0>;uri="coap://bs.example:5783",</1>,</3/0>"#;
        return Some(Response::new(Code::CONTENT).with_payload(40, body.to_vec()));
    }
    obliging(req)
}

#[test]
fn discover_first_then_senml_cbor_for_a_1_1_client() {
    let mut cfg = dev_config();
    cfg.discover = true;
    let store = store_with(&[("dev-1", cfg)]);
    let mut net = net(
        2,
        LinkConfig::default(),
        BootstrapServerConfig::default(),
        store,
        discover_1_1,
    );
    assert_eq!(
        send(&mut net, bs_request(&["ep=dev-1"])).code,
        Code::CHANGED
    );
    run_to_end(&mut net);
    let reqs = client(&mut net).requests.clone();
    assert_eq!(method_path_cf(&reqs[0]), (Code::GET, "/".into(), None));
    assert_eq!(
        method_path_cf(&reqs[3]),
        (Code::PUT, "/0/1".into(), Some(112))
    );
    let models = lwm2m_objects::Registry::standard();
    let srv = decode_write(&reqs[4], &models);
    assert_eq!(as_int(&single(&srv, 1)), Some(300));
    let ev = events(&mut net);
    let BootstrapEvent::Finished {
        discovered: Some(d),
        format,
        ..
    } = &ev[1]
    else {
        panic!("{ev:?}")
    };
    assert_eq!(*format, ContentFormat::SENML_CBOR);
    assert_eq!(d.lwm2m, Some(Version::new(1, 1)));
    assert_eq!(d.entries.len(), 3);
}

/// Runs a client-initiated session with `query`; returns the requests the client got.
fn session_with(seed: u64, query: &[&str]) -> Vec<Request> {
    let store = store_with(&[("dev-1", dev_config())]);
    let mut n = net(
        seed,
        LinkConfig::default(),
        BootstrapServerConfig::default(),
        store,
        obliging,
    );
    assert_eq!(send(&mut n, bs_request(query)).code, Code::CHANGED);
    run_to_end(&mut n);
    client(&mut n).requests.clone()
}

#[test]
fn pct_picks_the_write_format() {
    let reqs = session_with(3, &["ep=dev-1", "pct=110"]);
    assert_eq!(reqs[2].options.uint(number::CONTENT_FORMAT), Some(110));
    let sec = decode_write(&reqs[2], &lwm2m_objects::Registry::standard());
    assert_eq!(
        single(&sec, 0),
        Value::String("coap://lwm2m.example:5683".into())
    );
    // A pct this server cannot write instances in (0, text/plain) is ignored.
    let reqs = session_with(3, &["ep=dev-1", "pct=0"]);
    assert_eq!(reqs[2].options.uint(number::CONTENT_FORMAT), Some(11542));
}

fn discover_not_supported(req: &Request) -> Option<Response> {
    if req.code == Code::GET {
        return Some(Response::new(Code::METHOD_NOT_ALLOWED));
    }
    obliging(req)
}

#[test]
fn a_1_0_client_refusing_discover_is_bootstrapped_with_tlv() {
    let mut cfg = dev_config();
    cfg.discover = true;
    let store = store_with(&[("dev-1", cfg)]);
    let mut net = net(
        4,
        LinkConfig::default(),
        BootstrapServerConfig::default(),
        store,
        discover_not_supported,
    );
    send(&mut net, bs_request(&["ep=dev-1"]));
    run_to_end(&mut net);
    let ev = events(&mut net);
    assert!(
        matches!(&ev[1], BootstrapEvent::Finished { discovered: None, format, .. } if *format == ContentFormat::TLV),
        "{ev:?}"
    );
}

#[test]
fn unknown_or_missing_endpoint_is_bad_request() {
    let store = store_with(&[("dev-1", dev_config())]);
    let mut net = net(
        5,
        LinkConfig::default(),
        BootstrapServerConfig::default(),
        store,
        obliging,
    );
    let r = send(&mut net, bs_request(&["ep=stranger"]));
    assert_eq!(r.code, Code::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&r.payload).contains("no bootstrap configuration"));
    assert_eq!(send(&mut net, bs_request(&[])).code, Code::BAD_REQUEST);
    assert_eq!(
        send(&mut net, bs_request(&["ep=dev-1", "pct=x"])).code,
        Code::BAD_REQUEST
    );
    let get = Request::new(Code::GET)
        .with_path("/bs")
        .with_query("ep=dev-1");
    assert_eq!(send(&mut net, get).code, Code::METHOD_NOT_ALLOWED);
    assert_eq!(
        send(&mut net, Request::new(Code::POST).with_path("/rd")).code,
        Code::NOT_FOUND
    );
    let deadline = net.now() + Duration::from_secs(60);
    net.run_until(deadline, |_| false);
    assert!(events(&mut net).is_empty());
    assert!(client(&mut net).requests.is_empty());
}

fn refuses_server_write(req: &Request) -> Option<Response> {
    if req.code == Code::PUT && req.path() == "/1/0" {
        return Some(Response::new(Code::BAD_REQUEST));
    }
    obliging(req)
}

#[test]
fn a_refused_write_fails_the_session_naming_the_step() {
    let store = store_with(&[("dev-1", dev_config())]);
    let mut net = net(
        6,
        LinkConfig::default(),
        BootstrapServerConfig::default(),
        store,
        refuses_server_write,
    );
    send(&mut net, bs_request(&["ep=dev-1"]));
    run_to_end(&mut net);
    let ev = events(&mut net);
    assert_eq!(
        ev[1],
        BootstrapEvent::Failed {
            endpoint: "dev-1".into(),
            step: BootstrapStep::Write(Path::Instance(1, 0)),
            reason: BootstrapFailure::Code(Code::BAD_REQUEST),
        }
    );
    // Nothing after the failed step: no ACL write, no Bootstrap-Finish.
    let deadline = net.now() + Duration::from_secs(600);
    net.run_until(deadline, |_| false);
    let paths: Vec<String> = client(&mut net).requests.iter().map(|r| r.path()).collect();
    assert_eq!(paths, ["/0", "/1", "/0/1", "/1/0"]);
    assert_eq!(server(&mut net).0.session_count(), 0);
}

fn silent(_: &Request) -> Option<Response> {
    None
}

#[test]
fn a_client_that_never_answers_hits_the_session_timeout() {
    let store = store_with(&[("dev-1", dev_config())]);
    let cfg = BootstrapServerConfig {
        session_timeout: Duration::from_secs(30),
        ..BootstrapServerConfig::default()
    };
    let mut net = net(7, LinkConfig::default(), cfg, store, silent);
    send(&mut net, bs_request(&["ep=dev-1"]));
    let start = net.now();
    run_to_end(&mut net);
    assert_eq!(
        events(&mut net)[1],
        BootstrapEvent::Failed {
            endpoint: "dev-1".into(),
            step: BootstrapStep::Delete(Path::Object(0)),
            reason: BootstrapFailure::SessionTimeout,
        }
    );
    assert!(net.now() <= start + Duration::from_secs(31));
}

#[test]
fn an_unreachable_client_fails_with_a_coap_timeout() {
    let store = store_with(&[("dev-1", dev_config())]);
    let mut net = net(
        8,
        LinkConfig::default(),
        BootstrapServerConfig::default(),
        store,
        obliging,
    );
    send(&mut net, bs_request(&["ep=dev-1"]));
    // The client vanishes right after its Bootstrap-Request was answered.
    net.set_link(LinkConfig::lossy(100));
    run_to_end(&mut net);
    let ev = events(&mut net);
    assert!(
        matches!(
            &ev[1],
            BootstrapEvent::Failed {
                reason: BootstrapFailure::Request(RequestError::Timeout),
                ..
            }
        ),
        "{ev:?}"
    );
}

#[test]
fn twenty_percent_loss_still_completes() {
    for seed in 10..16 {
        let store = store_with(&[("dev-1", dev_config())]);
        let mut net = net(
            seed,
            LinkConfig::lossy(20),
            BootstrapServerConfig::default(),
            store,
            obliging,
        );
        let r = send(&mut net, bs_request(&["ep=dev-1"]));
        assert_eq!(r.code, Code::CHANGED, "seed {seed}");
        run_to_end(&mut net);
        let ev = events(&mut net);
        assert!(
            matches!(ev.last(), Some(BootstrapEvent::Finished { .. })),
            "seed {seed}: {ev:?}"
        );
        // Every operation reached the client exactly once (retransmissions
        // are deduplicated by CoAP), in order.
        let paths: Vec<String> = client(&mut net).requests.iter().map(|r| r.path()).collect();
        assert_eq!(
            paths,
            ["/0", "/1", "/0/1", "/1/0", "/2/0", "/bs"],
            "seed {seed}"
        );
    }
}

#[test]
fn server_initiated_session() {
    let store = store_with(&[("dev-1", dev_config())]);
    let mut net = net(
        20,
        LinkConfig::default(),
        BootstrapServerConfig::default(),
        store,
        obliging,
    );
    let now = net.now();
    let (s, _) = server(&mut net);
    assert_eq!(
        s.start_session(now, "nobody", CLIENT),
        Err(StartSessionError::UnknownEndpoint)
    );
    s.start_session(now, "dev-1", CLIENT).unwrap();
    assert_eq!(
        s.start_session(now, "dev-1", CLIENT),
        Err(StartSessionError::AlreadyRunning)
    );
    net.collect_transmits();
    run_to_end(&mut net);
    let ev = events(&mut net);
    assert_eq!(
        ev[0],
        BootstrapEvent::Started {
            endpoint: "dev-1".into(),
            peer: CLIENT,
            client_initiated: false
        }
    );
    assert!(matches!(ev[1], BootstrapEvent::Finished { .. }), "{ev:?}");
    let paths: Vec<String> = client(&mut net).requests.iter().map(|r| r.path()).collect();
    assert_eq!(paths, ["/0", "/1", "/0/1", "/1/0", "/2/0", "/bs"]);
}

#[test]
fn session_limit_answers_service_unavailable() {
    let store = store_with(&[("dev-1", dev_config()), ("dev-2", dev_config())]);
    let cfg = BootstrapServerConfig {
        max_sessions: 1,
        ..BootstrapServerConfig::default()
    };
    let mut net = net(21, LinkConfig::default(), cfg, store, silent);
    let now = net.now();
    server(&mut net).0.start_session(now, "dev-2", 7).unwrap();
    assert_eq!(
        send(&mut net, bs_request(&["ep=dev-1"])).code,
        Code::SERVICE_UNAVAILABLE
    );
    let (s, _) = server(&mut net);
    assert_eq!(
        s.start_session(now, "dev-1", CLIENT),
        Err(StartSessionError::TooManySessions)
    );
}

#[test]
fn a_new_bootstrap_request_replaces_the_running_session() {
    let store = store_with(&[("dev-1", dev_config())]);
    let mut net = net(
        22,
        LinkConfig::default(),
        BootstrapServerConfig::default(),
        store,
        silent,
    );
    send(&mut net, bs_request(&["ep=dev-1"]));
    assert_eq!(
        send(&mut net, bs_request(&["ep=dev-1"])).code,
        Code::CHANGED
    );
    let ev = events(&mut net);
    assert!(
        matches!(
            &ev[1],
            BootstrapEvent::Failed {
                reason: BootstrapFailure::Replaced,
                ..
            }
        ),
        "{ev:?}"
    );
    assert!(matches!(
        &ev[2],
        BootstrapEvent::Started {
            client_initiated: true,
            ..
        }
    ));
    assert_eq!(server(&mut net).0.session_count(), 1);
}

#[test]
fn bootstrap_pack_is_the_whole_configuration_in_senml_cbor() {
    let store = store_with(&[("dev-1", dev_config())]);
    let mut net = net(
        23,
        LinkConfig::default(),
        BootstrapServerConfig::default(),
        store,
        obliging,
    );
    let get = Request::new(Code::GET)
        .with_path("/bspack")
        .with_query("ep=dev-1");
    let r = send(&mut net, get);
    assert_eq!(r.code, Code::CONTENT);
    assert_eq!(r.options.uint(number::CONTENT_FORMAT), Some(112));
    let models = lwm2m_objects::Registry::standard();
    let values = format::decode_values(ContentFormat::SENML_CBOR, &r.payload, &models).unwrap();
    let get = |p: Path| values.iter().find(|v| v.path == p).map(|v| v.value.clone());
    assert_eq!(
        get(Path::Resource(0, 1, 0)),
        Some(Value::String("coap://lwm2m.example:5683".into()))
    );
    assert_eq!(get(Path::Resource(0, 1, 1)), Some(Value::Boolean(false)));
    assert_eq!(
        get(Path::Resource(0, 1, 10)).and_then(|v| as_int(&v)),
        Some(101)
    );
    assert_eq!(
        get(Path::Resource(1, 0, 0)).and_then(|v| as_int(&v)),
        Some(101)
    );
    assert_eq!(
        get(Path::Resource(1, 0, 1)).and_then(|v| as_int(&v)),
        Some(300)
    );
    assert_eq!(
        get(Path::Resource(1, 0, 7)),
        Some(Value::String("UQ".into()))
    );
    assert_eq!(
        get(Path::ResourceInstance(2, 0, 2, 101)).and_then(|v| as_int(&v)),
        Some(15)
    );
    // Exactly the configured instances, nothing else.
    let mut instances: Vec<(u16, u16)> = values
        .iter()
        .filter_map(|v| Some((v.path.object_id()?, v.path.instance_id()?)))
        .collect();
    instances.dedup();
    assert_eq!(instances, [(0, 1), (1, 0), (2, 0)]);
    assert!(matches!(
        events(&mut net)[0],
        BootstrapEvent::PackServed { .. }
    ));

    let bad = Request::new(Code::GET)
        .with_path("/bspack")
        .with_query("ep=dev-1")
        .with_uint_option(number::ACCEPT, 50);
    assert_eq!(send(&mut net, bad).code, Code::NOT_ACCEPTABLE);
    for cf in [110u16, 11544] {
        let other = Request::new(Code::GET)
            .with_path("/bspack")
            .with_query("ep=dev-1")
            .with_uint_option(number::ACCEPT, u32::from(cf));
        let r = send(&mut net, other);
        assert_eq!(r.code, Code::CONTENT);
        assert_eq!(r.options.uint(number::CONTENT_FORMAT), Some(u32::from(cf)));
        let v = format::decode_values(ContentFormat(cf), &r.payload, &models).unwrap();
        assert_eq!(v.len(), values.len(), "format {cf}");
    }
    let unknown = Request::new(Code::GET)
        .with_path("/bspack")
        .with_query("ep=x");
    assert_eq!(send(&mut net, unknown).code, Code::BAD_REQUEST);
    // No session came of it.
    assert!(client(&mut net).requests.is_empty());
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::UnsignedInteger(u) => i64::try_from(*u).ok(),
        _ => None,
    }
}

#[test]
fn discover_answer_is_decoded_for_the_event() {
    // The helper the engine uses; the pre-1.2 form is accepted too.
    let d = BootstrapDiscover::decode(br#"lwm2m="1.0",</0/0>"#).unwrap();
    assert_eq!(d.lwm2m, Some(Version::new(1, 0)));
}

/// A store whose database is gone.
struct BrokenStore;

impl lwm2m_server::bootstrap::BootstrapConfigStore for BrokenStore {
    fn get(
        &self,
        _: &str,
    ) -> Result<Option<BootstrapConfig>, lwm2m_server::bootstrap::ConfigError> {
        Err(lwm2m_server::bootstrap::ConfigError::Store(
            "disk on fire".into(),
        ))
    }
    fn put(
        &mut self,
        _: &str,
        _: BootstrapConfig,
    ) -> Result<(), lwm2m_server::bootstrap::ConfigError> {
        Err(lwm2m_server::bootstrap::ConfigError::Store(
            "disk on fire".into(),
        ))
    }
    fn remove(&mut self, _: &str) -> Result<bool, lwm2m_server::bootstrap::ConfigError> {
        Ok(false)
    }
    fn endpoints(&self) -> Result<Vec<String>, lwm2m_server::bootstrap::ConfigError> {
        Ok(Vec::new())
    }
}

#[test]
fn a_failing_store_is_a_server_error_not_an_unknown_client() {
    let mut net = Network::new(30, LinkConfig::default());
    net.add(Peer::Server(
        Box::new(BootstrapEngine::new(
            BootstrapServerConfig::default(),
            SplitMix64::new(30),
            Box::new(BrokenStore),
        )),
        Vec::new(),
    ));
    net.add(Peer::Client(Box::new(Client {
        ep: Endpoint::new(EndpointConfig::default(), SplitMix64::new(31)),
        handler: obliging,
        requests: Vec::new(),
        responses: Vec::new(),
        failures: Vec::new(),
    })));
    let r = send(&mut net, bs_request(&["ep=dev-1"]));
    assert_eq!(r.code, Code::INTERNAL_SERVER_ERROR);
    assert!(String::from_utf8_lossy(&r.payload).contains("disk on fire"));
    let now = net.now();
    let err = server(&mut net)
        .0
        .start_session(now, "dev-1", CLIENT)
        .unwrap_err();
    assert!(matches!(err, StartSessionError::Store(m) if m.contains("disk on fire")));
}

fn has_one_server_account(req: &Request) -> Option<Response> {
    if req.code == Code::GET && req.path() == "/1" {
        assert_eq!(req.options.uint(number::ACCEPT), Some(112));
        let node = Node::Object(lwm2m_core::model::ObjectNode {
            id: 1,
            instances: BTreeMap::from([(
                3,
                lwm2m_core::model::Instance::new(
                    3,
                    [
                        lwm2m_core::model::Resource::single(0, Value::Integer(55)),
                        lwm2m_core::model::Resource::single(1, Value::Integer(900)),
                    ],
                ),
            )]),
        });
        let mut out = Vec::new();
        format::encode(ContentFormat::SENML_CBOR, &node, &Path::Object(1), &mut out).unwrap();
        return Some(Response::new(Code::CONTENT).with_payload(112, out));
    }
    if req.code == Code::GET && req.path() == "/2" {
        return Some(Response::new(Code::CONTENT).with_payload(112, b"\xff".to_vec()));
    }
    discover_1_1(req)
}

#[test]
fn bootstrap_read_answers_come_in_the_finished_event() {
    let mut cfg = dev_config();
    cfg.discover = true;
    cfg.read = vec![Path::Object(1)];
    let store = store_with(&[("dev-1", cfg)]);
    let mut net = net(
        40,
        LinkConfig::default(),
        BootstrapServerConfig::default(),
        store,
        has_one_server_account,
    );
    send(&mut net, bs_request(&["ep=dev-1"]));
    run_to_end(&mut net);
    let reqs = client(&mut net).requests.clone();
    assert_eq!(method_path_cf(&reqs[1]), (Code::GET, "/1".into(), None));
    assert_eq!(reqs[2].path(), "/0");
    let ev = events(&mut net);
    let BootstrapEvent::Finished { read, .. } = &ev[1] else {
        panic!("{ev:?}")
    };
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].0, Path::Object(1));
    let Node::Object(o) = &read[0].1 else {
        panic!("{read:?}")
    };
    let i = &o.instances[&3];
    let ResourceValue::Single(v) = &i.resources[&1].value else {
        panic!()
    };
    assert_eq!(as_int(v), Some(900));
}

#[test]
fn an_undecodable_bootstrap_read_answer_fails_the_session() {
    let mut cfg = dev_config();
    cfg.discover = true;
    cfg.read = vec![Path::Object(2)];
    let store = store_with(&[("dev-1", cfg)]);
    let mut net = net(
        41,
        LinkConfig::default(),
        BootstrapServerConfig::default(),
        store,
        has_one_server_account,
    );
    send(&mut net, bs_request(&["ep=dev-1"]));
    run_to_end(&mut net);
    let ev = events(&mut net);
    assert!(
        matches!(&ev[1], BootstrapEvent::Failed { step: BootstrapStep::Read(p), reason: BootstrapFailure::Decode(_), .. } if *p == Path::Object(2)),
        "{ev:?}"
    );
}

fn refuses_finish(req: &Request) -> Option<Response> {
    if req.code == Code::POST && req.path() == "/bs" {
        return Some(Response::new(Code::NOT_ACCEPTABLE));
    }
    obliging(req)
}

#[test]
fn a_refused_bootstrap_finish_is_reported() {
    let store = store_with(&[("dev-1", dev_config())]);
    let mut net = net(
        42,
        LinkConfig::default(),
        BootstrapServerConfig::default(),
        store,
        refuses_finish,
    );
    send(&mut net, bs_request(&["ep=dev-1"]));
    run_to_end(&mut net);
    assert_eq!(
        events(&mut net)[1],
        BootstrapEvent::Failed {
            endpoint: "dev-1".into(),
            step: BootstrapStep::Finish,
            reason: BootstrapFailure::Code(Code::NOT_ACCEPTABLE),
        }
    );
}

#[test]
fn a_server_account_is_moved_off_the_clients_bootstrap_account_id() {
    // The client's Bootstrap-Discover lists /0/0 without ssid: its own
    // bootstrap-server account. The configuration puts the LwM2M server
    // account at /0/0 too.
    let mut cfg = dev_config();
    cfg.discover = true;
    cfg.security[0].id = 0;
    let store = store_with(&[("dev-1", cfg)]);
    let mut n1 = net(
        43,
        LinkConfig::default(),
        BootstrapServerConfig::default(),
        store,
        discover_1_1,
    );
    send(&mut n1, bs_request(&["ep=dev-1"]));
    run_to_end(&mut n1);
    let reqs = client(&mut n1).requests.clone();
    let paths: Vec<String> = reqs.iter().map(|r| r.path()).collect();
    assert_eq!(paths, ["/", "/0", "/1", "/0/1", "/1/0", "/2/0", "/bs"]);
    let sec = decode_write(&reqs[3], &lwm2m_objects::Registry::standard());
    let Node::Instance(i) = &sec else { panic!() };
    assert_eq!(i.id, 1);
    assert_eq!(as_int(&single(&sec, 10)), Some(101));
    assert!(matches!(
        events(&mut n1)[1],
        BootstrapEvent::Finished { .. }
    ));

    // Without Discover nothing is known, nothing moves.
    let mut cfg = dev_config();
    cfg.security[0].id = 0;
    let store = store_with(&[("dev-1", cfg)]);
    let mut n2 = net(
        44,
        LinkConfig::default(),
        BootstrapServerConfig::default(),
        store,
        obliging,
    );
    send(&mut n2, bs_request(&["ep=dev-1"]));
    run_to_end(&mut n2);
    assert_eq!(client(&mut n2).requests[2].path(), "/0/0");
}

#[test]
fn lossy_duplicating_reordering_link_with_discover_and_read_still_completes() {
    let link = LinkConfig {
        loss_permille: 200,
        duplicate_permille: 100,
        jitter: Duration::from_millis(500),
        ..LinkConfig::default()
    };
    for seed in 50..56 {
        let mut cfg = dev_config();
        cfg.discover = true;
        cfg.read = vec![Path::Object(1)];
        let store = store_with(&[("dev-1", cfg)]);
        let mut n = net(
            seed,
            link.clone(),
            BootstrapServerConfig::default(),
            store,
            has_one_server_account,
        );
        assert_eq!(
            send(&mut n, bs_request(&["ep=dev-1"])).code,
            Code::CHANGED,
            "seed {seed}"
        );
        run_to_end(&mut n);
        let ev = events(&mut n);
        assert_eq!(ev.len(), 2, "seed {seed}: {ev:?}");
        assert!(
            matches!(&ev[1], BootstrapEvent::Finished { read, .. } if read.len() == 1),
            "seed {seed}: {ev:?}"
        );
        let paths: Vec<String> = client(&mut n).requests.iter().map(|r| r.path()).collect();
        assert_eq!(
            paths,
            ["/", "/1", "/0", "/1", "/0/1", "/1/0", "/2/0", "/bs"],
            "seed {seed}"
        );
    }
}
