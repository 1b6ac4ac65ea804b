//! The web UI's bootstrap configuration editor in a real browser: starts the
//! `lwm2m-server` binary with its bootstrap server and runs
//! `interop-tests/ui/bootstrap_ui.mjs` (headless Chromium via
//! playwright-core), then checks through the API what the editor stored.
//! Same requirements as `web_ui.rs` (`./scripts/install-test-deps`).
#![cfg(all(unix, feature = "admin", feature = "sqlite"))]

use std::process::Command;

#[path = "support/browser.rs"]
mod browser;
use browser::{chromium_and_ui, HINT};
#[path = "support/server_process.rs"]
mod server_process;
use server_process::{http_get, Running};

#[test]
fn bootstrap_editor_saves_and_deletes_configurations() {
    let (chromium, ui) = chromium_and_ui();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Running::start([
        "--bootstrap".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--data-dir".as_ref(),
        dir.path().join("data").as_os_str(),
    ]);
    let (_, port) = server.ports();
    let addr = format!("127.0.0.1:{port}");

    let out = Command::new("node")
        .current_dir(&ui)
        .arg("bootstrap_ui.mjs")
        .arg(format!("http://{addr}/"))
        .arg("ui-bs")
        .env("CHROMIUM", &chromium)
        .output()
        .unwrap_or_else(|e| panic!("cannot run node: {e} ({HINT})"));
    assert!(
        out.status.success(),
        "bootstrap UI test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let saved = http_get(port, "/api/bootstrap/ui-bs");
    assert!(saved.starts_with("HTTP/1.1 200"), "{saved}");
    assert!(saved.contains(r#""lifetime":77"#), "{saved}");
    let gone = http_get(port, "/api/bootstrap/ui-bs-tmp");
    assert!(gone.starts_with("HTTP/1.1 404"), "{gone}");
    let bad = http_get(port, "/api/bootstrap/ui-bs-bad");
    assert!(bad.starts_with("HTTP/1.1 404"), "{bad}");
    drop(server);
}
