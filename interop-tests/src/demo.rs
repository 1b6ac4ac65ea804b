//! The workspace's demo binaries (`lwm2m-server`, `lwm2m-client`) run as
//! processes: start the server on free loopback ports, find its addresses
//! and the registrations in its log.
//!
//! The binaries are located with [`crate::cargo_bin`] and run as
//! [`PeerProcess`]es, so they are bounded in time and always reaped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{cargo_bin, find_in_path, PeerProcess, TempDir, INSTALL_HINT};

/// Bound of each wait on a demo binary's log (starting, registering).
pub const STEP: Duration = Duration::from_secs(10);

/// Strips ANSI colour sequences (`ESC [ ... m`) from a log line.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of `name=value` in a (tracing) log line.
pub fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
}

/// Where a demo server started by [`spawn_demo_server`] listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoServerAddrs {
    /// LwM2M over CoAP (UDP).
    pub coap: SocketAddr,
    /// LwM2M over CoAP over DTLS (UDP).
    pub coaps: SocketAddr,
    /// The admin HTTP API and the web UI.
    pub http: SocketAddr,
}

/// Starts the demo server binary on free loopback ports (CoAP and HTTP,
/// no bootstrap server) with its data in `data`, for at most `life`;
/// returns it once it logs that it listens, with its addresses.
pub fn spawn_demo_server(
    server_bin: &Path,
    data: PathBuf,
    life: Duration,
) -> (PeerProcess, DemoServerAddrs) {
    spawn_demo_server_with(server_bin, data, life, &[])
}

/// [`spawn_demo_server`] with more flags (e.g. `--dtls-cert`).
pub fn spawn_demo_server_with(
    server_bin: &Path,
    data: PathBuf,
    life: Duration,
    extra: &[&std::ffi::OsStr],
) -> (PeerProcess, DemoServerAddrs) {
    let mut cmd = Command::new(server_bin);
    // Free ports for everything the binary serves, so parallel tests do not clash.
    cmd.args([
        "--coap",
        "127.0.0.1:0",
        "--coaps",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--bootstrap",
        "none",
        "--bootstrap-coaps",
        "127.0.0.1:0",
        "--data-dir",
    ])
    .arg(data)
    .args(extra)
    .env_remove("LWM2M_COAP")
    .env_remove("LWM2M_COAPS")
    .env_remove("LWM2M_DTLS_CERT")
    .env_remove("LWM2M_DTLS_KEY")
    .env_remove("LWM2M_DTLS_CA")
    .env_remove("LWM2M_HTTP")
    .env_remove("LWM2M_BOOTSTRAP")
    .env_remove("LWM2M_BOOTSTRAP_COAPS")
    .env_remove("LWM2M_REDIS")
    .env_remove("LWM2M_DATA_DIR")
    .env("NO_COLOR", "1");
    let mut server = PeerProcess::spawn(cmd, life).unwrap();
    let listening = server
        .wait_for_line(STEP, |l| l.contains("LwM2M server listening"))
        .unwrap_or_else(|| panic!("server did not start:\n{}", server.output()));
    let listening = strip_ansi(&listening);
    let addr = |name: &str| -> SocketAddr {
        let addr: SocketAddr = field(&listening, name)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= address in {listening:?}"));
        assert!(addr.ip().is_loopback(), "{name}={addr}");
        addr
    };
    let addrs = DemoServerAddrs {
        coap: addr("coap"),
        coaps: addr("coaps"),
        http: addr("http"),
    };
    (server, addrs)
}

/// The demo server's log line for the registration of `ep` (ANSI
/// stripped), within [`STEP`]; panics with both logs otherwise.
pub fn wait_registered(server: &mut PeerProcess, client: &PeerProcess, ep: &str) -> String {
    let line = server
        .wait_for_line(STEP, |l| {
            let l = strip_ansi(l);
            l.contains(" registered ") && field(&l, "endpoint") == Some(ep)
        })
        .unwrap_or_else(|| {
            panic!(
                "server log shows no registration of {ep}:\n{}\nclient:\n{}",
                server.output(),
                client.output()
            )
        });
    strip_ansi(&line)
}

/// A bare HTTP/1.1 request to the admin API: (status, body).
pub fn admin_http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {out:?}"));
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// The registration of `endpoint` as the admin API at `http` shows it
/// (`GET /api/clients/{endpoint}`), if it is registered.
pub fn registration(http: SocketAddr, endpoint: &str) -> Option<serde_json::Value> {
    let (status, body) = admin_http(http, "GET", &format!("/api/clients/{endpoint}"), "");
    (status == 200).then(|| serde_json::from_str(&body).unwrap())
}

/// `GET path` on the admin API at `http` as JSON (panics unless 200).
pub fn json_of(http: SocketAddr, path: &str) -> serde_json::Value {
    let (status, body) = admin_http(http, "GET", path, "");
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The value of the single resource `path` ("3/0/3") of `ep`, read through
/// the admin API at `http` (panics unless the Read succeeded).
pub fn read_value(http: SocketAddr, ep: &str, path: &str) -> serde_json::Value {
    let r = json_of(http, &format!("/api/clients/{ep}/{path}"));
    assert_eq!(r["success"], true, "{r}");
    r["content"]["value"].clone()
}

/// libcoap's DTLS command-line client: `$COAP_CLIENT_OPENSSL`, else
/// `coap-client-openssl` from `PATH` (Debian package libcoap3-bin).
pub fn coap_client_openssl() -> PathBuf {
    if let Some(p) = std::env::var_os("COAP_CLIENT_OPENSSL") {
        return PathBuf::from(p);
    }
    find_in_path(&["coap-client-openssl"]).unwrap_or_else(|| {
        panic!(
            "coap-client-openssl not found in PATH: {INSTALL_HINT} (Debian package libcoap3-bin)"
        )
    })
}

/// Lower-case hex, as the admin API takes keys.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The demo server binary running with its own data directory (removed
/// when this is dropped, after the process is reaped).
pub struct ServerRun {
    /// The process.
    pub process: PeerProcess,
    /// Where it listens.
    pub addrs: DemoServerAddrs,
    _data: TempDir,
}

impl ServerRun {
    /// Builds and starts the server binary as [`spawn_demo_server_with`]
    /// does, with `extra` flags, for at most `life`.
    pub fn start(extra: &[&std::ffi::OsStr], life: Duration) -> ServerRun {
        let data = TempDir::new().unwrap();
        let bin = cargo_bin("lwm2m-server", "lwm2m-server");
        // Built before the server's lifetime starts running: under load the
        // demo client's first build can outlast it.
        cargo_bin("lwm2m-client", "lwm2m-client");
        let (process, addrs) = spawn_demo_server_with(&bin, data.path().to_path_buf(), life, extra);
        ServerRun {
            process,
            addrs,
            _data: data,
        }
    }
}

/// Waits until the API shows `ep` registered; then a Read of the Device
/// object's manufacturer travels server → client → server through the
/// session. Returns the registration.
pub fn registered_and_readable(s: &ServerRun, c: &PeerProcess, ep: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let reg = loop {
        if let Some(r) = registration(s.addrs.http, ep) {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{ep} did not register\nclient:\n{}\nserver:\n{}",
            c.output(),
            s.process.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let (status, body) = admin_http(s.addrs.http, "GET", &format!("/api/clients/{ep}/3/0/0"), "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("lwm2m-rs"), "{body}");
    reg
}
