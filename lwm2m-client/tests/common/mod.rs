//! A simulated network holding one LwM2M client engine and a scripted LwM2M
//! server built from a bare CoAP endpoint.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;

use lwm2m_client::engine::ServerEvent;
use lwm2m_client::objects::SecurityInstance;
use lwm2m_client::objects::{
    ConnectivityMonitoring, Device, DeviceInfo, Security, Server, ServerConfig,
};
use lwm2m_client::{Client, ClientConfig, ClientEvent};
use lwm2m_client::{DmError, Object};
use lwm2m_core::coap::endpoint::RequestError;
use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{
    Code, Endpoint, EndpointConfig, Event, Message, MessageType, Request, RequestId, Response,
};
use lwm2m_core::model::{
    ObjectModel, Operations, Resource, ResourceModel, ResourceType, ResourceValue, Value,
};
use lwm2m_core::rng::SplitMix64;
use lwm2m_core::sim::{LinkConfig, Network, SimAddr, SimNode};
use lwm2m_core::time::{Duration, Instant};

pub type TestClient = Client<SimAddr, SplitMix64>;

/// The scripted server: answers the registration interface by itself,
/// records everything else for the test.
pub struct ServerApp {
    pub ep: Endpoint<SimAddr, SplitMix64>,
    pub now: Instant,
    /// Registration-interface requests received: (time, request).
    pub rd_requests: Vec<(Instant, Request)>,
    pub responses: BTreeMap<RequestId, Response>,
    pub failures: BTreeMap<RequestId, RequestError>,
    pub notifications: Vec<(Instant, RequestId, Response)>,
    /// Answer to Register (2.01 normally).
    pub register_answer: Code,
    /// Answer to Update (2.04 normally).
    pub update_answer: Code,
    /// Location-Path segments given to the client.
    pub location: Vec<Vec<u8>>,
    /// Answer to Bootstrap-Request (2.04 normally).
    pub bootstrap_answer: Code,
    /// Answers to Register by its `lwm2m=` query, before `register_answer`.
    pub version_answers: Vec<(&'static str, Code)>,
    /// Files served to GET (path such as `/fw.bin` → body, sent
    /// block-wise by the endpoint when large), for firmware pulls.
    pub files: BTreeMap<String, Vec<u8>>,
}

pub const LOCATION: [&str; 2] = ["rd", "5a3f"];

impl ServerApp {
    fn drain(&mut self) {
        while let Some(e) = self.ep.poll_event() {
            match e {
                Event::Request { id, request, .. } => {
                    let segments: Vec<Vec<u8>> = request
                        .options
                        .get_all(number::URI_PATH)
                        .map(<[u8]>::to_vec)
                        .collect();
                    let at_location = segments == self.location;
                    if request.code == Code::GET {
                        if let Some(body) = self.files.get(&request.path()) {
                            let resp = Response::new(Code::CONTENT).with_payload(42, body.clone());
                            self.ep.respond(self.now, id, resp);
                            self.rd_requests.push((self.now, request));
                            continue;
                        }
                    }
                    let code = match request.code {
                        Code::POST if segments == [b"rd".to_vec()] => {
                            let version = request
                                .options
                                .get_all(number::URI_QUERY)
                                .find_map(|q| q.strip_prefix(b"lwm2m="));
                            self.version_answers
                                .iter()
                                .find(|(v, _)| version == Some(v.as_bytes()))
                                .map_or(self.register_answer, |(_, c)| *c)
                        }
                        Code::POST if at_location => self.update_answer,
                        Code::POST if segments == [b"dp".to_vec()] => Code::CHANGED,
                        Code::POST if segments == [b"bs".to_vec()] => self.bootstrap_answer,
                        Code::DELETE if at_location => Code::DELETED,
                        _ => Code::NOT_FOUND,
                    };
                    let mut resp = Response::new(code);
                    if code == Code::CREATED {
                        for seg in &self.location {
                            resp.options.push(number::LOCATION_PATH, seg.clone());
                        }
                    }
                    self.ep.respond(self.now, id, resp);
                    self.rd_requests.push((self.now, request));
                }
                Event::Response { id, response } => {
                    self.responses.insert(id, response);
                }
                Event::Notification { id, response } => {
                    self.notifications.push((self.now, id, response))
                }
                Event::RequestFailed { id, error } => {
                    self.failures.insert(id, error);
                }
                Event::ObservationCancelled { .. } => {}
            }
        }
    }
}

pub enum SimPeer {
    Client(Box<TestClient>),
    Server(Box<ServerApp>),
}

impl SimNode for SimPeer {
    fn handle_datagram(&mut self, now: Instant, from: SimAddr, bytes: &[u8]) {
        match self {
            SimPeer::Client(c) => c.handle_datagram(now, from, bytes),
            SimPeer::Server(s) => {
                s.now = now;
                s.ep.handle_datagram(now, from, bytes);
                s.drain();
            }
        }
    }
    fn poll_transmit(&mut self) -> Option<(SimAddr, Vec<u8>)> {
        match self {
            SimPeer::Client(c) => c.poll_transmit().map(|t| (t.peer, t.bytes)),
            SimPeer::Server(s) => s.ep.poll_transmit().map(|t| (t.peer, t.bytes)),
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            SimPeer::Client(c) => c.poll_timeout(),
            SimPeer::Server(s) => s.ep.poll_timeout(),
        }
    }
    fn handle_timeout(&mut self, now: Instant) {
        match self {
            SimPeer::Client(c) => c.handle_timeout(now),
            SimPeer::Server(s) => {
                s.now = now;
                s.ep.handle_timeout(now);
                s.drain();
            }
        }
    }
}

/// Hooks and sources of the test device.
#[derive(Clone, Default)]
pub struct Probes {
    pub reboots: Rc<Cell<u32>>,
    pub factory_resets: Rc<Cell<u32>>,
    /// Seconds since the epoch returned by the device clock.
    pub clock: Rc<Cell<i64>>,
}

pub const CLIENT: SimAddr = 0;
pub const SERVER: SimAddr = 1;
/// The Bootstrap-Server in [`Harness::with_bootstrap`].
pub const BOOTSTRAP: SimAddr = 2;

pub fn server_app(seed: u64) -> ServerApp {
    ServerApp {
        ep: Endpoint::new(EndpointConfig::default(), SplitMix64::new(seed)),
        now: Instant::ZERO,
        rd_requests: Vec::new(),
        responses: BTreeMap::new(),
        failures: BTreeMap::new(),
        notifications: Vec::new(),
        register_answer: Code::CREATED,
        update_answer: Code::CHANGED,
        location: LOCATION.iter().map(|s| s.as_bytes().to_vec()).collect(),
        bootstrap_answer: Code::CHANGED,
        version_answers: Vec::new(),
        files: BTreeMap::new(),
    }
}

pub struct Harness {
    pub net: Network<SimPeer>,
    pub probes: Probes,
    pub client_events: Vec<(Instant, ClientEvent)>,
    /// The same events with the Short Server ID they concern.
    pub server_events: Vec<(Instant, ServerEvent)>,
}

pub fn device(probes: &Probes) -> Device {
    let info = DeviceInfo {
        manufacturer: "ACME".into(),
        model_number: "Gateway 9".into(),
        serial_number: "SN-0042".into(),
        firmware_version: "1.2.3".into(),
        supported_binding: "U".into(),
    };
    let (r, f, c) = (
        probes.reboots.clone(),
        probes.factory_resets.clone(),
        probes.clock.clone(),
    );
    Device::new(info)
        .on_reboot(move || r.set(r.get() + 1))
        .on_factory_reset(move || f.set(f.get() + 1))
        .with_clock(move || Some(c.get()))
}

impl Harness {
    /// A client `dev1` (lifetime `lifetime`) with Security, Server, Device and
    /// Connectivity Monitoring objects, and the scripted server.
    pub fn new(seed: u64, loss_percent: u32, lifetime: u32) -> Harness {
        Harness::with_config(seed, loss_percent, lifetime, |_| {})
    }

    /// Like [`Harness::new`], with the client configuration adjusted by `tweak`.
    pub fn with_config(
        seed: u64,
        loss_percent: u32,
        lifetime: u32,
        tweak: impl FnOnce(&mut ClientConfig),
    ) -> Harness {
        let probes = Probes::default();
        probes.clock.set(1_700_000_000);
        let mut config = ClientConfig::new("dev1");
        config.lifetime = lifetime;
        tweak(&mut config);
        let mut client = Client::new(config, SERVER, SplitMix64::new(seed ^ 0xC11E));
        client.add_object(Box::new(Security::new("coap://server", 1)));
        client.add_object(Box::new(Server::new(ServerConfig::new(lifetime))));
        client.add_object(Box::new(device(&probes)));
        client.add_object(Box::new(ConnectivityMonitoring::ethernet(vec![
            "192.0.2.7".into(),
        ])));
        let server = server_app(seed ^ 0x5E5E);
        let mut net = Network::new(seed, LinkConfig::lossy(loss_percent));
        net.enable_trace();
        assert_eq!(net.add(SimPeer::Client(Box::new(client))), CLIENT);
        assert_eq!(net.add(SimPeer::Server(Box::new(server))), SERVER);
        Harness {
            net,
            probes,
            client_events: Vec::new(),
            server_events: Vec::new(),
        }
    }

    /// A client `dev1` that starts with only a Bootstrap-Server account
    /// (`coap://bs`, node [`BOOTSTRAP`]), an empty Server object and the
    /// Device object; `coap://dm` resolves to node [`SERVER`].
    pub fn with_bootstrap(seed: u64, loss_percent: u32) -> Harness {
        let probes = Probes::default();
        let mut client = Client::new(
            ClientConfig::new("dev1"),
            BOOTSTRAP,
            SplitMix64::new(seed ^ 0xC11E),
        );
        client.set_resolver(|uri| (uri == "coap://dm").then_some(SERVER));
        client.add_object(Box::new(Security::bootstrap("coap://bs")));
        client.add_object(Box::new(Server::empty()));
        client.add_object(Box::new(device(&probes)));
        let mut net = Network::new(seed, LinkConfig::lossy(loss_percent));
        net.enable_trace();
        assert_eq!(net.add(SimPeer::Client(Box::new(client))), CLIENT);
        assert_eq!(
            net.add(SimPeer::Server(Box::new(server_app(seed ^ 0x5E5E)))),
            SERVER
        );
        assert_eq!(
            net.add(SimPeer::Server(Box::new(server_app(seed ^ 0xB5B5)))),
            BOOTSTRAP
        );
        Harness {
            net,
            probes,
            client_events: Vec::new(),
            server_events: Vec::new(),
        }
    }

    /// A client with a server account (`coap://server`, node [`SERVER`]) and a
    /// Bootstrap-Server account (`coap://bs`, node [`BOOTSTRAP`]); `coap://dm`
    /// (what the Bootstrap-Server configures) also resolves to [`SERVER`]. The
    /// Server object sets a short schedule: 2 attempts 10 s apart, one sequence.
    pub fn with_bootstrap_account(seed: u64, on_failure: Option<bool>) -> Harness {
        let mut h = Harness::new(seed, 0, 120);
        h.add_bootstrap_server(seed);
        // Instance 0 the Bootstrap-Server account, instance 1 the server's.
        let mut security = Security::bootstrap("coap://bs");
        let single = |id, v| Resource {
            id,
            value: ResourceValue::Single(v),
        };
        lwm2m_client::Object::create(
            &mut security,
            1,
            vec![
                single(0, Value::String("coap://server".into())),
                single(1, Value::Boolean(false)),
                single(2, Value::Integer(3)),
                single(10, Value::Integer(1)),
            ],
        )
        .unwrap();
        let mut config = ServerConfig::new(120);
        if let Some(b) = on_failure {
            config.bootstrap_on_registration_failure = b;
        }
        config.communication_retry_count = Some(2);
        config.communication_retry_timer = Some(10);
        let client = h.client();
        client.add_object(Box::new(security));
        client.add_object(Box::new(Server::new(config)));
        client.set_resolver(|uri| match uri {
            "coap://bs" => Some(BOOTSTRAP),
            "coap://dm" => Some(SERVER),
            _ => None,
        });
        h
    }

    /// Adds a scripted Bootstrap-Server as node [`BOOTSTRAP`] to a harness
    /// made by [`Harness::new`].
    pub fn add_bootstrap_server(&mut self, seed: u64) {
        let bs = server_app(seed ^ 0xB5B5);
        assert_eq!(self.net.add(SimPeer::Server(Box::new(bs))), BOOTSTRAP);
    }

    /// The scripted server at `addr`.
    pub fn server_at(&mut self, addr: SimAddr) -> &mut ServerApp {
        match self.net.node_mut(addr) {
            SimPeer::Server(s) => s,
            SimPeer::Client(_) => unreachable!(),
        }
    }

    pub fn client(&mut self) -> &mut TestClient {
        match self.net.node_mut(CLIENT) {
            SimPeer::Client(c) => c,
            SimPeer::Server(_) => unreachable!(),
        }
    }

    pub fn server(&mut self) -> &mut ServerApp {
        match self.net.node_mut(SERVER) {
            SimPeer::Server(s) => s,
            SimPeer::Client(_) => unreachable!(),
        }
    }

    pub fn now(&self) -> Instant {
        self.net.now()
    }

    fn collect(
        net: &mut Network<SimPeer>,
        events: &mut Vec<(Instant, ClientEvent)>,
        server_events: &mut Vec<(Instant, ServerEvent)>,
    ) {
        let now = net.now();
        if let SimPeer::Client(c) = net.node_mut(CLIENT) {
            while let Some(e) = c.poll_server_event() {
                events.push((now, e.event.clone()));
                server_events.push((now, e));
            }
        }
    }

    /// A client `dev1` with one LwM2M server account per entry of
    /// `servers` (Short Server ID and Server object instance values,
    /// Security and Server instance `n` for entry `n`, URI
    /// `coap://s<ssid>`), Device and Connectivity Monitoring objects; the
    /// scripted server of entry `n` is node `n + 1`.
    pub fn multi(seed: u64, servers: Vec<ServerConfig>) -> Harness {
        Harness::multi_with(seed, servers, |_| {})
    }

    /// Like [`Harness::multi`], with the client configuration adjusted by `tweak`.
    pub fn multi_with(
        seed: u64,
        servers: Vec<ServerConfig>,
        tweak: impl FnOnce(&mut ClientConfig),
    ) -> Harness {
        let probes = Probes::default();
        probes.clock.set(1_700_000_000);
        let mut config = ClientConfig::new("dev1");
        tweak(&mut config);
        let mut client = Client::new(config, SERVER, SplitMix64::new(seed ^ 0xC11E));
        let mut security = Security::empty();
        let mut server_object = Server::empty();
        let mut routes = Vec::new();
        for (n, config) in servers.iter().enumerate() {
            let n16 = u16::try_from(n).unwrap();
            let uri = format!("coap://s{}", config.short_server_id);
            security.insert(n16, SecurityInstance::server(&uri, config.short_server_id));
            server_object.insert(n16, config.clone());
            routes.push((uri, SimAddr::try_from(n + 1).unwrap()));
        }
        client.set_resolver(move |uri| routes.iter().find(|(u, _)| u == uri).map(|r| r.1));
        client.add_object(Box::new(security));
        client.add_object(Box::new(server_object));
        client.add_object(Box::new(device(&probes)));
        client.add_object(Box::new(ConnectivityMonitoring::ethernet(vec![
            "192.0.2.7".into(),
        ])));
        let mut net = Network::new(seed, LinkConfig::lossy(0));
        net.enable_trace();
        assert_eq!(net.add(SimPeer::Client(Box::new(client))), CLIENT);
        for n in 0..servers.len() {
            let app = server_app(seed ^ (0x5E5E + n as u64));
            assert_eq!(
                net.add(SimPeer::Server(Box::new(app))),
                SimAddr::try_from(n + 1).unwrap()
            );
        }
        Harness {
            net,
            probes,
            client_events: Vec::new(),
            server_events: Vec::new(),
        }
    }

    /// Runs until `done` (checked with client events collected) or `limit`
    /// of virtual time passed. Returns `done`'s last value.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Network<SimPeer>, &[(Instant, ClientEvent)]) -> bool,
    ) -> bool {
        let deadline = self.now() + limit;
        let events = &mut self.client_events;
        let server_events = &mut self.server_events;
        self.net.run_until(deadline, |net| {
            Self::collect(net, events, server_events);
            done(net, events)
        })
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let deadline = self.now() + d;
        let events = &mut self.client_events;
        let server_events = &mut self.server_events;
        self.net.run_until(deadline, |net| {
            Self::collect(net, events, server_events);
            false
        });
        self.net.advance_to(deadline);
    }

    /// Starts the client and runs until it is registered.
    pub fn register(&mut self) {
        let now = self.now();
        self.client().start(now);
        let ok = self.run_until(Duration::from_secs(3_600), |_, ev| {
            ev.iter()
                .any(|(_, e)| matches!(e, ClientEvent::Registered { .. }))
        });
        assert!(ok, "client did not register: {:?}", self.client_events);
    }

    /// Sends `request` from the server to the client and returns the
    /// response. A request the CoAP layer gives up on (every copy or every
    /// answer lost) is sent again, as a real server would; `attempts` counts them.
    pub fn request_counting(&mut self, request: Request) -> (Response, u32) {
        self.request_from(SERVER, request)
    }

    /// Like [`Harness::request_counting`], from the server at `from`.
    pub fn request_from(&mut self, from: SimAddr, request: Request) -> (Response, u32) {
        for attempt in 1..=5 {
            let now = self.now();
            let id = self
                .server_at(from)
                .ep
                .send_request(now, CLIENT, request.clone())
                .expect("send");
            self.run_until(Duration::from_secs(600), |net, _| match net.node(from) {
                SimPeer::Server(s) => s.responses.contains_key(&id) || s.failures.contains_key(&id),
                SimPeer::Client(_) => unreachable!(),
            });
            if let Some(r) = self.server_at(from).responses.get(&id) {
                return (r.clone(), attempt);
            }
        }
        panic!("no response to {request:?} after 5 attempts");
    }

    pub fn request(&mut self, request: Request) -> Response {
        self.request_counting(request).0
    }
}

pub fn get(path: &str) -> Request {
    Request::new(Code::GET).with_path(path)
}

pub fn get_accept(path: &str, cf: u16) -> Request {
    get(path).with_uint_option(number::ACCEPT, u32::from(cf))
}

/// A SenML JSON PUT (Bootstrap-Write) of `body` to `path`.
pub fn senml_put(path: &str, body: &str) -> Request {
    Request::new(Code::PUT)
        .with_path(path)
        .with_payload(110, body.as_bytes().to_vec())
}

/// Sends `request` from the Bootstrap-Server ([`BOOTSTRAP`]).
pub fn bs(h: &mut Harness, request: Request) -> Response {
    h.request_from(BOOTSTRAP, request).0
}

/// The Bootstrap-Server deletes everything and configures one account:
/// `coap://dm` (Security instance 2), Short Server ID 101, lifetime 300 s,
/// binding U (Server instance 0).
pub fn bootstrap_dm_account(h: &mut Harness) {
    assert_eq!(
        bs(h, Request::new(Code::DELETE).with_path("/")).code,
        Code::DELETED
    );
    let security = r#"[{"bn":"/0/2/","n":"0","vs":"coap://dm"},{"n":"1","vb":false},{"n":"2","v":3},{"n":"10","v":101}]"#;
    let server = r#"[{"bn":"/1/0/","n":"0","v":101},{"n":"1","v":300},{"n":"7","vs":"U"}]"#;
    assert_eq!(bs(h, senml_put("/0/2", security)).code, Code::CHANGED);
    assert_eq!(bs(h, senml_put("/1/0", server)).code, Code::CHANGED);
}

/// What the client sent from `since` on, as it went on the wire:
/// (destination, message type, code, carries an Observe option).
pub fn client_messages_since(
    h: &Harness,
    since: Instant,
) -> Vec<(SimAddr, MessageType, Code, bool)> {
    h.net
        .trace()
        .iter()
        .filter(|t| t.from == CLIENT && t.at >= since)
        .filter_map(|t| {
            Message::parse(&t.bytes)
                .ok()
                .map(|m| (t.to, m.mtype, m.code, m.observe().is_some()))
        })
        .collect()
}

pub fn content_format(r: &Response) -> Option<u32> {
    r.options.uint(number::CONTENT_FORMAT)
}

pub const TEST_OBJECT: u16 = 31024;

/// A multi-instance test object: 0 Counter (RW Integer), 1 Tags (RW String,
/// multiple), 2 Trigger (E), 3 Name (R String).
pub struct TestObject {
    pub model: ObjectModel,
    pub instances: BTreeMap<u16, (i64, BTreeMap<u16, Value>)>,
    pub executed: Rc<RefCell<Vec<String>>>,
}

pub fn resource(id: u16, operations: Operations, multiple: bool, t: ResourceType) -> ResourceModel {
    ResourceModel {
        id,
        name: format!("r{id}"),
        operations,
        multiple,
        mandatory: false,
        resource_type: t,
        range: String::new(),
        units: String::new(),
        description: String::new(),
    }
}

impl TestObject {
    pub fn new(executed: Rc<RefCell<Vec<String>>>) -> TestObject {
        let resources = [
            resource(0, Operations::ReadWrite, false, ResourceType::Integer),
            resource(1, Operations::ReadWrite, true, ResourceType::String),
            resource(2, Operations::Execute, false, ResourceType::None),
            resource(3, Operations::Read, false, ResourceType::String),
        ];
        TestObject {
            model: ObjectModel {
                id: TEST_OBJECT,
                name: "Test".into(),
                version: "1.0".into(),
                lwm2m_version: "1.1".into(),
                multiple: true,
                mandatory: false,
                description: String::new(),
                resources: resources.into_iter().map(|r| (r.id, r)).collect(),
            },
            instances: BTreeMap::from([(0, (5, BTreeMap::new()))]),
            executed,
        }
    }
}

impl Object for TestObject {
    fn model(&self) -> &ObjectModel {
        &self.model
    }
    fn instances(&self) -> Vec<u16> {
        self.instances.keys().copied().collect()
    }
    fn read(&self, instance: u16, resource: u16) -> Result<ResourceValue, DmError> {
        let (counter, tags) = self.instances.get(&instance).ok_or(DmError::NotFound)?;
        Ok(match resource {
            0 => ResourceValue::Single(Value::Integer(*counter)),
            1 => ResourceValue::Multiple(tags.clone()),
            3 => ResourceValue::Single(Value::String(format!("instance {instance}"))),
            _ => return Err(DmError::NotFound),
        })
    }
    fn write(&mut self, instance: u16, resource: u16, value: ResourceValue) -> Result<(), DmError> {
        let inst = self.instances.get_mut(&instance).ok_or(DmError::NotFound)?;
        match (resource, value) {
            (0, ResourceValue::Single(Value::Integer(v))) => inst.0 = v,
            (1, ResourceValue::Multiple(m)) => inst.1 = m,
            _ => return Err(DmError::BadRequest),
        }
        Ok(())
    }
    fn execute(&mut self, instance: u16, _resource: u16, args: &str) -> Result<(), DmError> {
        self.executed
            .borrow_mut()
            .push(format!("{instance}:{args}"));
        Ok(())
    }
    fn create(&mut self, instance: u16, resources: Vec<Resource>) -> Result<(), DmError> {
        self.instances.insert(instance, (0, BTreeMap::new()));
        for r in resources {
            self.write(instance, r.id, r.value)?;
        }
        Ok(())
    }
    fn delete(&mut self, instance: u16) -> Result<(), DmError> {
        self.instances
            .remove(&instance)
            .map(|_| ())
            .ok_or(DmError::NotFound)
    }
}
