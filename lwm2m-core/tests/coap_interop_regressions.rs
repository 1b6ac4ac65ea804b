//! Regressions found by the interop tests (interop-tests/) against real
//! third-party CoAP stacks, reproduced here byte for byte without them.

use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{
    Code, Endpoint, EndpointConfig, Event, Message, MessageType, MessageWriter, Request,
};
use lwm2m_core::rng::SplitMix64;
use lwm2m_core::time::Instant;

type Ep = Endpoint<u8, SplitMix64>;
const SERVER: u8 = 7;

fn raw(
    mtype: MessageType,
    code: Code,
    mid: u16,
    token: &[u8],
    observe: Option<u32>,
    payload: &[u8],
) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut w = MessageWriter::udp(&mut buf, mtype, code, mid, token).unwrap();
    if let Some(seq) = observe {
        w.uint_option(number::OBSERVE, seq).unwrap();
    }
    w.finish(payload);
    buf
}

/// Everything the endpoint wants to send, as (type, code, message id).
fn sent(ep: &mut Ep) -> Vec<(MessageType, Code, u16)> {
    let mut v = Vec::new();
    while let Some(t) = ep.poll_transmit() {
        assert_eq!(t.peer, SERVER);
        let m = Message::parse(&t.bytes).unwrap();
        v.push((m.mtype, m.code, m.message_id));
    }
    v
}

/// Sends an observe GET and answers it with a piggybacked 2.05 carrying
/// Observe; returns the request id and its token.
fn observing(ep: &mut Ep, now: Instant) -> (lwm2m_core::coap::RequestId, Vec<u8>) {
    let req = Request::new(Code::GET)
        .with_path("/counter")
        .with_uint_option(number::OBSERVE, 0);
    let id = ep.send_request(now, SERVER, req).unwrap();
    let t = ep.poll_transmit().unwrap();
    let m = Message::parse(&t.bytes).unwrap();
    let token = m.token.to_vec();
    let ack = raw(
        MessageType::Ack,
        Code::CONTENT,
        m.message_id,
        &token,
        Some(0),
        b"0",
    );
    ep.handle_datagram(now, SERVER, &ack);
    assert!(matches!(ep.poll_event(), Some(Event::Response { id: r, .. }) if r == id));
    (id, token)
}

/// aiocoap kept notifying after a passive cancellation: our endpoint
/// answered a CON notification whose token it no longer knew with an empty
/// ACK and then an RST for the same message id. The ACK told aiocoap the
/// notification was wanted, and it ignored the RST that followed. RFC 7252
/// §5.3.2 and RFC 7641 §3.6: such a CON is rejected with RST, not
/// acknowledged.
#[test]
fn con_notification_for_forgotten_observe_is_rejected_with_rst_only() {
    let now = Instant::ZERO;
    let mut ep: Ep = Endpoint::new(EndpointConfig::default(), SplitMix64::new(1));
    let (id, token) = observing(&mut ep, now);
    ep.cancel_request(now, id);

    let notification = raw(
        MessageType::Con,
        Code::CONTENT,
        0x4242,
        &token,
        Some(1),
        b"1",
    );
    ep.handle_datagram(now, SERVER, &notification);
    assert_eq!(sent(&mut ep), [(MessageType::Rst, Code::EMPTY, 0x4242)]);
    assert!(ep.poll_event().is_none());

    // Its retransmission (our RST was lost) is rejected again, not acknowledged.
    ep.handle_datagram(now, SERVER, &notification);
    assert_eq!(sent(&mut ep), [(MessageType::Rst, Code::EMPTY, 0x4242)]);
    assert!(ep.poll_event().is_none());

    // A NON notification with an unknown token is rejected too.
    let non = raw(
        MessageType::Non,
        Code::CONTENT,
        0x4243,
        &token,
        Some(2),
        b"2",
    );
    ep.handle_datagram(now, SERVER, &non);
    assert_eq!(sent(&mut ep), [(MessageType::Rst, Code::EMPTY, 0x4243)]);
}

/// A CON separate response or notification whose ACK was lost comes again
/// with the same message id: it must be acknowledged again (RFC 7252 §4.5),
/// else the server retransmits until it gives up and, for a notification,
/// drops the observation. The duplicate was silently ignored before.
#[test]
fn duplicate_con_notification_is_acknowledged_again_and_delivered_once() {
    let now = Instant::ZERO;
    let mut ep: Ep = Endpoint::new(EndpointConfig::default(), SplitMix64::new(2));
    let (id, token) = observing(&mut ep, now);

    let notification = raw(
        MessageType::Con,
        Code::CONTENT,
        0x1000,
        &token,
        Some(1),
        b"1",
    );
    ep.handle_datagram(now, SERVER, &notification);
    assert_eq!(sent(&mut ep), [(MessageType::Ack, Code::EMPTY, 0x1000)]);
    assert!(matches!(ep.poll_event(), Some(Event::Notification { id: r, .. }) if r == id));

    ep.handle_datagram(now, SERVER, &notification);
    assert_eq!(sent(&mut ep), [(MessageType::Ack, Code::EMPTY, 0x1000)]);
    assert!(
        ep.poll_event().is_none(),
        "a duplicate is delivered once only"
    );
}

#[test]
fn duplicate_con_separate_response_is_acknowledged_again_and_delivered_once() {
    let now = Instant::ZERO;
    let mut ep: Ep = Endpoint::new(EndpointConfig::default(), SplitMix64::new(3));
    let id = ep
        .send_request(now, SERVER, Request::new(Code::GET).with_path("/async"))
        .unwrap();
    let t = ep.poll_transmit().unwrap();
    let m = Message::parse(&t.bytes).unwrap();
    let token = m.token.to_vec();
    // Empty ACK: the response will be separate.
    ep.handle_datagram(
        now,
        SERVER,
        &raw(MessageType::Ack, Code::EMPTY, m.message_id, &[], None, b""),
    );
    assert!(sent(&mut ep).is_empty());

    let response = raw(
        MessageType::Con,
        Code::CONTENT,
        0x2000,
        &token,
        None,
        b"late",
    );
    ep.handle_datagram(now, SERVER, &response);
    assert_eq!(sent(&mut ep), [(MessageType::Ack, Code::EMPTY, 0x2000)]);
    match ep.poll_event() {
        Some(Event::Response { id: r, response }) => {
            assert_eq!(r, id);
            assert_eq!(response.payload, b"late");
        }
        other => panic!("{other:?}"),
    }

    ep.handle_datagram(now, SERVER, &response);
    assert_eq!(sent(&mut ep), [(MessageType::Ack, Code::EMPTY, 0x2000)]);
    assert!(ep.poll_event().is_none());
}
