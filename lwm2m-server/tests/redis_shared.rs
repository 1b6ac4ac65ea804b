//! RedisSecurityStore and RedisConfigStore against a real redis-server that
//! each test starts on a free port: CRUD, PSK identity uniqueness across two
//! store instances (two server nodes), data kept across a reopen, the key
//! layout, and keys kept out of Debug and error messages.
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
