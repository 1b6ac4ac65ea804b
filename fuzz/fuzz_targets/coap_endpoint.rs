//! A sequence of datagrams from a few peers, interleaved with time passing,
//! application answers, notifications and new requests, into one Endpoint.
//! Nothing may panic and the endpoint's bounds must hold.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Endpoint, EndpointConfig, Event, Request, Response};
use lwm2m_core::rng::SplitMix64;
use lwm2m_core::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let config = EndpointConfig {
        block_size: 64,
        max_body_size: 4096,
        max_dedup_per_peer: 4,
        max_dedup_total: 16,
        max_queued_per_peer: 4,
        max_pending_incoming: 8,
        ..EndpointConfig::default()
    };
    let mut ep: Endpoint<u8, SplitMix64> = Endpoint::new(config, SplitMix64::new(1));
    let mut now = Instant::ZERO;
    let mut incoming = Vec::new();
    let mut observations = Vec::new();
    let mut rest = data;
    // Each record: [op, peer, len, bytes...]
    while let [op, peer, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (chunk, next) = tail.split_at(len);
        rest = next;
        let peer = peer % 4;
        match op % 6 {
            0 | 1 => ep.handle_datagram(now, peer, chunk),
            2 => {
                now = now
                    + Duration::from_millis(u64::from(chunk.first().copied().unwrap_or(0)) * 500);
                ep.handle_timeout(now);
            }
            3 => {
                if let Some(id) = incoming.pop() {
                    let resp = Response::new(Code::CONTENT).with_payload(0, chunk.repeat(8));
                    if chunk.first().is_some_and(|b| b & 1 == 1) {
                        if let Some(obs) = ep.respond_observe(now, id, resp) {
                            observations.push(obs);
                        }
                    } else {
                        ep.respond(now, id, resp);
                    }
                }
            }
            4 => {
                let mut req = Request::new(Code::PUT)
                    .with_path("/5/0/0")
                    .with_payload(42, chunk.repeat(4));
                if chunk.first().is_some_and(|b| b & 1 == 1) {
                    req = Request::new(Code::GET)
                        .with_path("/3/0")
                        .with_uint_option(number::OBSERVE, 0);
                }
                let _ = ep.send_request(now, peer, req);
            }
            _ => {
                if let Some(obs) = observations.last() {
                    ep.notify(
                        now,
                        *obs,
                        Response::new(Code::CONTENT).with_payload(0, chunk.repeat(10)),
                        len % 2 == 0,
                    );
                }
            }
        }
        while let Some(e) = ep.poll_event() {
            if let Event::Request { id, .. } = e {
                incoming.push(id);
            }
        }
        while ep.poll_transmit().is_some() {}
        assert!(ep.remembered_ids() <= 16);
    }
});
