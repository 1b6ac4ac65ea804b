//! The `lwm2m-server` binary as a child process of a test: free loopback
//! ports for CoAP and HTTP, none of the `LWM2M_*` variables of the test's
//! environment, stderr read line by line, killed on drop so a failed
//! assertion never leaves a server running.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every log line read so far, shown when an expected line never comes.
    seen: Vec<String>,
}

impl Running {
    /// Starts the binary with `--coap 127.0.0.1:0 --http 127.0.0.1:0
    /// --coaps 127.0.0.1:0 --bootstrap-coaps 127.0.0.1:0` and then `args`.
    pub fn start<I, S>(args: I) -> Running
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lwm2m-server"))
            // Every process on its own free ports: the defaults (5683, 8080)
            // would clash between servers started by parallel tests.
            .args(["--coap", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(["--coaps", "127.0.0.1:0", "--bootstrap-coaps", "127.0.0.1:0"])
            .args(args)
            .env_remove("LWM2M_COAP")
            .env_remove("LWM2M_COAPS")
            .env_remove("LWM2M_COAP_TCP")
            .env_remove("LWM2M_DTLS_CERT")
            .env_remove("LWM2M_DTLS_KEY")
            .env_remove("LWM2M_DTLS_CA")
            .env_remove("LWM2M_HTTP")
            .env_remove("LWM2M_BOOTSTRAP")
            .env_remove("LWM2M_BOOTSTRAP_COAPS")
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
    pub fn expect_line(&mut self, needle: &str) -> String {
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

    /// The CoAP and HTTP ports from the "listening" line.
    pub fn ports(&mut self) -> (u16, u16) {
        let line = self.expect_line("LwM2M server listening");
        let port = |key: &str| -> u16 {
            let addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .unwrap_or_else(|| panic!("{key} in the listening line: {line}"));
            addr.rsplit(':').next().unwrap().parse().unwrap()
        };
        (port("coap="), port("http="))
    }

    /// The bootstrap server's port from its "listening" line (which comes
    /// before the server's), and that line.
    pub fn bootstrap_port(&mut self) -> (u16, String) {
        let line = self.expect_line("bootstrap server listening");
        let port = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("bootstrap="))
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bootstrap= in the listening line: {line}"));
        (port, line)
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// SIGTERM, then the "server stopped" line and a successful exit.
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.expect_line("server stopped");
        let exit = self.child.wait().unwrap();
        if !exit.success() {
            // The rest of the log (a panic during shutdown says why).
            while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
                self.seen.push(line);
            }
            panic!("{exit:?} after SIGTERM; log:\n{}", self.seen.join("\n"));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare HTTP/1.1 GET.
pub fn http_get(port: u16, path: &str) -> String {
    http_send(port, "GET", path, "")
}

/// A bare HTTP/1.1 request with a JSON body (the tests need no HTTP client
/// crate for a few requests).
pub fn http_send(port: u16, method: &str, path: &str, body: &str) -> String {
    http_request(port, method, path, &[], body)
}

/// [`http_send`] with these extra header lines (`("Range", "bytes=0-9")`).
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// libcoap's coap-client (`COAP_CLIENT`, else `coap-client-notls` on PATH).
pub fn coap_client() -> String {
    std::env::var("COAP_CLIENT").unwrap_or_else(|_| "coap-client-notls".into())
}

/// `GET /bspack?ep=` from the bootstrap server on `port` with coap-client,
/// decoded.
pub fn bootstrap_pack(port: u16, endpoint: &str) -> Vec<lwm2m_core::model::TimestampedValue> {
    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join("pack.cbor");
    let out = Command::new(coap_client())
        .args(["-m", "get", "-o"])
        .arg(&pack)
        .arg(format!("coap://127.0.0.1:{port}/bspack?ep={endpoint}"))
        .output()
        .expect(
            "run libcoap's coap-client-notls (set COAP_CLIENT or run ./scripts/install-test-deps)",
        );
    assert!(out.status.success(), "{out:?}");
    let bytes = std::fs::read(&pack).unwrap();
    lwm2m_core::format::decode_values(
        lwm2m_core::format::ContentFormat::SENML_CBOR,
        &bytes,
        &lwm2m_objects::Registry::standard(),
    )
    .unwrap()
}
