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
use lwm2m_core::model::{
    ModelLookup, ObjectModel, Operations, Path, ResourceModel, ResourceType, NO_MODELS,
};

const TYPES: [ResourceType; 10] = [
    ResourceType::Integer,
    ResourceType::UnsignedInteger,
    ResourceType::Float,
    ResourceType::Boolean,
    ResourceType::String,
    ResourceType::Opaque,
    ResourceType::Time,
    ResourceType::ObjLnk,
    ResourceType::CoreLnk,
    ResourceType::None,
];

/// Object 9000: resource i (single) and 10 + i (multiple) have type TYPES[i].
fn models() -> &'static BTreeMap<u16, ObjectModel> {
    static MODELS: OnceLock<BTreeMap<u16, ObjectModel>> = OnceLock::new();
    MODELS.get_or_init(|| {
        let mut resources = BTreeMap::new();
        for (i, &resource_type) in TYPES.iter().enumerate() {
            for (id, multiple) in [(i as u16, false), (10 + i as u16, true)] {
                let m = ResourceModel {
                    id,
                    name: String::new(),
                    operations: Operations::ReadWrite,
                    multiple,
                    mandatory: false,
                    resource_type,
                    range: String::new(),
                    units: String::new(),
                    description: String::new(),
                };
                resources.insert(id, m);
            }
        }
        let mut m = BTreeMap::new();
        m.insert(
            9000,
            ObjectModel {
                id: 9000,
                name: String::new(),
                version: "1.0".into(),
                lwm2m_version: "1.1".into(),
                multiple: true,
                mandatory: false,
                description: String::new(),
                resources,
            },
        );
        m
    })
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
