//! LwM2M CBOR (11544): the TS example client's Device object written out
//! byte by byte in the nested and the compressed-key forms, the other shapes
//! the TS allows, and known-bad inputs as named regressions.

mod support;

use lwm2m_core::format::{lwm2m_cbor, FormatError};
use lwm2m_core::model::{
    Instance, Node, ObjectNode, Path, Resource, ResourceValue, TimestampedValue, Value, NO_MODELS,
};
use support::{annotated_hex, cbor_models as models, device_instance, hex, ALL_TYPES};

/// The resources of the Device object instance 0, after the first two map
/// headers: a map of 13 resources.
const DEVICE_RESOURCES: &str = "
    ad                                                  # map(13)
       00 74 4f70656e204d6f62696c6520416c6c69616e6365   # 0: \"Open Mobile Alliance\"
       01 76 4c69676874776569676874204d324d20436c69656e74  # 1: \"Lightweight M2M Client\"
       02 69 333435303030313233                         # 2: \"345000123\"
       03 63 312e30                                     # 3: \"1.0\"
       06 a2 00 01 01 05                                # 6: {0: 1, 1: 5}
       07 a2 00 19 0ed8 01 19 1388                      # 7: {0: 3800, 1: 5000}
       08 a2 00 18 7d 01 19 0384                        # 8: {0: 125, 1: 900}
       09 18 64                                         # 9: 100
       0a 0f                                            # 10: 15
       0b a1 00 00                                      # 11: {0: 0}
       0d c1 1a 5182428f                                # 13: 1(1367491215)
       0e 66 2b30323a3030                               # 14: \"+02:00\"
       10 61 55                                         # 16: \"U\"
";

/// Read /3/0 in LwM2M CBOR: `{3: {0: {0: "Open Mobile Alliance", ...}}}`.
fn device_nested() -> Vec<u8> {
    let mut b = hex("a1 03 a1 00");
    b.extend(annotated_hex(DEVICE_RESOURCES));
    b
}

/// The same with the path compressed into an array key: `{[3, 0]: {...}}`.
fn device_compressed() -> Vec<u8> {
    let mut b = hex("a1 82 03 00");
    b.extend(annotated_hex(DEVICE_RESOURCES));
    b
}

#[test]
fn device_example_decodes_in_both_key_forms() {
    for payload in [device_nested(), device_compressed()] {
        let node = lwm2m_cbor::decode(&payload, &Path::Instance(3, 0), &models()).unwrap();
        assert_eq!(node, Node::Instance(device_instance()));
        // Self-describing: the same without a model (time is tagged, structure is nested).
        let node = lwm2m_cbor::decode(&payload, &Path::Instance(3, 0), &NO_MODELS).unwrap();
        assert_eq!(node, Node::Instance(device_instance()));
    }
}

#[test]
fn device_example_encodes_byte_for_byte_in_nested_form() {
    let mut out = Vec::new();
    lwm2m_cbor::encode(
        &Node::Instance(device_instance()),
        &Path::Instance(3, 0),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, device_nested());
}

#[test]
fn same_node_from_senml_cbor_and_lwm2m_cbor() {
    // The TS SenML CBOR example for the same Read (see tests/senml_cbor.rs), re-encoded here.
    let mut senml = Vec::new();
    lwm2m_core::format::senml_cbor::encode(
        &Node::Instance(device_instance()),
        &Path::Instance(3, 0),
        &mut senml,
    )
    .unwrap();
    let from_senml =
        lwm2m_core::format::senml_cbor::decode(&senml, &Path::Instance(3, 0), &models()).unwrap();
    let from_lwm2m =
        lwm2m_cbor::decode(&device_compressed(), &Path::Instance(3, 0), &models()).unwrap();
    assert_eq!(from_senml, from_lwm2m);
}

#[test]
fn every_path_shape_and_length_form_decodes_alike() {
    let expected = Node::Resource(Resource::single(1, Value::Integer(42)));
    let path = Path::Resource(13, 26, 1);
    for (what, payload) in [
        ("{[13, 26, 1]: 42}", "a1 83 0d 18 1a 01 18 2a"),
        ("indefinite", "bf 9f 0d 18 1a 01 ff 18 2a ff"),
        ("{13: {26: {1: 42}}}", "a1 0d a1 18 1a a1 01 18 2a"),
        ("nested indefinite", "bf 0d bf 18 1a bf 01 18 2a ff ff ff"),
        (
            "{[13]: {[26]: {[1]: 42}}}",
            "a1 81 0d a1 81 18 1a a1 81 01 18 2a",
        ),
        ("{[13, 26]: {1: 42}}", "a1 82 0d 18 1a a1 01 18 2a"),
        ("{13: {[26, 1]: 42}}", "a1 0d a1 82 18 1a 01 18 2a"),
    ] {
        assert_eq!(
            lwm2m_cbor::decode(&hex(payload), &path, &NO_MODELS),
            Ok(expected.clone()),
            "{what}"
        );
    }
    // Two resources through mixed keys: {[13, 26, 1]: 42, [13, 26]: {[2]: 21}}
    let payload = hex("a2 83 0d 18 1a 01 18 2a 82 0d 18 1a a1 81 02 15");
    assert_eq!(
        lwm2m_cbor::decode(&payload, &Path::Instance(13, 26), &NO_MODELS),
        Ok(Node::Instance(Instance::new(
            26,
            [
                Resource::single(1, Value::Integer(42)),
                Resource::single(2, Value::Integer(21))
            ]
        )))
    );
}

#[test]
fn every_value_type() {
    // {10000: {0: {0: "x", 1: -3, 2: 2^64-1, 3: 1.5, 4: true, 5: h'dead', 6: 1(1700000000),
    //              7: "3:0", 8: "</3/0>", 13: {0: 100000.0, 1: 1.1}}}}
    let payload = hex("
        a1 19 2710 a1 00 aa
          00 61 78
          01 22
          02 1b ffffffffffffffff
          03 f9 3e00
          04 f5
          05 42 dead
          06 c1 1a 6553f100
          07 63 333a30
          08 66 3c2f332f303e
          0d a2 00 fa 47c35000 01 fb 3ff199999999999a
    ");
    let inst = Instance::new(
        0,
        [
            Resource::single(0, Value::String("x".into())),
            Resource::single(1, Value::Integer(-3)),
            Resource::single(2, Value::UnsignedInteger(u64::MAX)),
            Resource::single(3, Value::Float(1.5)),
            Resource::single(4, Value::Boolean(true)),
            Resource::single(5, Value::Opaque(vec![0xde, 0xad])),
            Resource::single(6, Value::Time(1_700_000_000)),
            Resource::single(
                7,
                Value::ObjLnk(lwm2m_core::model::ObjLnk {
                    object: 3,
                    instance: 0,
                }),
            ),
            Resource::single(8, Value::CoreLnk("</3/0>".into())),
            Resource::multiple(13, [(0, Value::Float(100000.0)), (1, Value::Float(1.1))]),
        ],
    );
    let path = Path::Instance(ALL_TYPES, 0);
    assert_eq!(
        lwm2m_cbor::decode(&payload, &path, &models()),
        Ok(Node::Instance(inst.clone()))
    );
    let mut out = Vec::new();
    lwm2m_cbor::encode(&Node::Instance(inst), &path, &mut out).unwrap();
    assert_eq!(out, payload);
}

#[test]
fn empty_containers_are_kept() {
    // {3: {0: {}, 1: {6: {}}}} read at /3
    let payload = hex("a1 03 a2 00 a0 01 a1 06 a0");
    let node = lwm2m_cbor::decode(&payload, &Path::Object(3), &NO_MODELS).unwrap();
    let mut instances = std::collections::BTreeMap::new();
    instances.insert(0, Instance::new(0, []));
    instances.insert(
        1,
        Instance::new(
            1,
            [Resource {
                id: 6,
                value: ResourceValue::Multiple(Default::default()),
            }],
        ),
    );
    assert_eq!(node, Node::Object(ObjectNode { id: 3, instances }));
    let mut out = Vec::new();
    lwm2m_cbor::encode(&node, &Path::Object(3), &mut out).unwrap();
    assert_eq!(out, payload);
    // An empty payload map means nothing under the request path.
    assert_eq!(
        lwm2m_cbor::decode(&hex("a0"), &Path::Instance(3, 0), &NO_MODELS),
        Ok(Node::Instance(Instance::new(0, [])))
    );
    assert_eq!(
        lwm2m_cbor::decode(&hex("bf ff"), &Path::Object(3), &NO_MODELS),
        Ok(Node::Object(ObjectNode {
            id: 3,
            instances: Default::default()
        }))
    );
}

#[test]
fn resource_instance_and_single_resource_encodings() {
    let mut out = Vec::new();
    let node = Node::ResourceInstance {
        id: 1,
        value: Value::Integer(5),
    };
    lwm2m_cbor::encode(&node, &Path::ResourceInstance(3, 0, 6, 1), &mut out).unwrap();
    assert_eq!(out, hex("a1 03 a1 00 a1 06 a1 01 05"));
    assert_eq!(
        lwm2m_cbor::decode(&out, &Path::ResourceInstance(3, 0, 6, 1), &models()),
        Ok(node)
    );
}

#[test]
fn values_are_grouped_into_one_sorted_tree() {
    let values = vec![
        TimestampedValue {
            path: Path::Resource(3, 3, 3),
            value: Value::Integer(25),
            time: None,
        },
        TimestampedValue {
            path: Path::Resource(1, 1, 1),
            value: Value::Integer(11),
            time: None,
        },
        TimestampedValue {
            path: Path::ResourceInstance(3, 3, 6, 0),
            value: Value::Integer(1),
            time: None,
        },
    ];
    let mut out = Vec::new();
    lwm2m_cbor::encode_values(&values, &mut out).unwrap();
    // {1: {1: {1: 11}}, 3: {3: {3: 25, 6: {0: 1}}}}
    assert_eq!(
        out,
        hex("a2 01 a1 01 a1 01 0b 03 a1 03 a2 03 18 19 06 a1 00 01")
    );
    let mut sorted = values.clone();
    sorted.sort_by_key(|v| v.path);
    assert_eq!(lwm2m_cbor::decode_values(&out, &NO_MODELS), Ok(sorted));
    // Timestamps cannot be carried.
    let timed = [TimestampedValue {
        time: Some(1.0),
        ..values[0].clone()
    }];
    assert!(matches!(
        lwm2m_cbor::encode_values(&timed, &mut out),
        Err(FormatError::NotRepresentable(_))
    ));
}

#[test]
fn path_lists() {
    let paths = vec![
        Path::ResourceInstance(3, 0, 6, 1),
        Path::Object(1),
        Path::Resource(3, 0, 9),
    ];
    let mut out = Vec::new();
    lwm2m_cbor::encode_paths(&paths, &mut out).unwrap();
    // {[3, 0, 6, 1]: null, 1: null, [3, 0, 9]: null}
    let expected = hex("a3 84 03 00 06 01 f6 01 f6 83 03 00 09 f6");
    assert_eq!(out, expected);
    assert_eq!(lwm2m_cbor::decode_paths(&expected), Ok(paths));
    // Nested keys work as well: {3: {0: {9: null, 6: {1: null}}}}
    assert_eq!(
        lwm2m_cbor::decode_paths(&hex("a1 03 a1 00 a2 09 f6 06 a1 01 f6")),
        Ok(vec![
            Path::Resource(3, 0, 9),
            Path::ResourceInstance(3, 0, 6, 1)
        ])
    );
    assert!(lwm2m_cbor::encode_paths(&[Path::Root], &mut out).is_err());
}

// ---------------------------------------------------------------------------
// Known-bad inputs
// ---------------------------------------------------------------------------

#[test]
fn regression_huge_declared_lengths() {
    for payload in [
        "9b ffffffffffffffff",
        "bb ffffffffffffffff",
        "a1 9b ffffffffffffffff 00",
    ] {
        assert!(
            matches!(
                lwm2m_cbor::decode_values(&hex(payload), &NO_MODELS),
                Err(FormatError::InvalidLength { .. } | FormatError::Syntax { .. })
            ),
            "{payload}"
        );
    }
    assert_eq!(
        lwm2m_cbor::decode_values(&hex("bb ffffffffffffffff"), &NO_MODELS),
        Err(FormatError::InvalidLength { offset: 0 })
    );
    assert_eq!(
        lwm2m_cbor::decode_values(&hex("a1 03 bb ffffffffffffffff"), &NO_MODELS),
        Err(FormatError::InvalidLength { offset: 2 })
    );
    // A huge byte string length is checked against the payload, not allocated.
    assert_eq!(
        lwm2m_cbor::decode_values(&hex("a1 83 03 00 01 5b ffffffffffffffff 00"), &NO_MODELS),
        Err(FormatError::Truncated { offset: 15 })
    );
}

#[test]
fn regression_truncated_float() {
    let payload = hex("a1 83 03 00 01 fb 3ff1 9999");
    assert_eq!(
        lwm2m_cbor::decode_values(&payload, &NO_MODELS),
        Err(FormatError::Truncated {
            offset: payload.len()
        })
    );
    let payload = hex("a1 83 03 00 01 f9 3e");
    assert_eq!(
        lwm2m_cbor::decode_values(&payload, &NO_MODELS),
        Err(FormatError::Truncated {
            offset: payload.len()
        })
    );
}

#[test]
fn regression_nesting_beyond_four_levels() {
    // {1: {2: {3: {4: {5: 0}}}}}
    assert_eq!(
        lwm2m_cbor::decode_values(&hex("a1 01 a1 02 a1 03 a1 04 a1 05 00"), &NO_MODELS),
        Err(FormatError::TooDeep)
    );
    // {[1, 2, 3, 4, 5]: 0}
    assert_eq!(
        lwm2m_cbor::decode_values(&hex("a1 85 01 02 03 04 05 00"), &NO_MODELS),
        Err(FormatError::TooDeep)
    );
    // {[1, 2, 3, 4]: {}}: a map below a resource instance
    assert_eq!(
        lwm2m_cbor::decode_values(&hex("a1 84 01 02 03 04 a0"), &NO_MODELS),
        Err(FormatError::TooDeep)
    );
    // Deeply nested maps stop at the fifth level whatever follows (no recursion blow-up).
    let mut deep = Vec::new();
    for _ in 0..10_000 {
        deep.extend_from_slice(&[0xa1, 0x01]);
    }
    assert_eq!(
        lwm2m_cbor::decode_values(&deep, &NO_MODELS),
        Err(FormatError::TooDeep)
    );
}

#[test]
fn regression_reserved_large_and_negative_ids() {
    for (what, payload) in [
        ("65535", "a1 19 ffff a1 00 a1 00 00"),
        ("70000", "a1 1a 00011170 a1 00 a1 00 00"),
        ("-1", "a1 20 a1 00 a1 00 00"),
        ("65535 in an array key", "a1 83 03 00 19 ffff 00"),
        ("empty array key", "a1 80 00"),
    ] {
        assert_eq!(
            lwm2m_cbor::decode_values(&hex(payload), &NO_MODELS),
            Err(FormatError::InvalidPath),
            "{what}"
        );
    }
    // Text, float and nested-array keys are not ids.
    for payload in ["a1 61 33 00", "a1 f9 4200 00", "a1 81 81 03 00"] {
        assert!(
            matches!(
                lwm2m_cbor::decode_values(&hex(payload), &NO_MODELS),
                Err(FormatError::Syntax { .. })
            ),
            "{payload}"
        );
    }
}

#[test]
fn regression_wrong_value_types_for_the_model() {
    for (value, r) in [
        ("61 78", 1u8), // text for an Integer
        ("01", 0),      // integer for a String
        ("f5", 3),      // boolean for a Float
        ("41 00", 4),   // bytes for a Boolean
        ("20", 2),      // -1 for an Unsigned Integer
        ("61 78", 7),   // "x" for an Objlnk
        ("f9 3e00", 6), // float (untagged) for a Time
        ("01", 9),      // a value for an executable resource
        ("f6", 1),      // null
    ] {
        let mut payload = hex("a1 83 19 2710 00");
        payload.push(r);
        payload.extend(hex(value));
        let err =
            lwm2m_cbor::decode(&payload, &Path::Instance(ALL_TYPES, 0), &models()).unwrap_err();
        assert!(
            matches!(err, FormatError::InvalidValue { .. }),
            "{value} for resource {r}: {err:?}"
        );
    }
    // Structure against the model: {[3, 0, 6]: 1} and {[3, 0, 9]: {0: 1}}.
    for payload in ["a1 83 03 00 06 01", "a1 83 03 00 09 a1 00 01"] {
        assert!(matches!(
            lwm2m_cbor::decode(&hex(payload), &Path::Instance(3, 0), &models()),
            Err(FormatError::InvalidValue { .. })
        ));
    }
}

#[test]
fn regression_duplicate_paths() {
    for (what, payload) in [
        ("same key twice", "a2 83 03 00 09 01 83 03 00 09 02"),
        (
            "nested and compressed",
            "a2 83 03 00 09 01 03 a1 00 a1 09 02",
        ),
        (
            "value and its instance",
            "a2 83 03 00 09 01 84 03 00 09 00 02",
        ),
        (
            "instance and then value",
            "a2 84 03 00 09 00 02 83 03 00 09 01",
        ),
    ] {
        assert!(
            matches!(
                lwm2m_cbor::decode(&hex(payload), &Path::Object(3), &NO_MODELS),
                Err(FormatError::Syntax { .. })
            ),
            "decode: {what}"
        );
        assert!(
            matches!(
                lwm2m_cbor::decode_values(&hex(payload), &NO_MODELS),
                Err(FormatError::Syntax { .. })
            ),
            "decode_values: {what}"
        );
    }
    assert!(matches!(
        lwm2m_cbor::decode_paths(&hex("a2 01 f6 81 01 f6")),
        Err(FormatError::Syntax { .. })
    ));
    let twice = [Path::Object(1), Path::Object(1)];
    assert!(lwm2m_cbor::encode_paths(&twice, &mut Vec::new()).is_err());
}

#[test]
fn regression_structure_errors() {
    // Top level must be a map; values only at resource depth; leaves within the request path.
    assert!(matches!(
        lwm2m_cbor::decode_values(&hex("81 01"), &NO_MODELS),
        Err(FormatError::Syntax { .. })
    ));
    assert!(matches!(
        lwm2m_cbor::decode_values(&hex("a1 03 05"), &NO_MODELS),
        Err(FormatError::Syntax { .. })
    ));
    assert!(matches!(
        lwm2m_cbor::decode_values(&hex("a1 82 03 00 05"), &NO_MODELS),
        Err(FormatError::Syntax { .. })
    ));
    assert_eq!(
        lwm2m_cbor::decode(&hex("a1 83 04 00 01 05"), &Path::Instance(3, 0), &NO_MODELS),
        Err(FormatError::InvalidPath)
    );
    // A missing value for a requested single resource.
    assert!(lwm2m_cbor::decode(&hex("a0"), &Path::Resource(3, 0, 9), &models()).is_err());
    // Unexpected tags, trailing bytes, breaks outside indefinite items, unknown simple values.
    for payload in [
        "a1 83 03 00 09 c2 41 01",
        "a1 83 03 00 09 01 00",
        "a1 ff 01 02",
        "a1 83 03 00 09 f7",
        "a1 83 03 00 09 e0",
    ] {
        assert!(
            matches!(
                lwm2m_cbor::decode_values(&hex(payload), &NO_MODELS),
                Err(FormatError::Syntax { .. })
            ),
            "{payload}"
        );
    }
    // Invalid UTF-8 and indefinite text with a byte chunk.
    assert_eq!(
        lwm2m_cbor::decode_values(&hex("a1 83 03 00 00 61 ff"), &NO_MODELS),
        Err(FormatError::InvalidUtf8)
    );
    assert!(matches!(
        lwm2m_cbor::decode_values(&hex("a1 83 03 00 00 7f 41 00 ff"), &NO_MODELS),
        Err(FormatError::Syntax { .. })
    ));
}
