//! Two engines ("server nodes") sharing one store that says it is shared,
//! fed raw datagrams: the engine logic behind multi-node Redis deployments,
//! without Redis (tests/redis.rs runs the same story against a real one).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Message, MessageType, MessageWriter};
use lwm2m_core::rng::SplitMix64;
use lwm2m_core::time::{Duration, Instant};
use lwm2m_server::{
    Engine, MemoryStore, Registration, RegistrationStore, ServerConfig, ServerEvent, StoreError,
};

/// An in-memory store shared by handles, replacing a duplicate endpoint on
/// put like RedisStore does.
#[derive(Clone, Default)]
struct Shared {
    regs: Arc<Mutex<BTreeMap<String, Registration<u32>>>>,
    shared: bool,
}

impl RegistrationStore<u32> for Shared {
    fn load(&mut self) -> Result<Vec<Registration<u32>>, StoreError> {
        Ok(self.regs.lock().unwrap().values().cloned().collect())
    }
    fn put(&mut self, reg: &Registration<u32>) -> Result<(), StoreError> {
        let mut regs = self.regs.lock().unwrap();
        regs.retain(|id, r| r.endpoint != reg.endpoint || *id == reg.id);
        regs.insert(reg.id.clone(), reg.clone());
        Ok(())
    }
    fn remove(&mut self, id: &str) -> Result<(), StoreError> {
        self.regs.lock().unwrap().remove(id);
        Ok(())
    }
    fn is_shared(&self) -> bool {
        self.shared
    }
    fn get(&mut self, id: &str) -> Result<Option<Registration<u32>>, StoreError> {
        Ok(self.regs.lock().unwrap().get(id).cloned())
    }
}

type Node = Engine<u32, SplitMix64>;

fn node(seed: u64, store: impl RegistrationStore<u32> + 'static) -> Node {
    Engine::new(
        ServerConfig::default(),
        SplitMix64::new(seed),
        SplitMix64::new(seed + 1000),
        Box::new(store),
        Box::new(lwm2m_objects::Registry::standard()),
    )
    .unwrap()
}

fn datagram(mid: u16, code: Code, path: &[&str], query: &[&str], payload: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    let token = mid.to_be_bytes();
    let mut w = MessageWriter::udp(&mut buf, MessageType::Con, code, mid, &token).unwrap();
    for p in path {
        w.option(number::URI_PATH, p.as_bytes()).unwrap();
    }
    if !payload.is_empty() {
        w.uint_option(number::CONTENT_FORMAT, 40).unwrap();
    }
    for q in query {
        w.option(number::URI_QUERY, q.as_bytes()).unwrap();
    }
    w.finish(payload);
    buf
}

/// Sends a datagram from `peer` and returns the code and Location-Path of the answer.
fn exchange(n: &mut Node, now: Instant, peer: u32, d: &[u8]) -> (Code, Vec<String>) {
    n.handle_datagram(now, peer, d);
    let t = n.poll_transmit().expect("an answer");
    let m = Message::parse(&t.bytes).unwrap();
    let loc = m
        .location_path()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    (m.code, loc)
}

fn register(n: &mut Node, now: Instant, peer: u32, mid: u16, ep: &str) -> String {
    let q = format!("ep={ep}");
    let d = datagram(mid, Code::POST, &["rd"], &[&q, "lt=100"], b"</3/0>");
    let (code, loc) = exchange(n, now, peer, &d);
    assert_eq!(code, Code::CREATED);
    assert_eq!(loc[0], "rd");
    loc[1].clone()
}

fn update(n: &mut Node, now: Instant, peer: u32, mid: u16, id: &str) -> Code {
    exchange(
        n,
        now,
        peer,
        &datagram(mid, Code::POST, &["rd", id], &[], b""),
    )
    .0
}

fn events(n: &mut Node) -> Vec<ServerEvent<u32>> {
    std::iter::from_fn(|| n.poll_event()).collect()
}

const T0: Instant = Instant::from_millis(1_000_000);

#[test]
fn a_node_started_before_the_register_accepts_the_update() {
    let store = Shared {
        shared: true,
        ..Shared::default()
    };
    let mut a = node(1, store.clone());
    let mut b = node(2, store.clone());
    let id = register(&mut a, T0, 7, 1, "dev");
    assert!(b.registration("dev").is_none(), "b has not heard of it yet");

    // The client's Update reaches b (a load balancer), from a new address.
    let t1 = T0 + Duration::from_secs(50);
    assert_eq!(update(&mut b, t1, 8, 2, &id), Code::CHANGED);
    let on_b = b.registration("dev").expect("b adopted the registration");
    assert_eq!((on_b.id.as_str(), on_b.address), (id.as_str(), 8));
    assert_eq!(store.regs.lock().unwrap()[&id].last_update, t1);

    // a's timer for the original lifetime fires: the registration was
    // updated on b, so a takes the newer copy instead of expiring it.
    let t2 = T0 + Duration::from_secs(120);
    a.handle_timeout(t2);
    assert!(events(&mut a)
        .iter()
        .all(|e| !matches!(e, ServerEvent::Expired { .. })));
    assert!(store.regs.lock().unwrap().contains_key(&id));
    assert_eq!(a.registration("dev").unwrap().last_update, t1);

    // De-register on b; a drops it at its next deadline, where as far as
    // a knows its lifetime ran out.
    let (code, _) = exchange(
        &mut b,
        t2,
        8,
        &datagram(3, Code::DELETE, &["rd", &id], &[], b""),
    );
    assert_eq!(code, Code::DELETED);
    assert!(store.regs.lock().unwrap().is_empty());
    a.handle_timeout(t1 + Duration::from_secs(114));
    assert!(a.registration("dev").is_some(), "not due yet");
    a.handle_timeout(t1 + Duration::from_secs(116));
    assert!(a.registration("dev").is_none());
    let expired: Vec<_> = events(&mut a)
        .into_iter()
        .filter_map(|e| match e {
            ServerEvent::Expired { registration } => Some(registration.last_update),
            _ => None,
        })
        .collect();
    assert_eq!(expired, vec![t1]);
    assert!(store.regs.lock().unwrap().is_empty());
}

#[test]
fn register_on_another_node_replaces_the_stale_copy() {
    let store = Shared {
        shared: true,
        ..Shared::default()
    };
    let mut a = node(1, store.clone());
    let mut b = node(2, store.clone());
    let old = register(&mut a, T0, 7, 1, "dev");
    // The device reboots and registers on b: the store keeps only the new id.
    let new = register(&mut b, T0 + Duration::from_secs(10), 9, 1, "dev");
    assert_ne!(old, new);
    assert_eq!(
        store.regs.lock().unwrap().keys().collect::<Vec<_>>(),
        vec![&new]
    );
    // a still has the old id in memory; an Update with it now fails, and an
    // Update with the new id replaces the stale copy.
    let t = T0 + Duration::from_secs(20);
    assert_eq!(update(&mut a, t, 7, 2, &old), Code::NOT_FOUND);
    assert_eq!(update(&mut a, t, 9, 3, &new), Code::CHANGED);
    assert_eq!(a.registration("dev").unwrap().id, new);
    assert_eq!(a.registration_count(), 1);
}

#[test]
fn a_store_that_is_not_shared_is_never_read_back() {
    // The same story with is_shared() false: b only knows what it loaded.
    let store = Shared::default();
    let mut a = node(1, store.clone());
    let mut b = node(2, store.clone());
    let id = register(&mut a, T0, 7, 1, "dev");
    assert_eq!(update(&mut b, T0, 7, 2, &id), Code::NOT_FOUND);
    // And the memory store's default says not shared.
    assert!(!RegistrationStore::<u32>::is_shared(
        &MemoryStore::<u32>::new()
    ));
}
