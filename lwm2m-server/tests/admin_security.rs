//! `/api/security/clients` of the admin API over a SQLite security store:
//! CRUD, PSK keys never in answers, typed errors (400, 404, 409, 503).
#![cfg(all(feature = "admin", feature = "sqlite"))]

use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::Router;
use lwm2m_server::admin::{self, AdminConfig, SharedSecurityStore};
use lwm2m_server::{SecurityInfo, SecurityStore, Server, ServerConfig, SqliteSecurityStore};
use serde_json::json;

#[path = "support/loopback.rs"]
mod loopback;
use loopback::{call, loopback_server};

fn app(server: &Server, store: Option<SharedSecurityStore>) -> Router {
    let mut config = AdminConfig::for_server(&ServerConfig::default());
    if let Some(store) = store {
        config = config.with_security(store);
    }
    admin::router(
        server.handle(),
        Arc::new(lwm2m_objects::Registry::standard()),
        config,
    )
}

#[tokio::test]
async fn security_credentials_crud_persisted_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let server = loopback_server(ServerConfig::default()).await;
    let store: SharedSecurityStore = Arc::new(Mutex::new(Box::new(
        SqliteSecurityStore::open(dir.path()).unwrap(),
    )));
    let app = app(&server, Some(store.clone()));
    let base = "/api/security/clients";

    assert_eq!(
        call(&app, "GET", base, None).await,
        (StatusCode::OK, json!([]))
    );
    let (st, body) = call(&app, "GET", &format!("{base}/dev1"), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("dev1"), "{body}");

    // PSK: the answer has the identity, never the key.
    let (st, body) = call(
        &app,
        "PUT",
        &format!("{base}/dev1"),
        Some(r#"{"endpoint":"dev1","psk":{"identity":"id1","key":"00A1ff"}}"#),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"endpoint":"dev1","psk":{"identity":"id1"}}));
    // The key reached the store intact.
    assert_eq!(
        store.lock().unwrap().get_by_psk_identity("id1").unwrap(),
        Some(SecurityInfo::psk("dev1", "id1", &[0x00, 0xa1, 0xff]))
    );

    let (st, _) = call(
        &app,
        "PUT",
        &format!("{base}/dev2"),
        Some(r#"{"rpk":{"key":"3059"}}"#),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = call(
        &app,
        "PUT",
        &format!("{base}/dev3"),
        Some(r#"{"x509":true}"#),
    )
    .await;
    assert_eq!(st, StatusCode::OK);

    let (st, list) = call(&app, "GET", base, None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        list,
        json!([
            {"endpoint":"dev1","psk":{"identity":"id1"}},
            {"endpoint":"dev2","rpk":{"key":"3059"}},
            {"endpoint":"dev3","x509":true},
        ])
    );
    assert!(!list.to_string().contains("a1ff"), "{list}");

    // Another endpoint may not take dev1's identity: 409, nothing changed.
    let (st, body) = call(
        &app,
        "PUT",
        &format!("{base}/dev2"),
        Some(r#"{"psk":{"identity":"id1","key":"01"}}"#),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().unwrap().contains("dev1"), "{body}");
    let (_, dev2) = call(&app, "GET", &format!("{base}/dev2"), None).await;
    assert_eq!(dev2, json!({"endpoint":"dev2","rpk":{"key":"3059"}}));

    // Replace dev1's credentials.
    let (st, _) = call(
        &app,
        "PUT",
        &format!("{base}/dev1"),
        Some(r#"{"x509":true}"#),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        call(&app, "GET", &format!("{base}/dev1"), None).await,
        (StatusCode::OK, json!({"endpoint":"dev1","x509":true}))
    );

    // Delete, then 404.
    let (st, _) = call(&app, "DELETE", &format!("{base}/dev3"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = call(&app, "DELETE", &format!("{base}/dev3"), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // What the API stored survives reopening the database.
    let reopened = SqliteSecurityStore::open(dir.path()).unwrap();
    let eps: Vec<_> = reopened
        .all()
        .unwrap()
        .into_iter()
        .map(|i| i.endpoint)
        .collect();
    assert_eq!(eps, ["dev1", "dev2"]);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_security_bodies_are_400() {
    let server = loopback_server(ServerConfig::default()).await;
    let store: SharedSecurityStore = Arc::new(Mutex::new(Box::new(
        lwm2m_server::MemorySecurityStore::new(),
    )));
    let app = app(&server, Some(store.clone()));
    let uri = "/api/security/clients/dev1";
    for body in [
        r#"{"psk":{"identity":"i","key":"0g"}}"#,
        r#"{"psk":{"identity":"i","key":"abc"}}"#,
        r#"{"psk":{"identity":"i","key":""}}"#,
        r#"{"psk":{"identity":"","key":"00"}}"#,
        r#"{"psk":{"identity":"i"}}"#,
        r#"{"rpk":{"key":"zz"}}"#,
        r#"{"x509":false}"#,
        r#"{"x509":true,"rpk":{"key":"00"}}"#,
        r#"{}"#,
        r#"{"endpoint":"other","x509":true}"#,
        r#"{"x509":true,"extra":1}"#,
        r#"[1]"#,
        "not json",
    ] {
        let (st, resp) = call(&app, "PUT", uri, Some(body)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{body}: {resp}");
        assert!(resp["error"].is_string(), "{body}: {resp}");
    }
    assert!(store.lock().unwrap().all().unwrap().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn without_a_security_store_the_routes_answer_503() {
    let server = loopback_server(ServerConfig::default()).await;
    let app = app(&server, None);
    let (st, _) = call(&app, "GET", "/api/security/clients", None).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    let (st, _) = call(
        &app,
        "PUT",
        "/api/security/clients/dev1",
        Some(r#"{"x509":true}"#),
    )
    .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    server.shutdown().await;
}
