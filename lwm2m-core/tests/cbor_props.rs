//! Property tests for the CBOR formats: round trips at every depth, with and
//! without object models, and the cross-format check that SenML CBOR and
//! LwM2M CBOR carry the same node.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use lwm2m_core::format::{cbor, lwm2m_cbor, senml_cbor};
use lwm2m_core::model::{
    Instance, Node, ObjLnk, ObjectNode, Path, Resource, ResourceType, ResourceValue,
    TimestampedValue, Value, NO_MODELS,
};
use proptest::prelude::*;
use support::{cbor_models as models, ALL_TYPES, TYPES};

fn ids() -> impl Strategy<Value = u16> {
    prop_oneof![
        0u16..4,
        Just(23),
        Just(24),
        Just(255),
        Just(256),
        Just(65534)
    ]
}

fn value_for(ty: ResourceType) -> BoxedStrategy<Value> {
    match ty {
        ResourceType::String => "\\PC{0,8}".prop_map(Value::String).boxed(),
        ResourceType::CoreLnk => "\\PC{0,8}".prop_map(Value::CoreLnk).boxed(),
        ResourceType::Integer => any::<i64>().prop_map(Value::Integer).boxed(),
        ResourceType::UnsignedInteger => any::<u64>().prop_map(Value::UnsignedInteger).boxed(),
        ResourceType::Float => any::<f64>()
            .prop_filter("NaN never equals itself", |x| !x.is_nan())
            .prop_map(Value::Float)
            .boxed(),
        ResourceType::Boolean => any::<bool>().prop_map(Value::Boolean).boxed(),
        ResourceType::Opaque => prop::collection::vec(any::<u8>(), 0..6)
            .prop_map(Value::Opaque)
            .boxed(),
        ResourceType::Time => any::<i64>().prop_map(Value::Time).boxed(),
        ResourceType::ObjLnk => (any::<u16>(), any::<u16>())
            .prop_map(|(object, instance)| Value::ObjLnk(ObjLnk { object, instance }))
            .boxed(),
        ResourceType::None => unreachable!("executable resources have no value"),
    }
}

/// A resource of the all-types object: ids 0..=8 single, 10..=18 multiple.
fn resource() -> impl Strategy<Value = Resource> {
    (0usize..TYPES.len(), any::<bool>()).prop_flat_map(|(k, multiple)| {
        let ty = TYPES[k];
        if multiple {
            prop::collection::btree_map(ids(), value_for(ty), 0..3)
                .prop_map(move |m| Resource {
                    id: 10 + k as u16,
                    value: ResourceValue::Multiple(m),
                })
                .boxed()
        } else {
            value_for(ty)
                .prop_map(move |v| Resource::single(k as u16, v))
                .boxed()
        }
    })
}

fn instance() -> impl Strategy<Value = Instance> {
    (ids(), prop::collection::vec(resource(), 0..4)).prop_map(|(id, rs)| Instance::new(id, rs))
}

fn object() -> impl Strategy<Value = ObjectNode> {
    prop::collection::vec(instance(), 0..3).prop_map(|insts| ObjectNode {
        id: ALL_TYPES,
        instances: insts.into_iter().map(|i| (i.id, i)).collect(),
    })
}

/// A node of every depth with its path.
fn node_and_path() -> impl Strategy<Value = (Path, Node)> {
    prop_oneof![
        object().prop_map(|o| (Path::Object(ALL_TYPES), Node::Object(o))),
        instance().prop_map(|i| (Path::Instance(ALL_TYPES, i.id), Node::Instance(i))),
        (ids(), resource())
            .prop_map(|(i, r)| (Path::Resource(ALL_TYPES, i, r.id), Node::Resource(r))),
        (ids(), 0usize..TYPES.len(), ids()).prop_flat_map(|(i, k, ri)| {
            value_for(TYPES[k]).prop_map(move |value| {
                (
                    Path::ResourceInstance(ALL_TYPES, i, 10 + k as u16, ri),
                    Node::ResourceInstance { id: ri, value },
                )
            })
        }),
    ]
}

/// Applies `f` to every value of the node.
fn map_values(node: &Node, f: &dyn Fn(&Value) -> Value) -> Node {
    let res = |r: &Resource| Resource {
        id: r.id,
        value: match &r.value {
            ResourceValue::Single(v) => ResourceValue::Single(f(v)),
            ResourceValue::Multiple(m) => {
                ResourceValue::Multiple(m.iter().map(|(k, v)| (*k, f(v))).collect())
            }
        },
    };
    let inst = |i: &Instance| Instance {
        id: i.id,
        resources: i.resources.iter().map(|(k, r)| (*k, res(r))).collect(),
    };
    match node {
        Node::Object(o) => Node::Object(ObjectNode {
            id: o.id,
            instances: o.instances.iter().map(|(k, i)| (*k, inst(i))).collect(),
        }),
        Node::Instance(i) => Node::Instance(inst(i)),
        Node::Resource(r) => Node::Resource(res(r)),
        Node::ResourceInstance { id, value } => Node::ResourceInstance {
            id: *id,
            value: f(value),
        },
    }
}

/// What a self-describing CBOR item gives back without a model
/// (application/cbor and LwM2M CBOR).
fn untyped_cbor(v: &Value) -> Value {
    match v {
        Value::UnsignedInteger(u) if *u <= i64::MAX as u64 => Value::Integer(*u as i64),
        Value::ObjLnk(l) => Value::String(format!("{}:{}", l.object, l.instance)),
        Value::CoreLnk(s) => Value::String(s.clone()),
        other => other.clone(),
    }
}

/// What SenML gives back without a model.
fn untyped_senml(v: &Value) -> Value {
    match v {
        Value::UnsignedInteger(u) if *u <= i64::MAX as u64 => Value::Integer(*u as i64),
        Value::Time(t) => Value::Integer(*t),
        Value::CoreLnk(s) => Value::String(s.clone()),
        other => other.clone(),
    }
}

/// SenML has no record for an empty container below the requested node.
fn prune(node: &Node) -> Node {
    let inst = |i: &Instance| Instance {
        id: i.id,
        resources: i
            .resources
            .iter()
            .filter(|(_, r)| !matches!(&r.value, ResourceValue::Multiple(m) if m.is_empty()))
            .map(|(k, r)| (*k, r.clone()))
            .collect(),
    };
    match node {
        Node::Object(o) => Node::Object(ObjectNode {
            id: o.id,
            instances: o
                .instances
                .iter()
                .map(|(k, i)| (*k, inst(i)))
                .filter(|(_, i)| !i.resources.is_empty())
                .collect(),
        }),
        Node::Instance(i) => Node::Instance(inst(i)),
        other => other.clone(),
    }
}

fn is_empty_multiple(node: &Node) -> bool {
    matches!(node, Node::Resource(Resource { value: ResourceValue::Multiple(m), .. }) if m.is_empty())
}

proptest! {
    #[test]
    fn lwm2m_cbor_round_trip_with_model((path, node) in node_and_path()) {
        let mut out = Vec::new();
        lwm2m_cbor::encode(&node, &path, &mut out).unwrap();
        prop_assert_eq!(lwm2m_cbor::decode(&out, &path, &models()), Ok(node.clone()));
        // Deterministic: encoding the decoded node gives the same bytes.
        let mut again = Vec::new();
        lwm2m_cbor::encode(&node, &path, &mut again).unwrap();
        prop_assert_eq!(out, again);
    }

    #[test]
    fn lwm2m_cbor_round_trip_without_model((path, node) in node_and_path()) {
        let mut out = Vec::new();
        lwm2m_cbor::encode(&node, &path, &mut out).unwrap();
        prop_assert_eq!(lwm2m_cbor::decode(&out, &path, &NO_MODELS), Ok(map_values(&node, &untyped_cbor)));
    }

    #[test]
    fn senml_cbor_round_trip_with_model((path, node) in node_and_path()) {
        let mut out = Vec::new();
        senml_cbor::encode(&node, &path, &mut out).unwrap();
        prop_assert_eq!(senml_cbor::decode(&out, &path, &models()), Ok(prune(&node)));
    }

    #[test]
    fn senml_cbor_round_trip_without_model((path, node) in node_and_path()) {
        // Without a model nothing says that an absent resource is an empty multiple one.
        prop_assume!(!is_empty_multiple(&node));
        let mut out = Vec::new();
        senml_cbor::encode(&node, &path, &mut out).unwrap();
        prop_assert_eq!(
            senml_cbor::decode(&out, &path, &NO_MODELS),
            Ok(map_values(&prune(&node), &untyped_senml))
        );
    }

    #[test]
    fn senml_cbor_and_lwm2m_cbor_carry_the_same_node((path, node) in node_and_path()) {
        let mut senml = Vec::new();
        senml_cbor::encode(&node, &path, &mut senml).unwrap();
        let mut lwm2m = Vec::new();
        lwm2m_cbor::encode(&node, &path, &mut lwm2m).unwrap();
        let from_senml = senml_cbor::decode(&senml, &path, &models()).unwrap();
        let from_lwm2m = lwm2m_cbor::decode(&lwm2m, &path, &models()).unwrap();
        prop_assert_eq!(from_senml, prune(&from_lwm2m));
    }

    #[test]
    fn cbor_single_value_round_trip((path, node) in single_value()) {
        let mut out = Vec::new();
        cbor::encode(&node, &path, &mut out).unwrap();
        prop_assert_eq!(cbor::decode(&out, &path, &models()), Ok(node.clone()));
        prop_assert_eq!(cbor::decode(&out, &path, &NO_MODELS), Ok(map_values(&node, &untyped_cbor)));
    }
}

/// A single resource or a resource instance (what application/cbor carries).
fn single_value() -> impl Strategy<Value = (Path, Node)> {
    (ids(), 0usize..TYPES.len(), ids(), any::<bool>()).prop_flat_map(|(i, k, ri, instance)| {
        value_for(TYPES[k]).prop_map(move |value| {
            if instance {
                (
                    Path::ResourceInstance(ALL_TYPES, i, 10 + k as u16, ri),
                    Node::ResourceInstance { id: ri, value },
                )
            } else {
                (
                    Path::Resource(ALL_TYPES, i, k as u16),
                    Node::Resource(Resource::single(k as u16, value)),
                )
            }
        })
    })
}

fn timestamped_values() -> impl Strategy<Value = Vec<TimestampedValue>> {
    let one = (ids(), ids(), 0usize..TYPES.len(), any::<bool>(), ids()).prop_flat_map(
        |(o_pick, i, k, multiple, ri)| {
            let o = if o_pick % 2 == 0 {
                ALL_TYPES
            } else {
                ALL_TYPES + 1
            };
            let path = if multiple {
                Path::ResourceInstance(o, i, 10 + k as u16, ri)
            } else {
                Path::Resource(o, i, k as u16)
            };
            let time = prop_oneof![
                Just(None),
                (268_435_456.0..2e9f64).prop_map(Some),
                (1u32..1000).prop_map(|t| Some(-f64::from(t))),
            ];
            (value_for(TYPES[k]), time).prop_map(move |(value, time)| TimestampedValue {
                path,
                value,
                time,
            })
        },
    );
    prop::collection::vec(one, 0..8)
}

/// The same all-types object under a second id, so values span objects.
fn two_object_models() -> BTreeMap<u16, lwm2m_core::model::ObjectModel> {
    let mut m = models();
    let mut second = support::all_types_object();
    second.id = ALL_TYPES + 1;
    m.insert(second.id, second);
    m
}

proptest! {
    #[test]
    fn senml_values_round_trip(mut values in timestamped_values()) {
        let mut seen = BTreeSet::new();
        values.retain(|v| seen.insert((v.path, v.time.map(f64::to_bits))));
        let mut out = Vec::new();
        senml_cbor::encode_values(&values, &mut out).unwrap();
        prop_assert_eq!(senml_cbor::decode_values(&out, &two_object_models()), Ok(values));
    }

    #[test]
    fn lwm2m_cbor_values_round_trip_sorted(mut values in timestamped_values()) {
        let mut seen = BTreeSet::new();
        values.retain(|v| seen.insert(v.path));
        for v in &mut values {
            v.time = None;
        }
        let mut out = Vec::new();
        lwm2m_cbor::encode_values(&values, &mut out).unwrap();
        values.sort_by_key(|v| v.path);
        prop_assert_eq!(lwm2m_cbor::decode_values(&out, &two_object_models()), Ok(values));
    }

    #[test]
    fn path_lists_round_trip(raw in prop::collection::vec(prop::collection::vec(ids(), 0..=4), 0..6)) {
        let mut seen = BTreeSet::new();
        let paths: Vec<Path> = raw
            .iter()
            .map(|ids| Path::from_ids(ids).unwrap())
            .filter(|p| seen.insert(*p))
            .collect();
        let mut out = Vec::new();
        senml_cbor::encode_paths(&paths, &mut out).unwrap();
        prop_assert_eq!(senml_cbor::decode_paths(&out), Ok(paths.clone()));

        let rooted: Vec<Path> = paths.into_iter().filter(|p| *p != Path::Root).collect();
        let mut out = Vec::new();
        lwm2m_cbor::encode_paths(&rooted, &mut out).unwrap();
        prop_assert_eq!(lwm2m_cbor::decode_paths(&out), Ok(rooted));
    }
}
