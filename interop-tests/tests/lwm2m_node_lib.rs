//! Interop with Telefonica's lwm2m-node-lib (npm, version pinned in
//! `interop-tests/node/package.json` and its lock file; installed by
//! `./scripts/install-test-deps` with `npm ci`):
//!
//! * our client → lwm2m-node-lib's server (`node/server.js`): the server
//!   sees our registration, reads the Manufacturer, writes and reads back
//!   the Timezone, executes Reboot, observes Current Time and gets a
//!   notification for each change; our client De-registers on shutdown;
//! * lwm2m-node-lib's client (`node/client.js`) → our server: we see its
//!   registration, read its Manufacturer, write, read back, observe (a
//!   write makes it notify), execute, discover, write attributes (seen in
//!   the next discover), follow its Update from a new port; it
//!   De-registers when told to stop.
//!
//! lwm2m-node-lib speaks LwM2M 1.0 with plain-text single resources (it
//! does not read or write whole instances, nor TLV/SenML): the tests stay
//! within that. The Node.js scripts print JSON lines; every socket binds
//! 127.0.0.1 (`node/loopback.js`); the processes are killed by their guards
//! and bound their own lifetime too.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use interop_tests::our_client::{OurClient, OurClientOptions};
use interop_tests::{free_udp_port, node, node_peers_dir, PeerProcess};
use lwm2m_client::ClientEvent;
use lwm2m_core::coap::Code;
use lwm2m_core::format::ContentFormat;
use lwm2m_core::model::{
    AttributeChange, AttributeUpdate, Node, Path, Resource, ResourceValue, Value, Version,
};
use lwm2m_server::{
    Content, DmResponse, MemoryStore, Server, ServerConfig, ServerEvent, WriteMode,
};
use serde_json::Value as Json;
use tokio::sync::broadcast;

/// Bound of each step.
const STEP: Duration = Duration::from_secs(15);
/// Lifetime of a Node.js peer (it also exits by itself after it).
const PEER_LIFE: Duration = Duration::from_secs(90);

/// Starts `script` of `node/` with `args` under the pinned lwm2m-node-lib.
fn spawn_node(script: &str, args: &[String]) -> PeerProcess {
    let (node, version) = node();
    eprintln!("lwm2m-node-lib {version}, {}", node.display());
    let mut cmd = Command::new(node);
    // The library's MongoDB dependency warns about circular imports on
    // every start; nothing the tests look at.
    cmd.arg("--no-warnings")
        .arg(script)
        .args(args)
        .current_dir(node_peers_dir());
    PeerProcess::spawn(cmd, PEER_LIFE).unwrap()
}

/// The JSON events a peer printed so far.
fn peer_events(peer: &PeerProcess) -> Vec<Json> {
    peer.output()
        .lines()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .filter(|j| j.get("event").is_some())
        .collect()
}

/// Waits for an event named `name` that satisfies `pred`; panics with the
/// peer's output if none comes within [`STEP`].
fn wait_event(peer: &mut PeerProcess, name: &str, pred: impl Fn(&Json) -> bool) -> Json {
    let line = peer.wait_for_line(STEP, |l| {
        serde_json::from_str::<Json>(l).is_ok_and(|j| j["event"] == name && pred(&j))
    });
    match line {
        Some(l) => serde_json::from_str(&l).unwrap(),
        None => panic!(
            "{}: no {name:?} event within {STEP:?}; output:\n{}",
            peer.name(),
            peer.output()
        ),
    }
}

#[test]
fn our_client_with_lwm2m_node_lib_server() {
    let started = std::time::Instant::now();
    let port = free_udp_port().unwrap();
    let mut peer = spawn_node("server.js", &[port.to_string(), "80".into()]);
    wait_event(&mut peer, "listening", |j| j["port"] == port);

    let ep = "rs-to-node";
    let manufacturer = "lwm2m-rs (via lwm2m-node-lib)";
    let server = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut client = OurClient::start(OurClientOptions {
        manufacturer: manufacturer.into(),
        ..OurClientOptions::new(ep, server)
    })
    .unwrap();
    let location = match client.expect_event_blocking(STEP, "Registered", |e| {
        matches!(e, ClientEvent::Registered { .. })
    }) {
        ClientEvent::Registered { location } => location,
        _ => unreachable!(),
    };
    assert!(location.starts_with("/rd/"), "{location}");

    let reg = wait_event(&mut peer, "registration", |_| true);
    assert_eq!(reg["endpoint"], ep, "{reg}");
    assert_eq!(reg["lifetime"], "60", "{reg}");
    assert_eq!(reg["version"], "1.1", "{reg}");
    assert_eq!(reg["binding"], "U", "{reg}");
    let links = reg["payload"].as_str().unwrap_or_default();
    assert!(links.contains("</3/0>"), "{links}");
    assert!(!links.contains("</0/"), "Security announced: {links}");
    let t_registered = started.elapsed();

    // The server's scenario: read, write, read back, execute.
    wait_event(&mut peer, "done", |_| true);
    let seen = peer_events(&peer);
    let errors: Vec<&Json> = seen.iter().filter(|j| j["event"] == "error").collect();
    assert!(
        errors.is_empty(),
        "lwm2m-node-lib server errors: {errors:?}"
    );
    let find = |name: &str, path: &str| -> Option<Json> {
        seen.iter()
            .find(|j| j["event"] == name && j["path"] == path)
            .cloned()
    };
    let read = find("read", "/3/0/0").expect("read of /3/0/0");
    assert_eq!(read["value"], manufacturer, "{read}");
    assert!(find("write", "/3/0/15").is_some(), "{seen:?}");
    let back = find("read", "/3/0/15").expect("read of /3/0/15");
    assert_eq!(back["value"], "Europe/Madrid", "{back}");
    assert!(find("execute", "/3/0/4").is_some(), "{seen:?}");
    assert_eq!(client.reboots.load(Ordering::SeqCst), 1);

    // It observes Current Time; each change of our clock is notified.
    let t0 = client.clock.load(Ordering::SeqCst);
    let first = find("observe", "/3/0/13").expect("observe of /3/0/13");
    assert_eq!(first["value"], t0.to_string(), "{first}");
    for n in 1..=2i64 {
        let want = (t0 + 100 * n).to_string();
        client.clock.store(t0 + 100 * n, Ordering::SeqCst);
        wait_event(&mut peer, "notification", |j| {
            j["path"] == "/3/0/13" && j["value"] == want.as_str()
        });
    }

    let rest = client.shutdown(STEP).expect("client stops");
    assert!(rest.contains(&ClientEvent::Deregistered), "{rest:?}");
    let unreg = wait_event(&mut peer, "unregistration", |_| true);
    assert_eq!(unreg["endpoint"], ep, "{unreg}");
    eprintln!(
        "registered after {t_registered:?}, done after {:?}",
        started.elapsed()
    );
}

fn ok(r: Result<DmResponse, lwm2m_server::DmError>, what: &str) -> DmResponse {
    r.unwrap_or_else(|e| panic!("{what}: {e:?}"))
}

/// The text of a plain-text answer: lwm2m-node-lib sends single resources
/// as text without a Content-Format option, which our server keeps raw
/// (`Content::Raw`); a typed decode would be a string resource node.
fn text_of(content: &Content) -> Option<String> {
    match content {
        Content::Raw { payload, .. } => String::from_utf8(payload.clone()).ok(),
        Content::Node(Node::Resource(Resource {
            value: ResourceValue::Single(Value::String(s)),
            ..
        })) => Some(s.clone()),
        _ => None,
    }
}

async fn next_lifecycle_event(
    events: &mut broadcast::Receiver<ServerEvent<SocketAddr>>,
) -> ServerEvent<SocketAddr> {
    loop {
        match tokio::time::timeout(STEP, events.recv()).await {
            Ok(Ok(ServerEvent::Response { .. } | ServerEvent::Notification { .. })) => {}
            Ok(Ok(ev)) => return ev,
            Ok(Err(e)) => panic!("server events: {e}"),
            Err(_) => panic!("no server event within {STEP:?}"),
        }
    }
}

/// Blocking waits on the peer from inside the runtime (the server's task
/// keeps running on the other worker).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lwm2m_node_lib_client_with_our_server() {
    tokio::time::timeout(Duration::from_secs(120), node_client_scenario())
        .await
        .expect("the whole scenario within its bound");
}

async fn node_client_scenario() {
    let started = std::time::Instant::now();
    let server = Server::start(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
        Box::new(MemoryStore::new()),
        Box::new(lwm2m_objects::Registry::standard()),
    )
    .await
    .unwrap();
    let mut events = server.events();
    let ep = "node-to-rs";
    let manufacturer = "Telefonica I+D";
    let port = server.local_addr().port();
    let mut peer = spawn_node(
        "client.js",
        &[
            "127.0.0.1".into(),
            port.to_string(),
            ep.into(),
            manufacturer.into(),
            "100".into(),
        ],
    );

    let reg = match next_lifecycle_event(&mut events).await {
        ServerEvent::Registered { registration, .. } => registration,
        e => panic!("expected Registered, got {e:?}\n{}", peer.output()),
    };
    assert_eq!(reg.endpoint, ep);
    assert_eq!(reg.lwm2m_version, Version::new(1, 0));
    assert_eq!(reg.lifetime, 60);
    assert_eq!(reg.binding, "U");
    assert!(
        reg.links
            .objects
            .iter()
            .any(|(p, _)| *p == Path::Instance(3, 0)),
        "{:?}",
        reg.links
    );
    let registered = blocking(|| wait_event(&mut peer, "registered", |_| true));
    assert_eq!(
        registered["location"]
            .as_str()
            .map(|l| l.trim_start_matches('/')),
        Some(format!("rd/{}", reg.id).as_str()),
        "{registered}"
    );
    // It answers from the port it registered from.
    assert_eq!(registered["port"], reg.address.port(), "{registered}");
    let t_registered = started.elapsed();

    // Read the Manufacturer.
    let r = ok(
        server.read(ep, Path::Resource(3, 0, 0)).await,
        "read /3/0/0",
    );
    assert_eq!(r.code, Code::CONTENT);
    assert_eq!(text_of(&r.content).as_deref(), Some(manufacturer), "{r:?}");
    blocking(|| wait_event(&mut peer, "read", |j| j["path"] == "/3/0/0"));

    // Write the UTC Offset as text and read it back.
    let node = Node::Resource(Resource::single(14, Value::String("+05:30".into())));
    let r = ok(
        server
            .write(
                ep,
                Path::Resource(3, 0, 14),
                WriteMode::Replace,
                ContentFormat::TEXT,
                node,
            )
            .await,
        "write /3/0/14",
    );
    assert_eq!(r.code, Code::CHANGED);
    let w = blocking(|| wait_event(&mut peer, "write", |j| j["path"] == "/3/0/14"));
    assert_eq!(w["value"], "+05:30", "{w}");
    let r = ok(
        server.read(ep, Path::Resource(3, 0, 14)).await,
        "read /3/0/14",
    );
    assert_eq!(text_of(&r.content).as_deref(), Some("+05:30"), "{r:?}");

    // Observe the Timezone; a write changes it and the client notifies.
    let (obs, first) = server
        .observe(ep, Path::Resource(3, 0, 15), None)
        .await
        .unwrap_or_else(|e| panic!("observe: {e:?}"));
    assert_eq!(first.code, Code::CONTENT);
    assert_eq!(
        text_of(&first.content).as_deref(),
        Some("Europe/Madrid"),
        "{first:?}"
    );
    let node = Node::Resource(Resource::single(15, Value::String("Asia/Tokyo".into())));
    let r = ok(
        server
            .write(
                ep,
                Path::Resource(3, 0, 15),
                WriteMode::Replace,
                ContentFormat::TEXT,
                node,
            )
            .await,
        "write /3/0/15",
    );
    assert_eq!(r.code, Code::CHANGED);
    let notified = loop {
        match tokio::time::timeout(STEP, events.recv()).await {
            Ok(Ok(ServerEvent::Notification { id, result, .. })) if id == obs => {
                break result.unwrap_or_else(|e| panic!("notification: {e:?}"));
            }
            Ok(Ok(_)) => {}
            other => panic!("no notification: {other:?}\n{}", peer.output()),
        }
    };
    assert_eq!(
        text_of(&notified.content).as_deref(),
        Some("Asia/Tokyo"),
        "{notified:?}"
    );

    // Execute Reboot.
    let r = ok(
        server.execute(ep, Path::Resource(3, 0, 4), None).await,
        "execute",
    );
    assert_eq!(r.code, Code::CHANGED);
    blocking(|| wait_event(&mut peer, "execute", |j| j["path"] == "/3/0/4"));

    // Discover the instance: its resources, as link format.
    let r = ok(
        server.discover(ep, Path::Instance(3, 0)).await,
        "discover /3/0",
    );
    assert_eq!(r.code, Code::CONTENT);
    let Content::Links(links) = &r.content else {
        panic!("discover /3/0: {r:?}");
    };
    let paths: Vec<Path> = links.iter().map(|l| l.path).collect();
    for p in [
        Path::Instance(3, 0),
        Path::Resource(3, 0, 0),
        Path::Resource(3, 0, 14),
        Path::Resource(3, 0, 15),
    ] {
        assert!(paths.contains(&p), "{p} not in {paths:?}");
    }

    // Write-Attributes, then Discover shows them.
    let update = AttributeUpdate {
        pmin: Some(AttributeChange::Set(2)),
        pmax: Some(AttributeChange::Set(30)),
        ..AttributeUpdate::default()
    };
    let r = ok(
        server
            .write_attributes(ep, Path::Resource(3, 0, 15), update)
            .await,
        "write-attributes",
    );
    assert_eq!(r.code, Code::CHANGED);
    let r = ok(
        server.discover(ep, Path::Resource(3, 0, 15)).await,
        "discover /3/0/15",
    );
    let Content::Links(links) = &r.content else {
        panic!("discover /3/0/15: {r:?}");
    };
    let entry = links
        .iter()
        .find(|l| l.path == Path::Resource(3, 0, 15))
        .unwrap_or_else(|| panic!("{links:?}"));
    assert_eq!(entry.attributes.pmin, Some(2), "{links:?}");
    assert_eq!(entry.attributes.pmax, Some(30), "{links:?}");

    // An Update from a new port (lwm2m-node-lib sends it from a fresh
    // socket and listens there afterwards): our server follows the address.
    peer.write_stdin(b"update\n").unwrap();
    let updated = match next_lifecycle_event(&mut events).await {
        ServerEvent::Updated { registration } => registration,
        e => panic!("expected Updated, got {e:?}\n{}", peer.output()),
    };
    assert_eq!(updated.id, reg.id);
    let said = blocking(|| wait_event(&mut peer, "updated", |_| true));
    assert_eq!(said["port"], updated.address.port(), "{said}");
    let r = ok(
        server.read(ep, Path::Resource(3, 0, 0)).await,
        "read /3/0/0 after the Update",
    );
    assert_eq!(text_of(&r.content).as_deref(), Some(manufacturer), "{r:?}");

    // Closing its stdin makes it De-register.
    peer.close_stdin();
    match next_lifecycle_event(&mut events).await {
        ServerEvent::Deregistered { registration } => assert_eq!(registration.id, reg.id),
        e => panic!("expected Deregistered, got {e:?}\n{}", peer.output()),
    }
    let status = blocking(|| peer.wait_timeout(STEP)).expect("the node client exits");
    assert!(status.success(), "{status:?}\n{}", peer.output());
    let seen = peer_events(&peer);
    assert!(
        seen.iter().any(|j| j["event"] == "unregistered"),
        "{seen:?}"
    );
    assert!(!seen.iter().any(|j| j["event"] == "error"), "{seen:?}");
    assert!(server.registrations().await.is_empty());
    server.shutdown().await;
    eprintln!(
        "registered after {t_registered:?}, done after {:?}",
        started.elapsed()
    );
}
