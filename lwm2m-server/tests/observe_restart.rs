//! Observations survive a server restart: a new engine built from the same
//! store matches the client's next notification (old token) and can cancel
//! the observation.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Response};
use lwm2m_core::format::ContentFormat;
use lwm2m_core::model::{Node, Path, Resource, Value};
use lwm2m_core::rng::SplitMix64;
use lwm2m_core::sim::{LinkConfig, Network, SimAddr};
use lwm2m_core::time::Duration;
use lwm2m_server::{
    Content, DmRequestId, Engine, MemoryStore, Registration, RegistrationStore, ServerConfig,
    ServerEvent, StoreError, StoredObservation,
};

/// A memory store that outlives the engine, like a database file would.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<MemoryStore<SimAddr>>>);

impl RegistrationStore<SimAddr> for Shared {
    fn load(&mut self) -> Result<Vec<Registration<SimAddr>>, StoreError> {
        self.0.lock().unwrap().load()
    }
    fn put(&mut self, reg: &Registration<SimAddr>) -> Result<(), StoreError> {
        self.0.lock().unwrap().put(reg)
    }
    fn remove(&mut self, id: &str) -> Result<(), StoreError> {
        self.0.lock().unwrap().remove(id)
    }
    fn load_observations(&mut self) -> Result<Vec<StoredObservation>, StoreError> {
        self.0.lock().unwrap().load_observations()
    }
    fn put_observation(&mut self, obs: &StoredObservation) -> Result<(), StoreError> {
        self.0.lock().unwrap().put_observation(obs)
    }
    fn remove_observation(&mut self, reg: &str, token: &[u8]) -> Result<(), StoreError> {
        self.0.lock().unwrap().remove_observation(reg, token)
    }
}

fn engine(seed: u64, store: &Shared) -> ServerEngine {
    Engine::new(
        ServerConfig::default(),
        SplitMix64::new(seed ^ 0x5eed),
        SplitMix64::new(seed),
        Box::new(store.clone()),
        standard_models(),
    )
    .unwrap()
}

fn notifications(net: &mut Network<SimPeer>, id: DmRequestId) -> Vec<Content> {
    server(net)
        .events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Notification { id: i, result, .. } if *i == id => {
                Some(result.clone().unwrap().content)
            }
            _ => None,
        })
        .collect()
}

fn level(v: i64) -> Content {
    Content::Node(Node::Resource(Resource::single(9, Value::Integer(v))))
}

#[test]
fn observation_survives_restart_then_notifies_and_cancels() {
    let store = Shared::default();
    let mut net = network(51, LinkConfig::default(), ServerConfig::default(), 1, None);
    server(&mut net).engine = engine(51, &store);
    assert_eq!(register(&mut net, 1, "ep=obs").code, Code::CREATED);
    let now = net.now();
    let id = server(&mut net)
        .engine
        .observe(
            now,
            "obs",
            Path::Resource(3, 0, 9),
            Some(ContentFormat::TEXT),
        )
        .unwrap();
    run_for(&mut net, Duration::from_secs(1));
    let (incoming, _) = client(&mut net, 1).held.pop().expect("observe request");
    let now = net.now();
    let obs = client(&mut net, 1)
        .ep
        .respond_observe(
            now,
            incoming,
            Response::new(Code::CONTENT).with_payload(0, b"87".to_vec()),
        )
        .expect("observation registered");
    run_for(&mut net, Duration::from_secs(1));
    let stored = store.0.lock().unwrap().load_observations().unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, id.0);
    assert_eq!(stored[0].path, "/3/0/9");
    assert_eq!(stored[0].accept, Some(ContentFormat::TEXT.0));

    // Restart: a new engine (new CoAP endpoint, new token generator) from the same store.
    server(&mut net).engine = engine(52, &store);
    server(&mut net).events.clear();
    assert!(server(&mut net).engine.registration("obs").is_some());
    let restored: Vec<(DmRequestId, String, Path)> = server(&mut net)
        .engine
        .observations()
        .map(|(i, ep, p)| (i, ep.to_string(), *p))
        .collect();
    assert_eq!(restored, [(id, "obs".to_string(), Path::Resource(3, 0, 9))]);

    let now = net.now();
    assert!(client(&mut net, 1).ep.notify(
        now,
        obs,
        Response::new(Code::CONTENT).with_payload(0, b"86".to_vec()),
        true,
    ));
    run_for(&mut net, Duration::from_secs(5));
    assert_eq!(notifications(&mut net, id), [level(86)]);
    assert_eq!(client(&mut net, 1).ep.observation_count(), 1, "not reset");

    // A request made after the restart gets a handle that is not the old one.
    let now = net.now();
    let read = server(&mut net)
        .engine
        .read(now, "obs", Path::Resource(3, 0, 9), None)
        .unwrap();
    assert_ne!(read, id);
    run_for(&mut net, Duration::from_secs(1));
    // Answer it, or it holds the only NSTART slot to the client.
    let (incoming, _) = client(&mut net, 1).held.pop().expect("read request");
    let now = net.now();
    client(&mut net, 1)
        .ep
        .respond(now, incoming, Response::new(Code::NOT_FOUND));
    run_for(&mut net, Duration::from_secs(1));

    // Active cancel after the restart: GET Observe=1 with the old token.
    let now = net.now();
    let cancel = server(&mut net)
        .engine
        .cancel_observe(now, id)
        .unwrap()
        .expect("active cancel sent");
    run_for(&mut net, Duration::from_secs(1));
    let held = std::mem::take(&mut client(&mut net, 1).held);
    let (incoming, req) = held
        .into_iter()
        .find(|(_, r)| r.options.uint(number::OBSERVE) == Some(1))
        .expect("cancel request");
    assert_eq!(req.path(), "/3/0/9");
    assert_eq!(
        req.options.uint(number::ACCEPT),
        Some(u32::from(ContentFormat::TEXT.0))
    );
    let now = net.now();
    client(&mut net, 1)
        .ep
        .respond(now, incoming, Response::new(Code::CONTENT));
    run_for(&mut net, Duration::from_secs(1));
    assert!(server(&mut net).events.iter().any(
        |e| matches!(e, ServerEvent::Response { id: i, result: Ok(r), .. } if *i == cancel && r.code == Code::CONTENT)
    ));
    assert_eq!(client(&mut net, 1).ep.observation_count(), 0);
    assert!(store
        .0
        .lock()
        .unwrap()
        .load_observations()
        .unwrap()
        .is_empty());
}

#[test]
fn stored_observations_of_gone_registrations_are_dropped() {
    let store = Shared::default();
    store
        .0
        .lock()
        .unwrap()
        .put_observation(&StoredObservation {
            id: 7,
            registration_id: "nobody".into(),
            endpoint: "ghost".into(),
            path: "/3/0/9".into(),
            token: vec![1, 2, 3, 4],
            accept: None,
        })
        .unwrap();
    let _ = engine(53, &store);
    assert!(store
        .0
        .lock()
        .unwrap()
        .load_observations()
        .unwrap()
        .is_empty());
}

#[test]
fn deregistration_removes_stored_observations() {
    let store = Shared::default();
    let mut net = network(54, LinkConfig::default(), ServerConfig::default(), 1, None);
    server(&mut net).engine = engine(54, &store);
    let loc = location(&register(&mut net, 1, "ep=obs"));
    let now = net.now();
    server(&mut net)
        .engine
        .observe(now, "obs", Path::Resource(3, 0, 9), None)
        .unwrap();
    run_for(&mut net, Duration::from_secs(1));
    let (incoming, _) = client(&mut net, 1).held.pop().expect("observe request");
    let now = net.now();
    client(&mut net, 1).ep.respond_observe(
        now,
        incoming,
        Response::new(Code::CONTENT).with_payload(0, b"1".to_vec()),
    );
    run_for(&mut net, Duration::from_secs(1));
    assert_eq!(
        store.0.lock().unwrap().load_observations().unwrap().len(),
        1
    );
    let resp = exchange(&mut net, 1, request(Code::DELETE, &loc, "", None, b"")).unwrap();
    assert_eq!(resp.code, Code::DELETED);
    assert!(store
        .0
        .lock()
        .unwrap()
        .load_observations()
        .unwrap()
        .is_empty());
}
