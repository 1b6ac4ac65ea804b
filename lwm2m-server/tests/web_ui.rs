//! The web UI in a real browser: starts the `lwm2m-server` binary, registers
//! a scripted device, and runs `interop-tests/ui/web_ui.mjs`, which drives
//! Debian's headless Chromium with playwright-core to open the page, click
//! the client, Read /3/0 and see the manufacturer.
//!
//! Needs `node`, Debian's `chromium` (or `CHROMIUM=/path`) and
//! `interop-tests/ui/node_modules` (`npm ci` there); `./scripts/install-test-deps`
//! installs all three. A missing one fails the test with that hint.
#![cfg(all(unix, feature = "admin", feature = "sqlite"))]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod udp_device;
use udp_device::Device;

const HINT: &str = "run ./scripts/install-test-deps from the repository root";

fn ui_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../interop-tests/ui")
}

fn chromium() -> PathBuf {
    let p = std::env::var_os("CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from);
    assert!(
        p.is_file(),
        "Chromium not found at {} ({HINT})",
        p.display()
    );
    p
}

/// The server binary, killed when dropped.
struct ServerProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    fn start(data_dir: &std::path::Path) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lwm2m-server"))
            .args([
                "--coap",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--bootstrap",
                "none",
                "--data-dir",
            ])
            .arg(data_dir)
            .env_remove("LWM2M_COAP")
            .env_remove("LWM2M_HTTP")
            .env_remove("LWM2M_BOOTSTRAP")
            .env_remove("LWM2M_REDIS")
            .env_remove("LWM2M_DATA_DIR")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start lwm2m-server");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ServerProcess { child, lines }
    }

    /// CoAP and HTTP addresses from the "listening" line.
    fn addresses(&self) -> (String, String) {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .expect("the server logs its listening line");
            if line.contains("LwM2M server listening") {
                let get = |key: &str| {
                    line.split_whitespace()
                        .find_map(|w| w.strip_prefix(key))
                        .unwrap_or_else(|| panic!("{key} in {line}"))
                        .to_string()
                };
                return (get("coap="), get("http="));
            }
        }
    }
}

#[tokio::test]
async fn browser_reads_the_manufacturer() {
    let chromium = chromium();
    let ui = ui_dir();
    assert!(
        ui.join("node_modules/playwright-core").is_dir(),
        "playwright-core not installed in {} ({HINT})",
        ui.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let (coap, http) = server.addresses();

    let device = Device::spawn(21).await;
    device
        .register(coap.parse().unwrap(), "ep=ui-dev&lt=300&lwm2m=1.1")
        .await;

    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .current_dir(&ui)
            .arg("web_ui.mjs")
            .arg(format!("http://{http}/"))
            .args(["ui-dev", "Open Mobile Alliance"])
            .env("CHROMIUM", chromium)
            .output()
            .unwrap_or_else(|e| panic!("cannot run node: {e} ({HINT})"))
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "web UI test failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ok: ui-dev /3/0/0 = Open Mobile Alliance")
    );
    drop(server);
}
