//! The server's DTLS layer fed arbitrary datagrams from a few peer
//! addresses (two sharing an IP), interleaved with time passing and
//! plaintext to send. Some datagrams get a ClientHello record header so
//! sessions are created and OpenSSL's handshake parser is reached. Nothing
//! may panic and the limits must hold.
#![no_main]
use std::net::SocketAddr;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use lwm2m_core::time::{Duration, Instant};
use lwm2m_server::dtls::{DtlsConfig, DtlsServer};

const PEERS: [([u8; 4], u16); 4] = [
    ([192, 0, 2, 1], 1000),
    ([192, 0, 2, 1], 1001),
    ([198, 51, 100, 2], 5684),
    ([203, 0, 113, 3], 40000),
];

fuzz_target!(|data: &[u8]| {
    let config = DtlsConfig {
        max_sessions: 3,
        max_handshakes: 2,
        max_sessions_per_ip: 2,
        ..DtlsConfig::default()
    };
    let keys = Arc::new(|id: &str| (id == "fuzz").then(|| b"fuzz-key".to_vec()));
    let Ok(mut s) = DtlsServer::new(config, keys, [3; 32]) else {
        return;
    };
    let mut now = Instant::from_millis(1_000_000);
    let mut rest = data;
    while let [op, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (chunk, next) = tail.split_at(n);
        rest = next;
        let (ip, port) = PEERS[usize::from(op & 3)];
        let peer = SocketAddr::from((ip, port));
        match op >> 2 & 3 {
            0 => s.handle_datagram(now, peer, chunk),
            1 => {
                // A ClientHello record header (handshake, DTLS 1.2, epoch 0)
                // before the fuzz bytes.
                let mut d = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0];
                d.extend_from_slice(&(n as u16 + 12).to_be_bytes());
                d.extend_from_slice(&[1, 0, 0, n as u8, 0, 0, 0, 0, 0, 0, 0, n as u8]);
                d.extend_from_slice(chunk);
                s.handle_datagram(now, peer, &d);
            }
            2 => {
                now = now + Duration::from_millis(u64::from(*len) * 500);
                s.handle_timeout(now);
            }
            _ => {
                let _ = s.send(now, peer, chunk);
            }
        }
        assert!(s.handshake_count() <= 2);
        assert!(s.peer_count() <= 3);
        while s.poll_transmit().is_some() {}
        while s.poll_received().is_some() {}
        let _ = s.poll_timeout();
    }
});
