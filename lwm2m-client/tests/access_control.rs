//! Access Control (object 2) enforcement with several LwM2M servers.

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::*;
use lwm2m_client::objects::{rights, AccessControl, AclInstance, ServerConfig, CREATE_INSTANCE};
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Request, Response};
use lwm2m_core::model::{ResourceValue, Value};
use lwm2m_core::sim::SimAddr;
use lwm2m_core::time::Duration;

const S1: SimAddr = 1;
const S2: SimAddr = 2;

fn servers(n: u16) -> Vec<ServerConfig> {
    (1..=n)
        .map(|ssid| ServerConfig {
            short_server_id: ssid,
            ..ServerConfig::new(600)
        })
        .collect()
}

/// Device instance 0 owned by server 1 without ACL entries; test object
/// instance 0 owned by server 1, readable by everyone (default entry);
/// Create on the test object granted to server 2 only.
fn acl() -> AccessControl {
    AccessControl::new()
        .with(AclInstance::new(3, 0, 1))
        .with(AclInstance::new(TEST_OBJECT, 0, 1).grant(0, rights::READ))
        .with(AclInstance::new(TEST_OBJECT, CREATE_INSTANCE, 3).grant(2, rights::CREATE))
}

fn setup(n: u16, acl: AccessControl) -> Harness {
    let mut h = Harness::multi(21, servers(n));
    let executed = Rc::new(RefCell::new(Vec::new()));
    h.client().add_object(Box::new(TestObject::new(executed)));
    h.client().add_object(Box::new(acl));
    let now = h.now();
    h.client().start(now);
    h.run_for(Duration::from_secs(5));
    assert_eq!(h.client().servers().len(), usize::from(n));
    h
}

fn ask(h: &mut Harness, from: SimAddr, r: Request) -> Response {
    h.request_from(from, r).0
}

fn code(h: &mut Harness, from: SimAddr, r: Request) -> Code {
    ask(h, from, r).code
}

fn put(path: &str, payload: &[u8]) -> Request {
    Request::new(Code::PUT)
        .with_path(path)
        .with_payload(0, payload.to_vec())
}

fn post(path: &str) -> Request {
    Request::new(Code::POST).with_path(path)
}

fn delete(path: &str) -> Request {
    Request::new(Code::DELETE).with_path(path)
}

fn observe(path: &str) -> Request {
    get(path).with_uint_option(number::OBSERVE, 0)
}

fn write_attributes(path: &str) -> Request {
    Request::new(Code::PUT).with_path(path).with_query("pmin=5")
}

fn acl_object(h: &mut Harness) -> Vec<(u16, u16, u16, i64)> {
    let o = h.client().object(2).unwrap();
    o.instances()
        .into_iter()
        .map(|x| {
            let int = |r| match o.read(x, r) {
                Ok(ResourceValue::Single(Value::Integer(v))) => v,
                _ => -1,
            };
            (
                x,
                u16::try_from(int(0)).unwrap(),
                u16::try_from(int(1)).unwrap(),
                int(3),
            )
        })
        .collect()
}

#[test]
fn a_server_without_rights_gets_4_01_and_the_owner_has_full_access() {
    let mut h = setup(2, acl());
    // Server 2 has no entry and there is no default on /3/0.
    let refused = [
        get("/3/0/0"),
        get("/3/0"),
        get_accept("/3/0", 40),
        get_accept("/3/0/0", 40),
        observe("/3/0/0"),
        write_attributes("/3/0/0"),
        put("/3/0/13", b"1700000001"),
        post("/3/0/4"),
        // The object has an instance, none readable by server 2.
        get("/3"),
        get_accept("/3", 40),
    ];
    for r in &refused {
        assert_eq!(
            code(&mut h, S2, r.clone()),
            Code::UNAUTHORIZED,
            "{} {}",
            r.code,
            r.path()
        );
    }
    assert_eq!(h.client().observation_count(), 0);
    assert_eq!(h.probes.reboots.get(), 0);
    // Server 1 owns /3/0: full access without an ACL entry.
    assert_eq!(code(&mut h, S1, get("/3/0/0")), Code::CONTENT);
    assert_eq!(code(&mut h, S1, get_accept("/3/0", 40)), Code::CONTENT);
    assert_eq!(code(&mut h, S1, observe("/3/0/0")), Code::CONTENT);
    assert_eq!(code(&mut h, S1, write_attributes("/3/0/0")), Code::CHANGED);
    assert_eq!(
        code(&mut h, S1, put("/3/0/13", b"1700000001")),
        Code::CHANGED
    );
    assert_eq!(code(&mut h, S1, post("/3/0/4")), Code::CHANGED);
    assert_eq!(h.probes.reboots.get(), 1);
    // Missing targets are still 4.04, not 4.01.
    assert_eq!(code(&mut h, S2, get("/3/9/0")), Code::NOT_FOUND);
}

#[test]
fn the_default_entry_applies_to_servers_not_listed() {
    let mut h = setup(2, acl());
    // Default (entry 0) is Read only.
    assert_eq!(code(&mut h, S2, get("/31024/0/0")), Code::CONTENT);
    assert_eq!(code(&mut h, S2, observe("/31024/0/0")), Code::CONTENT);
    assert_eq!(
        code(&mut h, S2, put("/31024/0/0", b"7")),
        Code::UNAUTHORIZED
    );
    assert_eq!(code(&mut h, S2, post("/31024/0/2")), Code::UNAUTHORIZED);
    assert_eq!(code(&mut h, S2, delete("/31024/0")), Code::UNAUTHORIZED);
    // An explicit entry wins over the default.
    let mut list = acl();
    list.insert(
        1,
        AclInstance::new(TEST_OBJECT, 0, 1)
            .grant(0, rights::READ)
            .grant(2, rights::WRITE),
    );
    let mut h = setup(2, list);
    assert_eq!(code(&mut h, S2, put("/31024/0/0", b"7")), Code::CHANGED);
    assert_eq!(code(&mut h, S2, get("/31024/0/0")), Code::UNAUTHORIZED);
}

#[test]
fn create_needs_the_create_right_and_makes_the_creator_owner() {
    let mut h = setup(2, acl());
    // Server 1 has no Create right on the object (its /31024/65535 instance).
    assert_eq!(code(&mut h, S1, post("/31024")), Code::UNAUTHORIZED);
    assert_eq!(h.client().object(TEST_OBJECT).unwrap().instances(), [0]);
    let r = ask(&mut h, S2, post("/31024"));
    assert_eq!(r.code, Code::CREATED);
    let loc: Vec<&[u8]> = r.options.get_all(number::LOCATION_PATH).collect();
    assert_eq!(loc, [&b"31024"[..], b"1"]);
    // An Access Control instance for /31024/1 owned by server 2.
    let acl = acl_object(&mut h);
    assert!(acl.contains(&(3, TEST_OBJECT, 1, 2)), "{acl:?}");
    // The owner has full access; server 1 none (no entry, no default).
    assert_eq!(code(&mut h, S2, put("/31024/1/0", b"9")), Code::CHANGED);
    assert_eq!(code(&mut h, S2, get("/31024/1/0")), Code::CONTENT);
    assert_eq!(code(&mut h, S1, get("/31024/1/0")), Code::UNAUTHORIZED);
    // An object read shows server 1 only the instances it may read.
    let r = ask(&mut h, S1, get_accept("/31024", 110));
    assert_eq!(r.code, Code::CONTENT);
    let body = String::from_utf8(r.payload).unwrap();
    assert!(
        body.contains(r#""n":"0/0""#) && !body.contains(r#""n":"1/0""#),
        "{body}"
    );
    let r = ask(&mut h, S1, get_accept("/31024", 40));
    let links = String::from_utf8(r.payload).unwrap();
    assert!(
        links.contains("</31024/0>") && !links.contains("</31024/1>"),
        "{links}"
    );
    // Server 1 may not delete it; the owner may, and its ACL instance goes.
    assert_eq!(code(&mut h, S1, delete("/31024/1")), Code::UNAUTHORIZED);
    assert_eq!(code(&mut h, S2, delete("/31024/1")), Code::DELETED);
    assert!(!acl_object(&mut h)
        .iter()
        .any(|a| a.1 == TEST_OBJECT && a.2 == 1));
    assert_eq!(h.client().object(TEST_OBJECT).unwrap().instances(), [0]);
}

#[test]
fn the_access_control_object_is_its_owners_only() {
    let mut h = setup(2, acl());
    let r = ask(&mut h, S2, post("/31024"));
    assert_eq!(r.code, Code::CREATED);
    // Instance 3 is server 2's (created with /31024/1), 0 is server 1's.
    assert_eq!(code(&mut h, S2, get("/2/3")), Code::CONTENT);
    assert_eq!(code(&mut h, S2, get("/2/0")), Code::UNAUTHORIZED);
    assert_eq!(code(&mut h, S1, get("/2/0")), Code::CONTENT);
    // The owner may write the ACL resource, not the owner or the target.
    let grant = Request::new(Code::PUT)
        .with_path("/2/3/2")
        .with_payload(110, br#"[{"bn":"/2/3/2/","n":"1","v":1}]"#.to_vec());
    assert_eq!(code(&mut h, S2, grant.clone()), Code::CHANGED);
    assert_eq!(code(&mut h, S1, grant), Code::UNAUTHORIZED);
    assert_eq!(code(&mut h, S2, put("/2/3/3", b"1")), Code::UNAUTHORIZED);
    assert_eq!(code(&mut h, S2, delete("/2/3")), Code::UNAUTHORIZED);
    assert_eq!(code(&mut h, S2, post("/2")), Code::UNAUTHORIZED);
    // The new entry gives server 1 Read on /31024/1.
    assert_eq!(code(&mut h, S1, get("/31024/1/0")), Code::CONTENT);
    assert_eq!(
        code(&mut h, S1, put("/31024/1/0", b"3")),
        Code::UNAUTHORIZED
    );
    // An object read of /2 shows each server its own instances.
    let r = ask(&mut h, S2, get_accept("/2", 40));
    let links = String::from_utf8(r.payload).unwrap();
    assert!(
        links.contains("</2/3>") && !links.contains("</2/0>"),
        "{links}"
    );
}

#[test]
fn composite_operations_skip_or_refuse_what_the_server_may_not_touch() {
    let mut h = setup(2, acl());
    let fetch = |paths: &str| {
        Request::new(Code::FETCH)
            .with_path("/")
            .with_payload(110, paths.as_bytes().to_vec())
    };
    let r = ask(&mut h, S2, fetch(r#"[{"n":"/3/0/0"},{"n":"/31024/0/0"}]"#));
    assert_eq!(r.code, Code::CONTENT);
    let body = String::from_utf8(r.payload).unwrap();
    assert!(
        body.contains("/31024/0/0") && !body.contains("ACME"),
        "{body}"
    );
    let r = ask(&mut h, S2, fetch(r#"[{"n":"/3/0/0"}]"#));
    assert_eq!(r.code, Code::UNAUTHORIZED);
    let r = ask(&mut h, S1, fetch(r#"[{"n":"/3/0/0"}]"#));
    assert_eq!(r.code, Code::CONTENT);
    let ipatch = Request::new(Code::IPATCH)
        .with_path("/")
        .with_payload(110, br#"[{"n":"/31024/0/0","v":11}]"#.to_vec());
    assert_eq!(code(&mut h, S2, ipatch.clone()), Code::UNAUTHORIZED);
    assert_eq!(code(&mut h, S1, ipatch), Code::CHANGED);
}

#[test]
fn a_single_server_ignores_access_control() {
    let mut h = setup(1, acl());
    assert_eq!(code(&mut h, S1, post("/31024")), Code::CREATED);
    // No Access Control instance is made for the new instance.
    assert_eq!(acl_object(&mut h).len(), 3);
    // Server 1 was never granted anything on these.
    assert_eq!(code(&mut h, S1, get("/31024/1/0")), Code::CONTENT);
    assert_eq!(code(&mut h, S1, get("/2/2")), Code::CONTENT);
    assert_eq!(code(&mut h, S1, delete("/31024/1")), Code::DELETED);
}

#[test]
fn without_an_access_control_object_several_servers_have_full_access() {
    let mut h = Harness::multi(22, servers(2));
    let now = h.now();
    h.client().start(now);
    h.run_for(Duration::from_secs(5));
    assert_eq!(code(&mut h, S2, get("/3/0/0")), Code::CONTENT);
    assert_eq!(code(&mut h, S2, post("/3/0/4")), Code::CHANGED);
}

#[test]
fn send_leaves_out_what_the_target_server_may_not_read() {
    use lwm2m_client::DmError;
    use lwm2m_client::SendError;
    use lwm2m_core::model::Path;
    let mut h = setup(2, acl());
    let dp = |h: &mut Harness, addr: SimAddr| -> Vec<String> {
        h.server_at(addr)
            .rd_requests
            .iter()
            .filter(|(_, r)| r.path() == "/dp")
            .map(|(_, r)| String::from_utf8(r.payload.clone()).unwrap())
            .collect()
    };
    let paths = [Path::Resource(3, 0, 0), Path::Resource(TEST_OBJECT, 0, 0)];
    // Server 2 has no rights on /3/0: only the test object's value goes.
    let now = h.now();
    h.client().send_to(now, 2, &paths).unwrap();
    h.run_for(Duration::from_secs(2));
    let sent = dp(&mut h, S2);
    assert_eq!(sent.len(), 1);
    assert!(!sent[0].contains("/3/0/0"), "{}", sent[0]);
    assert!(sent[0].contains("/31024/0/0"), "{}", sent[0]);
    // An object path keeps the readable instances only (none of /3 here).
    let now = h.now();
    assert_eq!(
        h.client()
            .send_to(now, 2, &[Path::Resource(3, 0, 0), Path::Object(3)]),
        Err(SendError::Read(DmError::Unauthorized))
    );
    // The owner, server 1, gets both.
    h.client().send_to(now, 1, &paths).unwrap();
    h.run_for(Duration::from_secs(2));
    let sent = dp(&mut h, S1);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].contains("/3/0/0") && sent[0].contains("/31024/0/0"));
    assert_eq!(dp(&mut h, S2).len(), 1);
}
