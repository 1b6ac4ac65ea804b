//! End to end over real UDP on 127.0.0.1 with the tokio driver: a scripted
//! client (lwm2m-core's CoAP endpoint on a socket), a restart with the
//! SQLite store, and libcoap's coap-client registering by hand.
#![cfg(all(feature = "sqlite", feature = "tokio"))]

use std::net::SocketAddr;

use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Request, Response};
use lwm2m_core::format::{self, ContentFormat};
use lwm2m_core::model::{Instance, Node, Path, Resource, Value};
use lwm2m_server::{
    Content, Registration, Server, ServerConfig, ServerEvent, SqliteStore, WriteMode,
};
use tokio::sync::broadcast;

#[path = "support/udp_client.rs"]
mod udp_client;
use udp_client::UdpClient;

#[path = "support/loopback.rs"]
mod loopback;
use loopback::{loopback_server, WAIT};

fn device() -> Instance {
    Instance::new(
        0,
        [
            Resource::single(0, Value::String("Open Mobile Alliance".into())),
            Resource::single(9, Value::Integer(42)),
        ],
    )
}

fn handler(req: &Request) -> Response {
    let segs: Vec<&[u8]> = req.options.get_all(number::URI_PATH).collect();
    match (req.code, segs.as_slice()) {
        (Code::GET, [b"3", b"0"]) => {
            let mut out = Vec::new();
            let path = Path::Instance(3, 0);
            format::encode(
                ContentFormat::TLV,
                &Node::Instance(device()),
                &path,
                &mut out,
            )
            .unwrap();
            Response::new(Code::CONTENT).with_payload(ContentFormat::TLV.0, out)
        }
        (Code::PUT, [b"1", b"0", b"1"]) if req.payload == b"120" => Response::new(Code::CHANGED),
        (Code::POST, [b"3", b"0", b"4"]) => Response::new(Code::CHANGED),
        _ => Response::new(Code::NOT_FOUND),
    }
}

fn register_request(query: &str) -> Request {
    let mut r = Request::new(Code::POST).with_path("/rd");
    for q in query.split('&') {
        r = r.with_query(q);
    }
    r.with_payload(40, b"</1/0>,</3/0>".to_vec())
}

fn location(resp: &Response) -> String {
    resp.options
        .get_all(number::LOCATION_PATH)
        .map(|s| format!("/{}", String::from_utf8_lossy(s)))
        .collect()
}

async fn next_registration(
    events: &mut broadcast::Receiver<ServerEvent<SocketAddr>>,
) -> ServerEvent<SocketAddr> {
    loop {
        let ev = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("event in time")
            .unwrap();
        if !matches!(
            ev,
            ServerEvent::Response { .. } | ServerEvent::Notification { .. }
        ) {
            return ev;
        }
    }
}

fn models() -> Box<lwm2m_objects::Registry> {
    Box::new(lwm2m_objects::Registry::standard())
}

#[tokio::test]
async fn register_read_write_execute_deregister_over_udp() {
    let server = loopback_server(ServerConfig::default()).await;
    let mut events = server.events();
    let addr = server.local_addr();
    let client = UdpClient::spawn(1, handler).await;

    let resp = client
        .send(addr, register_request("ep=udp1&lt=60&lwm2m=1.1"))
        .await;
    assert_eq!(resp.code, Code::CREATED);
    let loc = location(&resp);
    match next_registration(&mut events).await {
        ServerEvent::Registered { registration, .. } => {
            assert_eq!(registration.endpoint, "udp1");
            assert_eq!(format!("/rd/{}", registration.id), loc);
            assert_eq!(registration.address.ip(), addr.ip());
        }
        e => panic!("{e:?}"),
    }

    let r = tokio::time::timeout(WAIT, server.read("udp1", Path::Instance(3, 0)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.code, Code::CONTENT);
    assert_eq!(r.content, Content::Node(Node::Instance(device())));

    let node = Node::Resource(Resource::single(1, Value::Integer(120)));
    let r = server
        .write(
            "udp1",
            Path::Resource(1, 0, 1),
            WriteMode::Replace,
            ContentFormat::TEXT,
            node,
        )
        .await
        .unwrap();
    assert_eq!(r.code, Code::CHANGED);
    let r = server
        .execute("udp1", Path::Resource(3, 0, 4), None)
        .await
        .unwrap();
    assert_eq!(r.code, Code::CHANGED);
    let r = server.read("udp1", Path::Object(9)).await.unwrap();
    assert_eq!(r.code, Code::NOT_FOUND);
    assert!(server.read("nobody", Path::Object(3)).await.is_err());

    let resp = client
        .send(addr, Request::new(Code::DELETE).with_path(&loc))
        .await;
    assert_eq!(resp.code, Code::DELETED);
    assert!(matches!(
        next_registration(&mut events).await,
        ServerEvent::Deregistered { .. }
    ));
    assert!(server.registrations().await.is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn restart_with_sqlite_keeps_registrations_and_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let start = || async {
        Server::start(
            "127.0.0.1:0".parse().unwrap(),
            ServerConfig::default(),
            Box::new(SqliteStore::open(dir.path()).unwrap()),
            models(),
        )
        .await
        .unwrap()
    };
    let client = UdpClient::spawn(2, handler).await;

    let server = start().await;
    let resp = client
        .send(
            server.local_addr(),
            register_request("ep=persist&lt=300&b=U"),
        )
        .await;
    assert_eq!(resp.code, Code::CREATED);
    let loc = location(&resp);
    let before: Vec<Registration<SocketAddr>> = server.registrations().await;
    server.shutdown().await;

    let server = start().await;
    let after = server.registrations().await;
    assert_eq!(after, before, "restored exactly");
    let resp = client
        .send(
            server.local_addr(),
            Request::new(Code::POST).with_path(&loc),
        )
        .await;
    assert_eq!(
        resp.code,
        Code::CHANGED,
        "Update with the old id after restart"
    );
    // The restarted server reaches the client at the address of its Update.
    let r = server.read("persist", Path::Instance(3, 0)).await.unwrap();
    assert_eq!(r.content, Content::Node(Node::Instance(device())));
    server.shutdown().await;

    // A third start sees the update's time.
    let server = start().await;
    let regs = server.registrations().await;
    assert_eq!(regs.len(), 1);
    assert!(regs[0].last_update > before[0].last_update);
    server.shutdown().await;
}

/// Path of libcoap's client: `COAP_CLIENT`, else `coap-client-notls` or
/// `coap-client` on PATH.
fn coap_client() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("COAP_CLIENT") {
        return p.into();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["coap-client-notls", "coap-client"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "libcoap's coap-client-notls not found (set COAP_CLIENT or install it with \
         ./scripts/install-test-deps, Debian package libcoap3-bin)"
    );
}

/// A caller that gives up on a request held for a sleeping queue-mode
/// client (a timeout around it, as firmware updates poll) must not have it
/// sent at the client's wake-up: it would fill the client's queue with
/// answers nobody waits for.
#[tokio::test]
async fn a_request_given_up_for_a_sleeping_client_is_not_sent_when_it_wakes() {
    let config = ServerConfig {
        awake_time: lwm2m_core::time::Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let server = loopback_server(config).await;
    let addr = server.local_addr();
    let mut client = UdpClient::recording(5).await;
    let resp = client
        .send(addr, register_request("ep=sleepy&lt=300&lwm2m=1.1&b=UQ"))
        .await;
    assert_eq!(resp.code, Code::CREATED);
    let loc = location(&resp);
    // Asleep: the read is held, and its caller gives up.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let given_up = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        server.read("sleepy", Path::Resource(3, 0, 9)),
    )
    .await;
    assert!(given_up.is_err(), "held, not answered: {given_up:?}");
    // Past the driver's sweep interval (1 s), the client wakes with an Update.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let resp = client
        .send(addr, Request::new(Code::POST).with_path(&loc))
        .await;
    assert_eq!(resp.code, Code::CHANGED);
    // Awake: a request now goes out at once; it is the only one the client saw.
    let awake = tokio::time::timeout(WAIT, server.read("sleepy", Path::Resource(3, 0, 0))).await;
    assert!(awake.is_ok(), "the awake client is reached");
    let paths: Vec<String> = client.received().iter().map(|r| r.path()).collect();
    assert_eq!(paths, ["/3/0/0"]);
    server.shutdown().await;
}

#[tokio::test]
async fn libcoap_client_registers_by_hand() {
    let bin = coap_client();
    let server = loopback_server(ServerConfig::default()).await;
    let mut events = server.events();
    let uri = format!(
        "coap://127.0.0.1:{}/rd?ep=x&lt=60",
        server.local_addr().port()
    );
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&bin)
            .args(["-m", "post", "-t", "40", "-e", "</3/0>", &uri])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "coap-client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match next_registration(&mut events).await {
        ServerEvent::Registered { registration, .. } => {
            assert_eq!(registration.endpoint, "x");
            assert_eq!(registration.lifetime, 60);
            assert_eq!(registration.links.objects, [(Path::Instance(3, 0), None)]);
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(server.registrations().await.len(), 1);
    server.shutdown().await;
}
