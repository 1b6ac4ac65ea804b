//! Several LwM2M servers: one registration per server account, each with
//! its own schedule, the Server object's registration order (resources
//! 13–15), per-server attributes and shut-down.

mod common;

use common::*;
use lwm2m_client::objects::ServerConfig;
use lwm2m_client::{ClientEvent, RegistrationState, ServerEvent};
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Request};
use lwm2m_core::model::{Path, Resource, ResourceValue, Value};
use lwm2m_core::sim::SimAddr;
use lwm2m_core::time::{Duration, Instant};

fn server(ssid: u16, lifetime: u32) -> ServerConfig {
    ServerConfig {
        short_server_id: ssid,
        ..ServerConfig::new(lifetime)
    }
}

fn with_order(
    ssid: u16,
    priority: Option<u32>,
    delay: Option<u32>,
    block: Option<bool>,
) -> ServerConfig {
    ServerConfig {
        registration_priority: priority,
        initial_registration_delay: delay,
        registration_failure_block: block,
        ..server(ssid, 600)
    }
}

fn queries(r: &Request) -> Vec<String> {
    r.options
        .get_all(number::URI_QUERY)
        .map(|q| String::from_utf8_lossy(q).into_owned())
        .collect()
}

/// The Register requests node `addr` received, with their times.
fn registers(h: &mut Harness, addr: SimAddr) -> Vec<(Instant, Request)> {
    h.server_at(addr)
        .rd_requests
        .iter()
        .filter(|(_, r)| r.code == Code::POST && r.path() == "/rd")
        .cloned()
        .collect()
}

/// The Update requests node `addr` received, with their times.
fn updates(h: &mut Harness, addr: SimAddr) -> Vec<(Instant, Request)> {
    h.server_at(addr)
        .rd_requests
        .iter()
        .filter(|(_, r)| r.code == Code::POST && r.path() == "/rd/5a3f")
        .cloned()
        .collect()
}

fn start(h: &mut Harness) {
    let now = h.now();
    h.client().start(now);
}

/// When the client reported `event` for server `ssid` first.
fn event_time(h: &Harness, ssid: u16, pred: impl Fn(&ClientEvent) -> bool) -> Option<Instant> {
    h.server_events
        .iter()
        .find(|(_, e)| e.ssid == Some(ssid) && pred(&e.event))
        .map(|(t, _)| *t)
}

fn registered(e: &ClientEvent) -> bool {
    matches!(e, ClientEvent::Registered { .. })
}

#[test]
fn two_servers_get_their_own_register_with_their_own_lifetime() {
    let mut h = Harness::multi(1, vec![server(1, 100), server(2, 300)]);
    start(&mut h);
    h.run_for(Duration::from_secs(5));
    let r1 = registers(&mut h, 1);
    let r2 = registers(&mut h, 2);
    assert_eq!(r1.len(), 1, "{r1:?}");
    assert_eq!(r2.len(), 1, "{r2:?}");
    assert!(queries(&r1[0].1).contains(&"lt=100".to_string()));
    assert!(queries(&r2[0].1).contains(&"lt=300".to_string()));
    assert!(queries(&r2[0].1).contains(&"ep=dev1".to_string()));
    // Both carry the same object links.
    assert_eq!(r1[0].1.payload, r2[0].1.payload);
    let c = h.client();
    assert_eq!(c.servers(), [1, 2]);
    assert_eq!(c.server_state(1), Some(RegistrationState::Registered));
    assert_eq!(c.server_state(2), Some(RegistrationState::Registered));
    assert_eq!(c.server_location(2), Some("/rd/5a3f"));
    assert_eq!(c.server_state(3), None);
    let mut reg: Vec<u16> = h
        .server_events
        .iter()
        .filter(|(_, e)| registered(&e.event))
        .filter_map(|(_, e)| e.ssid)
        .collect();
    reg.sort_unstable();
    assert_eq!(reg, [1, 2]);
}

#[test]
fn update_schedules_are_independent() {
    let mut h = Harness::multi(2, vec![server(1, 100), server(2, 300)]);
    start(&mut h);
    h.run_for(Duration::from_secs(320));
    let u1 = updates(&mut h, 1);
    let u2 = updates(&mut h, 2);
    // Server 1 every 50 s (lifetime / 2), server 2 every 150 s.
    assert_eq!(
        u1.len(),
        6,
        "{:?}",
        u1.iter().map(|u| u.0).collect::<Vec<_>>()
    );
    assert_eq!(
        u2.len(),
        2,
        "{:?}",
        u2.iter().map(|u| u.0).collect::<Vec<_>>()
    );
    let secs = |t: Instant| t.as_millis() / 1000;
    assert_eq!(secs(u2[0].0), 150);
    assert_eq!(secs(u1[0].0), 50);
    // A lifetime write by server 2 to its own Server instance (1) moves
    // only its own registration.
    let (r, _) = h.request_from(
        2,
        Request::new(Code::PUT)
            .with_path("/1/1/1")
            .with_payload(0, b"40".to_vec()),
    );
    assert_eq!(r.code, Code::CHANGED);
    h.run_for(Duration::from_secs(1));
    let u2 = updates(&mut h, 2);
    assert_eq!(u2.len(), 3);
    assert_eq!(queries(&u2[2].1), ["lt=40"]);
    let before = updates(&mut h, 1).len();
    h.run_for(Duration::from_secs(25));
    // Server 2 now updates every 20 s; server 1 keeps its 50 s.
    assert_eq!(updates(&mut h, 2).len(), 4);
    assert!(updates(&mut h, 1).len() <= before + 1);
    assert!(updates(&mut h, 1).iter().all(|u| queries(&u.1).is_empty()));
}

#[test]
fn update_trigger_of_one_server_instance_updates_that_server_only() {
    let mut h = Harness::multi(3, vec![server(1, 600), server(2, 600)]);
    start(&mut h);
    h.run_for(Duration::from_secs(5));
    let (r, _) = h.request_from(1, Request::new(Code::POST).with_path("/1/1/8"));
    assert_eq!(r.code, Code::CHANGED);
    h.run_for(Duration::from_secs(1));
    assert_eq!(updates(&mut h, 1).len(), 0);
    assert_eq!(updates(&mut h, 2).len(), 1);
}

#[test]
fn one_failing_server_does_not_stop_the_other() {
    let mut h = Harness::multi(4, vec![server(1, 600), server(2, 600)]);
    h.server_at(1).register_answer = Code::INTERNAL_SERVER_ERROR;
    start(&mut h);
    h.run_for(Duration::from_secs(130));
    let c = h.client();
    assert_eq!(c.server_state(2), Some(RegistrationState::Registered));
    assert_eq!(c.server_state(1), Some(RegistrationState::WaitingRetry));
    // Retries at 60 s and then 120 s later.
    assert_eq!(registers(&mut h, 1).len(), 2);
    assert_eq!(registers(&mut h, 2).len(), 1);
    let failed = h
        .server_events
        .iter()
        .filter(|(_, e)| matches!(e.event, ClientEvent::RegistrationFailed { .. }))
        .map(|(_, e)| e.ssid)
        .collect::<Vec<_>>();
    assert_eq!(failed, [Some(1), Some(1)]);
}

#[test]
fn registration_priority_order_is_the_order_of_register_messages() {
    // Server 1 has priority 5, server 2 priority 1, server 3 none.
    let mut h = Harness::multi(
        5,
        vec![
            with_order(1, Some(5), None, None),
            with_order(2, Some(1), None, None),
            with_order(3, None, None, None),
        ],
    );
    start(&mut h);
    h.run_for(Duration::from_secs(5));
    assert_eq!(h.client().servers(), [2, 1, 3]);
    let t1 = registers(&mut h, 1)[0].0;
    let t2 = registers(&mut h, 2)[0].0;
    let t3 = registers(&mut h, 3)[0].0;
    // Each Register goes out only once the previous server registered.
    let reg2 = event_time(&h, 2, registered).unwrap();
    let reg1 = event_time(&h, 1, registered).unwrap();
    assert!(t2 <= reg2 && reg2 <= t1, "{t2:?} {reg2:?} {t1:?}");
    assert!(reg1 <= t3, "{reg1:?} {t3:?}");
    assert!(t2 < t1 && t1 < t3);
}

#[test]
fn failure_without_block_lets_the_next_server_register() {
    let mut h = Harness::multi(
        6,
        vec![
            with_order(1, Some(1), None, Some(false)),
            with_order(2, Some(2), None, None),
        ],
    );
    h.server_at(1).register_answer = Code::FORBIDDEN;
    start(&mut h);
    h.run_for(Duration::from_secs(5));
    assert_eq!(registers(&mut h, 2).len(), 1);
    assert_eq!(
        h.client().server_state(2),
        Some(RegistrationState::Registered)
    );
}

#[test]
fn registration_failure_block_holds_back_lower_priorities_until_success() {
    let mut h = Harness::multi(
        7,
        vec![
            with_order(1, Some(1), None, Some(true)),
            with_order(2, Some(2), None, None),
        ],
    );
    h.server_at(1).register_answer = Code::FORBIDDEN;
    start(&mut h);
    h.run_for(Duration::from_secs(30));
    assert_eq!(registers(&mut h, 1).len(), 1);
    assert!(registers(&mut h, 2).is_empty());
    assert_eq!(h.client().server_state(2), Some(RegistrationState::Idle));
    // Server 1 accepts the retry at 60 s: server 2 follows at once.
    h.server_at(1).register_answer = Code::CREATED;
    h.run_for(Duration::from_secs(40));
    let r1 = registers(&mut h, 1);
    let r2 = registers(&mut h, 2);
    assert_eq!(r1.len(), 2);
    assert_eq!(r2.len(), 1);
    assert!(r2[0].0 >= r1[1].0);
    assert_eq!(r1[1].0.as_millis() / 1000, 60);
    assert_eq!(
        h.client().server_state(2),
        Some(RegistrationState::Registered)
    );
}

#[test]
fn initial_registration_delay_is_honoured() {
    let mut h = Harness::multi(
        8,
        vec![
            with_order(1, Some(1), None, None),
            with_order(2, Some(2), Some(20), None),
            // No priority: registers after both, with its own delay counted
            // from when server 2 registered.
            with_order(3, None, Some(7), None),
        ],
    );
    start(&mut h);
    h.run_for(Duration::from_secs(10));
    assert_eq!(registers(&mut h, 1).len(), 1);
    assert!(registers(&mut h, 2).is_empty());
    assert_eq!(
        h.client().server_state(2),
        Some(RegistrationState::WaitingRetry)
    );
    h.run_for(Duration::from_secs(30));
    let reg1 = event_time(&h, 1, registered).unwrap();
    let t2 = registers(&mut h, 2)[0].0;
    let waited = t2.saturating_duration_since(reg1);
    assert!(
        waited >= Duration::from_secs(20) && waited < Duration::from_secs(21),
        "{waited:?}"
    );
    let reg2 = event_time(&h, 2, registered).unwrap();
    let t3 = registers(&mut h, 3)[0].0;
    let waited = t3.saturating_duration_since(reg2);
    assert!(
        waited >= Duration::from_secs(7) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
}

#[test]
fn deregister_goes_to_every_server_and_reports_once() {
    let mut h = Harness::multi(9, vec![server(1, 600), server(2, 600)]);
    start(&mut h);
    h.run_for(Duration::from_secs(5));
    let now = h.now();
    assert!(h.client().deregister(now));
    h.run_for(Duration::from_secs(5));
    for addr in [1, 2] {
        let deletes = h
            .server_at(addr)
            .rd_requests
            .iter()
            .filter(|(_, r)| r.code == Code::DELETE && r.path() == "/rd/5a3f")
            .count();
        assert_eq!(deletes, 1, "server {addr}");
    }
    let done: Vec<&ServerEvent> = h
        .server_events
        .iter()
        .filter(|(_, e)| e.event == ClientEvent::Deregistered)
        .map(|(_, e)| e)
        .collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].ssid, None);
    let c = h.client();
    assert_eq!(c.server_state(1), Some(RegistrationState::Deregistered));
    assert_eq!(c.server_state(2), Some(RegistrationState::Deregistered));
}

#[test]
fn requests_from_an_unknown_peer_are_refused() {
    let mut h = Harness::multi(10, vec![server(1, 600)]);
    h.add_bootstrap_server(10);
    start(&mut h);
    h.run_for(Duration::from_secs(5));
    let (r, _) = h.request_from(BOOTSTRAP, get("/3/0/0"));
    assert_eq!(r.code, Code::UNAUTHORIZED);
    let (r, _) = h.request_from(1, get("/3/0/0"));
    assert_eq!(r.code, Code::CONTENT);
}

#[test]
fn write_attributes_of_one_server_do_not_apply_to_another() {
    let mut h = Harness::multi(11, vec![server(1, 600), server(2, 600)]);
    start(&mut h);
    h.run_for(Duration::from_secs(5));
    // Server 1 sets pmin 30 on the device clock; server 2 sets nothing.
    let (r, _) = h.request_from(
        1,
        Request::new(Code::PUT)
            .with_path("/3/0/13")
            .with_query("pmin=30"),
    );
    assert_eq!(r.code, Code::CHANGED);
    let observe = get("/3/0/13").with_uint_option(number::OBSERVE, 0);
    let (r1, _) = h.request_from(1, observe.clone());
    let (r2, _) = h.request_from(2, observe);
    assert_eq!((r1.code, r2.code), (Code::CONTENT, Code::CONTENT));
    assert_eq!(h.client().observation_count(), 2);
    // Discover shows each server its own attributes.
    let (d1, _) = h.request_from(1, get_accept("/3/0/13", 40));
    let (d2, _) = h.request_from(2, get_accept("/3/0/13", 40));
    assert_eq!(
        std::str::from_utf8(&d1.payload).unwrap(),
        "</3/0/13>;pmin=30"
    );
    assert_eq!(std::str::from_utf8(&d2.payload).unwrap(), "</3/0/13>");
    let t0 = h.now();
    h.probes.clock.set(1_700_000_123);
    h.client().changed(t0, Path::Resource(3, 0, 13));
    h.run_for(Duration::from_secs(2));
    let n1 = h.server_at(1).notifications.len();
    let n2 = h.server_at(2).notifications.len();
    assert_eq!((n1, n2), (0, 1));
    assert!(
        std::str::from_utf8(&h.server_at(2).notifications[0].2.payload)
            .unwrap()
            .contains("1700000123")
    );
    // Server 1 hears of it once its pmin (counted from its Observe) passed.
    h.run_for(Duration::from_secs(30));
    assert_eq!(h.server_at(1).notifications.len(), 1);
    assert_eq!(h.server_at(2).notifications.len(), 1);
}

#[test]
fn send_goes_to_the_first_registered_server_or_the_one_named() {
    let mut h = Harness::multi(12, vec![server(1, 600), server(2, 600)]);
    start(&mut h);
    h.run_for(Duration::from_secs(5));
    let now = h.now();
    h.client()
        .send_to(now, 2, &[Path::Resource(3, 0, 0)])
        .unwrap();
    h.run_for(Duration::from_secs(1));
    let dp = |h: &mut Harness, a| {
        h.server_at(a)
            .rd_requests
            .iter()
            .filter(|(_, r)| r.path() == "/dp")
            .count()
    };
    assert_eq!((dp(&mut h, 1), dp(&mut h, 2)), (0, 1));
    let done = h
        .server_events
        .iter()
        .find(|(_, e)| matches!(e.event, ClientEvent::SendCompleted { .. }))
        .map(|(_, e)| e.ssid);
    assert_eq!(done, Some(Some(2)));
    let now = h.now();
    h.client().send(now, &[Path::Resource(3, 0, 0)]).unwrap();
    h.run_for(Duration::from_secs(1));
    assert_eq!((dp(&mut h, 1), dp(&mut h, 2)), (1, 1));
}

#[test]
fn each_server_has_its_own_binding() {
    let mut h = Harness::multi(
        13,
        vec![
            server(1, 600),
            ServerConfig {
                binding: "US".into(),
                ..server(2, 600)
            },
        ],
    );
    start(&mut h);
    h.run_for(Duration::from_secs(5));
    assert!(queries(&registers(&mut h, 1)[0].1).contains(&"b=U".to_string()));
    assert!(queries(&registers(&mut h, 2)[0].1).contains(&"b=US".to_string()));
}

#[test]
fn re_registering_with_one_server_keeps_the_others_observations() {
    let mut h = Harness::multi(14, vec![server(1, 100), server(2, 600)]);
    start(&mut h);
    h.run_for(Duration::from_secs(5));
    let observe = get("/3/0/13").with_uint_option(number::OBSERVE, 0);
    assert_eq!(h.request_from(1, observe.clone()).0.code, Code::CONTENT);
    assert_eq!(h.request_from(2, observe).0.code, Code::CONTENT);
    assert_eq!(h.client().observation_count(), 2);
    // Server 1 forgot the client: its Update at 50 s gets 4.04.
    h.server_at(1).update_answer = Code::NOT_FOUND;
    h.run_for(Duration::from_secs(50));
    assert_eq!(registers(&mut h, 1).len(), 2);
    assert_eq!(h.client().observation_count(), 1);
    // The remaining one is server 2's: it still notifies.
    let t = h.now();
    h.probes.clock.set(1_700_000_500);
    h.client().changed(t, Path::Resource(3, 0, 13));
    h.run_for(Duration::from_secs(1));
    assert_eq!(h.server_at(2).notifications.len(), 1);
    assert!(h.server_at(1).notifications.is_empty());
    let failed: Vec<Option<u16>> = h
        .server_events
        .iter()
        .filter(|(_, e)| matches!(e.event, ClientEvent::UpdateFailed { .. }))
        .map(|(_, e)| e.ssid)
        .collect();
    assert_eq!(failed, [Some(1)]);
}

#[test]
fn queue_mode_windows_are_per_server() {
    let mut h = Harness::multi_with(15, vec![server(1, 100), server(2, 600)], |c| {
        c.queue_mode = Some(Duration::from_secs(10));
    });
    start(&mut h);
    h.run_for(Duration::from_secs(12));
    let sleeping = |h: &Harness| {
        h.server_events
            .iter()
            .filter(|(_, e)| e.event == ClientEvent::Sleeping)
            .map(|(t, e)| (t.as_millis() / 1000, e.ssid))
            .collect::<Vec<_>>()
    };
    let mut s = sleeping(&h);
    s.sort_unstable();
    assert_eq!(s, [(10, Some(1)), (10, Some(2))]);
    // Server 1's Update at 50 s reopens its window only.
    h.run_for(Duration::from_secs(45));
    assert_eq!(updates(&mut h, 1).len(), 1);
    let now = h.now();
    assert!(h.client().is_listening(now));
    // A request from server 2 while its window is closed is not heard:
    // the client's radio towards it is off.
    let id = {
        let s2 = h.server_at(2);
        s2.ep.send_request(now, CLIENT, get("/3/0/0")).unwrap()
    };
    h.run_for(Duration::from_secs(2));
    assert!(!h.server_at(2).responses.contains_key(&id));
    // Server 1 is heard in its window.
    let id = {
        let s1 = h.server_at(1);
        s1.ep.send_request(now, CLIENT, get("/3/0/0")).unwrap()
    };
    h.run_for(Duration::from_secs(2));
    assert!(h.server_at(1).responses.contains_key(&id));
}

#[test]
fn bootstrap_on_failure_waits_until_every_server_failed() {
    let failing = |ssid| ServerConfig {
        communication_retry_count: Some(1),
        communication_sequence_retry_count: Some(1),
        ..server(ssid, 600)
    };
    let run = |seed, both_fail: bool| {
        let mut h = Harness::multi(seed, vec![failing(1), failing(2)]);
        let bs = h.net.add(SimPeer::Server(Box::new(server_app(seed))));
        let c = h.client();
        let single = |id, value| Resource {
            id,
            value: ResourceValue::Single(value),
        };
        let account = vec![
            single(0, Value::String("coap://bs".into())),
            single(1, Value::Boolean(true)),
        ];
        c.object_mut(0).unwrap().create(9, account).unwrap();
        c.set_resolver(move |uri| match uri {
            "coap://s1" => Some(1),
            "coap://s2" => Some(2),
            "coap://bs" => Some(bs),
            _ => None,
        });
        h.server_at(1).register_answer = Code::FORBIDDEN;
        if both_fail {
            h.server_at(2).register_answer = Code::FORBIDDEN;
        }
        start(&mut h);
        h.run_for(Duration::from_secs(5));
        let bootstrapped: Vec<Option<u16>> = h
            .server_events
            .iter()
            .filter(|(_, e)| matches!(e.event, ClientEvent::BootstrapOnRegistrationFailure { .. }))
            .map(|(_, e)| e.ssid)
            .collect();
        let requests = h.server_at(bs).rd_requests.len();
        (h, bootstrapped, requests)
    };
    // Server 2 registers: server 1's exhausted schedule does not bootstrap.
    let (mut h, bootstrapped, requests) = run(16, false);
    assert_eq!(h.client().server_state(1), Some(RegistrationState::Failed));
    assert_eq!(
        h.client().server_state(2),
        Some(RegistrationState::Registered)
    );
    assert!(bootstrapped.is_empty());
    assert_eq!(requests, 0);
    // Both fail for good: the last one to give up bootstraps.
    let (mut h, bootstrapped, requests) = run(17, true);
    assert_eq!(bootstrapped, [Some(2)]);
    assert_eq!(requests, 1);
    assert_eq!(h.client().state(), RegistrationState::Bootstrapping);
    assert!(h.client().servers().is_empty());
}
