//! Link format (RFC 6690) and LwM2M attribute parsing on arbitrary input.
//!
//! The same bytes go through the generic link parser, the registration,
//! Discover and Bootstrap-Discover interpretations, and (split on '&', as a
//! query string would be) the attribute and Write-Attributes query parsers.
//! Whatever parses must write back and parse to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lwm2m_core::format::link::{
    decode_discover, decode_links, encode_discover, links_to_string, BootstrapDiscover,
    RegistrationLinks,
};
use lwm2m_core::model::{AttributeUpdate, Attributes, Path};

fuzz_target!(|data: &[u8]| {
    if let Ok(links) = decode_links(data) {
        let text = links_to_string(&links).expect("parsed links must be writable");
        let again = decode_links(text.as_bytes()).expect("written links must parse");
        assert_eq!(again, links);
    }

    if let Ok(reg) = RegistrationLinks::decode(data) {
        let mut out = Vec::new();
        reg.encode(&mut out)
            .expect("decoded registration must encode");
        let again = RegistrationLinks::decode(&out).expect("encoded registration must decode");
        assert_eq!(again, reg);
    }

    if let Ok(entries) = decode_discover(data, Some("/lwm2m")) {
        let mut out = Vec::new();
        if encode_discover(&entries, &mut out).is_ok() {
            let again = decode_discover(&out, None).expect("encoded discover must decode");
            assert_eq!(again, entries);
        }
    }

    if let Ok(bd) = BootstrapDiscover::decode(data) {
        let mut out = Vec::new();
        // An entry for "/" with other attributes than lwm2m has no encoding; skip those.
        if bd.encode(&mut out).is_ok() {
            let again =
                BootstrapDiscover::decode(&out).expect("encoded bootstrap-discover must decode");
            assert_eq!(again, bd);
        }
    }

    if let Ok(text) = core::str::from_utf8(data) {
        if let Ok(attrs) = Attributes::from_query(text.split('&')) {
            let q = attrs.to_query();
            let again = Attributes::from_query(q.iter().map(String::as_str))
                .expect("written query must parse");
            assert_eq!(again, attrs);
            let _ = attrs.validate_for(&Path::Resource(3303, 0, 5700), None);
            let _ = Attributes::inherit(&[&attrs, &attrs]);
        }
        if let Ok(update) = AttributeUpdate::from_query(text.split('&')) {
            let q = update.to_query();
            let again = AttributeUpdate::from_query(q.iter().map(String::as_str))
                .expect("written update must parse");
            assert_eq!(again, update);
            let _ = update.apply_to(&Attributes::new()).validate();
        }
    }
});
