//! Our client's sans-IO engine against our server's sans-IO engine in
//! lwm2m-core's simulated network: a Send (`POST /dp`) reaches the server
//! as an event with the values, and Read-Composite / Write-Composite /
//! Observe-Composite from the server are answered by the real client.

use lwm2m_client::objects::{Device, DeviceInfo, Security, Server, ServerConfig as ServerObj};
use lwm2m_client::{Client, ClientConfig, ClientEvent};
use lwm2m_core::coap::Code;
use lwm2m_core::format::ContentFormat;
use lwm2m_core::model::{Path, TimestampedValue, Value, Version};
use lwm2m_core::rng::SplitMix64;
use lwm2m_core::sim::{LinkConfig, Network, SimAddr, SimNode};
use lwm2m_core::time::{Duration, Instant};
use lwm2m_server::{
    Content, DmRequestId, DmResponse, Engine, MemoryStore, ServerConfig, ServerEvent,
};

const SERVER: SimAddr = 0;
const CLIENT: SimAddr = 1;

enum Node {
    Server(Box<Engine<SimAddr, SplitMix64>>, Vec<ServerEvent<SimAddr>>),
    Client(Box<Client<SimAddr, SplitMix64>>, Vec<ClientEvent>),
}

impl Node {
    fn drain(&mut self) {
        match self {
            Node::Server(e, evs) => evs.extend(std::iter::from_fn(|| e.poll_event())),
            Node::Client(c, evs) => evs.extend(std::iter::from_fn(|| c.poll_event())),
        }
    }
}

impl SimNode for Node {
    fn handle_datagram(&mut self, now: Instant, from: SimAddr, bytes: &[u8]) {
        match self {
            Node::Server(e, _) => e.handle_datagram(now, from, bytes),
            Node::Client(c, _) => c.handle_datagram(now, from, bytes),
        }
        self.drain();
    }
    fn poll_transmit(&mut self) -> Option<(SimAddr, Vec<u8>)> {
        match self {
            Node::Server(e, _) => e.poll_transmit().map(|t| (t.peer, t.bytes)),
            Node::Client(c, _) => c.poll_transmit().map(|t| (t.peer, t.bytes)),
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Node::Server(e, _) => e.poll_timeout(),
            Node::Client(c, _) => c.poll_timeout(),
        }
    }
    fn handle_timeout(&mut self, now: Instant) {
        match self {
            Node::Server(e, _) => e.handle_timeout(now),
            Node::Client(c, _) => c.handle_timeout(now),
        }
        self.drain();
    }
}

fn server(
    net: &mut Network<Node>,
) -> (
    &mut Engine<SimAddr, SplitMix64>,
    &mut Vec<ServerEvent<SimAddr>>,
) {
    match net.node_mut(SERVER) {
        Node::Server(e, evs) => (e, evs),
        Node::Client(..) => panic!("node 0 is the server"),
    }
}

fn client(net: &mut Network<Node>) -> (&mut Client<SimAddr, SplitMix64>, &mut Vec<ClientEvent>) {
    match net.node_mut(CLIENT) {
        Node::Client(c, evs) => (c, evs),
        Node::Server(..) => panic!("node 1 is the client"),
    }
}

/// Server and our client (LwM2M 1.1, Security, Server and Device objects), registered.
fn registered() -> Network<Node> {
    let mut net = Network::new(7, LinkConfig::default());
    let engine = Engine::new(
        ServerConfig::default(),
        SplitMix64::new(1),
        SplitMix64::new(2),
        Box::new(MemoryStore::new()),
        Box::new(lwm2m_objects::Registry::standard()),
    )
    .unwrap();
    assert_eq!(net.add(Node::Server(Box::new(engine), Vec::new())), SERVER);
    let mut config = ClientConfig::new("our-client");
    config.lwm2m_version = Version::new(1, 1);
    config.lifetime = 300;
    let mut c = Client::new(config, SERVER, SplitMix64::new(3));
    c.add_object(Box::new(Security::new("coap://sim", 1)));
    c.add_object(Box::new(Server::new(ServerObj::new(300))));
    c.add_object(Box::new(Device::new(DeviceInfo {
        manufacturer: "lwm2m-rs".into(),
        model_number: "sim".into(),
        serial_number: "1".into(),
        firmware_version: "0.1.0".into(),
        supported_binding: "U".into(),
    })));
    c.start(net.now());
    assert_eq!(net.add(Node::Client(Box::new(c), Vec::new())), CLIENT);
    let deadline = net.now() + Duration::from_secs(60);
    net.run_until(deadline, |n| {
        client(n)
            .1
            .iter()
            .any(|e| matches!(e, ClientEvent::Registered { .. }))
    });
    assert!(server(&mut net)
        .1
        .iter()
        .any(|e| matches!(e, ServerEvent::Registered { .. })));
    net
}

fn response_of(net: &mut Network<Node>, id: DmRequestId) -> DmResponse {
    let deadline = net.now() + Duration::from_secs(120);
    net.run_until(deadline, |n| {
        server(n)
            .1
            .iter()
            .any(|e| matches!(e, ServerEvent::Response { id: i, .. } if *i == id))
    });
    server(net)
        .1
        .iter()
        .find_map(|e| match e {
            ServerEvent::Response { id: i, result, .. } if *i == id => Some(result.clone()),
            _ => None,
        })
        .expect("response event")
        .expect("request succeeded")
}

fn values_of(r: &DmResponse) -> Vec<(Path, Value)> {
    match &r.content {
        Content::Values(v) => v.iter().map(|t| (t.path, t.value.clone())).collect(),
        other => panic!("expected values, got {other:?}"),
    }
}

#[test]
fn our_client_sends_values_to_our_server() {
    let mut net = registered();
    let now = net.now();
    let id = client(&mut net)
        .0
        .send(now, &[Path::Resource(3, 0, 0), Path::Resource(1, 0, 1)])
        .expect("send accepted");
    let deadline = net.now() + Duration::from_secs(60);
    net.run_until(deadline, |n| {
        client(n)
            .1
            .iter()
            .any(|e| matches!(e, ClientEvent::SendCompleted { id: i, .. } if *i == id))
    });
    assert!(client(&mut net).1.iter().any(|e| matches!(
        e,
        ClientEvent::SendCompleted { id: i, code: Some(Code::CHANGED) } if *i == id
    )));
    let sends: Vec<_> = server(&mut net)
        .1
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Send {
                endpoint,
                content_format,
                values,
            } => Some((endpoint.clone(), *content_format, values.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(sends.len(), 1);
    let (ep, cf, values) = &sends[0];
    assert_eq!(
        (ep.as_str(), *cf),
        ("our-client", ContentFormat::SENML_JSON)
    );
    let got: Vec<(Path, Value)> = values.iter().map(|t| (t.path, t.value.clone())).collect();
    assert_eq!(
        got,
        [
            (Path::Resource(3, 0, 0), Value::String("lwm2m-rs".into())),
            (Path::Resource(1, 0, 1), Value::UnsignedInteger(300)),
        ]
    );
}

#[test]
fn our_server_reads_writes_and_observes_composite_on_our_client() {
    let mut net = registered();
    let paths = [Path::Resource(3, 0, 0), Path::Resource(1, 0, 1)];
    for (format, accept) in [
        (ContentFormat::SENML_JSON, None),
        (ContentFormat::SENML_CBOR, None),
        (ContentFormat::SENML_JSON, Some(ContentFormat::SENML_CBOR)),
    ] {
        let now = net.now();
        let id = server(&mut net)
            .0
            .read_composite(now, "our-client", &paths, format, accept)
            .unwrap();
        let r = response_of(&mut net, id);
        assert_eq!(r.code, Code::CONTENT, "{format:?} {accept:?}");
        assert_eq!(
            values_of(&r),
            [
                (Path::Resource(3, 0, 0), Value::String("lwm2m-rs".into())),
                (Path::Resource(1, 0, 1), Value::UnsignedInteger(300)),
            ],
            "{format:?} {accept:?}"
        );
    }

    // Write-Composite the lifetime, then read it back.
    let now = net.now();
    let write = [TimestampedValue {
        path: Path::Resource(1, 0, 1),
        value: Value::UnsignedInteger(600),
        time: None,
    }];
    let id = server(&mut net)
        .0
        .write_composite(now, "our-client", &write, ContentFormat::SENML_CBOR)
        .unwrap();
    assert_eq!(response_of(&mut net, id).code, Code::CHANGED);

    // Observe-Composite: the first answer carries the values.
    let now = net.now();
    let id = server(&mut net)
        .0
        .observe_composite(
            now,
            "our-client",
            &[Path::Resource(1, 0, 1)],
            ContentFormat::SENML_JSON,
            None,
        )
        .unwrap();
    let r = response_of(&mut net, id);
    assert_eq!(
        values_of(&r),
        [(Path::Resource(1, 0, 1), Value::UnsignedInteger(600))]
    );
    // A second Write-Composite changes the observed value: a notification.
    let now = net.now();
    let write = [TimestampedValue {
        path: Path::Resource(1, 0, 1),
        value: Value::UnsignedInteger(900),
        time: None,
    }];
    let w = server(&mut net)
        .0
        .write_composite(now, "our-client", &write, ContentFormat::SENML_JSON)
        .unwrap();
    assert_eq!(response_of(&mut net, w).code, Code::CHANGED);
    let deadline = net.now() + Duration::from_secs(60);
    net.run_until(deadline, |n| {
        server(n)
            .1
            .iter()
            .any(|e| matches!(e, ServerEvent::Notification { id: i, .. } if *i == id))
    });
    let note = server(&mut net)
        .1
        .iter()
        .find_map(|e| match e {
            ServerEvent::Notification { id: i, result, .. } if *i == id => Some(result.clone()),
            _ => None,
        })
        .expect("notification")
        .unwrap();
    assert_eq!(
        values_of(&note),
        [(Path::Resource(1, 0, 1), Value::UnsignedInteger(900))]
    );
    let now = net.now();
    let cancel = server(&mut net)
        .0
        .cancel_observe(now, id)
        .unwrap()
        .expect("active cancel");
    assert!(response_of(&mut net, cancel).code.is_success());
}
