//! The tokio driver over real loopback UDP sockets, against a server made of
//! a bare CoAP endpoint: Register, a Read, then shutdown → De-register.
#![cfg(feature = "tokio")]

use std::net::SocketAddr;

use lwm2m_client::objects::{Device, DeviceInfo, Server, ServerConfig};
use lwm2m_client::{Client, ClientConfig, ClientEvent};
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Endpoint, EndpointConfig, Event, Request, Response};
use lwm2m_core::rng::SplitMix64;
use lwm2m_core::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

/// Serves one registration on `socket`: answers Register, reads
/// /3/0/0 once registered, answers De-register, returns what it saw.
async fn scripted_server(socket: UdpSocket, registered: oneshot::Sender<()>) -> Vec<String> {
    let start = tokio::time::Instant::now();
    let now = || Instant::from_millis(start.elapsed().as_millis() as u64);
    let mut ep: Endpoint<SocketAddr, _> =
        Endpoint::new(EndpointConfig::default(), SplitMix64::new(7));
    let mut seen = Vec::new();
    let mut registered = Some(registered);
    let mut buf = vec![0u8; 2048];
    loop {
        while let Some(t) = ep.poll_transmit() {
            socket.send_to(&t.bytes, t.peer).await.unwrap();
        }
        let (n, from) = socket.recv_from(&mut buf).await.unwrap();
        ep.handle_datagram(now(), from, &buf[..n]);
        while let Some(e) = ep.poll_event() {
            match e {
                Event::Request { id, request, .. } => {
                    seen.push(format!("{} {}", request.code, request.path()));
                    let mut resp = Response::new(match request.code {
                        Code::POST => Code::CREATED,
                        Code::DELETE => Code::DELETED,
                        _ => Code::NOT_FOUND,
                    });
                    if request.code == Code::POST {
                        resp.options.push(number::LOCATION_PATH, b"rd".to_vec());
                        resp.options.push(number::LOCATION_PATH, b"x1".to_vec());
                        ep.send_request(now(), from, Request::new(Code::GET).with_path("/3/0/0"))
                            .unwrap();
                    }
                    ep.respond(now(), id, resp);
                    if request.code == Code::DELETE {
                        while let Some(t) = ep.poll_transmit() {
                            socket.send_to(&t.bytes, t.peer).await.unwrap();
                        }
                        return seen;
                    }
                }
                Event::Response { response, .. } => {
                    seen.push(format!(
                        "{} {}",
                        response.code,
                        String::from_utf8_lossy(&response.payload)
                    ));
                    if let Some(tx) = registered.take() {
                        let _ = tx.send(());
                    }
                }
                _ => {}
            }
        }
    }
}

#[tokio::test]
async fn registers_reads_and_deregisters_over_udp() {
    let server_socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server_addr = server_socket.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let server = tokio::spawn(scripted_server(server_socket, tx));

    let mut client = Client::new(
        ClientConfig::new("udp-dev"),
        server_addr,
        SplitMix64::new(3),
    );
    client.add_object(Box::new(Server::new(ServerConfig::new(300))));
    let info = DeviceInfo {
        manufacturer: "ACME".into(),
        ..DeviceInfo::default()
    };
    client.add_object(Box::new(Device::new(info)));
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut events = Vec::new();
    let shutdown = async {
        rx.await.unwrap();
    };
    let run =
        lwm2m_client::tokio_driver::run(&mut client, &socket, shutdown, |e| events.push(e.clone()));
    tokio::time::timeout(std::time::Duration::from_secs(20), run)
        .await
        .expect("driver finished")
        .unwrap();
    let seen = server.await.unwrap();
    assert_eq!(seen, ["0.02 /rd", "2.05 ACME", "0.04 /rd/x1"]);
    assert_eq!(
        events,
        [
            ClientEvent::Registered {
                location: "/rd/x1".into()
            },
            ClientEvent::Deregistered
        ]
    );
}
