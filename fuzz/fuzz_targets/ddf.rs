//! Arbitrary text into the OMA DDF XML loader; whatever parses must also go
//! through the code generator, and parsing must be deterministic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(models) = lwm2m_objects::ddf::parse(xml) else {
        return;
    };
    assert_eq!(lwm2m_objects::ddf::parse(xml).ok(), Some(models.clone()));
    let _ = lwm2m_objects::codegen::generate(&models);
});
