//! End to end over real UDP on 127.0.0.1 with both of our parts:
//!
//! * the server's tokio driver (SQLite store in a temporary directory) and
//!   our client's tokio driver (Security, Server, Device and Connectivity
//!   Monitoring objects) in the same test process: Register, Read in SenML
//!   CBOR / TLV / plain text, Write and read back, Execute (the client's
//!   hook runs), Observe with notifications and cancel, an Update caused by
//!   a lifetime write and the periodic one, De-register on shutdown;
//! * the demo binaries `lwm2m-server` and `lwm2m-client` as processes: the
//!   server's log shows the client's registration and de-registration.
//!
//! Every wait is bounded; the processes are killed by their guards.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use interop_tests::demo::{field, spawn_demo_server, strip_ansi, wait_registered};
use interop_tests::our_client::{OurClient, OurClientOptions};
use interop_tests::{cargo_bin, PeerProcess, TempDir};
use lwm2m_client::ClientEvent;
use lwm2m_core::coap::Code;
use lwm2m_core::format::ContentFormat;
use lwm2m_core::model::{Node, Path, Resource, ResourceValue, Value, Version};
use lwm2m_server::{
    Content, DmResponse, Registration, Server, ServerConfig, ServerEvent, SqliteStore, WriteMode,
};
use tokio::sync::broadcast;

/// Bound of each step (one request, one expected event).
const STEP: Duration = Duration::from_secs(10);
/// Bound of a whole test.
const WHOLE: Duration = Duration::from_secs(90);

const EP: &str = "e2e-device";
const MANUFACTURER: &str = "lwm2m-rs e2e";

/// Runs `f` with a step timeout and a message saying which step hung.
async fn step<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {STEP:?}"))
}

/// The next event that is neither a DM response nor a notification.
async fn next_lifecycle_event(
    events: &mut broadcast::Receiver<ServerEvent<SocketAddr>>,
) -> ServerEvent<SocketAddr> {
    loop {
        match step("server event", events.recv()).await {
            Ok(ServerEvent::Response { .. } | ServerEvent::Notification { .. }) => {}
            Ok(ev) => return ev,
            Err(e) => panic!("server events: {e}"),
        }
    }
}

/// The value of a single resource in `content`, wherever it sits (a
/// resource node, or resource `id` of an instance node).
fn single_value(content: &Content, id: u16) -> Option<&Value> {
    let resource = match content {
        Content::Node(Node::Resource(r)) => Some(r),
        Content::Node(Node::Instance(i)) => i.resources.get(&id),
        _ => None,
    }?;
    match &resource.value {
        ResourceValue::Single(v) if resource.id == id => Some(v),
        _ => None,
    }
}

/// A time or integer value as seconds (Current Time decodes as Time from
/// typed formats).
fn seconds(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Time(t) | Value::Integer(t) => Some(*t),
        _ => None,
    }
}

fn ok(r: Result<DmResponse, lwm2m_server::DmError>, what: &str) -> DmResponse {
    r.unwrap_or_else(|e| panic!("{what}: {e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_and_our_server_over_udp() {
    tokio::time::timeout(WHOLE, scenario())
        .await
        .expect("the whole scenario within its bound");
}

async fn scenario() {
    let started = std::time::Instant::now();
    let dir = TempDir::new().unwrap();
    let server = Server::start(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
        Box::new(SqliteStore::open(dir.path()).unwrap()),
        Box::new(lwm2m_objects::Registry::standard()),
    )
    .await
    .unwrap();
    let mut events = server.events();
    let mut client = OurClient::start(OurClientOptions {
        manufacturer: MANUFACTURER.into(),
        ..OurClientOptions::new(EP, server.local_addr())
    })
    .unwrap();

    // --- Register -------------------------------------------------------
    let reg: Registration<SocketAddr> = match next_lifecycle_event(&mut events).await {
        ServerEvent::Registered {
            registration,
            replaced: None,
        } => registration,
        e => panic!("expected Registered, got {e:?}"),
    };
    assert_eq!(reg.endpoint, EP);
    assert_eq!(reg.address, client.local_addr());
    assert_eq!(reg.lifetime, 60);
    assert_eq!(reg.lwm2m_version, Version::new(1, 1));
    assert_eq!(reg.binding, "U");
    assert!(!reg.queue_mode);
    let announced: Vec<Path> = reg.links.objects.iter().map(|(p, _)| *p).collect();
    for p in [
        Path::Instance(1, 0),
        Path::Instance(3, 0),
        Path::Instance(4, 0),
    ] {
        assert!(announced.contains(&p), "{p} not in {announced:?}");
    }
    assert!(
        !announced.iter().any(|p| p.object_id() == Some(0)),
        "the Security object must not be announced: {announced:?}"
    );
    assert!(
        reg.links
            .content_formats
            .contains(&ContentFormat::SENML_CBOR.0),
        "{:?}",
        reg.links.content_formats
    );
    let location = format!("/rd/{}", reg.id);
    client
        .expect_event(STEP, "Registered", |e| {
            *e == ClientEvent::Registered {
                location: location.clone(),
            }
        })
        .await;
    let t_registered = started.elapsed();

    // --- Read /3/0 in SenML CBOR and TLV, /3/0/0 in the default format ---
    for cf in [ContentFormat::SENML_CBOR, ContentFormat::TLV] {
        let r = ok(
            step(
                "read /3/0",
                server.read_as(EP, Path::Instance(3, 0), Some(cf)),
            )
            .await,
            "read /3/0",
        );
        assert_eq!(r.code, Code::CONTENT, "{cf:?}");
        assert!(
            matches!(&r.content, Content::Node(Node::Instance(i)) if i.id == 0),
            "{cf:?}: {:?}",
            r.content
        );
        assert_eq!(
            single_value(&r.content, 0),
            Some(&Value::String(MANUFACTURER.into())),
            "{cf:?}: {:?}",
            r.content
        );
        assert_eq!(
            single_value(&r.content, 2),
            Some(&Value::String(EP.into())),
            "serial number, {cf:?}"
        );
    }
    let r = ok(
        step("read /3/0/0", server.read(EP, Path::Resource(3, 0, 0))).await,
        "read /3/0/0",
    );
    assert_eq!(
        r.content,
        Content::Node(Node::Resource(Resource::single(
            0,
            Value::String(MANUFACTURER.into())
        )))
    );

    // --- Write and read back (text and SenML CBOR) -------------------------
    let writes = [
        (15, ContentFormat::TEXT, "Europe/Berlin"),
        (14, ContentFormat::SENML_CBOR, "+02:00"),
    ];
    for (id, cf, text) in writes {
        let path = Path::Resource(3, 0, id);
        let node = Node::Resource(Resource::single(id, Value::String(text.into())));
        let r = ok(
            step(
                "write",
                server.write(EP, path, WriteMode::Replace, cf, node.clone()),
            )
            .await,
            "write",
        );
        assert_eq!(r.code, Code::CHANGED, "write {path} as {cf:?}");
        let r = ok(step("read back", server.read(EP, path)).await, "read back");
        assert_eq!(r.content, Content::Node(node), "{path} after the write");
    }
    // Read-only: Manufacturer cannot be written.
    let r = ok(
        step(
            "write read-only",
            server.write(
                EP,
                Path::Resource(3, 0, 0),
                WriteMode::Replace,
                ContentFormat::TEXT,
                Node::Resource(Resource::single(0, Value::String("x".into()))),
            ),
        )
        .await,
        "write read-only",
    );
    assert_eq!(r.code, Code::METHOD_NOT_ALLOWED);

    // --- Execute Reboot ----------------------------------------------------
    assert_eq!(client.reboots.load(std::sync::atomic::Ordering::SeqCst), 0);
    let r = ok(
        step("execute", server.execute(EP, Path::Resource(3, 0, 4), None)).await,
        "execute",
    );
    assert_eq!(r.code, Code::CHANGED);
    // The hook runs before the client answers.
    assert_eq!(client.reboots.load(std::sync::atomic::Ordering::SeqCst), 1);

    // --- Observe Current Time, two notifications, cancel -------------------
    let t0 = client.clock.load(std::sync::atomic::Ordering::SeqCst);
    let (obs, first) = step(
        "observe",
        server.observe(EP, Path::Resource(3, 0, 13), None),
    )
    .await
    .unwrap_or_else(|e| panic!("observe: {e:?}"));
    assert_eq!(first.code, Code::CONTENT);
    assert_eq!(seconds(single_value(&first.content, 13)), Some(t0));
    for n in 1..=2i64 {
        let want = t0 + 100 * n;
        client
            .clock
            .store(want, std::sync::atomic::Ordering::SeqCst);
        let got = loop {
            match step("notification", events.recv()).await.unwrap() {
                ServerEvent::Notification {
                    id,
                    endpoint,
                    result,
                } if id == obs => {
                    assert_eq!(endpoint, EP);
                    let r = result.unwrap_or_else(|e| panic!("notification: {e:?}"));
                    break seconds(single_value(&r.content, 13));
                }
                _ => {}
            }
        };
        assert_eq!(got, Some(want), "notification {n}");
    }
    let r = ok(
        step("cancel observe", server.cancel_observe(obs)).await,
        "cancel",
    );
    assert_eq!(r.code, Code::CONTENT);
    client
        .clock
        .store(t0 + 1000, std::sync::atomic::Ordering::SeqCst);
    // Polled every 100 ms: a live observation would notify well within this.
    let quiet = tokio::time::timeout(Duration::from_millis(600), async {
        loop {
            if let Ok(ServerEvent::Notification { id, .. }) = events.recv().await {
                if id == obs {
                    return;
                }
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "a notification came after the cancel");

    // --- Update: lifetime write, then the periodic one ---------------------
    let r = ok(
        step(
            "write lifetime",
            server.write(
                EP,
                Path::Resource(1, 0, 1),
                WriteMode::Replace,
                ContentFormat::TEXT,
                Node::Resource(Resource::single(1, Value::Integer(4))),
            ),
        )
        .await,
        "write lifetime",
    );
    assert_eq!(r.code, Code::CHANGED);
    for which in ["after the lifetime write", "at lifetime / 2"] {
        match next_lifecycle_event(&mut events).await {
            ServerEvent::Updated { registration } => {
                assert_eq!(registration.id, reg.id, "{which}");
                assert_eq!(registration.lifetime, 4, "{which}");
                assert_eq!(registration.address, client.local_addr());
                assert!(registration.last_update > reg.last_update);
            }
            e => panic!("expected Updated {which}, got {e:?}"),
        }
        client
            .expect_event(STEP, "Updated", |e| *e == ClientEvent::Updated)
            .await;
    }

    // --- Shutdown → De-register ---------------------------------------------
    let rest = tokio::task::spawn_blocking(move || client.shutdown(STEP))
        .await
        .unwrap()
        .expect("client stops");
    assert!(rest.contains(&ClientEvent::Deregistered), "{rest:?}");
    match next_lifecycle_event(&mut events).await {
        ServerEvent::Deregistered { registration } => {
            assert_eq!(registration.endpoint, EP);
            assert_eq!(registration.id, reg.id);
        }
        e => panic!("expected Deregistered, got {e:?}"),
    }
    assert!(server.registrations().await.is_empty());
    server.shutdown().await;
    eprintln!(
        "registered after {t_registered:?}, whole scenario {:?}",
        started.elapsed()
    );
}

/// The demo binaries as processes. They are built (or found up to date)
/// with [`cargo_bin`], which asks cargo for their paths.
#[test]
fn demo_binaries_register_and_deregister() {
    let started = std::time::Instant::now();
    let server_bin = cargo_bin("lwm2m-server", "lwm2m-server");
    let client_bin = cargo_bin("lwm2m-client", "lwm2m-client");
    let built = started.elapsed();
    let dir = TempDir::new().unwrap();
    let life = Duration::from_secs(60);
    let (mut server, addrs) = spawn_demo_server(&server_bin, dir.path().join("data"), life);
    let addr = addrs.coap;

    let ep = "demo-e2e";
    let mut cmd = Command::new(&client_bin);
    cmd.args(["--endpoint", ep, "--lifetime", "60", "--server"])
        .arg(format!("coap://{addr}"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let mut client = PeerProcess::spawn(cmd, life).unwrap();

    let registered = wait_registered(&mut server, &client, ep);
    assert_eq!(field(&registered, "lwm2m"), Some("1.1"), "{registered}");
    assert_eq!(field(&registered, "lifetime"), Some("60"), "{registered}");
    let id = field(&registered, "id").expect("id= in the registered line");
    let client_line = client
        .wait_for_line(STEP, |l| strip_ansi(l).contains("registered location="))
        .unwrap_or_else(|| panic!("client did not log its registration:\n{}", client.output()));
    assert_eq!(
        field(&strip_ansi(&client_line), "location"),
        Some(format!("/rd/{id}").as_str()),
        "{client_line}"
    );
    let t_registered = started.elapsed();

    // Ctrl-C: the demo client De-registers, then exits.
    client.signal("INT").unwrap();
    let status = client
        .wait_timeout(STEP)
        .unwrap_or_else(|| panic!("client still running after SIGINT:\n{}", client.output()));
    assert!(status.success(), "{status:?}\n{}", client.output());
    server
        .wait_for_line(STEP, |l| {
            let l = strip_ansi(l);
            l.contains(" deregistered ") && field(&l, "id") == Some(id)
        })
        .unwrap_or_else(|| panic!("no de-registration in the server log:\n{}", server.output()));

    server.signal("TERM").unwrap();
    let status = server
        .wait_timeout(STEP)
        .unwrap_or_else(|| panic!("server still running after SIGTERM:\n{}", server.output()));
    assert!(status.success(), "{status:?}\n{}", server.output());
    eprintln!(
        "binaries built/located in {built:?}, registered at {t_registered:?}, done at {:?}",
        started.elapsed()
    );
}

/// The demo client with two `--server` flags registers with two demo
/// server processes, each seeing its own lifetime-60 registration, and
/// de-registers from both on Ctrl-C.
#[test]
fn demo_client_registers_with_two_demo_servers() {
    let server_bin = cargo_bin("lwm2m-server", "lwm2m-server");
    let client_bin = cargo_bin("lwm2m-client", "lwm2m-client");
    let dir = TempDir::new().unwrap();
    let life = Duration::from_secs(60);
    let (mut s1, a1) = spawn_demo_server(&server_bin, dir.path().join("one"), life);
    let (mut s2, a2) = spawn_demo_server(&server_bin, dir.path().join("two"), life);
    let (a1, a2) = (a1.coap, a2.coap);
    let ep = "demo-multi";
    let mut cmd = Command::new(&client_bin);
    cmd.args(["--endpoint", ep, "--lifetime", "60"])
        .arg("--server")
        .arg(format!("coap://{a1}"))
        .arg("--server")
        .arg(format!("coap://{a2}"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1");
    let mut client = PeerProcess::spawn(cmd, life).unwrap();
    let mut ids = Vec::new();
    for server in [&mut s1, &mut s2] {
        let line = wait_registered(server, &client, ep);
        assert_eq!(field(&line, "lifetime"), Some("60"), "{line}");
        ids.push(field(&line, "id").expect("id=").to_string());
    }
    client.signal("INT").unwrap();
    let status = client
        .wait_timeout(STEP)
        .unwrap_or_else(|| panic!("client still running after SIGINT:\n{}", client.output()));
    assert!(status.success(), "{status:?}\n{}", client.output());
    for (server, id) in [&mut s1, &mut s2].into_iter().zip(&ids) {
        server
            .wait_for_line(STEP, |l| {
                let l = strip_ansi(l);
                l.contains(" deregistered ") && field(&l, "id") == Some(id.as_str())
            })
            .unwrap_or_else(|| panic!("no de-registration:\n{}", server.output()));
        server.signal("TERM").unwrap();
        let status = server
            .wait_timeout(STEP)
            .unwrap_or_else(|| panic!("server still running:\n{}", server.output()));
        assert!(status.success(), "{status:?}\n{}", server.output());
    }
}

/// An LwM2M 1.0 client in queue mode: it registers with binding `UQ`,
/// answers a Read of /3/0 without Accept in TLV (the 1.0 default), falls
/// asleep, and a Read made while it sleeps is held by the server and
/// delivered after its next Update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_mode_lwm2m_1_0_client() {
    tokio::time::timeout(WHOLE, queue_mode_scenario())
        .await
        .expect("the whole scenario within its bound");
}

async fn queue_mode_scenario() {
    let started = std::time::Instant::now();
    // The server believes the client awake for less time than the client
    // stays awake, so nothing it sends right away lands while the client's
    // radio is off.
    let config = ServerConfig {
        awake_time: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let server = Server::start(
        "127.0.0.1:0".parse().unwrap(),
        config,
        Box::new(lwm2m_server::MemoryStore::new()),
        Box::new(lwm2m_objects::Registry::standard()),
    )
    .await
    .unwrap();
    let mut events = server.events();
    let ep = "e2e-queue-1.0";
    let mut client = OurClient::start(OurClientOptions {
        manufacturer: MANUFACTURER.into(),
        version: Version::new(1, 0),
        // Update every second (lifetime / 2).
        lifetime: 2,
        queue_mode: Some(Duration::from_millis(600)),
        poll_observed: None,
        ..OurClientOptions::new(ep, server.local_addr())
    })
    .unwrap();
    let reg = match next_lifecycle_event(&mut events).await {
        ServerEvent::Registered { registration, .. } => registration,
        e => panic!("expected Registered, got {e:?}"),
    };
    assert_eq!(reg.lwm2m_version, Version::new(1, 0));
    assert_eq!(reg.binding, "UQ");
    assert!(reg.queue_mode);

    // Awake right after Register: the default format of a 1.0 client is TLV.
    let r = ok(
        step("read /3/0", server.read(ep, Path::Instance(3, 0))).await,
        "read /3/0",
    );
    assert_eq!(
        single_value(&r.content, 0),
        Some(&Value::String(MANUFACTURER.into())),
        "{r:?}"
    );

    // Asleep: the Read waits for the next Update.
    client
        .expect_event(STEP, "Sleeping", |e| *e == ClientEvent::Sleeping)
        .await;
    while events.try_recv().is_ok() {}
    let asked = std::time::Instant::now();
    let r = ok(
        step("held read", server.read(ep, Path::Resource(3, 0, 0))).await,
        "held read",
    );
    let waited = asked.elapsed();
    assert_eq!(
        r.content,
        Content::Node(Node::Resource(Resource::single(
            0,
            Value::String(MANUFACTURER.into())
        )))
    );
    let mut updated_first = false;
    while let Ok(ev) = events.try_recv() {
        if matches!(ev, ServerEvent::Updated { .. }) {
            updated_first = true;
        }
    }
    assert!(
        updated_first,
        "the held Read was answered without an Update waking the client (after {waited:?})"
    );

    let rest = tokio::task::spawn_blocking(move || client.shutdown(STEP))
        .await
        .unwrap()
        .expect("client stops");
    assert!(rest.contains(&ClientEvent::Deregistered), "{rest:?}");
    server.shutdown().await;
    eprintln!(
        "held read answered after {waited:?}, whole scenario {:?}",
        started.elapsed()
    );
}

/// Write-Attributes from our server to our client: `pmax` makes an
/// unchanged resource notify, and Discover reports the attributes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_attributes_drive_notifications() {
    tokio::time::timeout(WHOLE, attributes_scenario())
        .await
        .expect("the whole scenario within its bound");
}

async fn attributes_scenario() {
    let server = Server::start(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
        Box::new(lwm2m_server::MemoryStore::new()),
        Box::new(lwm2m_objects::Registry::standard()),
    )
    .await
    .unwrap();
    let mut events = server.events();
    let ep = "e2e-attributes";
    let client = OurClient::start(OurClientOptions {
        manufacturer: MANUFACTURER.into(),
        ..OurClientOptions::new(ep, server.local_addr())
    })
    .unwrap();
    assert!(matches!(
        next_lifecycle_event(&mut events).await,
        ServerEvent::Registered { .. }
    ));

    let path = Path::Resource(3, 0, 0);
    let update = lwm2m_core::model::AttributeUpdate {
        pmin: Some(lwm2m_core::model::AttributeChange::Set(0)),
        pmax: Some(lwm2m_core::model::AttributeChange::Set(1)),
        ..Default::default()
    };
    let r = ok(
        step(
            "write-attributes",
            server.write_attributes(ep, path, update),
        )
        .await,
        "write-attributes",
    );
    assert_eq!(r.code, Code::CHANGED);
    let r = ok(
        step("discover", server.discover(ep, Path::Instance(3, 0))).await,
        "discover",
    );
    let Content::Links(links) = &r.content else {
        panic!("discover: {r:?}");
    };
    let entry = links
        .iter()
        .find(|l| l.path == path)
        .unwrap_or_else(|| panic!("{path} not discovered: {links:?}"));
    assert_eq!(entry.attributes.pmax, Some(1), "{links:?}");

    // Manufacturer never changes: only pmax makes it notify.
    let (obs, first) = step("observe", server.observe(ep, path, None))
        .await
        .unwrap_or_else(|e| panic!("observe: {e:?}"));
    assert_eq!(
        single_value(&first.content, 0),
        Some(&Value::String(MANUFACTURER.into()))
    );
    let since = std::time::Instant::now();
    for _ in 0..2 {
        loop {
            match step("pmax notification", events.recv()).await.unwrap() {
                ServerEvent::Notification { id, result, .. } if id == obs => {
                    let r = result.unwrap_or_else(|e| panic!("notification: {e:?}"));
                    assert_eq!(
                        single_value(&r.content, 0),
                        Some(&Value::String(MANUFACTURER.into()))
                    );
                    break;
                }
                _ => {}
            }
        }
    }
    let two = since.elapsed();
    // Two pmax periods of 1 s, with slack for scheduling, not much less.
    assert!(
        two >= Duration::from_millis(1500) && two < Duration::from_secs(5),
        "two pmax=1 notifications took {two:?}"
    );
    drop(client);
    server.shutdown().await;
}

/// Our server restarts on the same address with its SQLite store while our
/// client stays registered: the client's next Update (same registration
/// id) is accepted and device management works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart_keeps_our_client_registered() {
    tokio::time::timeout(WHOLE, restart_scenario())
        .await
        .expect("the whole scenario within its bound");
}

async fn restart_scenario() {
    let dir = TempDir::new().unwrap();
    let start = |addr: SocketAddr| {
        let store = SqliteStore::open(dir.path()).unwrap();
        async move {
            Server::start(
                addr,
                ServerConfig::default(),
                Box::new(store),
                Box::new(lwm2m_objects::Registry::standard()),
            )
            .await
            .unwrap()
        }
    };
    let server = start("127.0.0.1:0".parse().unwrap()).await;
    let addr = server.local_addr();
    let mut events = server.events();
    let ep = "e2e-restart";
    let mut client = OurClient::start(OurClientOptions {
        manufacturer: MANUFACTURER.into(),
        // Update every second.
        lifetime: 2,
        ..OurClientOptions::new(ep, addr)
    })
    .unwrap();
    let reg = match next_lifecycle_event(&mut events).await {
        ServerEvent::Registered { registration, .. } => registration,
        e => panic!("expected Registered, got {e:?}"),
    };
    client
        .expect_event(STEP, "Registered", |e| {
            matches!(e, ClientEvent::Registered { .. })
        })
        .await;
    server.shutdown().await;

    let server = start(addr).await;
    let mut events = server.events();
    assert_eq!(
        server
            .registrations()
            .await
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>(),
        [reg.id.as_str()],
        "restored from SQLite"
    );
    match next_lifecycle_event(&mut events).await {
        ServerEvent::Updated { registration } => {
            assert_eq!(registration.id, reg.id);
            assert_eq!(registration.address, client.local_addr());
        }
        e => panic!("expected Updated after the restart, got {e:?}"),
    }
    let r = ok(
        step(
            "read after restart",
            server.read(ep, Path::Resource(3, 0, 0)),
        )
        .await,
        "read after restart",
    );
    assert_eq!(
        single_value(&r.content, 0),
        Some(&Value::String(MANUFACTURER.into()))
    );
    // The client never had to register again.
    let rest = tokio::task::spawn_blocking(move || client.shutdown(STEP))
        .await
        .unwrap()
        .expect("client stops");
    assert!(
        !rest
            .iter()
            .any(|e| matches!(e, ClientEvent::Registered { .. })),
        "{rest:?}"
    );
    assert!(rest.contains(&ClientEvent::Deregistered), "{rest:?}");
    server.shutdown().await;
}

/// Read-Composite and Write-Composite over real UDP between the server's
/// tokio driver and our client's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_operations_over_udp() {
    tokio::time::timeout(WHOLE, composite_scenario())
        .await
        .expect("the whole scenario within its bound");
}

async fn composite_scenario() {
    let server = Server::start(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::default(),
        Box::new(lwm2m_server::MemoryStore::new()),
        Box::new(lwm2m_objects::Registry::standard()),
    )
    .await
    .unwrap();
    let mut events = server.events();
    let client = OurClient::start(OurClientOptions {
        manufacturer: MANUFACTURER.into(),
        ..OurClientOptions::new("composite-device", server.local_addr())
    })
    .unwrap();
    match next_lifecycle_event(&mut events).await {
        ServerEvent::Registered { .. } => {}
        e => panic!("expected Registered, got {e:?}"),
    }
    let ep = "composite-device";
    let paths = vec![Path::Resource(3, 0, 0), Path::Resource(1, 0, 1)];
    let values = |r: &DmResponse| -> Vec<(Path, Value)> {
        match &r.content {
            Content::Values(v) => v.iter().map(|t| (t.path, t.value.clone())).collect(),
            other => panic!("expected values, got {other:?}"),
        }
    };
    for format in [ContentFormat::SENML_CBOR, ContentFormat::SENML_JSON] {
        let r = ok(
            step(
                "read-composite",
                server.read_composite(ep, paths.clone(), format, None),
            )
            .await,
            "read-composite",
        );
        assert_eq!(r.code, Code::CONTENT);
        assert_eq!(
            values(&r),
            [
                (Path::Resource(3, 0, 0), Value::String(MANUFACTURER.into())),
                (Path::Resource(1, 0, 1), Value::UnsignedInteger(60)),
            ],
            "{format:?}"
        );
    }
    let write = vec![lwm2m_core::model::TimestampedValue {
        path: Path::Resource(1, 0, 1),
        value: Value::UnsignedInteger(120),
        time: None,
    }];
    let r = ok(
        step(
            "write-composite",
            server.write_composite(ep, write, ContentFormat::SENML_CBOR),
        )
        .await,
        "write-composite",
    );
    assert_eq!(r.code, Code::CHANGED);
    let r = ok(
        step(
            "read back",
            server.read_composite(
                ep,
                vec![Path::Resource(1, 0, 1)],
                ContentFormat::SENML_JSON,
                None,
            ),
        )
        .await,
        "read back",
    );
    assert_eq!(
        values(&r),
        [(Path::Resource(1, 0, 1), Value::UnsignedInteger(120))]
    );
    client.shutdown(STEP).unwrap();
    server.shutdown().await;
}
