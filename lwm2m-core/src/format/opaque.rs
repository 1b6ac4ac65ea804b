//! Opaque: `application/octet-stream`, content format 42.
//!
//! The payload is the raw bytes of one opaque value: a single-instance
//! resource (`/O/I/R`) or one resource instance (`/O/I/R/RI`), and only of
//! type Opaque. A resource whose model is unknown is taken as opaque (there
//! is nothing else its bytes could be in this format). Any other type, a
//! multiple-instance resource, or a shallower path is refused with a typed
//! error: decoding a payload for a known non-opaque resource is a
//! [`FormatError::InvalidValue`], encoding a non-opaque value or a node at
//! another depth is a [`FormatError::NotRepresentable`].

use alloc::vec::Vec;

use super::single_value::{single_value, value_node, value_path};
use super::FormatError;
use crate::model::{ModelLookup, Node, Path, ResourceType, Value};

const ONLY_VALUES: &str =
    "application/octet-stream carries one opaque resource or resource instance value";
const NO_MULTIPLE: &str = "application/octet-stream cannot carry a multiple-instance resource";

/// Decodes an opaque payload that belongs to `path` (`/O/I/R` or `/O/I/R/RI`).
///
/// ```
/// use lwm2m_core::format::opaque;
/// use lwm2m_core::model::{Node, Path, Resource, Value, NO_MODELS};
/// let node = opaque::decode(&[1, 2, 3], &Path::Resource(5, 0, 0), &NO_MODELS).unwrap();
/// assert_eq!(node, Node::Resource(Resource::single(0, Value::Opaque(vec![1, 2, 3]))));
/// ```
pub fn decode(payload: &[u8], path: &Path, models: &dyn ModelLookup) -> Result<Node, FormatError> {
    let (object, rid) = value_path(path, ONLY_VALUES)?;
    if let Some(model) = models.resource(object, rid) {
        if matches!(path, Path::Resource(..)) && model.multiple {
            return Err(FormatError::NotRepresentable(NO_MULTIPLE));
        }
        if model.resource_type != ResourceType::Opaque {
            return Err(FormatError::InvalidValue {
                what: "application/octet-stream is only for resources of type Opaque",
            });
        }
    }
    let value = Value::Opaque(payload.to_vec());
    Ok(value_node(path, rid, value))
}

/// Encodes an opaque value (single resource at `/O/I/R` or resource instance
/// at `/O/I/R/RI`), appending its bytes to `out`.
///
/// ```
/// use lwm2m_core::format::opaque;
/// use lwm2m_core::model::{Node, Path, Value};
/// let mut out = Vec::new();
/// let node = Node::ResourceInstance { id: 2, value: Value::Opaque(vec![0xCA, 0xFE]) };
/// opaque::encode(&node, &Path::ResourceInstance(5, 0, 0, 2), &mut out).unwrap();
/// assert_eq!(out, [0xCA, 0xFE]);
/// ```
pub fn encode(node: &Node, path: &Path, out: &mut Vec<u8>) -> Result<(), FormatError> {
    let value = single_value(node, path, ONLY_VALUES, NO_MULTIPLE)?;
    match value {
        Value::Opaque(bytes) => {
            out.extend_from_slice(bytes);
            Ok(())
        }
        _ => Err(FormatError::NotRepresentable(
            "application/octet-stream carries only Opaque values",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::test_models::{object, registry};
    use crate::model::{ObjectModel, Resource, NO_MODELS};
    use alloc::collections::BTreeMap;
    use alloc::vec;
    use proptest::prelude::*;

    /// Object 9000: 0 opaque single, 1 opaque multiple, 2 string, 3 integer.
    fn models() -> BTreeMap<u16, ObjectModel> {
        registry([object(
            9000,
            true,
            &[
                (0, ResourceType::Opaque, false),
                (1, ResourceType::Opaque, true),
                (2, ResourceType::String, false),
                (3, ResourceType::Integer, false),
            ],
        )])
    }

    #[test]
    fn opaque_resource_and_resource_instance() {
        let m = models();
        assert_eq!(
            decode(&[0, 0xFF], &Path::Resource(9000, 0, 0), &m),
            Ok(Node::Resource(Resource::single(
                0,
                Value::Opaque(vec![0, 0xFF])
            )))
        );
        assert_eq!(
            decode(&[7], &Path::ResourceInstance(9000, 0, 1, 4), &m),
            Ok(Node::ResourceInstance {
                id: 4,
                value: Value::Opaque(vec![7])
            })
        );
        assert_eq!(
            decode(&[], &Path::Resource(9000, 0, 0), &m),
            Ok(Node::Resource(Resource::single(0, Value::Opaque(vec![]))))
        );
        // Unknown model: the bytes are taken as opaque.
        assert_eq!(
            decode(&[1, 2], &Path::Resource(4242, 0, 9), &NO_MODELS),
            Ok(Node::Resource(Resource::single(
                9,
                Value::Opaque(vec![1, 2])
            )))
        );
    }

    #[test]
    fn other_types_and_depths_are_refused() {
        let m = models();
        for r in [2, 3] {
            assert!(matches!(
                decode(b"12", &Path::Resource(9000, 0, r), &m),
                Err(FormatError::InvalidValue { .. })
            ));
        }
        assert!(matches!(
            decode(b"12", &Path::Resource(9000, 0, 1), &m),
            Err(FormatError::NotRepresentable(_))
        ));
        for path in [Path::Root, Path::Object(9000), Path::Instance(9000, 0)] {
            assert!(matches!(
                decode(b"12", &path, &m),
                Err(FormatError::NotRepresentable(_))
            ));
        }

        let mut out = Vec::new();
        let cases = [
            (
                Node::Resource(Resource::single(3, Value::Integer(12))),
                Path::Resource(9000, 0, 3),
            ),
            (
                Node::Resource(Resource::single(2, Value::String("x".into()))),
                Path::Resource(9000, 0, 2),
            ),
            (
                Node::Resource(Resource::multiple(1, [(0, Value::Opaque(vec![1]))])),
                Path::Resource(9000, 0, 1),
            ),
            (
                Node::Instance(crate::model::Instance::new(0, [])),
                Path::Instance(9000, 0),
            ),
        ];
        for (node, path) in cases {
            assert!(matches!(
                encode(&node, &path, &mut out),
                Err(FormatError::NotRepresentable(_))
            ));
        }
        let node = Node::Resource(Resource::single(0, Value::Opaque(vec![1])));
        assert_eq!(
            encode(&node, &Path::Resource(9000, 0, 5), &mut out),
            Err(FormatError::InvalidPath)
        );
        assert!(out.is_empty());
    }

    proptest! {
        #[test]
        fn bytes_roundtrip_at_both_depths(
            data in prop::collection::vec(any::<u8>(), 0..256),
            riid in 0..=crate::model::MAX_ID,
        ) {
            let m = models();
            for (node, path) in [
                (
                    Node::Resource(Resource::single(0, Value::Opaque(data.clone()))),
                    Path::Resource(9000, 0, 0),
                ),
                (
                    Node::ResourceInstance { id: riid, value: Value::Opaque(data.clone()) },
                    Path::ResourceInstance(9000, 0, 1, riid),
                ),
            ] {
                let mut out = Vec::new();
                encode(&node, &path, &mut out).unwrap();
                prop_assert_eq!(&out, &data);
                prop_assert_eq!(decode(&out, &path, &m).unwrap(), node);
            }
        }
    }
}
