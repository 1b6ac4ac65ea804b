//! Who may register which endpoint name (Leshan's SecurityChecker rule):
//! the engine fed datagrams with the DTLS identity the driver would pass,
//! its answers read back off the wire (2.01 / 2.04 / 2.02 vs 4.03).

use std::sync::{Arc, Mutex};

use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{Code, Endpoint, EndpointConfig, Event, Request, Response};
use lwm2m_core::rng::SplitMix64;
use lwm2m_core::time::Instant;
use lwm2m_server::{
    Credentials, Engine, MemorySecurityStore, MemoryStore, PeerIdentity, RegistrationSecurity,
    SecurityChecker, SecurityInfo, SecurityStore, ServerConfig, SharedSecurityStore,
};

const SERVER: u32 = 0;

struct Bench {
    engine: Engine<u32, SplitMix64>,
    client: Endpoint<u32, SplitMix64>,
    store: SharedSecurityStore,
    now: Instant,
}

fn psk(id: &str) -> PeerIdentity {
    PeerIdentity::Psk(id.into())
}

fn rpk(key: &[u8]) -> PeerIdentity {
    PeerIdentity::Rpk {
        public_key: key.to_vec(),
    }
}

fn x509(cn: &str) -> PeerIdentity {
    PeerIdentity::X509 {
        common_name: cn.into(),
        der: vec![0x30, 0x00],
    }
}

impl Bench {
    fn new() -> Bench {
        let mut store = MemorySecurityStore::new();
        store
            .put(SecurityInfo::psk("psk-ep", "psk-id", b"key"))
            .unwrap();
        store
            .put(SecurityInfo {
                endpoint: "cert-ep".into(),
                credentials: Credentials::X509,
            })
            .unwrap();
        store
            .put(SecurityInfo {
                endpoint: "rpk-ep".into(),
                credentials: Credentials::Rpk {
                    public_key: vec![0x30, 0x59, 1, 2, 3],
                },
            })
            .unwrap();
        let store: SharedSecurityStore = Arc::new(Mutex::new(Box::new(store)));
        let mut engine = Engine::new(
            ServerConfig::default(),
            SplitMix64::new(1),
            SplitMix64::new(2),
            Box::new(MemoryStore::new()),
            Box::new(lwm2m_objects::Registry::standard()),
        )
        .unwrap();
        engine.set_authorizer(Some(Box::new(SecurityChecker::new(store.clone()))));
        Bench {
            engine,
            client: Endpoint::new(EndpointConfig::default(), SplitMix64::new(3)),
            store,
            now: Instant::from_millis(1_000_000),
        }
    }

    /// Sends `req` from address 1 with `identity`; returns the server's answer.
    fn ask(&mut self, identity: Option<&PeerIdentity>, req: Request) -> Response {
        let id = self.client.send_request(self.now, SERVER, req).unwrap();
        while let Some(t) = self.client.poll_transmit() {
            self.engine
                .handle_datagram_secured(self.now, 1, identity, &t.bytes);
        }
        while let Some(t) = self.engine.poll_transmit() {
            assert_eq!(t.peer, 1);
            self.client.handle_datagram(self.now, SERVER, &t.bytes);
        }
        while let Some(ev) = self.client.poll_event() {
            if let Event::Response { id: got, response } = ev {
                if got == id {
                    return response;
                }
            }
        }
        panic!("no answer");
    }

    fn register(&mut self, identity: Option<&PeerIdentity>, ep: &str) -> Response {
        let mut r = Request::new(Code::POST).with_path("/rd");
        r = r.with_query(&format!("ep={ep}")).with_query("lt=300");
        r.options.set_uint(number::CONTENT_FORMAT, 40);
        r.payload = b"</1/0>,</3/0>".to_vec();
        self.ask(identity, r)
    }
}

fn location(resp: &Response) -> String {
    resp.options
        .get_all(number::LOCATION_PATH)
        .map(|s| format!("/{}", std::str::from_utf8(s).unwrap()))
        .collect()
}

fn diagnostic(resp: &Response) -> String {
    String::from_utf8_lossy(&resp.payload).into_owned()
}

#[test]
fn register_needs_exactly_the_stored_credentials() {
    let mut b = Bench::new();
    // PSK endpoint: its identity registers; the registration records it.
    let r = b.register(Some(&psk("psk-id")), "psk-ep");
    assert_eq!(r.code, Code::CREATED, "{}", diagnostic(&r));
    let reg = b.engine.registration("psk-ep").unwrap();
    assert_eq!(
        reg.security,
        Some(RegistrationSecurity::Psk {
            identity: "psk-id".into()
        })
    );
    assert!(b.engine.expects_security(&1));

    // Plain CoAP for an endpoint with credentials: 4.03.
    let r = b.register(None, "psk-ep");
    assert_eq!(r.code, Code::FORBIDDEN);
    assert!(
        diagnostic(&r).contains("connect over DTLS"),
        "{}",
        diagnostic(&r)
    );
    // A PSK identity registering another endpoint name: 4.03.
    let r = b.register(Some(&psk("psk-id")), "other-ep");
    assert_eq!(r.code, Code::FORBIDDEN);
    // Another identity for the PSK endpoint: 4.03.
    let r = b.register(Some(&psk("intruder")), "psk-ep");
    assert_eq!(r.code, Code::FORBIDDEN);
    assert!(
        diagnostic(&r).contains("does not belong"),
        "{}",
        diagnostic(&r)
    );
    // A certificate for a PSK endpoint: 4.03.
    let r = b.register(Some(&x509("psk-ep")), "psk-ep");
    assert_eq!(r.code, Code::FORBIDDEN);
    // The refused attempts changed nothing.
    assert_eq!(b.engine.registration_count(), 1);

    // X.509 endpoint: the certificate's CN must be the endpoint name.
    let r = b.register(Some(&x509("cert-ep")), "cert-ep");
    assert_eq!(r.code, Code::CREATED, "{}", diagnostic(&r));
    let r = b.register(Some(&x509("someone-else")), "cert-ep");
    assert_eq!(r.code, Code::FORBIDDEN);
    assert!(diagnostic(&r).contains("Common Name"), "{}", diagnostic(&r));
    let r = b.register(Some(&psk("psk-id")), "cert-ep");
    assert_eq!(r.code, Code::FORBIDDEN);

    // RPK endpoint: exactly the stored key; the registration keeps it (hex).
    let r = b.register(Some(&rpk(&[0x30, 0x59, 1, 2, 4])), "rpk-ep");
    assert_eq!(r.code, Code::FORBIDDEN);
    assert!(
        diagnostic(&r).contains("raw public key"),
        "{}",
        diagnostic(&r)
    );
    let r = b.register(Some(&psk("psk-id")), "rpk-ep");
    assert_eq!(r.code, Code::FORBIDDEN);
    let r = b.register(Some(&rpk(&[0x30, 0x59, 1, 2, 3])), "rpk-ep");
    assert_eq!(r.code, Code::CREATED, "{}", diagnostic(&r));
    let sec = b.engine.registration("rpk-ep").unwrap().security.clone();
    assert_eq!(
        sec,
        Some(RegistrationSecurity::Rpk {
            public_key_hex: "3059010203".into()
        })
    );
    let stored = sec.unwrap().to_stored();
    assert_eq!(
        RegistrationSecurity::from_stored(&stored).map(|s| s.to_stored()),
        Some(stored)
    );

    // No credentials: plain CoAP registers, a DTLS identity does not.
    let r = b.register(None, "open-ep");
    assert_eq!(r.code, Code::CREATED);
    assert_eq!(b.engine.registration("open-ep").unwrap().security, None);
    let r = b.register(Some(&x509("open-ep")), "open-ep");
    assert_eq!(r.code, Code::FORBIDDEN);
}

#[test]
fn update_deregister_and_send_must_come_from_the_registering_identity() {
    let mut b = Bench::new();
    let r = b.register(Some(&psk("psk-id")), "psk-ep");
    let loc = location(&r);
    let update = || Request::new(Code::POST).with_path(&loc);
    // Plain CoAP with the registration id: 4.03 (the id alone is not enough).
    let r = b.ask(None, update());
    assert_eq!(r.code, Code::FORBIDDEN);
    assert!(diagnostic(&r).contains("plain CoAP"), "{}", diagnostic(&r));
    let r = b.ask(Some(&psk("other")), update());
    assert_eq!(r.code, Code::FORBIDDEN);
    let r = b.ask(Some(&psk("psk-id")), update());
    assert_eq!(r.code, Code::CHANGED);

    // Send from another identity at the same address: 4.03.
    let mut send = Request::new(Code::POST).with_path("/dp");
    send.options.set_uint(number::CONTENT_FORMAT, 110);
    send.payload = br#"[{"n":"/3/0/0","vs":"x"}]"#.to_vec();
    let r = b.ask(None, send.clone());
    assert_eq!(r.code, Code::FORBIDDEN);
    let r = b.ask(Some(&psk("psk-id")), send);
    assert_eq!(r.code, Code::CHANGED, "{}", diagnostic(&r));

    // De-register likewise.
    let delete = || Request::new(Code::DELETE).with_path(&loc);
    let r = b.ask(None, delete());
    assert_eq!(r.code, Code::FORBIDDEN);
    assert_eq!(b.engine.registration_count(), 1);

    // Credentials removed through the admin API apply at once: the old
    // identity may no longer act for the endpoint.
    b.store.lock().unwrap().remove("psk-ep").unwrap();
    let r = b.ask(Some(&psk("psk-id")), update());
    assert_eq!(r.code, Code::FORBIDDEN);
    // Put back, the registering identity de-registers.
    b.store
        .lock()
        .unwrap()
        .put(SecurityInfo::psk("psk-ep", "psk-id", b"key"))
        .unwrap();
    let r = b.ask(Some(&psk("psk-id")), delete());
    assert_eq!(r.code, Code::DELETED);
    assert_eq!(b.engine.registration_count(), 0);
    assert!(!b.engine.expects_security(&1));
}

#[test]
fn without_an_authorizer_everyone_registers_but_identities_still_bind() {
    let mut b = Bench::new();
    b.engine.set_authorizer(None);
    let r = b.register(None, "psk-ep");
    assert_eq!(r.code, Code::CREATED);
    let r = b.register(Some(&psk("any")), "dtls-ep");
    assert_eq!(r.code, Code::CREATED);
    let loc = location(&r);
    let r = b.ask(None, Request::new(Code::POST).with_path(&loc));
    assert_eq!(r.code, Code::FORBIDDEN, "a DTLS registration stays bound");
    let r = b.ask(Some(&psk("any")), Request::new(Code::POST).with_path(&loc));
    assert_eq!(r.code, Code::CHANGED);
}
