//! `/api/bootstrap` of the admin API wired to a running bootstrap server:
//! CRUD of configurations (persisted in SQLite), and a configuration PUT
//! through the API is what a client then gets when it bootstraps.
#![cfg(all(feature = "admin", feature = "sqlite"))]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::Router;
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Request};
use lwm2m_core::format::{self, ContentFormat};
use lwm2m_core::model::{Node, Path, ResourceValue, Value};
use lwm2m_server::admin::{self, AdminConfig};
use lwm2m_server::bootstrap::driver::BootstrapServer;
use lwm2m_server::bootstrap::{BootstrapConfigStore, BootstrapServerConfig, SqliteConfigStore};
use lwm2m_server::{Server, ServerConfig};
use serde_json::json;

#[path = "support/udp_client.rs"]
mod udp_client;
use udp_client::UdpClient;

#[path = "support/loopback.rs"]
mod loopback;
use loopback::{call, loopback_server};

async fn bootstrap_server(dir: &std::path::Path) -> BootstrapServer {
    BootstrapServer::start(
        "127.0.0.1:0".parse().unwrap(),
        BootstrapServerConfig::default(),
        Box::new(SqliteConfigStore::open(dir).unwrap()),
    )
    .await
    .unwrap()
}

fn app(server: &Server, bs: Option<&BootstrapServer>) -> Router {
    let mut config = AdminConfig::for_server(&ServerConfig::default());
    if let Some(bs) = bs {
        config = config.with_bootstrap(bs.handle());
    }
    admin::router(
        server.handle(),
        Arc::new(lwm2m_objects::Registry::standard()),
        config,
    )
}

fn config_json(server: SocketAddr, lifetime: u32) -> String {
    json!({
        "security": [{"id": 1, "uri": format!("coap://{server}"), "short_server_id": 101}],
        "servers": [{"id": 0, "short_server_id": 101, "lifetime": lifetime}],
    })
    .to_string()
}

#[tokio::test]
async fn bootstrap_configurations_crud_persisted_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let server = loopback_server(ServerConfig::default()).await;
    let bs = bootstrap_server(dir.path()).await;
    let app = app(&server, Some(&bs));

    assert_eq!(
        call(&app, "GET", "/api/bootstrap", None).await,
        (StatusCode::OK, json!({"endpoints": {}}))
    );
    let (s, e) = call(&app, "GET", "/api/bootstrap/dev-1", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(e["error"].as_str().unwrap().contains("dev-1"), "{e}");

    let body = config_json(server.local_addr(), 120);
    let (s, stored) = call(&app, "PUT", "/api/bootstrap/dev-1", Some(&body)).await;
    assert_eq!(s, StatusCode::OK, "{stored}");
    // Defaults filled in: the two objects are deleted first.
    assert_eq!(stored["delete"], json!(["/0", "/1"]));
    assert_eq!(stored["servers"][0]["lifetime"], 120);
    assert_eq!(
        call(&app, "GET", "/api/bootstrap/dev-1", None).await,
        (StatusCode::OK, stored.clone())
    );
    let (s, all) = call(&app, "GET", "/api/bootstrap", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(all, json!({"endpoints": {"dev-1": stored}}));

    // Replace.
    let body = config_json(server.local_addr(), 300);
    let (s, stored) = call(&app, "PUT", "/api/bootstrap/dev-1", Some(&body)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(stored["servers"][0]["lifetime"], 300);

    // Refused: bad JSON, unknown field, an invalid configuration.
    for bad in [
        "{",
        r#"{"securty": []}"#,
        r#"{"servers": [{"id": 0, "short_server_id": 7}]}"#,
    ] {
        let (s, e) = call(&app, "PUT", "/api/bootstrap/dev-2", Some(bad)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {e}");
        assert!(e["error"].is_string(), "{e}");
    }
    assert_eq!(
        call(&app, "GET", "/api/bootstrap/dev-2", None).await.0,
        StatusCode::NOT_FOUND
    );

    // Persisted: another connection to the same database sees it.
    let other = SqliteConfigStore::open(dir.path()).unwrap();
    let c = other.get("dev-1").unwrap().expect("stored in SQLite");
    assert_eq!(c.servers[0].lifetime, 300);

    assert_eq!(
        call(&app, "DELETE", "/api/bootstrap/dev-1", None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(&app, "DELETE", "/api/bootstrap/dev-1", None).await.0,
        StatusCode::NOT_FOUND
    );
    assert!(other.get("dev-1").unwrap().is_none());
    bs.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn without_a_bootstrap_server_the_routes_answer_503() {
    let server = loopback_server(ServerConfig::default()).await;
    let app = app(&server, None);
    for (method, uri) in [
        ("GET", "/api/bootstrap"),
        ("GET", "/api/bootstrap/x"),
        ("PUT", "/api/bootstrap/x"),
        ("DELETE", "/api/bootstrap/x"),
    ] {
        let (s, e) = call(&app, method, uri, Some("{}")).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{method} {uri}");
        assert!(e["error"].as_str().unwrap().contains("bootstrap"), "{e}");
    }
    server.shutdown().await;
}

fn resource(node: &Node, id: u16) -> Value {
    let Node::Instance(i) = node else {
        panic!("instance expected: {node:?}")
    };
    match &i.resources.get(&id).expect("resource").value {
        ResourceValue::Single(v) => v.clone(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_configuration_put_through_the_api_is_what_a_client_bootstraps_with() {
    let dir = tempfile::tempdir().unwrap();
    let server = loopback_server(ServerConfig::default()).await;
    let bs = bootstrap_server(dir.path()).await;
    let app = app(&server, Some(&bs));
    let body = config_json(server.local_addr(), 77);
    let (s, e) = call(&app, "PUT", "/api/bootstrap/api-dev", Some(&body)).await;
    assert_eq!(s, StatusCode::OK, "{e}");

    let mut client = UdpClient::recording(11).await;
    let r = client
        .send(
            bs.local_addr(),
            Request::new(Code::POST)
                .with_path("/bs")
                .with_query("ep=api-dev"),
        )
        .await;
    assert_eq!(r.code, Code::CHANGED);
    let ops = client.until_finish().await;
    let paths: Vec<(Code, String)> = ops.iter().map(|r| (r.code, r.path())).collect();
    assert_eq!(
        paths,
        [
            (Code::DELETE, "/0".to_string()),
            (Code::DELETE, "/1".to_string()),
            (Code::PUT, "/0/1".to_string()),
            (Code::PUT, "/1/0".to_string()),
            (Code::POST, "/bs".to_string()),
        ]
    );
    let models = lwm2m_objects::Registry::standard();
    let decode = |r: &Request| {
        let cf = r.options.uint(number::CONTENT_FORMAT).unwrap() as u16;
        let path: Path = r.path().parse().unwrap();
        format::decode(ContentFormat(cf), &r.payload, &path, &models).unwrap()
    };
    assert_eq!(
        resource(&decode(&ops[2]), 0),
        Value::String(format!("coap://{}", server.local_addr()))
    );
    assert_eq!(resource(&decode(&ops[3]), 1), Value::UnsignedInteger(77));

    // An endpoint the API deleted is refused.
    assert_eq!(
        call(&app, "DELETE", "/api/bootstrap/api-dev", None).await.0,
        StatusCode::NO_CONTENT
    );
    let r = client
        .send(
            bs.local_addr(),
            Request::new(Code::POST)
                .with_path("/bs")
                .with_query("ep=api-dev"),
        )
        .await;
    assert!(!r.code.is_success(), "{:?}", r.code);
    bs.shutdown().await;
    server.shutdown().await;
}

/// A bootstrap configuration whose bootstrap-server account uses the PSK
/// `identity`.
fn psk_bootstrap_json(identity: &str) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    json!({
        "security": [{
            "id": 0, "uri": "coaps://bs.example:5784", "bootstrap_server": true,
            "security_mode": "psk", "public_key_or_identity": hex(identity.as_bytes()),
            "secret_key": hex(b"key"),
        }],
    })
    .to_string()
}

#[tokio::test]
async fn a_bootstrap_psk_identity_of_another_endpoint_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let server = loopback_server(ServerConfig::default()).await;
    let bs = bootstrap_server(dir.path()).await;
    let app = app(&server, Some(&bs));
    let put = |ep: &'static str, body: String| {
        let app = app.clone();
        async move { call(&app, "PUT", &format!("/api/bootstrap/{ep}"), Some(&body)).await }
    };
    assert_eq!(
        put("dev-a", psk_bootstrap_json("id-a")).await.0,
        StatusCode::OK
    );
    let (s, e) = put("dev-b", psk_bootstrap_json("id-a")).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("\"id-a\" is already used by endpoint \"dev-a\""),
        "{e}"
    );
    assert_eq!(
        call(&app, "GET", "/api/bootstrap/dev-b", None).await.0,
        StatusCode::NOT_FOUND
    );
    // dev-a may keep (re-put) its own identity; once it gives it up, dev-b
    // may take it.
    assert_eq!(
        put("dev-a", psk_bootstrap_json("id-a")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        put("dev-a", psk_bootstrap_json("id-a2")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        put("dev-b", psk_bootstrap_json("id-a")).await.0,
        StatusCode::OK
    );
    // A PSK bootstrap account without a key is refused as invalid.
    let no_key = json!({"security": [{"id": 0, "uri": "coaps://bs", "bootstrap_server": true,
        "security_mode": "psk", "public_key_or_identity": "6964"}]})
    .to_string();
    let (s, e) = put("dev-c", no_key).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("needs a PSK key"),
        "{e}"
    );
    bs.shutdown().await;
    // After a restart the index is rebuilt from the database.
    let bs = bootstrap_server(dir.path()).await;
    let app = self::app(&server, Some(&bs));
    let body = psk_bootstrap_json("id-a2");
    let (s, e) = call(&app, "PUT", "/api/bootstrap/dev-x", Some(&body)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    bs.shutdown().await;
    server.shutdown().await;
}
