//! The `lwm2m-server` binary with `--redis`: two server processes on one
//! redis-server (started by the test); a registration made on the first
//! with libcoap's coap-client is restored by the second, and the data
//! directory stays unused.
#![cfg(all(unix, feature = "redis", feature = "sqlite", feature = "tokio"))]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[path = "support/redis_server.rs"]
mod redis_server;
use redis_server::RedisServer;

struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every log line read so far, shown when an expected line never comes.
    seen: Vec<String>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lwm2m-server"))
            // Every process on its own free ports: the HTTP default (8080)
            // would clash between the two nodes.
            .args([
                "--coap",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--bootstrap",
                "none",
            ])
            .args(args)
            .env_remove("LWM2M_COAP")
            .env_remove("LWM2M_HTTP")
            .env_remove("LWM2M_BOOTSTRAP")
            .env_remove("LWM2M_DATA_DIR")
            .env_remove("LWM2M_REDIS")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start lwm2m-server");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line containing `needle`; returns it.
    fn expect_line(&mut self, needle: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(20)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no log line with {needle:?}: {e}; server exit status {:?}; log so far:\n{}",
                    self.child.try_wait(),
                    self.seen.join("\n")
                ),
            }
        }
    }

    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.expect_line("server stopped");
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "{exit:?}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed assertion must not leave the server running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_server_processes_share_a_registration_through_redis() {
    let redis = RedisServer::start();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_arg = data.to_str().unwrap();

    let mut first = Running::start(&["--redis", &url, "--data-dir", data_arg]);
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
    let mut second = Running::start(&["--redis", &url]);
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
    let mut server = Running::start(&["--redis", &url]);
    let line = server.expect_line("ERROR");
    assert!(line.contains(&url), "{line}");
    let exit = server.child.wait().unwrap();
    assert_eq!(exit.code(), Some(1), "{exit:?}");
}
