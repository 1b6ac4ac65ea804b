//! `bootstrap.json` parsing and validation on arbitrary text: typed errors,
//! never a panic; whatever parses also serializes and parses back equal.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lwm2m_server::bootstrap::BootstrapFile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(file) = BootstrapFile::from_json(text) {
        for c in file.endpoints.values() {
            let _ = c.to_values();
            let _ = c.writes();
        }
        let json = file.to_json().expect("a parsed file serializes");
        let again = BootstrapFile::from_json(&json).expect("a serialized file parses");
        assert_eq!(again, file);
    }
});
