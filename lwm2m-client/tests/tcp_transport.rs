//! The tokio driver over CoAP over TCP (RFC 8323) on loopback, against a
//! scripted server made of the core's `TcpConnection`: Register with
//! `b=T`, a Read, an observation's notifications, the server dropping the
//! connection (the client connects again and updates), De-register and
//! Release at shutdown.
#![cfg(feature = "tokio")]

use std::net::SocketAddr;

use lwm2m_client::objects::{Device, DeviceInfo, Security, SecurityInstance, Server, ServerConfig};
use lwm2m_client::tokio_driver::resolve_coap_uri;
use lwm2m_client::{Client, ClientConfig, ClientEvent};
use lwm2m_core::coap::endpoint::IncomingId;
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::tcp_endpoint::{CloseReason, TcpConfig, TcpConnection, TcpEvent};
use lwm2m_core::coap::{Code, Request, Response};
use lwm2m_core::rng::SplitMix64;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// One accepted connection, seen through the core's TCP connection.
struct Peer {
    stream: TcpStream,
    conn: TcpConnection<SplitMix64>,
}

impl Peer {
    async fn accept(listener: &TcpListener) -> Peer {
        let (stream, _) = listener.accept().await.unwrap();
        Peer {
            stream,
            conn: TcpConnection::new(TcpConfig::default(), SplitMix64::new(9)),
        }
    }

    /// The next event, writing what the connection has to send first.
    async fn next(&mut self) -> TcpEvent {
        let mut buf = vec![0u8; 4096];
        loop {
            let out = self.conn.take_outgoing();
            if !out.is_empty() {
                self.stream.write_all(&out).await.unwrap();
            }
            if let Some(e) = self.conn.poll_event() {
                return e;
            }
            let n = self.stream.read(&mut buf).await.unwrap();
            if n == 0 {
                self.conn.handle_eof();
            } else {
                self.conn.handle_bytes(&buf[..n]);
            }
        }
    }

    /// The next request (after the client's CSM, which must come first).
    async fn request(&mut self) -> (IncomingId, Request) {
        loop {
            match self.next().await {
                TcpEvent::Request { id, request } => return (id, request),
                TcpEvent::Csm { .. } => {}
                other => panic!("expected a request, got {other:?}"),
            }
        }
    }

    /// The next response or notification (its Observe value, payload).
    async fn response(&mut self) -> (Code, Option<u32>, String) {
        loop {
            match self.next().await {
                TcpEvent::Response { response, .. } | TcpEvent::Notification { response, .. } => {
                    return (
                        response.code,
                        response.options.uint(number::OBSERVE),
                        String::from_utf8_lossy(&response.payload).into_owned(),
                    )
                }
                TcpEvent::Csm { .. } => {}
                other => panic!("expected a response, got {other:?}"),
            }
        }
    }

    async fn respond(&mut self, id: IncomingId, response: Response) {
        self.conn.respond(id, response).unwrap();
        let out = self.conn.take_outgoing();
        self.stream.write_all(&out).await.unwrap();
    }

    async fn send(&mut self, request: Request) {
        self.conn.send_request(request).unwrap();
        let out = self.conn.take_outgoing();
        self.stream.write_all(&out).await.unwrap();
    }
}

fn queries(request: &Request) -> Vec<String> {
    request
        .options
        .get_all(number::URI_QUERY)
        .map(|q| String::from_utf8_lossy(q).into_owned())
        .collect()
}

/// The server's side of the scenario; returns what it saw, in order.
async fn scripted_server(listener: TcpListener) -> Vec<String> {
    let mut seen = Vec::new();
    let mut peer = Peer::accept(&listener).await;
    let (id, register) = peer.request().await;
    seen.push(format!("{} {}", register.code, register.path()));
    let q = queries(&register);
    assert!(q.contains(&"ep=tcp-dev".to_string()), "{q:?}");
    assert!(q.contains(&"b=T".to_string()), "{q:?}");
    let mut created = Response::new(Code::CREATED);
    created.options.push(number::LOCATION_PATH, b"rd".to_vec());
    created.options.push(number::LOCATION_PATH, b"t1".to_vec());
    peer.respond(id, created).await;

    // A Read of the manufacturer, as text.
    let mut read = Request::new(Code::GET).with_path("/3/0/0");
    read.options.set_uint(number::ACCEPT, 0);
    peer.send(read).await;
    let (code, _, body) = peer.response().await;
    seen.push(format!("{code} {body}"));

    // pmax=1: the observation notifies every second, changed or not.
    let attrs = Request::new(Code::PUT)
        .with_path("/3/0/0")
        .with_query("pmax=1");
    peer.send(attrs).await;
    let (code, _, _) = peer.response().await;
    seen.push(format!("{code}"));
    let mut observe = Request::new(Code::GET).with_path("/3/0/0");
    observe.options.set_uint(number::ACCEPT, 0);
    observe.options.set_uint(number::OBSERVE, 0);
    peer.send(observe).await;
    let (code, first, body) = peer.response().await;
    seen.push(format!("{code} {body} observe={}", first.is_some()));
    let (code, next, body) = peer.response().await;
    assert!(next.is_some() && next != first, "{first:?} then {next:?}");
    seen.push(format!("{code} {body} notification"));

    // The server drops the connection: the client connects again and
    // updates its registration over the new one.
    drop(peer);
    let mut peer = Peer::accept(&listener).await;
    let (id, update) = peer.request().await;
    seen.push(format!("{} {}", update.code, update.path()));
    peer.respond(id, Response::new(Code::CHANGED)).await;

    // Shutdown (once the client saw the Update answered): De-register,
    // then Release and the stream's end.
    let (id, dereg) = peer.request().await;
    seen.push(format!("{} {}", dereg.code, dereg.path()));
    peer.respond(id, Response::new(Code::DELETED)).await;
    match peer.next().await {
        TcpEvent::Closed(reason) => {
            assert_eq!(reason, CloseReason::PeerReleased);
            seen.push("released".into());
        }
        other => panic!("expected the Release, got {other:?}"),
    }
    seen
}

#[tokio::test]
async fn registers_serves_and_reconnects_over_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(scripted_server(listener));

    let uri = format!("coap+tcp://127.0.0.1:{port}");
    let server_addr: SocketAddr = resolve_coap_uri(&uri).unwrap();
    let mut client = Client::new(
        ClientConfig::new("tcp-dev"),
        server_addr,
        SplitMix64::new(3),
    );
    client.set_resolver(resolve_coap_uri);
    let mut security = Security::empty();
    security.insert(0, SecurityInstance::server(&uri, 1));
    client.add_object(Box::new(security));
    let mut servers = Server::empty();
    servers.insert(
        0,
        ServerConfig {
            short_server_id: 1,
            binding: "T".into(),
            ..ServerConfig::new(300)
        },
    );
    client.add_object(Box::new(servers));
    let info = DeviceInfo {
        manufacturer: "ACME".into(),
        supported_binding: "UT".into(),
        ..DeviceInfo::default()
    };
    client.add_object(Box::new(Device::new(info)));
    // Unused: every peer is a TCP one.
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut events = Vec::new();
    // Shut down once the Update over the new connection succeeded.
    let (tx, rx) = oneshot::channel();
    let mut tx = Some(tx);
    let shutdown = async {
        rx.await.unwrap();
    };
    let run = lwm2m_client::tokio_driver::run(&mut client, &socket, shutdown, |e| {
        if *e == ClientEvent::Updated {
            if let Some(tx) = tx.take() {
                let _ = tx.send(());
            }
        }
        events.push(e.clone());
    });
    tokio::time::timeout(std::time::Duration::from_secs(30), run)
        .await
        .expect("driver finished")
        .unwrap();
    let seen = server.await.unwrap();
    assert_eq!(
        seen,
        [
            "0.02 /rd",
            "2.05 ACME",
            "2.04",
            "2.05 ACME observe=true",
            "2.05 ACME notification",
            "0.02 /rd/t1",
            "0.04 /rd/t1",
            "released",
        ]
    );
    assert_eq!(
        events,
        [
            ClientEvent::Registered {
                location: "/rd/t1".into()
            },
            ClientEvent::Updated,
            ClientEvent::Deregistered
        ]
    );
}
