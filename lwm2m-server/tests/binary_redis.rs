//! The `lwm2m-server` binary with `--redis`: two server processes on one
//! redis-server (started by the test); a registration made on the first
//! with libcoap's coap-client is restored by the second, and the data
//! directory stays unused; bootstrap configurations, security credentials
//! and firmware packages put through one node's admin API are served by the
//! other (packages over HTTP with `Range` and over CoAP block by block, with
//! libcoap's coap-client), and a campaign created on one is stored in Redis
//! under that node's lease and listed by a restarted node.
#![cfg(all(unix, feature = "redis", feature = "sqlite", feature = "tokio"))]

use std::process::Command;

#[path = "support/redis_server.rs"]
mod redis_server;
use redis_server::RedisServer;

#[path = "support/server_process.rs"]
mod server_process;
use server_process::{bootstrap_pack, coap_client, http_get, http_request, http_send, Running};

/// A server node on `url` without a bootstrap server (two nodes would
/// otherwise both want 5783).
fn start(args: &[&str]) -> Running {
    Running::start(["--bootstrap", "none"].iter().chain(args))
}

#[test]
fn two_server_processes_share_a_registration_through_redis() {
    let redis = RedisServer::start();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();

    let mut first = start(&["--redis", &url, "--data-dir", data_arg]);
    let line = first.expect_line("LwM2M server listening");
    assert!(line.contains(&format!("store=redis {url}")), "{line}");
    let port: u16 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("coap="))
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("coap= in the listening line");
    let out = Command::new(coap_client())
        .args(["-m", "post", "-t", "40", "-e", "</3/0>"])
        .arg(format!("coap://127.0.0.1:{port}/rd?ep=redis-bin&lt=60"))
        .output()
        .expect(
            "run libcoap's coap-client-notls (set COAP_CLIENT or run ./scripts/install-test-deps)",
        );
    assert!(out.status.success());
    let line = first.expect_line("registered");
    assert!(line.contains("endpoint=redis-bin"), "{line}");

    // The second node runs while the first still does.
    let mut second = start(&["--redis", &url]);
    let line = second.expect_line("restored registration");
    assert!(line.contains("endpoint=redis-bin"), "{line}");
    second.stop();
    first.stop();
    assert!(!data.exists(), "--redis leaves the data directory alone");
}

#[test]
fn an_unreachable_redis_stops_the_start_with_a_message() {
    // A port nothing listens on: one a redis-server had, now stopped.
    let url = {
        let redis = RedisServer::start();
        redis.url()
    };
    let mut server = start(&["--redis", &url]);
    let line = server.expect_line("ERROR");
    assert!(line.contains(&url), "{line}");
    let exit = server.wait();
    assert_eq!(exit.code(), Some(1), "{exit:?}");
}

/// A bootstrap configuration whose server account has `lifetime`.
fn bootstrap_config(lifetime: u32) -> String {
    format!(
        r#"{{"security": [{{"id": 1, "uri": "coap://127.0.0.1:5683", "short_server_id": 101}}],
            "servers": [{{"id": 0, "short_server_id": 101, "lifetime": {lifetime}}}]}}"#
    )
}

/// The lifetime (/1/0/1) in a bootstrap pack.
fn pack_lifetime(bootstrap_port: u16, endpoint: &str) -> Option<lwm2m_core::model::Value> {
    bootstrap_pack(bootstrap_port, endpoint)
        .into_iter()
        .find(|v| v.path == lwm2m_core::model::Path::Resource(1, 0, 1))
        .map(|v| v.value)
}

#[test]
fn two_server_processes_share_bootstrap_configurations_and_credentials() {
    let redis = RedisServer::start();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("bootstrap.json"),
        format!(
            r#"{{"endpoints": {{"seeded": {}}}}}"#,
            bootstrap_config(300)
        ),
    )
    .unwrap();
    let node = |data: &std::path::Path| {
        let mut n = start(&[
            "--redis",
            &url,
            "--bootstrap",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ]);
        let (bs, line) = n.bootstrap_port();
        let (coap, http) = n.ports();
        (n, bs, (coap, http), line)
    };

    // The first node seeds Redis from its bootstrap.json.
    let (first, bs1, (_, http1), line) = node(&data);
    assert!(line.contains("configurations=1"), "{line}");
    assert!(line.contains("seeded_from_file=1"), "{line}");
    // The second (no bootstrap.json) finds the seeded configuration.
    let (second, bs2, (coap2, http2), line) = node(&dir.path().join("data2"));
    assert!(line.contains("configurations=1"), "{line}");
    assert!(line.contains("seeded_from_file=0"), "{line}");
    assert_eq!(
        pack_lifetime(bs2, "seeded"),
        Some(lwm2m_core::model::Value::UnsignedInteger(300))
    );

    // A configuration put on the first is served by the second's bootstrap
    // server and listed by its API; a change on the second reaches the first.
    let r = http_send(
        http1,
        "PUT",
        "/api/bootstrap/api-dev",
        &bootstrap_config(42),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = http_get(http2, "/api/bootstrap/api-dev");
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains(r#""lifetime":42"#),
        "{r}"
    );
    assert_eq!(
        pack_lifetime(bs2, "api-dev"),
        Some(lwm2m_core::model::Value::UnsignedInteger(42))
    );
    let r = http_send(
        http2,
        "PUT",
        "/api/bootstrap/api-dev",
        &bootstrap_config(43),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert_eq!(
        pack_lifetime(bs1, "api-dev"),
        Some(lwm2m_core::model::Value::UnsignedInteger(43))
    );

    // Credentials put on the first are on the second, without the key; the
    // PSK identity is taken for every node.
    let psk = r#"{"psk":{"identity":"shared-id","key":"5345435245544b4559"}}"#;
    let r = http_send(http1, "PUT", "/api/security/clients/dev-1", psk);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = http_get(http2, "/api/security/clients/dev-1");
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains(r#""shared-id""#),
        "{r}"
    );
    assert!(!r.contains("5345435245544b4559"), "{r}");
    let r = http_send(http2, "PUT", "/api/security/clients/dev-2", psk);
    assert!(r.starts_with("HTTP/1.1 409"), "{r}");
    assert!(r.contains("dev-1"), "{r}");

    // A package uploaded through the first is listed and served by the
    // second: over HTTP, with a Range, and over CoAP in 64-byte blocks.
    let image: String = (0..3000u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let r = http_send(http1, "POST", "/api/firmware?name=demo&version=2.0", &image);
    assert!(r.starts_with("HTTP/1.1 201"), "{r}");
    let package: serde_json::Value =
        serde_json::from_str(r.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let id = package["id"].as_str().unwrap().to_string();
    let r = http_get(http2, "/api/firmware");
    assert!(r.contains(&id) && r.contains(r#""size":3000"#), "{r}");
    let r = http_get(http2, &format!("/fw/{id}"));
    assert!(r.starts_with("HTTP/1.1 200") && r.ends_with(&image), "{r}");
    let r = http_request(
        http2,
        "GET",
        &format!("/fw/{id}"),
        &[("Range", "bytes=2990-")],
        "",
    );
    assert!(
        r.starts_with("HTTP/1.1 206") && r.ends_with(&image[2990..]),
        "{r}"
    );
    let download = dir.path().join("download.bin");
    let out = Command::new(coap_client())
        .args(["-m", "get", "-b", "64", "-o"])
        .arg(&download)
        .arg(format!("coap://127.0.0.1:{coap2}/fw/{id}"))
        .output()
        .expect("run libcoap's coap-client-notls");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(&download).unwrap(), image.as_bytes());

    // A campaign created on the first runs there, under its lease in Redis.
    let r = http_send(
        http1,
        "POST",
        "/api/campaigns",
        &format!(
            r#"{{"name":"c","package":"{id}","delivery":"coap","targets":["nobody"],"paused":true}}"#
        ),
    );
    assert!(r.starts_with("HTTP/1.1 201"), "{r}");
    let campaign: serde_json::Value =
        serde_json::from_str(r.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let campaign = campaign["id"].as_str().unwrap().to_string();
    let holder: Option<String> = redis::cmd("GET")
        .arg(format!("lwm2m:campaign:{campaign}:lease"))
        .query(&mut redis.raw())
        .unwrap();
    assert!(holder.is_some(), "the creating node holds the lease");
    second.stop();
    first.stop();
    // A node shutting down releases its leases (without waiting for
    // their 30 s expiry, another node takes the campaign over at once).
    let holder: Option<String> = redis::cmd("GET")
        .arg(format!("lwm2m:campaign:{campaign}:lease"))
        .query(&mut redis.raw())
        .unwrap();
    assert_eq!(holder, None, "the lease was released at shutdown");

    // A restarted node still has them all.
    let (again, _, (_, http), line) = node(&dir.path().join("data3"));
    assert!(line.contains("configurations=2"), "{line}");
    let r = http_get(http, "/api/security/clients");
    assert!(r.contains(r#""dev-1""#) && !r.contains(r#""dev-2""#), "{r}");
    let r = http_get(http, "/api/firmware");
    assert!(r.contains(&id), "{r}");
    let r = http_get(http, "/api/campaigns");
    assert!(r.contains(&campaign) && r.contains(r#""paused""#), "{r}");
    again.stop();
    assert_eq!(
        std::fs::read_dir(&data).unwrap().count(),
        1,
        "--redis writes nothing to the data directory (bootstrap.json only)"
    );
    assert!(!dir.path().join("data2").exists());
}
