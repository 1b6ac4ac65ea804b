//! application/cbor (60): one value per payload, every type, and known-bad inputs.

mod support;

use lwm2m_core::format::{cbor, FormatError};
use lwm2m_core::model::{Node, ObjLnk, Path, Resource, Value, NO_MODELS};
use support::{cbor_models as models, hex, ALL_TYPES};

fn res(r: u16) -> Path {
    Path::Resource(ALL_TYPES, 0, r)
}

fn decode_res(payload: &str, r: u16) -> Result<Value, FormatError> {
    match cbor::decode(&hex(payload), &res(r), &models())? {
        Node::Resource(Resource {
            value: lwm2m_core::model::ResourceValue::Single(v),
            ..
        }) => Ok(v),
        other => panic!("unexpected node {other:?}"),
    }
}

#[test]
fn every_type_decodes_and_encodes_byte_for_byte() {
    let cases: Vec<(u16, &str, Value)> = vec![
        (
            0,
            "74 4f70656e204d6f62696c6520416c6c69616e6365",
            Value::String("Open Mobile Alliance".into()),
        ),
        (1, "18 64", Value::Integer(100)),
        (1, "3b 7fffffffffffffff", Value::Integer(i64::MIN)),
        (2, "1b ffffffffffffffff", Value::UnsignedInteger(u64::MAX)),
        (3, "f9 3e00", Value::Float(1.5)),
        (3, "fa 47c35000", Value::Float(100000.0)),
        (3, "fb 3ff199999999999a", Value::Float(1.1)),
        (4, "f4", Value::Boolean(false)),
        (5, "43 010203", Value::Opaque(vec![1, 2, 3])),
        (6, "c1 1a 5182428f", Value::Time(1_367_491_215)),
        (6, "c1 3a 0001869f", Value::Time(-100_000)),
        (
            7,
            "63 333a30",
            Value::ObjLnk(ObjLnk {
                object: 3,
                instance: 0,
            }),
        ),
        (7, "6b 36353533353a3635353335", Value::ObjLnk(ObjLnk::NULL)),
        (8, "66 3c2f332f303e", Value::CoreLnk("</3/0>".into())),
    ];
    for (r, payload, value) in cases {
        assert_eq!(
            decode_res(payload, r),
            Ok(value.clone()),
            "decode {payload}"
        );
        let mut out = Vec::new();
        cbor::encode(
            &Node::Resource(Resource::single(r, value)),
            &res(r),
            &mut out,
        )
        .unwrap();
        assert_eq!(out, hex(payload), "encode {payload}");
    }
}

#[test]
fn lenient_forms_are_accepted() {
    // Integers for a Float, plain integers and float seconds for a Time,
    // half floats, decimal fractions, indefinite strings.
    assert_eq!(decode_res("05", 3), Ok(Value::Float(5.0)));
    assert_eq!(decode_res("24", 3), Ok(Value::Float(-5.0)));
    assert_eq!(decode_res("c4 82 21 19 6ab3", 3), Ok(Value::Float(273.15)));
    assert_eq!(decode_res("1a 5182428f", 6), Ok(Value::Time(1_367_491_215)));
    assert_eq!(
        decode_res("c1 fb 41d4609090a00000", 6),
        Ok(Value::Time(1_367_491_138))
    );
    assert_eq!(decode_res("c1 f9 bc00", 6), Ok(Value::Time(-1)));
    assert_eq!(
        decode_res("7f 62 4f70 62 656e ff", 0),
        Ok(Value::String("Open".into()))
    );
    assert_eq!(
        decode_res("5f 41 01 42 0203 ff", 5),
        Ok(Value::Opaque(vec![1, 2, 3]))
    );
}

#[test]
fn without_model_the_item_decides() {
    let cases: [(&str, Value); 9] = [
        ("18 64", Value::Integer(100)),
        ("1b ffffffffffffffff", Value::UnsignedInteger(u64::MAX)),
        ("38 63", Value::Integer(-100)),
        ("f9 3e00", Value::Float(1.5)),
        ("f5", Value::Boolean(true)),
        ("61 78", Value::String("x".into())),
        ("41 78", Value::Opaque(vec![0x78])),
        ("c1 05", Value::Time(5)),
        ("63 333a30", Value::String("3:0".into())),
    ];
    for (payload, value) in cases {
        assert_eq!(
            cbor::decode(
                &hex(payload),
                &Path::ResourceInstance(1, 2, 3, 4),
                &NO_MODELS
            ),
            Ok(Node::ResourceInstance { id: 4, value }),
            "{payload}"
        );
    }
}

#[test]
fn paths_and_nodes_that_do_not_fit() {
    // Not a resource path, or a multiple-instance resource.
    assert!(matches!(
        cbor::decode(&hex("01"), &Path::Instance(3, 0), &models()),
        Err(FormatError::NotRepresentable(_))
    ));
    assert!(matches!(
        cbor::decode(&hex("01"), &Path::Resource(3, 0, 6), &models()),
        Err(FormatError::NotRepresentable(_))
    ));
    // A single-instance resource has no instances.
    assert!(matches!(
        cbor::decode(&hex("01"), &Path::ResourceInstance(3, 0, 9, 0), &models()),
        Err(FormatError::NotRepresentable(_))
    ));
    // ... but one instance of a multiple resource is fine.
    assert_eq!(
        cbor::decode(&hex("01"), &Path::ResourceInstance(3, 0, 6, 0), &models()),
        Ok(Node::ResourceInstance {
            id: 0,
            value: Value::Integer(1)
        })
    );
    let mut out = Vec::new();
    let multi = Node::Resource(Resource::multiple(6, [(0, Value::Integer(1))]));
    assert!(cbor::encode(&multi, &Path::Resource(3, 0, 6), &mut out).is_err());
    let single = Node::Resource(Resource::single(9, Value::Integer(1)));
    assert_eq!(
        cbor::encode(&single, &Path::Resource(3, 0, 8), &mut out),
        Err(FormatError::InvalidPath)
    );
    assert!(cbor::encode(&single, &Path::Instance(3, 0), &mut out).is_err());
}

#[test]
fn regression_known_bad_payloads() {
    let p = Path::Resource(3, 0, 9);
    let cases: [(&str, &str); 14] = [
        ("", "empty payload"),
        ("fb 3ff1 9999", "truncated double"),
        ("f9 3e", "truncated half"),
        ("19 01", "truncated integer"),
        ("9b ffffffffffffffff", "huge array"),
        ("5b ffffffffffffffff 00", "huge byte string"),
        ("01 02", "trailing bytes"),
        ("81 01", "array instead of a value"),
        ("a0", "map instead of a value"),
        ("f6", "null"),
        ("c2 41 01", "bignum tag"),
        ("c1 c1 01", "nested time tags"),
        ("ff", "lone break"),
        ("1c", "reserved additional info"),
    ];
    for (payload, what) in cases {
        assert!(
            cbor::decode(&hex(payload), &p, &NO_MODELS).is_err(),
            "{what}"
        );
    }
    assert_eq!(
        cbor::decode(&hex("fb 3ff1 9999"), &p, &NO_MODELS),
        Err(FormatError::Truncated { offset: 5 })
    );
    assert_eq!(
        cbor::decode(&hex("9b ffffffffffffffff"), &p, &NO_MODELS)
            .unwrap_err()
            .coap_code(),
        (4, 0)
    );
    // Wrong types for the model.
    for (payload, r) in [
        ("61 78", 1),
        ("01", 0),
        ("20", 2),
        ("f5", 3),
        ("62 333a", 7),
        ("f9 3e00", 6),
        ("01", 9),
    ] {
        assert!(
            matches!(
                decode_res(payload, r),
                Err(FormatError::InvalidValue { .. })
            ),
            "{payload} for {r}"
        );
    }
    // Out of range for the type.
    assert!(matches!(
        decode_res("1b ffffffffffffffff", 1),
        Err(FormatError::InvalidValue { .. })
    ));
    assert!(matches!(
        decode_res("3b ffffffffffffffff", 1),
        Err(FormatError::InvalidValue { .. })
    ));
    assert!(matches!(
        decode_res("c1 fb 7ff0000000000000", 6),
        Err(FormatError::InvalidValue { .. })
    ));
    assert_eq!(decode_res("61 ff", 0), Err(FormatError::InvalidUtf8));
}
