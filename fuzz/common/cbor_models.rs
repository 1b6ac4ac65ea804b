//! A small hand-made object model shared by the CBOR fuzz targets (included
//! with `#[path]`): part of the Device object and one resource of each type.

use std::collections::BTreeMap;

use lwm2m_core::model::{ObjectModel, Operations, Path, ResourceModel, ResourceType};

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

pub fn models() -> BTreeMap<u16, ObjectModel> {
    use ResourceType::*;
    let device = [
        res(0, String, false),
        res(6, Integer, true),
        res(9, Integer, false),
        res(13, Time, false),
        res(4, None, false),
    ];
    let all = [
        res(0, String, false),
        res(1, Integer, false),
        res(2, UnsignedInteger, false),
        res(3, Float, false),
        res(4, Boolean, false),
        res(5, Opaque, false),
        res(6, Time, false),
        res(7, ObjLnk, false),
        res(8, CoreLnk, false),
        res(11, Integer, true),
        res(13, Float, true),
        res(17, ObjLnk, true),
    ];
    [(3u16, &device[..]), (10000, &all[..])]
        .into_iter()
        .map(|(id, rs)| {
            let o = ObjectModel {
                id,
                name: std::string::String::new(),
                version: "1.0".into(),
                lwm2m_version: "1.1".into(),
                multiple: true,
                mandatory: false,
                description: std::string::String::new(),
                resources: rs.iter().map(|r| (r.id, r.clone())).collect(),
            };
            (id, o)
        })
        .collect()
}

/// Request paths to try: a fixed set plus every ancestor of `seen` (the
/// first path found in the payload), so decoders get paths that fit.
pub fn request_paths(seen: Option<Path>) -> Vec<Path> {
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
