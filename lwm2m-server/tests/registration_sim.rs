//! The Registration interface of the server engine in the simulated network.

mod common;

use common::*;
use lwm2m_core::coap::Code;
use lwm2m_core::model::{Path, Version};
use lwm2m_core::sim::{seeds, LinkConfig, SeedGuard};
use lwm2m_core::time::{Duration, Instant};
use lwm2m_server::{ServerConfig, ServerEvent};

#[test]
fn register_update_deregister() {
    let mut net = network(1, LinkConfig::default(), ServerConfig::default(), 1, None);
    let resp = register(&mut net, 1, "ep=dev1&lt=300&lwm2m=1.1&b=U&sms=123456");
    assert_eq!(resp.code, Code::CREATED);
    let loc = location(&resp);
    let id = loc.strip_prefix("/rd/").expect("location under /rd");
    assert_eq!(id.len(), 20, "80 random bits as hex");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));

    let s = server(&mut net);
    let ServerEvent::Registered {
        registration: reg,
        replaced: None,
    } = &s.events[0]
    else {
        panic!("{:?}", s.events)
    };
    assert_eq!(reg.id, id);
    assert_eq!(reg.endpoint, "dev1");
    assert_eq!(reg.address, 1);
    assert_eq!(reg.lifetime, 300);
    assert_eq!(reg.lwm2m_version, Version::new(1, 1));
    assert_eq!(reg.binding, "U");
    assert_eq!(reg.sms.as_deref(), Some("123456"));
    assert!(!reg.queue_mode);
    assert_eq!(
        reg.links.objects,
        [(Path::Instance(1, 0), None), (Path::Instance(3, 0), None)]
    );
    let registered_at = reg.registered_at;
    assert_eq!(reg.last_update, registered_at);

    run_for(&mut net, Duration::from_secs(10));
    let resp = exchange(
        &mut net,
        1,
        request(
            Code::POST,
            &loc,
            "lt=120",
            Some(40),
            b"</1/0>,</3/0>,</5/0>",
        ),
    )
    .unwrap();
    assert_eq!(resp.code, Code::CHANGED);
    let s = server(&mut net);
    let ServerEvent::Updated { registration: reg } = &s.events[1] else {
        panic!("{:?}", s.events)
    };
    assert_eq!(reg.lifetime, 120);
    assert_eq!(reg.links.objects.len(), 3);
    assert_eq!(reg.registered_at, registered_at);
    assert!(reg.last_update > registered_at + Duration::from_secs(9));

    let resp = exchange(&mut net, 1, request(Code::DELETE, &loc, "", None, b"")).unwrap();
    assert_eq!(resp.code, Code::DELETED);
    let s = server(&mut net);
    assert!(
        matches!(&s.events[2], ServerEvent::Deregistered { registration } if registration.id == id)
    );
    assert_eq!(s.engine.registration_count(), 0);
    // The id is gone: Update and De-register are 4.04 now.
    let resp = exchange(&mut net, 1, request(Code::POST, &loc, "", None, b"")).unwrap();
    assert_eq!(resp.code, Code::NOT_FOUND);
}

#[test]
fn defaults_when_parameters_are_absent() {
    let mut net = network(2, LinkConfig::default(), ServerConfig::default(), 1, None);
    assert_eq!(register(&mut net, 1, "ep=d").code, Code::CREATED);
    let reg = server(&mut net).engine.registration("d").unwrap().clone();
    assert_eq!(reg.lifetime, 86_400);
    assert_eq!(reg.lwm2m_version, Version::new(1, 0));
    assert_eq!(reg.binding, "U");
    assert!(!reg.queue_mode);
}

#[test]
fn update_from_a_new_address_moves_the_registration() {
    let mut net = network(3, LinkConfig::default(), ServerConfig::default(), 2, None);
    let loc = location(&register(&mut net, 1, "ep=mover&lt=60"));
    let resp = exchange(&mut net, 2, request(Code::POST, &loc, "", None, b"")).unwrap();
    assert_eq!(resp.code, Code::CHANGED);
    assert_eq!(
        server(&mut net)
            .engine
            .registration("mover")
            .unwrap()
            .address,
        2
    );
}

#[test]
fn registration_expires_after_lifetime_plus_grace() {
    let config = ServerConfig::default();
    let grace = config.lifetime_grace;
    let mut net = network(4, LinkConfig::default(), config, 1, None);
    register(&mut net, 1, "ep=short&lt=60");
    let registered = server(&mut net)
        .engine
        .registration("short")
        .unwrap()
        .last_update;
    let expiry = registered + Duration::from_secs(60) + grace;

    net.run_until(expiry - Duration::from_millis(1), |_| false);
    assert_eq!(server(&mut net).engine.registration_count(), 1);
    assert!(!server(&mut net)
        .events
        .iter()
        .any(|e| matches!(e, ServerEvent::Expired { .. })));

    net.run_until(expiry + Duration::from_secs(1), |n| {
        server(n)
            .events
            .iter()
            .any(|e| matches!(e, ServerEvent::Expired { .. }))
    });
    let s = server(&mut net);
    assert!(
        matches!(s.events.last(), Some(ServerEvent::Expired { registration }) if registration.endpoint == "short")
    );
    assert_eq!(s.engine.registration_count(), 0);
    assert!(net.now() >= expiry);
}

#[test]
fn update_postpones_expiry() {
    let mut net = network(5, LinkConfig::default(), ServerConfig::default(), 1, None);
    let loc = location(&register(&mut net, 1, "ep=alive&lt=60"));
    for _ in 0..5 {
        run_for(&mut net, Duration::from_secs(50));
        let resp = exchange(&mut net, 1, request(Code::POST, &loc, "", None, b"")).unwrap();
        assert_eq!(resp.code, Code::CHANGED);
    }
    assert!(net.now() > Instant::from_millis(250_000));
    assert_eq!(server(&mut net).engine.registration_count(), 1);
}

#[test]
fn duplicate_endpoint_name_replaces_the_old_registration() {
    let mut net = network(6, LinkConfig::default(), ServerConfig::default(), 2, None);
    let old = location(&register(&mut net, 1, "ep=twin&lt=300"));
    let new = location(&register(&mut net, 2, "ep=twin&lt=600"));
    assert_ne!(old, new);
    let s = server(&mut net);
    assert_eq!(s.engine.registration_count(), 1);
    match &s.events[1] {
        ServerEvent::Registered {
            registration,
            replaced: Some(replaced),
        } => {
            assert_eq!(format!("/rd/{}", replaced.id), old);
            assert_eq!(format!("/rd/{}", registration.id), new);
            assert_eq!(registration.address, 2);
        }
        e => panic!("{e:?}"),
    }
    // The old location is gone, the new one works.
    let resp = exchange(&mut net, 1, request(Code::POST, &old, "", None, b"")).unwrap();
    assert_eq!(resp.code, Code::NOT_FOUND);
    let resp = exchange(&mut net, 2, request(Code::POST, &new, "", None, b"")).unwrap();
    assert_eq!(resp.code, Code::CHANGED);
}

#[test]
fn total_registration_limit_answers_5_03_and_replacement_still_works() {
    let config = ServerConfig {
        max_registrations: 2,
        ..ServerConfig::default()
    };
    let mut net = network(7, LinkConfig::default(), config, 3, None);
    assert_eq!(register(&mut net, 1, "ep=a").code, Code::CREATED);
    assert_eq!(register(&mut net, 2, "ep=b").code, Code::CREATED);
    assert_eq!(
        register(&mut net, 3, "ep=c").code,
        Code::SERVICE_UNAVAILABLE
    );
    // Re-registering a known name does not grow the table.
    assert_eq!(register(&mut net, 3, "ep=a").code, Code::CREATED);
    assert_eq!(server(&mut net).engine.registration_count(), 2);
}

#[test]
fn registration_completes_at_20_percent_loss() {
    for seed in seeds(20, 12) {
        let _guard = SeedGuard(seed);
        let mut net = network(
            seed,
            LinkConfig::lossy(20),
            ServerConfig::default(),
            1,
            None,
        );
        // A client retries a failed Register, as a real one does (TS Core
        // §6.2.1 registration retries); three exchanges of five
        // transmissions each make a failure astronomically unlikely.
        let mut loc = None;
        for _ in 0..3 {
            let req = request(Code::POST, "/rd", "ep=lossy&lt=300", Some(40), b"</3/0>");
            if let Some(r) = exchange(&mut net, 1, req) {
                assert_eq!(r.code, Code::CREATED);
                loc = Some(location(&r));
                break;
            }
        }
        let loc = loc.expect("registered within three attempts");
        let s = server(&mut net);
        let reg = s.engine.registration("lossy").expect("server has it");
        assert_eq!(format!("/rd/{}", reg.id), loc);
        assert_eq!(s.engine.registration_count(), 1);
        // And an Update over the same lossy link.
        let mut updated = false;
        for _ in 0..3 {
            if let Some(r) = exchange(&mut net, 1, request(Code::POST, &loc, "", None, b"")) {
                assert_eq!(r.code, Code::CHANGED);
                updated = true;
                break;
            }
        }
        assert!(updated);
    }
}

/// A Register/Update/De-register that must be refused.
struct Bad {
    name: &'static str,
    method: Code,
    path: &'static str,
    query: &'static str,
    cf: Option<u16>,
    payload: &'static [u8],
    want: Code,
}

const OBJ: &[u8] = b"</1/0>,</3/0>";

fn bad(
    name: &'static str,
    method: Code,
    path: &'static str,
    query: &'static str,
    cf: Option<u16>,
    payload: &'static [u8],
    want: Code,
) -> Bad {
    Bad {
        name,
        method,
        path,
        query,
        cf,
        payload,
        want,
    }
}

#[test]
fn bad_registrations_are_refused_and_the_server_keeps_serving() {
    use Code as C;
    let config = ServerConfig {
        max_registrations_per_address: 2,
        ..ServerConfig::default()
    };
    let mut net = network(8, LinkConfig::default(), config, 3, None);
    // One good registration so Update cases have a real id to target.
    let loc = location(&register(&mut net, 2, "ep=existing&lt=300"));
    let loc: &'static str = Box::leak(loc.into_boxed_str());
    let long_ep: &'static str = Box::leak(format!("ep={}", "x".repeat(201)).into_boxed_str());
    let huge_ep: &'static str = Box::leak(format!("ep={}", "x".repeat(253)).into_boxed_str());
    let p = C::POST;
    let cases = [
        bad(
            "missing ep",
            p,
            "/rd",
            "lt=60",
            Some(40),
            OBJ,
            C::BAD_REQUEST,
        ),
        bad(
            "empty ep",
            p,
            "/rd",
            "ep=&lt=60",
            Some(40),
            OBJ,
            C::BAD_REQUEST,
        ),
        bad(
            "ep without value",
            p,
            "/rd",
            "ep",
            Some(40),
            OBJ,
            C::BAD_REQUEST,
        ),
        bad(
            "ep too long",
            p,
            "/rd",
            long_ep,
            Some(40),
            OBJ,
            C::BAD_REQUEST,
        ),
        // Beyond the 255-byte Uri-Query limit the CoAP layer refuses the option.
        bad(
            "ep beyond the Uri-Query limit",
            p,
            "/rd",
            huge_ep,
            Some(40),
            OBJ,
            C::BAD_OPTION,
        ),
        bad(
            "ep twice",
            p,
            "/rd",
            "ep=a&ep=b",
            Some(40),
            OBJ,
            C::BAD_REQUEST,
        ),
        bad("lt=0", p, "/rd", "ep=a&lt=0", Some(40), OBJ, C::BAD_REQUEST),
        bad(
            "lt=-1",
            p,
            "/rd",
            "ep=a&lt=-1",
            Some(40),
            OBJ,
            C::BAD_REQUEST,
        ),
        bad(
            "lt=abc",
            p,
            "/rd",
            "ep=a&lt=abc",
            Some(40),
            OBJ,
            C::BAD_REQUEST,
        ),
        bad(
            "lt beyond 32 bits",
            p,
            "/rd",
            "ep=a&lt=99999999999",
            Some(40),
            OBJ,
            C::BAD_REQUEST,
        ),
        bad(
            "lwm2m=9.9",
            p,
            "/rd",
            "ep=a&lwm2m=9.9",
            Some(40),
            OBJ,
            C::PRECONDITION_FAILED,
        ),
        bad(
            "lwm2m=2.0",
            p,
            "/rd",
            "ep=a&lwm2m=2.0",
            Some(40),
            OBJ,
            C::PRECONDITION_FAILED,
        ),
        bad(
            "lwm2m=abc",
            p,
            "/rd",
            "ep=a&lwm2m=abc",
            Some(40),
            OBJ,
            C::BAD_REQUEST,
        ),
        bad(
            "binding X",
            p,
            "/rd",
            "ep=a&b=X",
            Some(40),
            OBJ,
            C::BAD_REQUEST,
        ),
        bad(
            "binding UU",
            p,
            "/rd",
            "ep=a&b=UU",
            Some(40),
            OBJ,
            C::BAD_REQUEST,
        ),
        bad(
            "binding empty",
            p,
            "/rd",
            "ep=a&b=",
            Some(40),
            OBJ,
            C::BAD_REQUEST,
        ),
        bad(
            "Q with value",
            p,
            "/rd",
            "ep=a&Q=1",
            Some(40),
            OBJ,
            C::BAD_REQUEST,
        ),
        bad(
            "object id too big",
            p,
            "/rd",
            "ep=a",
            Some(40),
            b"</37777777777>",
            C::BAD_REQUEST,
        ),
        bad(
            "not a link list",
            p,
            "/rd",
            "ep=a",
            Some(40),
            b"hello",
            C::BAD_REQUEST,
        ),
        bad(
            "resource-level link",
            p,
            "/rd",
            "ep=a",
            Some(40),
            b"</3/0/1>",
            C::BAD_REQUEST,
        ),
        bad(
            "same object twice",
            p,
            "/rd",
            "ep=a",
            Some(40),
            b"</3/0>,</3/0>",
            C::BAD_REQUEST,
        ),
        bad(
            "empty payload",
            p,
            "/rd",
            "ep=a",
            Some(40),
            b"",
            C::BAD_REQUEST,
        ),
        bad(
            "text/plain payload",
            p,
            "/rd",
            "ep=a",
            Some(0),
            OBJ,
            C::UNSUPPORTED_CONTENT_FORMAT,
        ),
        bad(
            "SenML payload",
            p,
            "/rd",
            "ep=a",
            Some(110),
            OBJ,
            C::UNSUPPORTED_CONTENT_FORMAT,
        ),
        bad(
            "update of unknown id",
            p,
            "/rd/0000",
            "lt=60",
            None,
            b"",
            C::NOT_FOUND,
        ),
        bad(
            "delete unknown id",
            C::DELETE,
            "/rd/0000",
            "",
            None,
            b"",
            C::NOT_FOUND,
        ),
        bad(
            "update with lt=0",
            p,
            loc,
            "lt=0",
            None,
            b"",
            C::BAD_REQUEST,
        ),
        bad(
            "update with bad links",
            p,
            loc,
            "",
            Some(40),
            b"</x>",
            C::BAD_REQUEST,
        ),
        bad(
            "update with wrong format",
            p,
            loc,
            "",
            Some(0),
            OBJ,
            C::UNSUPPORTED_CONTENT_FORMAT,
        ),
        bad(
            "GET on a registration",
            C::GET,
            loc,
            "",
            None,
            b"",
            C::METHOD_NOT_ALLOWED,
        ),
        bad(
            "DELETE /rd",
            C::DELETE,
            "/rd",
            "",
            None,
            b"",
            C::METHOD_NOT_ALLOWED,
        ),
        bad(
            "GET /rd",
            C::GET,
            "/rd",
            "",
            None,
            b"",
            C::METHOD_NOT_ALLOWED,
        ),
        bad(
            "PUT /rd",
            C::PUT,
            "/rd",
            "ep=a",
            Some(40),
            OBJ,
            C::METHOD_NOT_ALLOWED,
        ),
        bad("POST /rd/x/y", p, "/rd/x/y", "", None, b"", C::NOT_FOUND),
        bad(
            "POST /bs (no bootstrap here)",
            p,
            "/bs",
            "ep=a",
            None,
            b"",
            C::NOT_FOUND,
        ),
        bad("GET /3/0", C::GET, "/3/0", "", None, b"", C::NOT_FOUND),
        bad("POST /", p, "/", "ep=a", Some(40), OBJ, C::NOT_FOUND),
    ];
    assert!(cases.len() >= 20);
    for case in &cases {
        let req = request(case.method, case.path, case.query, case.cf, case.payload);
        let resp = exchange(&mut net, 1, req).unwrap_or_else(|| panic!("{}: no answer", case.name));
        assert_eq!(resp.code, case.want, "case {:?}", case.name);
        // Our own refusals say why; 4.02 comes from the CoAP layer.
        if resp.code.is_error() && resp.code != Code::BAD_OPTION {
            assert!(
                !resp.payload.is_empty(),
                "{}: diagnostic payload",
                case.name
            );
        }
    }
    // Nothing was registered or changed by the bad requests.
    let s = server(&mut net);
    assert_eq!(s.engine.registration_count(), 1);
    assert_eq!(s.engine.registration("existing").unwrap().lifetime, 300);
    assert_eq!(s.events.len(), 1);

    // Too many registrations from one address: the limit is 2.
    assert_eq!(register(&mut net, 1, "ep=one").code, Code::CREATED);
    assert_eq!(register(&mut net, 1, "ep=two").code, Code::CREATED);
    assert_eq!(
        register(&mut net, 1, "ep=three").code,
        Code::SERVICE_UNAVAILABLE,
        "third registration from one address"
    );
    // Re-registering one of its names from the same address is a replacement, not a third.
    assert_eq!(register(&mut net, 1, "ep=two").code, Code::CREATED);

    // And a good registration from elsewhere succeeds.
    let resp = register(&mut net, 3, "ep=good&lt=60&lwm2m=1.2&b=U&Q");
    assert_eq!(resp.code, Code::CREATED);
    let reg = server(&mut net)
        .engine
        .registration("good")
        .unwrap()
        .clone();
    assert!(reg.queue_mode);
    assert_eq!(reg.lwm2m_version, Version::new(1, 2));
}

#[test]
fn queue_mode_in_the_1_0_binding() {
    let mut net = network(9, LinkConfig::default(), ServerConfig::default(), 1, None);
    register(&mut net, 1, "ep=old&b=UQ");
    let reg = server(&mut net).engine.registration("old").unwrap().clone();
    assert!(reg.queue_mode);
    assert_eq!(reg.binding, "UQ");
}

#[test]
fn restored_registrations_keep_their_ids_and_expire_on_time() {
    use lwm2m_core::format::link::RegistrationLinks;
    use lwm2m_core::rng::SplitMix64;
    use lwm2m_server::{Engine, MemoryStore, Registration, RegistrationStore};

    let stored = |id: &str, ep: &str, last_update_s: u64| Registration {
        id: id.into(),
        endpoint: ep.into(),
        address: 1,
        lifetime: 100,
        lwm2m_version: Version::new(1, 1),
        binding: "U".into(),
        sms: None,
        queue_mode: false,
        links: RegistrationLinks::decode(b"</3/0>").unwrap(),
        registered_at: Instant::ZERO,
        last_update: Instant::from_millis(last_update_s * 1000),
        security: None,
    };
    let mut store = MemoryStore::new();
    store.put(&stored("aaaa", "early", 0)).unwrap();
    store.put(&stored("bbbb", "late", 50)).unwrap();
    // Two rows for one endpoint (not something the engine writes): the newer wins.
    store.put(&stored("cccc", "late", 10)).unwrap();
    let engine = Engine::new(
        ServerConfig::default(),
        SplitMix64::new(1),
        SplitMix64::new(2),
        Box::new(store),
        standard_models(),
    )
    .unwrap();
    assert_eq!(engine.registration_count(), 2);
    assert_eq!(engine.registration("late").unwrap().id, "bbbb");

    let mut net = lwm2m_core::sim::Network::new(50, LinkConfig::default());
    net.add(SimPeer::Server(Box::new(ServerNode {
        engine,
        events: Vec::new(),
    })));
    net.add(client_node(51, None));
    // The old id still works for Update, at 60 s ("early" would expire at 115 s).
    run_for(&mut net, Duration::from_secs(60));
    let resp = exchange(&mut net, 1, request(Code::POST, "/rd/aaaa", "", None, b"")).unwrap();
    assert_eq!(resp.code, Code::CHANGED);
    // "late" expires at 50 + 100 + 15 = 165 s, from its stored last update;
    // "early" now at about 175 s.
    net.run_until(Instant::from_millis(164_900), |_| false);
    assert_eq!(server(&mut net).engine.registration_count(), 2);
    net.run_until(Instant::from_millis(170_000), |_| false);
    let s = server(&mut net);
    let expired: Vec<&str> = s
        .events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Expired { registration } => Some(registration.endpoint.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(expired, ["late"]);
    assert!(s.engine.registration("early").is_some());
}
