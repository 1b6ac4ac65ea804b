//! A scripted LwM2M device on a real UDP socket: lwm2m-core's CoAP endpoint
//! that registers with a server and answers like a small client (Device
//! object instance 0 with Manufacturer and Battery Level, Create/Delete on
//! 3303, Discover on /3, no answer at all under /7, and Read-, Write- and
//! Observe-Composite of a few resources it remembers).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lwm2m_core::coap::endpoint::ObservationId;
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Endpoint, EndpointConfig, Event, Request, Response};
use lwm2m_core::format::{self, ContentFormat};
use lwm2m_core::model::{Instance, Node, Path, Resource, TimestampedValue, Value};
use lwm2m_core::rng::SplitMix64;
use lwm2m_core::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// How long tests wait for anything.
pub const WAIT: Duration = Duration::from_secs(20);

/// What the test asks the device to do.
pub enum Cmd {
    Send(SocketAddr, Request, oneshot::Sender<Option<Response>>),
    Notify(Response),
}

/// What the device saw, for assertions.
#[derive(Default)]
pub struct Seen {
    /// Every request the device received.
    pub requests: Vec<Request>,
}

/// A running device.
pub struct Device {
    /// Commands to the device task.
    pub cmds: mpsc::Sender<Cmd>,
    /// What it saw.
    pub seen: Arc<Mutex<Seen>>,
}

pub fn device_instance() -> Instance {
    Instance::new(
        0,
        [
            Resource::single(0, Value::String("Open Mobile Alliance".into())),
            Resource::single(9, Value::Integer(42)),
        ],
    )
}

fn segments(req: &Request) -> Vec<String> {
    req.options
        .get_all(number::URI_PATH)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

fn encoded(accept: Option<u32>, node: &Node, path: Path) -> Response {
    let cf = ContentFormat(accept.map_or(ContentFormat::TLV.0, |a| a as u16));
    let mut out = Vec::new();
    format::encode(cf, node, &path, &mut out).unwrap();
    Response::new(Code::CONTENT).with_payload(cf.0, out)
}

/// What Read-Composite answers before any Write-Composite: Manufacturer,
/// Model Number, Battery Level and Lifetime.
fn composite_resources() -> Vec<TimestampedValue> {
    let v = |path, value| TimestampedValue {
        path,
        value,
        time: None,
    };
    vec![
        v(
            Path::Resource(3, 0, 0),
            Value::String("Open Mobile Alliance".into()),
        ),
        v(
            Path::Resource(3, 0, 1),
            Value::String("Lightweight M2M Client".into()),
        ),
        v(Path::Resource(3, 0, 9), Value::Integer(42)),
        v(Path::Resource(1, 0, 1), Value::UnsignedInteger(120)),
    ]
}

/// Read-Composite / Observe-Composite (FETCH) and Write-Composite (iPATCH)
/// on the root: the resources of `values` that the path list covers (in
/// `values`' order, in the Accept format or that of the path list), and
/// writes that replace them. `None`: not a composite request.
fn answer_composite(req: &Request, values: &mut [TimestampedValue]) -> Option<Response> {
    if !segments(req).is_empty() {
        return None;
    }
    let cf = req
        .options
        .uint(number::CONTENT_FORMAT)
        .map_or(ContentFormat::SENML_JSON, |c| ContentFormat(c as u16));
    match req.code {
        Code::FETCH => {
            let Ok(paths) = format::decode_paths(cf, &req.payload) else {
                return Some(Response::new(Code::BAD_REQUEST));
            };
            let out_cf = req
                .options
                .uint(number::ACCEPT)
                .map_or(cf, |c| ContentFormat(c as u16));
            let picked: Vec<_> = values
                .iter()
                .filter(|v| paths.iter().any(|p| p.is_prefix_of(&v.path)))
                .cloned()
                .collect();
            let mut out = Vec::new();
            format::encode_values(out_cf, &picked, &mut out).unwrap();
            Some(Response::new(Code::CONTENT).with_payload(out_cf.0, out))
        }
        Code::IPATCH => {
            let models = lwm2m_objects::Registry::standard();
            let Ok(written) = format::decode_values(cf, &req.payload, &models) else {
                return Some(Response::new(Code::BAD_REQUEST));
            };
            for w in written {
                if let Some(v) = values.iter_mut().find(|v| v.path == w.path) {
                    v.value = w.value;
                }
            }
            Some(Response::new(Code::CHANGED))
        }
        _ => None,
    }
}

/// The device's answers. `None` leaves the request unanswered (timeouts).
fn answer(req: &Request) -> Option<Response> {
    let segs = segments(req);
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let accept = req.options.uint(number::ACCEPT);
    Some(match (req.code, segs.as_slice()) {
        (Code::GET, ["3"]) if accept == Some(40) => Response::new(Code::CONTENT)
            .with_payload(40, b"</3>,</3/0>,</3/0/0>,</3/0/9>;pmin=10".to_vec()),
        (Code::GET, ["3", "0"]) => encoded(
            accept,
            &Node::Instance(device_instance()),
            Path::Instance(3, 0),
        ),
        (Code::GET, ["3", "0", "9"]) => {
            Response::new(Code::CONTENT).with_payload(0, b"42".to_vec())
        }
        (Code::GET, ["7", ..]) => return None,
        (Code::GET, ["1", "0", "1"]) => {
            Response::new(Code::CONTENT).with_payload(0, b"120".to_vec())
        }
        (Code::PUT, ["1", "0", "1"]) => Response::new(Code::CHANGED),
        (Code::PUT, ["3", "0", "9"]) => Response::new(Code::CHANGED),
        (Code::POST, ["3", "0", "4"]) => Response::new(Code::CHANGED),
        (Code::POST, ["3303"]) => {
            let mut r = Response::new(Code::CREATED);
            r.options.push(number::LOCATION_PATH, b"3303".to_vec());
            r.options.push(number::LOCATION_PATH, b"0".to_vec());
            r
        }
        (Code::DELETE, ["3303", "0"]) => Response::new(Code::DELETED),
        _ => Response::new(Code::NOT_FOUND),
    })
}

impl Device {
    pub async fn spawn(seed: u64) -> Device {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (tx, mut rx) = mpsc::channel::<Cmd>(16);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let seen2 = seen.clone();
        tokio::spawn(async move {
            let mut ep: Endpoint<SocketAddr, SplitMix64> =
                Endpoint::new(EndpointConfig::default(), SplitMix64::new(seed));
            let origin = tokio::time::Instant::now();
            let now = || Instant::from_millis(origin.elapsed().as_millis() as u64);
            let mut waiting = std::collections::HashMap::new();
            let mut observation: Option<ObservationId> = None;
            let mut composite = composite_resources();
            let mut buf = vec![0u8; 65_535];
            loop {
                while let Some(t) = ep.poll_transmit() {
                    let _ = sock.send_to(&t.bytes, t.peer).await;
                }
                let deadline = ep
                    .poll_timeout()
                    .map(|t| origin + Duration::from_millis(t.as_millis()));
                tokio::select! {
                    r = sock.recv_from(&mut buf) => {
                        if let Ok((n, peer)) = r {
                            ep.handle_datagram(now(), peer, &buf[..n]);
                        }
                    }
                    m = rx.recv() => match m {
                        Some(Cmd::Send(to, req, reply)) => {
                            let id = ep.send_request(now(), to, req).unwrap();
                            waiting.insert(id, reply);
                        }
                        Some(Cmd::Notify(r)) => {
                            if let Some(o) = observation {
                                ep.notify(now(), o, r, true);
                            }
                        }
                        None => break,
                    },
                    () = async {
                        match deadline {
                            Some(d) => tokio::time::sleep_until(d).await,
                            None => std::future::pending().await,
                        }
                    } => ep.handle_timeout(now()),
                }
                while let Some(ev) = ep.poll_event() {
                    match ev {
                        Event::Response { id, response } => {
                            if let Some(r) = waiting.remove(&id) {
                                let _ = r.send(Some(response));
                            }
                        }
                        Event::RequestFailed { id, .. } => {
                            if let Some(r) = waiting.remove(&id) {
                                let _ = r.send(None);
                            }
                        }
                        Event::Request { id, request, .. } => {
                            seen2.lock().unwrap().requests.push(request.clone());
                            let resp = answer_composite(&request, &mut composite)
                                .or_else(|| answer(&request));
                            let Some(resp) = resp else {
                                continue;
                            };
                            if request.options.uint(number::OBSERVE) == Some(0) {
                                observation = ep.respond_observe(now(), id, resp);
                            } else {
                                ep.respond(now(), id, resp);
                            }
                        }
                        _ => {}
                    }
                }
            }
        });
        Device { cmds: tx, seen }
    }

    pub async fn send(&self, to: SocketAddr, req: Request) -> Response {
        let (reply, rx) = oneshot::channel();
        self.cmds.send(Cmd::Send(to, req, reply)).await.unwrap();
        tokio::time::timeout(WAIT, rx)
            .await
            .expect("answer in time")
            .unwrap()
            .expect("exchange completed")
    }

    /// Registers as `ep` with extra query items; returns the location.
    pub async fn register(&self, server: SocketAddr, query: &str) -> String {
        let mut r = Request::new(Code::POST).with_path("/rd");
        for q in query.split('&') {
            r = r.with_query(q);
        }
        let r = r.with_payload(40, b"</1/0>,</3/0>,</3303>".to_vec());
        let resp = self.send(server, r).await;
        assert_eq!(resp.code, Code::CREATED);
        resp.options
            .get_all(number::LOCATION_PATH)
            .map(|s| format!("/{}", String::from_utf8_lossy(s)))
            .collect()
    }

    pub fn last_request(&self) -> Request {
        self.seen.lock().unwrap().requests.last().cloned().unwrap()
    }
}
