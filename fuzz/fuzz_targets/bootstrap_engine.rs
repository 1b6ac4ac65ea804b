//! The bootstrap server engine fed a sequence of operations: raw datagrams,
//! Bootstrap-Requests and Bootstrap-Pack-Requests built from fuzz input,
//! server-initiated sessions, time passing, and a client endpoint that
//! answers the server's bootstrap operations with fuzz-chosen codes and
//! payloads (so Bootstrap-Discover answers reach the link-format parser).
//! Nothing may panic and the session bound must hold.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{
    Code, Endpoint, EndpointConfig, Event, MessageType, MessageWriter, Response,
};
use lwm2m_core::rng::SplitMix64;
use lwm2m_core::time::{Duration, Instant};
use lwm2m_server::bootstrap::{
    BootstrapConfig, BootstrapConfigStore, BootstrapEngine, BootstrapServerConfig,
    MemoryConfigStore, SecurityInstance, SecurityMode, ServerInstance,
};

const CLIENT: u8 = 1;

/// A CON request to `/path` with `text` split on '&' into queries.
fn request(mid: u16, code: Code, path: &[u8], text: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    let token = mid.to_be_bytes();
    let Ok(mut w) = MessageWriter::udp(&mut buf, MessageType::Con, code, mid, &token) else {
        return buf;
    };
    let _ = w.option(number::URI_PATH, path);
    for q in text.split(|b| *b == b'&') {
        if w.option(number::URI_QUERY, q).is_err() {
            break;
        }
    }
    w.finish(&[]);
    buf
}

fn config(discover: bool) -> BootstrapConfig {
    BootstrapConfig {
        discover,
        security: vec![SecurityInstance {
            id: 1,
            uri: "coap://s".into(),
            bootstrap_server: false,
            security_mode: SecurityMode::NoSec,
            public_key_or_identity: vec![],
            server_public_key: vec![],
            secret_key: vec![1, 2],
            short_server_id: Some(1),
            client_hold_off_time: None,
            bootstrap_server_account_timeout: None,
        }],
        servers: vec![ServerInstance {
            id: 0,
            short_server_id: 1,
            lifetime: 60,
            default_min_period: None,
            default_max_period: None,
            notification_storing: true,
            binding: "U".into(),
        }],
        ..BootstrapConfig::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let mut store = MemoryConfigStore::new();
    let _ = store.put("a", config(true));
    let _ = store.put("b", config(false));
    let cfg = BootstrapServerConfig {
        max_sessions: 2,
        ..BootstrapServerConfig::default()
    };
    let mut e: BootstrapEngine<u8, SplitMix64> =
        BootstrapEngine::new(cfg, SplitMix64::new(1), Box::new(store));
    let mut client: Endpoint<u8, SplitMix64> =
        Endpoint::new(EndpointConfig::default(), SplitMix64::new(2));
    let mut now = Instant::ZERO;
    let mut mid: u16 = 0;
    let mut answer = (Code::CHANGED, Vec::new());
    let mut rest = data;
    // Each record: [op, peer, len, bytes...]
    while let [op, peer, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (chunk, next) = tail.split_at(len);
        rest = next;
        let peer = peer % 4;
        mid = mid.wrapping_add(1);
        let first = chunk.first().copied().unwrap_or(0);
        match op % 7 {
            0 => e.handle_datagram(now, peer, chunk),
            1 => e.handle_datagram(now, peer, &request(mid, Code::POST, b"bs", chunk)),
            2 => e.handle_datagram(now, peer, &request(mid, Code::GET, b"bspack", chunk)),
            3 => {
                let ep = if first & 1 == 0 { "a" } else { "b" };
                let _ = e.start_session(now, ep, CLIENT);
            }
            4 => {
                now = now + Duration::from_secs(u64::from(first) * 4);
                e.handle_timeout(now);
                client.handle_timeout(now);
            }
            5 => {
                // How the client answers from now on.
                let code = Code::new(2 + first % 4, first >> 5);
                answer = (code, chunk.get(1..).unwrap_or_default().to_vec());
            }
            _ => client.handle_datagram(now, 0, chunk),
        }
        // Deliver between the engine and the client until both are quiet.
        for _ in 0..16 {
            let mut moved = false;
            while let Some(t) = e.poll_transmit() {
                if t.peer == CLIENT {
                    client.handle_datagram(now, 0, &t.bytes);
                    moved = true;
                }
            }
            while let Some(ev) = client.poll_event() {
                if let Event::Request { id, .. } = ev {
                    let r = Response::new(answer.0).with_payload(40, answer.1.clone());
                    client.respond(now, id, r);
                }
            }
            while let Some(t) = client.poll_transmit() {
                e.handle_datagram(now, CLIENT, &t.bytes);
                moved = true;
            }
            if !moved {
                break;
            }
        }
        while e.poll_event().is_some() {}
        assert!(e.session_count() <= 2);
    }
});
