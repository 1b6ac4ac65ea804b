//! Location (6) and Connectivity Statistics (7) through the client engine.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use common::*;
use lwm2m_client::objects::{
    horizontal_velocity, ConnectivityStatistics, Fix, Location, TrafficCounters,
};
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Request, RequestId};
use lwm2m_core::time::Duration;

fn read_text(h: &mut Harness, path: &str) -> String {
    let r = h.request(get(path));
    assert_eq!(r.code, Code::CONTENT, "read {path}");
    String::from_utf8(r.payload).unwrap()
}

fn read_f64(h: &mut Harness, path: &str) -> f64 {
    read_text(h, path).parse().unwrap()
}

fn observe(h: &mut Harness, path: &str) -> RequestId {
    let now = h.now();
    let id = h
        .server()
        .ep
        .send_request(now, CLIENT, get(path).with_uint_option(number::OBSERVE, 0))
        .unwrap();
    h.run_until(Duration::from_secs(60), |net, _| match net.node(SERVER) {
        SimPeer::Server(s) => s.responses.contains_key(&id),
        SimPeer::Client(_) => unreachable!(),
    });
    assert!(h.server().responses.contains_key(&id));
    id
}

fn notified(h: &mut Harness, id: RequestId) -> Vec<String> {
    h.server()
        .notifications
        .iter()
        .filter(|(_, n, _)| *n == id)
        .map(|(_, _, r)| String::from_utf8(r.payload.clone()).unwrap())
        .collect()
}

fn execute(h: &mut Harness, path: &str) -> Code {
    h.request(Request::new(Code::POST).with_path(path)).code
}

#[test]
fn location_from_a_hook_notifies_new_fixes() {
    let mut h = Harness::new(41, 0, 86_400);
    let fix = Rc::new(RefCell::new(Fix {
        latitude: 48.8584,
        longitude: 2.2945,
        altitude: Some(35.0),
        radius: Some(12.5),
        velocity: Some(horizontal_velocity(90, 36)),
        speed: Some(10.0),
        timestamp: 1_700_000_000,
    }));
    let source = fix.clone();
    h.client().add_object(Box::new(Location::from_hook(
        Duration::from_secs(1),
        move |_| Some(source.borrow().clone()),
    )));
    h.register();
    assert_eq!(read_f64(&mut h, "/6/0/0"), 48.8584);
    assert_eq!(read_f64(&mut h, "/6/0/1"), 2.2945);
    assert_eq!(read_f64(&mut h, "/6/0/2"), 35.0);
    assert_eq!(read_f64(&mut h, "/6/0/3"), 12.5);
    assert_eq!(read_text(&mut h, "/6/0/5"), "1700000000");
    assert_eq!(read_f64(&mut h, "/6/0/6"), 10.0);
    let velocity = h.request(get("/6/0/4"));
    assert_eq!(velocity.payload, [0x00, 90, 0x00, 36]);

    let lat = observe(&mut h, "/6/0/0");
    fix.borrow_mut().latitude = 48.86;
    fix.borrow_mut().timestamp += 5;
    h.run_for(Duration::from_secs(3));
    // Only the timestamp moves: latitude observers hear nothing new.
    fix.borrow_mut().timestamp += 5;
    h.run_for(Duration::from_secs(3));
    assert_eq!(notified(&mut h, lat), ["48.86"]);
    assert_eq!(read_text(&mut h, "/6/0/5"), "1700000010");
}

#[test]
fn location_without_optional_values_hides_them() {
    let mut h = Harness::new(42, 0, 86_400);
    h.client().add_object(Box::new(Location::from_hook(
        Duration::from_secs(1),
        |_| {
            Some(Fix {
                latitude: 1.5,
                longitude: -2.5,
                timestamp: 5,
                ..Fix::default()
            })
        },
    )));
    h.register();
    assert_eq!(h.request(get("/6/0/2")).code, Code::NOT_FOUND);
    assert_eq!(h.request(get("/6/0/4")).code, Code::NOT_FOUND);
    let discover = h.request(get_accept("/6/0", 40));
    let links = String::from_utf8(discover.payload).unwrap();
    assert_eq!(links, "</6/0>,</6/0/0>,</6/0/1>,</6/0/5>");
}

#[test]
fn simulated_track_moves_between_waypoints() {
    let mut h = Harness::new(43, 0, 86_400);
    let unix0 = 1_600_000_000;
    h.client().add_object(Box::new(Location::track(
        vec![(10.0, 20.0, 0.0), (11.0, 22.0, 100.0)],
        Duration::from_secs(100),
        Duration::from_secs(5),
        unix0,
    )));
    h.register();
    let mut seen = Vec::new();
    for _ in 0..4 {
        h.run_for(Duration::from_secs(7));
        let lat = read_f64(&mut h, "/6/0/0");
        let lon = read_f64(&mut h, "/6/0/1");
        let ts: i64 = read_text(&mut h, "/6/0/5").parse().unwrap();
        // Where the track is at the sample's time (within its second).
        let t = (ts - unix0) as f64 % 200.0;
        let progress = if t < 100.0 {
            t / 100.0
        } else {
            2.0 - t / 100.0
        };
        assert!((lat - (10.0 + progress)).abs() <= 0.011, "{lat} at {t}");
        assert!(
            (lon - (20.0 + 2.0 * progress)).abs() <= 0.021,
            "{lon} at {t}"
        );
        seen.push(lat);
    }
    seen.dedup();
    assert!(seen.len() >= 3, "the device should move: {seen:?}");
}

#[test]
fn statistics_collect_between_start_and_stop() {
    let mut h = Harness::new(51, 0, 86_400);
    let counters = Rc::new(Cell::new(TrafficCounters {
        tx_bytes: 10 * 1024,
        rx_bytes: 4 * 1024,
        messages: 30,
        sms_tx: 2,
        ..TrafficCounters::default()
    }));
    let source = counters.clone();
    h.client()
        .add_object(Box::new(ConnectivityStatistics::new(move || source.get())));
    h.register();
    // Nothing collected before Start.
    assert_eq!(read_text(&mut h, "/7/0/2"), "0");
    assert_eq!(execute(&mut h, "/7/0/6"), Code::CHANGED);
    assert_eq!(read_text(&mut h, "/7/0/2"), "0");
    let mut c = counters.get();
    c.tx_bytes += 5 * 1024;
    c.rx_bytes += 3 * 1024;
    c.messages += 8;
    c.sms_tx += 1;
    c.max_message_size = 1200;
    counters.set(c);
    assert_eq!(read_text(&mut h, "/7/0/2"), "5");
    assert_eq!(read_text(&mut h, "/7/0/3"), "3");
    assert_eq!(read_text(&mut h, "/7/0/0"), "1");
    assert_eq!(read_text(&mut h, "/7/0/4"), "1200");
    assert_eq!(read_text(&mut h, "/7/0/5"), "1024");
    assert_eq!(execute(&mut h, "/7/0/7"), Code::CHANGED);
    c.tx_bytes += 50 * 1024;
    counters.set(c);
    assert_eq!(read_text(&mut h, "/7/0/2"), "5", "frozen after Stop");
    // Start again resets to 0.
    assert_eq!(execute(&mut h, "/7/0/6"), Code::CHANGED);
    assert_eq!(read_text(&mut h, "/7/0/2"), "0");
    // Counters are read-only.
    let w = Request::new(Code::PUT)
        .with_path("/7/0/2")
        .with_payload(0, b"9".to_vec());
    assert_eq!(h.request(w).code, Code::METHOD_NOT_ALLOWED);
}

#[test]
fn statistics_stop_after_the_collection_period() {
    let mut h = Harness::new(52, 0, 86_400);
    let counters = Rc::new(Cell::new(TrafficCounters::default()));
    let source = counters.clone();
    h.client()
        .add_object(Box::new(ConnectivityStatistics::new(move || source.get())));
    h.register();
    let w = Request::new(Code::PUT)
        .with_path("/7/0/8")
        .with_payload(0, b"30".to_vec());
    assert_eq!(h.request(w).code, Code::CHANGED);
    assert_eq!(read_text(&mut h, "/7/0/8"), "30");
    assert_eq!(execute(&mut h, "/7/0/6"), Code::CHANGED);
    counters.set(TrafficCounters {
        tx_bytes: 2048,
        ..TrafficCounters::default()
    });
    h.run_for(Duration::from_secs(40));
    counters.set(TrafficCounters {
        tx_bytes: 100 * 1024,
        ..TrafficCounters::default()
    });
    assert_eq!(read_text(&mut h, "/7/0/2"), "2");
}
