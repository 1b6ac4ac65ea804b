//! Parse and serialize a typical Register request and a 1 KiB Block2
//! response, with our codec and with coap-lite on the same bytes, in one run.
//! Results and the command are recorded in BENCHMARKS.md.
#![allow(missing_docs)]

use coap_lite::Packet;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{BlockValue, Code, Message, MessageType, MessageWriter};

fn register_request() -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = MessageWriter::udp(
        &mut buf,
        MessageType::Con,
        Code::POST,
        0x1234,
        &[1, 2, 3, 4, 5, 6, 7, 8],
    )
    .unwrap();
    w.option(number::URI_PATH, b"rd").unwrap();
    w.uint_option(number::CONTENT_FORMAT, 40).unwrap();
    for q in [
        "ep=urn:imei:490154203237518",
        "lt=86400",
        "lwm2m=1.1",
        "b=U",
    ] {
        w.option(number::URI_QUERY, q.as_bytes()).unwrap();
    }
    w.finish(b"</>;rt=\"oma.lwm2m\";ct=\"60 110 112 11542 11543\",</1>;ver=1.1,</1/0>,</3>;ver=1.1,</3/0>,</4/0>,</5/0>,</6/0>,</7/0>");
    buf
}

fn block2_response() -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = MessageWriter::udp(
        &mut buf,
        MessageType::Ack,
        Code::CONTENT,
        0x4321,
        &[9, 9, 9, 9],
    )
    .unwrap();
    w.uint_option(number::CONTENT_FORMAT, 42).unwrap();
    w.uint_option(
        number::BLOCK2,
        BlockValue::new(3, true, 1024).unwrap().encode(),
    )
    .unwrap();
    w.uint_option(number::SIZE2, 65536).unwrap();
    w.finish(&[0xA5; 1024]);
    buf
}

/// Parse, read the fields an LwM2M server looks at, serialize again.
fn ours_round_trip(bytes: &[u8], out: &mut Vec<u8>) -> usize {
    let m = Message::parse(bytes).unwrap();
    let mut n = m.payload.len() + m.content_format().unwrap_or(0) as usize;
    n += m.uri_query().count() + m.block2().map_or(0, |b| b.num as usize);
    out.clear();
    let mut w = MessageWriter::udp(out, m.mtype, m.code, m.message_id, m.token).unwrap();
    for o in m.options() {
        w.option(o.number, o.value).unwrap();
    }
    n + w.finish(m.payload)
}

fn coap_lite_round_trip(bytes: &[u8]) -> usize {
    let p = Packet::from_bytes(bytes).unwrap();
    let mut n = p.payload.len();
    n += p
        .get_option(coap_lite::CoapOption::UriQuery)
        .map_or(0, |q| q.len());
    n += p
        .get_first_option(coap_lite::CoapOption::Block2)
        .map_or(0, |b| b.len());
    n + p.to_bytes_unlimited().unwrap().len()
}

fn bench(c: &mut Criterion) {
    for (name, bytes) in [
        ("register_request", register_request()),
        ("block2_1k_response", block2_response()),
    ] {
        // Same input, same answer: the two codecs agree before we time them.
        let mut out = Vec::with_capacity(2048);
        ours_round_trip(&bytes, &mut out);
        assert_eq!(out, bytes);
        assert_eq!(
            Packet::from_bytes(&bytes)
                .unwrap()
                .to_bytes_unlimited()
                .unwrap(),
            bytes
        );

        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function("parse/ours", |b| {
            b.iter(|| {
                let m = Message::parse(black_box(&bytes)).unwrap();
                (m.uri_query().count(), m.block2(), m.payload.len())
            })
        });
        g.bench_function("parse/coap-lite", |b| {
            b.iter(|| Packet::from_bytes(black_box(&bytes)).unwrap().payload.len())
        });
        g.bench_function("round_trip/ours", |b| {
            b.iter(|| ours_round_trip(black_box(&bytes), &mut out))
        });
        g.bench_function("round_trip/coap-lite", |b| {
            b.iter(|| coap_lite_round_trip(black_box(&bytes)))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
