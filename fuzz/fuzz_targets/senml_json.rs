//! SenML JSON decoders on arbitrary input: never panic, and whatever decodes
//! encodes and decodes again to the same thing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_core::format::senml_json::{
    decode, decode_paths, decode_values, encode, encode_paths, encode_values,
};
use lwm2m_core::model::{ModelLookup, NO_MODELS};

#[path = "../common/models.rs"]
mod shared;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let path = shared::JSON_PATHS[usize::from(selector) % shared::JSON_PATHS.len()];
    let models = shared::json_models();
    for models in [&NO_MODELS as &dyn ModelLookup, &models] {
        if let Ok(node) = decode(payload, &path, models) {
            let mut out = Vec::new();
            encode(&node, &path, &mut out).expect("a decoded node encodes");
            let again = decode(&out, &path, models).expect("our own encoding decodes");
            assert_eq!(again, node);
        }
        if let Ok(values) = decode_values(payload, models) {
            let mut out = Vec::new();
            encode_values(&values, &mut out).expect("decoded values encode");
            let again = decode_values(&out, models).expect("our own encoding decodes");
            assert_eq!(again, values);
        }
    }
    if let Ok(paths) = decode_paths(payload) {
        let mut out = Vec::new();
        encode_paths(&paths, &mut out).expect("decoded paths encode");
        assert_eq!(decode_paths(&out).expect("our own encoding decodes"), paths);
    }
});
