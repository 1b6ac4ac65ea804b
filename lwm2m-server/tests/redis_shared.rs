//! RedisSecurityStore, RedisConfigStore, RedisFirmwareStore and
//! RedisCampaignStore against a real redis-server that each test starts on
//! a free port: CRUD, PSK identity uniqueness across two store instances
//! (two server nodes), data kept across a reopen, the key layout, keys kept
//! out of Debug and error messages, firmware ranges and concurrent uploads,
//! and campaign leases: exclusive, expiring, and two campaign managers of
//! which exactly one runs a campaign while the other takes over after the
//! first stops or dies.
#![cfg(all(feature = "redis", feature = "tokio"))]

use lwm2m_server::bootstrap::{
    BootstrapConfig, BootstrapConfigStore, BootstrapFile, ConfigError, RedisConfigStore,
};
use lwm2m_server::{Credentials, RedisSecurityStore, SecurityError, SecurityInfo, SecurityStore};

#[path = "support/redis_server.rs"]
mod redis_server;
use redis_server::RedisServer;

fn rpk(ep: &str, key: &[u8]) -> SecurityInfo {
    SecurityInfo {
        endpoint: ep.into(),
        credentials: Credentials::Rpk {
            public_key: key.to_vec(),
        },
    }
}

fn x509(ep: &str) -> SecurityInfo {
    SecurityInfo {
        endpoint: ep.into(),
        credentials: Credentials::X509,
    }
}

fn security(redis: &RedisServer) -> RedisSecurityStore {
    RedisSecurityStore::open(&redis.url()).unwrap()
}

#[test]
fn security_crud_and_reopen() {
    let redis = RedisServer::start();
    let mut s = security(&redis);
    assert_eq!(s.all().unwrap(), vec![]);
    assert_eq!(s.put(SecurityInfo::psk("b", "id-b", b"kb")).unwrap(), None);
    assert_eq!(s.put(rpk("a", &[1, 2, 3])).unwrap(), None);
    assert_eq!(s.put(x509("c")).unwrap(), None);
    let eps: Vec<_> = s.all().unwrap().into_iter().map(|i| i.endpoint).collect();
    assert_eq!(eps, ["a", "b", "c"]);
    assert_eq!(s.get_by_endpoint("a").unwrap(), Some(rpk("a", &[1, 2, 3])));
    assert_eq!(s.get_by_endpoint("c").unwrap(), Some(x509("c")));
    assert_eq!(s.get_by_endpoint("zz").unwrap(), None);
    assert_eq!(
        s.get_by_psk_identity("id-b").unwrap(),
        Some(SecurityInfo::psk("b", "id-b", b"kb"))
    );

    // Replacing answers the old credentials; a new identity frees the old one.
    assert_eq!(
        s.put(SecurityInfo::psk("b", "id-b2", b"kb2")).unwrap(),
        Some(SecurityInfo::psk("b", "id-b", b"kb"))
    );
    assert_eq!(s.get_by_psk_identity("id-b").unwrap(), None);
    // From PSK to RPK frees the identity too.
    assert_eq!(
        s.put(rpk("b", &[9])).unwrap(),
        Some(SecurityInfo::psk("b", "id-b2", b"kb2"))
    );
    assert_eq!(s.get_by_psk_identity("id-b2").unwrap(), None);
    s.put(SecurityInfo::psk("b", "id-b", b"kb")).unwrap();

    // Invalid credentials are refused and change nothing.
    assert!(matches!(
        s.put(SecurityInfo::psk("a", "", b"k")),
        Err(SecurityError::Invalid(_))
    ));
    assert_eq!(s.get_by_endpoint("a").unwrap(), Some(rpk("a", &[1, 2, 3])));

    assert_eq!(s.remove("c").unwrap(), Some(x509("c")));
    assert_eq!(s.remove("c").unwrap(), None);
    let before = s.all().unwrap();
    drop(s);

    // A new store (a restarted node) reads the same data.
    let mut s = security(&redis);
    assert_eq!(s.all().unwrap(), before);
    assert_eq!(
        s.get_by_psk_identity("id-b").unwrap(),
        Some(SecurityInfo::psk("b", "id-b", b"kb"))
    );
    assert_eq!(
        s.remove("b").unwrap(),
        Some(SecurityInfo::psk("b", "id-b", b"kb"))
    );
    assert_eq!(s.get_by_psk_identity("id-b").unwrap(), None);
    s.remove("a").unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut redis.raw()).unwrap();
    assert!(keys.is_empty(), "an empty store leaves no key: {keys:?}");
}

#[test]
fn psk_identities_are_unique_across_two_nodes() {
    let redis = RedisServer::start();
    let mut one = security(&redis);
    let mut two = security(&redis);
    one.put(SecurityInfo::psk("dev-1", "shared-id", b"k1"))
        .unwrap();
    assert_eq!(
        two.put(SecurityInfo::psk("dev-2", "shared-id", b"k2")),
        Err(SecurityError::PskIdentityInUse {
            identity: "shared-id".into(),
            endpoint: "dev-1".into(),
        })
    );
    assert_eq!(two.get_by_endpoint("dev-2").unwrap(), None);
    // The owner may change its key from the other node.
    two.put(SecurityInfo::psk("dev-1", "shared-id", b"k1b"))
        .unwrap();
    assert_eq!(
        one.get_by_psk_identity("shared-id").unwrap(),
        Some(SecurityInfo::psk("dev-1", "shared-id", b"k1b"))
    );
    // Freed on one node, free on the other.
    one.remove("dev-1").unwrap();
    two.put(SecurityInfo::psk("dev-2", "shared-id", b"k2"))
        .unwrap();
    assert_eq!(
        one.get_by_psk_identity("shared-id")
            .unwrap()
            .unwrap()
            .endpoint,
        "dev-2"
    );

    // Many endpoints racing for one identity from two nodes: one wins.
    let racers: Vec<_> = [one, two]
        .into_iter()
        .enumerate()
        .map(|(n, mut s)| {
            std::thread::spawn(move || {
                (0..50)
                    .filter(|i| {
                        s.put(SecurityInfo::psk(&format!("r{n}-{i}"), "race", b"k"))
                            .is_ok()
                    })
                    .count()
            })
        })
        .collect();
    let wins: usize = racers.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(wins, 1);
    let s = security(&redis);
    let holders: Vec<_> = s
        .all()
        .unwrap()
        .into_iter()
        .filter(|i| i.psk_identity() == Some("race"))
        .collect();
    assert_eq!(holders.len(), 1, "{holders:?}");
}

#[test]
fn keys_stay_out_of_debug_and_the_layout_is_documented() {
    let redis = RedisServer::start();
    let mut s = security(&redis).with_prefix("t:");
    s.put(SecurityInfo::psk("ep", "ident", b"SECRETKEY"))
        .unwrap();
    let text = format!("{s:?} {:?}", s.all().unwrap());
    assert!(!text.contains("SECRETKEY"), "{text}");
    assert!(!text.contains("534543"), "{text}");
    let mut raw = redis.raw();
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut raw).unwrap();
    keys.sort();
    assert_eq!(keys, ["t:psk", "t:security"]);
    let stored: String = redis::cmd("HGET")
        .arg("t:security")
        .arg("ep")
        .query(&mut raw)
        .unwrap();
    assert_eq!(
        stored,
        r#"{"kind":"psk","identity":"ident","key":"5345435245544b4559"}"#
    );

    // A damaged entry is a store error, not a panic or a wrong answer.
    redis::cmd("HSET")
        .arg("t:security")
        .arg("ep")
        .arg("{")
        .query::<()>(&mut raw)
        .unwrap();
    let err = s.get_by_endpoint("ep").unwrap_err();
    assert!(
        matches!(err, SecurityError::Store(ref m) if m.contains("corrupt")),
        "{err}"
    );
}

#[test]
fn an_unreachable_redis_is_a_store_error() {
    let url = RedisServer::start().url();
    assert!(matches!(
        RedisSecurityStore::open(&url),
        Err(SecurityError::Store(_))
    ));
    assert!(matches!(
        RedisConfigStore::open(&url),
        Err(ConfigError::Store(_))
    ));
}

const FILE: &str = r#"{"endpoints": {
    "dev-a": {
        "security": [{"id": 1, "uri": "coap://127.0.0.1:5683", "short_server_id": 101}],
        "servers": [{"id": 0, "short_server_id": 101, "lifetime": 300}]
    },
    "dev-b": {
        "security": [{"id": 1, "uri": "coap://10.0.0.1:5683", "short_server_id": 7,
                      "security_mode": "psk", "public_key_or_identity": "6964", "secret_key": "6b6579"}],
        "servers": [{"id": 0, "short_server_id": 7}],
        "discover": true
    }
}}"#;

#[test]
fn bootstrap_configurations_crud_shared_and_reopened() {
    let redis = RedisServer::start();
    let file = BootstrapFile::from_json(FILE).unwrap();
    let mut one = RedisConfigStore::open(&redis.url()).unwrap();
    let mut two = RedisConfigStore::open(&redis.url()).unwrap();
    assert_eq!(one.endpoints().unwrap(), Vec::<String>::new());
    for (ep, c) in &file.endpoints {
        one.put(ep, c.clone()).unwrap();
    }
    // The other node sees them.
    assert_eq!(two.endpoints().unwrap(), ["dev-a", "dev-b"]);
    assert_eq!(
        two.get("dev-b").unwrap().as_ref(),
        file.endpoints.get("dev-b")
    );
    assert_eq!(two.get("nobody").unwrap(), None);

    // Invalid configurations are refused and change nothing.
    let bad = BootstrapConfig {
        servers: file.endpoints["dev-a"].servers.clone(),
        ..BootstrapConfig::default()
    };
    assert!(matches!(
        two.put("dev-a", bad),
        Err(ConfigError::ShortServerId(_))
    ));
    assert_eq!(
        one.get("dev-a").unwrap().as_ref(),
        file.endpoints.get("dev-a")
    );

    // Replace on one node, read on the other.
    let mut changed = file.endpoints["dev-a"].clone();
    changed.servers[0].lifetime = 99;
    two.put("dev-a", changed.clone()).unwrap();
    assert_eq!(one.get("dev-a").unwrap(), Some(changed.clone()));
    assert!(one.remove("dev-b").unwrap());
    assert!(!two.remove("dev-b").unwrap());
    drop((one, two));

    let s = RedisConfigStore::open(&redis.url()).unwrap();
    assert_eq!(s.endpoints().unwrap(), ["dev-a"]);
    assert_eq!(s.get("dev-a").unwrap(), Some(changed));
    let mut raw = redis.raw();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut raw).unwrap();
    assert_eq!(keys, ["lwm2m:bootstrap"]);
    redis::cmd("HSET")
        .arg("lwm2m:bootstrap")
        .arg("dev-a")
        .arg("{")
        .query::<()>(&mut raw)
        .unwrap();
    let err = s.get("dev-a").unwrap_err().to_string();
    assert!(err.contains("corrupt"), "{err}");
    // Another prefix is another deployment.
    let other = RedisConfigStore::open(&redis.url())
        .unwrap()
        .with_prefix("other:");
    assert_eq!(other.endpoints().unwrap(), Vec::<String>::new());
}

// --- firmware packages ---------------------------------------------------

use lwm2m_server::firmware::{self, FirmwarePackage, FirmwareStore, RedisFirmwareStore};

fn redis_keys(redis: &RedisServer) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut redis.raw()).unwrap();
    keys.sort();
    keys
}

#[test]
fn firmware_store_crud_ranges_and_reopen() {
    let redis = RedisServer::start();
    let s = RedisFirmwareStore::open(&redis.url()).unwrap();
    firmware::check_store(&s);
    assert!(redis_keys(&redis).is_empty(), "{:?}", redis_keys(&redis));

    let p = FirmwarePackage::describe("keep", "demo", "3", b"abcdef", 1);
    s.put(&p, b"abcdef").unwrap();
    drop(s);
    // Another store (a restarted node, or another one) reads the same.
    let s = RedisFirmwareStore::open(&redis.url()).unwrap();
    assert_eq!(s.list().unwrap(), vec![p.clone()]);
    assert_eq!(s.get("keep").unwrap(), Some(p));
    assert_eq!(s.read_range("keep", 2, 3).unwrap().unwrap(), b"cde");
    assert_eq!(s.read_range("keep", 4, 100).unwrap().unwrap(), b"ef");
    assert_eq!(
        redis_keys(&redis),
        ["lwm2m:firmware", "lwm2m:firmware:keep"]
    );
    let bytes: Vec<u8> = redis::cmd("GET")
        .arg("lwm2m:firmware:keep")
        .query(&mut redis.raw())
        .unwrap();
    assert_eq!(bytes, b"abcdef");
    let other = RedisFirmwareStore::open(&redis.url())
        .unwrap()
        .with_prefix("other:");
    assert_eq!(other.list().unwrap(), vec![]);
    assert_eq!(other.read_range("keep", 0, 1).unwrap(), None);

    redis::cmd("HSET")
        .arg("lwm2m:firmware")
        .arg("keep")
        .arg("{")
        .query::<()>(&mut redis.raw())
        .unwrap();
    let err = s.get("keep").unwrap_err().to_string();
    assert!(err.contains("corrupt") && err.contains("keep"), "{err}");
    assert!(s.delete("keep").unwrap());
    assert!(redis_keys(&redis).is_empty(), "{:?}", redis_keys(&redis));
}

#[test]
fn two_nodes_uploading_one_id_store_exactly_one_complete_package() {
    let redis = RedisServer::start();
    let url = redis.url();
    let uploads: Vec<_> = (0..4u8)
        .map(|n| {
            let url = url.clone();
            std::thread::spawn(move || {
                let s = RedisFirmwareStore::open(&url).unwrap();
                let bytes = vec![n; 100_000];
                let p = FirmwarePackage::describe("same", "demo", &n.to_string(), &bytes, 1);
                s.put(&p, &bytes).map(|()| n)
            })
        })
        .collect();
    let results: Vec<_> = uploads.into_iter().map(|t| t.join().unwrap()).collect();
    let won: Vec<u8> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    assert_eq!(won.len(), 1, "{results:?}");
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, firmware::FirmwareStoreError::Exists(_))));
    let s = RedisFirmwareStore::open(&url).unwrap();
    let p = s.get("same").unwrap().unwrap();
    assert_eq!(p.version, won[0].to_string());
    let bytes = s.read_range("same", 0, 200_000).unwrap().unwrap();
    assert_eq!(
        firmware::sha256_hex(&bytes),
        p.sha256,
        "bytes of the listed package"
    );
}

// --- campaigns -------------------------------------------------------------

use std::time::Duration;

use lwm2m_server::campaign::{
    self, CampaignError, CampaignInfo, CampaignManager, CampaignStatus, CampaignStore,
    DeviceStatus, LeaseSettings, RedisCampaignStore,
};

fn campaigns(redis: &RedisServer) -> RedisCampaignStore {
    RedisCampaignStore::open(&redis.url()).unwrap()
}

/// Polls `done` every 20 ms for at most 20 s.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn campaign_store_round_trip_and_key_layout() {
    let redis = RedisServer::start();
    campaign::check_store_round_trip(&mut || Box::new(campaigns(&redis)));
    assert_eq!(
        redis_keys(&redis),
        ["lwm2m:campaign:c1:devices", "lwm2m:campaigns"]
    );
    assert!(campaigns(&redis)
        .with_prefix("other:")
        .load()
        .unwrap()
        .is_empty());
}

#[test]
fn campaign_leases_are_exclusive_renewed_by_their_holder_and_expire() {
    let redis = RedisServer::start();
    let ttl = Duration::from_millis(300);
    let (mut a, mut b) = (campaigns(&redis), campaigns(&redis));
    assert!(a.is_shared());
    assert!(a.acquire_lease("c1", "node-a", ttl).unwrap());
    assert!(!b.acquire_lease("c1", "node-b", ttl).unwrap());
    assert!(a.acquire_lease("c1", "node-a", ttl).unwrap(), "renewal");
    // Only the holder releases it.
    b.release_lease("c1", "node-b").unwrap();
    assert_eq!(b.lease_holder("c1").unwrap().as_deref(), Some("node-a"));
    let pttl: i64 = redis::cmd("PTTL")
        .arg("lwm2m:campaign:c1:lease")
        .query(&mut redis.raw())
        .unwrap();
    assert!((1..=300).contains(&pttl), "the lease has a TTL: {pttl}");
    // node-a stops renewing: node-b gets it once it expires.
    wait_for("node-b takes the expired lease", || {
        b.acquire_lease("c1", "node-b", ttl).unwrap()
    });
    assert!(!a.acquire_lease("c1", "node-a", ttl).unwrap());
    b.release_lease("c1", "node-b").unwrap();
    assert_eq!(a.lease_holder("c1").unwrap(), None);
    assert!(a.acquire_lease("c1", "node-a", ttl).unwrap());

    // Many nodes racing for a free lease: exactly one gets it.
    let url = redis.url();
    let racers: Vec<_> = (0..6)
        .map(|n| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut s = RedisCampaignStore::open(&url).unwrap();
                s.acquire_lease("c2", &format!("node-{n}"), Duration::from_secs(60))
                    .unwrap()
            })
        })
        .collect();
    let won = racers
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|&w| w)
        .count();
    assert_eq!(won, 1);
}

/// A paused campaign `c1` of one device, stored as a node would have.
fn stored_paused_campaign(store: &mut dyn CampaignStore) {
    store
        .put_info(&CampaignInfo {
            id: "c1".into(),
            name: "shared".into(),
            package: "pkg".into(),
            delivery: lwm2m_server::fota::Delivery::Coap,
            waves: vec![1],
            max_concurrent: 1,
            failure_threshold: 0,
            timeout: 5,
            status: CampaignStatus::Paused,
            reason: None,
            created: 1,
            updated: 1,
        })
        .unwrap();
    store
        .put_device(
            "c1",
            0,
            &DeviceStatus {
                endpoint: "not-registered".into(),
                wave: 0,
                status: lwm2m_server::fota::Phase::Pending,
                reason: None,
            },
        )
        .unwrap();
}

#[test]
fn one_of_two_campaign_managers_runs_a_campaign_and_another_takes_over() {
    let redis = RedisServer::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt
        .block_on(lwm2m_server::Server::start(
            "127.0.0.1:0".parse().unwrap(),
            lwm2m_server::ServerConfig::default(),
            Box::new(lwm2m_server::MemoryStore::new()),
            Box::new(lwm2m_objects::Registry::standard()),
        ))
        .unwrap();
    let fw: firmware::SharedFirmwareStore =
        std::sync::Arc::new(RedisFirmwareStore::open(&redis.url()).unwrap());
    fw.put(
        &FirmwarePackage::describe("pkg", "demo", "2", b"image", 1),
        b"image",
    )
    .unwrap();
    stored_paused_campaign(&mut campaigns(&redis));
    // Short leases: renewed every 333 ms, taken over 1 s after the last.
    let manager = |node: &str| {
        CampaignManager::start_with_lease(
            server.handle(),
            fw.clone(),
            Default::default(),
            Box::new(campaigns(&redis)),
            Box::new(|_, _| {}),
            LeaseSettings {
                node: node.into(),
                duration: Duration::from_secs(1),
            },
        )
        .unwrap()
    };

    // Node a starts first on a runtime of its own, which is dropped below
    // as a crashed process would vanish: nothing released.
    let rt_a = tokio::runtime::Runtime::new().unwrap();
    let a = {
        let _in = rt_a.enter();
        manager("node-a")
    };
    let b = {
        let _in = rt.enter();
        manager("node-b")
    };
    assert!(a.runs("c1"));
    assert!(!b.runs("c1"));
    assert_eq!(
        campaigns(&redis).lease_holder("c1").unwrap().as_deref(),
        Some("node-a")
    );
    // b shows it but leaves it to a.
    assert_eq!(b.get("c1").unwrap().info.status, CampaignStatus::Paused);
    assert!(
        matches!(b.resume("c1"), Err(CampaignError::Conflict(ref m)) if m.contains("another server node")),
        "{:?}",
        b.resume("c1")
    );
    // Several lease durations later a still holds it: it renews.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(a.runs("c1") && !b.runs("c1"));

    // a dies: b takes over once the lease expires.
    drop(a);
    rt_a.shutdown_background();
    wait_for("b takes over c1", || b.runs("c1"));
    assert_eq!(
        campaigns(&redis).lease_holder("c1").unwrap().as_deref(),
        Some("node-b")
    );

    // b is taken out of service: c runs it, without waiting for an expiry
    // (b released the lease).
    let c = {
        let _in = rt.enter();
        manager("node-c")
    };
    assert!(!c.runs("c1"));
    b.stop();
    assert!(!b.runs("c1"));
    wait_for("c takes over c1", || c.runs("c1"));
    assert!(matches!(b.resume("c1"), Err(CampaignError::Conflict(_))));

    // c runs it to its end (the device is not registered: a failure
    // beyond the threshold halts it) and lets the lease go.
    assert_eq!(c.resume("c1").unwrap().info.status, CampaignStatus::Running);
    wait_for("c1 halts", || {
        c.get("c1").unwrap().info.status == CampaignStatus::Halted
    });
    wait_for("the lease is released", || {
        campaigns(&redis).lease_holder("c1").unwrap().is_none()
    });
    let stored = campaigns(&redis).load().unwrap();
    assert_eq!(stored[0].info.status, CampaignStatus::Halted);
    assert_eq!(
        stored[0].devices[0].status,
        lwm2m_server::fota::Phase::Failed
    );
    drop((b, c));
    rt.block_on(server.shutdown());
}
