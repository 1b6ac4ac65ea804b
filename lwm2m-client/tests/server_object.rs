//! Server object (1) features the engine carries out: Disable (4) with
//! Disable Timeout (5), Bootstrap-Request Trigger (9) and Notification
//! Storing When Disabled or Offline (6), in the simulated network.

mod common;

use common::*;
use lwm2m_client::objects::{Server, ServerConfig};
use lwm2m_client::{ClientEvent, RegistrationState};
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, MessageType, Request, RequestId};
use lwm2m_core::model::Path;
use lwm2m_core::sim::SimAddr;
use lwm2m_core::time::{Duration, Instant};

fn server(ssid: u16, disable_timeout: u32, storing: bool) -> ServerConfig {
    ServerConfig {
        short_server_id: ssid,
        disable_timeout,
        notification_storing: storing,
        ..ServerConfig::new(100)
    }
}

fn post(path: &str) -> Request {
    Request::new(Code::POST).with_path(path)
}

/// The registration-interface requests node `addr` received as
/// (seconds, method, path).
fn rd(h: &mut Harness, addr: SimAddr) -> Vec<(u64, Code, String)> {
    h.server_at(addr)
        .rd_requests
        .iter()
        .map(|(t, r)| (t.as_millis() / 1000, r.code, r.path()))
        .collect()
}

fn registers(h: &mut Harness, addr: SimAddr) -> Vec<u64> {
    rd(h, addr)
        .into_iter()
        .filter(|(_, c, p)| *c == Code::POST && p == "/rd")
        .map(|(t, _, _)| t)
        .collect()
}

fn start(h: &mut Harness) {
    let now = h.now();
    h.client().start(now);
    h.run_for(Duration::from_secs(5));
}

fn secs(t: Instant) -> u64 {
    t.as_millis() / 1000
}

#[test]
fn disable_deregisters_from_that_server_only_and_registers_after_the_timeout() {
    let mut h = Harness::multi(1, vec![server(1, 300, false), server(2, 86_400, false)]);
    start(&mut h);
    assert_eq!(
        h.client().server_state(1),
        Some(RegistrationState::Registered)
    );
    // The Server object lists Disable, Disable Timeout and the
    // Bootstrap-Request Trigger.
    let links = h.request_from(1, get_accept("/1/0", 40)).0;
    let links = String::from_utf8(links.payload).unwrap();
    for r in ["</1/0/4>", "</1/0/5>", "</1/0/9>"] {
        assert!(links.contains(r), "{links}");
    }
    assert_eq!(h.request_from(1, get("/1/0/5")).0.payload, b"300");

    let before = rd(&mut h, 1).len();
    let since = h.now();
    let (r, _) = h.request_from(1, post("/1/0/4"));
    assert_eq!(r.code, Code::CHANGED);
    let answered = secs(h.now());
    h.run_for(Duration::from_secs(2));
    // On the wire: the 2.04 first, then the De-register, to server 1 only.
    assert_eq!(
        client_messages_since(&h, since),
        [
            (1, MessageType::Ack, Code::CHANGED, false),
            (1, MessageType::Con, Code::DELETE, false)
        ]
    );
    // De-register to that server right after the 2.04, nothing else.
    let after: Vec<_> = rd(&mut h, 1)[before..].to_vec();
    assert_eq!(
        after,
        [(answered, Code::DELETE, "/rd/5a3f".to_string())],
        "{after:?}"
    );
    assert_eq!(
        h.client().server_state(1),
        Some(RegistrationState::Disabled)
    );
    assert_eq!(h.client().server_location(1), None);
    let disabled_at = h
        .server_events
        .iter()
        .find_map(|(_, e)| match e.event {
            ClientEvent::Disabled { until } if e.ssid == Some(1) => Some(until),
            _ => None,
        })
        .expect("Disabled event");
    assert_eq!(secs(disabled_at), answered + 300);

    // While disabled the client ignores server 1: no answer to a Read.
    let now = h.now();
    let id = h
        .server_at(1)
        .ep
        .send_request(now, CLIENT, get("/3/0/0"))
        .unwrap();
    h.run_for(Duration::from_secs(200));
    assert!(!h.server_at(1).responses.contains_key(&id));
    // No Register before the timeout; server 2 keeps updating.
    h.run_until(Duration::from_secs(3_600), |_, _| false);
    let regs = registers(&mut h, 1);
    assert_eq!(regs.len(), 2, "{regs:?}");
    assert_eq!(regs[1], answered + 300);
    assert_eq!(
        h.client().server_state(1),
        Some(RegistrationState::Registered)
    );
    let s2 = rd(&mut h, 2);
    assert_eq!(registers(&mut h, 2).len(), 1, "{s2:?}");
    let updates2 = s2
        .iter()
        .filter(|(t, c, p)| *c == Code::POST && p == "/rd/5a3f" && *t > answered)
        .count();
    assert!(updates2 >= 60, "{s2:?}");
    assert!(!s2.iter().any(|(_, c, _)| *c == Code::DELETE));
    assert_eq!(
        h.client().server_state(2),
        Some(RegistrationState::Registered)
    );
}

#[test]
fn disable_timeout_defaults_to_a_day() {
    let mut h = Harness::new(2, 0, 100_000);
    h.register();
    assert_eq!(h.request(get("/1/0/5")).payload, b"86400");
    assert_eq!(h.request(post("/1/0/4")).code, Code::CHANGED);
    let answered = secs(h.now());
    h.run_for(Duration::from_secs(86_300));
    assert_eq!(h.client().state(), RegistrationState::Disabled);
    h.run_for(Duration::from_secs(200));
    let regs = registers(&mut h, SERVER);
    assert_eq!(regs, [0, answered + 86_400]);
    assert_eq!(h.client().state(), RegistrationState::Registered);
}

#[test]
fn bootstrap_request_trigger_bootstraps_then_registers() {
    let mut h = Harness::with_bootstrap_account(3, None);
    h.register();
    assert_eq!(h.request(post("/1/0/9")).code, Code::CHANGED);
    let ok = h.run_until(Duration::from_secs(60), |net, _| {
        match net.node(BOOTSTRAP) {
            SimPeer::Server(s) => !s.rd_requests.is_empty(),
            SimPeer::Client(_) => unreachable!(),
        }
    });
    assert!(ok, "{:?}", h.client_events);
    let request = h.server_at(BOOTSTRAP).rd_requests[0].1.clone();
    assert_eq!(
        (request.code, request.path()),
        (Code::POST, "/bs".to_string())
    );
    let q: Vec<&[u8]> = request.options.get_all(number::URI_QUERY).collect();
    assert_eq!(q, [b"ep=dev1"]);
    assert_eq!(h.client().state(), RegistrationState::Bootstrapping);

    bootstrap_dm_account(&mut h);
    assert_eq!(registers(&mut h, SERVER).len(), 1);
    assert_eq!(bs(&mut h, post("/bs")).code, Code::CHANGED);
    h.run_for(Duration::from_secs(5));
    let regs = registers(&mut h, SERVER);
    assert_eq!(regs.len(), 2, "{regs:?}");
    let register = h.server().rd_requests.last().unwrap().1.clone();
    let q: Vec<&[u8]> = register.options.get_all(number::URI_QUERY).collect();
    assert_eq!(q, [&b"ep=dev1"[..], b"lt=300", b"lwm2m=1.1", b"b=U"]);
    assert_eq!(h.client().state(), RegistrationState::Registered);
    assert_eq!(h.client().servers(), [101]);
}

#[test]
fn bootstrap_request_trigger_without_bootstrap_account_is_4_05() {
    let mut h = Harness::new(4, 0, 600);
    h.register();
    assert_eq!(h.request(post("/1/0/9")).code, Code::METHOD_NOT_ALLOWED);
    h.run_for(Duration::from_secs(5));
    assert_eq!(h.client().state(), RegistrationState::Registered);
    assert_eq!(rd(&mut h, SERVER).len(), 1);
}

/// Observes `/3/0/13` (current time), then the whole `/3/0`, from server
/// `from`; returns both Observe request ids.
fn observe_clock(h: &mut Harness, from: SimAddr) -> (RequestId, RequestId) {
    let mut ids = Vec::new();
    for path in ["/3/0/13", "/3/0"] {
        let now = h.now();
        let id = h
            .server_at(from)
            .ep
            .send_request(now, CLIENT, get(path).with_uint_option(number::OBSERVE, 0))
            .unwrap();
        h.run_for(Duration::from_secs(2));
        assert_eq!(h.server_at(from).responses[&id].code, Code::CONTENT);
        ids.push(id);
    }
    (ids[0], ids[1])
}

/// Sets the device clock and tells the engine the time resource changed.
fn tick_clock(h: &mut Harness, value: i64) {
    h.probes.clock.set(value);
    let now = h.now();
    h.client().changed(now, Path::Resource(3, 0, 13));
    h.run_for(Duration::from_secs(2));
}

fn disabled_then_back(storing: bool) -> (Harness, RequestId, RequestId) {
    let mut h = Harness::multi(5, vec![server(1, 100, storing), server(2, 86_400, storing)]);
    start(&mut h);
    let ids = observe_clock(&mut h, 1);
    assert_eq!(h.request_from(1, post("/1/0/4")).0.code, Code::CHANGED);
    h.run_for(Duration::from_secs(2));
    assert_eq!(
        h.client().server_state(1),
        Some(RegistrationState::Disabled)
    );
    tick_clock(&mut h, 1_700_000_111);
    tick_clock(&mut h, 1_700_000_222);
    // Nothing reaches the disabled server.
    assert!(h.server_at(1).notifications.is_empty());
    h.run_for(Duration::from_secs(100));
    assert_eq!(registers(&mut h, 1).len(), 2);
    assert_eq!(
        h.client().server_state(1),
        Some(RegistrationState::Registered)
    );
    (h, ids.0, ids.1)
}

#[test]
fn stored_notifications_follow_the_register_that_ends_the_disable() {
    let (mut h, clock, device) = disabled_then_back(true);
    let reg_at = h
        .server_at(1)
        .rd_requests
        .iter()
        .rev()
        .find(|(_, r)| r.path() == "/rd")
        .unwrap()
        .0;
    let n: Vec<_> = h.server_at(1).notifications.clone();
    assert_eq!(n.len(), 2, "{n:?}");
    // The newest value of each observation, in the order they were made,
    // right after the new registration.
    assert_eq!(n[0].1, clock);
    assert_eq!(n[0].2.payload, b"1700000222");
    assert_eq!(n[1].1, device);
    assert!(n
        .iter()
        .all(|(t, _, _)| *t >= reg_at && *t < reg_at + Duration::from_secs(2)));
    assert_eq!(h.client().observation_count(), 2);
}

#[test]
fn without_storing_disable_ends_the_observations() {
    let (mut h, _, _) = disabled_then_back(false);
    assert!(h.server_at(1).notifications.is_empty());
    assert_eq!(h.client().observation_count(), 0);
    tick_clock(&mut h, 1_700_000_333);
    assert!(h.server_at(1).notifications.is_empty());
}

/// Registered with storing as given, observing the clock; then the
/// server forgets the client (Update 4.04) and refuses Register for a
/// minute while the clock changes twice.
fn offline_then_back(storing: bool) -> (Harness, RequestId) {
    let mut h = Harness::new(6, 0, 600);
    let config = ServerConfig {
        notification_storing: storing,
        ..ServerConfig::new(600)
    };
    h.client().add_object(Box::new(Server::new(config)));
    h.register();
    let (clock, _) = observe_clock(&mut h, SERVER);
    h.server().update_answer = Code::NOT_FOUND;
    h.server().register_answer = Code::SERVICE_UNAVAILABLE;
    let now = h.now();
    h.client().trigger_update(now);
    h.run_for(Duration::from_secs(2));
    assert_eq!(h.client().state(), RegistrationState::WaitingRetry);
    let before = h.server().notifications.len();
    tick_clock(&mut h, 1_700_000_111);
    tick_clock(&mut h, 1_700_000_222);
    assert_eq!(h.server().notifications.len(), before);
    h.server().register_answer = Code::CREATED;
    h.run_for(Duration::from_secs(70));
    assert_eq!(h.client().state(), RegistrationState::Registered);
    (h, clock)
}

#[test]
fn stored_notification_follows_the_register_after_being_offline() {
    let (mut h, clock) = offline_then_back(true);
    let n: Vec<_> = h.server().notifications.clone();
    let mine: Vec<_> = n.iter().filter(|(_, id, _)| *id == clock).collect();
    assert_eq!(mine.len(), 1, "{n:?}");
    assert_eq!(mine[0].2.payload, b"1700000222");
    let reg_at = h.server().rd_requests.last().unwrap().0;
    assert!(mine[0].0 >= reg_at);
}

#[test]
fn without_storing_nothing_comes_after_being_offline() {
    let (mut h, _) = offline_then_back(false);
    assert!(h.server().notifications.is_empty());
    assert_eq!(h.client().observation_count(), 0);
}

#[test]
fn disable_ends_a_send_still_waiting_for_its_answer() {
    let mut h = Harness::multi(7, vec![server(1, 300, false), server(2, 300, false)]);
    start(&mut h);
    let now = h.now();
    let id = h
        .client()
        .send_to(now, 1, &[Path::Resource(3, 0, 0)])
        .unwrap();
    // The Execute reaches the client before the Send's answer does.
    assert_eq!(h.request_from(1, post("/1/0/4")).0.code, Code::CHANGED);
    h.run_for(Duration::from_secs(2));
    let sends: Vec<_> = h
        .server_events
        .iter()
        .filter_map(|(_, e)| match &e.event {
            ClientEvent::SendCompleted { id: i, code } if *i == id => Some((e.ssid, *code)),
            _ => None,
        })
        .collect();
    assert_eq!(sends, [(Some(1), None)]);
    assert_eq!(
        h.client().server_state(1),
        Some(RegistrationState::Disabled)
    );
}
