//! Client-initiated bootstrap against a scripted Bootstrap-Server, then
//! registration with the server it configured, in the simulated network.

mod common;

use common::*;
use lwm2m_client::{ClientEvent, RegistrationState};
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Request, Response};
use lwm2m_core::sim::{seeds, SeedGuard};
use lwm2m_core::time::Duration;

fn queries(r: &Request) -> Vec<String> {
    r.options
        .get_all(number::URI_QUERY)
        .map(|q| String::from_utf8(q.to_vec()).unwrap())
        .collect()
}

fn text(r: &Response) -> String {
    String::from_utf8(r.payload.clone()).unwrap()
}

const SECURITY_1: &str = r#"[{"bn":"/0/1/","n":"0","vs":"coap://dm"},{"n":"1","vb":false},{"n":"2","v":3},{"n":"10","v":101}]"#;
const SERVER_0: &str = r#"[{"bn":"/1/0/","n":"0","v":101},{"n":"1","v":300},{"n":"7","vs":"U"}]"#;

/// Runs until the client sent Bootstrap-Request and got 2.04.
fn start_bootstrap(h: &mut Harness) {
    let now = h.now();
    h.client().start(now);
    let ok = h.run_until(Duration::from_secs(600), |net, _| {
        match net.node(BOOTSTRAP) {
            SimPeer::Server(s) => !s.rd_requests.is_empty(),
            SimPeer::Client(_) => unreachable!(),
        }
    });
    assert!(ok);
    h.run_for(Duration::from_secs(5));
    assert_eq!(h.client().state(), RegistrationState::Bootstrapping);
}

#[test]
fn bootstrap_then_register_at_20_percent_loss() {
    for seed in seeds(0xB007, 8) {
        let _guard = SeedGuard(seed);
        let mut h = Harness::with_bootstrap(seed, 20);
        start_bootstrap(&mut h);
        let request = h.server_at(BOOTSTRAP).rd_requests[0].1.clone();
        assert_eq!(request.path(), "/bs");
        assert_eq!(queries(&request), ["ep=dev1"]);

        // Delete everything, look, configure, finish.
        assert_eq!(
            bs(&mut h, Request::new(Code::DELETE).with_path("/")).code,
            Code::DELETED
        );
        let r = bs(&mut h, get_accept("/", 40));
        assert_eq!(r.code, Code::CONTENT);
        assert_eq!(
            text(&r),
            "</>;lwm2m=1.1,</0>;ver=1.1,</0/0>,</1>;ver=1.1,</3>;ver=1.1,</3/0>"
        );
        assert_eq!(
            bs(&mut h, senml_put("/0/1", SECURITY_1)).code,
            Code::CHANGED
        );
        assert_eq!(bs(&mut h, senml_put("/1/0", SERVER_0)).code, Code::CHANGED);
        let r = bs(&mut h, get_accept("/0", 40));
        assert_eq!(
            text(&r),
            r#"</>;lwm2m=1.1,</0>;ver=1.1,</0/0>,</0/1>;ssid=101;uri="coap://dm""#
        );
        // Bootstrap-Read of the Server object.
        let r = bs(&mut h, get_accept("/1/0/1", 0));
        assert_eq!((r.code, text(&r)), (Code::CONTENT, "300".to_string()));
        // The Security object stays unreadable, even for the Bootstrap-Server.
        assert_eq!(bs(&mut h, get("/0/1/0")).code, Code::UNAUTHORIZED);
        let (r, _) = h.request_from(BOOTSTRAP, Request::new(Code::POST).with_path("/bs"));
        assert_eq!(r.code, Code::CHANGED);

        // Register with the configured server, its lifetime, no Security link.
        let ok = h.run_until(Duration::from_secs(1_200), |_, ev| {
            ev.iter()
                .any(|(_, e)| matches!(e, ClientEvent::Registered { .. }))
        });
        assert!(ok, "{:?}", h.client_events);
        let register = h.server_at(SERVER).rd_requests[0].1.clone();
        assert_eq!(
            queries(&register),
            ["ep=dev1", "lt=300", "lwm2m=1.1", "b=U"]
        );
        assert_eq!(
            text(&Response {
                code: Code::CONTENT,
                options: Default::default(),
                payload: register.payload.clone()
            }),
            r#"</>;rt="oma.lwm2m";ct="60 110 112 11542 11543 11544",</1>;ver=1.1,</1/0>,</3>;ver=1.1,</3/0>"#
        );
        let events: Vec<_> = h.client_events.iter().map(|(_, e)| e.clone()).collect();
        let boot = events
            .iter()
            .position(|e| *e == ClientEvent::Bootstrapped)
            .unwrap();
        let reg = events
            .iter()
            .position(|e| matches!(e, ClientEvent::Registered { .. }))
            .unwrap();
        assert!(boot < reg);
        // Device management now comes from the new server only.
        assert_eq!(h.request(get("/1/0/0")).code, Code::CONTENT);
        assert_eq!(bs(&mut h, get("/3/0/0")).code, Code::UNAUTHORIZED);
    }
}

#[test]
fn finish_without_a_server_account_is_4_06() {
    let mut h = Harness::with_bootstrap(3, 0);
    start_bootstrap(&mut h);
    // Security instance whose ssid matches no Server instance.
    assert_eq!(
        bs(&mut h, senml_put("/0/1", SECURITY_1)).code,
        Code::CHANGED
    );
    let r = bs(&mut h, Request::new(Code::POST).with_path("/bs"));
    assert_eq!(r.code, Code::NOT_ACCEPTABLE);
    assert_eq!(h.client().state(), RegistrationState::Bootstrapping);
    // The Bootstrap-Server fixes it.
    assert_eq!(bs(&mut h, senml_put("/1/0", SERVER_0)).code, Code::CHANGED);
    assert_eq!(
        bs(&mut h, Request::new(Code::POST).with_path("/bs")).code,
        Code::CHANGED
    );
    h.run_for(Duration::from_secs(5));
    assert_eq!(h.client().state(), RegistrationState::Registered);
}

#[test]
fn bootstrap_write_rules() {
    let mut h = Harness::with_bootstrap(4, 0);
    start_bootstrap(&mut h);
    // Executable resources cannot be written; unknown objects are 4.04;
    // bad payloads 4.00; a write to one resource of a new instance creates it.
    assert_eq!(
        bs(&mut h, senml_put("/3/0", r#"[{"n":"/3/0/4","vs":"x"}]"#)).code,
        Code::BAD_REQUEST
    );
    assert_eq!(
        bs(&mut h, senml_put("/99/0", r#"[{"n":"/99/0/1","v":1}]"#)).code,
        Code::NOT_FOUND
    );
    assert_eq!(bs(&mut h, senml_put("/1/0", "[{")).code, Code::BAD_REQUEST);
    assert_eq!(
        bs(&mut h, senml_put("/1/4/1", r#"[{"n":"/1/4/1","v":60}]"#)).code,
        Code::CHANGED
    );
    assert_eq!(text(&bs(&mut h, get_accept("/1/4/1", 0))), "60");
    // Whole-object write with two instances.
    let body = r#"[{"n":"/1/5/0","v":7},{"n":"/1/6/0","v":8}]"#;
    assert_eq!(bs(&mut h, senml_put("/1", body)).code, Code::CHANGED);
    let r = bs(&mut h, get_accept("/1", 40));
    assert_eq!(
        text(&r),
        "</>;lwm2m=1.1,</1>;ver=1.1,</1/4>;ssid=1,</1/5>;ssid=7,</1/6>;ssid=8"
    );
    // Delete of one instance, then of the object.
    assert_eq!(
        bs(&mut h, Request::new(Code::DELETE).with_path("/1/5")).code,
        Code::DELETED
    );
    assert_eq!(
        text(&bs(&mut h, get_accept("/1", 40))),
        "</>;lwm2m=1.1,</1>;ver=1.1,</1/4>;ssid=1,</1/6>;ssid=8"
    );
    assert_eq!(
        bs(&mut h, Request::new(Code::DELETE).with_path("/1")).code,
        Code::DELETED
    );
    assert_eq!(
        text(&bs(&mut h, get_accept("/1", 40))),
        "</>;lwm2m=1.1,</1>;ver=1.1"
    );
    // Delete of everything keeps the Bootstrap-Server account and Device.
    assert_eq!(
        bs(&mut h, senml_put("/0/1", SECURITY_1)).code,
        Code::CHANGED
    );
    assert_eq!(
        bs(&mut h, Request::new(Code::DELETE).with_path("/")).code,
        Code::DELETED
    );
    assert_eq!(
        text(&bs(&mut h, get_accept("/", 40))),
        "</>;lwm2m=1.1,</0>;ver=1.1,</0/0>,</1>;ver=1.1,</3>;ver=1.1,</3/0>"
    );
    // Nothing else is allowed while bootstrapping.
    assert_eq!(
        bs(&mut h, Request::new(Code::POST).with_path("/3/0/4")).code,
        Code::METHOD_NOT_ALLOWED
    );
    assert_eq!(h.probes.reboots.get(), 0);
}

#[test]
fn no_finish_in_time_retries_bootstrap() {
    let mut h = Harness::with_bootstrap(5, 0);
    start_bootstrap(&mut h);
    h.run_for(Duration::from_secs(130));
    let failed = h
        .client_events
        .iter()
        .find_map(|(_, e)| match e {
            ClientEvent::BootstrapFailed { code, retry_at } => Some((*code, *retry_at)),
            _ => None,
        })
        .expect("bootstrap failed");
    assert_eq!(failed.0, None);
    assert!(failed.1.is_some());
    // The retry goes out 60 s later.
    h.run_for(Duration::from_secs(60));
    assert_eq!(h.server_at(BOOTSTRAP).rd_requests.len(), 2);
}

#[test]
fn bootstrap_request_refused_follows_the_retry_schedule() {
    let mut h = Harness::with_bootstrap(6, 0);
    h.server_at(BOOTSTRAP).bootstrap_answer = Code::BAD_REQUEST;
    let now = h.now();
    h.client().start(now);
    h.run_for(Duration::from_secs(200));
    let times: Vec<u64> = h
        .server_at(BOOTSTRAP)
        .rd_requests
        .iter()
        .map(|(t, _)| t.as_millis() / 1000)
        .collect();
    assert_eq!(times, [0, 60, 180]);
    assert!(h.client_events.iter().all(|(_, e)| matches!(
        e,
        ClientEvent::BootstrapFailed {
            code: Some(Code::BAD_REQUEST),
            ..
        }
    )));
}

#[test]
fn bootstrap_configures_two_servers_and_their_access_control() {
    let mut h = Harness::with_bootstrap(0xB2, 0);
    let second = h.net.add(SimPeer::Server(Box::new(server_app(0xB3))));
    h.client().set_resolver(move |uri| match uri {
        "coap://dm" => Some(SERVER),
        "coap://dm2" => Some(second),
        _ => None,
    });
    h.client()
        .add_object(Box::new(lwm2m_client::objects::AccessControl::new()));
    start_bootstrap(&mut h);
    assert_eq!(
        bs(&mut h, senml_put("/0/1", SECURITY_1)).code,
        Code::CHANGED
    );
    let security_2 = r#"[{"bn":"/0/2/","n":"0","vs":"coap://dm2"},{"n":"1","vb":false},{"n":"2","v":3},{"n":"10","v":102}]"#;
    assert_eq!(
        bs(&mut h, senml_put("/0/2", security_2)).code,
        Code::CHANGED
    );
    assert_eq!(bs(&mut h, senml_put("/1/0", SERVER_0)).code, Code::CHANGED);
    let server_1 = r#"[{"bn":"/1/1/","n":"0","v":102},{"n":"1","v":500},{"n":"7","vs":"U"}]"#;
    assert_eq!(bs(&mut h, senml_put("/1/1", server_1)).code, Code::CHANGED);
    // /3/0: owned by 101, Read for 102.
    let acl =
        r#"[{"bn":"/2/0/","n":"0","v":3},{"n":"1","v":0},{"n":"2/102","v":1},{"n":"3","v":101}]"#;
    assert_eq!(bs(&mut h, senml_put("/2/0", acl)).code, Code::CHANGED);
    let r = bs(&mut h, get_accept("/2/0", 110));
    assert_eq!(r.code, Code::CONTENT);
    assert!(text(&r).contains(r#""n":"2/102","v":1"#), "{}", text(&r));
    assert_eq!(
        bs(&mut h, Request::new(Code::POST).with_path("/bs")).code,
        Code::CHANGED
    );
    h.run_for(Duration::from_secs(5));
    assert_eq!(h.client().servers(), [101, 102]);
    for (addr, lt) in [(SERVER, "lt=300"), (second, "lt=500")] {
        let register = h
            .server_at(addr)
            .rd_requests
            .iter()
            .find(|(_, r)| r.path() == "/rd")
            .map(|(_, r)| queries(r))
            .unwrap_or_default();
        assert!(register.contains(&lt.to_string()), "{addr}: {register:?}");
    }
    let write = Request::new(Code::PUT)
        .with_path("/3/0/13")
        .with_payload(0, b"1700000000".to_vec());
    assert_eq!(h.request_from(second, get("/3/0/0")).0.code, Code::CONTENT);
    assert_eq!(
        h.request_from(second, write.clone()).0.code,
        Code::UNAUTHORIZED
    );
    assert_eq!(h.request_from(SERVER, write).0.code, Code::CHANGED);
}
