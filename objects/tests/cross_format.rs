//! The same Device instance through every format that can carry an instance:
//! each decodes to the node that was encoded, with the standard models, and a
//! node taken out of one format and put into another stays the same.

#[path = "fixtures/device.rs"]
mod device;

use lwm2m_core::format::{self, ContentFormat};
use lwm2m_core::model::{Node, Path, ResourceType};
use lwm2m_objects::Registry;

const INSTANCE_FORMATS: [ContentFormat; 5] = [
    ContentFormat::TLV,
    ContentFormat::SENML_JSON,
    ContentFormat::SENML_CBOR,
    ContentFormat::LWM2M_CBOR,
    ContentFormat::LWM2M_JSON,
];

#[test]
fn fixture_matches_the_standard_device_model() {
    let registry = Registry::standard();
    let model = registry.object(3).unwrap();
    let Node::Instance(inst) = device::device_instance() else {
        unreachable!()
    };
    assert_eq!(inst.resources.len(), 20);
    for r in inst.resources.values() {
        let rm = model
            .resource(r.id)
            .unwrap_or_else(|| panic!("resource {} in the model", r.id));
        let multiple = matches!(r.value, lwm2m_core::model::ResourceValue::Multiple(_));
        assert_eq!(rm.multiple, multiple, "resource {}", r.id);
        assert_ne!(rm.resource_type, ResourceType::None);
    }
}

#[test]
fn every_format_round_trips_the_device_instance() {
    let registry = Registry::standard();
    let node = device::device_instance();
    let path = Path::Instance(3, 0);
    for cf in INSTANCE_FORMATS {
        let mut bytes = Vec::new();
        format::encode(cf, &node, &path, &mut bytes).unwrap_or_else(|e| panic!("{cf}: {e}"));
        let back =
            format::decode(cf, &bytes, &path, &registry).unwrap_or_else(|e| panic!("{cf}: {e}"));
        assert_eq!(back, node, "{cf}");
    }
}

#[test]
fn a_node_moves_between_formats_unchanged() {
    let registry = Registry::standard();
    let path = Path::Instance(3, 0);
    let original = device::device_instance();
    for from in INSTANCE_FORMATS {
        let mut a = Vec::new();
        format::encode(from, &original, &path, &mut a).unwrap();
        let decoded = format::decode(from, &a, &path, &registry).unwrap();
        for to in INSTANCE_FORMATS {
            let mut b = Vec::new();
            format::encode(to, &decoded, &path, &mut b).unwrap();
            assert_eq!(
                format::decode(to, &b, &path, &registry).unwrap(),
                original,
                "{from} -> {to}"
            );
        }
    }
}

#[test]
fn single_resources_agree_in_text_cbor_and_the_multi_value_formats() {
    let registry = Registry::standard();
    let Node::Instance(inst) = device::device_instance() else {
        unreachable!()
    };
    for r in inst.resources.values() {
        if matches!(r.value, lwm2m_core::model::ResourceValue::Multiple(_)) {
            continue;
        }
        let path = Path::Resource(3, 0, r.id);
        let node = Node::Resource(r.clone());
        for cf in [
            ContentFormat::TEXT,
            ContentFormat::CBOR,
            ContentFormat::TLV,
            ContentFormat::SENML_CBOR,
            ContentFormat::SENML_JSON,
            ContentFormat::LWM2M_CBOR,
        ] {
            let mut bytes = Vec::new();
            format::encode(cf, &node, &path, &mut bytes)
                .unwrap_or_else(|e| panic!("{cf} /3/0/{}: {e}", r.id));
            assert_eq!(
                format::decode(cf, &bytes, &path, &registry).unwrap(),
                node,
                "{cf} /3/0/{}",
                r.id
            );
        }
    }
}
