//! TLV decoder: never panics; whatever decodes re-encodes and decodes to the same node.
//!
//! Input: first byte picks the request path and whether models are used, the
//! rest is the payload.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lwm2m_core::format::tlv;
use lwm2m_core::model::{ModelLookup, ObjectModel, Path, NO_MODELS};

#[path = "../common/models.rs"]
mod shared;

/// A small hand-made model: a single-instance object 3 (Device-like) and a
/// multiple-instance object 9000 with every type, single (0..=9) and multiple
/// (10..=19); built once.
fn models() -> &'static BTreeMap<u16, ObjectModel> {
    static MODELS: OnceLock<BTreeMap<u16, ObjectModel>> = OnceLock::new();
    MODELS.get_or_init(shared::tlv_models)
}

const PATHS: [Path; 16] = [
    Path::Root,
    Path::Object(3),
    Path::Object(9000),
    Path::Object(42),
    Path::Instance(3, 0),
    Path::Instance(9000, 1),
    Path::Instance(42, 0),
    Path::Resource(3, 0, 6),
    Path::Resource(9000, 0, 2),
    Path::Resource(9000, 0, 12),
    Path::Resource(9000, 0, 7),
    Path::Resource(42, 0, 0),
    Path::ResourceInstance(3, 0, 6, 0),
    Path::ResourceInstance(9000, 0, 11, 1),
    Path::ResourceInstance(9000, 0, 14, 2),
    Path::ResourceInstance(42, 0, 0, 0),
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, payload)) = data.split_first() else {
        return;
    };
    let path = PATHS[usize::from(sel) % PATHS.len()];
    let lookups: [&dyn ModelLookup; 2] = [&NO_MODELS, models()];
    for lookup in lookups {
        let Ok(node) = tlv::decode(payload, &path, lookup) else {
            continue;
        };
        let mut out = Vec::new();
        tlv::encode(&node, &path, &mut out).expect("a decoded node re-encodes");
        let again = tlv::decode(&out, &path, lookup).expect("re-encoded bytes decode");
        // Debug text, so that a NaN float compares equal to itself.
        assert_eq!(format!("{again:?}"), format!("{node:?}"));
        // The encoding is canonical: encoding again gives the same bytes.
        let mut out2 = Vec::new();
        tlv::encode(&again, &path, &mut out2).expect("re-encodes");
        assert_eq!(out, out2);
    }
});
