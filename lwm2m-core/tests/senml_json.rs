//! SenML JSON (content format 110): the worked examples of LwM2M TS Core 1.1
//! §7.4.4 (Tables 7.4.4-1 to 7.4.4-8, written out by hand), round-trip
//! properties and known-bad inputs.

mod support;

use lwm2m_core::format::senml_json::{
    decode, decode_paths, decode_values, encode, encode_paths, encode_values,
};
use lwm2m_core::format::FormatError;
use lwm2m_core::model::{
    Instance, Node, ObjLnk, ObjectNode, Path, Resource, TimestampedValue, Value, NO_MODELS,
};
use proptest::prelude::*;
use support::{device_instance, json_models as models, p, tv};

fn enc(node: &Node, path: &str) -> String {
    let mut out = Vec::new();
    encode(node, &p(path), &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn enc_values(values: &[TimestampedValue]) -> String {
    let mut out = Vec::new();
    encode_values(values, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// TS 1.1 Table 7.4.4-1: Read on the Device object instance /3/0.
const DEVICE_INSTANCE: &str = concat!(
    r#"[{"bn":"/3/0/","n":"0","vs":"Open Mobile Alliance"},"#,
    r#"{"n":"1","vs":"Lightweight M2M Client"},"#,
    r#"{"n":"2","vs":"345000123"},"#,
    r#"{"n":"3","vs":"1.0"},"#,
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
    r#"{"n":"14","vs":"+02:00"},"#,
    r#"{"n":"16","vs":"U"}]"#
);

#[test]
fn ts_device_object_instance_decodes_and_encodes_exactly() {
    let node = decode(DEVICE_INSTANCE.as_bytes(), &p("/3/0"), &models()).unwrap();
    assert_eq!(node, Node::Instance(device_instance()));
    assert_eq!(enc(&node, "/3/0"), DEVICE_INSTANCE);
}

#[test]
fn ts_device_object_instance_without_model_keeps_json_kinds() {
    let node = decode(DEVICE_INSTANCE.as_bytes(), &p("/3/0"), &NO_MODELS).unwrap();
    let Node::Instance(inst) = &node else {
        panic!("not an instance: {node:?}")
    };
    // Time resource 13 is just an integer without the model.
    assert_eq!(
        inst.resources[&13],
        Resource::single(13, Value::Integer(1_367_491_215))
    );
    assert_eq!(
        inst.resources[&7],
        Resource::multiple(7, [(0, Value::Integer(3800)), (1, Value::Integer(5000))])
    );
    // And it encodes back to the same bytes.
    assert_eq!(enc(&node, "/3/0"), DEVICE_INSTANCE);
}

#[test]
fn ts_device_object_instance_as_object() {
    let node = decode(DEVICE_INSTANCE.as_bytes(), &p("/3"), &models()).unwrap();
    let mut obj = ObjectNode {
        id: 3,
        ..Default::default()
    };
    obj.instances.insert(0, device_instance());
    assert_eq!(node, Node::Object(obj));
    let text = enc(&node, "/3");
    assert!(
        text.starts_with(r#"[{"bn":"/3/","n":"0/0","vs":"Open Mobile Alliance"},{"n":"0/1","#),
        "{text}"
    );
    assert_eq!(decode(text.as_bytes(), &p("/3"), &models()).unwrap(), node);
}

/// TS 1.1 Table 7.4.4-3: timestamped values of one resource, base time and relative times.
const TIMESTAMPED: &str = concat!(
    r#"[{"bn":"/72/","bt":25462634,"n":"1/2","v":22.4,"t":-5},"#,
    r#"{"n":"1/2","v":22.9,"t":-30},"#,
    r#"{"n":"1/2","v":24.1,"t":-50}]"#
);

#[test]
fn ts_timestamped_values() {
    let values = decode_values(TIMESTAMPED.as_bytes(), &NO_MODELS).unwrap();
    let expected = vec![
        tv("/72/1/2", Value::Float(22.4), Some(25_462_629.0)),
        tv("/72/1/2", Value::Float(22.9), Some(25_462_604.0)),
        tv("/72/1/2", Value::Float(24.1), Some(25_462_584.0)),
    ];
    assert_eq!(values, expected);
    // Our encoder names one repeated path by bn alone and writes absolute times.
    let text = enc_values(&values);
    assert_eq!(
        text,
        concat!(
            r#"[{"bn":"/72/1/2","v":22.4,"t":25462629},"#,
            r#"{"v":22.9,"t":25462604},"#,
            r#"{"v":24.1,"t":25462584}]"#
        )
    );
    assert_eq!(
        decode_values(text.as_bytes(), &NO_MODELS).unwrap(),
        expected
    );
}

#[test]
fn ts_timestamped_values_are_not_one_node() {
    // A time series names /72/1/2 three times: no single node can hold it.
    assert_eq!(
        decode(TIMESTAMPED.as_bytes(), &p("/72"), &NO_MODELS),
        Err(FormatError::Syntax {
            offset: 55,
            expected: "each resource or resource instance at most once"
        })
    );
}

/// TS 1.1 Table 7.4.4-4: object links, base name "/".
const OBJECT_LINKS: &str = concat!(
    r#"[{"bn":"/","n":"65/0/0/0","vlo":"66:0"},"#,
    r#"{"n":"65/0/0/1","vlo":"66:1"},"#,
    r#"{"n":"65/0/1","vs":"8613800755500"},"#,
    r#"{"n":"65/0/2","v":1},"#,
    r#"{"n":"66/0/0","vs":"myService1"},"#,
    r#"{"n":"66/0/1","vs":"Internet.15.234"},"#,
    r#"{"n":"66/0/2","vlo":"67:0"},"#,
    r#"{"n":"66/1/0","vs":"myService2"},"#,
    r#"{"n":"66/1/1","vs":"Internet.15.235"},"#,
    r#"{"n":"66/1/2","vlo":"65535:65535"},"#,
    r#"{"n":"67/0/0","vs":"85.76.76.84"},"#,
    r#"{"n":"67/0/1","vs":"85.76.255.255"}]"#
);

#[test]
fn ts_object_links() {
    let s = |x: &str| Value::String(x.into());
    let link = |object, instance| Value::ObjLnk(ObjLnk { object, instance });
    let expected = vec![
        tv("/65/0/0/0", link(66, 0), None),
        tv("/65/0/0/1", link(66, 1), None),
        tv("/65/0/1", s("8613800755500"), None),
        tv("/65/0/2", Value::Integer(1), None),
        tv("/66/0/0", s("myService1"), None),
        tv("/66/0/1", s("Internet.15.234"), None),
        tv("/66/0/2", link(67, 0), None),
        tv("/66/1/0", s("myService2"), None),
        tv("/66/1/1", s("Internet.15.235"), None),
        tv("/66/1/2", Value::ObjLnk(ObjLnk::NULL), None),
        tv("/67/0/0", s("85.76.76.84"), None),
        tv("/67/0/1", s("85.76.255.255"), None),
    ];
    assert_eq!(
        decode_values(OBJECT_LINKS.as_bytes(), &models()).unwrap(),
        expected
    );
    assert_eq!(
        decode_values(OBJECT_LINKS.as_bytes(), &NO_MODELS).unwrap(),
        expected
    );
    let text = enc_values(&expected);
    assert!(
        text.starts_with(r#"[{"n":"/65/0/0/0","vlo":"66:0"},"#),
        "{text}"
    );
    assert_eq!(decode_values(text.as_bytes(), &models()).unwrap(), expected);
    // One object of it as a node.
    let node = decode(
        br#"[{"bn":"/65/0/","n":"0/0","vlo":"66:0"},{"n":"0/1","vlo":"66:1"},{"n":"1","vs":"8613800755500"},{"n":"2","v":1}]"#,
        &p("/65/0"),
        &models(),
    )
    .unwrap();
    assert_eq!(
        node,
        Node::Instance(Instance::new(
            0,
            [
                Resource::multiple(0, [(0, link(66, 0)), (1, link(66, 1))]),
                Resource::single(1, s("8613800755500")),
                Resource::single(2, Value::Integer(1)),
            ]
        ))
    );
}

/// TS 1.1 Table 7.4.4-5: Read on a single resource.
const SINGLE_RESOURCE: &str = r#"[{"bn":"/3/0/0","vs":"Open Mobile Alliance"}]"#;

#[test]
fn ts_single_resource() {
    let node = decode(SINGLE_RESOURCE.as_bytes(), &p("/3/0/0"), &models()).unwrap();
    let expected = Node::Resource(Resource::single(
        0,
        Value::String("Open Mobile Alliance".into()),
    ));
    assert_eq!(node, expected);
    assert_eq!(enc(&expected, "/3/0/0"), SINGLE_RESOURCE);
}

#[test]
fn multiple_resource_and_resource_instance() {
    let multi = r#"[{"bn":"/3/0/7/","n":"0","v":3800},{"n":"1","v":5000}]"#;
    let node = decode(multi.as_bytes(), &p("/3/0/7"), &models()).unwrap();
    let expected = Node::Resource(Resource::multiple(
        7,
        [(0, Value::Integer(3800)), (1, Value::Integer(5000))],
    ));
    assert_eq!(node, expected);
    assert_eq!(enc(&expected, "/3/0/7"), multi);

    let one = r#"[{"bn":"/3/0/7/1","v":5000}]"#;
    let node = decode(one.as_bytes(), &p("/3/0/7/1"), &models()).unwrap();
    let expected = Node::ResourceInstance {
        id: 1,
        value: Value::Integer(5000),
    };
    assert_eq!(node, expected);
    assert_eq!(enc(&expected, "/3/0/7/1"), one);
}

/// TS 1.1 Table 7.4.4-6: Read-Composite request body.
const COMPOSITE_PATHS: &str = r#"[{"n":"/3/0/0"},{"n":"/3/0/9"},{"n":"/1/0/1"}]"#;

#[test]
fn ts_read_composite_paths() {
    let paths = decode_paths(COMPOSITE_PATHS.as_bytes()).unwrap();
    assert_eq!(paths, vec![p("/3/0/0"), p("/3/0/9"), p("/1/0/1")]);
    let mut out = Vec::new();
    encode_paths(&paths, &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), COMPOSITE_PATHS);
    // Paths of any depth, with a base name.
    assert_eq!(
        decode_paths(br#"[{"bn":"/3/","n":"0"},{"n":"1/0/1"},{"bn":"/"},{"n":"3"}]"#).unwrap(),
        vec![p("/3/0"), p("/3/1/0/1"), p("/"), p("/3")]
    );
    // A base name alone that ends in '/' is no path.
    assert_eq!(
        decode_paths(br#"[{"bn":"/3/"}]"#),
        Err(FormatError::InvalidPath)
    );
}

/// TS 1.1 Table 7.4.4-7: Read-Composite response.
const COMPOSITE_VALUES: &str = concat!(
    r#"[{"n":"/3/0/0","vs":"Open Mobile Alliance"},"#,
    r#"{"n":"/3/0/9","v":95},"#,
    r#"{"n":"/1/0/1","v":86400}]"#
);

#[test]
fn ts_read_composite_response() {
    let values = decode_values(COMPOSITE_VALUES.as_bytes(), &models()).unwrap();
    assert_eq!(
        values,
        vec![
            tv("/3/0/0", Value::String("Open Mobile Alliance".into()), None),
            tv("/3/0/9", Value::Integer(95), None),
            tv("/1/0/1", Value::Integer(86400), None),
        ]
    );
    assert_eq!(enc_values(&values), COMPOSITE_VALUES);
}

/// TS 1.1 Table 7.4.4-8: Write-Composite request.
const WRITE_COMPOSITE: &str = concat!(
    r#"[{"n":"/3311/0/5850","vb":false},"#,
    r#"{"n":"/3311/1/5850","vb":false},"#,
    r#"{"n":"/3311/2/5851","v":20},"#,
    r#"{"n":"/3308/0/5900","v":18}]"#
);

#[test]
fn ts_write_composite() {
    let values = decode_values(WRITE_COMPOSITE.as_bytes(), &models()).unwrap();
    assert_eq!(
        values,
        vec![
            tv("/3311/0/5850", Value::Boolean(false), None),
            tv("/3311/1/5850", Value::Boolean(false), None),
            tv("/3311/2/5851", Value::Integer(20), None),
            tv("/3308/0/5900", Value::Float(18.0), None),
        ]
    );
    // A Float is written with its fraction, so the typed version differs in one place...
    assert_eq!(
        enc_values(&values),
        WRITE_COMPOSITE.replace(r#""v":18}"#, r#""v":18.0}"#)
    );
    // ...and the model-less one is byte-identical.
    let untyped = decode_values(WRITE_COMPOSITE.as_bytes(), &NO_MODELS).unwrap();
    assert_eq!(enc_values(&untyped), WRITE_COMPOSITE);
}

#[test]
fn base_names_change_between_records_and_names_may_be_absolute() {
    // Two instances of the ACL object, each with its own base name.
    let payload = concat!(
        r#"[{"bn":"/2/3/","n":"0","v":3},{"n":"1","v":1},{"n":"3","v":123},"#,
        r#"{"bn":"/2/2/","n":"0","v":4},{"n":"1","v":2},{"n":"3","v":124}]"#
    );
    let Node::Object(obj) = decode(payload.as_bytes(), &p("/2"), &NO_MODELS).unwrap() else {
        panic!()
    };
    assert_eq!(obj.instances.len(), 2);
    assert_eq!(
        obj.instances[&2].resources[&3],
        Resource::single(3, Value::Integer(124))
    );
    // bn + n is plain concatenation: "/2/3" + "/0".
    let node = decode(
        br#"[{"bn":"/2/3","n":"/0","v":1234}]"#,
        &p("/2/3"),
        &NO_MODELS,
    )
    .unwrap();
    assert_eq!(
        node,
        Node::Instance(Instance::new(
            3,
            [Resource::single(0, Value::Integer(1234))]
        ))
    );
}

#[test]
fn empty_payloads() {
    assert_eq!(
        decode(b"[]", &p("/3/0"), &models()).unwrap(),
        Node::Instance(Instance::new(0, []))
    );
    assert_eq!(
        decode(b" [ ] ", &p("/3"), &models()).unwrap(),
        Node::Object(ObjectNode {
            id: 3,
            ..Default::default()
        })
    );
    assert_eq!(
        decode(b"[]", &p("/3/0/6"), &models()).unwrap(),
        Node::Resource(Resource::multiple(6, []))
    );
    assert_eq!(
        decode(b"[]", &p("/3/0/9"), &models()),
        Err(FormatError::InvalidValue {
            what: "no value for the single-instance resource"
        })
    );
    assert!(decode(b"[]", &p("/3/0/6/0"), &models()).is_err());
    assert_eq!(enc(&Node::Instance(Instance::new(0, [])), "/3/0"), "[]");
    assert_eq!(decode_values(b"[]", &NO_MODELS).unwrap(), vec![]);
    assert_eq!(enc_values(&[]), "[]");
}

#[test]
fn opaque_is_base64url_without_padding_and_plain_base64_is_accepted() {
    let node = Node::Resource(Resource::single(
        5,
        Value::Opaque(vec![0xfb, 0xff, 1, 2, 3]),
    ));
    let text = enc(&node, "/1024/0/5");
    assert_eq!(text, r#"[{"bn":"/1024/0/5","vd":"-_8BAgM"}]"#);
    assert_eq!(
        decode(text.as_bytes(), &p("/1024/0/5"), &models()).unwrap(),
        node
    );
    assert_eq!(
        decode(
            br#"[{"bn":"/1024/0/5","vd":"+/8BAgM="}]"#,
            &p("/1024/0/5"),
            &NO_MODELS
        )
        .unwrap(),
        node
    );
}

#[test]
fn unknown_labels_are_ignored_but_must_understand_ones_fail() {
    let ok = br#"[{"bver":10,"bu":"Cel","n":"/3303/0/5700","u":"Cel","v":21.5,"ut":60}]"#;
    assert_eq!(
        decode_values(ok, &NO_MODELS).unwrap(),
        vec![tv("/3303/0/5700", Value::Float(21.5), None)]
    );
    for (bad, offset) in [
        (&br#"[{"bver":11,"n":"/3/0/9","v":1}]"#[..], 9),
        (br#"[{"bv":1,"n":"/3/0/9","v":1}]"#, 7),
        (br#"[{"n":"/3/0/9","s":1}]"#, 19),
        (br#"[{"n":"/3/0/9","v":1,"test_":"x"}]"#, 29),
    ] {
        assert!(
            matches!(decode_values(bad, &NO_MODELS), Err(FormatError::Syntax { offset: o, .. }) if o == offset),
            "{}: {:?}",
            String::from_utf8_lossy(bad),
            decode_values(bad, &NO_MODELS)
        );
    }
}

#[test]
fn untyped_numbers_keep_their_kind_and_precision() {
    let values = decode_values(
        br#"[{"bn":"/9/0/","n":"0","v":9007199254740993},{"n":"1","v":18446744073709551615},{"n":"2","v":1.0},{"n":"3","v":-1e3},{"n":"4","v":123456789012345678901234}]"#,
        &NO_MODELS,
    )
    .unwrap();
    let v: Vec<Value> = values.into_iter().map(|t| t.value).collect();
    assert_eq!(
        v,
        vec![
            Value::Integer(9_007_199_254_740_993),
            Value::UnsignedInteger(u64::MAX),
            Value::Float(1.0),
            Value::Float(-1000.0),
            Value::Float(1.2345678901234568e23),
        ]
    );
}

#[test]
fn typed_numbers_follow_the_model() {
    let values = decode_values(
        br#"[{"bn":"/1024/0/","n":"1","v":1.5e1},{"n":"2","v":18446744073709551615},{"n":"3","v":3},{"n":"6","v":1.3674912E9}]"#,
        &models(),
    )
    .unwrap();
    let v: Vec<Value> = values.into_iter().map(|t| t.value).collect();
    assert_eq!(
        v,
        vec![
            Value::Integer(15),
            Value::UnsignedInteger(u64::MAX),
            Value::Float(3.0),
            Value::Time(1_367_491_200),
        ]
    );
    for bad in [
        &br#"[{"n":"/1024/0/1","v":1.5}]"#[..],
        br#"[{"n":"/1024/0/1","v":9223372036854775808}]"#,
        br#"[{"n":"/1024/0/2","v":-1}]"#,
        br#"[{"n":"/1024/0/6","v":0.5}]"#,
    ] {
        assert!(
            matches!(
                decode_values(bad, &models()),
                Err(FormatError::InvalidValue { .. })
            ),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn encode_checks_node_against_path() {
    let inst = Node::Instance(Instance::new(0, []));
    let mut out = b"keep".to_vec();
    assert_eq!(
        encode(&inst, &p("/3/1"), &mut out),
        Err(FormatError::InvalidPath)
    );
    assert_eq!(
        encode(&inst, &p("/3/0/1"), &mut out),
        Err(FormatError::InvalidPath)
    );
    assert_eq!(
        encode(
            &Node::Resource(Resource::single(1, Value::Integer(1))),
            &Path::Resource(3, 65535, 1),
            &mut out
        ),
        Err(FormatError::InvalidPath)
    );
    // A NaN cannot be written; the output is left as it was.
    let nan = Node::Instance(Instance::new(
        0,
        [
            Resource::single(0, Value::Integer(1)),
            Resource::single(1, Value::Float(f64::NAN)),
        ],
    ));
    assert!(matches!(
        encode(&nan, &p("/3/0"), &mut out),
        Err(FormatError::NotRepresentable(_))
    ));
    assert_eq!(out, b"keep");
    assert!(matches!(
        encode_values(&[tv("/3/0", Value::Integer(1), None)], &mut out),
        Err(FormatError::NotRepresentable(_))
    ));
    assert_eq!(out, b"keep");
}

#[test]
fn value_names_use_the_common_prefix() {
    let values = [
        tv("/3/0/1", Value::Integer(1), Some(10.0)),
        tv("/3/0/7/2", Value::Integer(2), None),
    ];
    let text = enc_values(&values);
    assert_eq!(
        text,
        r#"[{"bn":"/3/0/","n":"1","v":1,"t":10},{"n":"7/2","v":2}]"#
    );
    assert_eq!(decode_values(text.as_bytes(), &NO_MODELS).unwrap(), values);
    // The common prefix is itself one of the paths: the base name moves up a level.
    let values = [
        tv("/3/0/1", Value::Integer(1), None),
        tv("/3/0/1/0", Value::Integer(2), None),
    ];
    let text = enc_values(&values);
    assert_eq!(text, r#"[{"bn":"/3/0/","n":"1","v":1},{"n":"1/0","v":2}]"#);
    assert_eq!(decode_values(text.as_bytes(), &NO_MODELS).unwrap(), values);
    // Different objects: full names, no base name (TS Table 7.4.4-7 shape).
    let values = [
        tv("/3/0/1", Value::Integer(1), None),
        tv("/4/0/1", Value::Integer(2), None),
    ];
    assert_eq!(
        enc_values(&values),
        r#"[{"n":"/3/0/1","v":1},{"n":"/4/0/1","v":2}]"#
    );
}

// ---------------------------------------------------------------------------
// Known-bad inputs (regressions)

#[test]
fn regression_record_without_name_or_base_name() {
    let expected = |offset| FormatError::Syntax {
        offset,
        expected: "a record name: \"n\", or a base name \"bn\" on this or an earlier record",
    };
    assert_eq!(decode_values(br#"[{"v":1}]"#, &NO_MODELS), Err(expected(1)));
    assert_eq!(
        decode(br#"[{"bn":"","v":1}]"#, &p("/3/0"), &NO_MODELS),
        Err(expected(1))
    );
    assert_eq!(decode_paths(br#"[{}]"#), Err(expected(1)));
}

#[test]
fn regression_bad_base64() {
    for bad in ["A", "AB=C", "QR", "a b", "AQ===", "é"] {
        let payload = format!(r#"[{{"bn":"/1024/0/5","vd":"{bad}"}}]"#);
        for models in [&models() as &dyn lwm2m_core::model::ModelLookup, &NO_MODELS] {
            assert_eq!(
                decode(payload.as_bytes(), &p("/1024/0/5"), models),
                Err(FormatError::InvalidValue {
                    what: "opaque value is not valid base64"
                }),
                "{bad}"
            );
        }
    }
}

#[test]
fn regression_truncated_payloads() {
    let full = DEVICE_INSTANCE.as_bytes();
    for cut in [0, 1, 2, 10, 30, full.len() - 1] {
        let r = decode(&full[..cut], &p("/3/0"), &models());
        assert!(
            matches!(r, Err(FormatError::Truncated { .. })),
            "cut at {cut}: {r:?}"
        );
    }
    assert_eq!(
        decode(br#"[{"bn":"/3/0/0","vs":"Open"#, &p("/3/0/0"), &models()),
        Err(FormatError::Truncated { offset: 26 })
    );
}

#[test]
fn regression_nesting_100_deep() {
    let deep = "[".repeat(100) + &"]".repeat(100);
    assert_eq!(
        decode(deep.as_bytes(), &p("/3/0"), &NO_MODELS),
        Err(FormatError::TooDeep)
    );
    let in_value = format!(
        r#"[{{"n":"/3/0/0","vs":"x","u":{}1{}}}]"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    assert_eq!(
        decode_values(in_value.as_bytes(), &NO_MODELS),
        Err(FormatError::TooDeep)
    );
}

#[test]
fn regression_number_1e400() {
    for models in [&models() as &dyn lwm2m_core::model::ModelLookup, &NO_MODELS] {
        assert!(matches!(
            decode(
                br#"[{"bn":"/1024/0/3","v":1e400}]"#,
                &p("/1024/0/3"),
                models
            ),
            Err(FormatError::InvalidValue { .. })
        ));
    }
    assert!(matches!(
        decode(
            br#"[{"bn":"/1024/0/1","v":1e400}]"#,
            &p("/1024/0/1"),
            &models()
        ),
        Err(FormatError::InvalidValue { .. })
    ));
    assert!(matches!(
        decode_values(br#"[{"bn":"/1024/0/1","v":1,"t":1e400}]"#, &NO_MODELS),
        Err(FormatError::InvalidValue { .. })
    ));
    assert!(matches!(
        decode_values(
            br#"[{"bn":"/1024/0/1","bt":1e308,"v":1,"t":1e308}]"#,
            &NO_MODELS
        ),
        Err(FormatError::InvalidValue { .. })
    ));
}

#[test]
fn regression_minus_alone() {
    assert!(matches!(
        decode(br#"[{"bn":"/3/0/9","v":-}]"#, &p("/3/0/9"), &models()),
        Err(FormatError::Syntax { offset: 21, .. })
    ));
    assert!(matches!(
        decode(br#"[{"bn":"/3/0/9","v":-"#, &p("/3/0/9"), &models()),
        Err(FormatError::Truncated { offset: 21 })
    ));
}

#[test]
fn regression_unterminated_string() {
    assert_eq!(
        decode(br#"[{"bn":"/3/0/0","vs":"abc}]"#, &p("/3/0/0"), &models()),
        Err(FormatError::Truncated { offset: 27 })
    );
    assert_eq!(
        decode(br#"[{"bn":"/3/0/0,"vs":1}]"#, &p("/3/0/0"), &models()),
        Err(FormatError::Syntax {
            offset: 16,
            expected: "',' or '}'"
        })
    );
}

#[test]
fn regression_lone_surrogate() {
    assert!(matches!(
        decode(
            br#"[{"bn":"/3/0/0","vs":"\ud800"}]"#,
            &p("/3/0/0"),
            &models()
        ),
        Err(FormatError::Syntax { offset: 22, .. })
    ));
    assert!(matches!(
        decode(
            br#"[{"bn":"/3/0/0","vs":"\udc00\ud800"}]"#,
            &p("/3/0/0"),
            &models()
        ),
        Err(FormatError::Syntax { offset: 22, .. })
    ));
    // A correct pair is fine.
    assert_eq!(
        decode(
            br#"[{"bn":"/3/0/0","vs":"\ud83d\ude00"}]"#,
            &p("/3/0/0"),
            &models()
        )
        .unwrap(),
        Node::Resource(Resource::single(0, Value::String("😀".into())))
    );
}

#[test]
fn regression_huge_array_over_element_limit() {
    let record = r#"{"n":"/3/0/6/0","v":1},"#;
    let payload = format!("[{}{{}}]", record.repeat(30_000));
    assert!(matches!(
        decode_values(payload.as_bytes(), &NO_MODELS),
        Err(FormatError::Syntax {
            expected: "fewer JSON values (the element limit was reached)",
            ..
        })
    ));
    let flat = format!("[{}1]", "1,".repeat(70_000));
    assert!(matches!(
        decode_paths(flat.as_bytes()),
        Err(FormatError::Syntax {
            expected: "fewer JSON values (the element limit was reached)",
            ..
        })
    ));
}

#[test]
fn regression_path_with_id_65535() {
    for payload in [
        &br#"[{"bn":"/3/65535/0","vs":"x"}]"#[..],
        br#"[{"bn":"/65535/0/0","vs":"x"}]"#,
        br#"[{"bn":"/3/0/","n":"65535","vs":"x"}]"#,
        br#"[{"n":"/3/0/7/65535","v":1}]"#,
    ] {
        assert_eq!(
            decode_values(payload, &NO_MODELS),
            Err(FormatError::InvalidPath),
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
    assert_eq!(
        decode_paths(br#"[{"n":"/65535"}]"#),
        Err(FormatError::InvalidPath)
    );
    assert_eq!(
        decode_paths(br#"[{"n":"3/0"}]"#),
        Err(FormatError::InvalidPath)
    );
}

#[test]
fn regression_value_type_not_matching_model() {
    let cases: [(&[u8], &str, &str); 6] = [
        (
            br#"[{"bn":"/3/0/9","vs":"100"}]"#,
            "/3/0/9",
            "an Integer resource needs a number (\"v\")",
        ),
        (
            br#"[{"bn":"/3/0/0","v":1}]"#,
            "/3/0/0",
            "a String resource needs \"vs\"",
        ),
        (
            br#"[{"bn":"/1024/0/4","v":1}]"#,
            "/1024/0/4",
            "a Boolean resource needs \"vb\"",
        ),
        (
            br#"[{"bn":"/1024/0/5","vs":"AQID"}]"#,
            "/1024/0/5",
            "an Opaque resource needs \"vd\"",
        ),
        (
            br#"[{"bn":"/1024/0/7","vs":"3:0"}]"#,
            "/1024/0/7",
            "an Objlnk resource needs \"vlo\"",
        ),
        (
            br#"[{"bn":"/1024/0/10","v":1}]"#,
            "/1024/0",
            "an executable resource has no value",
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
    // Resource instance of a single resource, and a single value for a multiple one.
    assert_eq!(
        decode(br#"[{"bn":"/3/0/9/0","v":1}]"#, &p("/3/0"), &models()),
        Err(FormatError::InvalidPath)
    );
    assert_eq!(
        decode(br#"[{"bn":"/3/0/7","v":1}]"#, &p("/3/0"), &models()),
        Err(FormatError::InvalidPath)
    );
    // Bad object link text.
    assert!(matches!(
        decode(
            br#"[{"bn":"/1024/0/7","vlo":"3:65536"}]"#,
            &p("/1024/0/7"),
            &models()
        ),
        Err(FormatError::InvalidValue { .. })
    ));
}

#[test]
fn regression_duplicate_paths() {
    assert_eq!(
        decode(
            br#"[{"bn":"/3/0/","n":"1","vs":"a"},{"n":"1","vs":"b"}]"#,
            &p("/3/0"),
            &models()
        ),
        Err(FormatError::Syntax {
            offset: 33,
            expected: "each resource or resource instance at most once"
        })
    );
    assert!(matches!(
        decode(
            br#"[{"bn":"/3/0/11/","n":"1","v":2},{"n":"1","v":0}]"#,
            &p("/3/0/11"),
            &models()
        ),
        Err(FormatError::Syntax { offset: 33, .. })
    ));
    // Single and multiple at once for the same resource (no model to tell).
    assert!(matches!(
        decode(
            br#"[{"n":"/9/0/1","v":2},{"n":"/9/0/1/0","v":0}]"#,
            &p("/9/0"),
            &NO_MODELS
        ),
        Err(FormatError::Syntax { offset: 22, .. })
    ));
    // Two names in one record.
    assert!(matches!(
        decode_values(br#"[{"n":"/3/0/1","n":"/3/0/2","vs":"a"}]"#, &NO_MODELS),
        Err(FormatError::Syntax { offset: 19, .. })
    ));
    // Two values in one record.
    assert!(matches!(
        decode_values(br#"[{"n":"/3/0/1","vs":"a","v":1}]"#, &NO_MODELS),
        Err(FormatError::Syntax { offset: 28, .. })
    ));
}

#[test]
fn regression_path_outside_request_path() {
    assert_eq!(
        decode(DEVICE_INSTANCE.as_bytes(), &p("/3/1"), &models()),
        Err(FormatError::InvalidPath)
    );
    assert_eq!(
        decode(DEVICE_INSTANCE.as_bytes(), &p("/4"), &models()),
        Err(FormatError::InvalidPath)
    );
    assert_eq!(
        decode(SINGLE_RESOURCE.as_bytes(), &p("/3/0/1"), &models()),
        Err(FormatError::InvalidPath)
    );
    assert_eq!(
        decode(SINGLE_RESOURCE.as_bytes(), &p("/3/0/0/0"), &models()),
        Err(FormatError::InvalidPath)
    );
    // A value must name a resource or resource instance.
    assert_eq!(
        decode(br#"[{"bn":"/3/0","vs":"x"}]"#, &p("/3/0"), &NO_MODELS),
        Err(FormatError::InvalidPath)
    );
    assert!(matches!(
        decode(SINGLE_RESOURCE.as_bytes(), &p("/"), &models()),
        Err(FormatError::NotRepresentable(_))
    ));
}

#[test]
fn regression_wrong_json_shapes() {
    for (payload, offset) in [
        (&br#"{"bn":"/3/0/0","vs":"x"}"#[..], 0),
        (br#"[1]"#, 1),
        (br#"[{"n":1,"v":1}]"#, 6),
        (br#"[{"n":"/3/0/0","vs":1}]"#, 20),
        (br#"[{"n":"/3/0/0","vb":"true"}]"#, 20),
        (br#"[{"n":"/3/0/0","v":"1"}]"#, 19),
        (br#"[{"n":"/3/0/0","t":"1","v":1}]"#, 19),
        (br#"[{"n":"/3/0/0","v":1},]"#, 22),
        (br#"[{"n":"/3/0/0","v":01}]"#, 20),
    ] {
        assert!(
            matches!(decode_values(payload, &NO_MODELS), Err(FormatError::Syntax { offset: o, .. }) if o == offset),
            "{}: {:?}",
            String::from_utf8_lossy(payload),
            decode_values(payload, &NO_MODELS)
        );
    }
    assert!(matches!(
        decode_paths(br#"[{"n":"/3/0/0","v":1}]"#),
        Err(FormatError::Syntax { offset: 1, .. })
    ));
    assert!(matches!(
        decode_values(br#"[{"n":"/3/0/0"}]"#, &NO_MODELS),
        Err(FormatError::Syntax { offset: 1, .. })
    ));
    assert_eq!(
        decode_values(b"[\"\xc3\x28\"]", &NO_MODELS),
        Err(FormatError::InvalidUtf8)
    );
}

// ---------------------------------------------------------------------------
// Properties

proptest! {
    #[test]
    fn typed_instance_round_trips(inst in support::arb_typed_instance()) {
        let node = Node::Instance(inst.clone());
        let path = Path::Instance(1024, inst.id);
        let mut out = Vec::new();
        encode(&node, &path, &mut out).unwrap();
        prop_assert_eq!(decode(&out, &path, &models()).unwrap(), node.clone());
        // Same node as part of its object (an empty instance has no record there).
        prop_assume!(!inst.resources.is_empty());
        let mut obj = ObjectNode { id: 1024, ..Default::default() };
        obj.instances.insert(inst.id, inst);
        let obj = Node::Object(obj);
        let mut out = Vec::new();
        encode(&obj, &Path::Object(1024), &mut out).unwrap();
        prop_assert_eq!(decode(&out, &Path::Object(1024), &models()).unwrap(), obj);
    }

    #[test]
    fn untyped_object_round_trips(obj in support::arb_untyped_object()) {
        let path = Path::Object(obj.id);
        let node = Node::Object(obj);
        let mut out = Vec::new();
        encode(&node, &path, &mut out).unwrap();
        prop_assert_eq!(decode(&out, &path, &NO_MODELS).unwrap(), node);
    }

    #[test]
    fn values_round_trip(values in support::arb_values()) {
        let mut out = Vec::new();
        encode_values(&values, &mut out).unwrap();
        prop_assert_eq!(decode_values(&out, &NO_MODELS).unwrap(), values);
    }

    #[test]
    fn paths_round_trip(paths in proptest::collection::vec(support::arb_path(), 0..8)) {
        let mut out = Vec::new();
        encode_paths(&paths, &mut out).unwrap();
        prop_assert_eq!(decode_paths(&out).unwrap(), paths);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode(&bytes, &p("/3/0"), &models());
        let _ = decode_values(&bytes, &models());
        let _ = decode_paths(&bytes);
    }
}
