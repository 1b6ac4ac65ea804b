//! SenML CBOR decoders must never panic, and whatever they accept must encode
//! and decode back to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_core::format::senml_cbor;
use lwm2m_core::model::{ModelLookup, NO_MODELS};

#[path = "../common/models.rs"]
mod shared;

fuzz_target!(|data: &[u8]| {
    let models = shared::cbor_models();
    for m in [&NO_MODELS as &dyn ModelLookup, &models] {
        let values = senml_cbor::decode_values(data, m);
        let first = values.as_ref().ok().and_then(|v| v.first()).map(|v| v.path);
        for path in shared::cbor_request_paths(first) {
            if let Ok(node) = senml_cbor::decode(data, &path, m) {
                let mut out = Vec::new();
                senml_cbor::encode(&node, &path, &mut out).expect("a decoded node encodes");
                let again = senml_cbor::decode(&out, &path, m).expect("an encoded node decodes");
                // Debug compares NaN floats as equal, which PartialEq does not.
                assert_eq!(format!("{node:?}"), format!("{again:?}"));
                let mut out2 = Vec::new();
                senml_cbor::encode(&again, &path, &mut out2).expect("encodes again");
                assert_eq!(out, out2, "encoding is deterministic");
            }
        }
        if let Ok(values) = values {
            let mut out = Vec::new();
            senml_cbor::encode_values(&values, &mut out).expect("decoded values encode");
            let again = senml_cbor::decode_values(&out, m).expect("encoded values decode");
            assert_eq!(format!("{values:?}"), format!("{again:?}"));
        }
    }
    if let Ok(paths) = senml_cbor::decode_paths(data) {
        let mut out = Vec::new();
        senml_cbor::encode_paths(&paths, &mut out).expect("decoded paths encode");
        assert_eq!(senml_cbor::decode_paths(&out), Ok(paths));
    }
});
