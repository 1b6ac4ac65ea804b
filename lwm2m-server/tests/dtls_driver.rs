//! The tokio driver with a coaps socket, over real loopback sockets: a
//! client with an OpenSSL DTLS session (PSK) registers, and the server's
//! own requests (a Read) reach it encrypted through its session, its
//! answer comes back. Plain CoAP from the session's address is ignored,
//! and nothing goes to a secured client in clear once its session is gone.
//! Firmware packages are served over coaps block by block.

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Endpoint, EndpointConfig, Event, Request, Response};
use lwm2m_core::datagram_pipe::DatagramPipe;
use lwm2m_core::model::Path;
use lwm2m_core::rng::SplitMix64;
use lwm2m_core::time::Instant;
use lwm2m_server::dtls::DtlsConfig;
use lwm2m_server::{
    Content, DmError, MemorySecurityStore, MemoryStore, SecurityInfo, SecurityOptions,
    SecurityStore, Server, ServerConfig, SharedSecurityStore,
};
use openssl::ssl::{ErrorCode, Ssl, SslContextBuilder, SslMethod, SslOptions, SslStream};

/// Bound on every wait for a datagram; loopback answers in milliseconds.
const WAIT: Duration = Duration::from_secs(10);

/// Our test client: a UDP socket, a DTLS session over it, a CoAP endpoint.
struct Client {
    sock: UdpSocket,
    tls: SslStream<DatagramPipe>,
    coap: Endpoint<u8, SplitMix64>,
    server: SocketAddr,
}

impl Client {
    fn connect(server: SocketAddr, identity: &'static str, key: &'static [u8]) -> Client {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        Client::connect_on(sock, server, identity, key)
    }

    /// A handshake from `sock` (whose address may already have a session).
    fn connect_on(
        sock: UdpSocket,
        server: SocketAddr,
        identity: &'static str,
        key: &'static [u8],
    ) -> Client {
        let mut b = SslContextBuilder::new(SslMethod::dtls_client()).unwrap();
        b.set_options(SslOptions::NO_QUERY_MTU);
        // A device with only the suite LwM2M mandates (as tinydtls); OpenSSL
        // 3.4+ needs security level 0 for it.
        b.set_cipher_list("PSK-AES128-CCM8").unwrap();
        b.set_security_level(0);
        b.set_psk_client_callback(move |_, _, id, k| {
            id[..identity.len()].copy_from_slice(identity.as_bytes());
            id[identity.len()] = 0;
            k[..key.len()].copy_from_slice(key);
            Ok(key.len())
        });
        let mut ssl = Ssl::new(&b.build()).unwrap();
        ssl.set_mtu(1200).unwrap();
        ssl.set_connect_state();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut c = Client {
            sock,
            tls: SslStream::new(ssl, DatagramPipe::new(16)).unwrap(),
            coap: Endpoint::new(EndpointConfig::default(), SplitMix64::new(9)),
            server,
        };
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let r = c.tls.do_handshake();
            c.flush_tls();
            match r {
                Ok(()) => return c,
                Err(e) if e.code() == ErrorCode::WANT_READ => {}
                Err(e) => panic!("handshake failed: {e}"),
            }
            assert!(std::time::Instant::now() < deadline, "handshake timed out");
            c.recv_datagram();
        }
    }

    fn flush_tls(&mut self) {
        while let Some(d) = self.tls.get_mut().pop_outgoing() {
            self.sock.send_to(&d, self.server).unwrap();
        }
    }

    fn recv_datagram(&mut self) {
        let mut buf = [0u8; 2048];
        if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
            self.tls.get_mut().push_incoming(buf[..n].to_vec());
        }
    }

    fn now() -> Instant {
        Instant::from_millis(1)
    }

    /// Sends the CoAP endpoint's datagrams through the session.
    fn flush_coap(&mut self) {
        while let Some(t) = self.coap.poll_transmit() {
            self.tls.ssl_write(&t.bytes).unwrap();
        }
        self.flush_tls();
    }

    /// Waits for the next CoAP event (decrypting what arrives).
    fn event(&mut self) -> Event<u8> {
        let deadline = std::time::Instant::now() + WAIT;
        let mut buf = [0u8; 2048];
        loop {
            if let Some(ev) = self.coap.poll_event() {
                return ev;
            }
            match self.tls.ssl_read(&mut buf) {
                Ok(n) => self.coap.handle_datagram(Self::now(), 0, &buf[..n]),
                Err(e) if e.code() == ErrorCode::WANT_READ => {
                    assert!(std::time::Instant::now() < deadline, "no CoAP event");
                    self.recv_datagram();
                }
                Err(e) => panic!("DTLS read failed: {e}"),
            }
            self.flush_coap();
        }
    }

    fn register(&mut self, ep: &str) -> Response {
        let mut r = Request::new(Code::POST)
            .with_path("/rd")
            .with_query(&format!("ep={ep}"))
            .with_query("lt=300");
        r.options.set_uint(number::CONTENT_FORMAT, 40);
        r.payload = b"</3/0>".to_vec();
        self.coap.send_request(Self::now(), 0, r).unwrap();
        self.flush_coap();
        match self.event() {
            Event::Response { response, .. } => response,
            other => panic!("{other:?}"),
        }
    }
}

fn security() -> SharedSecurityStore {
    let mut s = MemorySecurityStore::new();
    s.put(SecurityInfo::psk("dtls-ep", "dtls-id", b"0123456789"))
        .unwrap();
    s.put(SecurityInfo::psk("other-ep", "other-id", b"abcdefghij"))
        .unwrap();
    Arc::new(Mutex::new(Box::new(s)))
}

async fn start(config: ServerConfig) -> Server {
    let options = SecurityOptions {
        store: Some(security()),
        coaps: Some(("127.0.0.1:0".parse().unwrap(), DtlsConfig::default())),
        ..SecurityOptions::default()
    };
    Server::start_secured(
        "127.0.0.1:0".parse().unwrap(),
        config,
        Box::new(MemoryStore::new()),
        Box::new(lwm2m_objects::Registry::standard()),
        options,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_requests_reach_a_dtls_client_through_its_session() {
    let server = start(ServerConfig::default()).await;
    let coaps = server.secure_addr().unwrap();
    let mut client = tokio::task::spawn_blocking(move || {
        let mut c = Client::connect(coaps, "dtls-id", b"0123456789");
        let r = c.register("dtls-ep");
        assert_eq!(r.code, Code::CREATED);
        c
    })
    .await
    .unwrap();
    let reg = server.registration("dtls-ep").await.unwrap();
    assert_eq!(reg.address, client.sock.local_addr().unwrap());
    assert_eq!(reg.security.unwrap().identity(), "dtls-id");

    // The server reads /3/0/0; the client answers through its session.
    let handle = server.handle();
    let read = tokio::spawn(async move {
        handle
            .read("dtls-ep", "/3/0/0".parse::<Path>().unwrap())
            .await
    });
    let client = tokio::task::spawn_blocking(move || {
        match client.event() {
            Event::Request { id, request, .. } => {
                let path: Vec<&[u8]> = request.options.get_all(number::URI_PATH).collect();
                assert_eq!(path, [&b"3"[..], b"0", b"0"]);
                let mut resp = Response::new(Code::CONTENT);
                resp.options.set_uint(number::CONTENT_FORMAT, 0);
                resp.payload = b"Open Mobile Alliance".to_vec();
                client.coap.respond(Client::now(), id, resp);
                client.flush_coap();
            }
            other => panic!("{other:?}"),
        }
        client
    })
    .await
    .unwrap();
    let answer = tokio::time::timeout(WAIT, read).await.unwrap().unwrap();
    let answer = answer.unwrap();
    assert_eq!(answer.code, Code::CONTENT);
    assert!(
        matches!(&answer.content, Content::Node(_) | Content::Raw { .. }),
        "{:?}",
        answer.content
    );

    // Plain CoAP from the session's own address is ignored: a spoofed
    // De-register in clear does not end the registration.
    let loc = format!("/rd/{}", reg.id);
    let mut plain: Endpoint<u8, SplitMix64> =
        Endpoint::new(EndpointConfig::default(), SplitMix64::new(5));
    plain
        .send_request(Client::now(), 0, Request::new(Code::DELETE).with_path(&loc))
        .unwrap();
    let datagram = plain.poll_transmit().unwrap().bytes;
    client.sock.send_to(&datagram, server.local_addr()).unwrap();
    // A CoAP ping after it on the same socket: once its RST is back, the
    // De-register was handled (dropped) before.
    let pinger = UdpSocket::bind("127.0.0.1:0").unwrap();
    pinger.set_read_timeout(Some(WAIT)).unwrap();
    pinger
        .send_to(&[0x40, 0x00, 0x12, 0x34], server.local_addr())
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = pinger.recv_from(&mut buf).unwrap();
    assert_eq!(buf[..n], [0x70, 0x00, 0x12, 0x34], "RST to the ping");
    assert!(server.registration("dtls-ep").await.is_some());
    drop(client);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secured_client_without_a_session_gets_nothing_in_clear() {
    // The Read below is never answered.
    let server = start(impatient()).await;
    let coaps = server.secure_addr().unwrap();
    let client = tokio::task::spawn_blocking(move || {
        let mut c = Client::connect(coaps, "dtls-id", b"0123456789");
        assert_eq!(c.register("dtls-ep").code, Code::CREATED);
        // close_notify: the server ends the session and answers with its own.
        let _ = c.tls.shutdown();
        c.flush_tls();
        let deadline = std::time::Instant::now() + WAIT;
        while c.tls.get_shutdown()
            != openssl::ssl::ShutdownState::SENT | openssl::ssl::ShutdownState::RECEIVED
        {
            assert!(std::time::Instant::now() < deadline, "no close_notify back");
            c.recv_datagram();
            let _ = c.tls.shutdown();
        }
        c
    })
    .await
    .unwrap();
    // The session is gone: the server's Read has no way to the client but
    // in clear, which it must not take.
    let handle = server.handle();
    let read = handle.read("dtls-ep", "/3/0/0".parse::<Path>().unwrap());
    let r = tokio::time::timeout(Duration::from_secs(300), read).await;
    assert!(
        matches!(r, Ok(Err(DmError::Request(_)))),
        "the Read must fail unanswered: {r:?}"
    );
    client
        .sock
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut clear = 0;
    while let Ok((n, from)) = client.sock.recv_from(&mut buf) {
        if from == server.local_addr() && n > 0 {
            clear += 1;
        }
    }
    assert_eq!(clear, 0, "nothing from the plain socket");
    server.shutdown().await;
}

/// Short retransmissions, for requests that are never answered.
fn impatient() -> ServerConfig {
    let mut config = ServerConfig::default();
    config.coap.ack_timeout = lwm2m_core::time::Duration::from_millis(50);
    config.coap.max_retransmit = 1;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_a_registration_never_reach_another_identity_at_its_address() {
    let server = start(impatient()).await;
    let coaps = server.secure_addr().unwrap();
    // dtls-ep registers; then another client takes its ip:port over with
    // its own identity (a NAT handing the address on).
    let mut other = tokio::task::spawn_blocking(move || {
        let mut a = Client::connect(coaps, "dtls-id", b"0123456789");
        assert_eq!(a.register("dtls-ep").code, Code::CREATED);
        let sock = a.sock.try_clone().unwrap();
        Client::connect_on(sock, coaps, "other-id", b"abcdefghij")
    })
    .await
    .unwrap();
    // The server's Read for dtls-ep is not handed to the new session.
    let r = server
        .read("dtls-ep", "/3/0/0".parse::<Path>().unwrap())
        .await;
    assert!(matches!(r, Err(DmError::Request(_))), "{r:?}");
    // The newcomer's own requests are still answered through its session,
    // and nothing it received was the Read.
    let other = tokio::task::spawn_blocking(move || {
        assert_eq!(other.register("other-ep").code, Code::CREATED);
        assert!(other.coap.poll_event().is_none(), "no request for dtls-ep");
        other
    })
    .await
    .unwrap();
    drop(other);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_packages_are_served_block_by_block_over_coaps() {
    use lwm2m_core::coap::BlockValue;
    use lwm2m_server::firmware::{FirmwarePackage, FirmwareStore, MemoryFirmwareStore};
    let server = start(ServerConfig::default()).await;
    let bytes: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let store = Arc::new(MemoryFirmwareStore::new());
    let package = FirmwarePackage::describe("pkg", "demo", "1", &bytes, 0);
    store.put(&package, &bytes).unwrap();
    server.handle().set_firmware_store(Some(store)).await;
    let mut c = Client::connect(server.secure_addr().unwrap(), "dtls-id", b"0123456789");
    let mut get = |block: Option<BlockValue>| {
        let mut r = Request::new(Code::GET).with_path("/fw/pkg");
        if let Some(b) = block {
            r = r.with_single_block2(b);
        }
        c.coap.send_request(Client::now(), 0, r).unwrap();
        c.flush_coap();
        match c.event() {
            Event::Response { response, .. } => response,
            other => panic!("{other:?}"),
        }
    };
    // A block from the middle first, as a resumed download asks.
    let r = get(Some(BlockValue::new(2, false, 512).unwrap()));
    assert_eq!(r.code, Code::CONTENT);
    assert_eq!(r.payload, bytes[1024..1536]);
    let b = BlockValue::decode(r.options.uint(number::BLOCK2).unwrap()).unwrap();
    assert_eq!((b.num, b.more), (2, true));
    // The whole package, block after block.
    let r = get(None);
    assert_eq!(r.payload, bytes);
    server.shutdown().await;
}
