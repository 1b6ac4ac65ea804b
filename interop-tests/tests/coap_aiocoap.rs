//! Interop with aiocoap (PyPI, pinned in scripts/install-test-deps): our
//! [`Endpoint`] as a client of the aiocoap server in
//! `interop-tests/peers/aiocoap_server.py`, and as a server for the aiocoap
//! client in `interop-tests/peers/aiocoap_client.py`.
//!
//! Python: `$AIOCOAP_PYTHON`, else `<repo>/.venv/bin/python`. A missing
//! interpreter or aiocoap fails the test with installation advice
//! (`./scripts/install-test-deps`).
//!
//! [`Endpoint`]: lwm2m_core::coap::Endpoint

use std::net::SocketAddr;
use std::process::Command;

use interop_tests::{
    aiocoap_python, free_udp_port, repo_root, DemoServer, PeerProcess, TempDir, UdpDriver,
};
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{BlockValue, Code, EndpointConfig, Event, MessageType, Request, Response};
use lwm2m_core::rng::RandomSource;
use lwm2m_core::time::Duration;
use sha2::{Digest, Sha256};

/// Bound on each exchange; on loopback they take milliseconds.
const STEP: Duration = Duration::from_secs(10);
/// Bound on the peer's life (the script also exits by itself after it).
const PEER_LIFETIME: Duration = Duration::from_secs(40);
/// Size of /large, as in aiocoap_server.py.
const LARGE_SIZE: usize = 20 * 1024;

/// The body of /large, same formula as aiocoap_server.py's `large_body`.
fn large_body() -> Vec<u8> {
    (0..LARGE_SIZE)
        .map(|i| ((i * 7) + (i >> 8)) as u8)
        .collect()
}

fn random_body(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    interop_tests::OsRng.fill_bytes(&mut v);
    v
}

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Starts the aiocoap peer on a free 127.0.0.1 port and waits for its
/// "ready" line. Retries on a fresh port if the script exits early (port
/// taken meanwhile).
fn start_aiocoap() -> (PeerProcess, SocketAddr) {
    let python = aiocoap_python();
    let script = repo_root().join("interop-tests/peers/aiocoap_server.py");
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_udp_port().expect("no free UDP port on 127.0.0.1");
        let mut cmd = Command::new(&python);
        cmd.arg(&script)
            .arg(port.to_string())
            .arg(PEER_LIFETIME.as_secs().to_string());
        let mut peer = PeerProcess::spawn(cmd, PEER_LIFETIME).expect("start the aiocoap peer");
        if peer
            .wait_for_line(Duration::from_secs(15), |l| l == "ready")
            .is_some()
        {
            return (peer, SocketAddr::from(([127, 0, 0, 1], port)));
        }
        let status = peer.try_wait();
        last = format!(
            "{} (exit status {status:?}) never said ready; output:\n{}",
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

fn expect_ok(result: Result<Response, String>, peer: &PeerProcess) -> Response {
    result.unwrap_or_else(|e| panic!("{e}\n{} output:\n{}", peer.name(), peer.output()))
}

#[test]
fn client_get_small() {
    let (peer, addr) = start_aiocoap();
    let mut ours = client(1024);
    let r = expect_ok(ours.request(addr, get("/small"), STEP), &peer);
    assert_eq!(r.code, Code::CONTENT);
    assert_eq!(r.payload, b"hello from aiocoap");
    assert_eq!(r.options.uint(number::CONTENT_FORMAT), Some(0));

    let r = expect_ok(ours.request(addr, get("/missing"), STEP), &peer);
    assert_eq!(r.code, Code::NOT_FOUND);

    // A NON request gets its answer too.
    let r = expect_ok(
        ours.request(addr, get("/small").non_confirmable(), STEP),
        &peer,
    );
    assert_eq!(r.payload, b"hello from aiocoap");
}

#[test]
fn client_blockwise_get_large() {
    let (peer, addr) = start_aiocoap();
    let expected = large_body();

    // aiocoap picks the block size (1024): 20 blocks.
    let mut ours = client(1024);
    let r = expect_ok(ours.request(addr, get("/large"), STEP), &peer);
    assert_eq!(r.code, Code::CONTENT);
    assert_eq!(r.payload.len(), expected.len());
    assert!(r.payload == expected, "/large differs");
    assert_eq!(r.options.uint(number::CONTENT_FORMAT), Some(42));
    assert!(
        !r.options.contains(number::BLOCK2),
        "Block2 leaked to the app"
    );

    // We ask for 64-byte blocks up front: 320 blocks.
    let b2 = BlockValue::new(0, false, 64).expect("valid");
    let req = get("/large").with_uint_option(number::BLOCK2, b2.encode());
    let r = expect_ok(ours.request(addr, req, STEP), &peer);
    assert!(r.payload == expected, "/large in 64-byte blocks differs");
}

#[test]
fn client_blockwise_put_sha256() {
    let (peer, addr) = start_aiocoap();
    for (block_size, len) in [(1024, 20 * 1024 + 17), (128, 5000), (256, 4 * 256)] {
        let mut ours = client(block_size);
        let body = random_body(len);
        let put = Request::new(Code::PUT)
            .with_path("/sink")
            .with_payload(42, body.clone());
        let r = expect_ok(ours.request(addr, put, STEP), &peer);
        assert_eq!(
            r.code,
            Code::CHANGED,
            "{len} bytes in {block_size}-byte blocks"
        );
        let text = String::from_utf8_lossy(&r.payload);
        assert_eq!(
            text,
            format!("{len} {}", sha256_hex(&body)),
            "{len} bytes in {block_size}-byte blocks: aiocoap reassembled something else"
        );
        // And the reassembled body comes back block-wise, byte for byte.
        let r = expect_ok(ours.request(addr, get("/sink"), STEP), &peer);
        assert!(r.payload == body, "{len} bytes read back differ");
    }
}

#[test]
fn client_observes_counter() {
    let (peer, addr) = start_aiocoap();
    let mut ours = client(1024);
    let now = ours.now();
    let id = ours
        .endpoint
        .send_request(
            now,
            addr,
            get("/counter").with_uint_option(number::OBSERVE, 0),
        )
        .expect("send observe");
    let counter = |r: &Response| -> u64 {
        String::from_utf8_lossy(&r.payload)
            .parse()
            .unwrap_or_else(|_| panic!("counter body {:?}", r.payload))
    };
    let mut values = Vec::new();
    let result = ours.run_until(STEP, |_, _, e| {
        match e {
            Some(Event::Response { id: r, response }) if r == id => {
                assert_eq!(response.code, Code::CONTENT);
                assert!(response.options.contains(number::OBSERVE), "not registered");
                values.push(counter(&response));
            }
            Some(Event::Notification { id: r, response }) if r == id => {
                assert_eq!(response.code, Code::CONTENT);
                values.push(counter(&response));
            }
            Some(Event::RequestFailed { id: r, error }) if r == id => {
                panic!("observe failed: {error:?}")
            }
            _ => {}
        }
        // The first response and two notifications.
        (values.len() >= 3).then_some(())
    });
    result.unwrap_or_else(|e| panic!("{e}; got {values:?}\n{}", peer.output()));
    assert!(
        values.windows(2).all(|w| w[0] < w[1]),
        "counter did not increase: {values:?}"
    );

    // Passive cancellation (RFC 7641 §3.6): forget the request; the next
    // notification, whose token we no longer know, is rejected with RST
    // (not acknowledged), and aiocoap stops notifying.
    let token = ours
        .wire()
        .iter()
        .find(|w| w.outgoing)
        .and_then(|w| w.message().map(|m| m.token.to_vec()))
        .expect("the observe request went out");
    let now = ours.now();
    ours.endpoint.cancel_request(now, id);
    let seen = ours.wire().len();
    let _ = ours.run_until(Duration::from_millis(1000), |_, _, e| {
        assert!(
            !matches!(e, Some(Event::Notification { .. })),
            "notification delivered for a cancelled request"
        );
        None::<()>
    });
    let after = &ours.wire()[seen..];
    let notifications: Vec<u16> = after
        .iter()
        .filter(|w| !w.outgoing)
        .filter_map(|w| w.message())
        .filter(|m| m.token == token.as_slice())
        .map(|m| m.message_id)
        .collect();
    // One notification every 200 ms: without the RST there would be five.
    assert!(
        !notifications.is_empty() && notifications.len() <= 2,
        "notifications after cancelling: {notifications:?}\n{}",
        peer.output()
    );
    for mid in &notifications {
        let answers: Vec<MessageType> = after
            .iter()
            .filter(|w| w.outgoing)
            .filter_map(|w| w.message())
            .filter(|m| m.message_id == *mid)
            .map(|m| m.mtype)
            .collect();
        assert_eq!(answers, [MessageType::Rst], "answer to notification {mid}");
    }
}

// ---------------------------------------------------------------------------
// Our endpoint as a server for an aiocoap client
// ---------------------------------------------------------------------------

/// Runs `aiocoap_client.py <args...>` (with `{}` in an argument replaced by
/// our endpoint's address) and serves `served` until it exits. Returns its
/// output lines; panics if it failed.
fn run_aiocoap_client(ours: &mut UdpDriver, served: &mut DemoServer, args: &[&str]) -> Vec<String> {
    let python = aiocoap_python();
    let script = repo_root().join("interop-tests/peers/aiocoap_client.py");
    let base = format!("coap://{}", ours.local_addr());
    let mut cmd = Command::new(&python);
    cmd.arg(&script)
        .args(args.iter().map(|a| a.replace("{}", &base)));
    let mut peer = PeerProcess::spawn(cmd, PEER_LIFETIME).expect("start the aiocoap client");
    let status = served.serve_until_exit(ours, &mut peer, Duration::from_secs(20));
    assert!(
        status.success(),
        "{} failed ({status}):\n{}",
        peer.name(),
        peer.output()
    );
    peer.output()
        .lines()
        .filter(|l| !l.starts_with("stderr: "))
        .map(str::to_owned)
        .collect()
}

#[test]
fn server_get_and_blockwise_get_from_aiocoap_client() {
    let mut ours = client(1024);
    let mut served = DemoServer::new(random_body(LARGE_SIZE));
    let out = run_aiocoap_client(&mut ours, &mut served, &["get", "{}/hello"]);
    let hello = &served.hello;
    assert_eq!(out, [format!("2.05 {} {}", hello.len(), sha256_hex(hello))]);

    // 20 KiB in our 1024-byte blocks, then in 64-byte blocks aiocoap asks for.
    let big = format!("2.05 {} {}", served.big.len(), sha256_hex(&served.big));
    let out = run_aiocoap_client(&mut ours, &mut served, &["get", "{}/big"]);
    assert_eq!(out, std::slice::from_ref(&big));
    let out = run_aiocoap_client(&mut ours, &mut served, &["get", "{}/big", "2"]);
    assert_eq!(out, [big]);

    let out = run_aiocoap_client(&mut ours, &mut served, &["get", "{}/nothing"]);
    assert!(
        out.first().is_some_and(|l| l.starts_with("4.04 ")),
        "{out:?}"
    );
}

#[test]
fn server_blockwise_put_from_aiocoap_client() {
    let mut ours = client(1024);
    let mut served = DemoServer::new(Vec::new());
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("upload.bin");
    for (len, szx) in [(10 * 1024 + 3, None), (3000, Some("0"))] {
        let body = random_body(len);
        std::fs::write(&file, &body).unwrap();
        let path = file.to_str().unwrap();
        let mut args = vec!["put", "{}/upload", path];
        args.extend(szx);
        let out = run_aiocoap_client(&mut ours, &mut served, &args);
        assert_eq!(out.first().map(|l| l.trim_end()), Some("2.04"), "{out:?}");
        let got = served
            .uploaded
            .take()
            .expect("no PUT reached the application");
        assert_eq!(got.len(), body.len(), "szx {szx:?}");
        assert!(got == body, "{len} bytes: reassembled body differs");
    }
    assert_eq!(served.puts, 2);
}

#[test]
fn server_observe_from_aiocoap_client() {
    let mut ours = client(1024);
    let mut served = DemoServer::new(Vec::new());
    let out = run_aiocoap_client(&mut ours, &mut served, &["observe", "{}/counter", "3"]);
    let values: Vec<u32> = out
        .iter()
        .filter_map(|l| l.strip_prefix("2.05 n="))
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    // The first response and three notifications, in order.
    assert_eq!(values.len(), 4, "{out:?}");
    assert!(values.windows(2).all(|w| w[0] < w[1]), "{values:?}");
}
