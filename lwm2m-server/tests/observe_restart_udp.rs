//! Over real UDP with the tokio driver and the admin API: a server started
//! on a SQLite data directory that holds a registration and an observation
//! (as a server before a restart left them) delivers the client's next
//! notification with the old token, and the admin API cancels it.
#![cfg(all(feature = "admin", feature = "sqlite"))]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::http::{Request as HttpRequest, StatusCode};
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Message, MessageType, MessageWriter};
use lwm2m_core::format::link::RegistrationLinks;
use lwm2m_core::model::{Node, Path, Resource, Value, Version};
use lwm2m_core::time::Instant;
use lwm2m_server::admin::{self, AdminConfig};
use lwm2m_server::{
    Content, DmRequestId, Registration, RegistrationStore, Server, ServerConfig, ServerEvent,
    SqliteStore, StoredObservation,
};
use tokio::net::UdpSocket;
use tower::ServiceExt;

const WAIT: Duration = Duration::from_secs(20);
const TOKEN: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

#[tokio::test]
async fn restored_observation_notifies_and_is_cancelled_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let device = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let now = Instant::from_millis(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    );
    {
        let mut store = SqliteStore::open(dir.path()).unwrap();
        store
            .put(&Registration {
                id: "r1".into(),
                endpoint: "udp-obs".into(),
                address: device.local_addr().unwrap(),
                lifetime: 300,
                lwm2m_version: Version::new(1, 1),
                binding: "U".into(),
                sms: None,
                queue_mode: false,
                links: RegistrationLinks {
                    root: None,
                    content_formats: vec![],
                    objects: vec![(Path::Instance(3, 0), None)],
                },
                registered_at: now,
                last_update: now,
                security: None,
            })
            .unwrap();
        store
            .put_observation(&StoredObservation {
                id: 5,
                registration_id: "r1".into(),
                endpoint: "udp-obs".into(),
                path: "/3/0/9".into(),
                token: TOKEN.to_vec(),
                accept: None,
            })
            .unwrap();
    }
    let models = Arc::new(lwm2m_objects::Registry::standard());
    let server = Server::start(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
        Box::new(SqliteStore::open(dir.path()).unwrap()),
        Box::new((*models).clone()),
    )
    .await
    .unwrap();
    let handle = server.handle();
    assert_eq!(
        handle.observations().await,
        [(
            DmRequestId(5),
            "udp-obs".to_string(),
            Path::Resource(3, 0, 9)
        )]
    );
    let app = admin::router(
        server.handle(),
        models,
        AdminConfig::for_server(&ServerConfig::default()),
    );
    let mut events = handle.events();

    // The client's next notification, with the token of before the restart.
    let mut note = Vec::new();
    let mut w =
        MessageWriter::udp(&mut note, MessageType::Non, Code::CONTENT, 0x1234, &TOKEN).unwrap();
    w.uint_option(number::OBSERVE, 7).unwrap();
    w.uint_option(number::CONTENT_FORMAT, 0).unwrap();
    w.finish(b"42");
    device.send_to(&note, server.local_addr()).await.unwrap();
    let ev = tokio::time::timeout(WAIT, async {
        loop {
            if let ev @ ServerEvent::Notification { .. } = events.recv().await.unwrap() {
                return ev;
            }
        }
    })
    .await
    .expect("notification in time");
    let ServerEvent::Notification {
        id,
        endpoint,
        result,
    } = ev
    else {
        unreachable!()
    };
    assert_eq!((id, endpoint.as_str()), (DmRequestId(5), "udp-obs"));
    assert_eq!(
        result.unwrap().content,
        Content::Node(Node::Resource(Resource::single(9, Value::Integer(42))))
    );

    // Cancel through the admin API: it knows the restored observation.
    let cancel = tokio::spawn(async move {
        let req = HttpRequest::builder()
            .method("DELETE")
            .uri("/api/clients/udp-obs/3/0/9/observe")
            .body(Body::empty())
            .unwrap();
        app.oneshot(req).await.unwrap().status()
    });
    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(WAIT, device.recv_from(&mut buf))
        .await
        .expect("cancel request in time")
        .unwrap();
    let m = Message::parse(&buf[..n]).unwrap();
    assert_eq!(m.code, Code::GET);
    assert_eq!(m.observe(), Some(1));
    assert_eq!(m.token, TOKEN);
    let path: Vec<&[u8]> = m.uri_path().collect();
    assert_eq!(path, [b"3".as_slice(), b"0", b"9"]);
    let mut ack = Vec::new();
    let w = MessageWriter::udp(
        &mut ack,
        MessageType::Ack,
        Code::CONTENT,
        m.message_id,
        m.token,
    )
    .unwrap();
    w.finish(b"");
    device.send_to(&ack, from).await.unwrap();
    let status = tokio::time::timeout(WAIT, cancel).await.unwrap().unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(handle.observations().await.is_empty());
    let mut store = SqliteStore::open(dir.path()).unwrap();
    assert!(store.load_observations().unwrap().is_empty());
    server.shutdown().await;
}
