//! Hand-made object models shared by the fuzz targets, included by each with
//! `#[path = "../common/models.rs"] mod shared;` (the fuzz crate cannot use
//! lwm2m-core's test code). Every resource is read-write with an empty name:
//! the decoders look only at ids, types and multiplicity.
#![allow(dead_code)]

use std::collections::BTreeMap;

use lwm2m_core::model::{ObjectModel, Operations, Path, ResourceModel, ResourceType};

/// A read-write resource model.
pub fn res(id: u16, resource_type: ResourceType, multiple: bool) -> ResourceModel {
    ResourceModel {
        id,
        name: String::new(),
        operations: Operations::ReadWrite,
        multiple,
        mandatory: false,
        resource_type,
        range: String::new(),
        units: String::new(),
        description: String::new(),
    }
}

/// An optional object model with these resources.
pub fn object(id: u16, multiple: bool, resources: Vec<ResourceModel>) -> ObjectModel {
    ObjectModel {
        id,
        name: String::new(),
        version: "1.0".into(),
        lwm2m_version: "1.1".into(),
        multiple,
        mandatory: false,
        description: String::new(),
        resources: resources.into_iter().map(|r| (r.id, r)).collect(),
    }
}

fn registry<const N: usize>(objects: [ObjectModel; N]) -> BTreeMap<u16, ObjectModel> {
    objects.into_iter().map(|o| (o.id, o)).collect()
}

// ---------------------------------------------------------------------------
// text/plain and TLV

/// Types of object 9000: resource `i` (single) and `10 + i` (multiple) have
/// type `EVERY_TYPE[i]`.
pub const EVERY_TYPE: [ResourceType; 10] = [
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

/// Multiple-instance object 9000 with every type, single (0..=9) and
/// multiple (10..=19).
pub fn every_type_object() -> ObjectModel {
    let mut resources = Vec::new();
    for (i, &resource_type) in EVERY_TYPE.iter().enumerate() {
        resources.push(res(i as u16, resource_type, false));
        resources.push(res(10 + i as u16, resource_type, true));
    }
    object(9000, true, resources)
}

/// The text/plain target's model: object 9000.
pub fn text_models() -> BTreeMap<u16, ObjectModel> {
    registry([every_type_object()])
}

/// The TLV target's model: a single-instance object 3 (Device-like) and
/// object 9000.
pub fn tlv_models() -> BTreeMap<u16, ObjectModel> {
    use ResourceType::*;
    let device = vec![
        res(0, String, false),
        res(6, Integer, true),
        res(9, Integer, false),
        res(13, Time, false),
    ];
    registry([object(3, false, device), every_type_object()])
}

// ---------------------------------------------------------------------------
// CBOR and JSON formats

/// Single resources 0..=8, one of each value type (String, Integer, Unsigned
/// Integer, Float, Boolean, Opaque, Time, Objlnk, Corelnk, in that order).
fn single_of_each_type() -> Vec<ResourceModel> {
    use ResourceType::*;
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
    ]
}

/// The CBOR targets' model: part of the Device object and object 10000 with
/// one resource of each type.
pub fn cbor_models() -> BTreeMap<u16, ObjectModel> {
    use ResourceType::*;
    let device = vec![
        res(0, String, false),
        res(6, Integer, true),
        res(9, Integer, false),
        res(13, Time, false),
        res(4, None, false),
    ];
    let mut all = single_of_each_type();
    all.extend([
        res(11, Integer, true),
        res(13, Float, true),
        res(17, ObjLnk, true),
    ]);
    registry([object(3, true, device), object(10000, true, all)])
}

/// Request paths for the CBOR targets: a fixed set plus every ancestor of
/// `seen` (the first path found in the payload), so decoders get paths that
/// fit.
pub fn cbor_request_paths(seen: Option<Path>) -> Vec<Path> {
    let mut paths = vec![
        Path::Object(3),
        Path::Instance(3, 0),
        Path::Resource(3, 0, 6),
        Path::ResourceInstance(3, 0, 6, 0),
        Path::Instance(10000, 0),
    ];
    let mut p = seen;
    while let Some(q) = p {
        if q == Path::Root {
            break;
        }
        paths.push(q);
        p = Some(q.parent());
    }
    paths
}

/// The JSON targets' model: part of the Device object and object 1024 with
/// one resource of every type.
pub fn json_models() -> BTreeMap<u16, ObjectModel> {
    use ResourceType::*;
    let device = vec![
        res(0, String, false),
        res(4, None, false),
        res(7, Integer, true),
        res(9, Integer, false),
        res(13, Time, false),
    ];
    let mut all = single_of_each_type();
    all.push(res(9, Float, true));
    registry([object(3, true, device), object(1024, true, all)])
}

/// Request paths the JSON targets' first input byte chooses from.
pub const JSON_PATHS: [Path; 8] = [
    Path::Object(3),
    Path::Instance(3, 0),
    Path::Resource(3, 0, 7),
    Path::Resource(3, 0, 9),
    Path::ResourceInstance(3, 0, 7, 1),
    Path::Object(1024),
    Path::Instance(1024, 0),
    Path::Object(9),
];
