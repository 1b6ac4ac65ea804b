//! text/plain decoder: never panics; whatever decodes re-encodes to text that
//! decodes to the same value.
//!
//! Input: first byte picks the resource (and so the type) and the depth, the
//! rest is the text.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lwm2m_core::format::text;
use lwm2m_core::model::{ModelLookup, ObjectModel, Path, NO_MODELS};

#[path = "../common/models.rs"]
mod shared;

/// Object 9000: resource i (single) and 10 + i (multiple) have type
/// `shared::EVERY_TYPE[i]`; built once.
fn models() -> &'static BTreeMap<u16, ObjectModel> {
    static MODELS: OnceLock<BTreeMap<u16, ObjectModel>> = OnceLock::new();
    MODELS.get_or_init(shared::text_models)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, payload)) = data.split_first() else {
        return;
    };
    let r = u16::from(sel % 20);
    let path = if sel & 0x80 != 0 {
        Path::ResourceInstance(9000, 0, r, 1)
    } else {
        Path::Resource(9000, 0, r)
    };
    let lookups: [&dyn ModelLookup; 2] = [&NO_MODELS, models()];
    for lookup in lookups {
        let Ok(node) = text::decode(payload, &path, lookup) else {
            continue;
        };
        let mut out = Vec::new();
        text::encode(&node, &path, &mut out).expect("a decoded value re-encodes");
        let again = text::decode(&out, &path, lookup).expect("re-encoded text decodes");
        assert_eq!(again, node);
    }
});
