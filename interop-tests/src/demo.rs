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

use crate::PeerProcess;

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
