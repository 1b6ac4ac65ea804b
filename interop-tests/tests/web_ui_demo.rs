//! The web UI in headless Chromium against our real demo client: the
//! `lwm2m-server` binary (free loopback ports, data in a temporary
//! directory), the `lwm2m-client` demo binary registered to it, and
//! `interop-tests/ui/web_ui.mjs` (playwright-core driving Debian's
//! `chromium`), which opens the page, clicks the client, Reads /3/0 and
//! sees the demo's manufacturer, then Writes /1/0/1 (Lifetime) through the
//! prompt and sees it read back from the client.
//!
//! `web_ui_updates_the_firmware_of_demo_clients` drives the firmware part
//! (`interop-tests/ui/firmware_ui.mjs`) against four demo clients:
//! packages uploaded on the page, a one-device update, a failing one and a
//! two-device campaign started there, a campaign over a frozen device
//! paused, resumed and cancelled there; checked on the page, in the admin
//! API and on the devices (/3/0/3, /5/0/5).
//!
//! `lwm2m-server/tests/web_ui.rs` drives the same script against a scripted
//! in-process device; this one is the issue's "register a demo client, open
//! the page, read /3/0, see the manufacturer" end to end.
//!
//! Needs `node` (or `NODE=/path`), Debian's `chromium` (or
//! `CHROMIUM=/path`) and playwright-core in `interop-tests/ui/node_modules`;
//! `./scripts/install-test-deps` installs all three, and a missing one fails
//! the test with that hint. Every process is bounded in time and reaped by
//! its [`PeerProcess`] guard.

use std::process::Command;
use std::time::Duration;

use interop_tests::demo::{
    field, hex, json_of, read_value, spawn_demo_server, strip_ansi, wait_registered,
    DemoServerAddrs, STEP,
};
use interop_tests::{cargo_bin, chromium, node_interpreter, web_ui_dir, PeerProcess, TempDir};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// What the demo client reports as /3/0/0 (`lwm2m-client/src/bin/lwm2m-client.rs`).
const MANUFACTURER: &str = "lwm2m-rs";
/// Bound of each process: the browser script waits at most 15 s per step.
const LIFE: Duration = Duration::from_secs(120);
/// Bound of the browser script as a whole.
const BROWSER: Duration = Duration::from_secs(90);

/// The browser's output and each named process's, for failure messages.
fn logs(browser: &str, procs: &[(&str, &PeerProcess)]) -> String {
    let mut out = format!("browser:\n{browser}");
    for (name, p) in procs {
        out.push_str(&format!("\n{name}:\n{}", p.output()));
    }
    out
}

#[test]
fn web_ui_reads_the_demo_clients_manufacturer() {
    // Tools first: a missing one fails before any process starts.
    let node = node_interpreter();
    let chromium = chromium();
    let ui = web_ui_dir();
    let server_bin = cargo_bin("lwm2m-server", "lwm2m-server");
    let client_bin = cargo_bin("lwm2m-client", "lwm2m-client");
    let dir = TempDir::new().unwrap();
    let (mut server, addrs) = spawn_demo_server(&server_bin, dir.path().join("data"), LIFE);

    let ep = "web-ui-demo";
    let mut cmd = Command::new(&client_bin);
    cmd.args(["--endpoint", ep, "--server"])
        .arg(format!("coap://{}", addrs.coap))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let mut client = PeerProcess::spawn(cmd, LIFE).unwrap();
    let registered = wait_registered(&mut server, &client, ep);
    let id = field(&registered, "id")
        .expect("id= in the registered line")
        .to_string();

    let mut cmd = Command::new(&node);
    cmd.current_dir(&ui)
        .arg(ui.join("web_ui.mjs"))
        .arg(format!("http://{}/", addrs.http))
        .args([ep, MANUFACTURER])
        .env("CHROMIUM", &chromium);
    let mut browser = PeerProcess::spawn(cmd, BROWSER).unwrap();
    let status = browser.wait_timeout(BROWSER + STEP);
    let out = browser.output();
    assert!(
        status.is_some_and(|s| s.success()),
        "web UI test failed ({status:?}):\n{}",
        logs(&out, &[("server", &server), ("client", &client)])
    );
    let expected = format!("ok: {ep} /3/0/0 = {MANUFACTURER}, /1/0/1 written");
    assert!(
        out.lines().any(|l| l == expected),
        "no {expected:?} line:\n{}",
        logs(&out, &[("server", &server), ("client", &client)])
    );

    // The write went to the real client: it told the server its new lifetime.
    server
        .wait_for_line(STEP, |l| {
            let l = strip_ansi(l);
            l.contains(" updated ")
                && field(&l, "id") == Some(id.as_str())
                && field(&l, "lifetime") == Some("120")
        })
        .unwrap_or_else(|| {
            panic!(
                "no Update with lifetime 120:\n{}",
                logs(&out, &[("server", &server), ("client", &client)])
            )
        });

    // Ctrl-C: the demo client de-registers and exits; then the server stops.
    client.signal("INT").unwrap();
    let status = client
        .wait_timeout(STEP)
        .unwrap_or_else(|| panic!("client still running after SIGINT:\n{}", client.output()));
    assert!(status.success(), "{status:?}\n{}", client.output());
    server.signal("TERM").unwrap();
    let status = server
        .wait_timeout(STEP)
        .unwrap_or_else(|| panic!("server still running after SIGTERM:\n{}", server.output()));
    assert!(status.success(), "{status:?}\n{}", server.output());
}

/// Bounds of the firmware test's processes and browser script: two
/// updates one after the other and a campaign of two more.
const FIRMWARE_LIFE: Duration = Duration::from_secs(240);
const FIRMWARE_BROWSER: Duration = Duration::from_secs(200);

/// A demo client (with `extra` flags) registered to the server at `addrs`
/// as `ep`.
fn demo_client(
    client_bin: &std::path::Path,
    server: &mut PeerProcess,
    addrs: &DemoServerAddrs,
    ep: &str,
    extra: &[&str],
) -> PeerProcess {
    let mut cmd = Command::new(client_bin);
    cmd.args(["--endpoint", ep, "--server"])
        .arg(format!("coap://{}", addrs.coap))
        .args(extra)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let client = PeerProcess::spawn(cmd, FIRMWARE_LIFE).unwrap();
    wait_registered(server, &client, ep);
    client
}

/// The words after `prefix` on the browser's line that starts with it.
fn ok_line<'a>(out: &'a str, prefix: &str) -> Vec<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line:\n{out}"))
        .split_whitespace()
        .collect()
}

#[test]
fn web_ui_updates_the_firmware_of_demo_clients() {
    let node = node_interpreter();
    let chromium = chromium();
    let ui = web_ui_dir();
    let server_bin = cargo_bin("lwm2m-server", "lwm2m-server");
    let client_bin = cargo_bin("lwm2m-client", "lwm2m-client");
    let dir = TempDir::new().unwrap();
    let (mut server, addrs) =
        spawn_demo_server(&server_bin, dir.path().join("data"), FIRMWARE_LIFE);
    let http = addrs.http;
    let (ep_a, ep_b, ep_c, ep_d) = ("web-fw-a", "web-fw-b", "web-fw-c", "web-fw-d");
    let a = demo_client(&client_bin, &mut server, &addrs, ep_a, &[]);
    let b = demo_client(&client_bin, &mut server, &addrs, ep_b, &[]);
    // D's update hook fails (Update Result 8).
    let d = demo_client(
        &client_bin,
        &mut server,
        &addrs,
        ep_d,
        &["--firmware-update-fails"],
    );
    // C stays registered but answers nothing: its update stays in flight
    // (the server's retransmissions last ~45 s) while the page pauses,
    // resumes and cancels its campaign.
    let mut c = demo_client(&client_bin, &mut server, &addrs, ep_c, &[]);
    c.signal("STOP").unwrap();

    // Two images of a few blocks each; the demo reports the first 8 bytes
    // of an installed image's SHA-256 in hex as its Firmware Version.
    let images: Vec<(std::path::PathBuf, Vec<u8>)> = [(5000, 1u8), (6000, 2)]
        .into_iter()
        .map(|(len, seed)| {
            let bytes: Vec<u8> = (0..len)
                .map(|i: usize| b'A' + ((i * 7 + usize::from(seed)) % 26) as u8)
                .collect();
            let path = dir.path().join(format!("image-{seed}.bin"));
            std::fs::write(&path, &bytes).unwrap();
            (path, bytes)
        })
        .collect();
    let sha: Vec<[u8; 32]> = images
        .iter()
        .map(|(_, bytes)| Sha256::digest(bytes).into())
        .collect();
    let version_of = |i: usize| Value::String(hex(&sha[i][..8]));
    assert_ne!(read_value(http, ep_a, "3/0/3"), version_of(0));
    let d_version = read_value(http, ep_d, "3/0/3");

    let mut cmd = Command::new(&node);
    cmd.current_dir(&ui)
        .arg(ui.join("firmware_ui.mjs"))
        .arg(format!("http://{http}/"))
        .args([ep_a, ep_b, ep_c, ep_d])
        .arg(&images[0].0)
        .arg(hex(&sha[0]))
        .arg(version_of(0).as_str().unwrap())
        .arg(&images[1].0)
        .arg(hex(&sha[1]))
        .env("CHROMIUM", &chromium);
    let mut browser = PeerProcess::spawn(cmd, FIRMWARE_BROWSER).unwrap();
    let status = browser.wait_timeout(FIRMWARE_BROWSER + STEP);
    let out = browser.output();
    let procs = [
        ("server", &server),
        ("client A", &a),
        ("client B", &b),
        ("client C", &c),
        ("client D", &d),
    ];
    assert!(
        status.is_some_and(|s| s.success()),
        "firmware UI test failed ({status:?}):\n{}",
        logs(&out, &procs)
    );

    // What the page did is what the server holds.
    let packages = ok_line(&out, "ok: packages ");
    let (pkg1, pkg2) = (packages[0], packages[1]);
    assert_eq!(ok_line(&out, "ok: package "), [pkg1, "deleted"]);
    let left = json_of(http, "/api/firmware");
    assert_eq!(left.as_array().map(Vec::len), Some(1), "{left:#}");
    assert_eq!(left[0]["id"], pkg2);
    assert_eq!(left[0]["version"], "2.0");
    assert_eq!(left[0]["size"], 6000);
    assert_eq!(left[0]["sha256"], hex(&sha[1]));

    let job_id = ok_line(&out, "ok: job ")[0];
    let job = json_of(http, &format!("/api/jobs/{job_id}"));
    assert_eq!(
        (
            &job["endpoint"],
            &job["package"],
            &job["delivery"],
            &job["status"]
        ),
        (
            &json!(ep_a),
            &json!(pkg1),
            &json!("coap"),
            &json!("succeeded")
        ),
        "{job:#}"
    );

    // D's update failed, with the device's reason, and left it as it was.
    let (failed_id, _) = out
        .lines()
        .filter_map(|l| l.strip_prefix("ok: job "))
        .find_map(|l| l.split_once(" failed: "))
        .unwrap_or_else(|| panic!("no failed job:\n{out}"));
    let job = json_of(http, &format!("/api/jobs/{failed_id}"));
    assert_eq!(
        (&job["endpoint"], &job["delivery"], &job["status"]),
        (&json!(ep_d), &json!("push"), &json!("failed")),
        "{job:#}"
    );
    assert!(
        job["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Update Result 8")),
        "{job:#}"
    );
    assert_eq!(read_value(http, ep_d, "3/0/3"), d_version);
    assert_eq!(read_value(http, ep_d, "5/0/5"), 8);

    let campaign_id = ok_line(&out, "ok: campaign ")[0];
    let campaign = json_of(http, &format!("/api/campaigns/{campaign_id}"));
    assert_eq!(campaign["status"], "completed", "{campaign:#}");
    assert_eq!(campaign["name"], "rollout");
    assert_eq!(campaign["package"], pkg2);
    assert_eq!(campaign["delivery"], "push");
    assert_eq!(campaign["waves"], json!([1, 1]));
    assert_eq!(campaign["max_concurrent"], 1);
    let devices: Vec<(&str, &str)> = campaign["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["endpoint"].as_str().unwrap(),
                d["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(devices, [(ep_a, "succeeded"), (ep_b, "succeeded")]);
    let frozen = out
        .lines()
        .filter_map(|l| l.strip_prefix("ok: campaign "))
        .find_map(|l| l.strip_suffix(" paused, resumed, cancelled"))
        .unwrap_or_else(|| panic!("no paused, resumed and cancelled campaign:\n{out}"));
    let campaign = json_of(http, &format!("/api/campaigns/{frozen}"));
    assert_eq!(campaign["status"], "cancelled", "{campaign:#}");
    // C never answered: its update was still in flight.
    assert_eq!(campaign["in_flight"], 1, "{campaign:#}");
    assert_eq!(campaign["devices"][0]["endpoint"], ep_c);
    assert_eq!(campaign["devices"][0]["status"], "delivering");
    // And the devices run the campaign's image.
    for ep in [ep_a, ep_b] {
        assert_eq!(read_value(http, ep, "3/0/3"), version_of(1), "{ep}");
        assert_eq!(read_value(http, ep, "5/0/5"), 1, "{ep}");
    }

    for mut client in [a, b, d] {
        client.signal("INT").unwrap();
        let status = client
            .wait_timeout(STEP)
            .unwrap_or_else(|| panic!("client still running after SIGINT:\n{}", client.output()));
        assert!(status.success(), "{status:?}\n{}", client.output());
    }
    // C is frozen: killed (and reaped) by its guard.
    drop(c);
    server.signal("TERM").unwrap();
    let status = server
        .wait_timeout(STEP)
        .unwrap_or_else(|| panic!("server still running after SIGTERM:\n{}", server.output()));
    assert!(status.success(), "{status:?}\n{}", server.output());
}
