//! Test support shared by the lwm2m-core integration tests (each test file
//! includes it with `mod support;`): hand-made object models, the Device
//! object instance of the TS examples, hex and path helpers, and the proptest
//! generators of the JSON format tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use lwm2m_core::model::{
    Instance, ObjLnk, ObjectModel, ObjectNode, Operations, Path, Resource, ResourceModel,
    ResourceType, ResourceValue, TimestampedValue, Value,
};
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Small helpers

/// Bytes from hex text; whitespace and `|` separators are ignored.
pub fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'|')
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

/// Bytes from hex text annotated line by line: everything from a `#` to the
/// end of its line is a comment, the rest goes through [`hex`].
pub fn annotated_hex(annotated: &str) -> Vec<u8> {
    hex(&annotated
        .lines()
        .map(|l| l.split('#').next().unwrap())
        .collect::<String>())
}

/// A path from its text form (`"/3/0/1"`).
pub fn p(s: &str) -> Path {
    s.parse().unwrap()
}

/// A timestamped value at the path written `path`.
pub fn tv(path: &str, value: Value, time: Option<f64>) -> TimestampedValue {
    TimestampedValue {
        path: p(path),
        value,
        time,
    }
}

// ---------------------------------------------------------------------------
// Object models

/// A resource model: read-write, or executable for type None.
pub fn res(id: u16, resource_type: ResourceType, multiple: bool) -> ResourceModel {
    ResourceModel {
        id,
        name: format!("res{id}"),
        operations: if resource_type == ResourceType::None {
            Operations::Execute
        } else {
            Operations::ReadWrite
        },
        multiple,
        mandatory: false,
        resource_type,
        range: String::new(),
        units: String::new(),
        description: String::new(),
    }
}

/// A multiple-instance, optional object model with these resources.
pub fn object(id: u16, resources: Vec<ResourceModel>) -> ObjectModel {
    ObjectModel {
        id,
        name: format!("object {id}"),
        version: "1.0".into(),
        lwm2m_version: "1.1".into(),
        multiple: true,
        mandatory: false,
        description: String::new(),
        resources: resources.into_iter().map(|r| (r.id, r)).collect(),
    }
}

/// The Device object (3) resources used by the TS example client.
pub fn device_object() -> ObjectModel {
    use ResourceType::*;
    object(
        3,
        vec![
            res(0, String, false),
            res(1, String, false),
            res(2, String, false),
            res(3, String, false),
            res(4, None, false),
            res(6, Integer, true),
            res(7, Integer, true),
            res(8, Integer, true),
            res(9, Integer, false),
            res(10, Integer, false),
            res(11, Integer, true),
            res(13, Time, false),
            res(14, String, false),
            res(15, String, false),
            res(16, String, false),
        ],
    )
}

/// Id of the CBOR tests' object with one resource of every type.
pub const ALL_TYPES: u16 = 10_000;

/// Resource types of the CBOR tests' object: resource `r` (0..=8 single,
/// 10..=18 multiple) has type `TYPES[r % 10]`; resource 9 is executable.
pub const TYPES: [ResourceType; 9] = [
    ResourceType::String,
    ResourceType::Integer,
    ResourceType::UnsignedInteger,
    ResourceType::Float,
    ResourceType::Boolean,
    ResourceType::Opaque,
    ResourceType::Time,
    ResourceType::ObjLnk,
    ResourceType::CoreLnk,
];

/// The CBOR tests' object with one single and one multiple resource of every type.
pub fn all_types_object() -> ObjectModel {
    let mut resources = Vec::new();
    for (k, ty) in TYPES.iter().enumerate() {
        resources.push(res(k as u16, *ty, false));
        resources.push(res(10 + k as u16, *ty, true));
    }
    resources.push(res(9, ResourceType::None, false));
    object(ALL_TYPES, resources)
}

/// The registry of the CBOR tests: the Device object and the all-types
/// object [`ALL_TYPES`]. (Object 1 and 1024 stay unknown here.)
pub fn cbor_models() -> BTreeMap<u16, ObjectModel> {
    [device_object(), all_types_object()]
        .into_iter()
        .map(|o| (o.id, o))
        .collect()
}

/// The registry of the JSON tests: the objects the TS examples use (a subset
/// of each), plus object 1024 with one resource of every type (the model of
/// [`arb_typed_instance`]).
pub fn json_models() -> BTreeMap<u16, ObjectModel> {
    use ResourceType::*;
    [
        object(
            1,
            vec![
                res(0, Integer, false),
                res(1, Integer, false),
                res(6, Boolean, false),
                res(7, String, false),
            ],
        ),
        device_object(),
        object(
            65,
            vec![
                res(0, ObjLnk, true),
                res(1, String, false),
                res(2, Integer, false),
            ],
        ),
        object(
            66,
            vec![
                res(0, String, false),
                res(1, String, false),
                res(2, ObjLnk, false),
            ],
        ),
        object(67, vec![res(0, String, false), res(1, String, false)]),
        object(3308, vec![res(5900, Float, false)]),
        object(
            3311,
            vec![res(5850, Boolean, false), res(5851, Integer, false)],
        ),
        object(
            1024,
            vec![
                res(0, String, false),
                res(1, Integer, false),
                res(2, UnsignedInteger, false),
                res(3, Float, false),
                res(4, Boolean, false),
                res(5, Opaque, false),
                res(6, Time, false),
                res(7, ObjLnk, false),
                res(8, CoreLnk, false),
                res(9, Integer, true),
                res(10, None, false),
                res(11, String, true),
            ],
        ),
    ]
    .into_iter()
    .map(|o| (o.id, o))
    .collect()
}

// ---------------------------------------------------------------------------
// Nodes

/// The Device object instance of the TS examples (Read /3/0), with the
/// Device object model's types.
pub fn device_instance() -> Instance {
    let s = |x: &str| Value::String(x.into());
    let i = Value::Integer;
    Instance::new(
        0,
        [
            Resource::single(0, s("Open Mobile Alliance")),
            Resource::single(1, s("Lightweight M2M Client")),
            Resource::single(2, s("345000123")),
            Resource::single(3, s("1.0")),
            Resource::multiple(6, [(0, i(1)), (1, i(5))]),
            Resource::multiple(7, [(0, i(3800)), (1, i(5000))]),
            Resource::multiple(8, [(0, i(125)), (1, i(900))]),
            Resource::single(9, i(100)),
            Resource::single(10, i(15)),
            Resource::multiple(11, [(0, i(0))]),
            Resource::single(13, Value::Time(1_367_491_215)),
            Resource::single(14, s("+02:00")),
            Resource::single(16, s("U")),
        ],
    )
}

// ---------------------------------------------------------------------------
// Generators of the JSON format tests

pub fn arb_id() -> impl Strategy<Value = u16> {
    0u16..=65534
}

pub fn finite_f64() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite())
}

pub fn arb_objlnk() -> impl Strategy<Value = ObjLnk> {
    (any::<u16>(), any::<u16>()).prop_map(|(object, instance)| ObjLnk { object, instance })
}

/// An instance of object 1024 with values typed by its model.
pub fn arb_typed_instance() -> impl Strategy<Value = Instance> {
    let strings = || proptest::option::of(any::<String>());
    (
        arb_id(),
        (
            strings(),
            proptest::option::of(any::<i64>()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(finite_f64()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
        ),
        (
            proptest::option::of(any::<i64>()),
            proptest::option::of(arb_objlnk()),
            strings(),
            proptest::option::of(proptest::collection::btree_map(
                arb_id(),
                any::<i64>(),
                1..4,
            )),
            proptest::option::of(proptest::collection::btree_map(
                arb_id(),
                any::<String>(),
                1..4,
            )),
        ),
    )
        .prop_map(|(id, (s, i, u, f, b, o), (t, l, c, mi, ms))| {
            let mut r = Vec::new();
            let mut add = |rid: u16, v: Option<Value>| {
                if let Some(v) = v {
                    r.push(Resource::single(rid, v));
                }
            };
            add(0, s.map(Value::String));
            add(1, i.map(Value::Integer));
            add(2, u.map(Value::UnsignedInteger));
            add(3, f.map(Value::Float));
            add(4, b.map(Value::Boolean));
            add(5, o.map(Value::Opaque));
            add(6, t.map(Value::Time));
            add(7, l.map(Value::ObjLnk));
            add(8, c.map(Value::CoreLnk));
            if let Some(mi) = mi {
                r.push(Resource::multiple(
                    9,
                    mi.into_iter().map(|(k, v)| (k, Value::Integer(v))),
                ));
            }
            if let Some(ms) = ms {
                r.push(Resource::multiple(
                    11,
                    ms.into_iter().map(|(k, v)| (k, Value::String(v))),
                ));
            }
            Instance::new(id, r)
        })
}

/// A value whose kind a model-less decoder recovers from the JSON alone.
pub fn arb_untyped_value() -> BoxedStrategy<Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Integer),
        ((i64::MAX as u64 + 1)..=u64::MAX).prop_map(Value::UnsignedInteger),
        finite_f64().prop_map(Value::Float),
        any::<bool>().prop_map(Value::Boolean),
        any::<String>().prop_map(Value::String),
        arb_objlnk().prop_map(Value::ObjLnk),
    ]
    .boxed()
}

/// Same, plus opaque (SenML's `vd` is its own kind).
pub fn arb_untyped_value_with_opaque() -> BoxedStrategy<Value> {
    prop_oneof![
        5 => arb_untyped_value(),
        1 => proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Opaque),
    ]
    .boxed()
}

pub fn arb_resource_value(
    value: impl Strategy<Value = Value> + Clone + 'static,
) -> impl Strategy<Value = ResourceValue> {
    prop_oneof![
        value.clone().prop_map(ResourceValue::Single),
        // Not empty: an empty multiple resource inside an instance has no record.
        proptest::collection::btree_map(arb_id(), value, 1..4).prop_map(ResourceValue::Multiple),
    ]
}

fn arb_object(
    value: impl Strategy<Value = Value> + Clone + 'static,
) -> impl Strategy<Value = ObjectNode> {
    // Not empty: an empty instance inside an object has no record.
    let resources = proptest::collection::btree_map(arb_id(), arb_resource_value(value), 1..4);
    (
        arb_id(),
        proptest::collection::btree_map(arb_id(), resources, 0..3),
    )
        .prop_map(|(id, instances)| ObjectNode {
            id,
            instances: instances
                .into_iter()
                .map(|(iid, res)| {
                    (
                        iid,
                        Instance {
                            id: iid,
                            resources: res
                                .into_iter()
                                .map(|(rid, value)| (rid, Resource { id: rid, value }))
                                .collect(),
                        },
                    )
                })
                .collect(),
        })
}

/// An object of unknown model for SenML (with opaque values).
pub fn arb_untyped_object() -> impl Strategy<Value = ObjectNode> {
    arb_object(arb_untyped_value_with_opaque())
}

/// An object of unknown model for legacy JSON (no opaque: it reads back as a string).
pub fn arb_untyped_object_legacy() -> impl Strategy<Value = ObjectNode> {
    arb_object(arb_untyped_value())
}

pub fn arb_path() -> impl Strategy<Value = Path> {
    proptest::collection::vec(arb_id(), 0..=4).prop_map(|ids| Path::from_ids(&ids).unwrap())
}

fn arb_value_path() -> impl Strategy<Value = Path> {
    // Few distinct ids so that prefixes are shared and repeated.
    proptest::collection::vec(0u16..3, 3..=4).prop_map(|ids| Path::from_ids(&ids).unwrap())
}

fn arb_tv(value: impl Strategy<Value = Value>) -> impl Strategy<Value = TimestampedValue> {
    (arb_value_path(), value, proptest::option::of(finite_f64()))
        .prop_map(|(path, value, time)| TimestampedValue { path, value, time })
}

/// Timestamped values for SenML.
pub fn arb_values() -> impl Strategy<Value = Vec<TimestampedValue>> {
    proptest::collection::vec(arb_tv(arb_untyped_value_with_opaque()), 0..6)
}

/// Timestamped values for legacy JSON.
pub fn arb_values_legacy() -> impl Strategy<Value = Vec<TimestampedValue>> {
    proptest::collection::vec(arb_tv(arb_untyped_value()), 0..6)
}
