//! Legacy LwM2M JSON (content formats 11543 / 1543): the worked examples of
//! LwM2M TS 1.0 §6.4.4 written out by hand, round-trip properties and
//! known-bad inputs.

mod support;

use lwm2m_core::format::lwm2m_json::{decode, decode_values, encode, encode_values};
use lwm2m_core::format::FormatError;
use lwm2m_core::model::{Instance, Node, ObjLnk, ObjectNode, Path, Resource, Value, NO_MODELS};
use proptest::prelude::*;
use support::{device_instance, json_models as models, p, tv};

fn enc(node: &Node, path: &str) -> String {
    let mut out = Vec::new();
    encode(node, &p(path), &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// TS 1.0 §6.4.4: Read on the Device object instance /3/0.
const DEVICE_INSTANCE: &str = concat!(
    r#"{"bn":"/3/0/","e":["#,
    r#"{"n":"0","sv":"Open Mobile Alliance"},"#,
    r#"{"n":"1","sv":"Lightweight M2M Client"},"#,
    r#"{"n":"2","sv":"345000123"},"#,
    r#"{"n":"3","sv":"1.0"},"#,
    r#"{"n":"6/0","v":1},"#,
    r#"{"n":"6/1","v":5},"#,
    r#"{"n":"7/0","v":3800},"#,
    r#"{"n":"7/1","v":5000},"#,
    r#"{"n":"8/0","v":125},"#,
    r#"{"n":"8/1","v":900},"#,
    r#"{"n":"9","v":100},"#,
    r#"{"n":"10","v":15},"#,
    r#"{"n":"11/0","v":0},"#,
    r#"{"n":"13","v":1367491215},"#,
    r#"{"n":"14","sv":"+02:00"},"#,
    r#"{"n":"16","sv":"U"}]}"#
);

#[test]
fn ts_device_object_instance_decodes_and_encodes_exactly() {
    let node = decode(DEVICE_INSTANCE.as_bytes(), &p("/3/0"), &models()).unwrap();
    assert_eq!(node, Node::Instance(device_instance()));
    assert_eq!(enc(&node, "/3/0"), DEVICE_INSTANCE);
    // Without the model: same bytes back.
    let untyped = decode(DEVICE_INSTANCE.as_bytes(), &p("/3/0"), &NO_MODELS).unwrap();
    assert_eq!(enc(&untyped, "/3/0"), DEVICE_INSTANCE);
}

#[test]
fn ts_device_object_instance_with_other_base_names() {
    // Pretty-printed, base name "/" and relative names, as TS 1.0 devices send.
    let root_bn = DEVICE_INSTANCE
        .replace(r#""bn":"/3/0/""#, r#""bn":"/""#)
        .replace(r#"{"n":""#, r#"{"n":"3/0/"#)
        .replace(",{", ",\n  {");
    assert_eq!(
        decode(root_bn.as_bytes(), &p("/3/0"), &models()).unwrap(),
        Node::Instance(device_instance())
    );
    // No base name, absolute names.
    let no_bn = DEVICE_INSTANCE
        .replace(r#""bn":"/3/0/","#, "")
        .replace(r#"{"n":""#, r#"{"n":"/3/0/"#);
    assert_eq!(
        decode(no_bn.as_bytes(), &p("/3/0"), &models()).unwrap(),
        Node::Instance(device_instance())
    );
    // Base name without the leading slash (seen from 1.0 devices).
    let no_slash = DEVICE_INSTANCE.replace(r#""bn":"/3/0/""#, r#""bn":"3/0/""#);
    assert_eq!(
        decode(no_slash.as_bytes(), &p("/3/0"), &models()).unwrap(),
        Node::Instance(device_instance())
    );
}

/// TS 1.0 §6.4.4: timestamped values of one resource (base time, relative times).
const TIMESTAMPED: &str = concat!(
    r#"{"bn":"/72/","bt":25462634,"e":["#,
    r#"{"n":"1/2","v":22.4,"t":-5},"#,
    r#"{"n":"1/2","v":22.9,"t":-30},"#,
    r#"{"n":"1/2","v":24.1,"t":-50}]}"#
);

#[test]
fn ts_timestamped_values() {
    let expected = vec![
        tv("/72/1/2", Value::Float(22.4), Some(25_462_629.0)),
        tv("/72/1/2", Value::Float(22.9), Some(25_462_604.0)),
        tv("/72/1/2", Value::Float(24.1), Some(25_462_584.0)),
    ];
    assert_eq!(
        decode_values(TIMESTAMPED.as_bytes(), &NO_MODELS).unwrap(),
        expected
    );
    // bt may come after e.
    let bt_last = concat!(
        r#"{"bn":"/72/","e":[{"n":"1/2","v":22.4,"t":-5},{"n":"1/2","v":22.9,"t":-30},"#,
        r#"{"n":"1/2","v":24.1,"t":-50}],"bt":25462634}"#
    );
    assert_eq!(
        decode_values(bt_last.as_bytes(), &NO_MODELS).unwrap(),
        expected
    );
    let mut out = Vec::new();
    encode_values(&expected, &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        r#"{"bn":"/72/1/2","e":[{"v":22.4,"t":25462629},{"v":22.9,"t":25462604},{"v":24.1,"t":25462584}]}"#
    );
    assert_eq!(decode_values(&out, &NO_MODELS).unwrap(), expected);
    // A series is not one node.
    assert!(matches!(
        decode(TIMESTAMPED.as_bytes(), &p("/72"), &NO_MODELS),
        Err(FormatError::Syntax { .. })
    ));
}

/// TS 1.0 §6.4.4: object links across objects 65, 66 and 67.
const OBJECT_LINKS: &str = concat!(
    r#"{"bn":"/","e":["#,
    r#"{"n":"65/0/0/0","ov":"66:0"},"#,
    r#"{"n":"65/0/0/1","ov":"66:1"},"#,
    r#"{"n":"65/0/1","sv":"8613800755500"},"#,
    r#"{"n":"65/0/2","v":1},"#,
    r#"{"n":"66/0/0","sv":"myService1"},"#,
    r#"{"n":"66/0/1","sv":"Internet.15.234"},"#,
    r#"{"n":"66/0/2","ov":"67:0"},"#,
    r#"{"n":"66/1/0","sv":"myService2"},"#,
    r#"{"n":"66/1/1","sv":"Internet.15.235"},"#,
    r#"{"n":"66/1/2","ov":"65535:65535"},"#,
    r#"{"n":"67/0/0","sv":"85.76.76.84"},"#,
    r#"{"n":"67/0/1","sv":"85.76.255.255"}]}"#
);

#[test]
fn ts_object_links() {
    let values = decode_values(OBJECT_LINKS.as_bytes(), &models()).unwrap();
    assert_eq!(values.len(), 12);
    assert_eq!(
        values[1],
        tv(
            "/65/0/0/1",
            Value::ObjLnk(ObjLnk {
                object: 66,
                instance: 1
            }),
            None
        )
    );
    assert_eq!(values[9].value, Value::ObjLnk(ObjLnk::NULL));
    let mut out = Vec::new();
    encode_values(&values, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with(r#"{"e":[{"n":"/65/0/0/0","ov":"66:0"},"#),
        "{text}"
    );
    assert_eq!(decode_values(text.as_bytes(), &models()).unwrap(), values);
    // Object 66 as a node.
    let only_66 = OBJECT_LINKS
        .replace(r#"{"n":"65/0/0/0","ov":"66:0"},{"n":"65/0/0/1","ov":"66:1"},{"n":"65/0/1","sv":"8613800755500"},{"n":"65/0/2","v":1},"#, "")
        .replace(r#",{"n":"67/0/0","sv":"85.76.76.84"},{"n":"67/0/1","sv":"85.76.255.255"}"#, "");
    let Node::Object(obj) = decode(only_66.as_bytes(), &p("/66"), &models()).unwrap() else {
        panic!()
    };
    assert_eq!(obj.instances.len(), 2);
    assert_eq!(
        obj.instances[&0].resources[&2],
        Resource::single(
            2,
            Value::ObjLnk(ObjLnk {
                object: 67,
                instance: 0
            })
        )
    );
}

#[test]
fn single_and_multiple_resources() {
    let single = Node::Resource(Resource::single(
        0,
        Value::String("Open Mobile Alliance".into()),
    ));
    let text = enc(&single, "/3/0/0");
    assert_eq!(
        text,
        r#"{"bn":"/3/0/0","e":[{"sv":"Open Mobile Alliance"}]}"#
    );
    assert_eq!(
        decode(text.as_bytes(), &p("/3/0/0"), &models()).unwrap(),
        single
    );

    let multi = Node::Resource(Resource::multiple(
        7,
        [(0, Value::Integer(3800)), (1, Value::Integer(5000))],
    ));
    let text = enc(&multi, "/3/0/7");
    assert_eq!(
        text,
        r#"{"bn":"/3/0/7/","e":[{"n":"0","v":3800},{"n":"1","v":5000}]}"#
    );
    assert_eq!(
        decode(text.as_bytes(), &p("/3/0/7"), &models()).unwrap(),
        multi
    );

    let ri = Node::ResourceInstance {
        id: 1,
        value: Value::Integer(5000),
    };
    let text = enc(&ri, "/3/0/7/1");
    assert_eq!(text, r#"{"bn":"/3/0/7/1","e":[{"v":5000}]}"#);
    assert_eq!(
        decode(text.as_bytes(), &p("/3/0/7/1"), &models()).unwrap(),
        ri
    );
}

#[test]
fn all_types_with_a_model() {
    let inst = Instance::new(
        0,
        [
            Resource::single(0, Value::String("a string".into())),
            Resource::single(1, Value::Integer(-7)),
            Resource::single(2, Value::UnsignedInteger(u64::MAX)),
            Resource::single(3, Value::Float(10.5)),
            Resource::single(4, Value::Boolean(true)),
            Resource::single(5, Value::Opaque(vec![1, 2, 3, 4, 5])),
            Resource::single(6, Value::Time(1_367_491_215)),
            Resource::single(
                7,
                Value::ObjLnk(ObjLnk {
                    object: 3,
                    instance: 0,
                }),
            ),
            Resource::single(8, Value::CoreLnk("</3/0>".into())),
        ],
    );
    let node = Node::Instance(inst);
    let text = enc(&node, "/1024/0");
    assert_eq!(
        text,
        concat!(
            r#"{"bn":"/1024/0/","e":[{"n":"0","sv":"a string"},{"n":"1","v":-7},"#,
            r#"{"n":"2","v":18446744073709551615},{"n":"3","v":10.5},{"n":"4","bv":true},"#,
            r#"{"n":"5","sv":"AQIDBAU="},{"n":"6","v":1367491215},{"n":"7","ov":"3:0"},"#,
            r#"{"n":"8","sv":"</3/0>"}]}"#
        )
    );
    assert_eq!(
        decode(text.as_bytes(), &p("/1024/0"), &models()).unwrap(),
        node
    );
}

#[test]
fn empty_lists() {
    assert_eq!(
        decode(br#"{"e":[]}"#, &p("/2"), &models()).unwrap(),
        Node::Object(ObjectNode {
            id: 2,
            ..Default::default()
        })
    );
    assert_eq!(
        decode(br#"{"bn":"2/0", "e":[]}"#, &p("/2/0"), &models()).unwrap(),
        Node::Instance(Instance::new(0, []))
    );
    assert_eq!(
        decode(br#"{"e":[]}"#, &p("/3/0/6"), &models()).unwrap(),
        Node::Resource(Resource::multiple(6, []))
    );
    assert!(decode(br#"{"bn":"/3/0/9","e":[]}"#, &p("/3/0/9"), &models()).is_err());
    assert_eq!(
        enc(&Node::Instance(Instance::new(0, [])), "/2/0"),
        r#"{"bn":"/2/0/","e":[]}"#
    );
}

// ---------------------------------------------------------------------------
// Known-bad inputs (regressions)

#[test]
fn regression_truncated_entry_list() {
    assert_eq!(
        decode(br#"{"bn":"/3/0/","e":["#, &p("/3/0"), &models()),
        Err(FormatError::Truncated { offset: 19 })
    );
    let full = DEVICE_INSTANCE.as_bytes();
    for cut in [0, 1, 5, 19, 40, full.len() - 1] {
        assert!(
            matches!(
                decode(&full[..cut], &p("/3/0"), &models()),
                Err(FormatError::Truncated { .. })
            ),
            "cut at {cut}"
        );
    }
}

#[test]
fn regression_entry_without_name_or_base_name() {
    assert_eq!(
        decode_values(br#"{"e":[{"v":1}]}"#, &NO_MODELS),
        Err(FormatError::Syntax {
            offset: 6,
            expected: "a record name: \"n\", or a base name \"bn\" on this or an earlier record"
        })
    );
}

#[test]
fn regression_missing_or_malformed_structure() {
    for (payload, offset) in [
        (&b"{}"[..], 0),
        (br#"[{"n":"/3/0/0","sv":"x"}]"#, 0),
        (br#"{"e":{}}"#, 5),
        (br#"{"e":[1]}"#, 6),
        (br#"{"bn":1,"e":[]}"#, 6),
        (br#"{"bn":"/","bn":"/","e":[]}"#, 15),
        (br#"{"e":[],"e":[]}"#, 12),
        (br#"{"e":[{"n":"/3/0/0"}]}"#, 6),
        (br#"{"e":[{"n":"/3/0/0","sv":"a","v":1}]}"#, 33),
        (br#"{"e":[{"n":"/3/0/0","n":"/3/0/1","sv":"a"}]}"#, 24),
        (br#"{"e":[{"n":"/3/0/0","bv":1}]}"#, 25),
        (br#"{"e":[{"n":"/3/0/0","v":1,}]}"#, 26),
    ] {
        assert!(
            matches!(decode_values(payload, &NO_MODELS), Err(FormatError::Syntax { offset: o, .. }) if o == offset),
            "{}: {:?}",
            String::from_utf8_lossy(payload),
            decode_values(payload, &NO_MODELS)
        );
    }
}

#[test]
fn regression_bad_base64_for_opaque() {
    assert_eq!(
        decode(
            br#"{"bn":"/1024/0/5","e":[{"sv":"!,-INVALID$_'"}]}"#,
            &p("/1024/0/5"),
            &models()
        ),
        Err(FormatError::InvalidValue {
            what: "opaque value is not valid base64"
        })
    );
    // Without a model the same text is just a string.
    assert_eq!(
        decode(
            br#"{"bn":"/1024/0/5","e":[{"sv":"!,-INVALID$_'"}]}"#,
            &p("/1024/0/5"),
            &NO_MODELS
        )
        .unwrap(),
        Node::Resource(Resource::single(5, Value::String("!,-INVALID$_'".into())))
    );
}

#[test]
fn regression_nesting_number_string_surrogate_limits() {
    let deep = format!(
        r#"{{"e":[{{"n":"/3/0/0","x":{}0{}}}]}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    assert_eq!(
        decode_values(deep.as_bytes(), &NO_MODELS),
        Err(FormatError::TooDeep)
    );
    assert!(matches!(
        decode_values(br#"{"e":[{"n":"/1024/0/3","v":1e400}]}"#, &models()),
        Err(FormatError::InvalidValue { .. })
    ));
    assert!(matches!(
        decode_values(br#"{"e":[{"n":"/1024/0/3","v":-}]}"#, &models()),
        Err(FormatError::Syntax { offset: 28, .. })
    ));
    assert!(matches!(
        decode_values(br#"{"e":[{"n":"/1024/0/0","sv":"abc"#, &models()),
        Err(FormatError::Truncated { offset: 32 })
    ));
    assert!(matches!(
        decode_values(br#"{"e":[{"n":"/1024/0/0","sv":"\ud800"}]}"#, &models()),
        Err(FormatError::Syntax { offset: 29, .. })
    ));
    let huge = format!(r#"{{"e":[{}1]}}"#, "1,".repeat(70_000));
    assert!(matches!(
        decode_values(huge.as_bytes(), &models()),
        Err(FormatError::Syntax {
            expected: "fewer JSON values (the element limit was reached)",
            ..
        })
    ));
}

#[test]
fn regression_paths() {
    assert_eq!(
        decode_values(
            br#"{"bn":"/3/65535/","e":[{"n":"0","sv":"x"}]}"#,
            &NO_MODELS
        ),
        Err(FormatError::InvalidPath)
    );
    assert_eq!(
        decode(DEVICE_INSTANCE.as_bytes(), &p("/3/1"), &models()),
        Err(FormatError::InvalidPath)
    );
    assert_eq!(
        decode(br#"{"bn":"/3/0","e":[{"sv":"x"}]}"#, &p("/3/0"), &NO_MODELS),
        Err(FormatError::InvalidPath)
    );
    assert!(matches!(
        decode(
            br#"{"bn":"/3/0/","e":[{"n":"1","sv":"a"},{"n":"1","sv":"b"}]}"#,
            &p("/3/0"),
            &models()
        ),
        Err(FormatError::Syntax { offset: 38, .. })
    ));
    assert_eq!(
        decode(br#"{"bn":"/3/0/9/0","e":[{"v":1}]}"#, &p("/3/0"), &models()),
        Err(FormatError::InvalidPath)
    );
}

#[test]
fn regression_value_type_not_matching_model() {
    let cases: [(&[u8], &str, &str); 5] = [
        (
            br#"{"bn":"/3/0/9","e":[{"sv":"100"}]}"#,
            "/3/0/9",
            "an Integer resource needs a number (\"v\")",
        ),
        (
            br#"{"bn":"/3/0/9","e":[{"v":1.5}]}"#,
            "/3/0/9",
            "an Integer resource needs an integral number in the i64 range",
        ),
        (
            br#"{"bn":"/3/0/0","e":[{"v":1}]}"#,
            "/3/0/0",
            "a String resource needs \"sv\"",
        ),
        (
            br#"{"bn":"/1024/0/4","e":[{"sv":"true"}]}"#,
            "/1024/0/4",
            "a Boolean resource needs \"bv\"",
        ),
        (
            br#"{"bn":"/1024/0/7","e":[{"sv":"1:2"}]}"#,
            "/1024/0/7",
            "an Objlnk resource needs \"ov\"",
        ),
    ];
    for (payload, path, what) in cases {
        assert_eq!(
            decode(payload, &p(path), &models()),
            Err(FormatError::InvalidValue { what }),
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
}

// ---------------------------------------------------------------------------
// Properties

proptest! {
    #[test]
    fn typed_instance_round_trips(inst in support::arb_typed_instance()) {
        let path = Path::Instance(1024, inst.id);
        let node = Node::Instance(inst);
        let mut out = Vec::new();
        encode(&node, &path, &mut out).unwrap();
        prop_assert_eq!(decode(&out, &path, &models()).unwrap(), node);
    }

    #[test]
    fn untyped_object_round_trips(obj in support::arb_untyped_object_legacy()) {
        let path = Path::Object(obj.id);
        let node = Node::Object(obj);
        let mut out = Vec::new();
        encode(&node, &path, &mut out).unwrap();
        prop_assert_eq!(decode(&out, &path, &NO_MODELS).unwrap(), node);
    }

    #[test]
    fn values_round_trip(values in support::arb_values_legacy()) {
        let mut out = Vec::new();
        encode_values(&values, &mut out).unwrap();
        prop_assert_eq!(decode_values(&out, &NO_MODELS).unwrap(), values);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode(&bytes, &p("/3/0"), &models());
        let _ = decode_values(&bytes, &models());
    }
}
