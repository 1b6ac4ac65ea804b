//! Over real UDP on 127.0.0.1 with the tokio drivers: a client (lwm2m-core's
//! CoAP endpoint on a socket) bootstraps from the bootstrap server, then
//! registers to the LwM2M server with the URI and lifetime it was given.
#![cfg(all(feature = "sqlite", feature = "tokio"))]

use std::net::SocketAddr;

use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Request};
use lwm2m_core::format::{self, ContentFormat};
use lwm2m_core::model::{Node, Path, ResourceValue, Value};
use lwm2m_server::bootstrap::driver::BootstrapServer;
use lwm2m_server::bootstrap::{
    BootstrapConfig, BootstrapEvent, BootstrapFile, BootstrapServerConfig, MemoryConfigStore,
};
use lwm2m_server::{ServerConfig, ServerEvent};

#[path = "support/udp_client.rs"]
mod udp_client;
use udp_client::UdpClient;

#[path = "support/loopback.rs"]
mod loopback;
use loopback::{loopback_server, WAIT};

fn resource(node: &Node, id: u16) -> Value {
    let Node::Instance(i) = node else {
        panic!("not an instance: {node:?}")
    };
    match &i.resources[&id].value {
        ResourceValue::Single(v) => v.clone(),
        ResourceValue::Multiple(m) => panic!("multiple: {m:?}"),
    }
}

fn number(v: &Value) -> u64 {
    match v {
        Value::Integer(i) => u64::try_from(*i).unwrap(),
        Value::UnsignedInteger(u) => *u,
        other => panic!("not a number: {other:?}"),
    }
}

/// The configuration a newcomer writes in bootstrap.json, pointing at `server`.
fn bootstrap_json(server: SocketAddr) -> String {
    format!(
        r#"{{"endpoints": {{"udp-dev": {{
            "security": [{{"id": 1, "uri": "coap://{server}", "short_server_id": 101}}],
            "servers": [{{"id": 0, "short_server_id": 101, "lifetime": 120}}]
        }}}}}}"#
    )
}

#[tokio::test]
async fn client_bootstraps_then_registers_with_what_it_was_given() {
    let server = loopback_server(ServerConfig::default()).await;
    let file = BootstrapFile::from_json(&bootstrap_json(server.local_addr())).unwrap();
    let bs = BootstrapServer::start(
        "127.0.0.1:0".parse().unwrap(),
        BootstrapServerConfig::default(),
        Box::new(MemoryConfigStore::from(file)),
    )
    .await
    .unwrap();
    assert_ne!(bs.local_addr(), server.local_addr());
    let mut bs_events = bs.events();
    let mut reg_events = server.events();

    let mut client = UdpClient::recording(7).await;
    let r = client
        .send(
            bs.local_addr(),
            Request::new(Code::POST)
                .with_path("/bs")
                .with_query("ep=udp-dev"),
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
        assert_eq!(ContentFormat(cf), ContentFormat::TLV);
        let path: Path = r.path().parse().unwrap();
        format::decode(ContentFormat(cf), &r.payload, &path, &models).unwrap()
    };
    let security = decode(&ops[2]);
    let srv = decode(&ops[3]);
    let Value::String(uri) = resource(&security, 0) else {
        panic!("uri is a string")
    };
    let lifetime = number(&resource(&srv, 1));
    assert_eq!(number(&resource(&security, 10)), 101);

    // Finished is reported once the client acknowledged Bootstrap-Finish.
    let ev = tokio::time::timeout(WAIT, async {
        loop {
            match bs_events.recv().await.unwrap() {
                BootstrapEvent::Started { .. } => continue,
                other => return other,
            }
        }
    })
    .await
    .unwrap();
    assert!(
        matches!(&ev, BootstrapEvent::Finished { endpoint, .. } if endpoint == "udp-dev"),
        "{ev:?}"
    );

    // Register where the bootstrap server said, with the lifetime it said.
    let target: SocketAddr = uri.strip_prefix("coap://").unwrap().parse().unwrap();
    assert_eq!(target, server.local_addr());
    let reg = Request::new(Code::POST)
        .with_path("/rd")
        .with_query("ep=udp-dev")
        .with_query(&format!("lt={lifetime}"))
        .with_payload(40, b"</1/0>,</3/0>".to_vec());
    assert_eq!(client.send(target, reg).await.code, Code::CREATED);
    let ev = tokio::time::timeout(WAIT, reg_events.recv())
        .await
        .unwrap()
        .unwrap();
    let ServerEvent::Registered { registration, .. } = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(registration.endpoint, "udp-dev");
    assert_eq!(registration.lifetime, 120);

    bs.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn handle_manages_configurations_and_starts_server_initiated_sessions() {
    let bs = BootstrapServer::start(
        "127.0.0.1:0".parse().unwrap(),
        BootstrapServerConfig::default(),
        Box::new(MemoryConfigStore::new()),
    )
    .await
    .unwrap();
    let mut client = UdpClient::recording(8).await;
    // Unknown until configured: 4.00, no session.
    let r = client
        .send(
            bs.local_addr(),
            Request::new(Code::POST)
                .with_path("/bs")
                .with_query("ep=later"),
        )
        .await;
    assert_eq!(r.code, Code::BAD_REQUEST);
    assert!(bs.endpoints().await.unwrap().is_empty());
    bs.put_config("later", BootstrapConfig::default())
        .await
        .unwrap();
    assert_eq!(bs.endpoints().await.unwrap(), ["later"]);
    assert_eq!(
        bs.config("later").await.unwrap(),
        Some(BootstrapConfig::default())
    );

    // Server-initiated: the client never sent a Bootstrap-Request for it.
    let mut events = bs.events();
    bs.start_session("later", client.addr).await.unwrap();
    let ops = client.until_finish().await;
    let paths: Vec<String> = ops.iter().map(|r| r.path()).collect();
    assert_eq!(paths, ["/0", "/1", "/bs"]);
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(
            tokio::time::timeout(WAIT, events.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert!(
        matches!(&seen[0], BootstrapEvent::Started { client_initiated: false, peer, .. } if *peer == client.addr),
        "{seen:?}"
    );
    assert!(
        matches!(&seen[1], BootstrapEvent::Finished { .. }),
        "{seen:?}"
    );
    assert!(bs.remove_config("later").await.unwrap());
    assert!(!bs.remove_config("later").await.unwrap());
    bs.shutdown().await;
}
