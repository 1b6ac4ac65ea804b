//! Our demo client over DTLS 1.2 (`coaps://`) against libcoap's resource
//! directory `coap-rd-openssl` (Debian package libcoap3-bin), on real
//! loopback sockets: Register (POST /rd, 2.01 + Location) with a PSK and with X.509 certificates (a test CA
//! made at run time); a wrong PSK and a wrong server certificate fail the
//! handshake and the client says why. Raw Public Keys against libcoap's
//! GnuTLS `coap-server-gnutls -M` (the only libcoap tool with RPK; it has
//! no /rd, so its error answer to Register is what proves the exchange).
//!
//! Tool: `$COAP_RD`, else `coap-rd-openssl` from `PATH`
//! (`./scripts/install-test-deps`). libcoap's servers take the plain CoAP
//! port with `-p` and listen for DTLS on the next port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use interop_tests::demo::{field, strip_ansi, STEP};
use interop_tests::{
    cargo_bin, find_in_path, free_udp_port, wait_for_coap_ping, PeerProcess, TempDir,
};

#[path = "../../lwm2m-client/tests/support/pki.rs"]
mod pki;

/// Bound on each peer process's life.
const LIFE: Duration = Duration::from_secs(90);
/// A wrong PSK only ends at the client's handshake deadline (30 s): DTLS
/// servers drop what they cannot decrypt.
const HANDSHAKE_BOUND: Duration = Duration::from_secs(60);

const PSK: &str = "lwm2m-rs-interop-key";

fn coap_rd() -> PathBuf {
    std::env::var_os("COAP_RD")
        .map(PathBuf::from)
        .or_else(|| find_in_path(&["coap-rd-openssl"]))
        .unwrap_or_else(|| {
            panic!(
                "coap-rd-openssl not found (set COAP_RD or run ./scripts/install-test-deps, \
                 which installs Debian's libcoap3-bin)"
            )
        })
}

/// Starts coap-rd-openssl on 127.0.0.1 with `args`; returns it and its
/// DTLS address once it answers a CoAP ping on the plain port.
fn start_rd(args: &[String]) -> (PeerProcess, SocketAddr) {
    start_libcoap(&coap_rd(), args)
}

/// Starts the libcoap server `program` on 127.0.0.1 with `args`; returns
/// it and its DTLS address once it answers a CoAP ping on the plain port.
fn start_libcoap(program: &Path, args: &[String]) -> (PeerProcess, SocketAddr) {
    // The demo client is built before the peer's lifetime starts running:
    // under load its first build can outlast the peer.
    cargo_bin("lwm2m-client", "lwm2m-client");
    let name = program.display();
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_udp_port().expect("no free UDP port on 127.0.0.1");
        // The DTLS port (port + 1) must be free too.
        if port == u16::MAX || std::net::UdpSocket::bind(("127.0.0.1", port + 1)).is_err() {
            continue;
        }
        let mut cmd = Command::new(program);
        cmd.args(["-A", "127.0.0.1", "-p", &port.to_string()])
            .args(args);
        let mut rd = PeerProcess::spawn(cmd, LIFE).unwrap_or_else(|e| panic!("start {name}: {e}"));
        if wait_for_coap_ping(
            SocketAddr::from(([127, 0, 0, 1], port)),
            lwm2m_core::time::Duration::from_secs(5),
        ) {
            return (rd, SocketAddr::from(([127, 0, 0, 1], port + 1)));
        }
        last = format!(
            "{name} (exit {:?}) did not answer a ping on port {port}:\n{}",
            rd.try_wait(),
            rd.output()
        );
    }
    panic!("{last}");
}

fn client(ep: &str, server: SocketAddr, creds: &[String]) -> PeerProcess {
    let mut cmd = Command::new(cargo_bin("lwm2m-client", "lwm2m-client"));
    cmd.args(["--endpoint", ep, "--lifetime", "60", "--server"])
        .arg(format!("coaps://{server}"))
        .args(creds)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    PeerProcess::spawn(cmd, LIFE).expect("start the demo client")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn line(p: &mut PeerProcess, within: Duration, what: &str, pred: impl Fn(&str) -> bool) -> String {
    p.wait_for_line(within, |l| pred(&strip_ansi(l)))
        .map(|l| strip_ansi(&l))
        .unwrap_or_else(|| panic!("no {what} in the client log:\n{}", p.output()))
}

/// Registers: POST /rd over the session, 2.01 with a Location back. (No
/// De-register: libcoap 4.3.1's coap-rd aborts with "double free" on
/// DELETE of a registration, with or without DTLS.)
fn registers(mut c: PeerProcess, rd: &PeerProcess) {
    line(&mut c, STEP, "established session", |l| {
        l.contains("DTLS session established")
    });
    let registered = line(&mut c, STEP, "registration", |l| {
        l.contains("registered location=")
    });
    let location = field(&registered, "location").unwrap_or_default();
    assert!(
        location.starts_with("/rd/"),
        "{registered}\nrd:\n{}",
        rd.output()
    );
}

#[test]
fn psk_register_with_coap_rd() {
    let (rd, addr) = start_rd(&["-k".into(), PSK.into()]);
    let c = client(
        "dtls-psk",
        addr,
        &[
            "--psk-identity".into(),
            "dtls-psk".into(),
            "--psk-key".into(),
            hex(PSK.as_bytes()),
        ],
    );
    registers(c, &rd);
}

#[test]
fn a_wrong_psk_fails_the_handshake_and_the_registration() {
    let (_rd, addr) = start_rd(&["-k".into(), PSK.into()]);
    let mut c = client(
        "dtls-wrong",
        addr,
        &[
            "--psk-identity".into(),
            "dtls-wrong".into(),
            "--psk-key".into(),
            hex(b"not the key"),
        ],
    );
    let ended = line(&mut c, HANDSHAKE_BOUND, "handshake failure", |l| {
        l.contains("DTLS session ended")
    });
    assert!(ended.contains("handshake"), "{ended}");
    line(&mut c, STEP, "registration failure", |l| {
        l.contains("registration failed")
    });
    assert!(
        !c.output().contains("registered location="),
        "{}",
        c.output()
    );
}

/// The test PKI as files: CA, server cert+key (one PEM, as libcoap's -c
/// wants), server certificate alone, client certificate and key.
struct Files {
    _dir: TempDir,
    ca: PathBuf,
    server_pem: PathBuf,
    server_cert: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn files() -> Files {
    let p = pki::pki();
    let dir = TempDir::new().unwrap();
    let write = |name: &str, bytes: &[u8]| -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let mut server_pem = p.cert.to_pem().unwrap();
    server_pem.extend(p.key.private_key_to_pem_pkcs8().unwrap());
    Files {
        ca: write("ca.pem", &p.ca_pem),
        server_pem: write("server.pem", &server_pem),
        server_cert: write("server-cert.der", &p.cert.to_der().unwrap()),
        client_cert: write("client.pem", &p.client_cert.to_pem().unwrap()),
        client_key: write(
            "client-key.der",
            &p.client_key.private_key_to_der().unwrap(),
        ),
        _dir: dir,
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn cert_flags(f: &Files, server_cert: &Path, usage: &str) -> Vec<String> {
    vec![
        "--cert".into(),
        path(&f.client_cert),
        "--key".into(),
        path(&f.client_key),
        "--server-cert".into(),
        path(server_cert),
        "--certificate-usage".into(),
        usage.into(),
    ]
}

fn x509_rd(f: &Files) -> (PeerProcess, SocketAddr) {
    // -C: the CA verifies our client certificate.
    start_rd(&["-c".into(), path(&f.server_pem), "-C".into(), path(&f.ca)])
}

#[test]
fn x509_pinned_server_certificate_registers_with_coap_rd() {
    let f = files();
    let (rd, addr) = x509_rd(&f);
    let c = client("dtls-x509-3", addr, &cert_flags(&f, &f.server_cert, "3"));
    registers(c, &rd);
}

#[test]
fn x509_trust_anchor_registers_with_coap_rd() {
    let f = files();
    let (rd, addr) = x509_rd(&f);
    let c = client("dtls-x509-2", addr, &cert_flags(&f, &f.ca, "2"));
    registers(c, &rd);
}

#[test]
fn x509_a_server_certificate_other_than_the_pinned_one_is_refused() {
    let f = files();
    let (_rd, addr) = x509_rd(&f);
    // Usage 3 with the CA's certificate: the server's is a different one.
    let mut c = client("dtls-x509-bad", addr, &cert_flags(&f, &f.ca, "3"));
    let ended = line(&mut c, HANDSHAKE_BOUND, "handshake failure", |l| {
        l.contains("DTLS session ended")
    });
    assert!(
        ended.contains("not the one in Security resource 4"),
        "{ended}"
    );
    line(&mut c, STEP, "registration failure", |l| {
        l.contains("registration failed")
    });
}

/// libcoap's GnuTLS build: its coap-server has Raw Public Keys (-M), which
/// the OpenSSL build and coap-rd lack.
fn coap_server_gnutls() -> PathBuf {
    std::env::var_os("COAP_SERVER_GNUTLS")
        .map(PathBuf::from)
        .or_else(|| find_in_path(&["coap-server-gnutls"]))
        .unwrap_or_else(|| {
            panic!(
                "coap-server-gnutls not found (set COAP_SERVER_GNUTLS or run \
                 ./scripts/install-test-deps, which installs Debian's libcoap3-bin)"
            )
        })
}

/// Key files for Raw Public Keys: the server's key pair (PEM, "EC PRIVATE
/// KEY" as libcoap's -M wants), its public key (DER SubjectPublicKeyInfo),
/// another key's public half, and the client's key pair (PEM).
struct RpkFiles {
    _dir: TempDir,
    server_key: PathBuf,
    server_public: PathBuf,
    other_public: PathBuf,
    client_key: PathBuf,
}

fn rpk_files() -> RpkFiles {
    let dir = TempDir::new().unwrap();
    let write = |name: &str, bytes: &[u8]| -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let (server, other, client) = (pki::ec_key(), pki::ec_key(), pki::ec_key());
    let ec_pem = |k: &openssl::pkey::PKey<openssl::pkey::Private>| {
        k.ec_key().unwrap().private_key_to_pem().unwrap()
    };
    RpkFiles {
        server_key: write("server-key.pem", &ec_pem(&server)),
        server_public: write("server-public.der", &server.public_key_to_der().unwrap()),
        other_public: write("other-public.pem", &other.public_key_to_pem().unwrap()),
        client_key: write("client-key.pem", &ec_pem(&client)),
        _dir: dir,
    }
}

fn rpk_flags(f: &RpkFiles, server_public: &Path) -> Vec<String> {
    vec![
        "--rpk-key".into(),
        path(&f.client_key),
        "--server-public-key".into(),
        path(server_public),
    ]
}

#[test]
fn raw_public_keys_with_coap_server_gnutls() {
    let f = rpk_files();
    let (server, addr) = start_libcoap(&coap_server_gnutls(), &["-M".into(), path(&f.server_key)]);
    let mut c = client("dtls-rpk", addr, &rpk_flags(&f, &f.server_public));
    line(&mut c, STEP, "established session", |l| {
        l.contains("DTLS session established")
    });
    // coap-server has no /rd: its CoAP answer to Register (an error code,
    // not a timeout) came back through the RPK session.
    let failed = line(&mut c, STEP, "answer to Register", |l| {
        l.contains("registration failed")
    });
    assert!(
        failed.contains("code=Some(\"4."),
        "{failed}\nserver:\n{}",
        server.output()
    );
}

#[test]
fn raw_public_keys_a_server_key_other_than_the_given_one_is_refused() {
    let f = rpk_files();
    let (_server, addr) = start_libcoap(&coap_server_gnutls(), &["-M".into(), path(&f.server_key)]);
    let mut c = client("dtls-rpk-bad", addr, &rpk_flags(&f, &f.other_public));
    let ended = line(&mut c, HANDSHAKE_BOUND, "handshake failure", |l| {
        l.contains("DTLS session ended")
    });
    assert!(ended.contains("raw public key is not the one"), "{ended}");
    assert!(
        !c.output().contains("DTLS session established"),
        "{}",
        c.output()
    );
}

// --- Firmware pull over coaps:// ------------------------------------------

fn libcoap_tool(env: &str, name: &str) -> PathBuf {
    std::env::var_os(env)
        .map(PathBuf::from)
        .or_else(|| find_in_path(&[name]))
        .unwrap_or_else(|| {
            panic!("{name} not found (set {env} or run ./scripts/install-test-deps)")
        })
}

/// The demo client registers to our server over plain CoAP and has a
/// second, `coaps://` account at libcoap's `coap-server-openssl` (PSK):
/// a Package URI on that host and port is downloaded block by block over
/// DTLS with that account's credentials, and the image is the package.
#[test]
fn firmware_is_pulled_over_coaps_with_the_matching_accounts_psk() {
    use interop_tests::demo::{admin_http, spawn_demo_server};

    // Built (or found) before any peer starts: under load a build can take
    // longer than a peer's lifetime.
    let server_bin = cargo_bin("lwm2m-server", "lwm2m-server");
    let client_bin = cargo_bin("lwm2m-client", "lwm2m-client");
    let dir = TempDir::new().unwrap();
    // 5000 bytes: five Block2 blocks of 1024.
    let package: Vec<u8> = (0..5000u32).map(|i| (i * 7 + i / 255) as u8).collect();
    let package_file = dir.path().join("fw.bin");
    std::fs::write(&package_file, &package).unwrap();

    let (fw_server, fw_addr) = start_libcoap(
        &libcoap_tool("COAP_SERVER_OPENSSL", "coap-server-openssl"),
        &["-k".into(), PSK.into(), "-d".into(), "4".into()],
    );
    // Put the package on it (a dynamic resource), over the same DTLS.
    let mut put = Command::new(libcoap_tool("COAP_CLIENT_OPENSSL", "coap-client-openssl"));
    put.args([
        "-u", "uploader", "-k", PSK, "-m", "put", "-b", "1024", "-B", "10", "-f",
    ])
    .arg(&package_file)
    .arg(format!("coaps://{fw_addr}/fw"));
    let mut put = PeerProcess::spawn(put, LIFE).expect("start coap-client-openssl");
    assert!(
        put.wait_timeout(Duration::from_secs(30))
            .is_some_and(|s| s.success()),
        "upload failed:\n{}\nserver:\n{}",
        put.output(),
        fw_server.output()
    );

    let (mut server, addrs) = spawn_demo_server(&server_bin, dir.path().join("server-data"), LIFE);
    let state = dir.path().join("fw-state");
    let mut cmd = Command::new(&client_bin);
    cmd.args(["--endpoint", "fw-coaps", "--lifetime", "60"])
        .arg("--server")
        .arg(format!("coap://{}", addrs.coap))
        .arg("--server")
        .arg(format!("coaps://{fw_addr}"))
        .args([
            "--psk-identity",
            "fw-coaps",
            "--psk-key",
            &hex(PSK.as_bytes()),
        ])
        .arg("--firmware-state")
        .arg(&state)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let client = PeerProcess::spawn(cmd, LIFE).expect("start the demo client");
    interop_tests::demo::wait_registered(&mut server, &client, "fw-coaps");

    let uri = format!("coaps://{fw_addr}/fw");
    let (status, body) = admin_http(
        addrs.http,
        "PUT",
        "/api/clients/fw-coaps/5/0/1",
        &format!(r#"{{"id":1,"kind":"singleResource","value":"{uri}"}}"#),
    );
    assert_eq!(status, 200, "{body}");
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let (_, body) = admin_http(addrs.http, "GET", "/api/clients/fw-coaps/5/0/3", "");
        let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        // State 2: Downloaded.
        if value["content"]["value"] == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not downloaded: {body}\nclient:\n{}",
            client.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, result) = admin_http(addrs.http, "GET", "/api/clients/fw-coaps/5/0/5", "");
    assert!(result.contains(r#""value":0"#), "Update Result: {result}");
    let mut image = state.into_os_string();
    image.push(".image");
    assert_eq!(std::fs::read(&image).unwrap(), package);
}
