//! CoAP codec: exact bytes, malformed inputs, and coap-lite as an oracle.

use lwm2m_core::coap::option::number;
use lwm2m_core::coap::{
    tcp, BadOption, BadOptionReason, Code, Message, MessageType, MessageWriter, ParseError,
    MAX_OPTIONS,
};
use proptest::prelude::*;

/// A Register request as a 1.1 client sends it, written out by hand:
/// CON POST /rd?ep=node1&lt=86400&lwm2m=1.1&b=U, Content-Format 40.
fn register_bytes() -> Vec<u8> {
    let mut v = vec![0x44, 0x02, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF];
    v.extend_from_slice(&[0xB2, b'r', b'd']); // Uri-Path (11) "rd"
    v.extend_from_slice(&[0x11, 40]); // Content-Format (12) 40
    v.push(0x38); // Uri-Query (15), delta 3, len 8
    v.extend_from_slice(b"ep=node1");
    v.push(0x08);
    v.extend_from_slice(b"lt=86400");
    v.push(0x09);
    v.extend_from_slice(b"lwm2m=1.1");
    v.push(0x03);
    v.extend_from_slice(b"b=U");
    v.push(0xFF);
    v.extend_from_slice(b"</1/0>,</3/0>");
    v
}

#[test]
fn writes_register_request_byte_for_byte() {
    let mut buf = Vec::new();
    let mut w = MessageWriter::udp(
        &mut buf,
        MessageType::Con,
        Code::POST,
        0x1234,
        &[0xDE, 0xAD, 0xBE, 0xEF],
    )
    .unwrap();
    w.option(number::URI_PATH, b"rd").unwrap();
    w.uint_option(number::CONTENT_FORMAT, 40).unwrap();
    for q in ["ep=node1", "lt=86400", "lwm2m=1.1", "b=U"] {
        w.option(number::URI_QUERY, q.as_bytes()).unwrap();
    }
    let n = w.finish(b"</1/0>,</3/0>");
    assert_eq!(buf, register_bytes());
    assert_eq!(n, buf.len());
}

#[test]
fn parses_register_request() {
    let bytes = register_bytes();
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(
        (m.mtype, m.code, m.message_id),
        (MessageType::Con, Code::POST, 0x1234)
    );
    assert_eq!(m.token, [0xDE, 0xAD, 0xBE, 0xEF]);
    assert_eq!(m.uri_path().collect::<Vec<_>>(), [b"rd"]);
    let q: Vec<&[u8]> = m.uri_query().collect();
    assert_eq!(q, [&b"ep=node1"[..], b"lt=86400", b"lwm2m=1.1", b"b=U"]);
    assert_eq!(m.content_format(), Some(40));
    assert_eq!(m.payload, b"</1/0>,</3/0>");
    assert_eq!(m.option_count(), 6);
    assert_eq!(m.check_options(), Ok(()));
}

#[test]
fn extended_option_deltas_and_lengths() {
    // Option 258 (No-Response) after Uri-Path: delta 247 uses one extended
    // byte (247 - 13 = 234); a 300-byte Uri-Query uses the 2-byte length form.
    let long = vec![b'q'; 300];
    let mut buf = Vec::new();
    let mut w = MessageWriter::udp(&mut buf, MessageType::Non, Code::GET, 1, &[]).unwrap();
    w.option(number::URI_PATH, b"a").unwrap();
    w.option(number::URI_QUERY, &long).unwrap();
    w.uint_option(number::NO_RESPONSE, 2).unwrap();
    w.finish(&[]);
    assert_eq!(&buf[4..6], &[0xB1, b'a']);
    // Uri-Query: delta 4, length nibble 14, extended length 300 - 269 = 31
    assert_eq!(&buf[6..9], &[0x4E, 0x00, 31]);
    // No-Response: delta 258 - 15 = 243 -> nibble 13, byte 230; length 1
    assert_eq!(&buf[9 + 300..], &[0xD1, 230, 2]);
    let m = Message::parse(&buf).unwrap();
    assert_eq!(m.uri_query().next().unwrap().len(), 300);
    assert_eq!(m.uint_option(number::NO_RESPONSE), Some(2));
}

#[test]
fn writer_enforces_option_order_and_token_length() {
    let mut buf = Vec::new();
    assert!(MessageWriter::udp(&mut buf, MessageType::Con, Code::GET, 1, &[0; 9]).is_err());
    let mut w = MessageWriter::udp(&mut buf, MessageType::Con, Code::GET, 1, &[]).unwrap();
    w.option(number::URI_QUERY, b"x").unwrap();
    assert_eq!(
        w.option(number::URI_PATH, b"y").unwrap_err(),
        lwm2m_core::coap::WriteError::OptionOutOfOrder {
            previous: 15,
            number: 11
        }
    );
    // Same number again is a repetition, allowed.
    w.option(number::URI_QUERY, b"z").unwrap();
}

/// Malformed datagrams: each must give its own typed error, never a panic.
#[test]
fn malformed_datagrams_are_typed_errors() {
    use ParseError::*;
    let mut too_many = vec![0x40, 0x01, 0, 1];
    too_many.extend(std::iter::repeat_n(0x00u8, MAX_OPTIONS + 1)); // Option 0 repeated, zero length
    let cases: Vec<(&str, Vec<u8>, ParseError)> = vec![
        ("empty", vec![], TooShort),
        ("three bytes", vec![0x40, 0x01, 0x00], TooShort),
        ("version 0", vec![0x00, 0x01, 0, 1], UnsupportedVersion(0)),
        ("version 2", vec![0x80, 0x01, 0, 1], UnsupportedVersion(2)),
        ("version 3", vec![0xC0, 0x01, 0, 1], UnsupportedVersion(3)),
        (
            "token length 9",
            vec![0x49, 0x01, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            InvalidTokenLength(9),
        ),
        (
            "token length 15",
            vec![0x4F, 0x01, 0, 1],
            InvalidTokenLength(15),
        ),
        (
            "token truncated",
            vec![0x44, 0x01, 0, 1, 0xAA, 0xBB],
            TruncatedToken,
        ),
        (
            "delta nibble 15",
            vec![0x40, 0x01, 0, 1, 0xF1, 0x00],
            ReservedOptionNibble { offset: 4 },
        ),
        (
            "length nibble 15",
            vec![0x40, 0x01, 0, 1, 0x1F],
            ReservedOptionNibble { offset: 4 },
        ),
        (
            "1-byte delta missing",
            vec![0x40, 0x01, 0, 1, 0xD0],
            TruncatedOption { offset: 4 },
        ),
        (
            "2-byte delta half",
            vec![0x40, 0x01, 0, 1, 0xE0, 0x01],
            TruncatedOption { offset: 4 },
        ),
        (
            "1-byte length missing",
            vec![0x40, 0x01, 0, 1, 0xBD],
            TruncatedOption { offset: 4 },
        ),
        (
            "2-byte length half",
            vec![0x40, 0x01, 0, 1, 0xBE, 0x00],
            TruncatedOption { offset: 4 },
        ),
        (
            "value past end",
            vec![0x40, 0x01, 0, 1, 0xB5, b'a', b'b'],
            TruncatedOption { offset: 4 },
        ),
        (
            "huge 2-byte length",
            vec![0x40, 0x01, 0, 1, 0xBE, 0xFF, 0xFF, b'a'],
            TruncatedOption { offset: 4 },
        ),
        (
            "number > 65535 at once",
            vec![0x40, 0x01, 0, 1, 0xE0, 0xFF, 0xFF],
            OptionNumberOverflow { offset: 4 },
        ),
        (
            "number > 65535 accumulated",
            vec![0x40, 0x01, 0, 1, 0xE0, 0x80, 0x00, 0xE0, 0x80, 0x00],
            OptionNumberOverflow { offset: 7 },
        ),
        (
            "marker without payload",
            vec![0x40, 0x01, 0, 1, 0xFF],
            EmptyPayload,
        ),
        (
            "marker without payload after option",
            vec![0x40, 0x01, 0, 1, 0xB1, b'x', 0xFF],
            EmptyPayload,
        ),
        (
            "empty message with token",
            vec![0x41, 0x00, 0, 1, 0xAA],
            NotEmpty,
        ),
        (
            "empty message with payload",
            vec![0x40, 0x00, 0, 1, 0xFF, 1],
            NotEmpty,
        ),
        ("reset with a code", vec![0x70, 0x45, 0, 1], NotEmpty),
        (
            "ack carrying a request",
            vec![0x60, 0x01, 0, 1],
            RequestInAck,
        ),
        ("code class 1", vec![0x40, 0x20, 0, 1], ReservedCodeClass(1)),
        ("code class 6", vec![0x40, 0xC0, 0, 1], ReservedCodeClass(6)),
        (
            "signalling over udp",
            vec![0x40, 0xE1, 0, 1],
            ReservedCodeClass(7),
        ),
        ("too many options", too_many, TooManyOptions),
    ];
    assert!(cases.len() >= 20);
    for (name, bytes, expected) in cases {
        assert_eq!(Message::parse(&bytes), Err(expected), "case {name}");
    }
}

#[test]
fn option_checks_for_4_02() {
    let build = |opts: &[(u16, &[u8])]| {
        let mut buf = Vec::new();
        let mut w = MessageWriter::udp(&mut buf, MessageType::Con, Code::GET, 1, &[]).unwrap();
        for (n, v) in opts {
            w.option(*n, v).unwrap();
        }
        w.finish(&[]);
        buf
    };
    let check = |bytes: &[u8]| Message::parse(bytes).unwrap().check_options();
    // Unknown critical (odd) option 9.
    assert_eq!(
        check(&build(&[(9, b"x")])),
        Err(BadOption {
            number: 9,
            reason: BadOptionReason::UnknownCritical
        })
    );
    // Unknown elective (even) option 2048 is ignored.
    assert_eq!(check(&build(&[(2048, b"x")])), Ok(()));
    // Uri-Host must be 1..255 bytes.
    assert_eq!(
        check(&build(&[(number::URI_HOST, b"")])),
        Err(BadOption {
            number: 3,
            reason: BadOptionReason::InvalidLength
        })
    );
    // Accept (critical, not repeatable) twice.
    assert_eq!(
        check(&build(&[(number::ACCEPT, &[0]), (number::ACCEPT, &[40])])),
        Err(BadOption {
            number: 17,
            reason: BadOptionReason::Repeated
        })
    );
    // Block2 of 4 bytes is too long.
    assert_eq!(
        check(&build(&[(number::BLOCK2, &[1, 2, 3, 4])])),
        Err(BadOption {
            number: 23,
            reason: BadOptionReason::InvalidLength
        })
    );
    // Content-Format (elective) of 3 bytes is ignored by the check.
    assert_eq!(
        check(&build(&[(number::CONTENT_FORMAT, &[1, 2, 3])])),
        Ok(())
    );
    // Repeated Uri-Path is fine.
    assert_eq!(
        check(&build(&[
            (number::URI_PATH, b"3"),
            (number::URI_PATH, b"0")
        ])),
        Ok(())
    );
}

#[test]
fn empty_messages_and_ping() {
    let ping = [0x40, 0x00, 0xAB, 0xCD];
    let m = Message::parse(&ping).unwrap();
    assert!(m.code.is_empty());
    assert_eq!((m.mtype, m.message_id), (MessageType::Con, 0xABCD));
    let rst = [0x70, 0x00, 0xAB, 0xCD];
    assert_eq!(Message::parse(&rst).unwrap().mtype, MessageType::Rst);
}

#[test]
fn tcp_frames_with_token_and_options() {
    let mut buf = Vec::new();
    let mut w = MessageWriter::tcp(&mut buf, Code::POST, &[9, 8, 7, 6]).unwrap();
    w.option(number::URI_PATH, b"rd").unwrap();
    w.finish(&[0x55; 20]);
    // body = option (3) + marker (1) + payload (20) = 24 -> Len 13, ext 11
    assert_eq!(&buf[..3], &[0xD4, 11, 0x02]);
    assert_eq!(tcp::frame_len(&buf, 1152), Ok(Some(buf.len())));
    assert_eq!(tcp::frame_len(&buf[..1], 1152), Ok(None));
    let m = tcp::parse(&buf).unwrap();
    assert_eq!(m.token, [9, 8, 7, 6]);
    assert_eq!(m.payload, [0x55; 20]);
    assert!(tcp::parse(&buf[..buf.len() - 1]).is_err());
    assert!(matches!(
        tcp::frame_len(&buf, 10),
        Err(ParseError::FrameTooLarge { .. })
    ));
}

#[derive(Debug, Clone)]
struct Msg {
    mtype: MessageType,
    code: u8,
    mid: u16,
    token: Vec<u8>,
    options: Vec<(u16, Vec<u8>)>,
    payload: Vec<u8>,
}

fn arb_msg() -> impl Strategy<Value = Msg> {
    let request = (
        prop_oneof![Just(MessageType::Con), Just(MessageType::Non)],
        1u8..=7,
    );
    let response = (
        prop_oneof![
            Just(MessageType::Con),
            Just(MessageType::Non),
            Just(MessageType::Ack)
        ],
        prop_oneof![(2u8..=2), (4u8..=5)]
            .prop_flat_map(|class| (0u8..32).prop_map(move |d| (class << 5) | d)),
    );
    (
        prop_oneof![request, response],
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..=8),
        proptest::collection::vec(
            (0u16..2000, proptest::collection::vec(any::<u8>(), 0..300)),
            0..10,
        ),
        proptest::collection::vec(any::<u8>(), 0..600),
    )
        .prop_map(|((mtype, code), mid, token, mut options, payload)| {
            options.sort_by_key(|o| o.0);
            Msg {
                mtype,
                code,
                mid,
                token,
                options,
                payload,
            }
        })
}

fn coap_lite_type(t: MessageType) -> coap_lite::MessageType {
    match t {
        MessageType::Con => coap_lite::MessageType::Confirmable,
        MessageType::Non => coap_lite::MessageType::NonConfirmable,
        MessageType::Ack => coap_lite::MessageType::Acknowledgement,
        MessageType::Rst => coap_lite::MessageType::Reset,
    }
}

proptest! {
    /// Our writer's bytes parse back to the same message, with our parser and coap-lite's.
    #[test]
    fn writer_output_parses_in_both_codecs(msg in arb_msg()) {
        let mut buf = Vec::new();
        let mut w = MessageWriter::udp(&mut buf, msg.mtype, Code(msg.code), msg.mid, &msg.token).unwrap();
        for (n, v) in &msg.options {
            w.option(*n, v).unwrap();
        }
        w.finish(&msg.payload);

        let m = Message::parse(&buf).unwrap();
        prop_assert_eq!(m.mtype, msg.mtype);
        prop_assert_eq!(m.code, Code(msg.code));
        prop_assert_eq!(m.message_id, msg.mid);
        prop_assert_eq!(m.token, &msg.token[..]);
        let opts: Vec<(u16, Vec<u8>)> = m.options().map(|o| (o.number, o.value.to_vec())).collect();
        prop_assert_eq!(&opts, &msg.options);
        prop_assert_eq!(m.payload, &msg.payload[..]);

        let lite = coap_lite::Packet::from_bytes(&buf).unwrap();
        prop_assert_eq!(lite.header.message_id, msg.mid);
        prop_assert_eq!(lite.get_token(), &msg.token[..]);
        prop_assert_eq!(u8::from(lite.header.code), msg.code);
        prop_assert_eq!(&lite.payload, &msg.payload);
        let mut lite_opts = Vec::new();
        for (n, values) in lite.options() {
            for v in values {
                lite_opts.push((*n, v.clone()));
            }
        }
        prop_assert_eq!(&lite_opts, &msg.options);
    }

    /// coap-lite's bytes parse with ours to the same fields.
    #[test]
    fn coap_lite_output_parses_with_ours(msg in arb_msg()) {
        let mut p = coap_lite::Packet::new();
        p.header.set_version(1);
        p.header.set_type(coap_lite_type(msg.mtype));
        p.header.code = coap_lite::MessageClass::from(msg.code);
        p.header.message_id = msg.mid;
        p.set_token(msg.token.clone());
        for (n, v) in &msg.options {
            p.add_option(coap_lite::CoapOption::from(*n), v.clone());
        }
        p.payload = msg.payload.clone();
        let bytes = p.to_bytes_unlimited().unwrap();
        let m = Message::parse(&bytes).unwrap();
        prop_assert_eq!(m.message_id, msg.mid);
        prop_assert_eq!(m.code, Code(msg.code));
        prop_assert_eq!(m.token, &msg.token[..]);
        let opts: Vec<(u16, Vec<u8>)> = m.options().map(|o| (o.number, o.value.to_vec())).collect();
        prop_assert_eq!(&opts, &msg.options);
        prop_assert_eq!(m.payload, &msg.payload[..]);
    }

    /// Arbitrary bytes never panic, and whatever parses re-encodes to the same bytes.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(m) = Message::parse(&bytes) {
            let mut buf = Vec::new();
            let mut w = MessageWriter::udp(&mut buf, m.mtype, m.code, m.message_id, m.token).unwrap();
            for o in m.options() {
                w.option(o.number, o.value).unwrap();
            }
            w.finish(m.payload);
            // Our writer uses minimal extended forms; a peer may not (a delta of
            // 13 written as 13+0 is shorter than nothing but legal), so compare
            // the parsed fields rather than bytes.
            let again = Message::parse(&buf).unwrap();
            prop_assert_eq!(again.token, m.token);
            prop_assert!(again.options().eq(m.options()));
            prop_assert_eq!(again.payload, m.payload);
        }
        let _ = tcp::frame_len(&bytes, 1152);
        let _ = tcp::parse(&bytes);
    }
}

#[test]
fn tcp_signalling_messages_7_01_to_7_05() {
    use lwm2m_core::coap::tcp::signal_option;
    let sig = |code: Code, opts: &[(u16, &[u8])]| {
        let mut buf = Vec::new();
        let mut w = MessageWriter::tcp(&mut buf, code, &[]).unwrap();
        for (n, v) in opts {
            w.option(*n, v).unwrap();
        }
        w.finish(&[]);
        buf
    };
    let cases: [(Code, Vec<u8>); 5] = [
        (
            Code::CSM,
            sig(
                Code::CSM,
                &[
                    (signal_option::MAX_MESSAGE_SIZE, &[0x04, 0x80]),
                    (signal_option::BLOCK_WISE_TRANSFER, &[]),
                ],
            ),
        ),
        (
            Code::PING,
            sig(Code::PING, &[(signal_option::CUSTODY, &[])]),
        ),
        (Code::PONG, sig(Code::PONG, &[])),
        (
            Code::RELEASE,
            sig(Code::RELEASE, &[(signal_option::HOLD_OFF, &[30])]),
        ),
        (
            Code::ABORT,
            sig(Code::ABORT, &[(signal_option::BAD_CSM_OPTION, &[2])]),
        ),
    ];
    // Len 4: Max-Message-Size (3 bytes) + Block-Wise-Transfer (1 byte).
    assert_eq!(cases[0].1, [0x40, 0xE1, 0x22, 0x04, 0x80, 0x20]);
    assert_eq!(cases[2].1, [0x00, 0xE3]);
    for (code, frame) in cases {
        let m = tcp::parse(&frame).unwrap();
        assert!(m.code.is_signalling());
        assert_eq!(m.code, code);
    }
    let release = tcp::parse(&sig(Code::RELEASE, &[(signal_option::HOLD_OFF, &[30])]))
        .unwrap()
        .uint_option(signal_option::HOLD_OFF);
    assert_eq!(release, Some(30));
}
