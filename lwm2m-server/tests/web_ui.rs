//! The web UI in a real browser: starts the `lwm2m-server` binary, registers
//! a scripted device, and runs `interop-tests/ui/web_ui.mjs`, which drives
//! Debian's headless Chromium with playwright-core to open the page, click
//! the client, Read /3/0 and see the manufacturer; and
//! `interop-tests/ui/composite_ui.mjs` (both on `interop-tests/ui/browser.mjs`
//! and its playwright-core), which drives the composite panel: Read-, Write- and
//! Observe-Composite of resources ticked in the object tree.
//!
//! The device here is scripted in process, so the tests can check what
//! reached it on the wire. The same `web_ui.mjs` against our real demo
//! client binary (`lwm2m-client`, registered to the `lwm2m-server` binary)
//! is `web_ui_reads_the_demo_clients_manufacturer` in
//! `interop-tests/tests/web_ui_demo.rs`: that crate depends on both
//! binaries, this one only on the server.
//!
//! Needs `node`, Debian's `chromium` (or `CHROMIUM=/path`) and
//! `interop-tests/ui/node_modules` (`npm ci` there); `./scripts/install-test-deps`
//! installs all three. A missing one fails the test with that hint.
#![cfg(all(unix, feature = "admin", feature = "sqlite"))]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "support/browser.rs"]
mod browser;
use browser::{chromium_and_ui, HINT};
#[path = "support/server_process.rs"]
mod server_process;
use server_process::Running;
mod udp_device;
use udp_device::Device;

/// What a browser test needs: Chromium, the playwright-core directory, a
/// server binary and a scripted device registered to it as `endpoint`.
struct UiRun {
    chromium: PathBuf,
    ui: PathBuf,
    server: Running,
    /// The admin API's address.
    http: String,
    device: Device,
    _dir: tempfile::TempDir,
}

impl UiRun {
    async fn start(seed: u64, endpoint: &str) -> UiRun {
        let (chromium, ui) = chromium_and_ui();
        let dir = tempfile::tempdir().unwrap();
        let mut server = Running::start([
            "--bootstrap".as_ref(),
            "none".as_ref(),
            "--data-dir".as_ref(),
            dir.path().join("data").as_os_str(),
        ]);
        let (coap, http) = server.ports();
        let http = format!("127.0.0.1:{http}");
        let device = Device::spawn(seed).await;
        device
            .register(
                ([127, 0, 0, 1], coap).into(),
                &format!("ep={endpoint}&lt=300&lwm2m=1.1"),
            )
            .await;
        UiRun {
            chromium,
            ui,
            server,
            http,
            device,
            _dir: dir,
        }
    }
}

#[tokio::test]
async fn browser_reads_the_manufacturer() {
    let UiRun {
        chromium,
        ui,
        server,
        http,
        device: _device,
        _dir,
    } = UiRun::start(21, "ui-dev").await;

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

/// The composite panel: `interop-tests/ui/composite_ui.mjs` ticks /3/0/0 and /3/0/1,
/// Read-Composite shows the manufacturer and model; Write-Composite of
/// /1/0/1 reaches the device and is read back; Observe-Composite of /3/0/9
/// shows the value of a notification the device sends once the script says
/// "observing", then cancels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_reads_writes_and_observes_composite() {
    use lwm2m_core::coap::option::number;
    use lwm2m_core::coap::{Code, Response};
    use lwm2m_core::format::{self, ContentFormat};
    use lwm2m_core::model::{Path, TimestampedValue, Value};

    let UiRun {
        chromium,
        ui,
        server,
        http,
        device,
        _dir,
    } = UiRun::start(22, "ui-comp").await;

    let mut child = Command::new("node")
        .current_dir(&ui)
        .arg("composite_ui.mjs")
        .arg(format!("http://{http}/"))
        .args([
            "ui-comp",
            "Open Mobile Alliance",
            "Lightweight M2M Client",
            "17",
        ])
        .env("CHROMIUM", chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node: {e} ({HINT})"));
    let stdout = child.stdout.take().unwrap();
    let (observing_tx, mut observing) = tokio::sync::mpsc::unbounded_channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line == "observing" {
                let _ = observing_tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    // None: the script ended first; its output says why.
    if let Ok(Some(())) = tokio::time::timeout(Duration::from_secs(90), observing.recv()).await {
        let observe = device.last_request();
        assert_eq!(
            (observe.code, observe.options.uint(number::OBSERVE)),
            (Code::FETCH, Some(0)),
            "the UI's Observe-Composite reached the device"
        );
        let mut payload = Vec::new();
        let values = [TimestampedValue {
            path: Path::Resource(3, 0, 9),
            value: Value::Integer(17),
            time: None,
        }];
        format::encode_values(ContentFormat::SENML_CBOR, &values, &mut payload).unwrap();
        device
            .cmds
            .send(udp_device::Cmd::Notify(
                Response::new(Code::CONTENT).with_payload(ContentFormat::SENML_CBOR.0, payload),
            ))
            .await
            .unwrap();
    }
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    let stdout = reader.join().unwrap();
    assert!(
        out.status.success(),
        "composite UI test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "ok: read-composite ui-comp /3/0/0 = Open Mobile Alliance, /3/0/1 = Lightweight M2M Client"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("ok: cancelled"), "{stdout}");
    // On the wire: the Write-Composite and the cancel.
    let seen = device.seen.lock().unwrap().requests.clone();
    let models = lwm2m_objects::Registry::standard();
    let written: Vec<_> = seen
        .iter()
        .filter(|r| r.code == Code::IPATCH)
        .flat_map(|r| {
            let cf = ContentFormat(r.options.uint(number::CONTENT_FORMAT).unwrap() as u16);
            format::decode_values(cf, &r.payload, &models).unwrap()
        })
        .map(|v| (v.path, v.value))
        .collect();
    assert_eq!(
        written,
        [(Path::Resource(1, 0, 1), Value::UnsignedInteger(77))]
    );
    let last = seen.last().unwrap();
    assert_eq!(
        (last.code, last.options.uint(number::OBSERVE)),
        (Code::FETCH, Some(1)),
        "the cancel reached the device"
    );
    drop(server);
}
