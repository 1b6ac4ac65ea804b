//! Device-management requests from the server engine to a scripted client in
//! the simulated network: payloads decoded to Nodes, queue mode.

mod common;

use common::*;
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Request, Response};
use lwm2m_core::format::{self, ContentFormat};
use lwm2m_core::model::{
    AttributeChange, AttributeUpdate, Instance, Node, Path, Resource, Value, NO_MODELS,
};
use lwm2m_core::sim::{LinkConfig, Network};
use lwm2m_core::time::Duration;
use lwm2m_server::{
    Content, DmError, DmRequestId, DmResponse, ServerConfig, ServerEvent, WriteMode,
};

fn device() -> Instance {
    Instance::new(
        0,
        [
            Resource::single(0, Value::String("Open Mobile Alliance".into())),
            Resource::single(1, Value::String("Lightweight M2M Client".into())),
            Resource::single(9, Value::Integer(87)),
            Resource::multiple(11, [(0, Value::Integer(0)), (1, Value::Integer(5))]),
            Resource::single(13, Value::Time(1_700_000_000)),
        ],
    )
}

fn server_instance() -> Instance {
    Instance::new(
        0,
        [
            Resource::single(0, Value::Integer(101)),
            Resource::single(1, Value::UnsignedInteger(300)),
            Resource::single(6, Value::Boolean(true)),
            Resource::single(7, Value::String("U".into())),
        ],
    )
}

fn path_of(req: &Request) -> Path {
    let segs: Vec<String> = req
        .options
        .get_all(number::URI_PATH)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    Path::from_segments(segs.iter().map(String::as_str)).unwrap()
}

/// The client side of the round trips: answers what the tests send.
fn device_handler(req: &Request) -> Response {
    let path = path_of(req);
    let accept = req.options.uint(number::ACCEPT).map(|a| a as u16);
    let cf = req.options.uint(number::CONTENT_FORMAT).map(|c| c as u16);
    match (req.code, path) {
        (Code::GET, Path::Instance(3, 0)) if accept == Some(40) => Response::new(Code::CONTENT)
            .with_payload(40, b"</3/0>,</3/0/0>,</3/0/9>,</3/0/11>;dim=2".to_vec()),
        (Code::GET, Path::Instance(3, 0)) => {
            let cf = ContentFormat(accept.unwrap_or(ContentFormat::TLV.0));
            let mut out = Vec::new();
            format::encode(cf, &Node::Instance(device()), &path, &mut out).unwrap();
            let mut r = Response::new(Code::CONTENT).with_payload(cf.0, out);
            if req.options.uint(number::OBSERVE) == Some(0) {
                r.options.set_uint(number::OBSERVE, 1);
            }
            r
        }
        (Code::GET, Path::Resource(3, 0, 9)) => {
            Response::new(Code::CONTENT).with_payload(0, b"87".to_vec())
        }
        (Code::GET, _) => Response::new(Code::NOT_FOUND),
        (Code::PUT, Path::Instance(1, 0)) => {
            // Write replace: the payload must decode to exactly the instance sent.
            let Some(cf) = cf else {
                return Response::new(Code::BAD_REQUEST);
            };
            let models = lwm2m_objects::Registry::standard();
            match format::decode(ContentFormat(cf), &req.payload, &path, &models) {
                Ok(Node::Instance(i)) if i == server_instance() => Response::new(Code::CHANGED),
                _ => Response::new(Code::BAD_REQUEST),
            }
        }
        (Code::PUT, Path::Resource(3, 0, 9)) if req.payload.is_empty() => {
            let q: Vec<&[u8]> = req.options.get_all(number::URI_QUERY).collect();
            if q == [&b"pmin=5"[..], &b"pmax=60"[..]] {
                Response::new(Code::CHANGED)
            } else {
                Response::new(Code::BAD_REQUEST)
            }
        }
        (Code::POST, Path::Resource(3, 0, 4)) if req.payload == b"0='now'" => {
            Response::new(Code::CHANGED)
        }
        (Code::POST, Path::Object(1)) => {
            let mut r = Response::new(Code::CREATED);
            r.options.push(number::LOCATION_PATH, b"1".to_vec());
            r.options.push(number::LOCATION_PATH, b"7".to_vec());
            r
        }
        (Code::DELETE, Path::Instance(1, 7)) => Response::new(Code::DELETED),
        _ => Response::new(Code::METHOD_NOT_ALLOWED),
    }
}

fn response_of(net: &mut Network<SimPeer>, id: DmRequestId) -> Result<DmResponse, DmError> {
    let deadline = net.now() + Duration::from_secs(300);
    net.run_until(deadline, |n| {
        server(n)
            .events
            .iter()
            .any(|e| matches!(e, ServerEvent::Response { id: i, .. } if *i == id))
    });
    server(net)
        .events
        .iter()
        .find_map(|e| match e {
            ServerEvent::Response { id: i, result, .. } if *i == id => Some(result.clone()),
            _ => None,
        })
        .expect("response event")
}

fn registered_net(seed: u64, query: &str) -> Network<SimPeer> {
    let mut net = network(
        seed,
        LinkConfig::default(),
        ServerConfig::default(),
        1,
        Some(device_handler),
    );
    assert_eq!(register(&mut net, 1, query).code, Code::CREATED);
    net
}

#[test]
fn read_tlv_and_senml_json_decode_to_nodes() {
    let mut net = registered_net(30, "ep=dm&lt=300");
    for cf in [ContentFormat::TLV, ContentFormat::SENML_JSON] {
        let now = net.now();
        let id = server(&mut net)
            .engine
            .read(now, "dm", Path::Instance(3, 0), Some(cf))
            .unwrap();
        let r = response_of(&mut net, id).unwrap();
        assert_eq!(r.code, Code::CONTENT, "{cf:?}");
        assert_eq!(r.content, Content::Node(Node::Instance(device())), "{cf:?}");
    }
    // A single resource as text/plain, typed by the model (Battery Level: Integer).
    let now = net.now();
    let id = server(&mut net)
        .engine
        .read(now, "dm", Path::Resource(3, 0, 9), None)
        .unwrap();
    let r = response_of(&mut net, id).unwrap();
    assert_eq!(
        r.content,
        Content::Node(Node::Resource(Resource::single(9, Value::Integer(87))))
    );
    // An error code comes back as the code.
    let now = net.now();
    let id = server(&mut net)
        .engine
        .read(now, "dm", Path::Instance(3, 5), None)
        .unwrap();
    let r = response_of(&mut net, id).unwrap();
    assert_eq!((r.code, r.content), (Code::NOT_FOUND, Content::None));
}

#[test]
fn write_execute_create_delete_attributes_discover() {
    let mut net = registered_net(31, "ep=dm&lt=300");
    let node = Node::Instance(server_instance());
    for cf in [ContentFormat::TLV, ContentFormat::SENML_JSON] {
        let now = net.now();
        let id = server(&mut net)
            .engine
            .write(
                now,
                "dm",
                Path::Instance(1, 0),
                WriteMode::Replace,
                cf,
                &node,
            )
            .unwrap();
        assert_eq!(
            response_of(&mut net, id).unwrap().code,
            Code::CHANGED,
            "{cf:?}"
        );
    }
    let c = client(&mut net, 1);
    assert!(c
        .requests
        .iter()
        .all(|r| r.code != Code::PUT || r.options.uint(number::CONTENT_FORMAT).is_some()));

    let now = net.now();
    let s = &mut server(&mut net).engine;
    let exec = s
        .execute(now, "dm", Path::Resource(3, 0, 4), Some("0='now'"))
        .unwrap();
    let create = s
        .create(now, "dm", 1, ContentFormat::TLV, server_instance())
        .unwrap();
    let delete = s.delete(now, "dm", Path::Instance(1, 7)).unwrap();
    let update = AttributeUpdate {
        pmin: Some(AttributeChange::Set(5)),
        pmax: Some(AttributeChange::Set(60)),
        ..AttributeUpdate::default()
    };
    let attrs = s
        .write_attributes(now, "dm", Path::Resource(3, 0, 9), &update)
        .unwrap();
    let discover = s.discover(now, "dm", Path::Instance(3, 0)).unwrap();

    assert_eq!(response_of(&mut net, exec).unwrap().code, Code::CHANGED);
    let r = response_of(&mut net, create).unwrap();
    assert_eq!(
        (r.code, r.content),
        (Code::CREATED, Content::Created(Some(Path::Instance(1, 7))))
    );
    assert_eq!(response_of(&mut net, delete).unwrap().code, Code::DELETED);
    assert_eq!(response_of(&mut net, attrs).unwrap().code, Code::CHANGED);
    let r = response_of(&mut net, discover).unwrap();
    let Content::Links(entries) = r.content else {
        panic!("{r:?}")
    };
    let paths: Vec<Path> = entries.iter().map(|e| e.path).collect();
    assert_eq!(
        paths,
        [
            Path::Instance(3, 0),
            Path::Resource(3, 0, 0),
            Path::Resource(3, 0, 9),
            Path::Resource(3, 0, 11)
        ]
    );
    assert_eq!(entries[3].attributes.dim, Some(2));

    // The create payload was the instance under /1, in TLV.
    let c = client(&mut net, 1);
    let create_req = c
        .requests
        .iter()
        .find(|r| r.code == Code::POST && path_of(r) == Path::Object(1))
        .unwrap();
    let decoded = format::decode(
        ContentFormat::TLV,
        &create_req.payload,
        &Path::Object(1),
        &NO_MODELS,
    )
    .unwrap();
    let Node::Object(o) = decoded else { panic!() };
    assert_eq!(o.instances.keys().copied().collect::<Vec<_>>(), [0]);
}

#[test]
fn requests_to_unknown_endpoints_fail_at_once() {
    let mut net = registered_net(32, "ep=dm");
    let now = net.now();
    assert_eq!(
        server(&mut net)
            .engine
            .read(now, "nobody", Path::Object(3), None),
        Err(DmError::UnknownEndpoint)
    );
}

#[test]
fn observe_then_notifications_then_cancel() {
    let mut net = network(
        33,
        LinkConfig::default(),
        ServerConfig::default(),
        1,
        None, // the test answers by hand to send notifications
    );
    assert_eq!(register(&mut net, 1, "ep=obs").code, Code::CREATED);
    let now = net.now();
    let id = server(&mut net)
        .engine
        .observe(
            now,
            "obs",
            Path::Resource(3, 0, 9),
            Some(ContentFormat::TEXT),
        )
        .unwrap();
    run_for(&mut net, Duration::from_secs(1));
    let (incoming, req) = client(&mut net, 1).held.pop().expect("observe request");
    assert_eq!(req.options.uint(number::OBSERVE), Some(0));
    let now = net.now();
    let c = client(&mut net, 1);
    let obs =
        c.ep.respond_observe(
            now,
            incoming,
            Response::new(Code::CONTENT).with_payload(0, b"87".to_vec()),
        )
        .expect("observation registered");
    let r = response_of(&mut net, id).unwrap();
    assert_eq!(
        r.content,
        Content::Node(Node::Resource(Resource::single(9, Value::Integer(87))))
    );
    for level in [86, 85] {
        let now = net.now();
        let sent = client(&mut net, 1).ep.notify(
            now,
            obs,
            Response::new(Code::CONTENT).with_payload(0, level.to_string().into_bytes()),
            true,
        );
        assert!(sent);
        run_for(&mut net, Duration::from_secs(5));
    }
    let notes: Vec<Content> = server(&mut net)
        .events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Notification { id: i, result, .. } if *i == id => {
                Some(result.clone().unwrap().content)
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        notes,
        [86, 85].map(|v| Content::Node(Node::Resource(Resource::single(9, Value::Integer(v)))))
    );
    let now = net.now();
    let cancel = server(&mut net)
        .engine
        .cancel_observe(now, id)
        .unwrap()
        .expect("active cancel sent");
    run_for(&mut net, Duration::from_secs(1));
    let (incoming, req) = client(&mut net, 1).held.pop().expect("cancel request");
    assert_eq!(req.options.uint(number::OBSERVE), Some(1));
    let now = net.now();
    client(&mut net, 1)
        .ep
        .respond(now, incoming, Response::new(Code::CONTENT));
    assert_eq!(response_of(&mut net, cancel).unwrap().code, Code::CONTENT);
    let now = net.now();
    assert_eq!(
        server(&mut net).engine.cancel_observe(now, id),
        Err(DmError::UnknownRequest)
    );
}

#[test]
fn queue_mode_holds_requests_until_the_client_is_heard_from() {
    let mut net = registered_net(34, "ep=sleepy&lt=3600&lwm2m=1.1&Q");
    let loc = {
        let reg = server(&mut net).engine.registration("sleepy").unwrap();
        assert!(reg.queue_mode);
        format!("/rd/{}", reg.id)
    };
    // Within the awake time the request goes out at once.
    let now = net.now();
    let id = server(&mut net)
        .engine
        .read(now, "sleepy", Path::Resource(3, 0, 9), None)
        .unwrap();
    assert_eq!(response_of(&mut net, id).unwrap().code, Code::CONTENT);

    // Past it, requests are held: nothing reaches the client.
    run_for(&mut net, Duration::from_secs(120));
    let before = client(&mut net, 1).requests.len();
    let now = net.now();
    let s = &mut server(&mut net).engine;
    let a = s
        .read(
            now,
            "sleepy",
            Path::Instance(3, 0),
            Some(ContentFormat::TLV),
        )
        .unwrap();
    let b = s
        .read(now, "sleepy", Path::Resource(3, 0, 9), None)
        .unwrap();
    run_for(&mut net, Duration::from_secs(60));
    assert_eq!(client(&mut net, 1).requests.len(), before);
    assert!(!server(&mut net)
        .events
        .iter()
        .any(|e| matches!(e, ServerEvent::Response { id, .. } if *id == a || *id == b)));

    // The client updates: the held requests go out and are answered.
    let resp = exchange(
        &mut net,
        1,
        common::request(Code::POST, &loc, "", None, b""),
    )
    .unwrap();
    assert_eq!(resp.code, Code::CHANGED);
    assert_eq!(
        response_of(&mut net, a).unwrap().content,
        Content::Node(Node::Instance(device()))
    );
    assert_eq!(response_of(&mut net, b).unwrap().code, Code::CONTENT);
    assert_eq!(client(&mut net, 1).requests.len(), before + 2);
}

#[test]
fn queue_mode_bounds_and_times_out_held_requests() {
    let config = ServerConfig {
        max_queued_requests: 2,
        queued_request_timeout: Duration::from_secs(30),
        ..ServerConfig::default()
    };
    let mut net = network(35, LinkConfig::default(), config, 1, Some(device_handler));
    register(&mut net, 1, "ep=sleepy&b=UQ");
    run_for(&mut net, Duration::from_secs(100));
    let now = net.now();
    let s = &mut server(&mut net).engine;
    let a = s.read(now, "sleepy", Path::Object(3), None).unwrap();
    let _b = s.read(now, "sleepy", Path::Object(3), None).unwrap();
    assert_eq!(
        s.read(now, "sleepy", Path::Object(3), None),
        Err(DmError::QueueFull)
    );
    assert_eq!(response_of(&mut net, a), Err(DmError::QueueTimeout));
    assert!(net.now() >= now + Duration::from_secs(30));
    // Timed-out requests left the queue: there is room again.
    let now = net.now();
    run_for(&mut net, Duration::from_secs(1));
    assert!(server(&mut net)
        .engine
        .read(now, "sleepy", Path::Object(3), None)
        .is_ok());
}

#[test]
fn abandoned_requests_never_reach_the_device_and_free_the_queue() {
    let config = ServerConfig {
        max_queued_requests: 2,
        ..ServerConfig::default()
    };
    let mut net = network(37, LinkConfig::default(), config, 1, None);
    register(&mut net, 1, "ep=sleepy&b=UQ");
    let loc = format!(
        "/rd/{}",
        server(&mut net).engine.registration("sleepy").unwrap().id
    );
    run_for(&mut net, Duration::from_secs(100));
    let now = net.now();
    let s = &mut server(&mut net).engine;
    let given_up = s
        .read(now, "sleepy", Path::Resource(5, 0, 3), None)
        .unwrap();
    let wanted = s
        .read(now, "sleepy", Path::Resource(5, 0, 5), None)
        .unwrap();
    assert_eq!(
        s.read(now, "sleepy", Path::Object(3), None),
        Err(DmError::QueueFull)
    );
    assert!(s.abandon(now, given_up));
    assert!(!s.abandon(now, given_up), "abandoned once");
    // Its place in the queue is free again.
    let third = s
        .read(now, "sleepy", Path::Resource(3, 0, 9), None)
        .unwrap();

    // The client wakes: the wanted request reaches it (NSTART 1: the next
    // one waits for its answer), the abandoned one never does.
    let requests_before = client(&mut net, 1).requests.len();
    let resp = exchange(
        &mut net,
        1,
        common::request(Code::POST, &loc, "", None, b""),
    );
    assert_eq!(resp.unwrap().code, Code::CHANGED);
    run_for(&mut net, Duration::from_secs(1));
    let paths = |net: &mut Network<SimPeer>| -> Vec<String> {
        client(net, 1).requests[requests_before..]
            .iter()
            .map(|r| r.path())
            .collect()
    };
    assert_eq!(paths(&mut net), ["/5/0/5"]);

    // Abandoned once sent: the CoAP layer forgets it, so the next request
    // goes out, and the late answer makes no event.
    let (incoming, _) = client(&mut net, 1).held.remove(0);
    let now = net.now();
    assert!(server(&mut net).engine.abandon(now, wanted));
    run_for(&mut net, Duration::from_secs(1));
    assert_eq!(paths(&mut net), ["/5/0/5", "/3/0/9"]);
    let now = net.now();
    client(&mut net, 1).ep.respond(
        now,
        incoming,
        Response::new(Code::CONTENT).with_payload(0, b"1".to_vec()),
    );
    let (incoming, _) = client(&mut net, 1).held.remove(0);
    client(&mut net, 1).ep.respond(
        now,
        incoming,
        Response::new(Code::CONTENT).with_payload(0, b"80".to_vec()),
    );
    assert_eq!(response_of(&mut net, third).unwrap().code, Code::CONTENT);
    run_for(&mut net, Duration::from_secs(5));
    assert!(!server(&mut net).events.iter().any(|e| matches!(
        e,
        ServerEvent::Response { id, .. } if *id == wanted || *id == given_up
    )));
}

#[test]
fn deregistration_fails_held_requests() {
    let mut net = registered_net(36, "ep=gone&Q");
    let loc = format!(
        "/rd/{}",
        server(&mut net).engine.registration("gone").unwrap().id
    );
    run_for(&mut net, Duration::from_secs(100));
    let now = net.now();
    let id = server(&mut net)
        .engine
        .read(now, "gone", Path::Object(3), None)
        .unwrap();
    let resp = exchange(
        &mut net,
        1,
        common::request(Code::DELETE, &loc, "", None, b""),
    )
    .unwrap();
    assert_eq!(resp.code, Code::DELETED);
    assert_eq!(response_of(&mut net, id), Err(DmError::Deregistered));
}

#[test]
fn observations_end_when_the_client_registers_again() {
    let mut net = network(37, LinkConfig::default(), ServerConfig::default(), 1, None);
    assert_eq!(register(&mut net, 1, "ep=obs").code, Code::CREATED);
    let now = net.now();
    let id = server(&mut net)
        .engine
        .observe(now, "obs", Path::Resource(3, 0, 9), None)
        .unwrap();
    run_for(&mut net, Duration::from_secs(1));
    let (incoming, _) = client(&mut net, 1).held.pop().expect("observe request");
    let now = net.now();
    let obs = client(&mut net, 1)
        .ep
        .respond_observe(
            now,
            incoming,
            Response::new(Code::CONTENT).with_payload(0, b"1".to_vec()),
        )
        .unwrap();
    assert!(response_of(&mut net, id).is_ok());

    // A new Register (the device rebooted): the server drops the observation...
    assert_eq!(register(&mut net, 1, "ep=obs").code, Code::CREATED);
    assert!(server(&mut net).events.iter().any(|e| matches!(
        e,
        ServerEvent::Notification { id: i, result: Err(DmError::Deregistered), .. } if *i == id
    )));
    // ...and answers a stale notification with RST, which ends it at the client.
    let now = net.now();
    let sent = client(&mut net, 1).ep.notify(
        now,
        obs,
        Response::new(Code::CONTENT).with_payload(0, b"2".to_vec()),
        true,
    );
    assert!(sent);
    run_for(&mut net, Duration::from_secs(5));
    assert_eq!(client(&mut net, 1).ep.observation_count(), 0);
    let notes = server(&mut net)
        .events
        .iter()
        .filter(|e| matches!(e, ServerEvent::Notification { id: i, result: Ok(_), .. } if *i == id))
        .count();
    assert_eq!(notes, 0);
}

/// Runs `f` until it gives `Some`, at most three times (a real client or
/// application retries an exchange that failed at the CoAP layer).
fn retry<T>(
    net: &mut Network<SimPeer>,
    mut f: impl FnMut(&mut Network<SimPeer>) -> Option<T>,
) -> T {
    for _ in 0..3 {
        if let Some(v) = f(net) {
            return v;
        }
    }
    panic!("three attempts failed");
}

#[test]
fn read_and_queue_flush_at_20_percent_loss() {
    use lwm2m_core::sim::{seeds, SeedGuard};
    for seed in seeds(40, 8) {
        let _guard = SeedGuard(seed);
        let mut net = network(
            seed,
            LinkConfig::lossy(20),
            ServerConfig::default(),
            1,
            Some(device_handler),
        );
        let loc = retry(&mut net, |n| {
            let req = common::request(Code::POST, "/rd", "ep=lossy&lt=3600&Q", Some(40), b"</3/0>");
            exchange(n, 1, req).map(|r| location(&r))
        });
        let content = retry(&mut net, |n| {
            let now = n.now();
            let id = server(n)
                .engine
                .read(
                    now,
                    "lossy",
                    Path::Instance(3, 0),
                    Some(ContentFormat::SENML_JSON),
                )
                .unwrap();
            response_of(n, id).ok().map(|r| r.content)
        });
        assert_eq!(content, Content::Node(Node::Instance(device())));

        // Asleep: the read is held, then flushed by an Update that gets through.
        run_for(&mut net, Duration::from_secs(200));
        let now = net.now();
        let held = server(&mut net)
            .engine
            .read(now, "lossy", Path::Instance(3, 0), Some(ContentFormat::TLV))
            .unwrap();
        retry(&mut net, |n| {
            exchange(n, 1, common::request(Code::POST, &loc, "", None, b""))
        });
        match response_of(&mut net, held) {
            Ok(r) => assert_eq!(r.content, Content::Node(Node::Instance(device()))),
            // Flushed but lost five times over: a CoAP timeout, never a hang.
            Err(e) => assert_eq!(
                e,
                DmError::Request(lwm2m_core::coap::endpoint::RequestError::Timeout)
            ),
        }
    }
}

#[test]
fn held_requests_carry_over_to_a_new_registration() {
    let mut net = registered_net(38, "ep=reboot&lt=3600&Q");
    run_for(&mut net, Duration::from_secs(120));
    let now = net.now();
    let id = server(&mut net)
        .engine
        .read(
            now,
            "reboot",
            Path::Instance(3, 0),
            Some(ContentFormat::TLV),
        )
        .unwrap();
    run_for(&mut net, Duration::from_secs(10));
    assert!(!server(&mut net)
        .events
        .iter()
        .any(|e| matches!(e, ServerEvent::Response { id: i, .. } if *i == id)));
    // The device rebooted and registers anew: the held read goes to it.
    assert_eq!(
        register(&mut net, 1, "ep=reboot&lt=3600&Q").code,
        Code::CREATED
    );
    assert_eq!(
        response_of(&mut net, id).unwrap().content,
        Content::Node(Node::Instance(device()))
    );
}
