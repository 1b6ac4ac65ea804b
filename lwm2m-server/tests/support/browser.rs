//! What the headless-Chromium tests need besides the server: Debian's
//! chromium (or `CHROMIUM=/path`) and playwright-core installed in
//! `interop-tests/ui` (the browser scripts live there too). A missing one
//! fails the test with a hint at `./scripts/install-test-deps`.
#![allow(dead_code)]

use std::path::PathBuf;

/// What to run when something is missing.
pub const HINT: &str = "run ./scripts/install-test-deps from the repository root";

/// The Chromium binary and the `interop-tests/ui` directory (scripts and
/// their playwright-core), both checked to exist.
pub fn chromium_and_ui() -> (PathBuf, PathBuf) {
    let chromium =
        std::env::var_os("CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from);
    assert!(
        chromium.is_file(),
        "Chromium not found at {} ({HINT})",
        chromium.display()
    );
    let ui = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../interop-tests/ui");
    assert!(
        ui.join("node_modules/playwright-core").is_dir(),
        "playwright-core not installed in {} ({HINT})",
        ui.display()
    );
    (chromium, ui)
}
