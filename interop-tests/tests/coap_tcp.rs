//! CoAP over TCP and over TLS (RFC 8323 `coap+tcp` and `coaps+tcp`, LwM2M
//! binding `T`) against the server driver: libcoap's `coap-client` registers
//! over `coap+tcp://`, its `coap-client-openssl` over `coaps+tcp://` with a
//! PSK and with a certificate, and a scripted device (our
//! [`TcpConnection`] on a real socket, in clear or inside an OpenSSL TLS
//! stream) registers and answers a Read.
//!
//! Tools: `$COAP_CLIENT`, else `coap-client-notls` (or the other names
//! libcoap installs) from `PATH`; `$COAP_CLIENT_OPENSSL`, else
//! `coap-client-openssl` (Debian libcoap3-bin); missing, the test fails with
//! installation advice (`./scripts/install-test-deps`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use interop_tests::demo::coap_client_openssl;
use interop_tests::{coap_client, libcoap_version, PeerProcess, TempDir};
use lwm2m_core::coap::endpoint::RequestError;
use lwm2m_core::coap::tcp_endpoint::{TcpConfig, TcpConnection, TcpEvent};
use lwm2m_core::coap::{Code, Request, Response};
use lwm2m_core::model::{Node, Resource, Value};
use lwm2m_core::rng::SplitMix64;
use lwm2m_core::time::Duration;
use lwm2m_server::{
    Content, Credentials, DmError, MemorySecurityStore, RegistrationSecurity, SecurityInfo,
    SecurityOptions, SecurityStore, Server, ServerConfig, TcpOptions, TlsOptions,
};
use openssl::ssl::{Ssl, SslContext, SslMethod, SslStream, SslVerifyMode, SslVersion};

/// Bound on each wait; on loopback every step takes milliseconds.
const STEP: StdDuration = StdDuration::from_secs(10);

async fn start_server() -> Server {
    start_server_with(SecurityOptions::default()).await
}

async fn start_server_with(security: SecurityOptions) -> Server {
    Server::start_with_tcp(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
        Box::new(lwm2m_server::MemoryStore::new()),
        Box::new(lwm2m_objects::Registry::standard()),
        security,
        Some(TcpOptions::new("127.0.0.1:0".parse().unwrap())),
    )
    .await
    .expect("server starts")
}

/// Polls the server until `endpoint` is registered (bounded by [`STEP`]).
async fn wait_registered(
    server: &Server,
    endpoint: &str,
) -> lwm2m_server::Registration<SocketAddr> {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        if let Some(r) = server.registration(endpoint).await {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{endpoint} never registered"
        );
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coap_client_registers_over_tcp() {
    let server = start_server().await;
    let tcp = server.tcp_addr().expect("TCP listener");
    let tool = coap_client();
    eprintln!("coap-client: {} {}", tool.display(), libcoap_version(&tool));
    let uri = format!("coap+tcp://{tcp}/rd?ep=libcoap-tcp&b=T&lt=300");
    let mut cmd = Command::new(&tool);
    // -v 7 logs the PDUs, Location-Path included; -B: gives up after 10 s.
    cmd.args([
        "-B",
        "10",
        "-v",
        "7",
        "-m",
        "post",
        "-t",
        "40",
        "-e",
        "</1/0>,</3/0>",
    ])
    .arg(&uri);
    let mut peer = PeerProcess::spawn(cmd, Duration::from_secs(30)).expect("start coap-client");
    let status = tokio::task::spawn_blocking(move || {
        let s = peer.wait_timeout(Duration::from_secs(20));
        (s, peer)
    })
    .await
    .unwrap();
    let (status, peer) = status;
    let log = peer.output();
    assert!(
        status.is_some_and(|s| s.success()),
        "coap-client failed ({status:?}):\n{log}"
    );
    let reg = wait_registered(&server, "libcoap-tcp").await;
    assert_eq!(reg.binding, "T");
    assert_eq!(reg.lifetime, 300);
    assert_eq!(reg.address.ip(), tcp.ip());
    assert_ne!(
        reg.address, tcp,
        "the address is the client's end of the connection"
    );
    assert!(log.contains("2.01"), "no 2.01 in the log:\n{log}");
    assert!(
        log.contains(&reg.id),
        "no Location with {} in the log:\n{log}",
        reg.id
    );
    server.shutdown().await;
}

/// A TCP connection to `addr` whose reads time out quickly, so the
/// scripted device can poll.
fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(StdDuration::from_millis(50)))
        .unwrap();
    stream
}

/// A device over `stream` (TCP, or TLS over TCP): registers as `endpoint`
/// (signalling `registered` on 2.01), answers GET /3/0/0, and on any other
/// request closes the connection without answering it (or gives up after
/// twice `STEP`).
fn scripted_device(
    mut stream: impl Read + Write,
    endpoint: &str,
    registered: std::sync::mpsc::Sender<()>,
) {
    let mut conn = TcpConnection::new(TcpConfig::default(), SplitMix64::new(9));
    conn.send_request(
        Request::new(Code::POST)
            .with_path("/rd")
            .with_query(&format!("ep={endpoint}"))
            .with_query("b=T")
            .with_query("lwm2m=1.1")
            .with_payload(40, b"</1/0>,</3/0>".to_vec()),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    while started.elapsed() < STEP * 2 {
        stream.write_all(&conn.take_outgoing()).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => conn.handle_bytes(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read: {e}"),
        }
        while let Some(event) = conn.poll_event() {
            match event {
                TcpEvent::Response { response, .. } => {
                    assert_eq!(response.code, Code::CREATED);
                    let _ = registered.send(());
                }
                TcpEvent::Request { id, request } => {
                    if request.path() != "/3/0/0" {
                        // Returning drops the stream: the connection closes
                        // with this request unanswered.
                        return;
                    }
                    conn.respond(
                        id,
                        Response::new(Code::CONTENT)
                            .with_payload(0, b"Open Mobile Alliance".to_vec()),
                    )
                    .unwrap();
                }
                TcpEvent::Closed(reason) => panic!("closed: {reason}"),
                _ => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_reaches_a_device_over_tcp_and_fails_at_once_when_the_connection_drops() {
    let server = start_server().await;
    let tcp = server.tcp_addr().expect("TCP listener");
    let reg = read_then_drop(&server, "tcp-device", move |registered| {
        scripted_device(connect(tcp), "tcp-device", registered)
    })
    .await;
    assert_eq!(reg.security, None);
    server.shutdown().await;
}

/// Runs `device` (a [`scripted_device`]) on a thread until it registered as
/// `endpoint`, reads /3/0/0 from it, then checks that a Read in flight
/// when the device drops its connection, and a Read after, fail at once.
/// Returns the registration.
async fn read_then_drop(
    server: &Server,
    endpoint: &str,
    device: impl FnOnce(std::sync::mpsc::Sender<()>) + Send + 'static,
) -> lwm2m_server::Registration<SocketAddr> {
    let (reg_tx, reg_rx) = std::sync::mpsc::channel();
    let device = std::thread::spawn(move || device(reg_tx));
    tokio::task::spawn_blocking(move || reg_rx.recv_timeout(STEP).expect("2.01 Created"))
        .await
        .unwrap();
    let reg = wait_registered(server, endpoint).await;
    assert_eq!(reg.binding, "T");
    let read = tokio::time::timeout(STEP, server.read(endpoint, "/3/0/0".parse().unwrap()))
        .await
        .expect("read answered in time")
        .expect("read succeeds");
    assert_eq!(read.code, Code::CONTENT);
    assert_eq!(
        read.content,
        Content::Node(Node::Resource(Resource::single(
            0,
            Value::String("Open Mobile Alliance".into())
        )))
    );

    // The device drops the connection on this Read: the request, already
    // written to the connection, fails when the close is seen, well before
    // the CoAP response timeout (247 s).
    let dropped = tokio::time::timeout(STEP, server.read(endpoint, "/3/0/1".parse().unwrap()))
        .await
        .expect("the read in flight fails in time");
    assert!(
        matches!(dropped, Err(DmError::Request(RequestError::Disconnected))),
        "{dropped:?}"
    );
    device.join().unwrap();
    // Later requests to the closed connection fail at once (RST from the driver).
    let gone = tokio::time::timeout(STEP, server.read(endpoint, "/3/0/0".parse().unwrap()))
        .await
        .expect("read fails in time");
    assert!(
        matches!(gone, Err(DmError::Request(RequestError::Reset))),
        "{gone:?}"
    );
    reg
}

// --- CoAP over TLS (coaps+tcp) ------------------------------------------

#[path = "../../lwm2m-client/tests/support/pki.rs"]
mod pki;

const PSK_ENDPOINT: &str = "tls-ep";
const PSK_ID: &str = "tls-id";
const PSK_KEY: &str = "secret-key-1";
/// The Common Name of the device certificate, and its endpoint name.
const X509_ENDPOINT: &str = "x509-ep";

/// A server with plain TCP and TLS listeners, PSK credentials for
/// [`PSK_ENDPOINT`] and a certificate requirement for [`X509_ENDPOINT`]
/// (its files in `dir`).
async fn start_tls_server(dir: &TempDir) -> (Server, pki::X509Files) {
    let files = pki::write_x509_files(dir.path(), X509_ENDPOINT);
    let mut store = MemorySecurityStore::new();
    store
        .put(SecurityInfo::psk(PSK_ENDPOINT, PSK_ID, PSK_KEY.as_bytes()))
        .unwrap();
    store
        .put(SecurityInfo {
            endpoint: X509_ENDPOINT.into(),
            credentials: Credentials::X509,
        })
        .unwrap();
    let tls = TlsOptions {
        x509: Some(lwm2m_server::dtls::X509Files {
            certificate: files.server_cert.clone(),
            private_key: files.server_key.clone(),
            ca: files.ca.clone(),
        }),
        ..TlsOptions::new("127.0.0.1:0".parse().unwrap())
    };
    let security = SecurityOptions {
        store: Some(Arc::new(Mutex::new(Box::new(store)))),
        coaps_tcp: Some(tls),
        ..SecurityOptions::default()
    };
    (start_server_with(security).await, files)
}

/// Runs coap-client-openssl with `args`, a Register POST to `uri`, and
/// returns its exit status and what it printed (`-v 7`: the PDUs).
async fn libcoap_register(args: Vec<std::ffi::OsString>, uri: String) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(coap_client_openssl());
        cmd.args(&args)
            .args(["-B", "5", "-v", "7", "-m", "post", "-t", "40"])
            .args(["-e", "</1/0>,</3/0>"])
            .arg(&uri);
        let mut p = PeerProcess::spawn(cmd, Duration::from_secs(30)).expect("start coap-client");
        let status = p.wait_timeout(Duration::from_secs(20));
        (status.is_some_and(|s| s.success()), p.output())
    })
    .await
    .unwrap()
}

fn psk_args(key: &str) -> Vec<std::ffi::OsString> {
    ["-u", PSK_ID, "-k", key].iter().map(Into::into).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_registers_over_coaps_tcp_with_a_psk_and_a_certificate() {
    let dir = TempDir::new().unwrap();
    let (server, files) = start_tls_server(&dir).await;
    let tls = server.tls_addr().expect("TLS listener");
    let tool = coap_client_openssl();
    eprintln!("coap-client: {} {}", tool.display(), libcoap_version(&tool));

    let uri = |ep: &str| format!("coaps+tcp://{tls}/rd?ep={ep}&b=T&lt=300");
    let (ok, log) = libcoap_register(psk_args(PSK_KEY), uri(PSK_ENDPOINT)).await;
    assert!(ok, "coap-client failed:\n{log}");
    assert!(log.contains("2.01"), "no 2.01 in the log:\n{log}");
    let reg = wait_registered(&server, PSK_ENDPOINT).await;
    assert_eq!(
        reg.security,
        Some(RegistrationSecurity::Psk {
            identity: PSK_ID.into()
        })
    );
    assert_eq!(reg.binding, "T");
    assert!(log.contains(&reg.id), "no Location {} in:\n{log}", reg.id);

    // The same identity for another endpoint name: 4.03.
    let (_, log) = libcoap_register(psk_args(PSK_KEY), uri("someone-else")).await;
    assert!(log.contains("4.03"), "expected 4.03 Forbidden:\n{log}");
    assert!(server.registration("someone-else").await.is_none());

    // A certificate whose Common Name is the endpoint name.
    let cert_args: Vec<std::ffi::OsString> = vec![
        "-c".into(),
        files.client_cert.clone().into(),
        "-j".into(),
        files.client_key.clone().into(),
        "-C".into(),
        files.ca.clone().into(),
    ];
    let (ok, log) = libcoap_register(cert_args.clone(), uri(X509_ENDPOINT)).await;
    assert!(ok && log.contains("2.01"), "coap-client failed:\n{log}");
    let reg = wait_registered(&server, X509_ENDPOINT).await;
    assert_eq!(
        reg.security,
        Some(RegistrationSecurity::X509 {
            common_name: X509_ENDPOINT.into()
        })
    );
    // ... and not for another one.
    let (_, log) = libcoap_register(cert_args, uri("other-ep")).await;
    assert!(log.contains("4.03"), "expected 4.03 Forbidden:\n{log}");
    assert!(server.registration("other-ep").await.is_none());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_psk_fails_the_handshake_and_clear_tcp_is_forbidden_for_secured_endpoints() {
    let dir = TempDir::new().unwrap();
    let (server, _files) = start_tls_server(&dir).await;
    let tls = server.tls_addr().expect("TLS listener");
    let uri = format!("coaps+tcp://{tls}/rd?ep={PSK_ENDPOINT}&b=T&lt=300");
    // (coap-client exits 0 when it cannot send.)
    let (_, log) = libcoap_register(psk_args("not-the-key"), uri.clone()).await;
    assert!(
        log.contains("bad record mac"),
        "no failed handshake:\n{log}"
    );
    assert!(!log.contains("2.01"), "{log}");
    assert!(server.registration(PSK_ENDPOINT).await.is_none());

    // Plain TCP for an endpoint with credentials: 4.03.
    let tcp = server.tcp_addr().expect("TCP listener");
    let plain = format!("coap+tcp://{tcp}/rd?ep={PSK_ENDPOINT}&b=T&lt=300");
    let (_, log) = libcoap_register(Vec::new(), plain).await;
    assert!(log.contains("4.03"), "expected 4.03 Forbidden:\n{log}");
    assert!(server.registration(PSK_ENDPOINT).await.is_none());

    // The right key still registers.
    let (ok, log) = libcoap_register(psk_args(PSK_KEY), uri).await;
    assert!(ok && log.contains("2.01"), "{log}");
    wait_registered(&server, PSK_ENDPOINT).await;
    server.shutdown().await;
}

/// A TLS client stream over `tcp` with PSK [`PSK_ID`]/[`PSK_KEY`], at most
/// `version`.
fn tls_psk_client(tcp: TcpStream, version: SslVersion) -> SslStream<TcpStream> {
    let mut b = SslContext::builder(SslMethod::tls_client()).unwrap();
    b.set_max_proto_version(Some(version)).unwrap();
    // PSK suites only in TLS 1.2, as a PSK device offers.
    b.set_cipher_list("PSK").unwrap();
    b.set_verify(SslVerifyMode::NONE);
    b.set_psk_client_callback(|_, _hint, identity, key| {
        let id = PSK_ID.as_bytes();
        identity[..id.len()].copy_from_slice(id);
        identity[id.len()] = 0;
        key[..PSK_KEY.len()].copy_from_slice(PSK_KEY.as_bytes());
        Ok(PSK_KEY.len())
    });
    let ssl = Ssl::new(&b.build()).unwrap();
    let stream = ssl.connect(tcp).expect("TLS handshake");
    assert_eq!(
        stream.ssl().version2(),
        Some(version),
        "negotiated {}",
        stream.ssl().version_str()
    );
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_over_tls_registers_answers_a_read_and_fails_at_once_when_gone() {
    for version in [SslVersion::TLS1_3, SslVersion::TLS1_2] {
        let dir = TempDir::new().unwrap();
        let (server, _files) = start_tls_server(&dir).await;
        let tls = server.tls_addr().expect("TLS listener");
        let reg = read_then_drop(&server, PSK_ENDPOINT, move |registered| {
            let stream = tls_psk_client(connect(tls), version);
            scripted_device(stream, PSK_ENDPOINT, registered)
        })
        .await;
        assert_eq!(
            reg.security,
            Some(RegistrationSecurity::Psk {
                identity: PSK_ID.into()
            }),
            "{version:?}"
        );
        server.shutdown().await;
    }
}

/// A blocking TCP connection from `local` (port 0: any) to `to`, its
/// address reusable at once (SO_REUSEADDR on both connections lets a second
/// one take the port of a first one in TIME_WAIT), reads timing out as
/// [`connect`]'s do.
async fn connect_from(local: SocketAddr, to: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(local).unwrap();
    let stream = socket.connect(to).await.unwrap().into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(StdDuration::from_millis(50)))
        .unwrap();
    stream
}

/// A plain CoAP-over-TCP client that pings (signalling `ponged` on the
/// Pong) and then only listens until `done`: returns whether any request
/// reached it.
fn plain_listener(
    mut stream: TcpStream,
    ponged: std::sync::mpsc::Sender<()>,
    done: std::sync::mpsc::Receiver<()>,
) -> bool {
    let mut conn = TcpConnection::new(TcpConfig::default(), SplitMix64::new(3));
    conn.ping().unwrap();
    let mut got_request = false;
    let started = std::time::Instant::now();
    let mut buf = [0u8; 4096];
    while started.elapsed() < STEP * 2 && done.try_recv().is_err() {
        stream.write_all(&conn.take_outgoing()).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => conn.handle_bytes(&buf[..n]),
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "read: {e}"
            ),
        }
        while let Some(event) = conn.poll_event() {
            match event {
                TcpEvent::Pong { .. } => {
                    let _ = ponged.send(());
                }
                TcpEvent::Request { .. } => got_request = true,
                _ => {}
            }
        }
    }
    got_request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_connection_from_a_secured_registrations_address_gets_none_of_its_requests() {
    let dir = TempDir::new().unwrap();
    let (server, _files) = start_tls_server(&dir).await;
    let tls = server.tls_addr().expect("TLS listener");
    let stream = connect_from("127.0.0.1:0".parse().unwrap(), tls).await;
    let local = stream.local_addr().unwrap();
    let reg = read_then_drop(&server, PSK_ENDPOINT, move |registered| {
        let stream = tls_psk_client(stream, SslVersion::TLS1_3);
        scripted_device(stream, PSK_ENDPOINT, registered)
    })
    .await;
    assert_eq!(reg.address, local);

    // Another connection from the same ip:port, in clear: the secured
    // registration's requests fail at once rather than go to it.
    let plain = connect_from(local, server.tcp_addr().expect("TCP listener")).await;
    let (ponged_tx, ponged_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let listener = std::thread::spawn(move || plain_listener(plain, ponged_tx, done_rx));
    tokio::task::spawn_blocking(move || ponged_rx.recv_timeout(STEP).expect("Pong"))
        .await
        .unwrap();
    let read = tokio::time::timeout(STEP, server.read(PSK_ENDPOINT, "/3/0/0".parse().unwrap()))
        .await
        .expect("the read fails in time");
    assert!(
        matches!(read, Err(DmError::Request(RequestError::Reset))),
        "{read:?}"
    );
    done_tx.send(()).unwrap();
    assert!(
        !listener.join().unwrap(),
        "the plain connection got the secured registration's request"
    );
    server.shutdown().await;
}
