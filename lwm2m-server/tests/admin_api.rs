//! The admin HTTP API (axum router driven with tower's `oneshot`) against a
//! real server driver on 127.0.0.1 and a scripted device: lwm2m-core's CoAP
//! endpoint on a UDP socket that registers and answers like a small client.
#![cfg(all(feature = "admin", feature = "sqlite"))]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request as HttpRequest, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Request, Response};
use lwm2m_core::format::{self, ContentFormat};
use lwm2m_core::model::{Node, Path};
use lwm2m_server::admin::{self, AdminConfig};
use lwm2m_server::{Server, ServerConfig};
use serde_json::{json, Value as Json};
use tower::ServiceExt;

mod udp_device;
use udp_device::{Cmd, Device, WAIT};

#[path = "support/loopback.rs"]
mod loopback;
use loopback::{call, loopback_server, Events};

// ---------------------------------------------------------------------------
// The fixture: server + router (+ device)

struct Fixture {
    server: Server,
    app: Router,
}

async fn fixture(config: ServerConfig) -> Fixture {
    let models = Arc::new(lwm2m_objects::Registry::standard());
    let server = loopback_server(config.clone()).await;
    let app = admin::router(server.handle(), models, AdminConfig::for_server(&config));
    Fixture { server, app }
}

async fn registered(ep: &str) -> (Fixture, Device) {
    let f = fixture(ServerConfig::default()).await;
    let d = Device::spawn(7).await;
    d.register(f.server.local_addr(), &format!("ep={ep}&lt=300&lwm2m=1.1"))
        .await;
    (f, d)
}

async fn text(app: &Router, uri: &str) -> String {
    match call(app, "GET", uri, None).await {
        (StatusCode::OK, Json::String(s)) => s,
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn clients_list_and_one_client() {
    let (f, _d) = registered("dev1").await;
    let (s, list) = call(&f.app, "GET", "/api/clients", None).await;
    assert_eq!(s, StatusCode::OK);
    let c = &list[0];
    assert_eq!(c["endpoint"], "dev1");
    assert_eq!(c["lifetime"], 300);
    assert_eq!(c["lwM2mVersion"], "1.1");
    assert_eq!(c["bindingMode"], "U");
    assert_eq!(c["queueMode"], false);
    assert_eq!(
        c["address"].as_str().unwrap().split(':').next(),
        Some("127.0.0.1")
    );
    let urls: Vec<&str> = c["objectLinks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["url"].as_str().unwrap())
        .collect();
    assert_eq!(urls, ["/1/0", "/3/0", "/3303"]);
    assert!(c["registrationDate"].as_str().unwrap().ends_with('Z'));
    assert_eq!(c["registrationId"].as_str().unwrap().len(), 20);

    let (s, one) = call(&f.app, "GET", "/api/clients/dev1", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(&one, c);
    let (s, e) = call(&f.app, "GET", "/api/clients/nobody", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(e["error"].as_str().unwrap().contains("nobody"));
    f.server.shutdown().await;
}

#[tokio::test]
async fn read_in_default_and_requested_formats() {
    let (f, d) = registered("dev1").await;
    let mut events = Events::open(&f.app, "").await;
    let (s, mut r) = call(&f.app, "GET", "/api/clients/dev1/3/0", None).await;
    assert_eq!(s, StatusCode::OK);
    // The result is also an event, under the same request id.
    let request_id = r.as_object_mut().unwrap().remove("requestId").unwrap();
    let ev = events.next("REQUEST_RESULT").await;
    assert_eq!(ev["requestId"], request_id);
    assert_eq!(ev["operation"], "read");
    assert_eq!(ev["path"], "/3/0");
    assert_eq!(ev["result"], r);
    assert_eq!(
        r,
        json!({"status": "CONTENT", "code": "2.05", "success": true, "content": {
        "kind": "instance", "id": 0, "resources": [
            {"kind": "singleResource", "id": 0, "type": "STRING", "value": "Open Mobile Alliance"},
            {"kind": "singleResource", "id": 9, "type": "INTEGER", "value": 42},
        ]}})
    );
    assert_eq!(d.last_request().options.uint(number::ACCEPT), None);

    let (s, r) = call(
        &f.app,
        "GET",
        "/api/clients/dev1/3/0?format=SENML_JSON",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        r["content"]["resources"][0]["value"],
        "Open Mobile Alliance"
    );
    assert_eq!(d.last_request().options.uint(number::ACCEPT), Some(110));

    // The device's error is reported, not turned into an HTTP error.
    let (s, mut r) = call(&f.app, "GET", "/api/clients/dev1/3/0/5", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(r.as_object_mut().unwrap().remove("requestId").is_some());
    assert_eq!(
        r,
        json!({"status": "NOT_FOUND", "code": "4.04", "success": false})
    );

    let (s, _) = call(&f.app, "GET", "/api/clients/dev1/3/x", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call(&f.app, "GET", "/api/clients/dev1/3/0?format=XML", None).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = call(&f.app, "GET", "/api/clients/nobody/3/0", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    f.server.shutdown().await;
}

#[tokio::test]
async fn unanswered_read_is_a_gateway_timeout() {
    let (f, _d) = registered("dev1").await;
    let (s, e) = call(&f.app, "GET", "/api/clients/dev1/7/0?timeout=0.3", None).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        e["error"].as_str().unwrap().contains("did not answer"),
        "{e}"
    );
    assert!(e["requestId"].as_str().unwrap().starts_with('r'), "{e}");
    f.server.shutdown().await;
}

#[tokio::test]
async fn write_execute_create_delete() {
    let (f, d) = registered("dev1").await;
    // Write a resource; its type comes from the Server object's model.
    let (s, r) = call(
        &f.app,
        "PUT",
        "/api/clients/dev1/1/0/1?format=TEXT",
        Some(r#"{"id":1,"kind":"singleResource","value":120}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "CHANGED");
    let req = d.last_request();
    assert_eq!(req.code, Code::PUT);
    assert_eq!(req.payload, b"120");
    // Partial update goes out as POST, TLV by default for a 1.1 client.
    let (s, r) = call(
        &f.app,
        "PUT",
        "/api/clients/dev1/1/0/1?replace=false",
        Some(r#"{"id":1,"kind":"singleResource","value":120}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let req = d.last_request();
    assert_eq!(req.code, Code::POST);
    assert_eq!(req.options.uint(number::CONTENT_FORMAT), Some(11542));

    let (s, _) = call(&f.app, "PUT", "/api/clients/dev1/1/0/1", Some("{not json")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (s, r) = call(&f.app, "POST", "/api/clients/dev1/3/0/4", Some("0='a',1")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["status"], "CHANGED");
    assert_eq!(d.last_request().payload, b"0='a',1");

    // 3303 is not among the built-in models: the body names the type.
    let body = r#"{"kind":"instance","id":0,"resources":[{"id":5700,"kind":"singleResource","type":"FLOAT","value":21.5}]}"#;
    let (s, r) = call(&f.app, "POST", "/api/clients/dev1/3303", Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "CREATED");
    assert_eq!(r["location"], "/3303/0");
    let req = d.last_request();
    let node = format::decode(
        ContentFormat(req.options.uint(number::CONTENT_FORMAT).unwrap() as u16),
        &req.payload,
        &Path::Object(3303),
        &lwm2m_objects::Registry::standard(),
    )
    .unwrap();
    let Node::Object(o) = node else { panic!() };
    assert!(o.instances[&0].resources.contains_key(&5700), "{o:?}");

    let (s, r) = call(&f.app, "DELETE", "/api/clients/dev1/3303/0", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["status"], "DELETED");
    // POST on an instance is neither Execute nor Create.
    let (s, _) = call(&f.app, "POST", "/api/clients/dev1/3/0", Some("")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    f.server.shutdown().await;
}

#[tokio::test]
async fn discover_and_write_attributes() {
    let (f, d) = registered("dev1").await;
    let (s, r) = call(&f.app, "GET", "/api/clients/dev1/3/discover", None).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let links = r["objectLinks"].as_array().unwrap();
    assert_eq!(links.len(), 4);
    assert_eq!(
        links[3],
        json!({"url": "/3/0/9", "attributes": {"pmin": "10"}})
    );

    let (s, r) = call(
        &f.app,
        "PUT",
        "/api/clients/dev1/3/0/9/attributes?pmin=10&pmax=60&gt",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["status"], "CHANGED");
    let queries: Vec<String> = d
        .last_request()
        .options
        .get_all(number::URI_QUERY)
        .map(|q| String::from_utf8_lossy(q).into_owned())
        .collect();
    assert_eq!(queries, ["pmin=10", "pmax=60", "gt"]);
    let (s, e) = call(
        &f.app,
        "PUT",
        "/api/clients/dev1/3/0/9/attributes?dim=2",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let (s, _) = call(&f.app, "GET", "/api/clients/dev1/3/0/9/attributes", None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    f.server.shutdown().await;
}

#[tokio::test]
async fn observe_notifications_arrive_as_events_then_cancel() {
    let (f, d) = registered("dev1").await;
    let mut events = Events::open(&f.app, "?ep=dev1").await;
    let (s, r) = call(&f.app, "POST", "/api/clients/dev1/3/0/9/observe", None).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["content"]["value"], 42);

    d.cmds
        .send(Cmd::Notify(
            Response::new(Code::CONTENT).with_payload(0, b"41".to_vec()),
        ))
        .await
        .unwrap();
    let n = events.next("NOTIFICATION").await;
    assert_eq!(n["ep"], "dev1");
    assert_eq!(n["res"], "/3/0/9");
    assert_eq!(
        n["val"],
        json!({"kind": "singleResource", "id": 9, "type": "INTEGER", "value": 41})
    );

    let (s, r) = call(&f.app, "DELETE", "/api/clients/dev1/3/0/9/observe", None).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(d.last_request().options.uint(number::OBSERVE), Some(1));
    let (s, _) = call(&f.app, "DELETE", "/api/clients/dev1/3/0/9/observe", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "already cancelled");

    let (_, m) = call(&f.app, "GET", "/metrics", None).await;
    let m = m.as_str().unwrap().to_string();
    assert!(m.contains("\nlwm2m_notifications_total 1\n"), "{m}");
    f.server.shutdown().await;
}

#[tokio::test]
async fn sse_reports_registration_update_and_deregistration() {
    let f = fixture(ServerConfig::default()).await;
    let mut events = Events::open(&f.app, "").await;
    let d = Device::spawn(9).await;
    let loc = d
        .register(f.server.local_addr(), "ep=sse1&lt=120&b=U")
        .await;
    let r = events.next("REGISTRATION").await;
    assert_eq!(r["endpoint"], "sse1");
    assert_eq!(r["lifetime"], 120);

    let resp = d
        .send(
            f.server.local_addr(),
            Request::new(Code::POST).with_path(&loc),
        )
        .await;
    assert_eq!(resp.code, Code::CHANGED);
    assert_eq!(events.next("UPDATED").await["endpoint"], "sse1");

    let resp = d
        .send(
            f.server.local_addr(),
            Request::new(Code::DELETE).with_path(&loc),
        )
        .await;
    assert_eq!(resp.code, Code::DELETED);
    let r = events.next("DEREGISTRATION").await;
    assert_eq!(r["endpoint"], "sse1");
    assert_eq!(r["expired"], false);
    f.server.shutdown().await;
}

#[tokio::test]
async fn sleeping_queue_mode_client_gets_202_and_result_as_event() {
    let config = ServerConfig {
        awake_time: lwm2m_core::time::Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let f = fixture(config).await;
    let mut events = Events::open(&f.app, "").await;
    let d = Device::spawn(11).await;
    let loc = d
        .register(f.server.local_addr(), "ep=q1&lt=300&lwm2m=1.1&Q")
        .await;
    // AWAKE after the Register, SLEEPING once the awake time has passed.
    events.next("AWAKE").await;
    assert_eq!(events.next("SLEEPING").await, json!({"ep": "q1"}));
    let (_, c) = call(&f.app, "GET", "/api/clients/q1", None).await;
    assert_eq!(c["sleeping"], true);

    let (s, r) = call(&f.app, "GET", "/api/clients/q1/3/0", None).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    assert_eq!(r["status"], "QUEUED");
    let id = r["requestId"].as_str().unwrap().to_string();

    // The client wakes up (Update): the held request goes out.
    let resp = d
        .send(
            f.server.local_addr(),
            Request::new(Code::POST).with_path(&loc),
        )
        .await;
    assert_eq!(resp.code, Code::CHANGED);
    let r = events.next("REQUEST_RESULT").await;
    assert_eq!(r["requestId"], id);
    assert_eq!(r["ep"], "q1");
    assert_eq!(r["path"], "/3/0");
    assert_eq!(r["operation"], "read");
    assert_eq!(
        r["result"]["content"]["resources"][0]["value"],
        "Open Mobile Alliance"
    );
    f.server.shutdown().await;
}

#[tokio::test]
async fn metrics_count_clients_and_requests() {
    let (f, _d) = registered("m1").await;
    let d2 = Device::spawn(13).await;
    d2.register(f.server.local_addr(), "ep=m2&lt=300").await;
    // The registration counter follows the event stream: wait for it.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = text(&f.app, "/metrics").await;
        // The router subscribes to events when it is made, before both Registers.
        if m.contains("\nlwm2m_registrations_total 2\n") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    call(&f.app, "GET", "/api/clients/m1/3/0", None).await;
    call(&f.app, "GET", "/api/clients/m1/3/0/5", None).await;
    let m = text(&f.app, "/metrics").await;
    assert!(
        m.contains("# TYPE lwm2m_registered_clients gauge\nlwm2m_registered_clients 2\n"),
        "{m}"
    );
    assert!(
        m.contains("lwm2m_dm_requests_total{operation=\"read\",outcome=\"success\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("lwm2m_dm_requests_total{operation=\"read\",outcome=\"4.04\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("lwm2m_dm_request_duration_seconds_count{operation=\"read\"} 2\n"),
        "{m}"
    );
    f.server.shutdown().await;
}

#[tokio::test]
async fn openapi_lists_exactly_the_routes_and_every_route_is_served() {
    let f = fixture(ServerConfig::default()).await;
    let (s, doc) = call(&f.app, "GET", "/api/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            assert!(op["responses"].is_object(), "{method} {path} has responses");
            documented.insert((method.clone(), path.clone()));
        }
    }
    let routes: BTreeSet<(String, String)> = admin::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, routes);

    // Every route answers something other than the router's fallback or 405.
    for (method, path) in admin::ROUTES {
        let uri = path
            .replace("{endpoint}", "nobody")
            .replace("{path}", "3/0");
        let req = HttpRequest::builder()
            .method(method.to_uppercase().as_str())
            .uri(&uri)
            .body(Body::empty())
            .unwrap();
        let resp = f.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        if status == StatusCode::NOT_FOUND {
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&body);
            assert!(!body.contains("no route"), "{method} {uri}: {body}");
        }
    }
    // And the fallback does say so.
    let (s, e) = call(&f.app, "GET", "/api/nothing", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(e["error"].as_str().unwrap().contains("no route"));
    f.server.shutdown().await;
}

#[tokio::test]
async fn ui_and_object_specs_are_served() {
    let f = fixture(ServerConfig::default()).await;
    let html = text(&f.app, "/").await;
    assert!(html.contains("<script src=\"/app.js\">"));
    let js = text(&f.app, "/app.js").await;
    assert!(js.contains("new EventSource(\"/api/events\")"));
    let (s, specs) = call(&f.app, "GET", "/api/objectspecs", None).await;
    assert_eq!(s, StatusCode::OK);
    let device = specs
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == 3)
        .unwrap();
    assert_eq!(device["name"], "Device");
    let manufacturer = device["resourcedefs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == 0)
        .unwrap();
    assert_eq!(manufacturer["name"], "Manufacturer");
    assert_eq!(manufacturer["operations"], "R");
    assert_eq!(manufacturer["type"], "string");
    assert_eq!(manufacturer["instancetype"], "single");
    assert_eq!(device["instancetype"], "single");
    f.server.shutdown().await;
}

#[tokio::test]
async fn expiry_is_a_deregistration_event_marked_expired() {
    let config = ServerConfig {
        lifetime_grace: lwm2m_core::time::Duration::ZERO,
        ..ServerConfig::default()
    };
    let f = fixture(config).await;
    let mut events = Events::open(&f.app, "?ep=short").await;
    let d = Device::spawn(15).await;
    d.register(f.server.local_addr(), "ep=short&lt=1").await;
    assert_eq!(events.next("REGISTRATION").await["lifetime"], 1);
    let r = events.next("DEREGISTRATION").await;
    assert_eq!(r["endpoint"], "short");
    assert_eq!(r["expired"], true);
    let m = text(&f.app, "/metrics").await;
    assert!(
        m.contains("\nlwm2m_registration_expirations_total 1\n"),
        "{m}"
    );
    assert!(m.contains("\nlwm2m_registered_clients 0\n"), "{m}");
    let (s, _) = call(&f.app, "GET", "/api/clients/short/3/0", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    f.server.shutdown().await;
}

#[tokio::test]
async fn composite_read_write_observe_and_cancel() {
    let (f, d) = registered("comp").await;
    let mut events = Events::open(&f.app, "?ep=comp").await;
    // Read-Composite: SenML CBOR by default, for the path list and the answer.
    let (s, r) = call(
        &f.app,
        "GET",
        "/api/clients/comp/composite?paths=/3/0/9,/1/0/1",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(
        r["values"],
        json!([{"path": "/3/0/9", "value": 42}, {"path": "/1/0/1", "value": 120}])
    );
    let req = d.last_request();
    assert_eq!(req.code, Code::FETCH);
    assert_eq!(req.options.uint(number::CONTENT_FORMAT), Some(112));
    assert_eq!(req.options.uint(number::ACCEPT), Some(112));
    // Sorted by path: [{0: "/1/0/1"}, {0: "/3/0/9"}].
    let mut want = vec![0x82, 0xa1, 0x00, 0x66];
    want.extend_from_slice(b"/1/0/1");
    want.extend_from_slice(&[0xa1, 0x00, 0x66]);
    want.extend_from_slice(b"/3/0/9");
    assert_eq!(req.payload, want);
    // format= picks SenML JSON.
    let (s, r) = call(
        &f.app,
        "GET",
        "/api/clients/comp/composite?paths=/3/0/9&format=SENML_JSON",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(d.last_request().payload, br#"[{"n":"/3/0/9"}]"#);

    // Write-Composite with a JSON body, values typed by the models.
    let (s, r) = call(
        &f.app,
        "PUT",
        "/api/clients/comp/composite?format=SENML_JSON",
        Some(r#"{"/1/0/1": 300, "/3/0/14": "+02"}"#),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["code"], "2.04");
    let req = d.last_request();
    assert_eq!(req.code, Code::IPATCH);
    assert_eq!(
        req.payload,
        br#"[{"n":"/1/0/1","v":300},{"n":"/3/0/14","vs":"+02"}]"#
    );
    for bad in [r#"{"/1/0/1": "x"}"#, r#"{"/1/0": 1}"#, "{}", "[1]"] {
        let (s, r) = call(&f.app, "PUT", "/api/clients/comp/composite", Some(bad)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {r}");
    }

    // Observe-Composite, a notification, cancel.
    let (s, r) = call(
        &f.app,
        "POST",
        "/api/clients/comp/composite?paths=/3/0/9,/1/0/1&format=SENML_JSON",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(d.last_request().options.uint(number::OBSERVE), Some(0));
    d.cmds
        .send(Cmd::Notify(Response::new(Code::CONTENT).with_payload(
            110,
            br#"[{"n":"/3/0/9","v":41},{"n":"/1/0/1","v":120}]"#.to_vec(),
        )))
        .await
        .unwrap();
    let n = events.next("NOTIFICATION").await;
    assert_eq!(n["res"], "/1/0/1,/3/0/9");
    assert_eq!(
        n["val"],
        json!([{"path": "/3/0/9", "value": 41}, {"path": "/1/0/1", "value": 120}])
    );
    // Cancel names the same paths, in any order.
    let (s, r) = call(
        &f.app,
        "DELETE",
        "/api/clients/comp/composite?paths=/1/0/1,/3/0/9",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    let req = d.last_request();
    assert_eq!(
        (req.code, req.options.uint(number::OBSERVE)),
        (Code::FETCH, Some(1))
    );
    let (s, _) = call(
        &f.app,
        "DELETE",
        "/api/clients/comp/composite?paths=/1/0/1,/3/0/9",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "already cancelled");

    // Bad or missing paths.
    for uri in [
        "/api/clients/comp/composite",
        "/api/clients/comp/composite?paths=",
        "/api/clients/comp/composite?paths=/3/x",
    ] {
        let (s, r) = call(&f.app, "GET", uri, None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {r}");
    }
    let (s, _) = call(&f.app, "PATCH", "/api/clients/comp/composite", None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    f.server.shutdown().await;
}

#[tokio::test]
async fn send_arrives_as_a_sse_event() {
    let (f, d) = registered("sender").await;
    let mut events = Events::open(&f.app, "?ep=sender").await;
    let req = Request::new(Code::POST).with_path("/dp").with_payload(
        110,
        br#"[{"bn":"/3/0/","bt":1700000000,"n":"9","v":40}]"#.to_vec(),
    );
    let resp = d.send(f.server.local_addr(), req).await;
    assert_eq!(resp.code, Code::CHANGED);
    let e = events.next("SEND").await;
    assert_eq!(
        e,
        json!({"ep": "sender", "contentFormat": 110,
               "values": [{"path": "/3/0/9", "value": 40, "time": 1700000000.0}]})
    );
    let (_, m) = call(&f.app, "GET", "/metrics", None).await;
    assert!(
        m.as_str().unwrap().contains("\nlwm2m_sends_total 1\n"),
        "{m}"
    );
    f.server.shutdown().await;
}
