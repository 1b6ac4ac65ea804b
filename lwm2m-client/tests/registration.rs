//! Registration interface details: LwM2M version fallback when the server
//! refuses the announced version, and bootstrap on registration failure.

mod common;

use common::*;
use lwm2m_client::{ClientEvent, RegistrationState};
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Request};
use lwm2m_core::format::ContentFormat;
use lwm2m_core::model::Version;
use lwm2m_core::sim::LinkConfig;
use lwm2m_core::time::Duration;
use lwm2m_core::time::Instant;

fn queries(r: &Request) -> Vec<String> {
    r.options
        .get_all(number::URI_QUERY)
        .map(|q| String::from_utf8(q.to_vec()).unwrap())
        .collect()
}

fn payload(r: &Request) -> String {
    String::from_utf8(r.payload.clone()).unwrap()
}

#[test]
fn precondition_failed_to_1_1_falls_back_to_1_0_in_queue_mode() {
    let mut h = Harness::with_config(1, 0, 120, |c| {
        c.queue_mode = Some(Duration::from_secs(93));
    });
    h.server().version_answers = vec![("1.1", Code::PRECONDITION_FAILED)];
    h.register();
    let registers: Vec<Request> = h
        .server()
        .rd_requests
        .iter()
        .map(|(_, r)| r.clone())
        .collect();
    assert_eq!(registers.len(), 2);
    assert_eq!(
        queries(&registers[0]),
        ["ep=dev1", "lt=120", "lwm2m=1.1", "b=U", "Q"]
    );
    assert!(payload(&registers[0]).starts_with(r#"</>;rt="oma.lwm2m";ct="60 110"#));
    // 1.0: queue mode in the binding, no `ct` list (1.0 has none).
    assert_eq!(
        queries(&registers[1]),
        ["ep=dev1", "lt=120", "lwm2m=1.0", "b=UQ"]
    );
    assert_eq!(
        payload(&registers[1]),
        r#"</>;rt="oma.lwm2m",</1>;ver=1.1,</1/0>,</3>;ver=1.1,</3/0>,</4>;ver=1.3,</4/0>"#
    );
    assert_eq!(h.client().lwm2m_version(), Version::new(1, 0));
    assert_eq!(h.client().config().lwm2m_version, Version::new(1, 1));
    // The refusal is reported, with the retry at once.
    let first = &h.client_events[0].1;
    assert!(
        matches!(
            first,
            ClientEvent::RegistrationFailed {
                code: Some(Code::PRECONDITION_FAILED),
                retry_at: Some(_)
            }
        ),
        "{first:?}"
    );

    // Multi-value reads default to TLV for the 1.0 server; Send is 1.1 only.
    let r = h.request(get("/3/0"));
    assert_eq!(r.code, Code::CONTENT);
    assert_eq!(content_format(&r), Some(u32::from(ContentFormat::TLV.0)));
    let now = h.now();
    assert!(h.client().send(now, &[]).is_err());

    // An Update that fails makes the client register again: still 1.0.
    h.server().update_answer = Code::NOT_FOUND;
    let now = h.now();
    h.client().trigger_update(now);
    h.run_for(Duration::from_secs(10));
    let last = h.server().rd_requests.last().unwrap().1.clone();
    assert_eq!(last.path(), "/rd");
    assert_eq!(queries(&last), ["ep=dev1", "lt=120", "lwm2m=1.0", "b=UQ"]);

    // A new start offers the configured version again.
    h.server().version_answers.clear();
    let now = h.now();
    h.client().start(now);
    h.run_for(Duration::from_secs(10));
    let last = h.server().rd_requests.last().unwrap().1.clone();
    assert_eq!(queries(&last)[2], "lwm2m=1.1");
    assert_eq!(h.client().lwm2m_version(), Version::new(1, 1));
}

#[test]
fn bad_request_to_1_2_falls_back_step_by_step() {
    let mut h = Harness::with_config(2, 0, 120, |c| {
        c.lwm2m_version = Version::new(1, 2);
    });
    h.server().version_answers = vec![("1.2", Code::BAD_REQUEST), ("1.1", Code::BAD_REQUEST)];
    h.register();
    let versions: Vec<String> = h
        .server()
        .rd_requests
        .iter()
        .map(|(_, r)| queries(r)[2].clone())
        .collect();
    assert_eq!(versions, ["lwm2m=1.2", "lwm2m=1.1", "lwm2m=1.0"]);
    assert_eq!(h.client().lwm2m_version(), Version::new(1, 0));
}

#[test]
fn bad_request_to_1_0_is_an_ordinary_failure() {
    let mut h = Harness::with_config(3, 0, 120, |c| {
        c.lwm2m_version = Version::new(1, 0);
    });
    h.server().register_answer = Code::BAD_REQUEST;
    let now = h.now();
    h.client().start(now);
    h.run_for(Duration::from_secs(10));
    assert_eq!(h.server().rd_requests.len(), 1);
    assert_eq!(h.client().state(), RegistrationState::WaitingRetry);
}

#[test]
fn preferred_format_applies_from_1_1() {
    for (preferred, expected) in [
        (None, ContentFormat::SENML_CBOR),
        (Some(ContentFormat::TLV), ContentFormat::TLV),
        (Some(ContentFormat::SENML_JSON), ContentFormat::SENML_JSON),
        // LwM2M CBOR needs a 1.2 session; text/plain cannot hold an instance.
        (Some(ContentFormat::LWM2M_CBOR), ContentFormat::SENML_CBOR),
        (Some(ContentFormat::TEXT), ContentFormat::SENML_CBOR),
    ] {
        let mut h = Harness::with_config(4, 0, 120, |c| c.preferred_format = preferred);
        h.register();
        let r = h.request(get("/3/0"));
        assert_eq!(r.code, Code::CONTENT);
        assert_eq!(
            content_format(&r),
            Some(u32::from(expected.0)),
            "{preferred:?}"
        );
        // A single value stays text/plain.
        assert_eq!(content_format(&h.request(get("/3/0/0"))), Some(0));
    }
    let mut h = Harness::with_config(5, 0, 120, |c| {
        c.lwm2m_version = Version::new(1, 2);
        c.preferred_format = Some(ContentFormat::LWM2M_CBOR);
    });
    h.register();
    let r = h.request(get("/3/0"));
    assert_eq!(
        content_format(&r),
        Some(u32::from(ContentFormat::LWM2M_CBOR.0))
    );
}

#[test]
fn exhausted_schedule_bootstraps_then_registers_to_the_new_server() {
    let mut h = Harness::with_bootstrap_account(7, None);
    h.server().register_answer = Code::FORBIDDEN;
    let now = h.now();
    h.client().start(now);
    let ok = h.run_until(Duration::from_secs(600), |net, _| {
        match net.node(BOOTSTRAP) {
            SimPeer::Server(s) => !s.rd_requests.is_empty(),
            SimPeer::Client(_) => unreachable!(),
        }
    });
    assert!(ok, "{:?}", h.client_events);
    // Two Register attempts 10 s apart (resources 17 and 18), then
    // Bootstrap-Request right after the second refusal.
    let times: Vec<u64> = h
        .server()
        .rd_requests
        .iter()
        .map(|(t, _)| t.as_millis() / 1000)
        .collect();
    assert_eq!(times, [0, 10]);
    let (at, request) = h.server_at(BOOTSTRAP).rd_requests[0].clone();
    assert_eq!(at.as_millis() / 1000, 10);
    assert_eq!(
        (request.code, request.path()),
        (Code::POST, "/bs".to_string())
    );
    assert_eq!(queries(&request), ["ep=dev1"]);
    let events: Vec<ClientEvent> = h.client_events.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(
        events,
        [
            ClientEvent::RegistrationFailed {
                code: Some(Code::FORBIDDEN),
                // 10 s after the refusal reached the client (one round trip).
                retry_at: Some(
                    Instant::ZERO
                        + Duration::from_millis(2 * h.server().rd_requests[0].0.as_millis())
                        + Duration::from_secs(10)
                ),
            },
            ClientEvent::BootstrapOnRegistrationFailure {
                code: Some(Code::FORBIDDEN)
            },
        ]
    );
    h.run_for(Duration::from_secs(1));
    assert_eq!(h.client().state(), RegistrationState::Bootstrapping);

    // The Bootstrap-Server replaces the account; the server now accepts.
    h.server().register_answer = Code::CREATED;
    bootstrap_dm_account(&mut h);
    let before = h.server().rd_requests.len();
    assert_eq!(
        bs(&mut h, Request::new(Code::POST).with_path("/bs")).code,
        Code::CHANGED
    );
    let ok = h.run_until(Duration::from_secs(60), |_, ev| {
        ev.iter()
            .any(|(_, e)| matches!(e, ClientEvent::Registered { .. }))
    });
    assert!(ok, "{:?}", h.client_events);
    let register = h.server().rd_requests[before].1.clone();
    assert_eq!(register.path(), "/rd");
    assert_eq!(
        queries(&register),
        ["ep=dev1", "lt=300", "lwm2m=1.1", "b=U"]
    );
    assert_eq!(h.client().state(), RegistrationState::Registered);
    // Device management comes from the registered server, not the Bootstrap-Server.
    assert_eq!(h.request(get("/1/0/0")).code, Code::CONTENT);
    assert_eq!(bs(&mut h, get("/3/0/0")).code, Code::UNAUTHORIZED);
}

#[test]
fn no_answer_at_all_also_ends_in_bootstrap() {
    let mut h = Harness::with_bootstrap_account(8, None);
    // Every datagram to the server is lost: each attempt ends when the CoAP
    // layer gives up (about 93 s).
    h.net.set_link(LinkConfig::lossy(100));
    let now = h.now();
    h.client().start(now);
    h.run_for(Duration::from_secs(150));
    h.net.set_link(LinkConfig::lossy(0));
    assert!(h.server().rd_requests.is_empty());
    let ok = h.run_until(Duration::from_secs(600), |net, _| {
        match net.node(BOOTSTRAP) {
            SimPeer::Server(s) => !s.rd_requests.is_empty(),
            SimPeer::Client(_) => unreachable!(),
        }
    });
    assert!(ok, "{:?}", h.client_events);
    assert!(h
        .client_events
        .iter()
        .any(|(_, e)| *e == ClientEvent::BootstrapOnRegistrationFailure { code: None }));
}

#[test]
fn resource_16_false_gives_up_without_bootstrap() {
    let mut h = Harness::with_bootstrap_account(9, Some(false));
    h.server().register_answer = Code::FORBIDDEN;
    let now = h.now();
    h.client().start(now);
    h.run_for(Duration::from_secs(600));
    assert_eq!(h.server().rd_requests.len(), 2);
    assert!(h.server_at(BOOTSTRAP).rd_requests.is_empty());
    assert_eq!(h.client().state(), RegistrationState::Failed);
    assert_eq!(
        h.client_events.last().map(|(_, e)| e.clone()),
        Some(ClientEvent::RegistrationFailed {
            code: Some(Code::FORBIDDEN),
            retry_at: None
        })
    );
    // In the 1.1 Server object model resources 16–20 have no operations:
    // only a Bootstrap-Server sets them, device management gets 4.05.
    assert_eq!(
        h.request(get_accept("/1/0/16", 0)).code,
        Code::METHOD_NOT_ALLOWED
    );
}

#[test]
fn resource_16_set_but_no_bootstrap_account_gives_up() {
    let mut h = Harness::new(10, 0, 120);
    h.server().register_answer = Code::FORBIDDEN;
    let now = h.now();
    h.client().start(now);
    // Default schedule: 5 attempts 60, 120, 240, 480 s apart.
    h.run_for(Duration::from_secs(1_000));
    assert_eq!(h.server().rd_requests.len(), 5);
    assert_eq!(h.client().state(), RegistrationState::Failed);
}

#[test]
fn start_after_a_failed_fallback_bootstrap_registers_with_the_server_again() {
    let mut h = Harness::with_bootstrap_account(11, None);
    h.server().register_answer = Code::FORBIDDEN;
    h.server_at(BOOTSTRAP).bootstrap_answer = Code::BAD_REQUEST;
    let now = h.now();
    h.client().start(now);
    h.run_for(Duration::from_secs(600));
    // Two Registers, then two Bootstrap-Requests on the same schedule.
    assert_eq!(h.server().rd_requests.len(), 2);
    assert_eq!(h.server_at(BOOTSTRAP).rd_requests.len(), 2);
    assert_eq!(h.client().state(), RegistrationState::Failed);
    assert!(matches!(
        h.client_events.last().map(|(_, e)| e),
        Some(ClientEvent::BootstrapFailed {
            code: Some(Code::BAD_REQUEST),
            retry_at: None
        })
    ));
    // The server account is still there: a new start registers with it.
    h.server().register_answer = Code::CREATED;
    h.register();
    assert_eq!(h.server().rd_requests.len(), 3);
    assert_eq!(h.server_at(BOOTSTRAP).rd_requests.len(), 2);
    assert_eq!(h.client().state(), RegistrationState::Registered);
}
