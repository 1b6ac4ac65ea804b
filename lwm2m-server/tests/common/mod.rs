//! A server engine and scripted CoAP clients in lwm2m-core's simulated network.
#![allow(dead_code)]

use lwm2m_core::coap::endpoint::{IncomingId, RequestError};
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Endpoint, EndpointConfig, Event, Request, RequestId, Response};
use lwm2m_core::rng::SplitMix64;
use lwm2m_core::sim::{LinkConfig, Network, SimAddr, SimNode};
use lwm2m_core::time::{Duration, Instant};
use lwm2m_server::{Engine, MemoryStore, ServerConfig, ServerEvent};

pub type ServerEngine = Engine<SimAddr, SplitMix64>;

/// The server under test plus the events it reported.
pub struct ServerNode {
    pub engine: ServerEngine,
    pub events: Vec<ServerEvent<SimAddr>>,
}

impl ServerNode {
    fn drain(&mut self) {
        while let Some(e) = self.engine.poll_event() {
            self.events.push(e);
        }
    }
}

/// A scripted client: sends what the test tells it, records responses and
/// incoming requests, answers incoming requests with `handler`.
pub struct ClientNode {
    pub ep: Endpoint<SimAddr, SplitMix64>,
    pub responses: Vec<(RequestId, Response)>,
    pub failures: Vec<(RequestId, RequestError)>,
    pub requests: Vec<Request>,
    pub handler: Option<fn(&Request) -> Response>,
    /// Requests left unanswered (handler None), for the test to answer.
    pub held: Vec<(IncomingId, Request)>,
    pub now: Instant,
}

impl ClientNode {
    fn drain(&mut self) {
        let now = self.now;
        while let Some(e) = self.ep.poll_event() {
            match e {
                Event::Response { id, response } | Event::Notification { id, response } => {
                    self.responses.push((id, response))
                }
                Event::RequestFailed { id, error } => self.failures.push((id, error)),
                Event::Request { id, request, .. } => {
                    self.requests.push(request.clone());
                    match self.handler {
                        Some(h) => {
                            self.ep.respond(now, id, h(&request));
                        }
                        None => self.held.push((id, request)),
                    }
                }
                Event::ObservationCancelled { .. } => {}
            }
        }
    }

    pub fn response(&self, id: RequestId) -> Option<&Response> {
        self.responses
            .iter()
            .find(|(r, _)| *r == id)
            .map(|(_, r)| r)
    }
}

pub enum SimPeer {
    Server(Box<ServerNode>),
    Client(Box<ClientNode>),
}

impl SimNode for SimPeer {
    fn handle_datagram(&mut self, now: Instant, from: SimAddr, bytes: &[u8]) {
        match self {
            SimPeer::Server(s) => {
                s.engine.handle_datagram(now, from, bytes);
                s.drain();
            }
            SimPeer::Client(c) => {
                c.now = now;
                c.ep.handle_datagram(now, from, bytes);
                c.drain();
            }
        }
    }
    fn poll_transmit(&mut self) -> Option<(SimAddr, Vec<u8>)> {
        match self {
            SimPeer::Server(s) => s.engine.poll_transmit().map(|t| (t.peer, t.bytes)),
            SimPeer::Client(c) => c.ep.poll_transmit().map(|t| (t.peer, t.bytes)),
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            SimPeer::Server(s) => s.engine.poll_timeout(),
            SimPeer::Client(c) => c.ep.poll_timeout(),
        }
    }
    fn handle_timeout(&mut self, now: Instant) {
        match self {
            SimPeer::Server(s) => {
                s.engine.handle_timeout(now);
                s.drain();
            }
            SimPeer::Client(c) => {
                c.now = now;
                c.ep.handle_timeout(now);
                c.drain();
            }
        }
    }
}

/// Address of the server in every test network.
pub const SERVER: SimAddr = 0;

pub fn standard_models() -> Box<dyn lwm2m_core::model::ModelLookup + Send> {
    Box::new(lwm2m_objects::Registry::standard())
}

pub fn server_node(seed: u64, config: ServerConfig) -> SimPeer {
    let engine = Engine::new(
        config,
        SplitMix64::new(seed ^ 0x5eed),
        SplitMix64::new(seed),
        Box::new(MemoryStore::new()),
        standard_models(),
    )
    .unwrap();
    SimPeer::Server(Box::new(ServerNode {
        engine,
        events: Vec::new(),
    }))
}

pub fn client_node(seed: u64, handler: Option<fn(&Request) -> Response>) -> SimPeer {
    SimPeer::Client(Box::new(ClientNode {
        ep: Endpoint::new(EndpointConfig::default(), SplitMix64::new(seed)),
        responses: Vec::new(),
        failures: Vec::new(),
        requests: Vec::new(),
        handler,
        held: Vec::new(),
        now: Instant::ZERO,
    }))
}

/// A network with the server at address 0 and `clients` scripted clients at 1..
pub fn network(
    seed: u64,
    link: LinkConfig,
    config: ServerConfig,
    clients: usize,
    handler: Option<fn(&Request) -> Response>,
) -> Network<SimPeer> {
    let mut net = Network::new(seed, link);
    net.add(server_node(seed, config));
    for i in 0..clients {
        net.add(client_node(seed.wrapping_add(100 + i as u64), handler));
    }
    net
}

pub fn server(net: &mut Network<SimPeer>) -> &mut ServerNode {
    match net.node_mut(SERVER) {
        SimPeer::Server(s) => s,
        SimPeer::Client(_) => panic!("node 0 is the server"),
    }
}

pub fn client(net: &mut Network<SimPeer>, addr: SimAddr) -> &mut ClientNode {
    match net.node_mut(addr) {
        SimPeer::Client(c) => c,
        SimPeer::Server(_) => panic!("node {addr} is the server"),
    }
}

/// Builds a request: `path` like "/rd" or "/rd/abc", `query` items joined by '&'.
pub fn request(code: Code, path: &str, query: &str, cf: Option<u16>, payload: &[u8]) -> Request {
    let mut r = Request::new(code).with_path(path);
    for q in query.split('&').filter(|q| !q.is_empty()) {
        r = r.with_query(q);
    }
    if let Some(cf) = cf {
        r.options.set_uint(number::CONTENT_FORMAT, u32::from(cf));
    }
    r.payload = payload.to_vec();
    r
}

/// Sends `req` from `from` and runs the network until it is answered or failed.
pub fn exchange(net: &mut Network<SimPeer>, from: SimAddr, req: Request) -> Option<Response> {
    let now = net.now();
    let id = client(net, from).ep.send_request(now, SERVER, req).unwrap();
    let deadline = net.now() + Duration::from_secs(300);
    net.run_until(deadline, |n| {
        let c = client(n, from);
        c.response(id).is_some() || c.failures.iter().any(|(r, _)| *r == id)
    });
    client(net, from).response(id).cloned()
}

/// Registers with `query` and a small object list; returns the response.
pub fn register(net: &mut Network<SimPeer>, from: SimAddr, query: &str) -> Response {
    exchange(
        net,
        from,
        request(Code::POST, "/rd", query, Some(40), b"</1/0>,</3/0>"),
    )
    .expect("register answered")
}

/// The location `rd/{id}` of a 2.01 response, as "/rd/{id}".
pub fn location(resp: &Response) -> String {
    let mut s = String::new();
    for seg in resp.options.get_all(number::LOCATION_PATH) {
        s.push('/');
        s.push_str(std::str::from_utf8(seg).unwrap());
    }
    s
}

/// Runs the network for `d` of virtual time.
pub fn run_for(net: &mut Network<SimPeer>, d: Duration) {
    let until = net.now() + d;
    net.run_until(until, |_| false);
    net.advance_to(until);
}
