//! The fleet simulator against the real server engine (in process, virtual
//! network) and against the real server driver over UDP sockets.
#![cfg(feature = "fleet")]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use lwm2m_client::fleet::in_process::{sim_server, InProcess};
use lwm2m_client::fleet::udp::{self, UdpRun};
use lwm2m_client::fleet::{Fleet, FleetConfig, Phase, SharedObjects};
use lwm2m_core::coap::Code;
use lwm2m_core::format::ContentFormat;
use lwm2m_core::model::Path;
use lwm2m_core::time::{Duration, Instant};
use lwm2m_server::{Content, MemoryStore, Server, ServerConfig};

fn config(lifetime: u32, spread_s: u64) -> FleetConfig {
    FleetConfig {
        endpoint_prefix: "fleet-".into(),
        lifetime,
        register_spread: Duration::from_secs(spread_s),
        ..FleetConfig::default()
    }
}

#[test]
fn two_thousand_devices_register_update_answer_reads_and_deregister_in_process() {
    const N: u32 = 2000;
    let fleet = Fleet::new(config(60, 5), SharedObjects::standard(60), N, Instant::ZERO);
    let mut run = InProcess::new(
        fleet,
        sim_server(ServerConfig::default(), 7),
        Duration::from_millis(10),
    );
    let limit = Instant::ZERO + Duration::from_secs(120);
    assert!(run.run_while(limit, |r| r.fleet.registered() < N as usize));
    assert_eq!(run.server.registration_count(), N as usize);
    for i in [0, 1, N / 2, N - 1] {
        let reg = run
            .server
            .registration(&format!("fleet-{i}"))
            .expect("registered");
        assert_eq!(reg.address, i);
        assert_eq!(reg.lifetime, 60);
        assert_eq!(run.fleet.location(i), Some(format!("/rd/{}", reg.id)));
    }

    // A lifetime and a second: every device updates twice (at lt/2 each,
    // plus a 20 ms round trip), none expires.
    let until = run.now() + Duration::from_secs(61);
    run.run_until(until);
    assert!((0..N).all(|i| run.fleet.updates_of(i) == 2));
    assert_eq!(run.fleet.stats().updates, 2 * u64::from(N));
    assert_eq!(run.server_counts().updated, run.fleet.stats().updates);
    assert_eq!(run.server_counts().expired, 0);
    assert_eq!(run.server.registration_count(), N as usize);

    // Reads through the server engine.
    let read = run.start_read(5, Path::Instance(3, 0), None).unwrap();
    let discover = run
        .start_read(6, Path::Instance(3, 0), Some(ContentFormat::LINK_FORMAT))
        .unwrap();
    let limit = run.now() + Duration::from_secs(10);
    assert!(run.run_while(limit, |r| r.responses_waiting() < 2));
    let r = run.take_response(read).unwrap().unwrap();
    assert_eq!(r.code, Code::CONTENT);
    let Content::Node(node) = r.content else {
        panic!("{:?}", r.content)
    };
    assert!(matches!(node, lwm2m_core::model::Node::Instance(ref i) if i.resources.len() == 9));
    let d = run.take_response(discover).unwrap().unwrap();
    assert_eq!(d.code, Code::CONTENT);

    let now = run.now();
    run.fleet.deregister_all(now, Duration::from_secs(2));
    let limit = now + Duration::from_secs(60);
    assert!(run.run_while(limit, |r| r.fleet.registered() > 0));
    assert_eq!(run.server.registration_count(), 0);
    assert_eq!(run.fleet.stats().deregistrations, u64::from(N));
    assert!((0..N).all(|i| run.fleet.phase(i) == Some(Phase::Done)));
    assert_eq!(run.fleet.stats().retransmissions, 0);
}

#[test]
fn three_hundred_devices_register_over_udp_with_the_server_driver() {
    const N: u32 = 300;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let server = Server::start(
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            ServerConfig::default(),
            Box::new(MemoryStore::new()),
            Box::new(lwm2m_objects::Registry::standard()),
        )
        .await
        .unwrap();
        let handle = server.handle();
        let mut events = handle.events();
        // While the fleet runs: once device 0 is registered, read it.
        let reader = {
            let handle = handle.clone();
            tokio::spawn(async move {
                loop {
                    if handle.registration("fleet-0").await.is_some() {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                let count_while_held = loop {
                    let n = handle.registration_count().await;
                    if n == N as usize {
                        break n;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                };
                (
                    handle.read("fleet-0", Path::Instance(3, 0)).await,
                    count_while_held,
                )
            })
        };
        let fleet = Fleet::new(config(20, 1), SharedObjects::standard(20), N, Instant::ZERO);
        let run = UdpRun {
            server: handle.local_addr(),
            bind: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            hold: Duration::from_secs(1),
            phase_timeout: Duration::from_secs(30),
            deregister_spread: Duration::from_millis(500),
        };
        let report = tokio::time::timeout(std::time::Duration::from_secs(60), udp::run(fleet, run))
            .await
            .expect("fleet run within 60 s")
            .unwrap();
        assert_eq!(report.registered, N as usize, "{report:?}");
        assert_eq!(report.register_rtt.count, N as usize);
        assert_eq!(report.done, N as usize);
        assert_eq!(report.stats.deregistrations, u64::from(N));
        let (read, held) = reader.await.unwrap();
        assert_eq!(held, N as usize);
        let read = read.unwrap();
        assert_eq!(read.code, Code::CONTENT);
        assert_eq!(handle.registration_count().await, 0);
        let mut registered = 0;
        while let Ok(ev) = events.try_recv() {
            if matches!(ev, lwm2m_server::ServerEvent::Registered { .. }) {
                registered += 1;
            }
        }
        assert_eq!(registered, N);
        server.shutdown().await;
    });
}
