//! The bootstrap engine's authorization of Bootstrap-Requests and
//! Bootstrap-Pack-Requests by the DTLS identity their datagrams came with
//! (Leshan's BootstrapSecurityChecker rules), byte for byte through a real
//! CoAP endpoint on the client side: the code and diagnostic payload of
//! each answer, and whether a session started.

use lwm2m_core::coap::{Code, Endpoint, EndpointConfig, Event, Request, Response};
use lwm2m_core::rng::SplitMix64;
use lwm2m_core::time::Instant;
use lwm2m_server::bootstrap::{
    BootstrapConfig, BootstrapConfigStore, BootstrapEngine, BootstrapServerConfig,
    MemoryConfigStore, SecurityInstance, SecurityMode, StartSessionError,
};
use lwm2m_server::PeerIdentity;

type Engine = BootstrapEngine<u8, SplitMix64>;

fn psk_config(identity: &str, key: &[u8]) -> BootstrapConfig {
    BootstrapConfig {
        security: vec![SecurityInstance {
            id: 0,
            uri: "coaps://bs.example:5784".into(),
            bootstrap_server: true,
            security_mode: SecurityMode::Psk,
            public_key_or_identity: identity.as_bytes().to_vec(),
            server_public_key: vec![],
            secret_key: key.to_vec(),
            short_server_id: None,
            client_hold_off_time: None,
            bootstrap_server_account_timeout: None,
        }],
        ..BootstrapConfig::default()
    }
}

fn engine() -> Engine {
    let mut store = MemoryConfigStore::new();
    store.put("a", psk_config("id-a", b"key-a")).unwrap();
    store.put("b", psk_config("id-b", b"key-b")).unwrap();
    store.put("open", BootstrapConfig::default()).unwrap();
    BootstrapEngine::new(
        BootstrapServerConfig::default(),
        SplitMix64::new(1),
        Box::new(store),
    )
}

const SERVER: u8 = 0;

/// Sends `req` from a client at `peer` whose datagrams carry `identity`;
/// returns the engine's answer as the client decoded it.
fn ask(engine: &mut Engine, peer: u8, identity: Option<&PeerIdentity>, req: Request) -> Response {
    let now = Instant::from_millis(1_000);
    let mut client = Endpoint::new(EndpointConfig::default(), SplitMix64::new(u64::from(peer)));
    client.send_request(now, SERVER, req).unwrap();
    while let Some(t) = client.poll_transmit() {
        engine.handle_datagram_secured(now, peer, identity, &t.bytes);
    }
    while let Some(t) = engine.poll_transmit() {
        if t.peer == peer {
            client.handle_datagram(now, SERVER, &t.bytes);
        }
    }
    while let Some(ev) = client.poll_event() {
        if let Event::Response { response, .. } = ev {
            return response;
        }
    }
    panic!("no answer from the bootstrap engine");
}

fn bs(ep: &str) -> Request {
    Request::new(Code::POST)
        .with_path("/bs")
        .with_query(&format!("ep={ep}"))
}

fn bspack(ep: &str) -> Request {
    Request::new(Code::GET)
        .with_path("/bspack")
        .with_query(&format!("ep={ep}"))
}

fn psk(identity: &str) -> PeerIdentity {
    PeerIdentity::Psk(identity.into())
}

fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.payload).into_owned()
}

#[test]
fn the_configured_psk_identity_bootstraps_its_endpoint_and_the_session_is_secured() {
    let mut e = engine();
    let r = ask(&mut e, 1, Some(&psk("id-a")), bs("a"));
    assert_eq!(r.code, Code::CHANGED, "{}", text(&r));
    assert_eq!(e.session_count(), 1);
    assert!(e.expects_security(&1));
    // Its requests may go through a session of that identity only.
    assert_eq!(e.identities_at(&1).collect::<Vec<_>>(), [&psk("id-a")]);
    // A plain session does not ask for DTLS.
    let r = ask(&mut e, 2, None, bs("open"));
    assert_eq!(r.code, Code::CHANGED, "{}", text(&r));
    assert_eq!(e.session_count(), 2);
    assert!(!e.expects_security(&2));
    assert_eq!(e.identities_at(&2).count(), 0);
}

#[test]
fn plain_coap_for_a_secured_endpoint_is_forbidden_without_a_session() {
    let mut e = engine();
    let r = ask(&mut e, 1, None, bs("a"));
    assert_eq!(r.code, Code::FORBIDDEN);
    assert!(text(&r).contains("connect over DTLS"), "{}", text(&r));
    assert_eq!(e.session_count(), 0);
    // The pack holds the same secrets: refused the same way.
    let r = ask(&mut e, 2, None, bspack("a"));
    assert_eq!(r.code, Code::FORBIDDEN, "{}", text(&r));
    let r = ask(&mut e, 3, Some(&psk("id-a")), bspack("a"));
    assert_eq!(r.code, Code::CONTENT, "{}", text(&r));
}

#[test]
fn another_endpoints_identity_and_dtls_for_an_open_endpoint_are_forbidden() {
    let mut e = engine();
    let r = ask(&mut e, 1, Some(&psk("id-b")), bs("a"));
    assert_eq!(r.code, Code::FORBIDDEN);
    assert!(
        text(&r).contains("\"id-b\" does not belong to endpoint \"a\""),
        "{}",
        text(&r)
    );
    let r = ask(&mut e, 2, Some(&psk("id-a")), bs("open"));
    assert_eq!(r.code, Code::FORBIDDEN, "{}", text(&r));
    let cert = PeerIdentity::X509 {
        common_name: "a".into(),
        der: vec![0x30],
    };
    let r = ask(&mut e, 3, Some(&cert), bs("a"));
    assert_eq!(r.code, Code::FORBIDDEN);
    assert!(
        text(&r).contains("must authenticate with its PSK"),
        "{}",
        text(&r)
    );
    assert_eq!(e.session_count(), 0);
    // An unknown endpoint stays 4.00, as without DTLS.
    let r = ask(&mut e, 4, Some(&psk("id-a")), bs("nobody"));
    assert_eq!(r.code, Code::BAD_REQUEST);
}

#[test]
fn server_initiated_sessions_follow_the_same_rule() {
    let mut e = engine();
    let now = Instant::from_millis(1_000);
    let err = e.start_session(now, "a", 1).unwrap_err();
    assert!(matches!(err, StartSessionError::Forbidden(_)), "{err:?}");
    let err = e
        .start_session_secured(now, "a", 1, Some(&psk("id-b")))
        .unwrap_err();
    assert!(
        err.to_string().contains("not allowed to bootstrap"),
        "{err}"
    );
    assert_eq!(e.session_count(), 0);
    e.start_session_secured(now, "a", 1, Some(&psk("id-a")))
        .unwrap();
    assert!(e.expects_security(&1));
    e.start_session(now, "open", 2).unwrap();
    assert!(!e.expects_security(&2));
    // Once the session ended (here: its timeout), the peer is plain again.
    let later = now + BootstrapServerConfig::default().session_timeout;
    e.handle_timeout(later);
    assert_eq!(e.session_count(), 0);
    assert!(!e.expects_security(&1));
    assert_eq!(e.identities_at(&1).count(), 0);
}
