//! Send (`POST /dp`) and the composite operations (Read-Composite FETCH,
//! Write-Composite iPATCH, Observe-Composite) between the server engine and
//! a scripted client in the simulated network: exact request bytes and
//! content formats, decoded values and events.

mod common;

use common::*;
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Request, Response};
use lwm2m_core::format::ContentFormat;
use lwm2m_core::model::{Path, TimestampedValue, Value};
use lwm2m_core::sim::{LinkConfig, Network};
use lwm2m_core::time::Duration;
use lwm2m_server::{Content, DmError, DmRequestId, DmResponse, ServerConfig, ServerEvent};

fn tv(path: Path, value: Value, time: Option<f64>) -> TimestampedValue {
    TimestampedValue { path, value, time }
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

fn sends(net: &mut Network<SimPeer>) -> Vec<(String, ContentFormat, Vec<TimestampedValue>)> {
    server(net)
        .events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Send {
                endpoint,
                content_format,
                values,
            } => Some((endpoint.clone(), *content_format, values.clone())),
            _ => None,
        })
        .collect()
}

/// SenML JSON answer to any Read-Composite: Battery Level and Lifetime.
const COMPOSITE_ANSWER: &[u8] = br#"[{"n":"/3/0/9","v":87},{"n":"/1/0/1","v":300}]"#;

fn composite_handler(req: &Request) -> Response {
    match req.code {
        Code::FETCH => Response::new(Code::CONTENT).with_payload(110, COMPOSITE_ANSWER.to_vec()),
        Code::IPATCH => Response::new(Code::CHANGED),
        _ => Response::new(Code::METHOD_NOT_ALLOWED),
    }
}

#[test]
fn send_from_a_registered_client_is_an_event_with_its_values() {
    let mut net = network(40, LinkConfig::default(), ServerConfig::default(), 2, None);
    assert_eq!(
        register(&mut net, 1, "ep=sender&lwm2m=1.1").code,
        Code::CREATED
    );
    // TS Core 1.1 §6.4.6 style payload: a base name, a base time and two records.
    let payload =
        br#"[{"bn":"/3/0/","bt":1700000000,"n":"9","v":87},{"n":"13","v":1700000005,"t":5}]"#;
    let r = exchange(
        &mut net,
        1,
        request(Code::POST, "/dp", "", Some(110), payload),
    )
    .unwrap();
    assert_eq!(r.code, Code::CHANGED);
    assert_eq!(
        sends(&mut net),
        [(
            "sender".to_string(),
            ContentFormat::SENML_JSON,
            vec![
                tv(
                    Path::Resource(3, 0, 9),
                    Value::Integer(87),
                    Some(1_700_000_000.0)
                ),
                tv(
                    Path::Resource(3, 0, 13),
                    Value::Time(1_700_000_005),
                    Some(1_700_000_005.0)
                ),
            ]
        )]
    );
    // SenML CBOR: [{0: "/3/0/9", 2: 86}] (n = 0, v = 2).
    let cbor = [
        0x81, 0xa2, 0x00, 0x66, b'/', b'3', b'/', b'0', b'/', b'9', 0x02, 0x18, 0x56,
    ];
    let r = exchange(
        &mut net,
        1,
        request(Code::POST, "/dp", "", Some(112), &cbor),
    )
    .unwrap();
    assert_eq!(r.code, Code::CHANGED);
    let all = sends(&mut net);
    assert_eq!(all.len(), 2);
    assert_eq!(
        all[1],
        (
            "sender".to_string(),
            ContentFormat::SENML_CBOR,
            vec![tv(Path::Resource(3, 0, 9), Value::Integer(86), None)]
        )
    );
}

#[test]
fn send_is_refused_from_strangers_and_with_bad_payloads() {
    let mut net = network(41, LinkConfig::default(), ServerConfig::default(), 2, None);
    assert_eq!(
        register(&mut net, 1, "ep=sender&lwm2m=1.1").code,
        Code::CREATED
    );
    let ok = br#"[{"n":"/3/0/9","v":87}]"#;
    // Client 2 never registered.
    let r = exchange(&mut net, 2, request(Code::POST, "/dp", "", Some(110), ok)).unwrap();
    assert_eq!(r.code, Code::NOT_FOUND);
    // A format without paths, and no format at all.
    let r = exchange(&mut net, 1, request(Code::POST, "/dp", "", Some(0), b"87")).unwrap();
    assert_eq!(r.code, Code::UNSUPPORTED_CONTENT_FORMAT);
    let r = exchange(&mut net, 1, request(Code::POST, "/dp", "", None, ok)).unwrap();
    assert_eq!(r.code, Code::UNSUPPORTED_CONTENT_FORMAT);
    // Truncated JSON and truncated CBOR.
    let r = exchange(
        &mut net,
        1,
        request(Code::POST, "/dp", "", Some(110), br#"[{"n":"/3/0/9","v":"#),
    )
    .unwrap();
    assert_eq!(r.code, Code::BAD_REQUEST);
    let r = exchange(
        &mut net,
        1,
        request(Code::POST, "/dp", "", Some(112), &[0x81, 0xa2]),
    )
    .unwrap();
    assert_eq!(r.code, Code::BAD_REQUEST);
    // GET /dp is not Send.
    let r = exchange(&mut net, 1, request(Code::GET, "/dp", "", None, b"")).unwrap();
    assert_eq!(r.code, Code::METHOD_NOT_ALLOWED);
    assert!(sends(&mut net).is_empty());
}

#[test]
fn read_composite_sends_a_fetch_with_the_path_list_and_decodes_values() {
    let mut net = network(
        42,
        LinkConfig::default(),
        ServerConfig::default(),
        1,
        Some(composite_handler),
    );
    assert_eq!(
        register(&mut net, 1, "ep=comp&lwm2m=1.1").code,
        Code::CREATED
    );
    let now = net.now();
    let id = server(&mut net)
        .engine
        .read_composite(
            now,
            "comp",
            &[Path::Resource(3, 0, 9), Path::Resource(1, 0, 1)],
            ContentFormat::SENML_JSON,
            None,
        )
        .unwrap();
    let r = response_of(&mut net, id).unwrap();
    assert_eq!(r.code, Code::CONTENT);
    assert_eq!(
        r.content,
        Content::Values(vec![
            tv(Path::Resource(3, 0, 9), Value::Integer(87), None),
            tv(Path::Resource(1, 0, 1), Value::UnsignedInteger(300), None),
        ])
    );
    let req = client(&mut net, 1).requests.last().cloned().unwrap();
    assert_eq!(req.code, Code::FETCH);
    assert_eq!(
        req.options.get_all(number::URI_PATH).count(),
        0,
        "FETCH targets /"
    );
    assert_eq!(req.options.uint(number::CONTENT_FORMAT), Some(110));
    assert_eq!(req.options.uint(number::ACCEPT), None);
    assert_eq!(req.payload, br#"[{"n":"/3/0/9"},{"n":"/1/0/1"}]"#);

    // The path list in SenML CBOR, the answer asked for in SenML JSON.
    let now = net.now();
    let id = server(&mut net)
        .engine
        .read_composite(
            now,
            "comp",
            &[Path::Instance(3, 0)],
            ContentFormat::SENML_CBOR,
            Some(ContentFormat::SENML_JSON),
        )
        .unwrap();
    assert_eq!(response_of(&mut net, id).unwrap().code, Code::CONTENT);
    let req = client(&mut net, 1).requests.last().cloned().unwrap();
    assert_eq!(req.options.uint(number::CONTENT_FORMAT), Some(112));
    assert_eq!(req.options.uint(number::ACCEPT), Some(110));
    // [{0: "/3/0"}]
    assert_eq!(
        req.payload,
        [0x81, 0xa1, 0x00, 0x64, b'/', b'3', b'/', b'0']
    );
}

#[test]
fn write_composite_sends_an_ipatch_with_the_values() {
    let mut net = network(
        43,
        LinkConfig::default(),
        ServerConfig::default(),
        1,
        Some(composite_handler),
    );
    assert_eq!(
        register(&mut net, 1, "ep=comp&lwm2m=1.1").code,
        Code::CREATED
    );
    let values = [
        tv(Path::Resource(1, 0, 1), Value::UnsignedInteger(300), None),
        tv(Path::Resource(3, 0, 14), Value::String("+02".into()), None),
    ];
    let now = net.now();
    let id = server(&mut net)
        .engine
        .write_composite(now, "comp", &values, ContentFormat::SENML_JSON)
        .unwrap();
    let r = response_of(&mut net, id).unwrap();
    assert_eq!((r.code, r.content), (Code::CHANGED, Content::None));
    let req = client(&mut net, 1).requests.last().cloned().unwrap();
    assert_eq!(req.code, Code::IPATCH);
    assert_eq!(req.options.get_all(number::URI_PATH).count(), 0);
    assert_eq!(req.options.uint(number::CONTENT_FORMAT), Some(110));
    assert_eq!(
        req.payload,
        br#"[{"n":"/1/0/1","v":300},{"n":"/3/0/14","vs":"+02"}]"#
    );
    // Unknown client and a format without paths are refused before sending.
    let now = net.now();
    assert_eq!(
        server(&mut net)
            .engine
            .write_composite(now, "nobody", &values, ContentFormat::SENML_JSON),
        Err(DmError::UnknownEndpoint)
    );
    assert!(matches!(
        server(&mut net)
            .engine
            .write_composite(now, "comp", &values, ContentFormat::TLV),
        Err(DmError::Encode(_))
    ));
}

#[test]
fn observe_composite_notifications_then_cancel() {
    let mut net = network(44, LinkConfig::default(), ServerConfig::default(), 1, None);
    assert_eq!(register(&mut net, 1, "ep=oc&lwm2m=1.1").code, Code::CREATED);
    let now = net.now();
    let paths = [Path::Resource(3, 0, 9), Path::Resource(1, 0, 1)];
    let id = server(&mut net)
        .engine
        .observe_composite(now, "oc", &paths, ContentFormat::SENML_JSON, None)
        .unwrap();
    run_for(&mut net, Duration::from_secs(1));
    let (incoming, req) = client(&mut net, 1)
        .held
        .pop()
        .expect("observe-composite request");
    assert_eq!(req.code, Code::FETCH);
    assert_eq!(req.options.uint(number::OBSERVE), Some(0));
    assert_eq!(req.options.uint(number::CONTENT_FORMAT), Some(110));
    assert_eq!(req.payload, br#"[{"n":"/3/0/9"},{"n":"/1/0/1"}]"#);
    let now = net.now();
    let obs = client(&mut net, 1)
        .ep
        .respond_observe(
            now,
            incoming,
            Response::new(Code::CONTENT).with_payload(110, COMPOSITE_ANSWER.to_vec()),
        )
        .expect("observation registered");
    let first = response_of(&mut net, id).unwrap();
    assert_eq!(
        first.content,
        Content::Values(vec![
            tv(Path::Resource(3, 0, 9), Value::Integer(87), None),
            tv(Path::Resource(1, 0, 1), Value::UnsignedInteger(300), None),
        ])
    );
    for level in [86, 85] {
        let now = net.now();
        let body = format!(r#"[{{"n":"/3/0/9","v":{level}}},{{"n":"/1/0/1","v":300}}]"#);
        let sent = client(&mut net, 1).ep.notify(
            now,
            obs,
            Response::new(Code::CONTENT).with_payload(110, body.into_bytes()),
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
        [86, 85].map(|v| Content::Values(vec![
            tv(Path::Resource(3, 0, 9), Value::Integer(v), None),
            tv(Path::Resource(1, 0, 1), Value::UnsignedInteger(300), None),
        ]))
    );
    // Active cancel: the same FETCH with Observe = 1.
    let now = net.now();
    let cancel = server(&mut net)
        .engine
        .cancel_observe(now, id)
        .unwrap()
        .expect("active cancel sent");
    run_for(&mut net, Duration::from_secs(1));
    let (incoming, req) = client(&mut net, 1).held.pop().expect("cancel request");
    assert_eq!(req.code, Code::FETCH);
    assert_eq!(req.options.uint(number::OBSERVE), Some(1));
    assert_eq!(req.payload, br#"[{"n":"/3/0/9"},{"n":"/1/0/1"}]"#);
    let now = net.now();
    client(&mut net, 1)
        .ep
        .respond(now, incoming, Response::new(Code::CONTENT));
    assert_eq!(response_of(&mut net, cancel).unwrap().code, Code::CONTENT);
}

#[test]
fn send_in_lwm2m_cbor_is_decoded() {
    let mut net = network(45, LinkConfig::default(), ServerConfig::default(), 1, None);
    assert_eq!(
        register(&mut net, 1, "ep=cbor&lwm2m=1.2").code,
        Code::CREATED
    );
    // LwM2M CBOR (TS Core 1.2 §7.4.6): nested maps of ids, {3: {0: {9: 87}}}.
    let payload = [0xa1, 0x03, 0xa1, 0x00, 0xa1, 0x09, 0x18, 0x57];
    let r = exchange(
        &mut net,
        1,
        request(Code::POST, "/dp", "", Some(11544), &payload),
    )
    .unwrap();
    assert_eq!(r.code, Code::CHANGED);
    assert_eq!(
        sends(&mut net),
        [(
            "cbor".to_string(),
            ContentFormat::LWM2M_CBOR,
            vec![tv(Path::Resource(3, 0, 9), Value::Integer(87), None)]
        )]
    );
}

#[test]
fn send_is_credited_to_the_newest_registration_at_the_address() {
    let mut net = network(46, LinkConfig::default(), ServerConfig::default(), 1, None);
    // Two endpoints behind one address (a NAT): the later registration wins.
    assert_eq!(register(&mut net, 1, "ep=older").code, Code::CREATED);
    run_for(&mut net, Duration::from_secs(2));
    assert_eq!(register(&mut net, 1, "ep=newer").code, Code::CREATED);
    let ok = br#"[{"n":"/3/0/9","v":87}]"#;
    let r = exchange(&mut net, 1, request(Code::POST, "/dp", "", Some(110), ok)).unwrap();
    assert_eq!(r.code, Code::CHANGED);
    let senders: Vec<String> = sends(&mut net).into_iter().map(|s| s.0).collect();
    assert_eq!(senders, ["newer"]);
}

#[test]
fn send_from_a_sleeping_queue_mode_client_releases_held_requests() {
    let mut net = network(
        47,
        LinkConfig::default(),
        ServerConfig::default(),
        1,
        Some(composite_handler),
    );
    assert_eq!(
        register(&mut net, 1, "ep=sleepy&lt=3600&lwm2m=1.1&Q").code,
        Code::CREATED
    );
    // Past the awake time a Read-Composite is held.
    run_for(&mut net, Duration::from_secs(120));
    let before = client(&mut net, 1).requests.len();
    let now = net.now();
    let id = server(&mut net)
        .engine
        .read_composite(
            now,
            "sleepy",
            &[Path::Resource(3, 0, 9)],
            ContentFormat::SENML_JSON,
            None,
        )
        .unwrap();
    run_for(&mut net, Duration::from_secs(30));
    assert_eq!(client(&mut net, 1).requests.len(), before);
    // The client's Send shows it is awake: the held request goes out.
    let ok = br#"[{"n":"/3/0/9","v":87}]"#;
    let r = exchange(&mut net, 1, request(Code::POST, "/dp", "", Some(110), ok)).unwrap();
    assert_eq!(r.code, Code::CHANGED);
    assert_eq!(response_of(&mut net, id).unwrap().code, Code::CONTENT);
    assert_eq!(client(&mut net, 1).requests.len(), before + 1);
}
