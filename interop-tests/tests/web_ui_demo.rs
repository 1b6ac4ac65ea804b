//! The web UI in headless Chromium against our real demo client: the
//! `lwm2m-server` binary (free loopback ports, data in a temporary
//! directory), the `lwm2m-client` demo binary registered to it, and
//! `interop-tests/ui/web_ui.mjs` (playwright-core driving Debian's
//! `chromium`), which opens the page, clicks the client, Reads /3/0 and
//! sees the demo's manufacturer, then Writes /1/0/1 (Lifetime) through the
//! prompt and sees it read back from the client.
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

use interop_tests::demo::{field, spawn_demo_server, strip_ansi, wait_registered, STEP};
use interop_tests::{cargo_bin, chromium, node_interpreter, web_ui_dir, PeerProcess, TempDir};

/// What the demo client reports as /3/0/0 (`lwm2m-client/src/bin/lwm2m-client.rs`).
const MANUFACTURER: &str = "lwm2m-rs";
/// Bound of each process: the browser script waits at most 15 s per step.
const LIFE: Duration = Duration::from_secs(120);
/// Bound of the browser script as a whole.
const BROWSER: Duration = Duration::from_secs(90);

/// The browser's, the server's and the client's output, for failure messages.
fn logs(browser: &str, server: &PeerProcess, client: &PeerProcess) -> String {
    format!(
        "browser:\n{browser}\nserver:\n{}\nclient:\n{}",
        server.output(),
        client.output()
    )
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
        logs(&out, &server, &client)
    );
    let expected = format!("ok: {ep} /3/0/0 = {MANUFACTURER}, /1/0/1 written");
    assert!(
        out.lines().any(|l| l == expected),
        "no {expected:?} line:\n{}",
        logs(&out, &server, &client)
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
                logs(&out, &server, &client)
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
