//! The `lwm2m-server` binary: starts with a data directory, logs a
//! registration made with libcoap's coap-client, lists it on the admin API,
//! stops on SIGTERM and
//! restores the registration at the next start.
#![cfg(all(unix, feature = "sqlite", feature = "tokio", feature = "admin"))]

use std::ffi::OsStr;
use std::process::Command;

#[path = "support/server_process.rs"]
mod server_process;
use server_process::{bootstrap_pack, http_get, http_send, Running};

/// The server with a data directory and a bootstrap server on a free port.
fn start(data_dir: &std::path::Path) -> Running {
    Running::start([
        OsStr::new("--bootstrap"),
        OsStr::new("127.0.0.1:0"),
        OsStr::new("--data-dir"),
        data_dir.as_os_str(),
    ])
}

fn coap_client() -> String {
    std::env::var("COAP_CLIENT").unwrap_or_else(|_| "coap-client-notls".into())
}

#[test]
fn binary_registers_logs_stops_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = start(&data);
    let (port, http) = server.ports();
    let out = Command::new(coap_client())
        .args(["-m", "post", "-t", "40", "-e", "</3/0>"])
        .arg(format!("coap://127.0.0.1:{port}/rd?ep=bin-test&lt=60"))
        .output()
        .expect(
            "run libcoap's coap-client-notls (set COAP_CLIENT or run ./scripts/install-test-deps)",
        );
    assert!(out.status.success());
    let line = server.expect_line("registered");
    assert!(line.contains("endpoint=bin-test"), "{line}");
    assert!(line.contains("lifetime=60"), "{line}");
    let clients = http_get(http, "/api/clients");
    assert!(clients.starts_with("HTTP/1.1 200"), "{clients}");
    assert!(clients.contains(r#""endpoint":"bin-test""#), "{clients}");
    server.stop();
    assert!(data.join("registrations.sqlite3").is_file());

    let mut server = start(&data);
    let line = server.expect_line("restored registration");
    assert!(line.contains("endpoint=bin-test"), "{line}");
    // SIGTERM is handled from the "listening" line on.
    server.ports();
    server.stop();
}

/// The value of `key=` in the server's "listening" log line.
fn listening_field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{key}= in {line}"))
        .to_string()
}

/// The admin HTTP port in the server's "listening" log line.
fn http_port(line: &str) -> u16 {
    let http = listening_field(line, "http");
    http.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap()
}

/// The server with `flag 127.0.0.1:0` (a TCP listener) and no bootstrap
/// server: the address that listener got (the `key=` of the "listening"
/// line) and the admin HTTP port.
fn start_with_listener(flag: &str, key: &str, dir: &std::path::Path) -> (Running, String, u16) {
    let mut server = Running::start([
        OsStr::new(flag),
        OsStr::new("127.0.0.1:0"),
        OsStr::new("--data-dir"),
        dir.as_os_str(),
        OsStr::new("--bootstrap"),
        OsStr::new("none"),
    ]);
    let line = server.expect_line("LwM2M server listening");
    let addr = listening_field(&line, key);
    assert!(addr.starts_with("127.0.0.1:"), "{line}");
    (server, addr, http_port(&line))
}

#[test]
fn binary_serves_coap_over_tls_with_coaps_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, tls, http) = start_with_listener("--coaps-tcp", "coaps_tcp", dir.path());
    // PSK "bin-key" (hex) for identity bin-id.
    let put = http_send(
        http,
        "PUT",
        "/api/security/clients/bin-tls",
        r#"{"psk":{"identity":"bin-id","key":"62696e2d6b6579"}}"#,
    );
    assert!(put.starts_with("HTTP/1.1 200"), "{put}");
    let tool = std::env::var("COAP_CLIENT_OPENSSL").unwrap_or("coap-client-openssl".into());
    let out = Command::new(&tool)
        .args(["-B", "10", "-u", "bin-id", "-k", "bin-key"])
        .args(["-m", "post", "-t", "40", "-e", "</3/0>"])
        .arg(format!("coaps+tcp://{tls}/rd?ep=bin-tls&b=T&lt=60"))
        .output()
        .unwrap_or_else(|e| panic!("run {tool} (libcoap3-bin; ./scripts/install-test-deps): {e}"));
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let line = server.expect_line("registered");
    assert!(line.contains("endpoint=bin-tls"), "{line}");
    let client = http_get(http, "/api/clients/bin-tls");
    assert!(client.starts_with("HTTP/1.1 200"), "{client}");
    assert!(client.contains(r#""bindingMode":"T""#), "{client}");
    assert!(client.contains(r#""identity":"bin-id""#), "{client}");
    server.stop();
}

#[test]
fn binary_serves_coap_over_tcp_with_coap_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, tcp, http) = start_with_listener("--coap-tcp", "coap_tcp", dir.path());
    // -v 7 logs the response PDU with its Location-Path; -B bounds the run.
    let out = Command::new(coap_client())
        .args([
            "-B", "10", "-v", "7", "-m", "post", "-t", "40", "-e", "</3/0>",
        ])
        .arg(format!("coap+tcp://{tcp}/rd?ep=bin-tcp&b=T&lt=60"))
        .output()
        .expect(
            "run libcoap's coap-client-notls (set COAP_CLIENT or run ./scripts/install-test-deps)",
        );
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("2.01"), "{log}");
    let line = server.expect_line("registered");
    assert!(line.contains("endpoint=bin-tcp"), "{line}");
    let client = http_get(http, "/api/clients/bin-tcp");
    assert!(client.starts_with("HTTP/1.1 200"), "{client}");
    assert!(client.contains(r#""bindingMode":"T""#), "{client}");
    let id = client
        .split(r#""registrationId":""#)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("registrationId in {client}"));
    assert!(
        log.contains(id),
        "Location with {id} not in the coap-client log:\n{log}"
    );
    server.stop();
}

#[test]
fn binary_loads_bootstrap_json_and_serves_the_bootstrap_pack() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("bootstrap.json"),
        r#"{"endpoints": {"bin-dev": {
            "security": [{"id": 1, "uri": "coap://127.0.0.1:5683", "short_server_id": 101}],
            "servers": [{"id": 0, "short_server_id": 101, "lifetime": 300}]
        }}}"#,
    )
    .unwrap();
    let mut server = start(&data);
    let (port, line) = server.bootstrap_port();
    assert!(line.contains("configurations=1"), "{line}");
    let values = bootstrap_pack(port, "bin-dev");
    assert!(values
        .iter()
        .any(|v| v.path == lwm2m_core::model::Path::Resource(0, 1, 0)
            && v.value == lwm2m_core::model::Value::String("coap://127.0.0.1:5683".into())));
    let line = server.expect_line("bootstrap pack served");
    assert!(line.contains("endpoint=bin-dev"), "{line}");
    server.stop();
}

#[test]
fn binary_refuses_a_broken_bootstrap_json() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("bootstrap.json"),
        r#"{"endpoints": {"x": {"nope": 1}}}"#,
    )
    .unwrap();
    let mut server = start(&data);
    let line = server.expect_line("bootstrap.json");
    assert!(line.contains("unknown field"), "{line}");
    let exit = server.wait();
    assert!(!exit.success());
}

/// Two endpoints of bootstrap.json with one bootstrap PSK identity: the
/// file is refused at start as the admin API would refuse the second.
#[test]
fn binary_refuses_a_bootstrap_json_sharing_a_bootstrap_psk_identity() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let account = r#"{"security": [{"id": 0, "uri": "coaps://bs", "bootstrap_server": true,
        "security_mode": "psk", "public_key_or_identity": "6964", "secret_key": "6b"}]}"#;
    std::fs::write(
        data.join("bootstrap.json"),
        format!(r#"{{"endpoints": {{"a": {account}, "b": {account}}}}}"#),
    )
    .unwrap();
    let mut server = start(&data);
    let line = server.expect_line("bootstrap.json");
    assert!(
        line.contains(r#"endpoint "b""#) && line.contains("already used by endpoint \"a\""),
        "{line}"
    );
    let exit = server.wait();
    assert!(!exit.success());
}

/// bootstrap.json seeds the SQLite database; a change made through the
/// admin API survives a restart (the database wins over the file).
#[test]
fn binary_keeps_bootstrap_configurations_changed_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = |lifetime: u32| {
        format!(
            r#"{{"security": [{{"id": 1, "uri": "coap://127.0.0.1:5683", "short_server_id": 101}}],
                "servers": [{{"id": 0, "short_server_id": 101, "lifetime": {lifetime}}}]}}"#
        )
    };
    std::fs::write(
        data.join("bootstrap.json"),
        format!(r#"{{"endpoints": {{"bin-dev": {}}}}}"#, config(300)),
    )
    .unwrap();
    let mut server = start(&data);
    let line = server.expect_line("bootstrap server listening");
    assert!(line.contains("configurations=1"), "{line}");
    assert!(line.contains("seeded_from_file=1"), "{line}");
    let (_, http) = server.ports();
    let r = http_send(http, "PUT", "/api/bootstrap/bin-dev", &config(99));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = http_send(http, "PUT", "/api/bootstrap/api-only", &config(42));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    server.stop();
    assert!(data.join("bootstrap.sqlite3").is_file());

    let mut server = start(&data);
    let line = server.expect_line("bootstrap server listening");
    assert!(line.contains("configurations=2"), "{line}");
    assert!(line.contains("seeded_from_file=0"), "{line}");
    let (_, http) = server.ports();
    let r = http_get(http, "/api/bootstrap/bin-dev");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains(r#""lifetime":99"#), "{r}");
    let r = http_get(http, "/api/bootstrap");
    assert!(r.contains(r#""api-only""#), "{r}");
    server.stop();
}

#[path = "support/udp_client.rs"]
mod udp_client;

/// `--max-registrations-per-address 1`: a second endpoint registering from
/// the same source address is refused with 5.03 and a diagnostic; the first
/// registration stays, and re-registering it from there is still allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_honours_a_lowered_registration_limit() {
    use lwm2m_core::coap::{Code, Request};
    let dir = tempfile::tempdir().unwrap();
    let mut server = Running::start([
        OsStr::new("--bootstrap"),
        OsStr::new("none"),
        OsStr::new("--data-dir"),
        dir.path().as_os_str(),
        OsStr::new("--max-registrations-per-address"),
        OsStr::new("1"),
    ]);
    let (port, http) = server.ports();
    let to = ([127, 0, 0, 1], port).into();
    let client =
        udp_client::UdpClient::spawn(7, |_| lwm2m_core::coap::Response::new(Code::NOT_FOUND)).await;
    let register = |ep: &str| {
        Request::new(Code::POST)
            .with_path("/rd")
            .with_query(&format!("ep={ep}"))
            .with_payload(40, b"</3/0>".to_vec())
    };
    assert_eq!(client.send(to, register("lim-a")).await.code, Code::CREATED);
    let refused = client.send(to, register("lim-b")).await;
    assert_eq!(refused.code, Code::SERVICE_UNAVAILABLE);
    let why = String::from_utf8_lossy(&refused.payload).to_string();
    assert!(
        why.contains("too many registrations from this address"),
        "{why}"
    );
    // The same endpoint from the same address is a re-registration.
    assert_eq!(client.send(to, register("lim-a")).await.code, Code::CREATED);
    let clients = http_get(http, "/api/clients");
    assert!(clients.contains(r#""endpoint":"lim-a""#), "{clients}");
    assert!(!clients.contains("lim-b"), "{clients}");
    server.stop();
}

/// A bad limit value stops the binary with a message saying what was expected.
#[test]
fn binary_refuses_a_bad_limit_value() {
    let mut server = Running::start(["--max-registrations-per-address", "lots"]);
    let exit = server.wait();
    assert_eq!(exit.code(), Some(2), "{exit:?}");
    let line = server.expect_line("lwm2m-server:");
    assert!(
        line.contains(
            "--max-registrations-per-address \"lots\" is not a whole number of at least 1"
        ),
        "{line}"
    );
}
