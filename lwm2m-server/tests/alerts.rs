//! Alert rules and alerts in the admin API against a
//! real server driver on 127.0.0.1 and a scripted device: lwm2m-core's CoAP
//! endpoint on a UDP socket that registers and answers like a small client.
#![cfg(all(feature = "admin", feature = "sqlite"))]

use std::sync::Arc;

use axum::http::StatusCode;
use axum::Router;
use lwm2m_core::coap::{Code, Response};
use lwm2m_server::admin::{self, AdminConfig};
use lwm2m_server::{Server, ServerConfig};
use serde_json::Value as Json;

mod udp_device;
use udp_device::{Cmd, Device, WAIT};

#[path = "support/loopback.rs"]
mod loopback;
use loopback::{call, loopback_server, Events};

async fn fixture(config: ServerConfig) -> (Server, Router) {
    let models = Arc::new(lwm2m_objects::Registry::standard());
    let server = loopback_server(config.clone()).await;
    let app = admin::router(server.handle(), models, AdminConfig::for_server(&config));
    (server, app)
}

async fn notify(d: &Device, events: &mut Events, value: &str) {
    d.cmds
        .send(Cmd::Notify(
            Response::new(Code::CONTENT).with_payload(0, value.as_bytes().to_vec()),
        ))
        .await
        .unwrap();
    let n = events.next("NOTIFICATION").await;
    assert_eq!(n["val"]["value"].to_string(), value);
}

/// Accepts one webhook POST on `listener`, answers 200: its request line and JSON body.
async fn webhook(listener: &tokio::net::TcpListener) -> (String, Json) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut conn, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .expect("webhook POST in time")
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let (head, body) = loop {
        let n = tokio::time::timeout(WAIT, conn.read(&mut chunk))
            .await
            .expect("request in time")
            .unwrap();
        assert!(
            n > 0,
            "request ended early: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .expect("Content-Length")
                .parse()
                .unwrap();
            if body.len() >= len {
                break (head.to_string(), body.to_string());
            }
        }
    };
    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let line = head.lines().next().unwrap().to_string();
    (line, serde_json::from_str(&body).unwrap())
}

#[tokio::test]
async fn battery_threshold_raises_once_clears_and_acks() {
    let (server, app) = fixture(ServerConfig::default()).await;
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rule = format!(
        r#"{{"name":"low battery","kind":"threshold","path":"/3/0/9","op":"<","value":20,"webhook":"http://{}/hook"}}"#,
        hook.local_addr().unwrap()
    );
    let (s, rule) = call(&app, "POST", "/api/alerts/rules", Some(&rule)).await;
    assert_eq!(s, StatusCode::CREATED, "{rule}");
    let id = rule["id"].as_str().unwrap().to_string();
    let (s, one) = call(&app, "GET", &format!("/api/alerts/rules/{id}"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(one["op"], "<");

    let mut events = Events::open(&app, "").await;
    let d = Device::spawn(7).await;
    d.register(server.local_addr(), "ep=dev1&lt=300&lwm2m=1.1")
        .await;
    let (s, r) = call(&app, "POST", "/api/clients/dev1/3/0/9/observe", None).await;
    assert_eq!(s, StatusCode::OK, "{r}");

    notify(&d, &mut events, "50").await;
    let (_, active) = call(&app, "GET", "/api/alerts", None).await;
    assert_eq!(active, serde_json::json!([]), "50 is above the limit");

    notify(&d, &mut events, "10").await;
    let a = events.next("ALERT").await;
    assert_eq!(a["change"], "raised");
    assert_eq!(a["endpoint"], "dev1");
    assert_eq!(a["rule"], id.as_str());
    assert_eq!(a["value"], 10.0);
    let (line, posted) = webhook(&hook).await;
    assert_eq!(line, "POST /hook HTTP/1.1");
    assert_eq!(posted["change"], "raised");
    assert_eq!(posted["id"], a["id"]);
    let (_, active) = call(&app, "GET", "/api/alerts", None).await;
    assert_eq!(active.as_array().unwrap().len(), 1);
    assert_eq!(active[0]["state"], "active");
    let alert = active[0]["id"].as_str().unwrap().to_string();

    let (s, acked) = call(&app, "POST", &format!("/api/alerts/{alert}/ack"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(acked["acked"], true);
    assert_eq!(events.next("ALERT").await["change"], "acked");

    let m = match call(&app, "GET", "/metrics", None).await.1 {
        Json::String(m) => m,
        other => panic!("{other}"),
    };
    assert!(
        m.contains("\nlwm2m_alerts_active{kind=\"threshold\"} 1\n"),
        "{m}"
    );
    assert!(m.contains("\nlwm2m_alerts_raised_total 1\n"), "{m}");
    assert!(
        m.contains("\nlwm2m_alert_webhook_failures_total 0\n"),
        "{m}"
    );

    notify(&d, &mut events, "60").await;
    assert_eq!(events.next("ALERT").await["change"], "cleared");
    let (_, posted) = webhook(&hook).await;
    assert_eq!(posted["change"], "cleared");
    let (_, active) = call(&app, "GET", "/api/alerts", None).await;
    assert_eq!(active, serde_json::json!([]));
    let (_, all) = call(&app, "GET", "/api/alerts?all=true", None).await;
    assert_eq!(all[0]["state"], "cleared");
    assert_eq!(all[0]["id"], alert.as_str());

    let (s, _) = call(&app, "POST", &format!("/api/alerts/{alert}/ack"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "no longer active");
    let (s, _) = call(&app, "DELETE", &format!("/api/alerts/rules/{id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, rules) = call(&app, "GET", "/api/alerts/rules", None).await;
    assert_eq!(rules, serde_json::json!([]));
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_rules_are_refused_with_a_message() {
    let (server, app) = fixture(ServerConfig::default()).await;
    for body in [
        "not json",
        r#"{"kind":"threshold","path":"/3/0","op":"<","value":20}"#,
        r#"{"kind":"threshold","path":"/3/0/9","op":"=","value":20}"#,
        r#"{"kind":"nope"}"#,
    ] {
        let (s, r) = call(&app, "POST", "/api/alerts/rules", Some(body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert!(r["error"].as_str().unwrap().contains("rule"), "{r}");
    }
    let (s, _) = call(&app, "GET", "/api/alerts/rules/rule9", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    server.shutdown().await;
}

#[tokio::test]
async fn offline_rule_raises_on_expiry() {
    let config = ServerConfig {
        lifetime_grace: lwm2m_core::time::Duration::ZERO,
        ..ServerConfig::default()
    };
    let (server, app) = fixture(config).await;
    let (s, _) = call(
        &app,
        "POST",
        "/api/alerts/rules",
        Some(r#"{"kind":"offline","endpoint_prefix":"sh"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let mut events = Events::open(&app, "").await;
    let d = Device::spawn(15).await;
    d.register(server.local_addr(), "ep=short&lt=1").await;
    let a = events.next("ALERT").await;
    assert_eq!(a["change"], "raised");
    assert_eq!(a["kind"], "offline");
    assert_eq!(a["endpoint"], "short");
    server.shutdown().await;
}

#[tokio::test]
async fn rules_survive_a_restart_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::default();
    let open = |server: &Server| {
        let mut c = AdminConfig::for_server(&config);
        c.alerts_dir = Some(dir.path().to_path_buf());
        admin::router(
            server.handle(),
            Arc::new(lwm2m_objects::Registry::standard()),
            c,
        )
    };
    let server = loopback_server(config.clone()).await;
    let app = open(&server);
    let body = r#"{"kind":"threshold","path":"/3/0/9","op":">=","value":90}"#;
    let (_, a) = call(&app, "POST", "/api/alerts/rules", Some(body)).await;
    let (_, b) = call(
        &app,
        "POST",
        "/api/alerts/rules",
        Some(r#"{"kind":"offline"}"#),
    )
    .await;
    let (s, _) = call(
        &app,
        "DELETE",
        &format!("/api/alerts/rules/{}", a["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    drop(app);
    server.shutdown().await;
    assert!(dir.path().join("alerts.sqlite3").exists());

    let server = loopback_server(config.clone()).await;
    let app = open(&server);
    let (_, rules) = call(&app, "GET", "/api/alerts/rules", None).await;
    assert_eq!(rules, serde_json::json!([b]));
    let (s, _) = call(
        &app,
        "DELETE",
        &format!("/api/alerts/rules/{}", b["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    drop(app);
    server.shutdown().await;

    // Every rule deleted: a new one still gets a fresh id.
    let server = loopback_server(config.clone()).await;
    let app = open(&server);
    let (_, c) = call(&app, "POST", "/api/alerts/rules", Some(body)).await;
    assert_eq!(c["id"], "rule3", "ids are not reused");
    server.shutdown().await;
}
