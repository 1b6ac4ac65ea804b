//! Interop with libcoap (Debian package libcoap3-bin): our [`Endpoint`] as a
//! client of `coap-server`, and as a server for `coap-client`.
//!
//! Tools: `$COAP_SERVER` / `$COAP_CLIENT`, else `coap-server-notls` /
//! `coap-client-notls` (or the other names libcoap installs) from `PATH`.
//! A missing tool fails the test with installation advice
//! (`./scripts/install-test-deps`).
//!
//! [`Endpoint`]: lwm2m_core::coap::Endpoint

use std::net::SocketAddr;
use std::process::Command;

use interop_tests::{
    coap_client, coap_server, free_udp_port, libcoap_version, wait_for_coap_ping, DemoServer,
    PeerProcess, TempDir, UdpDriver, WireRecord,
};
use lwm2m_core::coap::endpoint::CancelReason;
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{BlockValue, Code, EndpointConfig, Event, MessageType, Request, Response};
use lwm2m_core::rng::RandomSource;
use lwm2m_core::time::Duration;

/// Bound on each exchange; on loopback they take milliseconds.
const STEP: Duration = Duration::from_secs(10);
/// Bound on a peer process's life.
const PEER_LIFETIME: Duration = Duration::from_secs(40);

fn random_body(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    interop_tests::OsRng.fill_bytes(&mut v);
    v
}

// ---------------------------------------------------------------------------
// Our endpoint as a client of libcoap's coap-server
// ---------------------------------------------------------------------------

/// Starts `coap-server` on a free 127.0.0.1 port with dynamic resources
/// (`-d`: a PUT to an unknown path creates it) and waits until it answers a
/// CoAP ping. Retries on a fresh port if another process took the port.
fn start_coap_server() -> (PeerProcess, SocketAddr) {
    let server = coap_server();
    eprintln!(
        "coap-server: {} {}",
        server.display(),
        libcoap_version(&server)
    );
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_udp_port().expect("no free UDP port on 127.0.0.1");
        let mut cmd = Command::new(&server);
        cmd.args(["-A", "127.0.0.1", "-p", &port.to_string(), "-d", "10"]);
        let mut peer = PeerProcess::spawn(cmd, PEER_LIFETIME).expect("start coap-server");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if wait_for_coap_ping(addr, Duration::from_secs(5)) {
            return (peer, addr);
        }
        let status = peer.try_wait();
        last = format!(
            "{} (exit status {status:?}) did not answer a CoAP ping on {addr}; output:\n{}",
            peer.name(),
            peer.output()
        );
    }
    panic!("{last}");
}

fn client(block_size: usize) -> UdpDriver {
    let config = EndpointConfig {
        block_size,
        ..EndpointConfig::default()
    };
    UdpDriver::bind("ours", config).expect("bind 127.0.0.1:0")
}

fn get(path: &str) -> Request {
    Request::new(Code::GET).with_path(path)
}

/// A GET whose first request already asks for `size`-byte blocks
/// (RFC 7959 §2.4 early negotiation).
fn get_in_blocks(path: &str, size: usize) -> Request {
    let b2 = BlockValue::new(0, false, size).expect("valid block size");
    get(path).with_uint_option(number::BLOCK2, b2.encode())
}

fn expect_ok(result: Result<Response, String>, peer: &PeerProcess) -> Response {
    result.unwrap_or_else(|e| panic!("{e}\n{} output:\n{}", peer.name(), peer.output()))
}

/// The body coap-server serves at /example_data (libcoap 4.3's example
/// server): 1500 bytes of "a123456789b123456789...", letters cycling a..z.
fn libcoap_example_data() -> Vec<u8> {
    (0..1500usize)
        .map(|i| {
            if i % 10 == 0 {
                b'a' + ((i / 10) % 26) as u8
            } else {
                b'0' + (i % 10) as u8
            }
        })
        .collect()
}

#[test]
fn client_get_root_of_coap_server() {
    let (server, addr) = start_coap_server();
    let mut ours = client(1024);
    let r = expect_ok(ours.request(addr, get("/"), STEP), &server);
    assert_eq!(r.code, Code::CONTENT);
    let text = String::from_utf8_lossy(&r.payload);
    assert!(
        text.contains("This is a test server made with libcoap"),
        "unexpected body of /: {text:?}"
    );
    // Options reach the application: the example server sets Max-Age 0x2ffff.
    assert_eq!(r.options.uint(number::MAX_AGE), Some(0x2ffff));

    let r = expect_ok(ours.request(addr, get("/no/such/thing"), STEP), &server);
    assert_eq!(r.code, Code::NOT_FOUND);
}

#[test]
fn client_put_creates_resource_then_get_returns_it() {
    let (server, addr) = start_coap_server();
    let mut ours = client(1024);
    let body = b"created by lwm2m-rs".to_vec();
    let put = Request::new(Code::PUT)
        .with_path("/interop/small")
        .with_payload(0, body.clone());
    let r = expect_ok(ours.request(addr, put, STEP), &server);
    assert_eq!(r.code, Code::CREATED, "PUT of a new dynamic resource");

    let r = expect_ok(ours.request(addr, get("/interop/small"), STEP), &server);
    assert_eq!(r.code, Code::CONTENT);
    assert_eq!(r.payload, body);

    // A second PUT changes it.
    let put = Request::new(Code::PUT)
        .with_path("/interop/small")
        .with_payload(0, b"changed".to_vec());
    let r = expect_ok(ours.request(addr, put, STEP), &server);
    assert_eq!(r.code, Code::CHANGED);
    let r = expect_ok(ours.request(addr, get("/interop/small"), STEP), &server);
    assert_eq!(r.payload, b"changed");
}

#[test]
fn client_blockwise_get_of_example_data() {
    let (server, addr) = start_coap_server();
    let mut ours = client(1024);
    let expected = libcoap_example_data();

    // The server picks the block size (1024): two blocks.
    let r = expect_ok(ours.request(addr, get("/example_data"), STEP), &server);
    assert_eq!(r.code, Code::CONTENT);
    assert_eq!(r.payload.len(), expected.len());
    assert_eq!(r.payload, expected);
    assert!(
        !r.options.contains(number::BLOCK2),
        "Block2 leaked to the app"
    );

    // We ask for 16-byte blocks up front: 94 blocks.
    let r = expect_ok(
        ours.request(addr, get_in_blocks("/example_data", 16), STEP),
        &server,
    );
    assert_eq!(r.payload, expected);
}

#[test]
fn client_blockwise_put_then_blockwise_get() {
    let (server, addr) = start_coap_server();
    // Block1 in 256-byte blocks: 40 blocks for 10 KiB.
    let mut ours = client(256);
    let body = random_body(10 * 1024);
    let put = Request::new(Code::PUT)
        .with_path("/interop/big")
        .with_payload(42, body.clone());
    let r = expect_ok(ours.request(addr, put, STEP), &server);
    assert_eq!(r.code, Code::CREATED);
    assert!(
        !r.options.contains(number::BLOCK1),
        "Block1 leaked to the app"
    );

    // Read back with the server's block size...
    let mut reader = client(1024);
    let r = expect_ok(reader.request(addr, get("/interop/big"), STEP), &server);
    assert_eq!(r.code, Code::CONTENT);
    assert_eq!(r.payload.len(), body.len());
    assert!(
        r.payload == body,
        "block-wise GET differs from what was PUT"
    );

    // ... and with 64-byte blocks negotiated by the client.
    let r = expect_ok(
        reader.request(addr, get_in_blocks("/interop/big", 64), STEP),
        &server,
    );
    assert!(r.payload == body, "64-byte block-wise GET differs");

    // Overwrite it with a body whose length is an exact multiple of the
    // block size (the last Block1 block is full, M=0) and read it back.
    let body = random_body(4 * 256);
    let put = Request::new(Code::PUT)
        .with_path("/interop/big")
        .with_payload(42, body.clone());
    let r = expect_ok(ours.request(addr, put, STEP), &server);
    assert_eq!(r.code, Code::CHANGED);
    let r = expect_ok(reader.request(addr, get("/interop/big"), STEP), &server);
    assert!(r.payload == body, "exact-multiple body differs");
}

#[test]
fn client_observes_example_data_with_blockwise_notifications() {
    let (server, addr) = start_coap_server();
    let mut ours = client(1024);
    let observe = get("/example_data").with_uint_option(number::OBSERVE, 0);
    let now = ours.now();
    let obs = ours
        .endpoint
        .send_request(now, addr, observe)
        .expect("send observe");
    let first = ours
        .run_until(STEP, |_, _, e| match e {
            Some(Event::Response { id, response }) if id == obs => Some(Ok(response)),
            Some(Event::RequestFailed { id, error }) if id == obs => Some(Err(error)),
            _ => None,
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", server.output()))
        .unwrap_or_else(|e| panic!("observe failed: {e:?}\n{}", server.output()));
    assert_eq!(first.code, Code::CONTENT);
    assert!(first.options.contains(number::OBSERVE), "not registered");
    assert_eq!(first.payload, libcoap_example_data());

    // Each PUT changes the resource; the server notifies. The bodies are
    // larger than a block, so every notification comes block-wise and our
    // endpoint fetches the rest (RFC 7959 §2.6).
    let mut writer = client(1024);
    for round in 0..2u8 {
        let body: Vec<u8> = (0..3000usize)
            .map(|i| b'A' + ((i + usize::from(round)) % 26) as u8)
            .collect();
        let put = Request::new(Code::PUT)
            .with_path("/example_data")
            .with_payload(0, body.clone());
        let r = expect_ok(writer.request(addr, put, STEP), &server);
        assert!(r.code.is_success(), "PUT /example_data: {}", r.code);
        let n = ours
            .run_until(STEP, |_, _, e| match e {
                Some(Event::Notification { id, response }) if id == obs => Some(response),
                _ => None,
            })
            .unwrap_or_else(|e| panic!("notification {round}: {e}\n{}", server.output()));
        assert_eq!(n.code, Code::CONTENT);
        assert_eq!(n.payload.len(), body.len(), "notification {round}");
        assert!(n.payload == body, "notification {round} body differs");
    }

    // Active cancellation: GET with Observe = 1 answered normally.
    let now = ours.now();
    let cancel = ours
        .endpoint
        .cancel_observe(now, obs)
        .expect("an observation to cancel");
    let r = ours
        .run_until(STEP, |_, _, e| match e {
            Some(Event::Response { id, response }) if id == cancel => Some(response),
            _ => None,
        })
        .unwrap_or_else(|e| panic!("deregistration: {e}\n{}", server.output()));
    assert_eq!(r.code, Code::CONTENT);
    assert!(!r.options.contains(number::OBSERVE));
}

#[test]
fn client_acknowledges_a_retransmitted_separate_response_again() {
    let (server, addr) = start_coap_server();
    let mut ours = client(1024);
    // /async?1: coap-server sends an empty ACK, then after 1 s the response
    // as a CON of its own. We lose our first ACK of it.
    let mut lost = false;
    ours.set_outgoing_loss(Some(Box::new(move |m| {
        let hit = !lost && m.mtype == MessageType::Ack;
        lost |= hit;
        hit
    })));
    let r = expect_ok(
        ours.request(addr, get("/async").with_query("1"), STEP),
        &server,
    );
    assert_eq!(r.code, Code::CONTENT);
    assert_eq!(r.payload, b"done");
    let separate = ours
        .wire()
        .iter()
        .filter(|w| !w.outgoing)
        .filter_map(|w| w.message())
        .find(|m| m.mtype == MessageType::Con)
        .map(|m| m.message_id)
        .expect("a CON separate response");

    // coap-server retransmits after ACK_TIMEOUT (2 to 3 s); the copy must be
    // acknowledged again (RFC 7252 §4.5) and not delivered a second time.
    let acked_again = |wire: &[WireRecord]| {
        wire.iter()
            .filter(|w| w.outgoing && !w.dropped)
            .filter_map(|w| w.message())
            .any(|m| m.mtype == MessageType::Ack && m.message_id == separate)
    };
    let start = std::time::Instant::now();
    while !acked_again(ours.wire()) {
        assert!(
            start.elapsed() < Duration::from_secs(6),
            "the retransmitted separate response (mid {separate}) was not acknowledged again"
        );
        let _ = ours.run_until(Duration::from_millis(100), |_, _, e| {
            assert!(e.is_none(), "unexpected event {e:?}");
            None::<()>
        });
    }
    let copies = ours
        .wire()
        .iter()
        .filter(|w| !w.outgoing)
        .filter_map(|w| w.message())
        .filter(|m| m.message_id == separate)
        .count();
    assert_eq!(copies, 2, "the response and one retransmission");
}

// ---------------------------------------------------------------------------
// Our endpoint as a server for libcoap's coap-client
// ---------------------------------------------------------------------------

/// Runs `coap-client` with `args` against our endpoint, serving `served`
/// until the client exits. Returns the client's captured output.
fn run_coap_client(served: &mut DemoServer, args: &[&str], path: &str) -> (String, PeerProcess) {
    let (log, peer, _) = run_coap_client_on(client(1024), served, args, path);
    (log, peer)
}

/// [`run_coap_client`] with a driver of the caller's (loss filter, block
/// size), handed back for its wire log.
fn run_coap_client_on(
    mut ours: UdpDriver,
    served: &mut DemoServer,
    args: &[&str],
    path: &str,
) -> (String, PeerProcess, UdpDriver) {
    let tool = coap_client();
    eprintln!("coap-client: {} {}", tool.display(), libcoap_version(&tool));
    let uri = format!("coap://{}{path}", ours.local_addr());
    let mut cmd = Command::new(&tool);
    // -B: coap-client gives up by itself after 10 s.
    cmd.args(["-B", "10"]).args(args).arg(&uri);
    let mut peer = PeerProcess::spawn(cmd, PEER_LIFETIME).expect("start coap-client");
    let status = served.serve_until_exit(&mut ours, &mut peer, Duration::from_secs(15));
    assert!(
        status.success(),
        "{} failed ({status}):\n{}",
        peer.name(),
        peer.output()
    );
    (peer.output(), peer, ours)
}

#[test]
fn server_get_from_coap_client() {
    let mut served = DemoServer::new(random_body(5 * 1024));
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("hello.out");
    let (log, _) = run_coap_client(
        &mut served,
        &["-m", "get", "-o", out.to_str().unwrap()],
        "/hello",
    );
    let got = std::fs::read(&out).unwrap_or_else(|e| panic!("no output file ({e}):\n{log}"));
    assert_eq!(got, served.hello, "coap-client output:\n{log}");
}

#[test]
fn server_blockwise_get_from_coap_client() {
    let mut served = DemoServer::new(random_body(5 * 1024));
    let dir = TempDir::new().unwrap();
    // The client asks for 64-byte blocks (early negotiation): 80 blocks.
    let out = dir.path().join("big64.out");
    let (log, _) = run_coap_client(
        &mut served,
        &["-m", "get", "-b", "64", "-o", out.to_str().unwrap()],
        "/big",
    );
    let got = std::fs::read(&out).unwrap_or_else(|e| panic!("no output file ({e}):\n{log}"));
    assert_eq!(got.len(), served.big.len(), "coap-client output:\n{log}");
    assert!(got == served.big, "64-byte blocks: body differs");

    // Without -b our endpoint picks the block size (1024): 5 blocks.
    let out = dir.path().join("big.out");
    let (log, _) = run_coap_client(
        &mut served,
        &["-m", "get", "-o", out.to_str().unwrap()],
        "/big",
    );
    let got = std::fs::read(&out).unwrap_or_else(|e| panic!("no output file ({e}):\n{log}"));
    assert!(
        got == served.big,
        "server-chosen blocks: body differs\n{log}"
    );
}

#[test]
fn server_blockwise_put_from_coap_client() {
    let mut served = DemoServer::new(random_body(5 * 1024));
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("upload.bin");
    // 5000 bytes: 78 full 64-byte blocks and a short last one.
    let body = random_body(5000);
    std::fs::write(&file, &body).unwrap();
    let (log, _) = run_coap_client(
        &mut served,
        &["-m", "put", "-b", "64", "-f", file.to_str().unwrap()],
        "/upload",
    );
    let got = served
        .uploaded
        .take()
        .unwrap_or_else(|| panic!("no PUT reached the application:\n{log}"));
    assert_eq!(got.len(), body.len());
    assert!(got == body, "reassembled Block1 body differs");
}

#[test]
fn server_observe_from_coap_client() {
    let mut served = DemoServer::new(random_body(5 * 1024));
    // -s 2: observe for 2 s; we notify every 200 ms. -w: one line per body.
    let (log, _) = run_coap_client(&mut served, &["-m", "get", "-s", "2", "-w"], "/counter");
    let bodies: Vec<u32> = log
        .lines()
        .filter_map(|l| l.strip_prefix("n="))
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    // The first response plus at least two notifications, in order.
    assert!(
        bodies.len() >= 3,
        "too few notifications: {bodies:?}\n{log}"
    );
    assert!(
        bodies.windows(2).all(|w| w[0] < w[1]),
        "notifications out of order: {bodies:?}"
    );
    assert!(
        served.counter >= 2,
        "we sent {} notifications",
        served.counter
    );
    // At the end of -s coap-client deregisters with GET Observe = 1.
    assert_eq!(served.cancelled, [CancelReason::Deregistered], "{log}");
    assert!(served.observers.is_empty());
}

/// Drops our `nth` outgoing datagrams (1-based) to simulate loss.
fn lose_outgoing(ours: &mut UdpDriver, nth: &'static [usize]) {
    let mut count = 0usize;
    ours.set_outgoing_loss(Some(Box::new(move |_| {
        count += 1;
        nth.contains(&count)
    })));
}

/// Message ids of our dropped datagrams that a retransmission of the
/// peer's request made us send again, and of those that were not.
fn answered_again(ours: &UdpDriver) -> (Vec<u16>, Vec<u16>) {
    let mids_sent = |dropped: bool| -> Vec<u16> {
        ours.wire()
            .iter()
            .filter(|w| w.outgoing && w.dropped == dropped)
            .filter_map(|w| w.message())
            .map(|m| m.message_id)
            .collect()
    };
    let sent = mids_sent(false);
    mids_sent(true)
        .into_iter()
        .partition(|mid| sent.contains(mid))
}

#[test]
fn server_blockwise_get_survives_lost_responses() {
    let mut served = DemoServer::new(random_body(5 * 1024));
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("big64.out");
    let mut ours = client(1024);
    // Our answers to the 5th block request and to the last (the 80th,
    // 81st datagram after the re-sent 5th) are lost; coap-client
    // retransmits its CON (2 to 3 s later) and our endpoint answers the
    // duplicate from its cache.
    lose_outgoing(&mut ours, &[5, 81]);
    let (log, _, ours) = run_coap_client_on(
        ours,
        &mut served,
        &["-m", "get", "-b", "64", "-o", out.to_str().unwrap()],
        "/big",
    );
    let got = std::fs::read(&out).unwrap_or_else(|e| panic!("no output file ({e}):\n{log}"));
    assert!(got == served.big, "body differs after losses\n{log}");
    let (again, never) = answered_again(&ours);
    assert_eq!(
        again.len(),
        2,
        "lost answers re-sent: {again:?}, not: {never:?}"
    );
}

#[test]
fn server_blockwise_put_survives_lost_responses() {
    let mut served = DemoServer::new(random_body(5 * 1024));
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("upload.bin");
    let body = random_body(5000);
    std::fs::write(&file, &body).unwrap();
    let mut ours = client(1024);
    // A lost 2.31 Continue in the middle (the 10th answer), and the final
    // 2.04 (the 79th answer, 80th datagram after the re-sent 10th): the
    // retransmitted last block gets the cached 2.04, and the application
    // sees the body once.
    lose_outgoing(&mut ours, &[10, 80]);
    let (log, _, ours) = run_coap_client_on(
        ours,
        &mut served,
        &["-m", "put", "-b", "64", "-f", file.to_str().unwrap()],
        "/upload",
    );
    let got = served
        .uploaded
        .take()
        .unwrap_or_else(|| panic!("no PUT reached the application:\n{log}"));
    assert!(got == body, "reassembled body differs after losses");
    assert_eq!(served.puts, 1, "the application saw the PUT more than once");
    let (again, never) = answered_again(&ours);
    assert_eq!(
        again.len(),
        2,
        "lost answers re-sent: {again:?}, not: {never:?}"
    );
}

#[test]
fn client_blockwise_survives_server_losses() {
    let server_tool = coap_server();
    // coap-server drops some of the datagrams it sends (-l: 1-based list,
    // counting the RST to our readiness ping); our endpoint retransmits
    // after its (shortened) ACK timeout and libcoap answers the duplicate.
    let port = free_udp_port().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut cmd = Command::new(&server_tool);
    cmd.args(["-A", "127.0.0.1", "-p", &port.to_string(), "-d", "10"])
        .args(["-l", "6,20,45,70"]);
    let server = PeerProcess::spawn(cmd, PEER_LIFETIME).expect("start coap-server");
    assert!(
        wait_for_coap_ping(addr, Duration::from_secs(5)),
        "coap-server not answering on {addr}:\n{}",
        server.output()
    );
    let config = EndpointConfig {
        ack_timeout: Duration::from_millis(200),
        block_size: 256,
        ..EndpointConfig::default()
    };
    let mut ours = UdpDriver::bind("ours", config).unwrap();
    let body = random_body(10 * 1024);
    let put = Request::new(Code::PUT)
        .with_path("/interop/lossy")
        .with_payload(42, body.clone());
    let r = expect_ok(ours.request(addr, put, STEP), &server);
    assert_eq!(r.code, Code::CREATED);
    let r = expect_ok(
        ours.request(addr, get_in_blocks("/interop/lossy", 256), STEP),
        &server,
    );
    assert!(r.payload == body, "body differs after losses");
    // Some of our CONs were sent more than once.
    let mut mids: Vec<u16> = ours
        .wire()
        .iter()
        .filter(|w| w.outgoing)
        .filter_map(|w| w.message())
        .filter(|m| m.mtype == MessageType::Con)
        .map(|m| m.message_id)
        .collect();
    let total = mids.len();
    mids.sort_unstable();
    mids.dedup();
    assert!(
        total - mids.len() >= 3,
        "expected retransmissions for the lost answers: {} of {total} CONs were repeats",
        total - mids.len()
    );
}
