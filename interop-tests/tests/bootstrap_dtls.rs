//! The `lwm2m-server` binary's bootstrap server over DTLS (`--bootstrap-coaps`)
//! on real loopback sockets, configured through the admin HTTP API as an
//! operator would: our demo client bootstraps over coaps with the PSK of
//! its bootstrap-server account (or its raw public key, or its certificate)
//! and then registers over coaps with the PSK the bootstrap server wrote
//! for the DM server; libcoap's
//! `coap-client-openssl` (Debian package libcoap3-bin) sends
//! Bootstrap-Requests with right, wrong and other endpoints' credentials
//! and in clear, and what it prints is the code on the wire.
//!
//! Tools: `$COAP_CLIENT_OPENSSL`, else `coap-client-openssl` from `PATH`
//! (`./scripts/install-test-deps`).

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use interop_tests::demo::{
    admin_http as http, coap_client_openssl, field, hex, registered_and_readable, strip_ansi,
    ServerRun,
};
use interop_tests::{cargo_bin, PeerProcess, TempDir};

/// Bound on the server and demo client processes' lives.
const LIFETIME: Duration = Duration::from_secs(120);
/// Bound on one coap-client run (its own `-B` is shorter).
const CLIENT_LIFETIME: Duration = Duration::from_secs(30);
/// How long a test waits for something the server or client must do.
const STEP: Duration = Duration::from_secs(30);

const EP: &str = "bs-dtls-ep";
const BS_ID: &str = "bs-identity";
const BS_KEY: &[u8] = b"bootstrap-key-01";
const DM_ID: &str = "dm-identity";
const DM_KEY: &[u8] = b"dm-server-key-01";

/// The server binary, and its bootstrap server's addresses.
struct Server {
    run: ServerRun,
    /// The bootstrap server's coaps socket.
    bs_coaps: SocketAddr,
    /// The bootstrap server's plain CoAP socket.
    bs_coap: SocketAddr,
}

impl std::ops::Deref for Server {
    type Target = ServerRun;
    fn deref(&self) -> &ServerRun {
        &self.run
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut ServerRun {
        &mut self.run
    }
}

/// The server binary with both coaps sockets (registration and bootstrap)
/// on free loopback ports, and `extra` flags.
fn start_server(extra: &[&OsStr]) -> Server {
    let mut flags: Vec<&OsStr> = vec!["--bootstrap".as_ref(), "127.0.0.1:0".as_ref()];
    flags.extend(extra);
    let run = ServerRun::start(&flags, LIFETIME);
    // The bootstrap server's line comes before the server's.
    let out = strip_ansi(&run.process.output());
    let line = out
        .lines()
        .find(|l| l.contains("LwM2M bootstrap server listening"))
        .unwrap_or_else(|| panic!("no bootstrap listening line:\n{out}"))
        .to_string();
    let addr = |name: &str| -> SocketAddr {
        field(&line, name)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
    };
    Server {
        bs_coaps: addr("bootstrap_coaps"),
        bs_coap: addr("bootstrap"),
        run,
    }
}

/// The bootstrap configuration of an endpoint whose bootstrap-server
/// account uses PSK `bs_id`/`bs_key`, provisioning one DM server account
/// (Short Server ID 1) on the server's coaps socket with PSK
/// `DM_ID`/`DM_KEY`.
fn config_json(s: &Server, bs_id: &str, bs_key: &[u8]) -> String {
    let account = format!(
        r#""security_mode":"psk","public_key_or_identity":"{}","secret_key":"{}""#,
        hex(bs_id.as_bytes()),
        hex(bs_key)
    );
    config_json_with(s, &account)
}

/// [`config_json`] with the bootstrap-server account's mode and keys
/// given as JSON members.
fn config_json_with(s: &Server, bootstrap_account: &str) -> String {
    format!(
        r#"{{"security":[
            {{"id":0,"uri":"coaps://{bs}","bootstrap_server":true,{bootstrap_account}}},
            {{"id":1,"uri":"coaps://{dm}","security_mode":"psk","short_server_id":1,
              "public_key_or_identity":"{dm_id}","secret_key":"{dm_key}"}}],
          "servers":[{{"id":0,"short_server_id":1,"lifetime":60}}]}}"#,
        bs = s.bs_coaps,
        dm = s.addrs.coaps,
        dm_id = hex(DM_ID.as_bytes()),
        dm_key = hex(DM_KEY),
    )
}

fn put_bootstrap(s: &Server, ep: &str, json: &str) -> (u16, String) {
    http(s.addrs.http, "PUT", &format!("/api/bootstrap/{ep}"), json)
}

/// The server with `EP`'s bootstrap configuration and the DM server's
/// credentials for it, both through the admin API.
fn configured_server() -> Server {
    let s = start_server(&[]);
    let config = config_json(&s, BS_ID, BS_KEY);
    provision(&s, &config);
    s
}

/// Puts `config` as `EP`'s bootstrap configuration and the DM server's
/// PSK credentials for `EP`.
fn provision(s: &Server, config: &str) {
    let (status, body) = put_bootstrap(s, EP, config);
    assert_eq!(status, 200, "{body}");
    let dm = format!(
        r#"{{"psk":{{"identity":"{DM_ID}","key":"{}"}}}}"#,
        hex(DM_KEY)
    );
    let (status, body) = http(
        s.addrs.http,
        "PUT",
        &format!("/api/security/clients/{EP}"),
        &dm,
    );
    assert_eq!(status, 200, "{body}");
}

/// Runs coap-client-openssl: `POST uri` with `args` (PSK flags or none),
/// logging at level 7 so the response's code is printed; returns its output.
fn bootstrap_request(args: &[&str], uri: &str) -> String {
    let mut cmd = Command::new(coap_client_openssl());
    cmd.args(args)
        .args(["-B", "5", "-m", "post", "-v", "7"])
        .arg(uri);
    let mut p = PeerProcess::spawn(cmd, CLIENT_LIFETIME).expect("start coap-client-openssl");
    p.wait_timeout(CLIENT_LIFETIME)
        .unwrap_or_else(|| panic!("coap-client-openssl did not exit:\n{}", p.output()));
    p.output()
}

/// The response codes of the messages coap-client-openssl received: with
/// `-v 7` it logs "received N bytes" (or "sent N bytes") before each PDU
/// line (`v:1 t:ACK c:2.04 i:..`).
fn received_codes(out: &str) -> Vec<String> {
    let mut received = false;
    let mut codes = Vec::new();
    for l in out.lines() {
        if l.contains(" received ") {
            received = true;
        } else if l.contains(" sent ") {
            received = false;
        } else if l.starts_with("v:1 ") && received {
            let code = l.split_whitespace().find_map(|w| w.strip_prefix("c:"));
            if let Some(c) = code.filter(|c| c.starts_with(|ch: char| ch.is_ascii_digit())) {
                codes.push(c.to_string());
            }
        }
    }
    codes
}

fn psk<'a>(identity: &'a str, key: &'a str) -> [&'a str; 4] {
    ["-u", identity, "-k", key]
}

fn bs_uri(addr: SocketAddr, scheme: &str, ep: &str) -> String {
    format!("{scheme}://{addr}/bs?ep={ep}")
}

/// Whether the server logged a bootstrap session start for `ep`.
fn bootstrap_started(s: &Server, ep: &str) -> bool {
    strip_ansi(&s.process.output())
        .lines()
        .any(|l| l.contains("bootstrap started") && field(l, "endpoint") == Some(ep))
}

/// Runs our demo client bootstrapping `EP` from the bootstrap coaps socket
/// with the credential flags `creds`, and checks that it bootstraps, then
/// registers over coaps with the PSK the bootstrap server provisioned and
/// is reachable there.
fn bootstraps_then_registers_with_the_provisioned_psk(s: &mut Server, creds: &[&OsStr]) {
    let mut cmd = Command::new(cargo_bin("lwm2m-client", "lwm2m-client"));
    cmd.args(["--endpoint", EP, "--bootstrap"])
        .arg(format!("coaps://{}", s.bs_coaps))
        .args(creds)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let c = PeerProcess::spawn(cmd, LIFETIME).expect("start the demo client");
    let finished = s.process.wait_for_line(STEP, |l| {
        let l = strip_ansi(l);
        l.contains("bootstrap finished") && field(&l, "endpoint") == Some(EP)
    });
    assert!(
        finished.is_some(),
        "no bootstrap over coaps\nserver:\n{}\nclient:\n{}",
        s.process.output(),
        c.output()
    );
    let reg = registered_and_readable(s, &c, EP);
    // Registered over the DM coaps socket with the identity the bootstrap
    // server provisioned, with the lifetime it wrote.
    assert_eq!(reg["security"], "psk", "{reg}");
    assert_eq!(reg["identity"], DM_ID, "{reg}");
    assert_eq!(reg["lifetime"], 60, "{reg}");
}

#[test]
fn our_client_bootstraps_over_coaps_then_registers_over_coaps_with_the_provisioned_psk() {
    let mut s = configured_server();
    let key = hex(BS_KEY);
    let creds: [&OsStr; 4] = [
        "--psk-identity".as_ref(),
        BS_ID.as_ref(),
        "--psk-key".as_ref(),
        key.as_ref(),
    ];
    bootstraps_then_registers_with_the_provisioned_psk(&mut s, &creds);
}

#[path = "../../lwm2m-client/tests/support/pki.rs"]
mod pki;

#[test]
fn our_client_bootstraps_with_a_raw_public_key() {
    let dir = TempDir::new().unwrap();
    let f = pki::write_rpk_files(dir.path());
    let mut s = start_server(&["--dtls-rpk-key".as_ref(), f.server_key_file.as_os_str()]);
    // The account is written to the client too, so it carries all three
    // keys the client's own account has: its public key (which the
    // bootstrap socket checks), the server's, and its private key.
    let account = format!(
        r#""security_mode":"rpk","public_key_or_identity":"{}",
           "server_public_key":"{}","secret_key":"{}""#,
        hex(&f.device_key.public_key_to_der().unwrap()),
        hex(&f.server_key.public_key_to_der().unwrap()),
        hex(&f.device_key.private_key_to_pkcs8().unwrap()),
    );
    let config = config_json_with(&s, &account);
    provision(&s, &config);
    let creds: [&OsStr; 4] = [
        "--rpk-key".as_ref(),
        f.device_key_file.as_os_str(),
        "--server-public-key".as_ref(),
        f.server_public.as_os_str(),
    ];
    bootstraps_then_registers_with_the_provisioned_psk(&mut s, &creds);
}

#[test]
fn libcoap_bootstrap_request_with_the_configured_psk_gets_2_04() {
    let s = configured_server();
    let out = bootstrap_request(
        &psk(BS_ID, std::str::from_utf8(BS_KEY).unwrap()),
        &bs_uri(s.bs_coaps, "coaps", EP),
    );
    assert!(
        received_codes(&out).iter().any(|c| c == "2.04"),
        "expected 2.04 Changed, client said:\n{out}\nserver:\n{}",
        s.process.output()
    );
    assert!(bootstrap_started(&s, EP), "{}", s.process.output());
}

#[test]
fn a_wrong_psk_key_gets_no_bootstrap_and_the_server_keeps_serving() {
    let s = configured_server();
    let out = bootstrap_request(
        &psk(BS_ID, "not-the-right-key"),
        &bs_uri(s.bs_coaps, "coaps", EP),
    );
    assert!(received_codes(&out).is_empty(), "client said:\n{out}");
    assert!(!bootstrap_started(&s, EP), "{}", s.process.output());
    // The right key still works afterwards.
    let out = bootstrap_request(
        &psk(BS_ID, std::str::from_utf8(BS_KEY).unwrap()),
        &bs_uri(s.bs_coaps, "coaps", EP),
    );
    assert!(
        received_codes(&out).iter().any(|c| c == "2.04"),
        "client said:\n{out}"
    );
    assert!(bootstrap_started(&s, EP), "{}", s.process.output());
}

#[test]
fn a_plain_coap_bootstrap_request_for_a_secured_endpoint_is_forbidden() {
    let s = configured_server();
    let out = bootstrap_request(&[], &bs_uri(s.bs_coap, "coap", EP));
    assert_eq!(received_codes(&out), ["4.03"], "client said:\n{out}");
    assert!(out.contains("connect over DTLS"), "{out}");
    assert!(!bootstrap_started(&s, EP), "{}", s.process.output());
    // An endpoint without a secured bootstrap account bootstraps in clear.
    let (status, body) = put_bootstrap(&s, "open-ep", "{}");
    assert_eq!(status, 200, "{body}");
    let out = bootstrap_request(&[], &bs_uri(s.bs_coap, "coap", "open-ep"));
    assert!(
        received_codes(&out).iter().any(|c| c == "2.04"),
        "client said:\n{out}"
    );
}

#[test]
fn another_endpoints_identity_is_forbidden_and_identities_stay_unique() {
    let s = configured_server();
    let (status, body) = put_bootstrap(&s, "other-ep", &config_json(&s, "other-id", b"other-key"));
    assert_eq!(status, 200, "{body}");
    // other-ep's valid credentials, asking for EP's configuration.
    let out = bootstrap_request(
        &psk("other-id", "other-key"),
        &bs_uri(s.bs_coaps, "coaps", EP),
    );
    assert_eq!(received_codes(&out), ["4.03"], "client said:\n{out}");
    assert!(!bootstrap_started(&s, EP), "{}", s.process.output());
    // A third endpoint may not take EP's bootstrap identity.
    let (status, body) = put_bootstrap(&s, "thief-ep", &config_json(&s, BS_ID, b"any"));
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("already used by endpoint"), "{body}");
    let (status, _) = http(s.addrs.http, "GET", "/api/bootstrap/thief-ep", "");
    assert_eq!(status, 404);
}

#[test]
fn our_client_bootstraps_with_an_x509_certificate() {
    let dir = TempDir::new().unwrap();
    // The bootstrap socket checks that the Common Name is the endpoint name.
    let f = pki::write_x509_files(dir.path(), EP);
    let mut s = start_server(&f.server_flags());
    // Written back to the client as its own account is (Certificate Usage
    // 3, the default: resource 4 is the server's certificate itself).
    let account = format!(
        r#""security_mode":"certificate","public_key_or_identity":"{}",
           "server_public_key":"{}","secret_key":"{}""#,
        hex(&f.device_cert.to_der().unwrap()),
        hex(&f.pki.cert.to_der().unwrap()),
        hex(&f.device_key.private_key_to_pkcs8().unwrap()),
    );
    let config = config_json_with(&s, &account);
    provision(&s, &config);
    let creds: [&OsStr; 6] = [
        "--cert".as_ref(),
        f.client_cert.as_os_str(),
        "--key".as_ref(),
        f.client_key.as_os_str(),
        "--server-cert".as_ref(),
        f.server_cert.as_os_str(),
    ];
    bootstraps_then_registers_with_the_provisioned_psk(&mut s, &creds);
}
