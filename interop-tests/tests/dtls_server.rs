//! The `lwm2m-server` binary's coaps socket against libcoap's
//! `coap-client-openssl` (Debian package libcoap3-bin) over real loopback
//! sockets: PSK and X.509 registrations, and the identity-to-endpoint rule
//! (4.03 Forbidden). Credentials are added through the admin HTTP API as an
//! operator would; registrations are checked there too.
//!
//! Tools: `$COAP_CLIENT_OPENSSL`, else `coap-client-openssl` from `PATH`;
//! the X.509 test makes its CA and certificates at run time with the
//! `openssl` command-line tool. Both come from `./scripts/install-test-deps`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use interop_tests::demo::{
    admin_http as http, coap_client_openssl, hex, registered_and_readable, ServerRun,
};
use interop_tests::{cargo_bin, find_in_path, PeerProcess, TempDir, INSTALL_HINT};

/// Bound on the server process's life.
const SERVER_LIFETIME: Duration = Duration::from_secs(120);
/// Bound on one coap-client run (its own `-B` is shorter).
const CLIENT_LIFETIME: Duration = Duration::from_secs(30);

const PSK_ID: &str = "dtls-id";
const PSK_KEY: &str = "secret-key-1";

fn openssl_cli() -> PathBuf {
    find_in_path(&["openssl"])
        .unwrap_or_else(|| panic!("openssl (the command-line tool) not found: {INSTALL_HINT}"))
}

type Server = ServerRun;

fn start_server(extra: &[&OsStr]) -> Server {
    ServerRun::start(extra, SERVER_LIFETIME)
}

fn put_credentials(s: &Server, endpoint: &str, json: &str) {
    let (status, body) = http(
        s.addrs.http,
        "PUT",
        &format!("/api/security/clients/{endpoint}"),
        json,
    );
    assert_eq!(status, 200, "{body}");
}

fn registration(s: &Server, endpoint: &str) -> Option<serde_json::Value> {
    interop_tests::demo::registration(s.addrs.http, endpoint)
}

/// Runs coap-client-openssl with `args` (a Register POST to `uri`) and
/// returns what it printed (the response payload, or the error code and
/// diagnostic for a 4.xx).
fn register<A: AsRef<OsStr>>(args: &[A], uri: &str) -> String {
    let mut cmd = Command::new(coap_client_openssl());
    cmd.args(args)
        .args(["-B", "5", "-m", "post", "-t", "40", "-e", "</1/0>,</3/0>"])
        .arg(uri);
    let mut p = PeerProcess::spawn(cmd, CLIENT_LIFETIME).expect("start coap-client-openssl");
    p.wait_timeout(CLIENT_LIFETIME)
        .unwrap_or_else(|| panic!("coap-client-openssl did not exit:\n{}", p.output()));
    p.output()
}

fn psk_args<'a>(identity: &'a str, key: &'a str) -> [&'a str; 4] {
    ["-u", identity, "-k", key]
}

fn coaps_uri(s: &Server, query: &str) -> String {
    format!("coaps://{}/rd?{query}", s.addrs.coaps)
}

fn psk_server() -> Server {
    let s = start_server(&[]);
    let json = format!(
        r#"{{"psk":{{"identity":"{PSK_ID}","key":"{}"}}}}"#,
        hex(PSK_KEY.as_bytes())
    );
    put_credentials(&s, "dtls-ep", &json);
    s
}

#[test]
fn psk_client_registers_over_coaps_and_the_api_shows_its_identity() {
    let s = psk_server();
    let out = register(
        &psk_args(PSK_ID, PSK_KEY),
        &coaps_uri(&s, "ep=dtls-ep&lt=60"),
    );
    let reg = registration(&s, "dtls-ep").unwrap_or_else(|| {
        panic!(
            "not registered; client said:\n{out}\nserver:\n{}",
            s.process.output()
        )
    });
    assert_eq!(reg["security"], "psk");
    assert_eq!(reg["identity"], PSK_ID);
    assert_eq!(reg["lifetime"], 60);
    // The key never shows, in the registration or the credentials list.
    let (_, creds) = http(s.addrs.http, "GET", "/api/security/clients", "");
    for text in [reg.to_string(), creds] {
        assert!(!text.contains(&hex(PSK_KEY.as_bytes())), "{text}");
        assert!(!text.contains(PSK_KEY), "{text}");
    }
}

#[test]
fn psk_with_a_wrong_key_does_not_register() {
    let s = psk_server();
    let out = register(
        &psk_args(PSK_ID, "not-the-key"),
        &coaps_uri(&s, "ep=dtls-ep&lt=60"),
    );
    assert!(registration(&s, "dtls-ep").is_none(), "client said:\n{out}");
    // The right key still works afterwards.
    register(
        &psk_args(PSK_ID, PSK_KEY),
        &coaps_uri(&s, "ep=dtls-ep&lt=60"),
    );
    assert!(
        registration(&s, "dtls-ep").is_some(),
        "{}",
        s.process.output()
    );
}

#[test]
fn an_identity_registering_another_endpoint_name_is_forbidden() {
    let s = psk_server();
    let out = register(
        &psk_args(PSK_ID, PSK_KEY),
        &coaps_uri(&s, "ep=someone-else&lt=60"),
    );
    assert!(
        out.contains("4.03"),
        "expected 4.03 Forbidden, client said:\n{out}"
    );
    assert!(registration(&s, "someone-else").is_none());
}

#[test]
fn plain_coap_register_of_an_endpoint_with_credentials_is_forbidden() {
    let s = psk_server();
    let uri = format!("coap://{}/rd?ep=dtls-ep&lt=60", s.addrs.coap);
    let out = register::<&str>(&[], &uri);
    assert!(
        out.contains("4.03"),
        "expected 4.03 Forbidden, client said:\n{out}"
    );
    assert!(out.contains("connect over DTLS"), "{out}");
    assert!(registration(&s, "dtls-ep").is_none());
    // An endpoint without credentials still registers in clear.
    let uri = format!("coap://{}/rd?ep=open-ep&lt=60", s.addrs.coap);
    register::<&str>(&[], &uri);
    let reg = registration(&s, "open-ep").expect("plain registration");
    assert_eq!(reg["security"], "none");
    assert_eq!(reg["identity"], serde_json::Value::Null);
}

/// Runs the openssl CLI in `dir` with `args` (split on spaces); panics
/// with its output on failure.
fn openssl(dir: &Path, args: &str) {
    let out = Command::new(openssl_cli())
        .args(args.split(' '))
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and certificates signed by it for each common name, as
/// `DIR/{cn}.pem` + `DIR/{cn}.key`, and `DIR/ca.pem` (P-256 keys).
fn make_pki(dir: &Path, names: &[&str]) {
    let key = |name: &str| {
        openssl(
            dir,
            &format!("ecparam -name prime256v1 -genkey -noout -out {name}.key"),
        )
    };
    key("ca");
    openssl(
        dir,
        "req -x509 -new -key ca.key -subj /CN=TestCA -days 2 -out ca.pem",
    );
    for n in names {
        key(n);
        openssl(
            dir,
            &format!("req -new -key {n}.key -subj /CN={n} -out {n}.csr"),
        );
        openssl(
            dir,
            &format!(
                "x509 -req -in {n}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out {n}.pem"
            ),
        );
    }
}

#[test]
fn x509_client_registers_with_a_certificate_whose_cn_is_the_endpoint() {
    let pki = TempDir::new().unwrap();
    make_pki(pki.path(), &["server", "x509-ep"]);
    let file = |n: &str| pki.path().join(n).into_os_string();
    let (cert, key, ca) = (file("server.pem"), file("server.key"), file("ca.pem"));
    let s = start_server(&[
        OsStr::new("--dtls-cert"),
        &cert,
        OsStr::new("--dtls-key"),
        &key,
        OsStr::new("--dtls-ca"),
        &ca,
    ]);
    put_credentials(&s, "x509-ep", r#"{"x509":true}"#);
    let (client_cert, client_key) = (file("x509-ep.pem"), file("x509-ep.key"));
    let args = [
        OsStr::new("-c"),
        &client_cert,
        OsStr::new("-j"),
        &client_key,
        OsStr::new("-C"),
        &ca,
    ];
    let out = register(&args, &coaps_uri(&s, "ep=x509-ep&lt=60"));
    let reg = registration(&s, "x509-ep").unwrap_or_else(|| {
        panic!(
            "not registered; client said:\n{out}\nserver:\n{}",
            s.process.output()
        )
    });
    assert_eq!(reg["security"], "x509");
    assert_eq!(reg["identity"], "x509-ep");

    // The same certificate for another endpoint name: 4.03.
    let out = register(&args, &coaps_uri(&s, "ep=other-ep&lt=60"));
    assert!(
        out.contains("4.03"),
        "expected 4.03 Forbidden, client said:\n{out}"
    );
    assert!(registration(&s, "other-ep").is_none());

    // PSK works beside certificates.
    let json = format!(
        r#"{{"psk":{{"identity":"{PSK_ID}","key":"{}"}}}}"#,
        hex(PSK_KEY.as_bytes())
    );
    put_credentials(&s, "dtls-ep", &json);
    register(
        &psk_args(PSK_ID, PSK_KEY),
        &coaps_uri(&s, "ep=dtls-ep&lt=60"),
    );
    assert_eq!(
        registration(&s, "dtls-ep").expect("PSK registration")["security"],
        "psk"
    );
}

// --- Our demo client against our server, over DTLS ----------------------

#[path = "../../lwm2m-client/tests/support/pki.rs"]
mod pki;

/// Starts the demo client registering as `ep` to the server's coaps socket
/// with the credential flags `creds`.
fn demo_client(s: &Server, ep: &str, creds: &[String]) -> PeerProcess {
    let mut cmd = Command::new(cargo_bin("lwm2m-client", "lwm2m-client"));
    cmd.args(["--endpoint", ep, "--lifetime", "60", "--server"])
        .arg(format!("coaps://{}", s.addrs.coaps))
        .args(creds)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    PeerProcess::spawn(cmd, SERVER_LIFETIME).expect("start the demo client")
}

#[test]
fn our_client_registers_to_our_server_with_a_psk() {
    let s = psk_server();
    let c = demo_client(
        &s,
        "dtls-ep",
        &[
            "--psk-identity".into(),
            PSK_ID.into(),
            "--psk-key".into(),
            hex(PSK_KEY.as_bytes()),
        ],
    );
    let reg = registered_and_readable(&s, &c, "dtls-ep");
    assert_eq!(reg["security"], "psk");
    assert_eq!(reg["identity"], PSK_ID);
}

#[test]
fn our_client_registers_to_our_server_with_raw_public_keys() {
    let dir = TempDir::new().unwrap();
    let f = pki::write_rpk_files(dir.path());
    let s = start_server(&[OsStr::new("--dtls-rpk-key"), f.server_key_file.as_os_str()]);
    let device_public = hex(&f.device_key.public_key_to_der().unwrap());
    put_credentials(
        &s,
        "rpk-ep",
        &format!(r#"{{"rpk":{{"key":"{device_public}"}}}}"#),
    );
    let flags = |server_public: &Path| -> Vec<String> {
        vec![
            "--rpk-key".into(),
            f.device_key_file.display().to_string(),
            "--server-public-key".into(),
            server_public.display().to_string(),
        ]
    };
    let c = demo_client(&s, "rpk-ep", &flags(&f.server_public));
    let reg = registered_and_readable(&s, &c, "rpk-ep");
    assert_eq!(reg["security"], "rpk");
    assert_eq!(reg["identity"], device_public.as_str());

    // The same device key registering another endpoint name: 4.03.
    let mut c2 = demo_client(&s, "not-rpk-ep", &flags(&f.server_public));
    let refused = c2
        .wait_for_line(Duration::from_secs(30), |l| {
            l.contains("registration failed")
        })
        .unwrap_or_else(|| panic!("no refusal:\n{}", c2.output()));
    assert!(refused.contains("4.03"), "{refused}");
    assert!(registration(&s, "not-rpk-ep").is_none());

    // A client expecting another server key refuses the handshake.
    let other_public = dir.path().join("other-public.pem");
    std::fs::write(&other_public, pki::ec_key().public_key_to_pem().unwrap()).unwrap();
    let mut c3 = demo_client(&s, "rpk-ep-2", &flags(&other_public));
    let ended = c3
        .wait_for_line(Duration::from_secs(40), |l| {
            l.contains("DTLS session ended")
        })
        .unwrap_or_else(|| panic!("no handshake failure:\n{}", c3.output()));
    assert!(ended.contains("raw public key is not the one"), "{ended}");
}

#[test]
fn our_client_registers_to_our_server_with_x509_certificates() {
    let dir = TempDir::new().unwrap();
    // The endpoint name is the client certificate's Common Name.
    let cn = "x509-ep";
    let f = pki::write_x509_files(dir.path(), cn);
    let s = start_server(&f.server_flags());
    put_credentials(&s, cn, r#"{"x509":true}"#);
    let c = demo_client(
        &s,
        cn,
        &[
            "--cert".into(),
            f.client_cert.display().to_string(),
            "--key".into(),
            f.client_key.display().to_string(),
            "--server-cert".into(),
            f.ca.display().to_string(),
            "--certificate-usage".into(),
            "2".into(),
        ],
    );
    let reg = registered_and_readable(&s, &c, cn);
    assert_eq!(reg["security"], "x509");
    assert_eq!(reg["identity"], cn);
}
