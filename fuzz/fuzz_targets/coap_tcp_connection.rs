//! Arbitrary bytes as the peer's side of a CoAP-over-TCP connection, split at
//! a fuzzer-chosen point: the connection never panics, keeps its input
//! buffer within Max-Message-Size, and everything it writes parses as frames.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lwm2m_core::coap::tcp;
use lwm2m_core::coap::tcp_endpoint::{TcpConfig, TcpConnection, TcpEvent};
use lwm2m_core::coap::{Code, Response};
use lwm2m_core::rng::SplitMix64;

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let config = TcpConfig {
        max_message_size: 512,
        ..TcpConfig::default()
    };
    let mut c = TcpConnection::new(config, SplitMix64::new(1));
    let at = usize::from(split).min(data.len());
    for chunk in [&data[..at], &data[at..]] {
        c.handle_bytes(chunk);
        assert!(c.buffered_input() <= 512);
        while let Some(event) = c.poll_event() {
            if let TcpEvent::Request { id, .. } = event {
                let _ = c.respond(id, Response::new(Code::CONTENT));
            }
        }
    }
    let out = c.take_outgoing();
    let mut rest = &out[..];
    while !rest.is_empty() {
        let len = tcp::frame_len(rest, usize::MAX)
            .expect("our frames have valid headers")
            .expect("our frames are complete");
        tcp::parse(&rest[..len]).expect("our frames parse");
        rest = &rest[len..];
    }
});
