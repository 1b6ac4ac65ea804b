//! The whole client life cycle against a scripted LwM2M server in the
//! simulated network at 20 % loss: register, read, write, execute, observe,
//! update, deregister. Every run prints its seed when it fails.

mod common;

use common::*;
use lwm2m_client::{ClientEvent, RegistrationState};
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Message, MessageType, Request};
use lwm2m_core::format::{self, ContentFormat};
use lwm2m_core::model::{Node, Path, ResourceValue, Value};
use lwm2m_core::sim::{seeds, Fate, SeedGuard};
use lwm2m_core::time::{Duration, Instant};
use lwm2m_objects::Registry;

const LIFETIME: u32 = 120;

fn queries(r: &Request) -> Vec<String> {
    r.options
        .get_all(number::URI_QUERY)
        .map(|q| String::from_utf8(q.to_vec()).unwrap())
        .collect()
}

fn manufacturer(node: &Node) -> Option<&Value> {
    match node {
        Node::Instance(i) => match &i.resources.get(&0)?.value {
            ResourceValue::Single(v) => Some(v),
            ResourceValue::Multiple(_) => None,
        },
        _ => None,
    }
}

/// Notifications the client sent (first transmissions; NON, so no
/// retransmissions) after `since`: (time, observe sequence number).
fn sent_notifications(h: &Harness, since: Instant) -> Vec<(Instant, u32)> {
    h.net
        .trace()
        .iter()
        .filter(|t| t.from == CLIENT && t.at >= since)
        .filter_map(|t| {
            let m = Message::parse(&t.bytes).ok()?;
            (m.mtype == MessageType::Non && m.code == Code::CONTENT)
                .then(|| m.observe().map(|o| (t.at, o)))
                .flatten()
        })
        .collect()
}

#[test]
fn full_life_cycle_at_20_percent_loss() {
    let registry = Registry::standard();
    for seed in seeds(0x11FE, 16) {
        let _guard = SeedGuard(seed);
        let mut h = Harness::new(seed, 20, LIFETIME);

        // Register: exact query and payload.
        h.register();
        let (reg_at, register) = h.server().rd_requests[0].clone();
        assert_eq!(register.code, Code::POST);
        assert_eq!(register.path(), "/rd");
        assert_eq!(
            queries(&register),
            ["ep=dev1", "lt=120", "lwm2m=1.1", "b=U"]
        );
        assert_eq!(register.options.uint(number::CONTENT_FORMAT), Some(40));
        assert_eq!(
            String::from_utf8(register.payload.clone()).unwrap(),
            r#"</>;rt="oma.lwm2m";ct="60 110 112 11542 11543 11544",</1>;ver=1.1,</1/0>,</3>;ver=1.1,</3/0>,</4>;ver=1.3,</4/0>"#
        );
        assert_eq!(h.client().location(), Some("/rd/5a3f"));
        let registered_at = h
            .client_events
            .iter()
            .find(|(_, e)| matches!(e, ClientEvent::Registered { .. }))
            .unwrap()
            .0;
        assert!(registered_at >= reg_at);

        // Read /3/0 as TLV and as SenML JSON.
        for cf in [ContentFormat::TLV, ContentFormat::SENML_JSON] {
            let resp = h.request(get_accept("/3/0", cf.0));
            assert_eq!(resp.code, Code::CONTENT);
            assert_eq!(content_format(&resp), Some(u32::from(cf.0)));
            let node = format::decode(cf, &resp.payload, &Path::Instance(3, 0), &registry).unwrap();
            assert_eq!(manufacturer(&node), Some(&Value::String("ACME".into())));
        }

        // Write a writable resource, read it back as text/plain.
        let resp = h.request(
            Request::new(Code::PUT)
                .with_path("/3/0/15")
                .with_payload(0, b"Europe/Paris".to_vec()),
        );
        assert_eq!(resp.code, Code::CHANGED);
        let resp = h.request(get("/3/0/15"));
        assert_eq!(
            (resp.code, resp.payload.as_slice()),
            (Code::CONTENT, &b"Europe/Paris"[..])
        );
        assert_eq!(content_format(&resp), Some(0));

        // Execute Reboot: the hook runs once per Execute the server sent,
        // however many copies the network delivered.
        let (resp, attempts) = h.request_counting(Request::new(Code::POST).with_path("/3/0/4"));
        assert_eq!(resp.code, Code::CHANGED);
        assert!(h.probes.reboots.get() >= 1 && h.probes.reboots.get() <= attempts);
        if attempts == 1 {
            assert_eq!(h.probes.reboots.get(), 1);
        }

        // Observe Current Time with pmin 2 s, pmax 10 s.
        let resp = h.request(
            Request::new(Code::PUT)
                .with_path("/3/0/13")
                .with_query("pmin=2")
                .with_query("pmax=10"),
        );
        assert_eq!(resp.code, Code::CHANGED);
        let observe_req = get("/3/0/13").with_uint_option(number::OBSERVE, 0);
        let observe_started = h.now();
        let resp = h.request(observe_req);
        assert_eq!(resp.code, Code::CONTENT);
        assert!(resp.options.uint(number::OBSERVE).is_some());
        let observed_at = h.now();
        assert_eq!(h.client().observation_count(), 1);
        // The clock ticks every second for 20 s (faster than pmin), then
        // stays still for 35 s (only pmax notifications).
        for _ in 0..20 {
            h.run_for(Duration::from_secs(1));
            h.probes.clock.set(h.probes.clock.get() + 1);
            let now = h.now();
            h.client().changed(now, Path::Resource(3, 0, 13));
        }
        let quiet_from = h.now();
        h.run_for(Duration::from_secs(35));
        let sent = sent_notifications(&h, observed_at);
        assert!(sent.len() >= 12, "notifications sent: {sent:?}");
        // The observe response (piggybacked or separate) starts the clock.
        let mut last = h
            .net
            .trace()
            .iter()
            .filter(|t| t.from == CLIENT && t.at >= observe_started)
            .filter(|t| {
                Message::parse(&t.bytes).is_ok_and(|m| {
                    m.mtype != MessageType::Non && m.code == Code::CONTENT && m.observe().is_some()
                })
            })
            .map(|t| t.at)
            .next()
            .unwrap();
        for w in sent.windows(2) {
            assert!(w[1].1 > w[0].1, "observe numbers increase: {sent:?}");
        }
        for &(at, _) in &sent {
            let gap = at - last;
            assert!(gap >= Duration::from_secs(2), "faster than pmin: {sent:?}");
            assert!(gap <= Duration::from_secs(10), "slower than pmax: {sent:?}");
            last = at;
        }
        // While values change, notifications come at pmin; when they stop,
        // exactly at pmax.
        let busy: Vec<_> = sent.iter().filter(|(at, _)| *at < quiet_from).collect();
        assert!(busy.len() >= 8, "{sent:?}");
        let quiet: Vec<_> = sent
            .iter()
            .filter(|(at, _)| *at > quiet_from + Duration::from_secs(2))
            .collect();
        for w in quiet.windows(2) {
            assert_eq!(w[1].0 - w[0].0, Duration::from_secs(10), "{sent:?}");
        }
        // The server received notifications (some were lost) with the
        // values the client sent.
        let received = &h.server().notifications;
        assert!(!received.is_empty());
        for (_, _, n) in received {
            assert_eq!(n.code, Code::CONTENT);
            let secs: i64 = std::str::from_utf8(&n.payload).unwrap().parse().unwrap();
            assert!((1_700_000_000..=1_700_000_020).contains(&secs));
        }

        // Update at lifetime / 2 after the registration.
        let ok = h.run_until(Duration::from_secs(200), |net, _| match net.node(SERVER) {
            SimPeer::Server(s) => s.rd_requests.iter().any(|(_, r)| r.path() == "/rd/5a3f"),
            SimPeer::Client(_) => unreachable!(),
        });
        assert!(ok);
        let update = h
            .server()
            .rd_requests
            .iter()
            .find(|(_, r)| r.path() == "/rd/5a3f")
            .cloned()
            .unwrap();
        assert_eq!(update.1.code, Code::POST);
        assert!(update.1.payload.is_empty());
        assert!(queries(&update.1).is_empty());
        // The first Update leaves the client at registered + lifetime / 2.
        let first_update_sent = h
            .net
            .trace()
            .iter()
            .find(|t| {
                t.from == CLIENT
                    && Message::parse(&t.bytes).is_ok_and(|m| {
                        m.code == Code::POST
                            && m.uri_path().next() == Some(&b"rd"[..])
                            && m.uri_path().count() == 2
                    })
            })
            .unwrap()
            .at;
        assert_eq!(
            first_update_sent,
            registered_at + Duration::from_secs(u64::from(LIFETIME / 2))
        );

        // Deregister.
        let now = h.now();
        assert!(h.client().deregister(now));
        let ok = h.run_until(Duration::from_secs(300), |_, ev| {
            ev.iter().any(|(_, e)| *e == ClientEvent::Deregistered)
        });
        assert!(ok);
        assert_eq!(h.client().state(), RegistrationState::Deregistered);
        assert!(h
            .server()
            .rd_requests
            .iter()
            .any(|(_, r)| r.code == Code::DELETE && r.path() == "/rd/5a3f"));
        assert_eq!(h.client().observation_count(), 0);
        // Some datagrams were really lost.
        assert!(h.net.trace().iter().any(|t| t.fate == Fate::Lost));
    }
}
