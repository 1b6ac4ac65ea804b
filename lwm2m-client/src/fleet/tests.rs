//! A device's datagrams on the wire, fed and checked byte by byte.

use super::*;
use lwm2m_core::format::{decode, ContentFormat};
use lwm2m_core::model::NO_MODELS;

const LOCATION: &[u8] = b"0123456789abcdef0123";

fn fleet(count: u32) -> Fleet {
    let config = FleetConfig {
        endpoint_prefix: "dev-".into(),
        lifetime: 300,
        register_spread: Duration::ZERO,
        ..FleetConfig::default()
    };
    Fleet::new(config, SharedObjects::standard(300), count, Instant::ZERO)
}

fn sent(f: &mut Fleet) -> Vec<Transmit> {
    core::iter::from_fn(|| f.poll_transmit()).collect()
}

/// A piggybacked answer to `request` with `code` and Location-Path segments.
fn answer(request: &[u8], code: Code, location: &[&[u8]]) -> Vec<u8> {
    let m = Message::parse(request).unwrap();
    let mut buf = Vec::new();
    let mut w =
        MessageWriter::udp(&mut buf, MessageType::Ack, code, m.message_id, m.token).unwrap();
    for seg in location {
        w.option(number::LOCATION_PATH, seg).unwrap();
    }
    w.finish(&[]);
    buf
}

/// A CON request from the server.
fn server_request(code: Code, path: &[&[u8]], accept: Option<u16>) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = MessageWriter::udp(&mut buf, MessageType::Con, code, 0x4242, b"tk").unwrap();
    for seg in path {
        w.option(number::URI_PATH, seg).unwrap();
    }
    if let Some(cf) = accept {
        w.uint_option(number::ACCEPT, u32::from(cf)).unwrap();
    }
    w.finish(&[]);
    buf
}

fn strings<'a>(it: impl Iterator<Item = &'a [u8]>) -> Vec<String> {
    it.map(|s| String::from_utf8(s.to_vec()).unwrap()).collect()
}

/// Registers device `i` of `f` with location `/rd/{LOCATION}` at `now`.
fn register(f: &mut Fleet, now: Instant, i: u32) {
    f.handle_timeout(now);
    let reg = sent(f).into_iter().find(|t| t.device == i).unwrap();
    let done = f.handle_datagram(
        now,
        i,
        &answer(&reg.bytes, Code::CREATED, &[b"rd", LOCATION]),
    );
    assert_eq!(done, Some(Completed::Registered));
}

/// Registers device 0 at time zero and lets its first Update go: when and what.
fn update_due(f: &mut Fleet) -> (Instant, Transmit) {
    register(f, Instant::ZERO, 0);
    let due = Instant::from_millis(150_000);
    f.handle_timeout(due);
    (due, sent(f).remove(0))
}

#[test]
fn register_carries_the_endpoint_name_parameters_and_object_links() {
    let mut f = fleet(3);
    assert_eq!(f.poll_timeout(), Some(Instant::ZERO));
    f.handle_timeout(Instant::ZERO);
    let out = sent(&mut f);
    assert_eq!(out.len(), 3);
    let t = &out[1];
    assert_eq!(t.device, 1);
    let m = Message::parse(&t.bytes).unwrap();
    assert_eq!(m.mtype, MessageType::Con);
    assert_eq!(m.code, Code::POST);
    assert_eq!(m.token.len(), 4);
    assert_eq!(strings(m.uri_path()), ["rd"]);
    assert_eq!(m.content_format(), Some(40));
    assert_eq!(
        strings(m.uri_query()),
        ["ep=dev-1", "lt=300", "lwm2m=1.1", "b=U"]
    );
    assert_eq!(m.payload, b"</>;rt=\"oma.lwm2m\";ct=11542,</1/0>,</3/0>");
    assert_eq!(f.stats().registers_sent, 3);
}

#[test]
fn update_goes_at_half_the_lifetime_in_virtual_time_to_the_location() {
    let mut f = fleet(1);
    let t0 = Instant::from_millis(5_000);
    register(&mut f, t0, 0);
    assert_eq!(f.location(0).as_deref(), Some("/rd/0123456789abcdef0123"));
    assert_eq!(f.registered(), 1);
    let due = t0 + Duration::from_secs(150);
    assert_eq!(f.poll_timeout(), Some(due));
    f.handle_timeout(due - Duration::from_millis(1));
    assert!(f.poll_transmit().is_none(), "nothing before lt/2");
    f.handle_timeout(due);
    let up = sent(&mut f);
    assert_eq!(up.len(), 1);
    let m = Message::parse(&up[0].bytes).unwrap();
    assert_eq!((m.mtype, m.code), (MessageType::Con, Code::POST));
    assert_eq!(strings(m.uri_path()), ["rd", "0123456789abcdef0123"]);
    assert_eq!(m.uri_query().count(), 0);
    assert!(m.payload.is_empty());
    let done = f.handle_datagram(due, 0, &answer(&up[0].bytes, Code::CHANGED, &[]));
    assert_eq!(done, Some(Completed::Updated));
    assert_eq!(f.updates_of(0), 1);
    assert_eq!(f.poll_timeout(), Some(due + Duration::from_secs(150)));
}

#[test]
fn update_answered_not_found_registers_again_at_once() {
    let mut f = fleet(1);
    let (due, up) = update_due(&mut f);
    let done = f.handle_datagram(due, 0, &answer(&up.bytes, Code::NOT_FOUND, &[]));
    assert_eq!(done, Some(Completed::UpdateRefused));
    assert_eq!(f.registered(), 0);
    assert_eq!(f.location(0), None);
    let again = sent(&mut f);
    assert_eq!(again.len(), 1);
    let m = Message::parse(&again[0].bytes).unwrap();
    assert_eq!(strings(m.uri_path()), ["rd"]);
    assert_eq!(strings(m.uri_query())[0], "ep=dev-0");
    assert_ne!(m.message_id, Message::parse(&up.bytes).unwrap().message_id);
    assert_eq!(f.stats().update_not_found, 1);
}

#[test]
fn unanswered_register_is_retransmitted_identically_then_retried_later() {
    let mut f = fleet(1);
    f.handle_timeout(Instant::ZERO);
    let first = sent(&mut f).remove(0).bytes;
    let mut at = f.poll_timeout().unwrap();
    // ACK_TIMEOUT 2 s times a factor in [1, 1.5).
    assert!((2_000..3_000).contains(&at.as_millis()), "{at:?}");
    let mut gap = at.as_millis();
    for _ in 0..4 {
        f.handle_timeout(at);
        assert_eq!(sent(&mut f).remove(0).bytes, first);
        let next = f.poll_timeout().unwrap();
        assert_eq!(
            next.as_millis() - at.as_millis(),
            2 * gap,
            "timeout doubles"
        );
        gap *= 2;
        at = next;
    }
    f.handle_timeout(at);
    assert!(f.poll_transmit().is_none(), "gave up after MAX_RETRANSMIT");
    assert_eq!(f.phase(0), Some(Phase::Unregistered));
    assert_eq!(f.stats().register_failures, 1);
    assert_eq!(f.stats().retransmissions, 4);
    let retry = f.poll_timeout().unwrap();
    assert!(retry >= at + Duration::from_secs(30));
    f.handle_timeout(retry);
    let m = sent(&mut f);
    assert_ne!(
        m[0].bytes, first,
        "a new exchange: new message id and token"
    );
}

#[test]
fn read_of_the_device_instance_is_answered_with_the_shared_tlv() {
    let mut f = fleet(1);
    let req = server_request(Code::GET, &[b"3", b"0"], None);
    assert_eq!(
        f.handle_datagram(Instant::ZERO, 0, &req),
        Some(Completed::Answered)
    );
    let out = sent(&mut f);
    let m = Message::parse(&out[0].bytes).unwrap();
    assert_eq!(
        (m.mtype, m.code, m.message_id),
        (MessageType::Ack, Code::CONTENT, 0x4242)
    );
    assert_eq!(m.token, b"tk");
    assert_eq!(m.content_format(), Some(ContentFormat::TLV.0));
    let node = decode(
        ContentFormat::TLV,
        m.payload,
        &Path::Instance(3, 0),
        &NO_MODELS,
    )
    .unwrap();
    let Node::Instance(inst) = node else {
        panic!("{node:?}")
    };
    assert_eq!(inst.id, 0);
    assert!(inst.resources.contains_key(&0) && inst.resources.contains_key(&16));

    // One resource, in the format asked for.
    let req = server_request(
        Code::GET,
        &[b"3", b"0", b"9"],
        Some(ContentFormat::SENML_JSON.0),
    );
    f.handle_datagram(Instant::ZERO, 0, &req);
    let out = sent(&mut f);
    let m = Message::parse(&out[0].bytes).unwrap();
    assert_eq!(m.content_format(), Some(ContentFormat::SENML_JSON.0));
    assert_eq!(m.payload, br#"[{"bn":"/3/0/9","v":100}]"#);
    assert_eq!(f.stats().reads, 2);
}

#[test]
fn discover_lists_the_instance_and_its_resources() {
    let mut f = fleet(1);
    let req = server_request(Code::GET, &[b"3", b"0"], Some(40));
    f.handle_datagram(Instant::ZERO, 0, &req);
    let m_bytes = sent(&mut f).remove(0).bytes;
    let m = Message::parse(&m_bytes).unwrap();
    assert_eq!(m.code, Code::CONTENT);
    assert_eq!(m.content_format(), Some(40));
    assert_eq!(
        m.payload,
        b"</3/0>,</3/0/0>,</3/0/1>,</3/0/2>,</3/0/3>,</3/0/6>,</3/0/9>,</3/0/11>,</3/0/13>,</3/0/16>"
    );
    assert_eq!(f.stats().discovers, 1);
}

#[test]
fn unknown_paths_formats_and_methods_get_error_codes() {
    let mut f = fleet(1);
    let cases: [(Vec<u8>, Code); 4] = [
        (
            server_request(Code::GET, &[b"5", b"0"], None),
            Code::NOT_FOUND,
        ),
        (
            server_request(Code::GET, &[b"3", b"x"], None),
            Code::NOT_FOUND,
        ),
        (
            server_request(Code::GET, &[b"3", b"0"], Some(0)),
            Code::NOT_ACCEPTABLE,
        ),
        (
            server_request(Code::PUT, &[b"3", b"0", b"1"], None),
            Code::METHOD_NOT_ALLOWED,
        ),
    ];
    for (req, want) in cases {
        f.handle_datagram(Instant::ZERO, 0, &req);
        let bytes = sent(&mut f).remove(0).bytes;
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(m.code, want);
        assert_eq!(m.mtype, MessageType::Ack);
    }
    assert_eq!(f.stats().requests_refused, 4);
}

#[test]
fn separate_response_is_acknowledged_and_ends_the_update() {
    let mut f = fleet(1);
    let (due, up) = update_due(&mut f);
    let up = up.bytes;
    let req = Message::parse(&up).unwrap();
    // Empty ACK: no retransmission any more, wait for the response.
    let mut ack = Vec::new();
    MessageWriter::udp(&mut ack, MessageType::Ack, Code::EMPTY, req.message_id, &[])
        .unwrap()
        .finish(&[]);
    assert_eq!(f.handle_datagram(due, 0, &ack), None);
    assert_eq!(f.poll_timeout(), Some(due + Duration::from_secs(93)));
    let mut resp = Vec::new();
    MessageWriter::udp(
        &mut resp,
        MessageType::Con,
        Code::CHANGED,
        0x7777,
        req.token,
    )
    .unwrap()
    .finish(&[]);
    assert_eq!(f.handle_datagram(due, 0, &resp), Some(Completed::Updated));
    let out = sent(&mut f).remove(0).bytes;
    assert_eq!(out, [0x60, 0x00, 0x77, 0x77], "empty ACK of the response");
    // A response with a stale token is rejected with RST and changes nothing.
    let mut stale = Vec::new();
    MessageWriter::udp(&mut stale, MessageType::Con, Code::CHANGED, 0x7778, b"old!")
        .unwrap()
        .finish(&[]);
    assert_eq!(f.handle_datagram(due, 0, &stale), None);
    assert_eq!(sent(&mut f).remove(0).bytes, [0x70, 0x00, 0x77, 0x78]);
    assert_eq!(f.updates_of(0), 1);
}

#[test]
fn locations_of_other_shapes_are_kept_and_used() {
    let mut f = fleet(2);
    f.handle_timeout(Instant::ZERO);
    let regs = sent(&mut f);
    f.handle_datagram(
        Instant::ZERO,
        0,
        &answer(&regs[0].bytes, Code::CREATED, &[b"rd", b"abc"]),
    );
    let long: &[&[u8]] = &[b"reg", b"a-rather-long-registration-name"];
    f.handle_datagram(
        Instant::ZERO,
        1,
        &answer(&regs[1].bytes, Code::CREATED, long),
    );
    assert_eq!(f.location(0).as_deref(), Some("/rd/abc"));
    assert_eq!(
        f.location(1).as_deref(),
        Some("/reg/a-rather-long-registration-name")
    );
    f.deregister_all(Instant::ZERO, Duration::ZERO);
    f.handle_timeout(Instant::ZERO);
    let out = sent(&mut f);
    let paths: Vec<Vec<String>> = out
        .iter()
        .map(|t| {
            let m = Message::parse(&t.bytes).unwrap();
            assert_eq!(m.code, Code::DELETE);
            strings(m.uri_path())
        })
        .collect();
    assert_eq!(paths[0], ["rd", "abc"]);
    assert_eq!(paths[1], ["reg", "a-rather-long-registration-name"]);
    for t in &out {
        f.handle_datagram(
            Instant::ZERO,
            t.device,
            &answer(&t.bytes, Code::DELETED, &[]),
        );
    }
    assert_eq!(f.registered(), 0);
    assert_eq!(f.phase(1), Some(Phase::Done));
    assert_eq!(f.stats().deregistrations, 2);
    assert_eq!(f.poll_timeout(), None);
}

#[test]
fn garbage_and_out_of_range_devices_are_ignored() {
    let mut f = fleet(1);
    assert_eq!(f.handle_datagram(Instant::ZERO, 0, &[0xff, 1]), None);
    assert_eq!(
        f.handle_datagram(Instant::ZERO, 9, &server_request(Code::GET, &[b"3"], None)),
        None
    );
    assert!(f.poll_transmit().is_none());
    assert_eq!(f.stats().ignored, 2);
}

#[test]
fn a_device_updating_when_the_fleet_ends_deregisters_right_after() {
    let mut f = fleet(1);
    let (due, up) = update_due(&mut f);
    f.deregister_all(due, Duration::ZERO);
    assert_eq!(f.phase(0), Some(Phase::Updating));
    f.handle_datagram(due, 0, &answer(&up.bytes, Code::CHANGED, &[]));
    assert_eq!(f.poll_timeout(), Some(due));
    f.handle_timeout(due);
    let del = sent(&mut f).remove(0).bytes;
    let m = Message::parse(&del).unwrap();
    assert_eq!(m.code, Code::DELETE);
    assert_eq!(strings(m.uri_path()), ["rd", "0123456789abcdef0123"]);
}

#[test]
fn created_without_a_location_or_refused_register_is_retried_later() {
    let mut f = fleet(2);
    f.handle_timeout(Instant::ZERO);
    let regs = sent(&mut f);
    let done = f.handle_datagram(
        Instant::ZERO,
        0,
        &answer(&regs[0].bytes, Code::CREATED, &[]),
    );
    assert_eq!(done, Some(Completed::Failed));
    let done = f.handle_datagram(
        Instant::ZERO,
        1,
        &answer(&regs[1].bytes, Code::SERVICE_UNAVAILABLE, &[]),
    );
    assert_eq!(done, Some(Completed::Failed));
    assert_eq!(f.registered(), 0);
    assert_eq!(f.phase(0), Some(Phase::Unregistered));
    assert_eq!(f.stats().register_failures, 2);
    assert!(f.poll_timeout().unwrap() >= Instant::ZERO + Duration::from_secs(30));
}
