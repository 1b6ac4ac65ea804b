//! Arbitrary bytes as a TCP byte stream: split into frames, parse each, re-encode.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lwm2m_core::coap::{tcp, MessageWriter};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some(len)) = tcp::frame_len(rest, 64 * 1024) {
        let Some(frame) = rest.get(..len) else { break };
        rest = &rest[len..];
        let Ok(m) = tcp::parse(frame) else { continue };
        let _ = m.check_options();
        let mut buf = Vec::new();
        let mut w = MessageWriter::tcp(&mut buf, m.code, m.token).expect("parsed token fits");
        for o in m.options() {
            w.option(o.number, o.value).expect("ordered");
        }
        w.finish(m.payload);
        let again = tcp::parse(&buf).expect("our own frame parses");
        assert!(again.options().eq(m.options()));
        assert_eq!(again.payload, m.payload);
    }
});
