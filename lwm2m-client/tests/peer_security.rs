//! What the engine tells a driver about securing each peer
//! ([`Client::peer_security`]), and how it takes a failed DTLS handshake
//! ([`Client::peer_unreachable`]): the Register fails at once and the
//! retry schedule runs.

use lwm2m_client::objects::{Security, SecurityInstance, Server, ServerConfig};
use lwm2m_client::security::{CertificateUsage, SecurityParams};
use lwm2m_client::{Client, ClientConfig, ClientEvent, RegistrationState};
use lwm2m_core::rng::SplitMix64;
use lwm2m_core::time::Instant;

/// Peers are numbers: the resolver maps `coap[s]://N...` to N.
fn resolve(uri: &str) -> Option<u16> {
    let rest = uri.split("://").nth(1)?;
    rest.split(['/', ':']).next()?.parse().ok()
}

fn client(security: Security, servers: Server) -> Client<u16, SplitMix64> {
    let mut c = Client::new(ClientConfig::new("ep"), 99, SplitMix64::new(7));
    c.set_resolver(resolve);
    c.add_object(Box::new(security));
    c.add_object(Box::new(servers));
    c
}

fn two_servers() -> Client<u16, SplitMix64> {
    let mut security = Security::empty();
    security.insert(
        0,
        SecurityInstance::server("coaps://1:5684", 1).with_psk(b"dev", b"key"),
    );
    security.insert(1, SecurityInstance::server("coap://2", 2));
    security.insert(
        2,
        SecurityInstance::bootstrap("coaps://3").with_certificate(b"c", b"k", b"s", Some(2)),
    );
    let mut servers = Server::empty();
    servers.insert(0, ServerConfig::new(300));
    servers.insert(
        1,
        ServerConfig {
            short_server_id: 2,
            ..ServerConfig::new(300)
        },
    );
    client(security, servers)
}

#[test]
fn each_peer_gets_the_credentials_of_its_security_instance() {
    let mut c = two_servers();
    c.start(Instant::ZERO);
    assert_eq!(
        c.peer_security(&1),
        Some(SecurityParams::Psk {
            identity: b"dev".to_vec(),
            key: b"key".to_vec()
        })
    );
    assert_eq!(c.peer_security(&2), Some(SecurityParams::NoSec));
    // The Bootstrap-Server account, found by its URI.
    assert_eq!(
        c.peer_security(&3),
        Some(SecurityParams::Certificate {
            certificate: b"c".to_vec(),
            private_key: b"k".to_vec(),
            server_certificate: b"s".to_vec(),
            usage: CertificateUsage::TrustAnchorAssertion,
        })
    );
    assert_eq!(c.peer_security(&42), None);
    assert_eq!(c.server_peer(Some(1)), Some(&1));
    assert_eq!(c.server_peer(Some(2)), Some(&2));
}

#[test]
fn an_unreachable_peer_fails_its_register_at_once() {
    let mut c = two_servers();
    c.start(Instant::ZERO);
    while c.poll_transmit().is_some() {}
    assert_eq!(c.server_state(1), Some(RegistrationState::Registering));
    c.peer_unreachable(Instant::from_millis(10), &1);
    let events: Vec<_> = std::iter::from_fn(|| c.poll_server_event()).collect();
    assert!(
        events.iter().any(|e| e.ssid == Some(1)
            && matches!(
                e.event,
                ClientEvent::RegistrationFailed {
                    code: None,
                    retry_at: Some(_)
                }
            )),
        "{events:?}"
    );
    assert_eq!(c.server_state(1), Some(RegistrationState::WaitingRetry));
    // The other server is not affected.
    assert_eq!(c.server_state(2), Some(RegistrationState::Registering));
}

/// A firmware pull over coaps:// goes to the peer only when a Security
/// instance gives DTLS credentials there (the driver then carries it over
/// DTLS); elsewhere nothing is sent in clear and Update Result is 9.
#[test]
fn a_coaps_package_uri_is_fetched_only_where_a_security_instance_has_credentials() {
    use lwm2m_client::objects::{Firmware, UpdateOutcome};
    use lwm2m_core::model::{ResourceValue, Value};
    use lwm2m_objects::firmware::{FirmwareConfig, Protocol, State, UpdateResult, VecStorage};

    for (uri, peer, expect_sent) in [
        // On the PSK server's host and port: its credentials are used.
        ("coaps://1:5684/fw.bin", 1, true),
        // On the NoSec server's host: no credentials for coaps there.
        ("coaps://2/fw.bin", 2, false),
        // A host no Security instance knows.
        ("coaps://42/fw.bin", 42, false),
    ] {
        // Server 1 registers only after an hour: no Register holds its
        // peer (one request in flight per peer), the block GET goes at once.
        let mut security = Security::empty();
        security.insert(
            0,
            SecurityInstance::server("coaps://1:5684", 1).with_psk(b"dev", b"key"),
        );
        security.insert(1, SecurityInstance::server("coap://2", 2));
        let mut servers = Server::empty();
        servers.insert(
            0,
            ServerConfig {
                initial_registration_delay: Some(3600),
                ..ServerConfig::new(300)
            },
        );
        servers.insert(
            1,
            ServerConfig {
                short_server_id: 2,
                initial_registration_delay: Some(3600),
                ..ServerConfig::new(300)
            },
        );
        let mut c = client(security, servers);
        let config = FirmwareConfig {
            protocols: vec![Protocol::Coap, Protocol::Coaps],
            ..FirmwareConfig::default()
        };
        let fw = Firmware::with_config(config, VecStorage::new(4096), |_: &mut VecStorage| {
            UpdateOutcome::Succeeded
        });
        let handle = fw.handle();
        c.add_object(Box::new(fw));
        c.start(Instant::ZERO);
        while c.poll_transmit().is_some() {}
        c.object_mut(5)
            .unwrap()
            .write(0, 1, ResourceValue::Single(Value::String(uri.into())))
            .unwrap();
        c.handle_timeout(Instant::from_millis(10));
        let mut sent_to_peer = false;
        while let Some(t) = c.poll_transmit() {
            sent_to_peer |= t.peer == peer;
        }
        assert_eq!(sent_to_peer, expect_sent, "{uri}");
        let (state, result) = handle.with(|f| (f.state(), f.result()));
        if expect_sent {
            assert_eq!(state, State::Downloading, "{uri}");
        } else {
            assert_eq!(
                (state, result),
                (State::Idle, UpdateResult::UnsupportedProtocol),
                "{uri}"
            );
        }
    }
}
