//! Firmware packages: the admin API's `/api/firmware` (upload, list,
//! delete, size limit), the HTTP download `GET /fw/{id}` with `Range`, and
//! the CoAP download `GET /fw/{id}` block by block from a real server
//! driver on 127.0.0.1 (lwm2m-core's endpoint as the pulling device).
#![cfg(all(feature = "admin", feature = "sqlite"))]

use std::sync::Arc;

use axum::http::StatusCode;
use axum::Router;
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{BlockValue, Code, Request, Response};
use lwm2m_server::admin::{self, AdminConfig};
use lwm2m_server::firmware::{sha256_hex, SharedFirmwareStore, SqliteFirmwareStore};
use lwm2m_server::{Server, ServerConfig};
use serde_json::Value as Json;

#[path = "support/loopback.rs"]
mod loopback;
use loopback::{call_raw, loopback_server};
#[path = "support/udp_client.rs"]
mod udp_client;
use udp_client::UdpClient;

struct Fixture {
    server: Server,
    app: Router,
    _dir: tempfile::TempDir,
}

async fn fixture(max_firmware_size: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let models = Arc::new(lwm2m_objects::Registry::standard());
    let config = ServerConfig::default();
    let server = loopback_server(config.clone()).await;
    let store: SharedFirmwareStore = Arc::new(SqliteFirmwareStore::open(dir.path()).unwrap());
    server
        .handle()
        .set_firmware_store(Some(store.clone()))
        .await;
    let mut admin_config = AdminConfig::for_server(&config).with_firmware(store);
    admin_config.max_firmware_size = max_firmware_size;
    let app = admin::router(server.handle(), models, admin_config);
    Fixture {
        server,
        app,
        _dir: dir,
    }
}

fn json(bytes: &[u8]) -> Json {
    serde_json::from_slice(bytes).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(bytes)))
}

/// A package of `len` bytes no two blocks of which are alike.
fn image(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0] ^ (i / 1024) as u8)
        .collect()
}

async fn upload(app: &Router, bytes: &[u8]) -> Json {
    let (status, _, body) = call_raw(
        app,
        "POST",
        "/api/firmware?name=demo&version=2.0",
        &[("content-type", "application/octet-stream")],
        bytes.to_vec(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    json(&body)
}

#[tokio::test]
async fn upload_list_get_delete_and_size_limit() {
    let f = fixture(10_000).await;
    let bytes = image(5000);
    let p = upload(&f.app, &bytes).await;
    let id = p["id"].as_str().unwrap().to_string();
    assert_eq!(p["name"], "demo");
    assert_eq!(p["version"], "2.0");
    assert_eq!(p["size"], 5000);
    assert_eq!(p["sha256"], sha256_hex(&bytes));

    let (status, _, body) = call_raw(&f.app, "GET", "/api/firmware", &[], vec![]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body), Json::Array(vec![p.clone()]));
    let (status, _, body) =
        call_raw(&f.app, "GET", &format!("/api/firmware/{id}"), &[], vec![]).await;
    assert_eq!((status, json(&body)), (StatusCode::OK, p.clone()));

    // Over the limit: 413, nothing stored.
    let (status, _, _) = call_raw(
        &f.app,
        "POST",
        "/api/firmware?name=big&version=1",
        &[],
        vec![0u8; 10_001],
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // No name/version, or no body: 400.
    let (status, _, _) = call_raw(&f.app, "POST", "/api/firmware?name=x", &[], vec![1]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = call_raw(
        &f.app,
        "POST",
        "/api/firmware?name=x&version=1",
        &[],
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, _, body) = call_raw(&f.app, "GET", "/api/firmware", &[], vec![]).await;
    assert_eq!(json(&body).as_array().unwrap().len(), 1);

    let (status, _, _) = call_raw(
        &f.app,
        "DELETE",
        &format!("/api/firmware/{id}"),
        &[],
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = call_raw(
        &f.app,
        "DELETE",
        &format!("/api/firmware/{id}"),
        &[],
        vec![],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call_raw(&f.app, "GET", &format!("/api/firmware/{id}"), &[], vec![]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call_raw(&f.app, "GET", &format!("/fw/{id}"), &[], vec![]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    f.server.shutdown().await;
}

#[tokio::test]
async fn http_download_with_ranges() {
    let f = fixture(1 << 20).await;
    let bytes = image(70_000);
    let id = upload(&f.app, &bytes).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let uri = format!("/fw/{id}");

    let (status, h, body) = call_raw(&f.app, "GET", &uri, &[], vec![]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h["content-length"], "70000");
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(body, bytes);

    let (status, h, body) =
        call_raw(&f.app, "GET", &uri, &[("range", "bytes=65000-")], vec![]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(h["content-range"], "bytes 65000-69999/70000");
    assert_eq!(body, bytes[65_000..]);

    let (status, _, body) =
        call_raw(&f.app, "GET", &uri, &[("range", "bytes=10-19")], vec![]).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, bytes[10..20]);

    let (status, h, body) =
        call_raw(&f.app, "GET", &uri, &[("range", "bytes=70000-")], vec![]).await;
    assert_eq!(status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(h["content-range"], "bytes */70000");
    assert!(body.is_empty());
    f.server.shutdown().await;
}

fn block2(r: &Response) -> BlockValue {
    BlockValue::decode(
        r.options
            .uint(number::BLOCK2)
            .expect("Block2 in the answer"),
    )
    .unwrap()
}

#[tokio::test]
async fn coap_download_block_by_block() {
    let f = fixture(1 << 20).await;
    let bytes = image(5000);
    let id = upload(&f.app, &bytes).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let server = f.server.local_addr();
    let device = UdpClient::spawn(3, |_| Response::new(Code::NOT_FOUND)).await;
    let get = |block: Option<BlockValue>| {
        let r = Request::new(Code::GET).with_path(&format!("/fw/{id}"));
        match block {
            Some(b) => r.with_single_block2(b),
            None => r,
        }
    };

    // A random-access block first (a resumed download), then the others
    // in order, 512 bytes each: each is that slice of the package.
    let mut got = vec![None; 10];
    for num in [7u32, 0, 1, 2, 3, 4, 5, 6, 8, 9] {
        let r = device
            .send(server, get(Some(BlockValue::new(num, false, 512).unwrap())))
            .await;
        assert_eq!(r.code, Code::CONTENT);
        let b = block2(&r);
        assert_eq!((b.num, b.size(), b.more), (num, 512, num < 9));
        assert_eq!(r.options.uint(number::SIZE2), Some(5000));
        let start = num as usize * 512;
        assert_eq!(r.payload, bytes[start..(start + 512).min(5000)]);
        got[num as usize] = Some(r.payload);
    }
    assert_eq!(
        got.into_iter().flatten().flatten().collect::<Vec<u8>>(),
        bytes
    );

    // A block larger than the server's (1024) is answered at the server's
    // size, at the same offset.
    let r = device
        .send(
            server,
            get(Some(BlockValue {
                num: 0,
                more: false,
                szx: 6,
            })),
        )
        .await;
    assert_eq!(block2(&r).size(), 1024);

    // Without Block2: the endpoint fetches every block transparently.
    let r = device.send(server, get(None)).await;
    assert_eq!(r.code, Code::CONTENT);
    assert_eq!(r.payload, bytes);

    // Past the end: 4.00; an unknown id: 4.04; not GET: 4.05.
    let r = device
        .send(server, get(Some(BlockValue::new(10, false, 512).unwrap())))
        .await;
    assert_eq!(r.code, Code::BAD_REQUEST);
    let r = device
        .send(
            server,
            Request::new(Code::GET).with_path("/fw/0000000000000000"),
        )
        .await;
    assert_eq!(r.code, Code::NOT_FOUND);
    let r = device
        .send(
            server,
            Request::new(Code::POST).with_path(&format!("/fw/{id}")),
        )
        .await;
    assert_eq!(r.code, Code::METHOD_NOT_ALLOWED);
    f.server.shutdown().await;
}
