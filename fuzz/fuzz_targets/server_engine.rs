//! The server engine fed a sequence of datagrams from a few peers: raw bytes,
//! and Register / Update / De-register requests built from fuzz input (so
//! the registration validation is reached past the CoAP parser), interleaved
//! with time passing and device-management requests (composite ones too)
//! and Sends (`POST /dp`) with fuzz payloads in the formats that carry
//! paths. Nothing may panic and the registration limits must hold.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, MessageType, MessageWriter};
use lwm2m_core::format::ContentFormat;
use lwm2m_core::model::{Node, Path, Resource, Value, NO_MODELS};
use lwm2m_core::rng::SplitMix64;
use lwm2m_core::time::{Duration, Instant};
use lwm2m_server::{Engine, MemoryStore, ServerConfig, WriteMode};

/// A CON request to `/rd[/loc]` with `text` split on '&' into queries (before
/// the first '|') and the rest as the payload.
fn request(mid: u16, code: Code, loc: Option<&str>, text: &[u8], cf: Option<u32>) -> Vec<u8> {
    let mut buf = Vec::new();
    let token = mid.to_be_bytes();
    let Ok(mut w) = MessageWriter::udp(&mut buf, MessageType::Con, code, mid, &token) else {
        return buf;
    };
    let _ = w.option(number::URI_PATH, b"rd");
    if let Some(l) = loc {
        let _ = w.option(number::URI_PATH, l.as_bytes());
    }
    if let Some(cf) = cf {
        let _ = w.uint_option(number::CONTENT_FORMAT, cf);
    }
    let (query, payload) = match text.iter().position(|b| *b == b'|') {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, &[][..]),
    };
    for q in query.split(|b| *b == b'&') {
        if w.option(number::URI_QUERY, q).is_err() {
            break;
        }
    }
    w.finish(payload);
    buf
}

/// A CON `POST /dp` (Send) with `payload` in content format `cf`.
fn send(mid: u16, payload: &[u8], cf: u32) -> Vec<u8> {
    let mut buf = Vec::new();
    let token = mid.to_be_bytes();
    let Ok(mut w) = MessageWriter::udp(&mut buf, MessageType::Con, Code::POST, mid, &token) else {
        return buf;
    };
    let _ = w.option(number::URI_PATH, b"dp");
    let _ = w.uint_option(number::CONTENT_FORMAT, cf);
    w.finish(payload);
    buf
}

fuzz_target!(|data: &[u8]| {
    let config = ServerConfig {
        max_registrations: 6,
        max_registrations_per_address: 3,
        max_queued_requests: 2,
        ..ServerConfig::default()
    };
    let mut e: Engine<u8, SplitMix64> = match Engine::new(
        config,
        SplitMix64::new(1),
        SplitMix64::new(2),
        Box::new(MemoryStore::new()),
        Box::new(NO_MODELS),
    ) {
        Ok(e) => e,
        Err(_) => return,
    };
    let mut now = Instant::ZERO;
    let mut mid: u16 = 0;
    let mut dm = Vec::new();
    let mut rest = data;
    // Each record: [op, peer, len, bytes...]
    while let [op, peer, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (chunk, next) = tail.split_at(len);
        rest = next;
        let peer = peer % 8;
        mid = mid.wrapping_add(1);
        let first = chunk.first().copied().unwrap_or(0);
        let loc = e
            .registrations()
            .nth(usize::from(first % 8))
            .map(|r| r.id.clone());
        let endpoint = e
            .registrations()
            .nth(usize::from(first % 8))
            .map(|r| r.endpoint.clone());
        match op % 8 {
            0 => e.handle_datagram(now, peer, chunk),
            1 => {
                let cf = if first & 1 == 0 { Some(40) } else { None };
                e.handle_datagram(now, peer, &request(mid, Code::POST, None, chunk, cf));
            }
            2 => {
                let d = request(mid, Code::POST, loc.as_deref(), chunk, Some(40));
                e.handle_datagram(now, peer, &d);
            }
            3 if first & 1 == 0 => {
                let d = request(mid, Code::DELETE, loc.as_deref(), &[], None);
                e.handle_datagram(now, peer, &d);
            }
            3 => {
                let cf = [110, 112, 11544, 0][usize::from(first >> 1) % 4];
                let d = send(mid, chunk.get(1..).unwrap_or_default(), cf);
                e.handle_datagram(now, peer, &d);
            }
            4 => {
                now = now + Duration::from_secs(u64::from(first) * 8);
                e.handle_timeout(now);
            }
            5 => {
                if let Some(ep) = endpoint {
                    let path = Path::Instance(3, u16::from(first));
                    let paths = [path, Path::Resource(1, 0, 1)];
                    let r = match first % 4 {
                        0 => e.read(now, &ep, path, Some(ContentFormat::TLV)),
                        1 => e.observe(now, &ep, path, None),
                        2 => e.read_composite(now, &ep, &paths, ContentFormat::SENML_CBOR, None),
                        _ => e.observe_composite(now, &ep, &paths, ContentFormat::SENML_JSON, None),
                    };
                    if let Ok(id) = r {
                        dm.push(id);
                    }
                }
            }
            6 => {
                if let Some(ep) = endpoint {
                    let node = Node::Resource(Resource::single(1, Value::Opaque(chunk.to_vec())));
                    let _ = e.write(
                        now,
                        &ep,
                        Path::Resource(5, 0, 1),
                        WriteMode::Replace,
                        ContentFormat::TLV,
                        &node,
                    );
                }
            }
            _ => {
                if let Some(id) = dm.pop() {
                    let _ = e.cancel_observe(now, id);
                }
            }
        }
        while e.poll_transmit().is_some() {}
        while e.poll_event().is_some() {}
        assert!(e.registration_count() <= 6);
    }
});
