//! A redis-server of the test's own: started on a free port in a temporary
//! directory without persistence, killed on drop. `redis-server` comes from
//! `REDIS_SERVER` or PATH; without it the test fails and says to run
//! `./scripts/install-test-deps`.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lwm2m_server::RedisStore;

// ---------------------------------------------------------------------------

/// `REDIS_SERVER`, else `redis-server` on PATH.
fn redis_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("REDIS_SERVER") {
        return p.into();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("redis-server");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "redis-server not found (set REDIS_SERVER or install it with \
         ./scripts/install-test-deps, Debian package redis-server)"
    );
}

/// A redis-server in a temporary directory, without persistence, killed on drop.
pub struct RedisServer {
    child: Child,
    /// The TCP port it listens on (127.0.0.1).
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        // redis-server cannot report a port it picked itself: take a free
        // one from the OS, release it and hand it over. Another process may
        // grab it in between, so a server that exits at once is retried.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            if let Some(server) = RedisServer::start_on(port) {
                return server;
            }
        }
        panic!("redis-server did not start in 5 tries");
    }

    /// A server on `port`, or `None` if it exited at once (port taken).
    pub fn start_on(port: u16) -> Option<RedisServer> {
        let bin = redis_server_bin();
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("redis.log")).unwrap();
        let child = Command::new(&bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut server = RedisServer { child, port, dir };
        server.wait_ready().then_some(server)
    }

    /// Waits for PING to answer; false if the server exited.
    fn wait_ready(&mut self) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let client = redis::Client::open(self.url()).unwrap();
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut c) = client.get_connection_with_timeout(Duration::from_millis(200)) {
                if redis::cmd("PING").query::<String>(&mut c).ok().as_deref() == Some("PONG") {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
        panic!("redis-server did not answer PING within 10 s; its log:\n{log}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A plain connection, to look at or damage what the store wrote.
    pub fn raw(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    pub fn store(&self) -> RedisStore {
        RedisStore::open(&self.url()).unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
