//! Device-management operations and their response codes, one request at a
//! time over a loss-free simulated link.

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use common::*;
use lwm2m_client::{ClientEvent, DmError, RegistrationState};
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Request, Response};
use lwm2m_core::format::{self, ContentFormat};
use lwm2m_core::model::{Node, Path, ResourceValue, Value};
use lwm2m_core::time::Duration;
use lwm2m_objects::Registry;

struct Setup {
    h: Harness,
    executed: Rc<RefCell<Vec<String>>>,
}

fn setup() -> Setup {
    let mut h = Harness::new(99, 0, 600);
    let executed = Rc::new(RefCell::new(Vec::new()));
    h.client()
        .add_object(Box::new(TestObject::new(executed.clone())));
    h.register();
    Setup { h, executed }
}

fn code(h: &mut Harness, r: Request) -> Code {
    h.request(r).code
}

fn put(path: &str, cf: u16, payload: &[u8]) -> Request {
    Request::new(Code::PUT)
        .with_path(path)
        .with_payload(cf, payload.to_vec())
}

fn post(path: &str, cf: u16, payload: &[u8]) -> Request {
    Request::new(Code::POST)
        .with_path(path)
        .with_payload(cf, payload.to_vec())
}

fn text(r: &Response) -> &str {
    std::str::from_utf8(&r.payload).unwrap()
}

#[test]
fn unknown_object_instance_or_resource_is_4_04() {
    let Setup { mut h, .. } = setup();
    for p in [
        "/99",
        "/3/5",
        "/3/0/99",
        "/3/0/9",
        "/3/0/11/7",
        "/31024/3/0",
    ] {
        assert_eq!(code(&mut h, get(p)), Code::NOT_FOUND, "{p}");
    }
    assert_eq!(code(&mut h, put("/3/7/14", 0, b"x")), Code::NOT_FOUND);
    assert_eq!(code(&mut h, post("/99/0/1", 0, b"")), Code::NOT_FOUND);
    assert_eq!(
        code(&mut h, Request::new(Code::DELETE).with_path("/31024/9")),
        Code::NOT_FOUND
    );
}

#[test]
fn operation_the_model_forbids_is_4_05() {
    let Setup { mut h, .. } = setup();
    // Read of an executable resource.
    assert_eq!(code(&mut h, get("/3/0/4")), Code::METHOD_NOT_ALLOWED);
    // Write of a read-only resource.
    assert_eq!(
        code(&mut h, put("/3/0/0", 0, b"X")),
        Code::METHOD_NOT_ALLOWED
    );
    // Execute of a readable resource.
    assert_eq!(
        code(&mut h, post("/3/0/0", 0, b"")),
        Code::METHOD_NOT_ALLOWED
    );
    // Create / Delete on an object that does not support them.
    assert_eq!(code(&mut h, post("/3", 0, b"")), Code::METHOD_NOT_ALLOWED);
    assert_eq!(
        code(&mut h, Request::new(Code::DELETE).with_path("/3/0")),
        Code::METHOD_NOT_ALLOWED
    );
    // Delete of a whole object, write on an object, read of the root.
    assert_eq!(
        code(&mut h, Request::new(Code::DELETE).with_path("/3")),
        Code::METHOD_NOT_ALLOWED
    );
    assert_eq!(code(&mut h, put("/3", 0, b"X")), Code::METHOD_NOT_ALLOWED);
    assert_eq!(code(&mut h, get("/")), Code::METHOD_NOT_ALLOWED);
    // Execute of an executable the client cannot carry out is refused
    // too: Bootstrap-Request Trigger without a Bootstrap-Server account.
    assert_eq!(
        code(&mut h, post("/1/0/9", 0, b"")),
        Code::METHOD_NOT_ALLOWED
    );
}

#[test]
fn security_object_is_unauthorized() {
    let Setup { mut h, .. } = setup();
    assert_eq!(code(&mut h, get("/0/0/0")), Code::UNAUTHORIZED);
    assert_eq!(code(&mut h, get_accept("/0", 40)), Code::UNAUTHORIZED);
    assert_eq!(
        code(&mut h, put("/0/0/0", 0, b"coap://evil")),
        Code::UNAUTHORIZED
    );
}

#[test]
fn unsupported_accept_is_4_06() {
    let Setup { mut h, .. } = setup();
    // text/plain cannot carry an instance or a multiple resource.
    assert_eq!(code(&mut h, get_accept("/3/0", 0)), Code::NOT_ACCEPTABLE);
    assert_eq!(code(&mut h, get_accept("/3/0/11", 0)), Code::NOT_ACCEPTABLE);
    // A format the client does not know at all.
    assert_eq!(
        code(&mut h, get_accept("/3/0/0", 9999)),
        Code::NOT_ACCEPTABLE
    );
    // application/xml (41) is a registered format this client does not produce.
    assert_eq!(code(&mut h, get_accept("/3/0/0", 41)), Code::NOT_ACCEPTABLE);
}

#[test]
fn bad_payload_is_4_00_and_unknown_content_format_is_4_15() {
    let Setup { mut h, .. } = setup();
    // Not a time.
    assert_eq!(code(&mut h, put("/3/0/13", 0, b"abc")), Code::BAD_REQUEST);
    // Not TLV.
    assert_eq!(
        code(&mut h, put("/3/0", 11542, &[0xC8, 0x0E, 0x05])),
        Code::BAD_REQUEST
    );
    // Not SenML JSON.
    assert_eq!(
        code(&mut h, post("/31024/0", 110, b"[{\"n\":")),
        Code::BAD_REQUEST
    );
    // TLV whose resource does not match the path.
    assert_eq!(
        code(&mut h, put("/31024/0/0", 11542, &[0xC1, 0x03, 0x07])),
        Code::BAD_REQUEST
    );
    // No Content-Format at all.
    let mut no_cf = Request::new(Code::PUT).with_path("/3/0/14");
    no_cf.payload = b"+02:00".to_vec();
    assert_eq!(code(&mut h, no_cf), Code::BAD_REQUEST);
    // Execute arguments that are not UTF-8.
    assert_eq!(
        code(&mut h, post("/31024/0/2", 0, &[0xff, 0xfe])),
        Code::BAD_REQUEST
    );
    // Unknown or unsupported formats.
    assert_eq!(
        code(&mut h, put("/3/0/14", 9999, b"+02:00")),
        Code::UNSUPPORTED_CONTENT_FORMAT
    );
    assert_eq!(
        code(&mut h, put("/3/0/14", 41, b"<x/>")),
        Code::UNSUPPORTED_CONTENT_FORMAT
    );
    // Nothing was written by the failed requests.
    assert_eq!(text(&h.request(get("/3/0/14"))), "");
}

#[test]
fn read_picks_a_format_when_there_is_no_accept() {
    let Setup { mut h, .. } = setup();
    let r = h.request(get("/3/0/0"));
    assert_eq!(
        (r.code, content_format(&r), text(&r)),
        (Code::CONTENT, Some(0), "ACME")
    );
    let r = h.request(get("/3/0/11/0"));
    assert_eq!((content_format(&r), text(&r)), (Some(0), "0"));
    // An instance from an LwM2M 1.1 client: SenML CBOR.
    let r = h.request(get("/3/0"));
    assert_eq!(content_format(&r), Some(112));
    let node = format::decode(
        ContentFormat::SENML_CBOR,
        &r.payload,
        &Path::Instance(3, 0),
        &Registry::standard(),
    )
    .unwrap();
    let Node::Instance(inst) = node else { panic!() };
    assert_eq!(
        inst.resources[&2].value,
        ResourceValue::Single(Value::String("SN-0042".into()))
    );
    // Executable resources are not part of an instance read.
    assert!(!inst.resources.contains_key(&4));
    // A whole object in TLV.
    let r = h.request(get_accept("/31024", 11542));
    assert_eq!(r.code, Code::CONTENT);
    let mut models = BTreeMap::new();
    models.insert(TEST_OBJECT, TestObject::new(Default::default()).model);
    let node = format::decode(
        ContentFormat::TLV,
        &r.payload,
        &Path::Object(TEST_OBJECT),
        &models,
    )
    .unwrap();
    let Node::Object(o) = node else { panic!() };
    assert_eq!(
        o.instances[&0].resources[&0].value,
        ResourceValue::Single(Value::Integer(5))
    );
}

#[test]
fn lwm2m_1_0_client_reads_instances_as_tlv() {
    let mut h = Harness::new(5, 0, 600);
    // Rebuild the client with version 1.0 through its config.
    let mut config = h.client().config().clone();
    config.lwm2m_version = lwm2m_core::model::Version::new(1, 0);
    let mut client = lwm2m_client::Client::new(config, SERVER, lwm2m_core::rng::SplitMix64::new(1));
    client.add_object(Box::new(device(&h.probes)));
    *h.client() = client;
    h.register();
    let register = h.server().rd_requests[0].1.clone();
    assert_eq!(
        std::str::from_utf8(&register.payload).unwrap(),
        r#"</>;rt="oma.lwm2m",</3>;ver=1.1,</3/0>"#
    );
    let r = h.request(get("/3/0"));
    assert_eq!(content_format(&r), Some(11542));
}

#[test]
fn discover_lists_resources_with_dim_and_attributes() {
    let Setup { mut h, .. } = setup();
    let r = h.request(get_accept("/3/0", 40));
    assert_eq!((r.code, content_format(&r)), (Code::CONTENT, Some(40)));
    assert_eq!(
        text(&r),
        "</3/0>,</3/0/0>,</3/0/1>,</3/0/2>,</3/0/3>,</3/0/4>,</3/0/5>,</3/0/11>;dim=1,</3/0/12>,</3/0/13>,</3/0/14>,</3/0/15>,</3/0/16>"
    );
    assert_eq!(
        code(
            &mut h,
            Request::new(Code::PUT)
                .with_path("/3")
                .with_query("pmax=60")
        ),
        Code::CHANGED
    );
    assert_eq!(
        code(
            &mut h,
            Request::new(Code::PUT)
                .with_path("/3/0/13")
                .with_query("pmin=5")
        ),
        Code::CHANGED
    );
    let r = h.request(get_accept("/3/0/13", 40));
    assert_eq!(text(&r), "</3/0/13>;pmin=5;pmax=60");
    let r = h.request(get_accept("/31024", 40));
    assert_eq!(
        text(&r),
        "</31024>,</31024/0>,</31024/0/0>,</31024/0/1>;dim=0,</31024/0/2>,</31024/0/3>"
    );
    let r = h.request(get_accept("/3", 40));
    assert!(
        text(&r).starts_with("</3>;ver=1.1;pmax=60,</3/0>,</3/0/0>,"),
        "{}",
        text(&r)
    );
    // Unsetting the attribute removes it.
    assert_eq!(
        code(
            &mut h,
            Request::new(Code::PUT)
                .with_path("/3/0/13")
                .with_query("pmin")
        ),
        Code::CHANGED
    );
    let r = h.request(get_accept("/3/0/13", 40));
    assert_eq!(text(&r), "</3/0/13>;pmax=60");
}

#[test]
fn write_attributes_errors() {
    let Setup { mut h, .. } = setup();
    let wa = |path: &str, q: &[&str]| {
        let mut r = Request::new(Code::PUT).with_path(path);
        for q in q {
            r = r.with_query(q);
        }
        r
    };
    assert_eq!(
        code(&mut h, wa("/3/0/13", &["pmin=abc"])),
        Code::BAD_REQUEST
    );
    assert_eq!(
        code(&mut h, wa("/3/0/13", &["pmin=10", "pmax=5"])),
        Code::BAD_REQUEST
    );
    // gt on a string resource.
    assert_eq!(code(&mut h, wa("/3/0/0", &["gt=5"])), Code::BAD_REQUEST);
    assert_eq!(
        code(&mut h, wa("/3/0/13", &["nonsense=1"])),
        Code::BAD_REQUEST
    );
    assert_eq!(code(&mut h, wa("/3/0/99", &["pmin=1"])), Code::NOT_FOUND);
    assert_eq!(code(&mut h, wa("/3/0/13", &[])), Code::BAD_REQUEST);
}

#[test]
fn write_replace_partial_and_resource_instance() {
    let Setup { mut h, .. } = setup();
    let tags = |h: &mut Harness| text(&h.request(get_accept("/31024/0/1", 110))).to_string();
    // Replace the instance: counter and tags.
    let body = br#"[{"bn":"/31024/0/","n":"0","v":1},{"n":"1/0","vs":"a"},{"n":"1/1","vs":"b"}]"#;
    assert_eq!(code(&mut h, put("/31024/0", 110, body)), Code::CHANGED);
    assert_eq!(text(&h.request(get("/31024/0/0"))), "1");
    assert_eq!(
        tags(&mut h),
        r#"[{"bn":"/31024/0/1/","n":"0","vs":"a"},{"n":"1","vs":"b"}]"#
    );
    // Partial update adds a tag.
    let body = br#"[{"n":"/31024/0/1/2","vs":"c"}]"#;
    assert_eq!(code(&mut h, post("/31024/0", 110, body)), Code::CHANGED);
    assert_eq!(
        tags(&mut h),
        r#"[{"bn":"/31024/0/1/","n":"0","vs":"a"},{"n":"1","vs":"b"},{"n":"2","vs":"c"}]"#
    );
    // Replace of the resource drops the others.
    let body = br#"[{"n":"/31024/0/1/5","vs":"z"}]"#;
    assert_eq!(code(&mut h, put("/31024/0/1", 110, body)), Code::CHANGED);
    assert_eq!(tags(&mut h), r#"[{"bn":"/31024/0/1/","n":"5","vs":"z"}]"#);
    // Resource instance write.
    assert_eq!(code(&mut h, put("/31024/0/1/6", 0, b"y")), Code::CHANGED);
    assert_eq!(text(&h.request(get("/31024/0/1/6"))), "y");
    assert_eq!(text(&h.request(get("/31024/0/1/5"))), "z");
    // A resource instance of a single resource does not exist.
    assert_eq!(code(&mut h, put("/31024/0/0/1", 0, b"1")), Code::NOT_FOUND);
    // An instance write with a read-only resource in it is refused whole.
    let body = br#"[{"bn":"/31024/0/","n":"0","v":9},{"n":"3","vs":"no"}]"#;
    assert_eq!(
        code(&mut h, post("/31024/0", 110, body)),
        Code::METHOD_NOT_ALLOWED
    );
    assert_eq!(text(&h.request(get("/31024/0/0"))), "1");
}

#[test]
fn execute_passes_arguments() {
    let Setup { mut h, executed } = setup();
    assert_eq!(
        code(&mut h, post("/31024/0/2", 0, b"0='on',1")),
        Code::CHANGED
    );
    let mut no_payload = Request::new(Code::POST).with_path("/31024/0/2");
    no_payload.payload.clear();
    assert_eq!(code(&mut h, no_payload), Code::CHANGED);
    assert_eq!(*executed.borrow(), ["0:0='on',1", "0:"]);
    // Reboot and Factory Reset call their hooks.
    assert_eq!(code(&mut h, post("/3/0/5", 0, b"")), Code::CHANGED);
    assert_eq!(
        (h.probes.reboots.get(), h.probes.factory_resets.get()),
        (0, 1)
    );
}

fn updates(h: &mut Harness) -> Vec<Request> {
    h.server()
        .rd_requests
        .iter()
        .filter(|(_, r)| r.path() == "/rd/5a3f" && r.code == Code::POST)
        .map(|(_, r)| r.clone())
        .collect()
}

#[test]
fn create_and_delete_update_the_registration() {
    let Setup { mut h, .. } = setup();
    let body = br#"[{"bn":"/31024/4/","n":"0","v":42}]"#;
    let r = h.request(post("/31024", 110, body));
    assert_eq!(r.code, Code::CREATED);
    let loc: Vec<_> = r
        .options
        .get_all(number::LOCATION_PATH)
        .map(|s| s.to_vec())
        .collect();
    assert_eq!(loc, [b"31024".to_vec(), b"4".to_vec()]);
    assert_eq!(text(&h.request(get("/31024/4/0"))), "42");
    // Without an instance id in the payload, the lowest free id.
    let r = h.request(post("/31024", 0, b""));
    assert_eq!(r.code, Code::CREATED);
    let loc: Vec<_> = r
        .options
        .get_all(number::LOCATION_PATH)
        .map(|s| s.to_vec())
        .collect();
    assert_eq!(loc, [b"31024".to_vec(), b"1".to_vec()]);
    // An existing id is refused.
    assert_eq!(
        code(
            &mut h,
            post("/31024", 110, br#"[{"n":"/31024/4/0","v":1}]"#)
        ),
        Code::BAD_REQUEST
    );
    h.run_for(Duration::from_secs(1));
    let u = updates(&mut h);
    assert!(!u.is_empty());
    let last = std::str::from_utf8(&u.last().unwrap().payload)
        .unwrap()
        .to_string();
    assert!(last.ends_with("</31024/0>,</31024/1>,</31024/4>"), "{last}");
    assert_eq!(
        code(&mut h, Request::new(Code::DELETE).with_path("/31024/4")),
        Code::DELETED
    );
    assert_eq!(code(&mut h, get("/31024/4")), Code::NOT_FOUND);
    h.run_for(Duration::from_secs(1));
    let u = updates(&mut h);
    let last = std::str::from_utf8(&u.last().unwrap().payload)
        .unwrap()
        .to_string();
    assert!(last.ends_with("</31024/0>,</31024/1>"), "{last}");
}

#[test]
fn lifetime_write_and_update_trigger_send_updates() {
    let Setup { mut h, .. } = setup();
    assert_eq!(code(&mut h, put("/1/0/1", 0, b"900")), Code::CHANGED);
    h.run_for(Duration::from_secs(1));
    let u = updates(&mut h);
    assert_eq!(u.len(), 1);
    let q: Vec<_> = u[0]
        .options
        .get_all(number::URI_QUERY)
        .map(|s| s.to_vec())
        .collect();
    assert_eq!(q, [b"lt=900".to_vec()]);
    assert_eq!(h.client().config().lifetime, 900);
    assert_eq!(code(&mut h, post("/1/0/8", 0, b"")), Code::CHANGED);
    h.run_for(Duration::from_secs(1));
    let u = updates(&mut h);
    assert_eq!(u.len(), 2);
    assert!(u[1].options.get_all(number::URI_QUERY).next().is_none());
    // A zero lifetime is refused.
    assert_eq!(code(&mut h, put("/1/0/1", 0, b"0")), Code::BAD_REQUEST);
}

#[test]
fn observe_cancel_and_instance_observation() {
    let Setup { mut h, .. } = setup();
    let now = h.now();
    let id = h
        .server()
        .ep
        .send_request(
            now,
            CLIENT,
            get_accept("/31024/0", 110).with_uint_option(number::OBSERVE, 0),
        )
        .unwrap();
    h.run_for(Duration::from_secs(1));
    assert_eq!(h.server().responses[&id].code, Code::CONTENT);
    assert_eq!(h.client().observation_count(), 1);
    // A write inside the instance notifies the instance observation.
    assert_eq!(code(&mut h, put("/31024/0/0", 0, b"77")), Code::CHANGED);
    h.run_for(Duration::from_secs(1));
    let n = h
        .server()
        .notifications
        .last()
        .cloned()
        .expect("notification");
    assert_eq!(content_format(&n.2), Some(110));
    assert!(text(&n.2).contains(r#""v":77"#), "{}", text(&n.2));
    // Same value again: no notification.
    let count = h.server().notifications.len();
    let now = h.now();
    h.client().changed(now, Path::Resource(TEST_OBJECT, 0, 0));
    h.run_for(Duration::from_secs(1));
    assert_eq!(h.server().notifications.len(), count);
    // Active cancel (GET with Observe 1).
    let now = h.now();
    let cancel = h.server().ep.cancel_observe(now, id).unwrap();
    h.run_for(Duration::from_secs(1));
    assert_eq!(h.server().responses[&cancel].code, Code::CONTENT);
    assert_eq!(h.client().observation_count(), 0);
}

#[test]
fn deleting_an_observed_instance_ends_the_observation_with_4_04() {
    let Setup { mut h, .. } = setup();
    assert_eq!(h.request(post("/31024", 0, b"")).code, Code::CREATED);
    let now = h.now();
    h.server()
        .ep
        .send_request(
            now,
            CLIENT,
            get("/31024/1/0").with_uint_option(number::OBSERVE, 0),
        )
        .unwrap();
    h.run_for(Duration::from_secs(1));
    assert_eq!(h.client().observation_count(), 1);
    assert_eq!(
        code(&mut h, Request::new(Code::DELETE).with_path("/31024/1")),
        Code::DELETED
    );
    h.run_for(Duration::from_secs(1));
    assert_eq!(h.client().observation_count(), 0);
    assert_eq!(
        h.server().notifications.last().map(|n| n.2.code),
        Some(Code::NOT_FOUND)
    );
}

#[test]
fn update_answered_4_04_registers_again() {
    let mut h = Harness::new(8, 0, 100);
    h.register();
    h.server().update_answer = Code::NOT_FOUND;
    h.run_for(Duration::from_secs(51));
    let kinds: Vec<String> = h
        .server()
        .rd_requests
        .iter()
        .map(|(_, r)| format!("{} {}", r.code, r.path()))
        .collect();
    assert_eq!(kinds, ["0.02 /rd", "0.02 /rd/5a3f", "0.02 /rd"]);
    let events: Vec<_> = h.client_events.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(
        events[1],
        ClientEvent::UpdateFailed {
            code: Some(Code::NOT_FOUND)
        }
    );
    assert!(matches!(events[2], ClientEvent::Registered { .. }));
    assert_eq!(h.client().state(), RegistrationState::Registered);
}

#[test]
fn register_retries_follow_the_server_object_defaults() {
    let mut h = Harness::new(9, 0, 100);
    h.server().register_answer = Code::FORBIDDEN;
    let now = h.now();
    h.client().start(now);
    h.run_for(Duration::from_secs(3 * 3_600));
    let times: Vec<u64> = h
        .server()
        .rd_requests
        .iter()
        .map(|(t, _)| t.as_millis())
        .collect();
    let gaps: Vec<u64> = times
        .windows(2)
        .map(|w| (w[1] - w[0] + 500) / 1000)
        .collect();
    assert_eq!(gaps, [60, 120, 240, 480]);
    assert_eq!(h.client().state(), RegistrationState::Failed);
    let last = h.client_events.last().unwrap().1.clone();
    assert_eq!(
        last,
        ClientEvent::RegistrationFailed {
            code: Some(Code::FORBIDDEN),
            retry_at: None
        }
    );
    // start() begins a new sequence.
    h.server().register_answer = Code::CREATED;
    let now = h.now();
    h.client().start(now);
    h.run_for(Duration::from_secs(1));
    assert_eq!(h.client().state(), RegistrationState::Registered);
}

#[test]
fn deregister_before_registering_reports_at_once() {
    let mut h = Harness::new(10, 0, 100);
    let now = h.now();
    assert!(!h.client().deregister(now));
    assert_eq!(h.client().poll_event(), Some(ClientEvent::Deregistered));
}

#[test]
fn location_segments_are_sent_back_unchanged() {
    // A segment holding '/' must stay one Uri-Path option, not two.
    let mut h = Harness::new(11, 0, 100);
    h.server().location = vec![b"rd".to_vec(), b"a/b".to_vec()];
    h.register();
    h.run_for(Duration::from_secs(51));
    let update = h
        .server()
        .rd_requests
        .iter()
        .find(|(_, r)| r.code == Code::POST && r.path() != "/rd")
        .cloned()
        .expect("update");
    let segments: Vec<Vec<u8>> = update
        .1
        .options
        .get_all(number::URI_PATH)
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(segments, [b"rd".to_vec(), b"a/b".to_vec()]);
    assert!(h
        .client_events
        .iter()
        .any(|(_, e)| *e == ClientEvent::Updated));
}

#[test]
fn con_attribute_makes_notifications_confirmable() {
    use lwm2m_core::coap::MessageType;
    let Setup { mut h, .. } = setup();
    assert_eq!(
        code(
            &mut h,
            Request::new(Code::PUT)
                .with_path("/31024/0/0")
                .with_query("con=1")
        ),
        Code::CHANGED
    );
    let now = h.now();
    h.server()
        .ep
        .send_request(
            now,
            CLIENT,
            get("/31024/0/0").with_uint_option(number::OBSERVE, 0),
        )
        .unwrap();
    h.run_for(Duration::from_secs(1));
    let since = h.now();
    assert_eq!(code(&mut h, put("/31024/0/0", 0, b"8")), Code::CHANGED);
    h.run_for(Duration::from_secs(1));
    let types: Vec<MessageType> = client_messages_since(&h, since)
        .into_iter()
        .filter(|m| m.3)
        .map(|m| m.1)
        .collect();
    assert_eq!(types, [MessageType::Con]);
    assert_eq!(text(&h.server().notifications.last().unwrap().2), "8");
}

#[test]
fn gt_lt_st_filter_value_changes() {
    let Setup { mut h, .. } = setup();
    let wa = Request::new(Code::PUT)
        .with_path("/31024/0/0")
        .with_query("gt=50")
        .with_query("lt=10")
        .with_query("st=15");
    assert_eq!(code(&mut h, wa), Code::CHANGED);
    let now = h.now();
    h.server()
        .ep
        .send_request(
            now,
            CLIENT,
            get("/31024/0/0").with_uint_option(number::OBSERVE, 0),
        )
        .unwrap();
    h.run_for(Duration::from_secs(1));
    // Counter starts at 5. Each write: (value, notified?)
    let steps = [
        (8, false),  // below lt, moved 3
        (12, true),  // crossed lt upwards
        (26, false), // moved 14 < st
        (28, true),  // moved 16 >= st since 12
        (40, false), // moved 12
        (51, true),  // crossed gt
        (50, true),  // crossed gt downwards
    ];
    for (value, expected) in steps {
        let before = h.server().notifications.len();
        assert_eq!(
            code(&mut h, put("/31024/0/0", 0, value.to_string().as_bytes())),
            Code::CHANGED
        );
        h.run_for(Duration::from_secs(1));
        let after = h.server().notifications.len();
        assert_eq!(after > before, expected, "value {value}");
        if expected {
            assert_eq!(
                text(&h.server().notifications.last().unwrap().2),
                value.to_string()
            );
        }
    }
}

#[test]
fn write_attributes_on_a_missing_resource_instance_is_4_04() {
    let Setup { mut h, .. } = setup();
    let wa = |p: &str| Request::new(Code::PUT).with_path(p).with_query("pmin=1");
    assert_eq!(code(&mut h, wa("/3/0/11/0")), Code::CHANGED);
    assert_eq!(code(&mut h, wa("/3/0/11/9")), Code::NOT_FOUND);
    assert_eq!(code(&mut h, wa("/3/0/0/0")), Code::NOT_FOUND);
}

#[test]
fn observations_beyond_the_limit_are_answered_as_reads() {
    let mut h = Harness::new(12, 0, 600);
    let mut config = h.client().config().clone();
    config.max_observations = 2;
    let mut client = lwm2m_client::Client::new(config, SERVER, lwm2m_core::rng::SplitMix64::new(4));
    client.add_object(Box::new(device(&h.probes)));
    *h.client() = client;
    h.register();
    for (i, p) in ["/3/0/13", "/3/0/0", "/3/0/1"].into_iter().enumerate() {
        let r = h.request(get(p).with_uint_option(number::OBSERVE, 0));
        assert_eq!(r.code, Code::CONTENT);
        assert_eq!(r.options.uint(number::OBSERVE).is_some(), i < 2, "{p}");
    }
    assert_eq!(h.client().observation_count(), 2);
}

#[test]
fn poll_observed_notices_changes_nobody_reported() {
    let mut h = Harness::new(13, 0, 600);
    let mut config = h.client().config().clone();
    config.poll_observed = Some(Duration::from_secs(1));
    let mut client = lwm2m_client::Client::new(config, SERVER, lwm2m_core::rng::SplitMix64::new(4));
    client.add_object(Box::new(device(&h.probes)));
    *h.client() = client;
    h.register();
    let wa = Request::new(Code::PUT)
        .with_path("/3/0/13")
        .with_query("pmin=3");
    assert_eq!(code(&mut h, wa), Code::CHANGED);
    let r = h.request(get("/3/0/13").with_uint_option(number::OBSERVE, 0));
    assert_eq!(r.code, Code::CONTENT);
    // Unchanged value: no notification.
    h.run_for(Duration::from_secs(5));
    assert!(h.server().notifications.is_empty());
    // The clock moves every 0.5 s without telling the engine: notifications
    // every pmin (3 s).
    let start = h.now();
    for _ in 0..20 {
        h.probes.clock.set(h.probes.clock.get() + 1);
        h.run_for(Duration::from_millis(500));
    }
    let times: Vec<_> = h
        .server()
        .notifications
        .iter()
        .map(|(t, _, _)| *t)
        .collect();
    assert!((3..=4).contains(&times.len()), "{times:?}");
    assert!(times[0] > start);
    for w in times.windows(2) {
        assert!(w[1] - w[0] >= Duration::from_secs(3), "{times:?}");
    }
}

#[test]
fn send_reports_values_with_post_dp() {
    use lwm2m_client::SendError;
    let Setup { mut h, .. } = setup();
    let now = h.now();
    let id = h
        .client()
        .send(
            now,
            &[Path::Resource(3, 0, 0), Path::Instance(TEST_OBJECT, 0)],
        )
        .unwrap();
    h.run_for(Duration::from_secs(1));
    let (_, dp) = h
        .server()
        .rd_requests
        .iter()
        .find(|(_, r)| r.path() == "/dp")
        .cloned()
        .expect("send request");
    assert_eq!(dp.code, Code::POST);
    assert_eq!(
        content_format(&Response {
            code: Code::CONTENT,
            options: dp.options.clone(),
            payload: Vec::new()
        }),
        Some(110)
    );
    let values = format::decode_values(
        ContentFormat::SENML_JSON,
        &dp.payload,
        &Registry::standard(),
    )
    .unwrap();
    let got: Vec<(String, Value)> = values
        .into_iter()
        .map(|v| (v.path.to_string(), v.value))
        .collect();
    assert_eq!(
        got,
        [
            ("/3/0/0".to_string(), Value::String("ACME".into())),
            ("/31024/0/0".to_string(), Value::Integer(5)),
            ("/31024/0/3".to_string(), Value::String("instance 0".into())),
        ]
    );
    assert!(h.client_events.iter().any(|(_, e)| *e
        == ClientEvent::SendCompleted {
            id,
            code: Some(Code::CHANGED)
        }));
    // Errors: unreadable path, Security object, Mute Send.
    let now = h.now();
    assert_eq!(
        h.client().send(now, &[Path::Resource(3, 0, 4)]),
        Err(SendError::Read(DmError::MethodNotAllowed))
    );
    assert_eq!(
        h.client().send(now, &[Path::Instance(0, 0)]),
        Err(SendError::Read(DmError::Unauthorized))
    );
    assert_eq!(code(&mut h, put("/1/0/23", 0, b"1")), Code::CHANGED);
    let now = h.now();
    assert_eq!(
        h.client().send(now, &[Path::Resource(3, 0, 0)]),
        Err(SendError::Muted)
    );
}

#[test]
fn send_needs_registration_and_lwm2m_1_1() {
    use lwm2m_client::SendError;
    let mut h = Harness::new(14, 0, 600);
    let now = h.now();
    assert_eq!(
        h.client().send(now, &[Path::Resource(3, 0, 0)]),
        Err(SendError::NotRegistered)
    );
    let mut config = h.client().config().clone();
    config.lwm2m_version = lwm2m_core::model::Version::new(1, 0);
    let mut client = lwm2m_client::Client::new(config, SERVER, lwm2m_core::rng::SplitMix64::new(4));
    client.add_object(Box::new(device(&h.probes)));
    *h.client() = client;
    h.register();
    let now = h.now();
    assert_eq!(
        h.client().send(now, &[Path::Resource(3, 0, 0)]),
        Err(SendError::Unsupported)
    );
}

#[test]
fn queue_mode_sleeps_after_the_awake_window_and_wakes_on_uplink() {
    let mut h = Harness::new(15, 0, 60);
    let mut config = h.client().config().clone();
    config.queue_mode = Some(Duration::from_secs(10));
    let mut client = lwm2m_client::Client::new(config, SERVER, lwm2m_core::rng::SplitMix64::new(4));
    client.add_object(Box::new(device(&h.probes)));
    *h.client() = client;
    h.register();
    let register = h.server().rd_requests[0].1.clone();
    let q: Vec<_> = register
        .options
        .get_all(number::URI_QUERY)
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect();
    assert_eq!(q, ["ep=dev1", "lt=60", "lwm2m=1.1", "b=U", "Q"]);
    // Awake: answered.
    h.run_for(Duration::from_secs(5));
    assert_eq!(code(&mut h, get("/3/0/0")), Code::CONTENT);
    // 10 s after that answer the client sleeps.
    h.run_for(Duration::from_secs(11));
    assert_eq!(
        h.client_events.last().map(|(_, e)| e.clone()),
        Some(ClientEvent::Sleeping)
    );
    let now = h.now();
    assert!(!h.client().is_listening(now));
    // A request now goes unanswered until the client's next uplink, the
    // Update at lifetime / 2 (30 s after registering).
    let asleep_at = h.now();
    let id = h
        .server()
        .ep
        .send_request(asleep_at, CLIENT, get("/3/0/1"))
        .unwrap();
    h.run_for(Duration::from_secs(40));
    let update_at = h
        .server()
        .rd_requests
        .iter()
        .find(|(_, r)| r.path() == "/rd/5a3f")
        .map(|(t, _)| *t)
        .expect("update");
    // The first thing the sleeping client sent was its Update: the GET
    // was dropped, not answered.
    let first = h
        .net
        .trace()
        .iter()
        .find(|t| t.from == CLIENT && t.at > asleep_at)
        .cloned()
        .unwrap();
    let m = lwm2m_core::coap::Message::parse(&first.bytes).unwrap();
    assert_eq!(m.code, Code::POST);
    assert_eq!(m.uri_path().collect::<Vec<_>>(), [&b"rd"[..], &b"5a3f"[..]]);
    assert!(first.at >= asleep_at + Duration::from_secs(10));
    assert!(first.at <= update_at);
    assert!(h
        .client_events
        .iter()
        .any(|(_, e)| *e == ClientEvent::Updated));
    // The server's retransmission reached the awake client.
    assert_eq!(
        h.server().responses.get(&id).map(|r| r.code),
        Some(Code::CONTENT)
    );
}

#[test]
fn queue_mode_with_lwm2m_1_0_uses_the_binding_letter() {
    let mut h = Harness::new(16, 0, 60);
    let mut config = h.client().config().clone();
    config.queue_mode = Some(Duration::from_secs(93));
    config.lwm2m_version = lwm2m_core::model::Version::new(1, 0);
    let mut client = lwm2m_client::Client::new(config, SERVER, lwm2m_core::rng::SplitMix64::new(4));
    client.add_object(Box::new(device(&h.probes)));
    *h.client() = client;
    h.register();
    let register = h.server().rd_requests[0].1.clone();
    let q: Vec<_> = register
        .options
        .get_all(number::URI_QUERY)
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect();
    assert_eq!(q, ["ep=dev1", "lt=60", "lwm2m=1.0", "b=UQ"]);
}

#[test]
fn read_composite_returns_the_existing_paths() {
    let Setup { mut h, .. } = setup();
    let body = br#"[{"n":"/3/0/0"},{"n":"/31024/0"},{"n":"/99/0/0"}]"#;
    let r = h.request(
        Request::new(Code::FETCH)
            .with_path("/")
            .with_payload(110, body.to_vec()),
    );
    assert_eq!((r.code, content_format(&r)), (Code::CONTENT, Some(110)));
    let values =
        format::decode_values(ContentFormat::SENML_JSON, &r.payload, &Registry::standard())
            .unwrap();
    let got: Vec<String> = values.iter().map(|v| v.path.to_string()).collect();
    assert_eq!(got, ["/3/0/0", "/31024/0/0", "/31024/0/3"]);
    // Errors.
    let fetch = |cf: u16, body: &[u8]| Request::new(Code::FETCH).with_payload(cf, body.to_vec());
    assert_eq!(
        code(&mut h, fetch(0, b"/3/0/0")),
        Code::UNSUPPORTED_CONTENT_FORMAT
    );
    assert_eq!(code(&mut h, fetch(110, b"[{")), Code::BAD_REQUEST);
    assert_eq!(
        code(&mut h, fetch(110, br#"[{"n":"/3/0/4"}]"#)),
        Code::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        code(&mut h, fetch(110, br#"[{"n":"/0/0"}]"#)),
        Code::UNAUTHORIZED
    );
    assert_eq!(
        code(
            &mut h,
            fetch(110, br#"[{"n":"/3/0/0"}]"#).with_uint_option(number::ACCEPT, 0)
        ),
        Code::NOT_ACCEPTABLE
    );
    assert_eq!(
        code(&mut h, fetch(110, br#"[{"n":"/3/0/0"}]"#).with_path("/3")),
        Code::METHOD_NOT_ALLOWED
    );
}

#[test]
fn write_composite_is_all_or_nothing() {
    let Setup { mut h, .. } = setup();
    let ipatch = |body: &[u8]| Request::new(Code::IPATCH).with_payload(110, body.to_vec());
    let body =
        br#"[{"n":"/31024/0/0","v":9},{"n":"/31024/0/1/3","vs":"t"},{"n":"/3/0/15","vs":"UTC"}]"#;
    assert_eq!(code(&mut h, ipatch(body)), Code::CHANGED);
    assert_eq!(text(&h.request(get("/31024/0/0"))), "9");
    assert_eq!(text(&h.request(get("/31024/0/1/3"))), "t");
    assert_eq!(text(&h.request(get("/3/0/15"))), "UTC");
    // One read-only resource refuses the whole request.
    let body = br#"[{"n":"/31024/0/0","v":10},{"n":"/3/0/0","vs":"X"}]"#;
    assert_eq!(code(&mut h, ipatch(body)), Code::METHOD_NOT_ALLOWED);
    assert_eq!(text(&h.request(get("/31024/0/0"))), "9");
    assert_eq!(
        code(&mut h, ipatch(br#"[{"n":"/31024/7/0","v":1}]"#)),
        Code::NOT_FOUND
    );
    assert_eq!(
        code(&mut h, ipatch(br#"[{"n":"/31024/0/1","vs":"x"}]"#)),
        Code::BAD_REQUEST
    );
    assert_eq!(
        code(&mut h, ipatch(br#"[{"n":"/0/0/0","vs":"x"}]"#)),
        Code::UNAUTHORIZED
    );
    assert_eq!(
        code(
            &mut h,
            Request::new(Code::IPATCH).with_payload(9999, b"x".to_vec())
        ),
        Code::UNSUPPORTED_CONTENT_FORMAT
    );
}

#[test]
fn observe_composite_notifies_when_any_listed_path_changes() {
    let Setup { mut h, .. } = setup();
    let body = br#"[{"n":"/3/0/13"},{"n":"/31024/0/0"}]"#;
    let req = Request::new(Code::FETCH)
        .with_payload(110, body.to_vec())
        .with_uint_option(number::OBSERVE, 0);
    let now = h.now();
    let id = h.server().ep.send_request(now, CLIENT, req).unwrap();
    h.run_for(Duration::from_secs(1));
    let first = h.server().responses[&id].clone();
    assert_eq!(first.code, Code::CONTENT);
    assert!(first.options.uint(number::OBSERVE).is_some());
    assert_eq!(h.client().observation_count(), 1);
    let values = |payload: &[u8]| -> Vec<(String, Value)> {
        format::decode_values(ContentFormat::SENML_JSON, payload, &Registry::standard())
            .unwrap()
            .into_iter()
            .map(|v| (v.path.to_string(), v.value))
            .collect()
    };
    assert_eq!(values(&first.payload).len(), 2);
    // A write to a listed path notifies with both values.
    assert_eq!(code(&mut h, put("/31024/0/0", 0, b"6")), Code::CHANGED);
    h.run_for(Duration::from_secs(1));
    let n = h
        .server()
        .notifications
        .last()
        .cloned()
        .expect("notification");
    let got = values(&n.2.payload);
    assert_eq!(got[1], ("/31024/0/0".to_string(), Value::Integer(6)));
    // A write elsewhere does not.
    let count = h.server().notifications.len();
    assert_eq!(code(&mut h, put("/3/0/15", 0, b"UTC")), Code::CHANGED);
    h.run_for(Duration::from_secs(1));
    assert_eq!(h.server().notifications.len(), count);
    // The application reports the clock.
    h.probes.clock.set(h.probes.clock.get() + 5);
    let now = h.now();
    h.client().changed(now, Path::Resource(3, 0, 13));
    h.run_for(Duration::from_secs(1));
    assert_eq!(h.server().notifications.len(), count + 1);
}

#[test]
fn edge_notifies_on_one_transition_only() {
    let Setup { mut h, .. } = setup();
    // /1/0/6 (Notification Storing) is a writable boolean, false at first.
    let wa = Request::new(Code::PUT)
        .with_path("/1/0/6")
        .with_query("edge=1");
    assert_eq!(code(&mut h, wa), Code::CHANGED);
    let now = h.now();
    h.server()
        .ep
        .send_request(
            now,
            CLIENT,
            get("/1/0/6").with_uint_option(number::OBSERVE, 0),
        )
        .unwrap();
    h.run_for(Duration::from_secs(1));
    // Rising edges only; the second rising edge notifies although its value
    // equals the last one sent.
    for (value, expected) in [(b"1", true), (b"0", false), (b"1", true), (b"1", false)] {
        let before = h.server().notifications.len();
        assert_eq!(code(&mut h, put("/1/0/6", 0, value)), Code::CHANGED);
        h.run_for(Duration::from_secs(1));
        assert_eq!(
            h.server().notifications.len() > before,
            expected,
            "write {value:?}"
        );
    }
}

#[test]
fn epmax_reads_values_nobody_reported() {
    let Setup { mut h, .. } = setup();
    let wa = Request::new(Code::PUT)
        .with_path("/3/0/13")
        .with_query("epmax=2");
    assert_eq!(code(&mut h, wa), Code::CHANGED);
    let r = h.request(get("/3/0/13").with_uint_option(number::OBSERVE, 0));
    assert_eq!(r.code, Code::CONTENT);
    h.run_for(Duration::from_secs(5));
    assert!(h.server().notifications.is_empty(), "value did not change");
    let changed_at = h.now();
    h.probes.clock.set(h.probes.clock.get() + 100);
    h.run_for(Duration::from_secs(5));
    let n = h
        .server()
        .notifications
        .first()
        .cloned()
        .expect("notification");
    assert!(n.0 - changed_at <= Duration::from_secs(2) + Duration::from_millis(50));
    assert_eq!(text(&n.2), (1_700_000_100).to_string());
}

#[test]
fn epmin_delays_the_evaluation_of_changes() {
    let Setup { mut h, .. } = setup();
    let wa = Request::new(Code::PUT)
        .with_path("/31024/0/0")
        .with_query("epmin=4");
    assert_eq!(code(&mut h, wa), Code::CHANGED);
    let r = h.request(get("/31024/0/0").with_uint_option(number::OBSERVE, 0));
    assert_eq!(r.code, Code::CONTENT);
    let observed = h.now();
    assert_eq!(code(&mut h, put("/31024/0/0", 0, b"6")), Code::CHANGED);
    h.run_for(Duration::from_secs(1));
    assert!(h.server().notifications.is_empty());
    h.run_for(Duration::from_secs(4));
    let n = h
        .server()
        .notifications
        .first()
        .cloned()
        .expect("notification");
    assert!(n.0 >= observed + Duration::from_secs(4));
    assert_eq!(text(&n.2), "6");
}
