//! SenML CBOR (112): worked examples from the LwM2M TS and RFC 8428 written
//! out byte by byte, and known-bad inputs as named regressions.

mod support;

use lwm2m_core::format::{senml_cbor, FormatError};
use lwm2m_core::model::{
    Instance, Node, ObjLnk, Path, Resource, TimestampedValue, Value, NO_MODELS,
};
use support::{annotated_hex, cbor_models as models, device_instance, hex, ALL_TYPES};

/// LwM2M 1.1 TS Core §7.4.5: Read /3/0 on the example client's Device object,
/// `[{bn: "/3/0/", n: "0", vs: "Open Mobile Alliance"}, {n: "1", ...}, ...]`.
fn ts_device_read() -> Vec<u8> {
    annotated_hex(
        "
        90                                              # array(16)
        a3 21 65 2f332f302f                             # {bn: \"/3/0/\",
           00 61 30                                     #  n: \"0\",
           03 74 4f70656e204d6f62696c6520416c6c69616e6365   # vs: \"Open Mobile Alliance\"}
        a2 00 61 31 03 76 4c69676874776569676874204d324d20436c69656e74  # {n: \"1\", vs: \"Lightweight M2M Client\"}
        a2 00 61 32 03 69 333435303030313233            # {n: \"2\", vs: \"345000123\"}
        a2 00 61 33 03 63 312e30                        # {n: \"3\", vs: \"1.0\"}
        a2 00 63 362f30 02 01                           # {n: \"6/0\", v: 1}
        a2 00 63 362f31 02 05                           # {n: \"6/1\", v: 5}
        a2 00 63 372f30 02 19 0ed8                      # {n: \"7/0\", v: 3800}
        a2 00 63 372f31 02 19 1388                      # {n: \"7/1\", v: 5000}
        a2 00 63 382f30 02 18 7d                        # {n: \"8/0\", v: 125}
        a2 00 63 382f31 02 19 0384                      # {n: \"8/1\", v: 900}
        a2 00 61 39 02 18 64                            # {n: \"9\", v: 100}
        a2 00 62 3130 02 0f                             # {n: \"10\", v: 15}
        a2 00 64 31312f30 02 00                         # {n: \"11/0\", v: 0}
        a2 00 62 3133 02 1a 5182428f                    # {n: \"13\", v: 1367491215}
        a2 00 62 3134 03 66 2b30323a3030                # {n: \"14\", vs: \"+02:00\"}
        a2 00 62 3136 03 61 55                          # {n: \"16\", vs: \"U\"}
    ",
    )
}

#[test]
fn ts_device_example_decodes_with_model() {
    let node = senml_cbor::decode(&ts_device_read(), &Path::Instance(3, 0), &models()).unwrap();
    assert_eq!(node, Node::Instance(device_instance()));
}

#[test]
fn ts_device_example_encodes_byte_for_byte() {
    let mut out = Vec::new();
    senml_cbor::encode(
        &Node::Instance(device_instance()),
        &Path::Instance(3, 0),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, ts_device_read());
}

#[test]
fn ts_device_example_without_model_keeps_what_the_payload_says() {
    let node = senml_cbor::decode(&ts_device_read(), &Path::Instance(3, 0), &NO_MODELS).unwrap();
    let Node::Instance(inst) = node else {
        panic!("instance expected")
    };
    // Without a model the time resource is just a number, and structure comes from the names.
    assert_eq!(
        inst.resources[&13],
        Resource::single(13, Value::Integer(1_367_491_215))
    );
    assert_eq!(inst.resources[&6], device_instance().resources[&6]);
    assert_eq!(inst.resources.len(), 13);
}

#[test]
fn ts_device_example_as_values_and_as_object() {
    let values = senml_cbor::decode_values(&ts_device_read(), &models()).unwrap();
    assert_eq!(values.len(), 16);
    assert_eq!(
        values[4],
        TimestampedValue {
            path: Path::ResourceInstance(3, 0, 6, 0),
            value: Value::Integer(1),
            time: None
        }
    );
    // The same payload read at /3 gives the object with that one instance.
    let Node::Object(obj) =
        senml_cbor::decode(&ts_device_read(), &Path::Object(3), &models()).unwrap()
    else {
        panic!("object expected")
    };
    assert_eq!(obj.instances[&0], device_instance());
}

#[test]
fn single_resource_and_resource_instance_shapes() {
    // Read /3/0/0: bn is the resource path, no n.
    let node = Node::Resource(Resource::single(
        0,
        Value::String("Open Mobile Alliance".into()),
    ));
    let mut out = Vec::new();
    senml_cbor::encode(&node, &Path::Resource(3, 0, 0), &mut out).unwrap();
    let expected = hex("81 a2 21 66 2f332f302f30 03 74 4f70656e204d6f62696c6520416c6c69616e6365");
    assert_eq!(out, expected);
    assert_eq!(
        senml_cbor::decode(&expected, &Path::Resource(3, 0, 0), &models()),
        Ok(node)
    );

    // Read /3/0/6: bn "/3/0/6/", n "0", "1".
    let node = Node::Resource(Resource::multiple(
        6,
        [(0, Value::Integer(1)), (1, Value::Integer(5))],
    ));
    let mut out = Vec::new();
    senml_cbor::encode(&node, &Path::Resource(3, 0, 6), &mut out).unwrap();
    let expected = hex("82 a3 21 67 2f332f302f362f 00 61 30 02 01  a2 00 61 31 02 05");
    assert_eq!(out, expected);
    assert_eq!(
        senml_cbor::decode(&expected, &Path::Resource(3, 0, 6), &NO_MODELS),
        Ok(node)
    );

    // Read /3/0/6/1.
    let node = Node::ResourceInstance {
        id: 1,
        value: Value::Integer(5),
    };
    let mut out = Vec::new();
    senml_cbor::encode(&node, &Path::ResourceInstance(3, 0, 6, 1), &mut out).unwrap();
    let expected = hex("81 a2 21 68 2f332f302f362f31 02 05");
    assert_eq!(out, expected);
    assert_eq!(
        senml_cbor::decode(&expected, &Path::ResourceInstance(3, 0, 6, 1), &models()),
        Ok(node)
    );
}

#[test]
fn every_value_field() {
    let o = ALL_TYPES;
    let values = vec![
        tv(o, 0, Value::String("x".into())),
        tv(o, 1, Value::Integer(-3)),
        tv(o, 2, Value::UnsignedInteger(u64::MAX)),
        tv(o, 3, Value::Float(1.5)),
        tv(o, 4, Value::Boolean(true)),
        tv(o, 5, Value::Opaque(vec![0xde, 0xad])),
        tv(o, 6, Value::Time(1_700_000_000)),
        tv(
            o,
            7,
            Value::ObjLnk(ObjLnk {
                object: 3,
                instance: 0,
            }),
        ),
        tv(o, 8, Value::CoreLnk("</3/0>".into())),
    ];
    let mut out = Vec::new();
    senml_cbor::encode_values(&values, &mut out).unwrap();
    // [{bn: "/10000/0/", n: "0", vs: "x"}, {n: "1", v: -3}, {n: "2", v: 2^64-1},
    //  {n: "3", v: 1.5 (half)}, {n: "4", vb: true}, {n: "5", vd: h'dead'},
    //  {n: "6", v: 1700000000}, {n: "7", "vlo": "3:0"}, {n: "8", vs: "</3/0>"}]
    let expected = hex("
        89
        a3 21 69 2f31303030302f302f 00 61 30 03 61 78
        a2 00 61 31 02 22
        a2 00 61 32 02 1b ffffffffffffffff
        a2 00 61 33 02 f9 3e00
        a2 00 61 34 04 f5
        a2 00 61 35 08 42 dead
        a2 00 61 36 02 1a 6553f100
        a2 00 61 37 63 766c6f 63 333a30
        a2 00 61 38 03 66 3c2f332f303e
    ");
    assert_eq!(out, expected);
    assert_eq!(senml_cbor::decode_values(&expected, &models()), Ok(values));
}

fn tv(o: u16, r: u16, value: Value) -> TimestampedValue {
    TimestampedValue {
        path: Path::Resource(o, 0, r),
        value,
        time: None,
    }
}

/// RFC 8428 §6: the CBOR form of the §5.1.2 "multiple data points" example.
/// Its names are URNs, not LwM2M paths, so LwM2M rejects it, but only after
/// reading the whole first record (bn, bt, bu, bver, n, u, v).
#[test]
fn rfc8428_example_is_read_but_its_names_are_not_lwm2m_paths() {
    let mut payload = hex("87 a7 21 78 1b");
    payload.extend_from_slice(b"urn:dev:ow:10e2073a0108006:");
    payload.extend(hex("
        22 fb 41d303a15b001062  23 61 41  20 05  00 67 766f6c74616765  01 61 56  02 fb 405e066666666666
        a3 00 67 63757272656e74 06 24 02 fb 3ff3333333333333
        a3 00 67 63757272656e74 06 23 02 fb 3ff4cccccccccccd
        a3 00 67 63757272656e74 06 22 02 fb 3ff6666666666666
        a3 00 67 63757272656e74 06 21 02 f9 3e00
        a3 00 67 63757272656e74 06 20 02 fb 3ff999999999999a
        a3 00 67 63757272656e74 06 00 02 fb 3ffb333333333333
    "));
    assert_eq!(
        senml_cbor::decode_values(&payload, &NO_MODELS),
        Err(FormatError::InvalidPath)
    );
}

/// The same RFC 8428 §6 bytes with LwM2M names (bn "/3303/0/", n "5700" and
/// "5701"): base time, relative times, units, bver, half floats all resolve.
#[test]
fn rfc8428_example_with_lwm2m_names_resolves_base_time() {
    let payload = hex("
        87
        a7 21 68 2f333330332f302f  22 fb 41d303a15b001062  23 61 41  20 05
           00 64 35373030  01 61 56  02 fb 405e066666666666
        a3 00 64 35373031 06 24 02 fb 3ff3333333333333
        a3 00 64 35373031 06 23 02 fb 3ff4cccccccccccd
        a3 00 64 35373031 06 22 02 fb 3ff6666666666666
        a3 00 64 35373031 06 21 02 f9 3e00
        a3 00 64 35373031 06 20 02 fb 3ff999999999999a
        a3 00 64 35373031 06 00 02 fb 3ffb333333333333
    ");
    let values = senml_cbor::decode_values(&payload, &NO_MODELS).unwrap();
    let bt = 1_276_020_076.001_f64;
    let expected: Vec<TimestampedValue> = [
        (5700, 0.0, 120.1),
        (5701, -5.0, 1.2),
        (5701, -4.0, 1.3),
        (5701, -3.0, 1.4),
        (5701, -2.0, 1.5),
        (5701, -1.0, 1.6),
        (5701, 0.0, 1.7),
    ]
    .into_iter()
    .map(|(r, t, v)| TimestampedValue {
        path: Path::Resource(3303, 0, r),
        value: Value::Float(v),
        time: Some(bt + t),
    })
    .collect();
    assert_eq!(values, expected);
}

/// Shaped like the TS timestamped example: base name /72/, a base time and
/// relative times on records that repeat one path.
#[test]
fn relative_times_against_base_time() {
    // [{bn: "/72/", bt: 25462634, n: "1/2", v: 22.4, t: -5}, {n: "1/2", v: 22.9, t: -30}, {n: "1/2", v: 24.1, t: -50}]
    let payload = hex("
        83
        a5 21 64 2f37322f 22 1a 0184876a 00 63 312f32 02 fb 4036666666666666 06 24
        a3 00 63 312f32 02 fb 4036e66666666666 06 38 1d
        a3 00 63 312f32 02 fb 403819999999999a 06 38 31
    ");
    let values = senml_cbor::decode_values(&payload, &NO_MODELS).unwrap();
    let times: Vec<Option<f64>> = values.iter().map(|v| v.time).collect();
    assert_eq!(
        times,
        [Some(25_462_629.0), Some(25_462_604.0), Some(25_462_584.0)]
    );
    assert!(values.iter().all(|v| v.path == Path::Resource(72, 1, 2)));
    assert_eq!(values[0].value, Value::Float(22.4));
    // Re-encoded, each time becomes a bt: decode gives the same values back.
    let mut out = Vec::new();
    senml_cbor::encode_values(&values, &mut out).unwrap();
    assert_eq!(senml_cbor::decode_values(&out, &NO_MODELS), Ok(values));
}

#[test]
fn composite_values_change_bn_per_instance_and_bt_per_time() {
    let values = vec![
        TimestampedValue {
            path: Path::Resource(3, 0, 9),
            value: Value::Integer(95),
            time: Some(1e9),
        },
        TimestampedValue {
            path: Path::Resource(3, 0, 20),
            value: Value::Integer(4),
            time: Some(1e9),
        },
        TimestampedValue {
            path: Path::Resource(1, 0, 1),
            value: Value::Integer(86400),
            time: None,
        },
    ];
    let mut out = Vec::new();
    senml_cbor::encode_values(&values, &mut out).unwrap();
    // [{bn: "/3/0/", bt: 1000000000, n: "9", v: 95}, {n: "20", v: 4},
    //  {bn: "/1/0/", bt: 0, n: "1", v: 86400}]
    let expected = hex("
        83
        a4 21 65 2f332f302f 22 1a 3b9aca00 00 61 39 02 18 5f
        a2 00 62 3230 02 04
        a4 21 65 2f312f302f 22 00 00 61 31 02 1a 00015180
    ");
    assert_eq!(out, expected);
    assert_eq!(senml_cbor::decode_values(&out, &NO_MODELS), Ok(values));
}

#[test]
fn read_composite_paths() {
    let paths = vec![
        Path::Resource(3, 0, 1),
        Path::Object(1),
        Path::Root,
        Path::ResourceInstance(3, 0, 6, 1),
    ];
    let mut out = Vec::new();
    senml_cbor::encode_paths(&paths, &mut out).unwrap();
    let expected = hex("
        84
        a1 00 66 2f332f302f31
        a1 00 62 2f31
        a1 00 61 2f
        a1 00 68 2f332f302f362f31
    ");
    assert_eq!(out, expected);
    assert_eq!(senml_cbor::decode_paths(&expected), Ok(paths));
    // Names may also be split with bn.
    let split = hex("82 a2 21 65 2f332f302f 00 61 31  a1 00 61 32");
    assert_eq!(
        senml_cbor::decode_paths(&split),
        Ok(vec![Path::Resource(3, 0, 1), Path::Resource(3, 0, 2)])
    );
}

#[test]
fn indefinite_lengths_and_decimal_fractions_are_read() {
    // [_ {_ bn: "/3/0/", n: "9", v: 4([-1, 995]) }] at /3/0 with Float? Resource 9 is Integer,
    // so use the all-types Float resource instead: /10000/0/3 = 99.5.
    let payload = hex("9f bf 21 69 2f31303030302f302f 00 61 33 02 c4 82 20 19 03e3 ff ff");
    let node = senml_cbor::decode(&payload, &Path::Instance(ALL_TYPES, 0), &models()).unwrap();
    assert_eq!(
        node,
        Node::Instance(Instance::new(0, [Resource::single(3, Value::Float(99.5))]))
    );
    // Indefinite text (two chunks) for vs.
    let payload = hex("81 a2 21 66 2f332f302f30 03 7f 62 4f70 62 656e ff");
    assert_eq!(
        senml_cbor::decode(&payload, &Path::Resource(3, 0, 0), &models()),
        Ok(Node::Resource(Resource::single(
            0,
            Value::String("Open".into())
        )))
    );
}

#[test]
fn unknown_labels_are_ignored_but_must_understand_ones_fail() {
    // {bn: "/3/0/9", v: 1, 23: [1, {}], "foo": "bar"}
    let ok = hex("81 a4 21 66 2f332f302f39 02 01 17 82 01 a0 63 666f6f 63 626172");
    assert_eq!(
        senml_cbor::decode(&ok, &Path::Resource(3, 0, 9), &models()),
        Ok(Node::Resource(Resource::single(9, Value::Integer(1))))
    );
    // {bn: "/3/0/9", v: 1, "foo_": 1}
    let bad = hex("81 a3 21 66 2f332f302f39 02 01 64 666f6f5f 01");
    assert!(matches!(
        senml_cbor::decode(&bad, &Path::Resource(3, 0, 9), &models()),
        Err(FormatError::Syntax { .. })
    ));
}

// ---------------------------------------------------------------------------
// Known-bad inputs
// ---------------------------------------------------------------------------

#[test]
fn regression_record_without_name_or_base_name() {
    // [{v: 1}]
    let payload = hex("81 a1 02 01");
    assert_eq!(
        senml_cbor::decode_values(&payload, &NO_MODELS),
        Err(FormatError::Syntax {
            offset: 1,
            expected: "a record name (n) or a base name (bn) before it"
        })
    );
}

#[test]
fn regression_huge_declared_array_length() {
    // array(2^64-1) followed by nothing: must fail without allocating.
    let payload = hex("9b ffffffffffffffff");
    assert_eq!(
        senml_cbor::decode_values(&payload, &NO_MODELS),
        Err(FormatError::InvalidLength { offset: 0 })
    );
    // A huge map inside a record, too.
    let payload = hex("81 bb ffffffffffffffff 00");
    assert_eq!(
        senml_cbor::decode_paths(&payload),
        Err(FormatError::InvalidLength { offset: 1 })
    );
    // A huge text length.
    let payload = hex("81 a1 00 7b ffffffffffffffff 41");
    assert!(matches!(
        senml_cbor::decode_paths(&payload),
        Err(FormatError::Truncated { .. })
    ));
}

#[test]
fn regression_item_cap() {
    // One record with 40000 unknown labels {_ 23: 0, 23: 0, ...}: each pair
    // and each skipped value counts, so the cap (65536) stops it.
    let mut payload = hex("81 bf");
    for _ in 0..40_000 {
        payload.extend_from_slice(&[0x17, 0x00]);
    }
    payload.push(0xff);
    assert!(matches!(
        senml_cbor::decode_paths(&payload),
        Err(FormatError::InvalidLength { .. })
    ));
    // 20000 pairs stay under the cap (and the record then lacks a name).
    let mut payload = hex("81 bf");
    for _ in 0..20_000 {
        payload.extend_from_slice(&[0x17, 0x00]);
    }
    payload.push(0xff);
    assert!(matches!(
        senml_cbor::decode_paths(&payload),
        Err(FormatError::Syntax { .. })
    ));
}

#[test]
fn regression_truncated_float() {
    // {bn: "/3/0/9", v: <double cut after 3 bytes>}
    let payload = hex("81 a2 21 66 2f332f302f39 02 fb 4059 00");
    assert_eq!(
        senml_cbor::decode_values(&payload, &NO_MODELS),
        Err(FormatError::Truncated {
            offset: payload.len()
        })
    );
    let payload = hex("81 a2 21 66 2f332f302f39 02 f9 3e");
    assert_eq!(
        senml_cbor::decode_values(&payload, &NO_MODELS),
        Err(FormatError::Truncated {
            offset: payload.len()
        })
    );
}

#[test]
fn regression_path_deeper_than_four_levels() {
    let payload = hex("81 a2 00 6a 2f312f322f332f342f35 02 01"); // n: "/1/2/3/4/5"
    assert_eq!(
        senml_cbor::decode_values(&payload, &NO_MODELS),
        Err(FormatError::TooDeep)
    );
    // Nested containers as a value are not values.
    let payload = hex("81 a2 00 66 2f332f302f39 02 81 81 81 01");
    assert!(matches!(
        senml_cbor::decode_values(&payload, &NO_MODELS),
        Err(FormatError::Syntax { .. })
    ));
}

#[test]
fn regression_reserved_and_out_of_range_ids() {
    for name in [
        "/3/0/65535",
        "/3/0/70000",
        "/-1/0/1",
        "/3/0/+1",
        "3/0/1",
        "/3//1",
    ] {
        let mut payload = hex("81 a2 00");
        payload.push(0x60 + name.len() as u8);
        payload.extend_from_slice(name.as_bytes());
        payload.extend(hex("02 01"));
        assert_eq!(
            senml_cbor::decode_values(&payload, &NO_MODELS),
            Err(FormatError::InvalidPath),
            "{name}"
        );
    }
}

#[test]
fn regression_wrong_value_types_for_the_model() {
    let cases: [(&str, u16); 7] = [
        ("03 61 78", 1),        // vs for an Integer
        ("02 01", 0),           // v for a String
        ("04 f5", 3),           // vb for a Float
        ("08 41 00", 4),        // vd for a Boolean
        ("02 20", 2),           // -1 for an Unsigned Integer
        ("63 766c6f 61 78", 7), // vlo "x" for an Objlnk
        ("02 01", 9),           // a value for an executable resource
    ];
    for (value, r) in cases {
        let mut payload = hex("81 a2 00 6a");
        payload.extend_from_slice(format!("/10000/0/{r}").as_bytes());
        payload.extend(hex(value));
        let err = senml_cbor::decode_values(&payload, &models()).unwrap_err();
        assert!(
            matches!(err, FormatError::InvalidValue { .. }),
            "{value} for /10000/0/{r}: {err:?}"
        );
    }
    // A single value for a multiple resource, and an instance of a single one.
    let payload = hex("81 a2 00 66 2f332f302f36 02 01"); // /3/0/6
    assert!(matches!(
        senml_cbor::decode(&payload, &Path::Instance(3, 0), &models()),
        Err(FormatError::InvalidValue { .. })
    ));
    let payload = hex("81 a2 00 68 2f332f302f392f30 02 01"); // /3/0/9/0
    assert!(matches!(
        senml_cbor::decode(&payload, &Path::Instance(3, 0), &models()),
        Err(FormatError::InvalidValue { .. })
    ));
}

#[test]
fn regression_duplicate_paths() {
    // Twice /3/0/9 in a node.
    let payload = hex("82 a3 21 65 2f332f302f 00 61 39 02 01  a2 00 61 39 02 02");
    assert!(matches!(
        senml_cbor::decode(&payload, &Path::Instance(3, 0), &models()),
        Err(FormatError::Syntax { .. })
    ));
    // Same path and same time in values; the same path at another time is fine.
    assert!(matches!(
        senml_cbor::decode_values(&payload, &models()),
        Err(FormatError::Syntax { .. })
    ));
    let payload = hex("82 a3 21 65 2f332f302f 00 61 39 02 01  a3 00 61 39 02 02 06 01");
    assert_eq!(
        senml_cbor::decode_values(&payload, &models()).map(|v| v.len()),
        Ok(2)
    );
    // Twice the same path in a path list.
    let payload = hex("82 a1 00 62 2f33 a1 00 62 2f33");
    assert!(matches!(
        senml_cbor::decode_paths(&payload),
        Err(FormatError::Syntax { .. })
    ));
    // Twice the same label in one record.
    let payload = hex("81 a3 00 66 2f332f302f39 02 01 02 02");
    assert!(matches!(
        senml_cbor::decode_values(&payload, &NO_MODELS),
        Err(FormatError::Syntax { .. })
    ));
    // Two value fields in one record.
    let payload = hex("81 a3 00 66 2f332f302f39 02 01 04 f5");
    assert!(matches!(
        senml_cbor::decode_values(&payload, &NO_MODELS),
        Err(FormatError::Syntax { .. })
    ));
}

#[test]
fn regression_records_outside_the_request_path() {
    let payload = hex("81 a2 00 66 2f342f302f39 02 01"); // /4/0/9
    assert_eq!(
        senml_cbor::decode(&payload, &Path::Instance(3, 0), &models()),
        Err(FormatError::InvalidPath)
    );
    // A record at the instance level is not a value path.
    let payload = hex("81 a2 00 64 2f332f30 02 01"); // /3/0
    assert!(matches!(
        senml_cbor::decode(&payload, &Path::Object(3), &models()),
        Err(FormatError::Syntax { .. })
    ));
}

#[test]
fn regression_base_value_and_other_tags_are_rejected() {
    // bv: 1
    let payload = hex("81 a3 21 66 2f332f302f39 24 01 02 01");
    assert!(matches!(
        senml_cbor::decode_values(&payload, &NO_MODELS),
        Err(FormatError::InvalidValue { .. })
    ));
    // v: 1(5) (a time tag where a plain number belongs)
    let payload = hex("81 a2 21 66 2f332f302f39 02 c1 05");
    assert!(matches!(
        senml_cbor::decode_values(&payload, &NO_MODELS),
        Err(FormatError::Syntax { .. })
    ));
    // trailing bytes after the array
    let payload = hex("80 00");
    assert!(matches!(
        senml_cbor::decode_values(&payload, &NO_MODELS),
        Err(FormatError::Syntax { .. })
    ));
    // invalid UTF-8 in a name
    let payload = hex("81 a2 00 62 2fff 02 01");
    assert_eq!(
        senml_cbor::decode_values(&payload, &NO_MODELS),
        Err(FormatError::InvalidUtf8)
    );
    // a value in a path list
    let payload = hex("81 a2 00 62 2f33 02 01");
    assert!(matches!(
        senml_cbor::decode_paths(&payload),
        Err(FormatError::Syntax { .. })
    ));
}

#[test]
fn encoder_rejects_what_senml_cannot_say() {
    let mut out = Vec::new();
    let v = TimestampedValue {
        path: Path::Instance(3, 0),
        value: Value::Integer(1),
        time: None,
    };
    assert!(senml_cbor::encode_values(&[v], &mut out).is_err());
    let v = TimestampedValue {
        path: Path::Resource(3, 0, 1),
        value: Value::Integer(1),
        time: Some(f64::NAN),
    };
    assert!(senml_cbor::encode_values(&[v], &mut out).is_err());
    let node = Node::Resource(Resource::single(1, Value::Integer(1)));
    assert!(senml_cbor::encode(&node, &Path::Resource(3, 0, 2), &mut out).is_err());
    assert!(senml_cbor::encode(&node, &Path::Instance(3, 0), &mut out).is_err());
}
