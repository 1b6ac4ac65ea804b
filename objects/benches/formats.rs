//! Encode and decode a 20-resource Device instance (/3/0) in every format
//! that carries an instance, decoding typed by the standard models.
//! Results and the command are recorded in BENCHMARKS.md.
#![allow(missing_docs)]

#[path = "../tests/fixtures/device.rs"]
mod device;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use lwm2m_core::format::{self, ContentFormat};
use lwm2m_core::model::Path;
use lwm2m_objects::Registry;

fn bench(c: &mut Criterion) {
    let registry = Registry::standard();
    let node = device::device_instance();
    let path = Path::Instance(3, 0);
    for (name, cf) in [
        ("tlv", ContentFormat::TLV),
        ("senml_json", ContentFormat::SENML_JSON),
        ("senml_cbor", ContentFormat::SENML_CBOR),
        ("lwm2m_cbor", ContentFormat::LWM2M_CBOR),
        ("lwm2m_json", ContentFormat::LWM2M_JSON),
    ] {
        let mut bytes = Vec::new();
        format::encode(cf, &node, &path, &mut bytes).unwrap();
        assert_eq!(format::decode(cf, &bytes, &path, &registry).unwrap(), node);
        let mut g = c.benchmark_group(format!("device_3_0/{name}"));
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        let mut out = Vec::with_capacity(1024);
        g.bench_function("encode", |b| {
            b.iter(|| {
                out.clear();
                format::encode(cf, black_box(&node), &path, &mut out).unwrap();
                out.len()
            })
        });
        g.bench_function("decode", |b| {
            b.iter(|| format::decode(cf, black_box(&bytes), &path, &registry).unwrap())
        });
        g.finish();
        println!("device_3_0/{name}: {} bytes", bytes.len());
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
