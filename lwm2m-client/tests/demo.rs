//! The demo binary over loopback UDP (`--bind 127.0.0.1:0`): registers with
//! objects 0–7, takes a pushed firmware image, "reboots" into it through the
//! update hook and reports Update Result 1; Location and Connectivity
//! Statistics answer.
#![cfg(feature = "tokio")]

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Endpoint, EndpointConfig, Event, Request, Response};
use lwm2m_core::rng::SplitMix64;
use lwm2m_core::time::Instant;

struct Server {
    socket: UdpSocket,
    ep: Endpoint<SocketAddr, SplitMix64>,
    start: StdInstant,
    /// Register requests seen: (peer, request).
    registers: Vec<(SocketAddr, Request)>,
}

impl Server {
    fn now(&self) -> Instant {
        Instant::from_millis(self.start.elapsed().as_millis() as u64)
    }

    /// Moves datagrams for up to `wait`, answering the registration
    /// interface; returns the response to `want` when it comes.
    fn pump(
        &mut self,
        wait: StdDuration,
        want: Option<lwm2m_core::coap::RequestId>,
    ) -> Option<Response> {
        let deadline = StdInstant::now() + wait;
        let mut buf = vec![0u8; 2048];
        while StdInstant::now() < deadline {
            while let Some(t) = self.ep.poll_transmit() {
                self.socket.send_to(&t.bytes, t.peer).unwrap();
            }
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let now = self.now();
                    self.ep.handle_datagram(now, from, &buf[..n]);
                }
                Err(_) => {
                    let now = self.now();
                    self.ep.handle_timeout(now);
                }
            }
            while let Some(e) = self.ep.poll_event() {
                match e {
                    Event::Request { id, peer, request } => {
                        let mut resp = Response::new(match request.code {
                            Code::POST if request.path() == "/rd" => Code::CREATED,
                            Code::POST => Code::CHANGED,
                            Code::DELETE => Code::DELETED,
                            _ => Code::NOT_FOUND,
                        });
                        if request.path() == "/rd" {
                            resp.options.push(number::LOCATION_PATH, b"rd".to_vec());
                            resp.options.push(number::LOCATION_PATH, b"d1".to_vec());
                            self.registers.push((peer, request));
                        }
                        let now = self.now();
                        self.ep.respond(now, id, resp);
                    }
                    Event::Response { id, response } if Some(id) == want => return Some(response),
                    _ => {}
                }
            }
        }
        None
    }

    fn request(&mut self, peer: SocketAddr, request: Request) -> Response {
        let now = self.now();
        let id = self.ep.send_request(now, peer, request.clone()).unwrap();
        self.pump(StdDuration::from_secs(20), Some(id))
            .unwrap_or_else(|| panic!("no answer to {request:?}"))
    }
}

struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn demo_binary_exposes_objects_and_updates_firmware() {
    let (mut server, port) = scripted_server(99);
    let child = Command::new(env!("CARGO_BIN_EXE_lwm2m-client"))
        .args([
            "--endpoint",
            "demo-fw",
            "--lifetime",
            "60",
            "--bind",
            "127.0.0.1:0",
        ])
        .args(["--server", &format!("coap://127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _child = Kill(child);
    let deadline = StdInstant::now() + StdDuration::from_secs(30);
    while server.registers.is_empty() && StdInstant::now() < deadline {
        server.pump(StdDuration::from_millis(200), None);
    }
    let (peer, register) = server.registers.first().cloned().expect("Register");
    assert_eq!(peer.ip().to_string(), "127.0.0.1", "--bind is honoured");
    let links = String::from_utf8(register.payload).unwrap();
    for obj in ["</1/0>", "</3/0>", "</4/0>", "</5/0>", "</6/0>", "</7/0>"] {
        assert!(links.contains(obj), "{obj} missing from {links}");
    }

    let image: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let put = Request::new(Code::PUT)
        .with_path("/5/0/0")
        .with_payload(42, image);
    assert_eq!(server.request(peer, put).code, Code::CHANGED);
    let text = |r: Response| String::from_utf8(r.payload).unwrap();
    let get = |p: &str| Request::new(Code::GET).with_path(p);
    assert_eq!(text(server.request(peer, get("/5/0/3"))), "2");
    let exec = Request::new(Code::POST).with_path("/5/0/2");
    assert_eq!(server.request(peer, exec).code, Code::CHANGED);
    assert_eq!(text(server.request(peer, get("/5/0/5"))), "1");
    assert_eq!(text(server.request(peer, get("/5/0/3"))), "0");

    let lat: f64 = text(server.request(peer, get("/6/0/0"))).parse().unwrap();
    assert!((48.8..48.9).contains(&lat), "{lat}");
    let start = Request::new(Code::POST).with_path("/7/0/6");
    assert_eq!(server.request(peer, start).code, Code::CHANGED);
    assert_eq!(server.request(peer, get("/7/0/2")).code, Code::CONTENT);
}

fn scripted_server(seed: u64) -> (Server, u16) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(StdDuration::from_millis(20)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let server = Server {
        socket,
        ep: Endpoint::new(EndpointConfig::default(), SplitMix64::new(seed)),
        start: StdInstant::now(),
        registers: Vec::new(),
    };
    (server, port)
}

#[test]
fn demo_binary_registers_with_every_server_given() {
    let (mut s1, p1) = scripted_server(1);
    let (mut s2, p2) = scripted_server(2);
    let child = Command::new(env!("CARGO_BIN_EXE_lwm2m-client"))
        .args(["--endpoint", "demo-multi", "--lifetime", "60"])
        .args(["--bind", "127.0.0.1:0"])
        .args(["--server", &format!("coap://127.0.0.1:{p1}")])
        .args(["--server", &format!("coap://127.0.0.1:{p2}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _child = Kill(child);
    let deadline = StdInstant::now() + StdDuration::from_secs(30);
    while (s1.registers.is_empty() || s2.registers.is_empty()) && StdInstant::now() < deadline {
        s1.pump(StdDuration::from_millis(50), None);
        s2.pump(StdDuration::from_millis(50), None);
    }
    let (peer1, r1) = s1.registers.first().cloned().expect("Register to server 1");
    let (peer2, r2) = s2.registers.first().cloned().expect("Register to server 2");
    let links = String::from_utf8(r2.payload).unwrap();
    for obj in ["</1/0>", "</1/1>", "</2/0>", "</3/0>"] {
        assert!(links.contains(obj), "{obj} missing from {links}");
    }
    assert_eq!(r1.payload.len(), links.len());
    // The Access Control object's default entry lets both servers read;
    // each server's own Server instance is its own.
    let get = |p: &str| Request::new(Code::GET).with_path(p);
    assert_eq!(s2.request(peer2, get("/3/0/0")).code, Code::CONTENT);
    assert_eq!(s1.request(peer1, get("/3/0/0")).code, Code::CONTENT);
    let text = |r: Response| String::from_utf8(r.payload).unwrap();
    assert_eq!(text(s2.request(peer2, get("/1/1/0"))), "2");
    // Create is granted to nobody.
    let create = Request::new(Code::POST).with_path("/1");
    assert_eq!(s2.request(peer2, create).code, Code::UNAUTHORIZED);
}
