//! The `lwm2m-server` binary with `--redis`: two server processes on one
//! redis-server (started by the test); a registration made on the first
//! with libcoap's coap-client is restored by the second, and the data
//! directory stays unused.
#![cfg(all(unix, feature = "redis", feature = "sqlite", feature = "tokio"))]

use std::process::Command;

#[path = "support/redis_server.rs"]
mod redis_server;
use redis_server::RedisServer;

#[path = "support/server_process.rs"]
mod server_process;
use server_process::Running;

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
    let out = Command::new(std::env::var("COAP_CLIENT").unwrap_or("coap-client-notls".into()))
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
