//! The fixture most server tests share: a [`Server`] on a free loopback UDP
//! port with a memory registration store and the standard object models,
//! and calls to an admin [`Router`] in process.
#![allow(dead_code)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request as HttpRequest, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use lwm2m_server::{MemoryStore, Server, ServerConfig};
use serde_json::Value as Json;
use tower::ServiceExt;

/// Bound on one HTTP call or server start; on loopback they take milliseconds.
pub const WAIT: Duration = Duration::from_secs(20);

/// A server on `127.0.0.1:0` with `config`, a memory store and the
/// standard object models.
pub async fn loopback_server(config: ServerConfig) -> Server {
    Server::start(
        "127.0.0.1:0".parse().unwrap(),
        config,
        Box::new(MemoryStore::new()),
        Box::new(lwm2m_objects::Registry::standard()),
    )
    .await
    .expect("server starts on loopback")
}

/// `method uri` with `headers` and `body` through `app`: the status, the
/// response headers and the body.
pub async fn call_raw(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut req = HttpRequest::builder().method(method).uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Body::from(body)).unwrap();
    let resp = tokio::time::timeout(WAIT, app.clone().oneshot(req))
        .await
        .expect("HTTP answer in time")
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, bytes.to_vec())
}

/// `method uri` with an optional text body through `app`: the status and
/// the body as JSON (a body that is not JSON comes as a JSON string, an
/// empty one as `null`).
pub async fn call(app: &Router, method: &str, uri: &str, body: Option<&str>) -> (StatusCode, Json) {
    let body = body.map(|b| b.as_bytes().to_vec()).unwrap_or_default();
    let (status, _, bytes) = call_raw(app, method, uri, &[], body).await;
    let json = if bytes.is_empty() {
        Json::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, json)
}

/// An open `/api/events` stream.
pub struct Events {
    body: Body,
    buf: String,
}

impl Events {
    pub async fn open(app: &Router, query: &str) -> Events {
        let req = HttpRequest::builder()
            .uri(format!("/api/events{query}"))
            .body(Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers().get("content-type").unwrap(),
            "text/event-stream"
        );
        Events {
            body: resp.into_body(),
            buf: String::new(),
        }
    }

    /// The next event called `name` (others are skipped): its data as JSON.
    pub async fn next(&mut self, name: &str) -> Json {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            // Events are separated by a blank line.
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(e) = line.strip_prefix("event: ") {
                        ev = Some(e.to_string());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data.push_str(d);
                    }
                }
                if ev.as_deref() == Some(name) {
                    return serde_json::from_str(&data).unwrap();
                }
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("no {name} event in time"))
                .expect("stream open")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                self.buf.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }
}
