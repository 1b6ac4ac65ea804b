//! Arbitrary bytes into the UDP codec: parse, check options, re-encode.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lwm2m_core::coap::{Message, MessageWriter};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::parse(data) else { return };
    let _ = m.check_options();
    let _ = (
        m.content_format(),
        m.accept(),
        m.observe(),
        m.block1(),
        m.block2(),
        m.size1(),
        m.size2(),
    );
    let mut buf = Vec::new();
    let mut w = MessageWriter::udp(&mut buf, m.mtype, m.code, m.message_id, m.token)
        .expect("parsed token fits");
    for o in m.options() {
        w.option(o.number, o.value)
            .expect("parsed options are ordered and bounded");
    }
    w.finish(m.payload);
    let again = Message::parse(&buf).expect("our own encoding parses");
    assert!(again.options().eq(m.options()));
    assert_eq!(again.payload, m.payload);
    assert_eq!(again.token, m.token);
});
