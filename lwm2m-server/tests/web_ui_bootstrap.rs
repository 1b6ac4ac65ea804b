//! The web UI's bootstrap configuration editor in a real browser: starts the
//! `lwm2m-server` binary with its bootstrap server and runs
//! `interop-tests/ui/bootstrap_ui.mjs` (headless Chromium via
//! playwright-core), then checks through the API what the editor stored.
//! Same requirements as `web_ui.rs` (`./scripts/install-test-deps`).
#![cfg(all(unix, feature = "admin", feature = "sqlite"))]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const HINT: &str = "run ./scripts/install-test-deps from the repository root";

/// The server binary, killed when dropped.
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http(port: &str, method: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn bootstrap_editor_saves_and_deletes_configurations() {
    let ui = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../interop-tests/ui");
    let chromium =
        std::env::var_os("CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from);
    assert!(chromium.is_file(), "Chromium not found ({HINT})");
    assert!(
        ui.join("node_modules/playwright-core").is_dir(),
        "playwright-core not installed in {} ({HINT})",
        ui.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lwm2m-server"))
        .args([
            "--coap",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--bootstrap",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .env_remove("LWM2M_COAP")
        .env_remove("LWM2M_HTTP")
        .env_remove("LWM2M_BOOTSTRAP")
        .env_remove("LWM2M_REDIS")
        .env_remove("LWM2M_DATA_DIR")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lwm2m-server");
    let stderr = child.stderr.take().unwrap();
    let _server = ServerProcess(child);
    let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
    let line = lines
        .find(|l| l.contains("LwM2M server listening"))
        .expect("listening line");
    // Keep reading the log so the server never writes to a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http="))
        .expect("http= in the listening line")
        .to_string();
    let port = addr.rsplit(':').next().unwrap().to_string();

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
    let saved = http(&port, "GET", "/api/bootstrap/ui-bs");
    assert!(saved.starts_with("HTTP/1.1 200"), "{saved}");
    assert!(saved.contains(r#""lifetime":77"#), "{saved}");
    let gone = http(&port, "GET", "/api/bootstrap/ui-bs-tmp");
    assert!(gone.starts_with("HTTP/1.1 404"), "{gone}");
    let bad = http(&port, "GET", "/api/bootstrap/ui-bs-bad");
    assert!(bad.starts_with("HTTP/1.1 404"), "{bad}");
}
