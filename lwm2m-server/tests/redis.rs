//! RedisStore against a real redis-server that each test starts on a free
//! port (and kills when done): the store contract, the key layout, TTLs,
//! two server nodes sharing one Redis, and a restart.
//!
//! `redis-server` comes from `REDIS_SERVER` or PATH; without it the tests
//! fail and say to run `./scripts/install-test-deps`.
#![cfg(all(feature = "redis", feature = "tokio"))]

use std::net::SocketAddr;
use std::time::Duration;

use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Request, Response};
use lwm2m_core::format::link::RegistrationLinks;
use lwm2m_core::format::{self, ContentFormat};
use lwm2m_core::model::{Instance, Node, Path, Resource, Value, Version};
use lwm2m_core::time::Instant;
use lwm2m_server::{
    Content, RedisStore, Registration, RegistrationStore, Server, ServerConfig, ServerEvent,
    StoreError,
};

#[path = "support/redis_server.rs"]
mod redis_server;
use redis_server::RedisServer;
#[path = "support/udp_client.rs"]
mod udp_client;
use udp_client::UdpClient;

// ---------------------------------------------------------------------------
// The store contract (as SqliteStore's and MemoryStore's tests)
// ---------------------------------------------------------------------------

fn sample(id: &str, endpoint: &str) -> Registration<SocketAddr> {
    Registration {
        id: id.into(),
        endpoint: endpoint.into(),
        address: "127.0.0.1:5683".parse().unwrap(),
        lifetime: 300,
        lwm2m_version: Version::new(1, 1),
        binding: "UQ".into(),
        sms: Some("+123".into()),
        queue_mode: true,
        links: RegistrationLinks {
            root: None,
            content_formats: vec![110],
            objects: vec![(Path::Instance(3, 0), Some(Version::new(1, 1)))],
        },
        registered_at: Instant::from_millis(1_700_000_000_000),
        last_update: Instant::from_millis(1_700_000_060_000),
        security: Some(lwm2m_server::registration::RegistrationSecurity::X509 {
            common_name: "cn".into(),
        }),
    }
}

fn sorted(mut v: Vec<Registration<SocketAddr>>) -> Vec<Registration<SocketAddr>> {
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

#[test]
fn insert_update_remove_load_and_survive_reopen() {
    let redis = RedisServer::start();
    let mut s = redis.store();
    assert!(s.load().unwrap().is_empty());
    s.put(&sample("a", "ep-a")).unwrap();
    let mut b = sample("b", "ep-b");
    b.sms = None;
    b.queue_mode = false;
    b.address = "[::1]:40000".parse().unwrap();
    s.put(&b).unwrap();
    assert_eq!(
        sorted(s.load().unwrap()),
        vec![sample("a", "ep-a"), b.clone()]
    );
    assert_eq!(s.get("b").unwrap(), Some(b));

    let mut changed = sample("a", "ep-a");
    changed.lifetime = 60;
    changed.last_update = Instant::from_millis(1_700_000_090_000);
    s.put(&changed).unwrap();
    s.remove("b").unwrap();
    s.remove("nope").unwrap();
    assert_eq!(s.get("b").unwrap(), None);
    drop(s);

    let mut s = redis.store();
    assert_eq!(s.load().unwrap(), vec![changed.clone()]);
    assert_eq!(s.get("a").unwrap(), Some(changed));
    assert!(s.is_shared());
    assert_eq!(
        s.keys().unwrap(),
        ["lwm2m:ep:ep-a", "lwm2m:reg:a", "lwm2m:regs"],
        "the documented key layout"
    );
}

#[test]
fn a_put_replaces_the_registration_of_the_same_endpoint_atomically() {
    let redis = RedisServer::start();
    let mut s = redis.store();
    s.put(&sample("old", "dev")).unwrap();
    s.put(&sample("other", "dev2")).unwrap();
    assert_eq!(
        s.put_replacing(&sample("new", "dev")).unwrap().as_deref(),
        Some("old")
    );
    assert_eq!(s.put_replacing(&sample("new", "dev")).unwrap(), None);
    assert_eq!(
        sorted(s.load().unwrap()),
        vec![sample("new", "dev"), sample("other", "dev2")]
    );
    // Removing the replaced id (a node that still had it) must not unlink
    // the endpoint from its successor.
    s.remove("old").unwrap();
    let ep: Option<String> = redis::cmd("GET")
        .arg("lwm2m:ep:dev")
        .query(&mut redis.raw())
        .unwrap();
    assert_eq!(ep.as_deref(), Some("new"));
    s.remove("new").unwrap();
    s.remove("other").unwrap();
    assert!(s.keys().unwrap().is_empty(), "{:?}", s.keys());
}

#[test]
fn keys_expire_after_lifetime_plus_slack_and_load_forgets_them() {
    let redis = RedisServer::start();
    let mut s = redis.store();
    s.put(&sample("a", "ep-a")).unwrap();
    let ttl = s.ttl_millis("a").unwrap().unwrap();
    let want = (300 + RedisStore::DEFAULT_TTL_SLACK.as_secs()) * 1000;
    assert!(
        ttl <= want && ttl > want - 5_000,
        "ttl {ttl} ms, want ~{want}"
    );

    let mut s = s.with_ttl_slack(Duration::from_millis(200));
    let mut short = sample("b", "ep-b");
    short.lifetime = 1;
    s.put(&short).unwrap();
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(s.load().unwrap(), vec![sample("a", "ep-a")]);
    assert_eq!(s.get("b").unwrap(), None);
    assert_eq!(
        s.keys().unwrap(),
        ["lwm2m:ep:ep-a", "lwm2m:reg:a", "lwm2m:regs"],
        "the expired id left the set too"
    );
}

#[test]
fn prefixes_keep_deployments_apart_and_corrupt_hashes_are_reported() {
    let redis = RedisServer::start();
    let mut one = redis.store().with_prefix("one:");
    let mut two = redis.store().with_prefix("two:");
    one.put(&sample("a", "dev")).unwrap();
    two.put(&sample("b", "dev")).unwrap();
    assert_eq!(one.load().unwrap(), vec![sample("a", "dev")]);
    assert_eq!(two.load().unwrap(), vec![sample("b", "dev")]);

    redis::cmd("HSET")
        .arg("one:reg:a")
        .arg("address")
        .arg("nowhere")
        .query::<()>(&mut redis.raw())
        .unwrap();
    assert!(matches!(
        one.load(),
        Err(StoreError::Corrupt { ref id, column: "address" }) if id == "a"
    ));
}

#[test]
fn an_unreachable_redis_is_an_error_and_a_restarted_one_is_reconnected() {
    let redis = RedisServer::start();
    let (url, port) = (redis.url(), redis.port);
    let mut s = redis.store().with_timeout(Duration::from_millis(500));
    s.put(&sample("a", "dev")).unwrap();
    drop(redis);
    assert!(matches!(
        RedisStore::open(&url),
        Err(StoreError::Database(_))
    ));
    assert!(matches!(
        s.put(&sample("a", "dev")),
        Err(StoreError::Database(_))
    ));
    // The same port again (no persistence: the new server starts empty).
    let Some(_redis) = RedisServer::start_on(port) else {
        panic!("port {port} taken before redis-server could start on it again");
    };
    s.put(&sample("b", "dev2")).unwrap();
    assert_eq!(s.load().unwrap(), vec![sample("b", "dev2")]);
}

// ---------------------------------------------------------------------------
// Server nodes over real UDP
// ---------------------------------------------------------------------------

/// What only these tests ask of the shared client.
impl UdpClient {
    async fn register(&self, to: SocketAddr, ep: &str) -> String {
        self.register_for(to, ep, 300).await
    }

    async fn register_for(&self, to: SocketAddr, ep: &str, lifetime: u32) -> String {
        let mut r = Request::new(Code::POST).with_path("/rd");
        for q in [format!("ep={ep}"), format!("lt={lifetime}"), "b=U".into()] {
            r = r.with_query(&q);
        }
        let resp = self
            .send(to, r.with_payload(40, b"</1/0>,</3/0>".to_vec()))
            .await;
        assert_eq!(resp.code, Code::CREATED);
        resp.options
            .get_all(number::LOCATION_PATH)
            .map(|s| format!("/{}", String::from_utf8_lossy(s)))
            .collect()
    }

    async fn update(&self, to: SocketAddr, location: &str) -> Code {
        self.send(to, Request::new(Code::POST).with_path(location))
            .await
            .code
    }
}

fn device() -> Instance {
    Instance::new(0, [Resource::single(9, Value::Integer(42))])
}

fn handler(req: &Request) -> Response {
    let segs: Vec<&[u8]> = req.options.get_all(number::URI_PATH).collect();
    match (req.code, segs.as_slice()) {
        (Code::GET, [b"3", b"0"]) => {
            let mut out = Vec::new();
            format::encode(
                ContentFormat::TLV,
                &Node::Instance(device()),
                &Path::Instance(3, 0),
                &mut out,
            )
            .unwrap();
            Response::new(Code::CONTENT).with_payload(ContentFormat::TLV.0, out)
        }
        _ => Response::new(Code::NOT_FOUND),
    }
}

async fn node(redis: &RedisServer) -> Server {
    node_with(redis, ServerConfig::default()).await
}

async fn node_with(redis: &RedisServer, config: ServerConfig) -> Server {
    Server::start(
        "127.0.0.1:0".parse().unwrap(),
        config,
        Box::new(redis.store()),
        Box::new(lwm2m_objects::Registry::standard()),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn two_nodes_share_registrations_through_redis() {
    let redis = RedisServer::start();
    let running = node(&redis).await; // up before the client registers
    let a = node(&redis).await;
    let client = UdpClient::spawn(1, handler).await;

    let loc = client.register(a.local_addr(), "shared").await;
    let on_a = a.registrations().await;
    assert_eq!(on_a.len(), 1);

    // A node started afterwards loads it.
    let b = node(&redis).await;
    assert_eq!(b.registrations().await, on_a);
    assert_eq!(client.update(b.local_addr(), &loc).await, Code::CHANGED);
    let r = b.read("shared", Path::Instance(3, 0)).await.unwrap();
    assert_eq!(r.content, Content::Node(Node::Instance(device())));

    // A node that was already running finds it on the Update.
    assert!(running.registrations().await.is_empty());
    tokio::time::sleep(Duration::from_millis(5)).await; // a later last_update
    assert_eq!(
        client.update(running.local_addr(), &loc).await,
        Code::CHANGED
    );
    let on_running = running.registrations().await;
    assert_eq!(on_running.len(), 1);
    assert_eq!(format!("/rd/{}", on_running[0].id), loc);
    assert!(on_running[0].last_update > on_a[0].last_update);
    let r = running.read("shared", Path::Instance(3, 0)).await.unwrap();
    assert_eq!(r.content, Content::Node(Node::Instance(device())));

    // De-register on one node ends it for all: an Update elsewhere is 4.04.
    let resp = client
        .send(b.local_addr(), Request::new(Code::DELETE).with_path(&loc))
        .await;
    assert_eq!(resp.code, Code::DELETED);
    assert_eq!(client.update(a.local_addr(), &loc).await, Code::NOT_FOUND);
    assert!(redis.store().load().unwrap().is_empty());
    for n in [running, a, b] {
        n.shutdown().await;
    }
}

#[tokio::test]
async fn restart_with_redis_keeps_registrations_and_their_ids() {
    let redis = RedisServer::start();
    let client = UdpClient::spawn(2, handler).await;

    let server = node(&redis).await;
    let loc = client.register(server.local_addr(), "persist").await;
    let before = server.registrations().await;
    server.shutdown().await;

    let server = node(&redis).await;
    assert_eq!(server.registrations().await, before, "restored exactly");
    assert_eq!(
        client.update(server.local_addr(), &loc).await,
        Code::CHANGED
    );
    let r = server.read("persist", Path::Instance(3, 0)).await.unwrap();
    assert_eq!(r.content, Content::Node(Node::Instance(device())));
    server.shutdown().await;

    let server = node(&redis).await;
    let regs = server.registrations().await;
    assert_eq!(regs.len(), 1);
    assert!(regs[0].last_update > before[0].last_update);
    server.shutdown().await;
}

#[tokio::test]
async fn a_node_does_not_expire_a_registration_updated_on_another() {
    let redis = RedisServer::start();
    let config = ServerConfig {
        lifetime_grace: lwm2m_core::time::Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let a = node_with(&redis, config.clone()).await;
    let b = node_with(&redis, config).await;
    let mut a_events = a.events();
    let mut b_events = b.events();
    let client = UdpClient::spawn(3, handler).await;
    let start = tokio::time::Instant::now();
    let loc = client.register_for(a.local_addr(), "lively", 2).await;
    let id = loc.trim_start_matches("/rd/").to_string();

    tokio::time::sleep_until(start + Duration::from_secs(1)).await;
    assert_eq!(client.update(b.local_addr(), &loc).await, Code::CHANGED);
    let updated = tokio::time::Instant::now();
    // a's deadline for the Register (2 s + 0.3 s grace) passes.
    tokio::time::sleep_until(start + Duration::from_millis(2_700)).await;
    assert!(redis.store().get(&id).unwrap().is_some(), "still stored");
    let on_a = a.registrations().await;
    assert_eq!(on_a.len(), 1, "a kept it");
    assert_eq!(on_a, b.registrations().await, "a took b's copy");

    // Nobody updates again: both nodes expire it, and the store forgets it.
    tokio::time::sleep_until(updated + Duration::from_millis(3_000)).await;
    assert!(a.registrations().await.is_empty());
    assert!(b.registrations().await.is_empty());
    assert!(redis.store().load().unwrap().is_empty());
    // Whichever node removed it first, each reports the expiry once, with
    // the time of b's Update.
    for events in [&mut a_events, &mut b_events] {
        let mut expired = Vec::new();
        while let Ok(ev) = events.try_recv() {
            if let ServerEvent::Expired { registration } = ev {
                expired.push(registration.last_update);
            }
        }
        assert_eq!(expired, vec![on_a[0].last_update]);
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[test]
fn observations_round_trip_through_redis() {
    let redis = RedisServer::start();
    let obs = |id: u64, reg: &str, token: &[u8]| lwm2m_server::StoredObservation {
        id,
        registration_id: reg.into(),
        endpoint: format!("ep-{reg}"),
        path: "/3/0/9".into(),
        token: token.to_vec(),
        accept: Some(110),
    };
    {
        let mut s = redis.store();
        s.put_observation(&obs(1, "a", &[1, 2, 3, 4])).unwrap();
        s.put_observation(&obs(2, "a", &[5, 6, 7, 8])).unwrap();
        s.put_observation(&obs(3, "b", &[9; 8])).unwrap();
        let mut changed = obs(2, "a", &[5, 6, 7, 8]);
        changed.accept = None;
        s.put_observation(&changed).unwrap();
        s.remove_observation("a", &[1, 2, 3, 4]).unwrap();
        s.remove_observation("a", &[0]).unwrap();
    }
    let mut s = redis.store();
    let mut changed = obs(2, "a", &[5, 6, 7, 8]);
    changed.accept = None;
    assert_eq!(
        s.load_observations().unwrap(),
        vec![changed, obs(3, "b", &[9; 8])]
    );
}
