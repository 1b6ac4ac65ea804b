//! Firmware updates end to end: the demo server binary (`lwm2m-server`)
//! with packages uploaded through its admin API, and demo client binaries
//! (`lwm2m-client`) as devices on 127.0.0.1, updated by push (Write of
//! Package, block-wise), by CoAP pull (`GET /fw/{id}` block by block) and
//! by HTTP pull (the admin server's `/fw/{id}`). A successful update makes
//! the demo report the image's SHA-256 prefix as its Firmware Version
//! (/3/0/3); `--firmware-update-fails` makes its update hook fail.
//! Campaigns: several demo devices in waves, the failure threshold,
//! pause/resume and a server restart in the middle of a campaign.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use interop_tests::demo::{
    admin_http, json_of, read_value, spawn_demo_server_with, wait_registered, DemoServerAddrs,
};
use interop_tests::{cargo_bin, free_udp_port, PeerProcess, TempDir};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Bound of each process.
const LIFE: Duration = Duration::from_secs(120);
/// Bound of each wait for a job to finish.
const JOB_WAIT: Duration = Duration::from_secs(60);

/// The demo server's binary, data directory and CoAP address.
struct DemoServer {
    bin: std::path::PathBuf,
    dir: TempDir,
    coap: String,
}

impl DemoServer {
    /// On a free port the system picks.
    fn new() -> DemoServer {
        DemoServer {
            bin: cargo_bin("lwm2m-server", "lwm2m-server"),
            dir: TempDir::new().unwrap(),
            coap: "127.0.0.1:0".into(),
        }
    }

    /// On a fixed port, so that devices reach it again after a restart.
    fn restartable() -> DemoServer {
        DemoServer {
            coap: format!("127.0.0.1:{}", free_udp_port().unwrap()),
            ..DemoServer::new()
        }
    }

    /// Starts it (again, with the same data) once it listens.
    fn spawn(&self) -> (PeerProcess, DemoServerAddrs) {
        let flags: [&std::ffi::OsStr; 2] = ["--coap".as_ref(), self.coap.as_ref()];
        spawn_demo_server_with(&self.bin, self.dir.path().join("data"), LIFE, &flags)
    }
}

/// Stops a server with SIGTERM (bounded).
fn stop(server: &mut PeerProcess) {
    server.signal("TERM").unwrap();
    assert!(server.wait_timeout(Duration::from_secs(10)).is_some());
}

fn demo_client(addrs: &DemoServerAddrs, ep: &str, extra: &[&str]) -> PeerProcess {
    let mut cmd = Command::new(cargo_bin("lwm2m-client", "lwm2m-client"));
    cmd.args(["--endpoint", ep, "--lifetime", "60", "--server"])
        .arg(format!("coap://{}", addrs.coap))
        .args(extra)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    PeerProcess::spawn(cmd, LIFE).expect("start the demo client")
}

/// A printable package of `len` bytes (the admin helper sends text bodies).
fn package_bytes(len: usize, seed: u8) -> String {
    (0..len)
        .map(|i| char::from(b'A' + ((i * 7 + i / 1000 + usize::from(seed)) % 26) as u8))
        .collect()
}

fn upload(http: SocketAddr, bytes: &str, version: &str) -> Value {
    let (status, body) = admin_http(
        http,
        "POST",
        &format!("/api/firmware?name=demo&version={version}"),
        bytes,
    );
    assert_eq!(status, 201, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn start_job(http: SocketAddr, ep: &str, package: &str, delivery: &str) -> String {
    let (status, body) = admin_http(
        http,
        "POST",
        &format!("/api/clients/{ep}/firmware"),
        &format!(r#"{{"package":"{package}","delivery":"{delivery}","timeout":60}}"#),
    );
    assert_eq!(status, 202, "{body}");
    let job: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(job["endpoint"], ep);
    job["id"].as_str().unwrap().to_string()
}

/// The job once it succeeded or failed (bounded).
fn finished(http: SocketAddr, id: &str, logs: &[&PeerProcess]) -> Value {
    let deadline = Instant::now() + JOB_WAIT;
    loop {
        let job = json_of(http, &format!("/api/jobs/{id}"));
        if matches!(job["status"].as_str(), Some("succeeded" | "failed")) {
            return job;
        }
        if Instant::now() > deadline {
            let out: Vec<String> = logs.iter().map(|p| p.output()).collect();
            panic!("job {id} did not finish: {job}\n{}", out.join("\n----\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The first 16 hex digits of the SHA-256 of `bytes`: what the demo
/// reports as its Firmware Version once it installed them.
fn demo_version(bytes: &str) -> String {
    Sha256::digest(bytes.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Collects the text of `/api/events` in the background.
fn sse(http: SocketAddr) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(
        s,
        "GET /api/events HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let out = text.clone();
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut buf = [0u8; 4096];
        // Bounded: the thread ends with the server or after LIFE.
        while started.elapsed() < LIFE {
            match s.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => out
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
    });
    // The subscription exists once the response headers arrived.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text.lock().unwrap().contains("200 OK") {
        assert!(Instant::now() < deadline, "no SSE answer");
        std::thread::sleep(Duration::from_millis(20));
    }
    text
}

#[test]
fn push_coap_pull_and_http_pull_reach_update_result_1() {
    let demo = DemoServer::new();
    let (mut server, addrs) = demo.spawn();
    let http = addrs.http;
    let events = sse(http);
    let mut runs = Vec::new();
    for (n, delivery) in ["push", "coap", "http"].into_iter().enumerate() {
        let ep = format!("fw-{delivery}");
        let client = demo_client(&addrs, &ep, &[]);
        wait_registered(&mut server, &client, &ep);
        // Several blocks, a different image per device.
        let bytes = package_bytes(5000 + n * 1000, n as u8);
        let package = upload(http, &bytes, &format!("2.{n}"));
        let sha: String = Sha256::digest(bytes.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(package["sha256"], sha);
        let before = read_value(http, &ep, "3/0/3");
        assert_ne!(before, Value::String(demo_version(&bytes)));
        let job = start_job(http, &ep, package["id"].as_str().unwrap(), delivery);
        runs.push((ep, client, bytes, job));
    }
    for (ep, client, bytes, job) in &runs {
        let done = finished(http, job, &[client, &server]);
        assert_eq!(done["status"], "succeeded", "{done}\n{}", client.output());
        assert_eq!(read_value(http, ep, "5/0/5"), 1);
        assert_eq!(read_value(http, ep, "5/0/3"), 0);
        assert_eq!(
            read_value(http, ep, "3/0/3"),
            Value::String(demo_version(bytes))
        );
    }
    // Each job's progress was published: delivering, downloaded,
    // updating and succeeded, in that order.
    let deadline = Instant::now() + Duration::from_secs(10);
    for (_, _, _, job) in &runs {
        let phases: Vec<String> = loop {
            let text = events.lock().unwrap().clone();
            let phases: Vec<String> = text
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                .filter(|v| v["id"] == job.as_str() && v.get("status").is_some())
                .map(|v| v["status"].as_str().unwrap_or_default().to_string())
                .collect();
            if phases.last().map(String::as_str) == Some("succeeded") || Instant::now() > deadline {
                break phases;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(
            phases,
            [
                "pending",
                "delivering",
                "downloaded",
                "updating",
                "succeeded"
            ],
            "FIRMWARE events of {job}"
        );
    }
    let metrics = admin_http(http, "GET", "/metrics", "").1;
    for delivery in ["push", "coap", "http"] {
        let line = format!(
            "lwm2m_firmware_updates_total{{delivery=\"{delivery}\",outcome=\"succeeded\"}} 1"
        );
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
}

/// Creates a `firmware_failed` alert rule for the endpoints starting with
/// `prefix` (no alert is active before).
fn firmware_failed_rule(http: SocketAddr, prefix: &str) {
    let (status, rule) = admin_http(
        http,
        "POST",
        "/api/alerts/rules",
        &format!(r#"{{"kind":"firmware_failed","endpoint_prefix":"{prefix}"}}"#),
    );
    assert_eq!(status, 201, "{rule}");
    assert_eq!(json_of(http, "/api/alerts"), serde_json::json!([]));
}

/// The active alerts once there are `n` (they are raised right after a
/// job's or device's final phase is recorded: polled, bounded).
fn active_alerts(http: SocketAddr, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alerts = json_of(http, "/api/alerts");
        let alerts = alerts.as_array().unwrap().clone();
        if alerts.len() >= n || Instant::now() > deadline {
            assert_eq!(alerts.len(), n, "{alerts:?}");
            return alerts;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_failing_update_is_recorded_with_its_reason() {
    let demo = DemoServer::new();
    let (mut server, addrs) = demo.spawn();
    let http = addrs.http;
    let ep = "fw-broken";
    let client = demo_client(&addrs, ep, &["--firmware-update-fails"]);
    wait_registered(&mut server, &client, ep);
    firmware_failed_rule(http, "fw-");
    let bytes = package_bytes(3000, 9);
    let package = upload(http, &bytes, "9");
    let before = read_value(http, ep, "3/0/3");
    let job = start_job(http, ep, package["id"].as_str().unwrap(), "coap");
    let done = finished(http, &job, &[&client, &server]);
    assert_eq!(done["status"], "failed", "{done}");
    // The failure raised the rule's alert for this device.
    let alerts = active_alerts(http, 1);
    assert_eq!(alerts[0]["kind"], "firmware_failed");
    assert_eq!(alerts[0]["endpoint"], ep);
    assert_eq!(alerts[0]["state"], "active");
    let reason = done["reason"].as_str().unwrap();
    assert!(
        reason.contains("Update Result 8") && reason.contains("firmware update failed"),
        "{reason}"
    );
    assert_eq!(read_value(http, ep, "5/0/5"), 8);
    assert_eq!(read_value(http, ep, "3/0/3"), before);
    // An unknown package or delivery is refused before anything is sent.
    let (status, _) = admin_http(
        http,
        "POST",
        &format!("/api/clients/{ep}/firmware"),
        r#"{"package":"nope","delivery":"coap"}"#,
    );
    assert_eq!(status, 404);
    let (status, _) = admin_http(
        http,
        "POST",
        &format!("/api/clients/{ep}/firmware"),
        &format!(
            r#"{{"package":"{}","delivery":"ftp"}}"#,
            package["id"].as_str().unwrap()
        ),
    );
    assert_eq!(status, 400);
}

// ---------------------------------------------------------------------------
// Campaigns

fn create_campaign(http: SocketAddr, body: &Value) -> Value {
    let (status, text) = admin_http(http, "POST", "/api/campaigns", &body.to_string());
    assert_eq!(status, 201, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// The campaign once `done` holds for it (bounded).
fn campaign_until(
    http: SocketAddr,
    id: &str,
    logs: &[&PeerProcess],
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + JOB_WAIT;
    loop {
        let c = json_of(http, &format!("/api/campaigns/{id}"));
        if done(&c) {
            return c;
        }
        if Instant::now() > deadline {
            let out: Vec<String> = logs.iter().map(|p| p.output()).collect();
            panic!("campaign {id} not there: {c:#}\n{}", out.join("\n----\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stopped(c: &Value) -> bool {
    matches!(
        c["status"].as_str(),
        Some("completed" | "halted" | "cancelled")
    ) && c["in_flight"] == 0
}

/// The devices of a campaign: (endpoint, wave, status).
fn device_states(c: &Value) -> Vec<(String, u64, String)> {
    c["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["endpoint"].as_str().unwrap().to_string(),
                d["wave"].as_u64().unwrap(),
                d["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The CAMPAIGN device events seen so far: (endpoint, status), in order.
fn device_events(events: &Mutex<String>, id: &str) -> Vec<(String, String)> {
    events
        .lock()
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .filter(|v| v["id"] == id && v["change"] == "device")
        .map(|v| {
            (
                v["device"]["endpoint"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                v["device"]["status"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// Starts `n` demo devices named `{prefix}-{i}` (with `extra` flags for
/// those `broken` says) and waits for their registrations.
fn devices(
    server: &mut PeerProcess,
    addrs: &DemoServerAddrs,
    prefix: &str,
    n: usize,
    broken: impl Fn(usize) -> bool,
) -> Vec<(String, PeerProcess)> {
    (0..n)
        .map(|i| {
            let ep = format!("{prefix}-{i}");
            let extra: &[&str] = if broken(i) {
                &["--firmware-update-fails"]
            } else {
                &[]
            };
            let client = demo_client(addrs, &ep, extra);
            wait_registered(server, &client, &ep);
            (ep, client)
        })
        .collect()
}

#[test]
fn a_campaign_over_four_devices_in_two_waves_succeeds() {
    let demo = DemoServer::new();
    let (mut server, addrs) = demo.spawn();
    let http = addrs.http;
    let events = sse(http);
    let fleet = devices(&mut server, &addrs, "wave", 4, |_| false);
    let bytes = package_bytes(4000, 3);
    let package = upload(http, &bytes, "3.0");
    let targets: Vec<&str> = fleet.iter().map(|(ep, _)| ep.as_str()).collect();
    let c = create_campaign(
        http,
        &serde_json::json!({
            "name": "rollout", "package": package["id"], "delivery": "coap",
            "targets": targets, "waves": [2, "50%"], "max_concurrent": 2,
            "failure_threshold": 0, "timeout": 60,
        }),
    );
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(c["waves"], serde_json::json!([2, 2]));
    let logs: Vec<&PeerProcess> = fleet.iter().map(|(_, p)| p).chain([&server]).collect();
    let done = campaign_until(http, &id, &logs, stopped);
    assert_eq!(done["status"], "completed", "{done:#}");
    for (ep, wave, status) in device_states(&done) {
        assert_eq!(status, "succeeded", "{ep}");
        assert_eq!(wave, u64::from(!ep.ends_with("-0") && !ep.ends_with("-1")));
        assert_eq!(read_value(http, &ep, "5/0/5"), 1);
        assert_eq!(
            read_value(http, &ep, "3/0/3"),
            Value::String(demo_version(&bytes))
        );
    }
    // The second wave started only once the first had finished: no
    // wave-2 device event before both wave-1 devices succeeded.
    let deadline = Instant::now() + Duration::from_secs(10);
    let seen = loop {
        let seen = device_events(&events, &id);
        if seen.iter().filter(|(_, s)| s == "succeeded").count() == 4 || Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let first_wave_done = seen
        .iter()
        .enumerate()
        .filter(|(_, (ep, s))| (ep == "wave-0" || ep == "wave-1") && s == "succeeded")
        .map(|(i, _)| i)
        .max()
        .expect("wave-1 devices succeeded");
    let second_wave_start = seen
        .iter()
        .position(|(ep, _)| ep == "wave-2" || ep == "wave-3")
        .expect("wave-2 devices have events");
    assert!(first_wave_done < second_wave_start, "{seen:?}");
    let metrics = admin_http(http, "GET", "/metrics", "").1;
    assert!(
        metrics.contains("lwm2m_campaigns_total{outcome=\"completed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lwm2m_firmware_updates_total{delivery=\"coap\",outcome=\"succeeded\"} 4"),
        "{metrics}"
    );
}

#[test]
fn the_failure_threshold_halts_a_campaign_before_its_next_wave() {
    let demo = DemoServer::new();
    let (mut server, addrs) = demo.spawn();
    let http = addrs.http;
    // Device 0 fails its update; devices 2 and 3 are the second wave.
    let fleet = devices(&mut server, &addrs, "halt", 4, |i| i == 0);
    firmware_failed_rule(http, "halt");
    let package = upload(http, &package_bytes(3000, 4), "4.0");
    let targets: Vec<&str> = fleet.iter().map(|(ep, _)| ep.as_str()).collect();
    let c = create_campaign(
        http,
        &serde_json::json!({
            "name": "halts", "package": package["id"], "delivery": "push",
            "targets": targets, "waves": [2], "max_concurrent": 2,
            "failure_threshold": 0, "timeout": 60,
        }),
    );
    let id = c["id"].as_str().unwrap().to_string();
    let logs: Vec<&PeerProcess> = fleet.iter().map(|(_, p)| p).chain([&server]).collect();
    let done = campaign_until(http, &id, &logs, stopped);
    assert_eq!(done["status"], "halted", "{done:#}");
    assert!(
        done["reason"]
            .as_str()
            .unwrap()
            .contains("exceed the failure threshold 0"),
        "{done:#}"
    );
    let states = device_states(&done);
    assert_eq!(states[0].2, "failed");
    let why = done["devices"][0]["reason"].as_str().unwrap();
    assert!(why.contains("Update Result 8"), "{why}");
    // Only the failed device has a firmware_failed alert.
    let alerts = active_alerts(http, 1);
    assert_eq!(
        (&alerts[0]["kind"], &alerts[0]["endpoint"]),
        (
            &serde_json::json!("firmware_failed"),
            &serde_json::json!(states[0].0)
        )
    );
    for (ep, wave, status) in &states[2..] {
        assert_eq!((*wave, status.as_str()), (1, "pending"), "{ep}");
        // Never touched: no Package, no Package URI, state machine at rest.
        assert_eq!(read_value(http, ep, "5/0/3"), 0, "{ep}");
        assert_eq!(read_value(http, ep, "5/0/5"), 0, "{ep}");
        let uri = json_of(http, &format!("/api/clients/{ep}/5/0/1"));
        assert_eq!(uri["success"], true, "{uri}");
        // An empty Package URI: an empty payload, no content.
        assert!(uri.get("content").is_none(), "{uri}");
    }
    // A halted campaign cannot be resumed.
    let (status, _) = admin_http(http, "POST", &format!("/api/campaigns/{id}/resume"), "");
    assert_eq!(status, 409);
}

#[test]
fn a_paused_campaign_survives_a_restart_and_resumes() {
    let demo = DemoServer::restartable();
    let (mut server, addrs) = demo.spawn();
    let fleet = devices(&mut server, &addrs, "pause", 2, |_| false);
    let bytes = package_bytes(2500, 5);
    let package = upload(addrs.http, &bytes, "5.0");
    let targets: Vec<&str> = fleet.iter().map(|(ep, _)| ep.as_str()).collect();
    let c = create_campaign(
        addrs.http,
        &serde_json::json!({
            "name": "later", "package": package["id"], "delivery": "http",
            "targets": targets, "waves": [1, 1], "max_concurrent": 1,
            "timeout": 60, "paused": true,
        }),
    );
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(c["status"], "paused");
    assert_eq!(c["in_flight"], 0);
    let (status, _) = admin_http(
        addrs.http,
        "POST",
        &format!("/api/campaigns/{id}/pause"),
        "",
    );
    assert_eq!(status, 409, "already paused");

    stop(&mut server);
    let (mut server, addrs) = demo.spawn();
    let c = json_of(addrs.http, &format!("/api/campaigns/{id}"));
    assert_eq!(c["status"], "paused", "{c:#}");
    assert!(
        device_states(&c).iter().all(|(_, _, s)| s == "pending"),
        "{c:#}"
    );
    for (ep, _) in &fleet {
        assert_eq!(read_value(addrs.http, ep, "5/0/5"), 0, "{ep} untouched");
    }

    let (status, body) = admin_http(
        addrs.http,
        "POST",
        &format!("/api/campaigns/{id}/resume"),
        "",
    );
    assert_eq!(status, 200, "{body}");
    let logs: Vec<&PeerProcess> = fleet.iter().map(|(_, p)| p).chain([&server]).collect();
    let done = campaign_until(addrs.http, &id, &logs, stopped);
    assert_eq!(done["status"], "completed", "{done:#}");
    for (ep, _) in &fleet {
        assert_eq!(
            read_value(addrs.http, ep, "3/0/3"),
            Value::String(demo_version(&bytes))
        );
    }
    stop(&mut server);
}

/// Stops (`STOP`) or continues (`CONT`) a running device process.
fn hold(p: &PeerProcess, signal: &str) {
    let status = Command::new("kill")
        .args(["-s", signal, &p.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -s {signal}");
}

/// The status of device `i` of a campaign.
fn device_status(c: &Value, i: usize) -> &str {
    c["devices"][i]["status"].as_str().unwrap_or_default()
}

#[test]
fn a_pause_holds_the_next_wave_until_resume_and_cancel_ends_it() {
    let demo = DemoServer::new();
    let (mut server, addrs) = demo.spawn();
    let http = addrs.http;
    let fleet = devices(&mut server, &addrs, "hold", 3, |_| false);
    let package = upload(http, &package_bytes(2000, 6), "6.0");
    let targets: Vec<&str> = fleet.iter().map(|(ep, _)| ep.as_str()).collect();
    // Device 0 is stopped: its update stays in flight until it continues.
    hold(&fleet[0].1, "STOP");
    let c = create_campaign(
        http,
        &serde_json::json!({
            "name": "held", "package": package["id"], "delivery": "coap",
            "targets": targets, "waves": [1, 1], "max_concurrent": 1, "timeout": 60,
        }),
    );
    let id = c["id"].as_str().unwrap().to_string();
    let logs: Vec<&PeerProcess> = fleet.iter().map(|(_, p)| p).chain([&server]).collect();
    campaign_until(http, &id, &logs, |c| c["in_flight"] == 1);
    let (status, body) = admin_http(http, "POST", &format!("/api/campaigns/{id}/pause"), "");
    assert_eq!(status, 200, "{body}");
    hold(&fleet[0].1, "CONT");
    // Device 0 finishes; recording it and choosing what starts next is one
    // step, so once it shows as done with nothing in flight, wave 2 was
    // held back.
    let c = campaign_until(http, &id, &logs, |c| {
        device_status(c, 0) == "succeeded" && c["in_flight"] == 0
    });
    assert_eq!(c["status"], "paused", "{c:#}");
    assert_eq!(device_status(&c, 1), "pending", "{c:#}");
    assert_eq!(read_value(http, "hold-1", "5/0/5"), 0);

    let (status, _) = admin_http(http, "POST", &format!("/api/campaigns/{id}/resume"), "");
    assert_eq!(status, 200);
    let c = campaign_until(http, &id, &logs, |c| device_status(c, 1) == "succeeded");
    // Device 1 was the second wave; device 2 the third. Cancel before or
    // while the third runs: the campaign ends cancelled either way, and a
    // cancelled campaign cannot be resumed.
    let (status, body) = admin_http(http, "POST", &format!("/api/campaigns/{id}/cancel"), "");
    if c["status"] == "running" {
        assert_eq!(status, 200, "{body}");
        let done = campaign_until(http, &id, &logs, stopped);
        assert_eq!(done["status"], "cancelled", "{done:#}");
        let (status, _) = admin_http(http, "POST", &format!("/api/campaigns/{id}/resume"), "");
        assert_eq!(status, 409);
    } else {
        // Already completed: nothing to cancel.
        assert_eq!(status, 409, "{body}");
    }
}

#[test]
fn a_running_campaign_carries_on_after_a_restart() {
    let demo = DemoServer::restartable();
    let (mut server, addrs) = demo.spawn();
    let fleet = devices(&mut server, &addrs, "restart", 2, |_| false);
    let bytes = package_bytes(2200, 7);
    let package = upload(addrs.http, &bytes, "7.0");
    let targets: Vec<&str> = fleet.iter().map(|(ep, _)| ep.as_str()).collect();
    // Device 0 is stopped: the server stops with its update in flight.
    hold(&fleet[0].1, "STOP");
    let c = create_campaign(
        addrs.http,
        &serde_json::json!({
            "name": "restart", "package": package["id"], "delivery": "push",
            "targets": targets, "waves": [1, 1], "max_concurrent": 1, "timeout": 60,
        }),
    );
    let id = c["id"].as_str().unwrap().to_string();
    {
        let logs: Vec<&PeerProcess> = fleet.iter().map(|(_, p)| p).chain([&server]).collect();
        campaign_until(addrs.http, &id, &logs, |c| {
            c["in_flight"] == 1 && device_status(c, 0) == "delivering"
        });
    }
    stop(&mut server);
    let (server, addrs) = demo.spawn();
    hold(&fleet[0].1, "CONT");
    let logs: Vec<&PeerProcess> = fleet.iter().map(|(_, p)| p).chain([&server]).collect();
    let done = campaign_until(addrs.http, &id, &logs, stopped);
    assert_eq!(done["status"], "completed", "{done:#}");
    for (ep, _) in &fleet {
        assert_eq!(read_value(addrs.http, ep, "5/0/5"), 1, "{ep}");
        assert_eq!(
            read_value(addrs.http, ep, "3/0/3"),
            Value::String(demo_version(&bytes))
        );
    }
}

#[test]
fn an_update_succeeds_after_the_device_reboots_and_registers_again() {
    let demo = DemoServer::new();
    let (mut server, addrs) = demo.spawn();
    let http = addrs.http;
    let ep = "fw-reboot";
    let state = demo.dir.path().join("device.state");
    let state = state.to_str().unwrap();
    let flags = ["--firmware-state", state, "--firmware-reboot"];
    let mut client = demo_client(&addrs, ep, &flags);
    wait_registered(&mut server, &client, ep);
    let bytes = package_bytes(3500, 8);
    let package = upload(http, &bytes, "8.0");
    let job = start_job(http, ep, package["id"].as_str().unwrap(), "push");
    // The device answers Execute Update, then "reboots": its process ends.
    assert!(
        client.wait_timeout(Duration::from_secs(30)).is_some(),
        "the device did not reboot:\n{}",
        client.output()
    );
    let during = json_of(http, &format!("/api/jobs/{job}"));
    assert_eq!(during["status"], "updating", "{during}");
    // Back up: it finishes the update from its state file and registers
    // again; the job reads Update Result 1 after that registration.
    let client = demo_client(&addrs, ep, &flags);
    let done = finished(http, &job, &[&client, &server]);
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(read_value(http, ep, "5/0/5"), 1);
    assert_eq!(
        read_value(http, ep, "3/0/3"),
        Value::String(demo_version(&bytes))
    );
}
