//! Plain text: `text/plain;charset=utf-8`, content format 0.
//!
//! Carries the value of one single-instance resource (`/O/I/R`) or one
//! resource instance (`/O/I/R/RI`) as UTF-8 text:
//!
//! | type | text |
//! | --- | --- |
//! | Integer, Unsigned Integer | decimal (`-12`, `42`; a leading `+` is accepted) |
//! | Float | decimal, exponent accepted (`-1.5`, `2.5e3`); finite values only |
//! | Boolean | `0` or `1` |
//! | String, Corelnk | the text itself |
//! | Time | decimal seconds since the Unix epoch |
//! | Objlnk | `object:instance` (`3:0`) |
//! | Opaque | base64, standard alphabet, with padding (RFC 4648 §4) |
//!
//! Decoding is strict: no surrounding whitespace, and text that does not parse
//! as the model's type is a [`FormatError::InvalidValue`] (base64 errors are a
//! [`FormatError::Syntax`] with the offending offset). When the resource's
//! model is unknown the text is kept as [`Value::String`].
//!
//! Encoding choices: floats are written by Rust's shortest round-trip
//! formatting in plain decimal (no exponent, so `1e20` is written in full):
//! every decimal parser reads it and the value comes back bit for bit. NaN and
//! infinities have no text form in the TS and are refused.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use super::single_value::{single_value, value_node, value_path};
use super::{base64, FormatError};
use crate::model::{ModelLookup, Node, ObjLnk, Path, ResourceType, Value};

/// Decodes a text/plain payload that belongs to `path` (`/O/I/R` or `/O/I/R/RI`).
///
/// ```
/// use lwm2m_core::format::text;
/// use lwm2m_core::model::{Node, Path, Resource, Value, NO_MODELS};
/// let node = text::decode(b"Open Mobile Alliance", &Path::Resource(3, 0, 0), &NO_MODELS).unwrap();
/// assert_eq!(node, Node::Resource(Resource::single(0, Value::String("Open Mobile Alliance".into()))));
/// ```
pub fn decode(payload: &[u8], path: &Path, models: &dyn ModelLookup) -> Result<Node, FormatError> {
    let (object, rid) = value_path(path, ONLY_VALUES)?;
    let model = models.resource(object, rid);
    if matches!(path, Path::Resource(..)) && model.is_some_and(|m| m.multiple) {
        return Err(FormatError::NotRepresentable(NO_MULTIPLE));
    }
    let text = core::str::from_utf8(payload).map_err(|_| FormatError::InvalidUtf8)?;
    let value = match model.map(|m| m.resource_type) {
        None | Some(ResourceType::None) => Value::String(String::from(text)),
        Some(ty) => parse_value(text, ty)?,
    };
    Ok(value_node(path, rid, value))
}

const ONLY_VALUES: &str =
    "text/plain carries only the value of one resource or resource instance (/O/I/R or /O/I/R/RI)";
const NO_MULTIPLE: &str = "text/plain cannot carry a multiple-instance resource";

/// Parses `text` as a value of type `ty`.
pub fn parse_value(text: &str, ty: ResourceType) -> Result<Value, FormatError> {
    Ok(match ty {
        ResourceType::Integer => {
            Value::Integer(text.parse().map_err(|_| FormatError::InvalidValue {
                what: "text/plain integer: expected an optional sign and decimal digits",
            })?)
        }
        ResourceType::Time => Value::Time(text.parse().map_err(|_| FormatError::InvalidValue {
            what: "text/plain time: expected decimal seconds since the Unix epoch",
        })?),
        ResourceType::UnsignedInteger => {
            Value::UnsignedInteger(text.parse().map_err(|_| FormatError::InvalidValue {
                what: "text/plain unsigned integer: expected decimal digits",
            })?)
        }
        ResourceType::Float => Value::Float(parse_float(text)?),
        ResourceType::Boolean => match text {
            "0" => Value::Boolean(false),
            "1" => Value::Boolean(true),
            _ => {
                return Err(FormatError::InvalidValue {
                    what: "text/plain boolean: expected 0 or 1",
                })
            }
        },
        ResourceType::String | ResourceType::None => Value::String(String::from(text)),
        ResourceType::CoreLnk => Value::CoreLnk(String::from(text)),
        ResourceType::ObjLnk => Value::ObjLnk(parse_objlnk(text)?),
        ResourceType::Opaque => Value::Opaque(base64::decode_strict(text)?),
    })
}

fn parse_float(text: &str) -> Result<f64, FormatError> {
    const BAD: FormatError = FormatError::InvalidValue {
        what: "text/plain float: expected a finite decimal number such as -1.5 or 2.5e3",
    };
    // Rust's parser also takes "inf", "NaN" and "infinity": not decimal numbers.
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
    {
        return Err(BAD);
    }
    let v: f64 = text.parse().map_err(|_| BAD)?;
    // "1e400" parses to infinity: out of range rather than a value.
    if !v.is_finite() {
        return Err(BAD);
    }
    Ok(v)
}

fn parse_objlnk(text: &str) -> Result<ObjLnk, FormatError> {
    const BAD: FormatError = FormatError::InvalidValue {
        what: "text/plain objlnk: expected object:instance, two decimal ids up to 65535",
    };
    let (o, i) = text.split_once(':').ok_or(BAD)?;
    let id = |s: &str| -> Result<u16, FormatError> {
        // Digits only: u16::from_str would also take a leading '+'.
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BAD);
        }
        s.parse().map_err(|_| BAD)
    };
    Ok(ObjLnk {
        object: id(o)?,
        instance: id(i)?,
    })
}

/// Encodes `node` (a single resource at `/O/I/R` or a resource instance at
/// `/O/I/R/RI`) as text, appending to `out`.
///
/// ```
/// use lwm2m_core::format::text;
/// use lwm2m_core::model::{Node, ObjLnk, Path, Resource, Value};
/// let mut out = Vec::new();
/// let node = Node::Resource(Resource::single(1, Value::ObjLnk(ObjLnk { object: 3, instance: 0 })));
/// text::encode(&node, &Path::Resource(9, 0, 1), &mut out).unwrap();
/// assert_eq!(out, b"3:0");
/// ```
pub fn encode(node: &Node, path: &Path, out: &mut Vec<u8>) -> Result<(), FormatError> {
    let value = single_value(node, path, ONLY_VALUES, NO_MULTIPLE)?;
    out.extend_from_slice(format_value(value)?.as_bytes());
    Ok(())
}

/// Formats one value as text/plain.
pub fn format_value(value: &Value) -> Result<String, FormatError> {
    let mut s = String::new();
    // Writing into a String cannot fail.
    let _ = match value {
        Value::Integer(v) | Value::Time(v) => write!(s, "{v}"),
        Value::UnsignedInteger(v) => write!(s, "{v}"),
        Value::Float(v) => {
            if !v.is_finite() {
                return Err(FormatError::NotRepresentable(
                    "text/plain has no form for NaN or infinite floats",
                ));
            }
            write!(s, "{v}")
        }
        Value::Boolean(b) => write!(s, "{}", u8::from(*b)),
        Value::String(t) | Value::CoreLnk(t) => write!(s, "{t}"),
        Value::ObjLnk(l) => write!(s, "{}:{}", l.object, l.instance),
        Value::Opaque(b) => {
            s = base64::encode(b, base64::Alphabet::Standard, true);
            Ok(())
        }
    };
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::test_models::{object, registry};
    use crate::model::{ObjectModel, Resource, ResourceValue, NO_MODELS};
    use alloc::collections::BTreeMap;
    use alloc::vec;
    use proptest::prelude::*;

    /// Test object 9000: resource `i` (single) and `10 + i` (multiple) have type `TYPES[i]`.
    const OBJ: u16 = 9000;
    const TYPES: [ResourceType; 10] = [
        ResourceType::Integer,
        ResourceType::UnsignedInteger,
        ResourceType::Float,
        ResourceType::Boolean,
        ResourceType::String,
        ResourceType::Opaque,
        ResourceType::Time,
        ResourceType::ObjLnk,
        ResourceType::CoreLnk,
        ResourceType::None,
    ];

    fn models() -> BTreeMap<u16, ObjectModel> {
        let mut resources = vec![];
        for (i, &resource_type) in TYPES.iter().enumerate() {
            resources.push((i as u16, resource_type, false));
            resources.push((10 + i as u16, resource_type, true));
        }
        registry([object(OBJ, true, &resources)])
    }

    fn rid(ty: ResourceType) -> u16 {
        TYPES.iter().position(|&t| t == ty).unwrap() as u16
    }

    fn dec(ty: ResourceType, text: &[u8]) -> Result<Value, FormatError> {
        let r = rid(ty);
        match decode(text, &Path::Resource(OBJ, 0, r), &models())? {
            Node::Resource(Resource {
                id,
                value: ResourceValue::Single(v),
            }) if id == r => Ok(v),
            other => panic!("unexpected node {other:?}"),
        }
    }

    fn enc(value: Value) -> Result<Vec<u8>, FormatError> {
        let mut out = Vec::new();
        let node = Node::Resource(Resource::single(1, value));
        encode(&node, &Path::Resource(OBJ, 0, 1), &mut out)?;
        Ok(out)
    }

    #[test]
    fn decodes_every_type() {
        use ResourceType as T;
        assert_eq!(dec(T::Integer, b"-42"), Ok(Value::Integer(-42)));
        assert_eq!(dec(T::Integer, b"+7"), Ok(Value::Integer(7)));
        assert_eq!(
            dec(T::UnsignedInteger, b"18446744073709551615"),
            Ok(Value::UnsignedInteger(u64::MAX))
        );
        assert_eq!(dec(T::Float, b"-1.5"), Ok(Value::Float(-1.5)));
        assert_eq!(dec(T::Float, b"2.5e3"), Ok(Value::Float(2500.0)));
        assert_eq!(dec(T::Float, b"7"), Ok(Value::Float(7.0)));
        assert_eq!(dec(T::Boolean, b"0"), Ok(Value::Boolean(false)));
        assert_eq!(dec(T::Boolean, b"1"), Ok(Value::Boolean(true)));
        assert_eq!(
            dec(T::String, "héllo".as_bytes()),
            Ok(Value::String("héllo".into()))
        );
        assert_eq!(dec(T::String, b""), Ok(Value::String(String::new())));
        assert_eq!(dec(T::Opaque, b"AQID"), Ok(Value::Opaque(vec![1, 2, 3])));
        assert_eq!(dec(T::Time, b"1367491215"), Ok(Value::Time(1_367_491_215)));
        assert_eq!(
            dec(T::ObjLnk, b"3:0"),
            Ok(Value::ObjLnk(ObjLnk {
                object: 3,
                instance: 0
            }))
        );
        assert_eq!(
            dec(T::ObjLnk, b"65535:65535"),
            Ok(Value::ObjLnk(ObjLnk::NULL))
        );
        assert_eq!(
            dec(T::CoreLnk, b"</3/0>"),
            Ok(Value::CoreLnk("</3/0>".into()))
        );
    }

    #[test]
    fn encodes_every_type() {
        let text = |v| String::from_utf8(enc(v).unwrap()).unwrap();
        assert_eq!(text(Value::Integer(-42)), "-42");
        assert_eq!(
            text(Value::UnsignedInteger(u64::MAX)),
            "18446744073709551615"
        );
        assert_eq!(text(Value::Float(-1.5)), "-1.5");
        assert_eq!(text(Value::Float(1e20)), "100000000000000000000");
        assert_eq!(text(Value::Float(0.1)), "0.1");
        assert_eq!(text(Value::Boolean(true)), "1");
        assert_eq!(text(Value::Boolean(false)), "0");
        assert_eq!(
            text(Value::String("Open Mobile Alliance".into())),
            "Open Mobile Alliance"
        );
        assert_eq!(text(Value::Opaque(b"foobar".to_vec())), "Zm9vYmFy");
        assert_eq!(text(Value::Time(1_367_491_215)), "1367491215");
        assert_eq!(
            text(Value::ObjLnk(ObjLnk {
                object: 3,
                instance: 0
            })),
            "3:0"
        );
        assert_eq!(text(Value::CoreLnk("</3/0>".into())), "</3/0>");
        assert!(matches!(
            enc(Value::Float(f64::NAN)),
            Err(FormatError::NotRepresentable(_))
        ));
        assert!(matches!(
            enc(Value::Float(f64::NEG_INFINITY)),
            Err(FormatError::NotRepresentable(_))
        ));
    }

    #[test]
    fn resource_instance_path() {
        let path = Path::ResourceInstance(OBJ, 0, 10, 3);
        let node = decode(b"99", &path, &models()).unwrap();
        assert_eq!(
            node,
            Node::ResourceInstance {
                id: 3,
                value: Value::Integer(99)
            }
        );
        let mut out = Vec::new();
        encode(&node, &path, &mut out).unwrap();
        assert_eq!(out, b"99");
    }

    #[test]
    fn unknown_model_keeps_the_text() {
        assert_eq!(
            decode(b"12abc", &Path::Resource(4242, 0, 1), &NO_MODELS),
            Ok(Node::Resource(Resource::single(
                1,
                Value::String("12abc".into())
            )))
        );
        // An executable (untyped) resource keeps the text too.
        assert_eq!(dec(ResourceType::None, b"x"), Ok(Value::String("x".into())));
    }

    #[test]
    fn regression_integer_with_trailing_letters() {
        assert!(matches!(
            dec(ResourceType::Integer, b"12abc"),
            Err(FormatError::InvalidValue { .. })
        ));
    }

    #[test]
    fn text_that_does_not_fit_the_type_is_refused() {
        use ResourceType as T;
        let bad: [(T, &[u8]); 22] = [
            (T::Integer, b""),
            (T::Integer, b" 1"),
            (T::Integer, b"1 "),
            (T::Integer, b"1.0"),
            (T::Integer, b"9223372036854775808"),
            (T::UnsignedInteger, b"-1"),
            (T::Time, b"12:00"),
            (T::Float, b"inf"),
            (T::Float, b"NaN"),
            (T::Float, b"1e400"),
            (T::Float, b"1,5"),
            (T::Float, b""),
            (T::Boolean, b"2"),
            (T::Boolean, b"true"),
            (T::Boolean, b""),
            (T::ObjLnk, b"3"),
            (T::ObjLnk, b"3:"),
            (T::ObjLnk, b":0"),
            (T::ObjLnk, b"3:0:1"),
            (T::ObjLnk, b"65536:0"),
            (T::ObjLnk, b"+3:0"),
            (T::ObjLnk, b"3: 0"),
        ];
        for (ty, text) in bad {
            assert!(
                matches!(dec(ty, text), Err(FormatError::InvalidValue { .. })),
                "{ty:?} {:?} must be refused",
                core::str::from_utf8(text)
            );
        }
    }

    #[test]
    fn regression_invalid_utf8() {
        assert_eq!(
            dec(ResourceType::String, &[0xC3, 0x28]),
            Err(FormatError::InvalidUtf8)
        );
        assert_eq!(
            decode(&[0xFF], &Path::Resource(4242, 0, 1), &NO_MODELS),
            Err(FormatError::InvalidUtf8)
        );
    }

    #[test]
    fn only_single_values_are_representable() {
        let m = models();
        for path in [Path::Root, Path::Object(OBJ), Path::Instance(OBJ, 0)] {
            assert!(matches!(
                decode(b"1", &path, &m),
                Err(FormatError::NotRepresentable(_))
            ));
        }
        // A multiple-instance resource at a resource path.
        assert!(matches!(
            decode(b"1", &Path::Resource(OBJ, 0, 10), &m),
            Err(FormatError::NotRepresentable(_))
        ));
        let mut out = Vec::new();
        let multi = Node::Resource(Resource::multiple(10, [(0, Value::Integer(1))]));
        assert!(matches!(
            encode(&multi, &Path::Resource(OBJ, 0, 10), &mut out),
            Err(FormatError::NotRepresentable(_))
        ));
        let inst = Node::Instance(crate::model::Instance::new(0, []));
        assert!(matches!(
            encode(&inst, &Path::Instance(OBJ, 0), &mut out),
            Err(FormatError::NotRepresentable(_))
        ));
        let single = Node::Resource(Resource::single(1, Value::Integer(1)));
        assert_eq!(
            encode(&single, &Path::Resource(OBJ, 0, 2), &mut out),
            Err(FormatError::InvalidPath)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn base64_rfc4648_vectors() {
        let vectors: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ];
        for (raw, text) in vectors {
            assert_eq!(base64::encode(raw, base64::Alphabet::Standard, true), text);
            assert_eq!(base64::decode_strict(text).as_deref(), Ok(raw));
        }
        assert_eq!(
            base64::encode(&[0xFB, 0xFF, 0xBF], base64::Alphabet::Standard, true),
            "+/+/"
        );
        assert_eq!(base64::decode_strict("+/+/"), Ok(vec![0xFB, 0xFF, 0xBF]));
    }

    #[test]
    fn regression_base64_bad_padding() {
        let bad: [(&str, usize); 10] = [
            ("Zg=", 3),      // length not a multiple of 4
            ("Zg", 2),       // padding missing
            ("Z===", 1),     // three '='
            ("====", 0),     // all padding
            ("Zg==Zg==", 2), // padding before the end
            ("Zm=v", 2),     // '=' inside a group
            ("Zh==", 1),     // unused bits not zero
            ("Zm9=", 2),     // unused bits not zero
            ("Zm9v\n", 4),   // no whitespace
            ("Zm-v", 2),     // URL alphabet is not base64
        ];
        for (text, offset) in bad {
            match base64::decode_strict(text) {
                Err(FormatError::Syntax { offset: o, .. }) => assert_eq!(o, offset, "{text:?}"),
                other => panic!("{text:?} must be refused, got {other:?}"),
            }
        }
        // Through the text format: an opaque resource with bad base64.
        assert!(matches!(
            dec(ResourceType::Opaque, b"Zg="),
            Err(FormatError::Syntax { .. })
        ));
    }

    fn value_of(ty: ResourceType) -> BoxedStrategy<Value> {
        match ty {
            ResourceType::Integer => any::<i64>().prop_map(Value::Integer).boxed(),
            ResourceType::Time => any::<i64>().prop_map(Value::Time).boxed(),
            ResourceType::UnsignedInteger => any::<u64>().prop_map(Value::UnsignedInteger).boxed(),
            ResourceType::Float => prop_oneof![
                any::<f64>().prop_filter("finite", |v| v.is_finite()),
                any::<f32>()
                    .prop_filter("finite", |v| v.is_finite())
                    .prop_map(f64::from),
                prop::sample::select(vec![0.0, -0.0, 0.1, 5e-324, f64::MAX, f64::MIN]),
            ]
            .prop_map(Value::Float)
            .boxed(),
            ResourceType::Boolean => any::<bool>().prop_map(Value::Boolean).boxed(),
            ResourceType::String | ResourceType::None => {
                any::<String>().prop_map(Value::String).boxed()
            }
            ResourceType::CoreLnk => any::<String>().prop_map(Value::CoreLnk).boxed(),
            ResourceType::Opaque => prop::collection::vec(any::<u8>(), 0..100)
                .prop_map(Value::Opaque)
                .boxed(),
            ResourceType::ObjLnk => (any::<u16>(), any::<u16>())
                .prop_map(|(object, instance)| Value::ObjLnk(ObjLnk { object, instance }))
                .boxed(),
        }
    }

    proptest! {
        #[test]
        fn every_type_roundtrips_at_both_depths(
            (ty, value) in prop::sample::select(TYPES.to_vec())
                .prop_flat_map(|ty| (Just(ty), value_of(ty))),
            riid in 0..=crate::model::MAX_ID,
        ) {
            let m = models();
            let r = rid(ty);
            let node = Node::Resource(Resource::single(r, value.clone()));
            let path = Path::Resource(OBJ, 0, r);
            let mut out = Vec::new();
            encode(&node, &path, &mut out).unwrap();
            prop_assert_eq!(decode(&out, &path, &m).unwrap(), node);

            let node = Node::ResourceInstance { id: riid, value };
            let path = Path::ResourceInstance(OBJ, 0, 10 + r, riid);
            let mut out = Vec::new();
            encode(&node, &path, &mut out).unwrap();
            prop_assert_eq!(decode(&out, &path, &m).unwrap(), node);
        }

        #[test]
        fn base64_roundtrips(data in prop::collection::vec(any::<u8>(), 0..200)) {
            let text = base64::encode(&data, base64::Alphabet::Standard, true);
            prop_assert_eq!(text.len() % 4, 0);
            prop_assert_eq!(base64::decode_strict(&text).unwrap(), data);
        }

        #[test]
        fn arbitrary_text_never_panics_and_reencodes_stably(
            text in prop::collection::vec(any::<u8>(), 0..24),
            r in 0u16..20,
        ) {
            let m = models();
            let path = Path::Resource(OBJ, 0, r);
            if let Ok(node) = decode(&text, &path, &m) {
                let mut out = Vec::new();
                encode(&node, &path, &mut out).unwrap();
                prop_assert_eq!(decode(&out, &path, &m).unwrap(), node);
            }
        }
    }
}
