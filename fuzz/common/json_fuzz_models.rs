//! A small hand-made model for the JSON fuzz targets: part of the Device
//! object and an object with one resource of every type.

use std::collections::BTreeMap;

use lwm2m_core::model::{
    ObjectModel, Operations, Path, ResourceModel, ResourceType,
};

fn res(id: u16, resource_type: ResourceType, multiple: bool) -> ResourceModel {
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

fn object(id: u16, resources: Vec<ResourceModel>) -> ObjectModel {
    ObjectModel {
        id,
        name: String::new(),
        version: "1.0".into(),
        lwm2m_version: "1.1".into(),
        multiple: true,
        mandatory: false,
        description: String::new(),
        resources: resources.into_iter().map(|r| (r.id, r)).collect(),
    }
}

pub fn models() -> BTreeMap<u16, ObjectModel> {
    use ResourceType::*;
    let mut m = BTreeMap::new();
    for o in [
        object(
            3,
            vec![
                res(0, String, false),
                res(4, None, false),
                res(7, Integer, true),
                res(9, Integer, false),
                res(13, Time, false),
            ],
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
                res(9, Float, true),
            ],
        ),
    ] {
        m.insert(o.id, o);
    }
    m
}

/// Request paths the first input byte chooses from.
pub const PATHS: [Path; 8] = [
    Path::Object(3),
    Path::Instance(3, 0),
    Path::Resource(3, 0, 7),
    Path::Resource(3, 0, 9),
    Path::ResourceInstance(3, 0, 7, 1),
    Path::Object(1024),
    Path::Instance(1024, 0),
    Path::Object(9),
];
