//! Shared fixtures for the CBOR format tests: small hand-made object models
//! and a hex helper.
#![allow(dead_code)]

use std::collections::BTreeMap;

use lwm2m_core::model::{ObjectModel, Operations, ResourceModel, ResourceType};

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

fn res(id: u16, ty: ResourceType, multiple: bool) -> ResourceModel {
    ResourceModel {
        id,
        name: format!("r{id}"),
        operations: if ty == ResourceType::None {
            Operations::Execute
        } else {
            Operations::ReadWrite
        },
        multiple,
        mandatory: false,
        resource_type: ty,
        range: String::new(),
        units: String::new(),
        description: String::new(),
    }
}

fn object(id: u16, resources: Vec<ResourceModel>) -> ObjectModel {
    ObjectModel {
        id,
        name: format!("o{id}"),
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

/// Id of the test object with one resource of every type.
pub const ALL_TYPES: u16 = 10_000;

/// Resource types of the test object: resource `r` (0..=8 single, 10..=18
/// multiple) has type `TYPES[r % 10]`; resource 9 is executable.
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

/// The test object with one single and one multiple resource of every type.
pub fn all_types_object() -> ObjectModel {
    let mut resources = Vec::new();
    for (k, ty) in TYPES.iter().enumerate() {
        resources.push(res(k as u16, *ty, false));
        resources.push(res(10 + k as u16, *ty, true));
    }
    resources.push(res(9, ResourceType::None, false));
    object(ALL_TYPES, resources)
}

/// A model registry with the Device object and the all-types test object.
pub fn models() -> BTreeMap<u16, ObjectModel> {
    [device_object(), all_types_object()]
        .into_iter()
        .map(|o| (o.id, o))
        .collect()
}
