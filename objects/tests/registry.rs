//! The registry of generated models, its version handling and the generated
//! constants.

use std::collections::BTreeMap;

use lwm2m_core::model::{ModelLookup, ObjectModel, Operations, ResourceModel, ResourceType};
use lwm2m_objects::{device, firmware_update, security, server, Registry, StaticObject, OBJECTS};

#[test]
fn device_manufacturer() {
    let registry = Registry::standard();
    let device = registry.object(3).expect("Device");
    assert_eq!(device.name, "Device");
    assert_eq!(device.version, "1.2");
    assert!(!device.multiple);
    assert!(device.mandatory);
    let r = device.resource(0).expect("/3/0/0");
    assert_eq!(r.name, "Manufacturer");
    assert_eq!(r.resource_type, ResourceType::String);
    assert_eq!(r.operations, Operations::Read);
    assert!(!r.multiple);
    assert!(!r.mandatory);
    // Multiple-instance, mandatory, executable neighbours.
    let error_code = device.resource(11).unwrap();
    assert!(error_code.multiple && error_code.mandatory);
    assert_eq!(device.resource(4).unwrap().operations, Operations::Execute);
    assert_eq!(
        device.resource(4).unwrap().resource_type,
        ResourceType::None
    );
    assert_eq!(
        device.resource(13).unwrap().resource_type,
        ResourceType::Time
    );
    assert_eq!(
        device.resource(22).unwrap().resource_type,
        ResourceType::ObjLnk
    );
}

#[test]
fn firmware_update_package() {
    let registry = Registry::standard();
    let r = registry.resource(5, 0).expect("/5/0/0");
    assert_eq!(r.name, "Package");
    assert_eq!(r.operations, Operations::Write);
    assert_eq!(r.resource_type, ResourceType::Opaque);
    assert!(!r.multiple);
    // Cancel (10) only exists from version 1.1 on.
    assert!(registry
        .object_version(5, "1.0")
        .unwrap()
        .resource(10)
        .is_none());
    assert_eq!(registry.resource(5, 10).unwrap().name, "Cancel");
}

#[test]
fn server_versions_differ() {
    let registry = Registry::standard();
    let v10 = registry.object_version(1, "1.0").expect("Server 1.0");
    let v11 = registry.object_version(1, "1.1").expect("Server 1.1");
    let v12 = registry.object_version(1, "1.2").expect("Server 1.2");
    // 1.0 ends at Registration Update Trigger (8).
    assert_eq!(v10.resources.keys().copied().max(), Some(8));
    for id in 13..=23 {
        assert!(v10.resource(id).is_none(), "1.0 has no resource {id}");
        assert!(v11.resource(id).is_some(), "1.1 has resource {id}");
    }
    assert_eq!(
        v11.resource(13).unwrap().name,
        "Registration Priority Order"
    );
    // 1.2 adds 24..27 on top of 1.1.
    assert!(v11.resource(24).is_none());
    assert_eq!(v12.resource(27).unwrap().name, "Profile ID Hash Algorithm");
    // Lifetime became Unsigned Integer in 1.2.
    assert_eq!(
        v10.resource(1).unwrap().resource_type,
        ResourceType::Integer
    );
    assert_eq!(
        v12.resource(1).unwrap().resource_type,
        ResourceType::UnsignedInteger
    );
    assert_eq!(v10.lwm2m_version, "1.0");
    assert_eq!(v12.lwm2m_version, "1.2");
}

#[test]
fn security_versions_differ() {
    let registry = Registry::standard();
    let max = |v: &str| {
        registry
            .object_version(0, v)
            .and_then(|m| m.resources.keys().copied().max())
    };
    assert_eq!(max("1.0"), Some(12));
    assert_eq!(max("1.1"), Some(17));
    assert_eq!(max("1.2"), Some(30));
    let oscore = registry
        .object_version(0, "1.1")
        .unwrap()
        .resource(17)
        .unwrap();
    assert_eq!(oscore.name, "OSCORE Security Mode");
    assert_eq!(oscore.resource_type, ResourceType::ObjLnk);
    // No operation at all: only the Bootstrap-Server touches Security.
    assert!(registry
        .iter()
        .filter(|m| m.id == 0)
        .flat_map(|m| m.resources.values())
        .all(|r| r.operations == Operations::None));
}

#[test]
fn connectivity_monitoring_versions_differ() {
    let registry = Registry::standard();
    let v = |version| registry.object_version(4, version).unwrap();
    let (v10, v11, v12, v13) = (v("1.0"), v("1.1"), v("1.2"), v("1.3"));
    // 1.0 ends at SMCC (10); each later version adds one resource.
    assert_eq!(v10.resources.keys().copied().max(), Some(10));
    assert!(v10.resource(11).is_none());
    assert_eq!(v11.resource(11).unwrap().name, "SignalSNR");
    assert!(v11.resource(12).is_none());
    assert_eq!(v12.resource(12).unwrap().name, "LAC");
    assert!(v12.resource(13).is_none());
    let cel = v13.resource(13).unwrap();
    assert_eq!(cel.name, "Coverage Enhancement Level");
    assert_eq!(cel.range, "0..4");
    // Coverage Enhancement Level exists only in 1.3, the default version.
    assert_eq!(registry.object(4).unwrap().version, "1.3");
    assert_eq!(
        registry.resource(4, 13).unwrap().name,
        "Coverage Enhancement Level"
    );
    // Ranges and units were respelled along the way.
    assert_eq!(v10.resource(0).unwrap().range, "0-50");
    assert_eq!(v13.resource(0).unwrap().range, "0..50");
    assert_eq!(v10.resource(2).unwrap().units, "dBm");
    assert_eq!(v12.resource(2).unwrap().units, "");
    assert_eq!(v12.resource(6).unwrap().units, "%");
    assert_eq!(v13.resource(6).unwrap().units, "/100");
    assert!(!v10.resource(0).unwrap().description.contains("5G-NR"));
    assert!(v13
        .resource(0)
        .unwrap()
        .description
        .contains("8: 5G-NR TDD"));
    assert_eq!(v10.lwm2m_version, "1.0");
    // The 1.1 DDF has no <LWM2MVersion>; the schema default 1.0 applies.
    assert_eq!(v11.lwm2m_version, "1.0");
    assert_eq!(v12.lwm2m_version, "1.1");
    // Pinning 1.0 hides the newer resources from the default lookup.
    let mut pinned = Registry::standard();
    assert!(pinned.set_default(4, "1.0"));
    assert!(pinned.resource(4, 11).is_none());
    assert_eq!(pinned.resource(4, 10).unwrap().name, "SMCC");
}

#[test]
fn location_and_software_management_versions_differ() {
    let registry = Registry::standard();
    let l10 = registry.object_version(6, "1.0").unwrap();
    let l11 = registry.object_version(6, "1.1").unwrap();
    assert_eq!(
        l10.resources.keys().copied().collect::<Vec<_>>(),
        (0..=6).collect::<Vec<_>>()
    );
    // Latitude became writable in 1.1, which also adds the expected position.
    assert_eq!(l10.resource(0).unwrap().operations, Operations::Read);
    assert_eq!(l11.resource(0).unwrap().operations, Operations::ReadWrite);
    assert!(l10.resource(8).is_none());
    assert_eq!(l11.resource(8).unwrap().name, "Expected Latitude");

    let s10 = registry.object_version(9, "1.0").unwrap();
    let s11 = registry.object_version(9, "1.1").unwrap();
    assert_eq!(s10.resources.keys().copied().max(), Some(18));
    assert_eq!(s10.lwm2m_version, "1.0");
    for id in 19..=22 {
        assert!(s10.resource(id).is_none(), "1.0 has no resource {id}");
    }
    let state = s11.resource(21).unwrap();
    assert_eq!(state.name, "Operational State");
    assert_eq!(state.resource_type, ResourceType::UnsignedInteger);
    // The 1.0 text keeps its typographic quotes.
    assert!(s10
        .resource(6)
        .unwrap()
        .description
        .contains("(\u{201c}ForUpdate\u{201d})"));
    assert!(s11
        .resource(6)
        .unwrap()
        .description
        .contains("(\"ForUpdate\")"));
}

#[test]
fn event_log_and_oscore_versions_differ() {
    let registry = Registry::standard();
    let e = |version| registry.object_version(20, version).unwrap();
    // 2.0 made Event Log multiple-instance.
    assert!(!e("1.0").multiple);
    assert!(e("2.0").multiple);
    assert_eq!(e("1.0").resources.len(), e("2.0").resources.len());
    // 2.1 added the incremental log, which no operation may touch (Send only).
    assert!(e("2.0").resource(4016).is_none());
    let incremental = e("2.1").resource(4016).unwrap();
    assert_eq!(incremental.name, "LogDataIncremental");
    assert_eq!(incremental.operations, Operations::None);
    // 3.0 documents more log data formats; 3.1 adds the mandatory AppID.
    let formats = |version| e(version).resource(4015).unwrap().description.clone();
    assert!(!formats("2.1").contains("Syslog"));
    assert!(formats("3.0").contains("4 : Syslog Format(RFC5424)"));
    assert!(e("3.0").resource(4050).is_none());
    let app_id = e("3.1").resource(4050).unwrap();
    assert_eq!(app_id.name, "AppID");
    assert!(app_id.mandatory);
    assert_eq!(registry.object(20).unwrap().version, "3.1");

    // OSCORE 2.0 stores its keys and identifiers as Opaque, 1.1 as String.
    let o11 = registry.object_version(21, "1.1").unwrap();
    let o20 = registry.object_version(21, "2.0").unwrap();
    for id in [0, 1, 2, 5, 6] {
        assert_eq!(
            o11.resource(id).unwrap().resource_type,
            ResourceType::String
        );
        assert_eq!(
            o20.resource(id).unwrap().resource_type,
            ResourceType::Opaque
        );
    }
    assert_eq!(
        o20.resource(3).unwrap().resource_type,
        ResourceType::Integer
    );
    assert_eq!(registry.object(21).unwrap().version, "2.0");
}

#[test]
fn default_is_latest_until_pinned() {
    let mut registry = Registry::standard();
    assert_eq!(
        registry.versions(1).collect::<Vec<_>>(),
        ["1.0", "1.1", "1.2"]
    );
    assert_eq!(registry.object(1).unwrap().version, "1.2");
    assert!(registry.set_default(1, "1.0"));
    assert_eq!(registry.object(1).unwrap().version, "1.0");
    assert!(registry.resource(1, 13).is_none());
    // Unknown version or object: nothing changes.
    assert!(!registry.set_default(1, "9.9"));
    assert!(!registry.set_default(4242, "1.0"));
    assert_eq!(registry.object(1).unwrap().version, "1.0");
    assert!(registry.object_version(1, "9.9").is_none());
    assert!(registry.object(4242).is_none());
}

#[test]
fn versions_order_numerically() {
    let mut registry = Registry::new();
    for v in ["1.9", "1.10", "1.2"] {
        registry.insert(custom(33000, v));
    }
    assert_eq!(
        registry.versions(33000).collect::<Vec<_>>(),
        ["1.2", "1.9", "1.10"]
    );
    assert_eq!(registry.object(33000).unwrap().version, "1.10");
}

fn custom(id: u16, version: &str) -> ObjectModel {
    let mut resources = BTreeMap::new();
    resources.insert(
        0,
        ResourceModel {
            id: 0,
            name: "Value".into(),
            operations: Operations::Read,
            multiple: false,
            mandatory: true,
            resource_type: ResourceType::Float,
            range: String::new(),
            units: "Cel".into(),
            description: String::new(),
        },
    );
    ObjectModel {
        id,
        name: "Custom".into(),
        version: version.into(),
        lwm2m_version: "1.1".into(),
        multiple: true,
        mandatory: false,
        description: String::new(),
        resources,
    }
}

#[test]
fn insert_replace_remove_custom_models() {
    let mut registry = Registry::standard();
    let before = registry.len();
    assert!(registry.insert(custom(33000, "1.0")).is_none());
    assert_eq!(registry.len(), before + 1);
    assert_eq!(registry.resource(33000, 0).unwrap().units, "Cel");

    let mut changed = custom(33000, "1.0");
    changed.name = "Custom v2".into();
    let old = registry.insert(changed).expect("replaced");
    assert_eq!(old.name, "Custom");
    assert_eq!(registry.object(33000).unwrap().name, "Custom v2");
    assert_eq!(registry.len(), before + 1);

    // Replacing a standard model (e.g. a vendor's Device 1.2) works the same way.
    let mut vendor = registry.object(3).unwrap().clone();
    vendor.resources.remove(&22);
    assert!(registry.insert(vendor).is_some());
    assert!(registry.resource(3, 22).is_none());

    assert!(registry.remove(33000, "1.0").is_some());
    assert!(registry.object(33000).is_none());
    assert!(registry.ids().all(|id| id != 33000));
    assert!(registry.remove(33000, "1.0").is_none());
}

#[test]
fn iteration_is_sorted_and_complete() {
    let registry = Registry::standard();
    assert_eq!(registry.len(), OBJECTS.len());
    let keys: Vec<(u16, String)> = registry.iter().map(|m| (m.id, m.version.clone())).collect();
    let from_tables: Vec<(u16, String)> = OBJECTS
        .iter()
        .map(|o| (o.id, o.version.to_string()))
        .collect();
    assert_eq!(keys, from_tables);
    assert_eq!(
        registry.ids().collect::<Vec<_>>(),
        [0, 1, 2, 3, 4, 5, 6, 7, 9, 19, 20, 21]
    );
    let defaults: Vec<(u16, &str)> = registry
        .defaults()
        .map(|m| (m.id, m.version.as_str()))
        .collect();
    // The default of every object is its latest version.
    for (id, latest) in [
        (0, "1.2"),
        (1, "1.2"),
        (2, "1.1"),
        (3, "1.2"),
        (4, "1.3"),
        (5, "1.1"),
        (6, "1.1"),
        (7, "1.0"),
        (9, "1.1"),
        (19, "1.0"),
        (20, "3.1"),
        (21, "2.0"),
    ] {
        assert!(defaults.contains(&(id, latest)), "default of {id}");
        assert_eq!(registry.versions(id).last(), Some(latest), "latest of {id}");
    }
    let versions = |id| registry.versions(id).collect::<Vec<_>>();
    assert_eq!(versions(3), ["1.0", "1.1", "1.2"]);
    assert_eq!(versions(2), ["1.0", "1.1"]);
    assert_eq!(versions(4), ["1.0", "1.1", "1.2", "1.3"]);
    assert_eq!(versions(6), ["1.0", "1.1"]);
    assert_eq!(versions(9), ["1.0", "1.1"]);
    assert_eq!(versions(20), ["1.0", "2.0", "2.1", "3.0", "3.1"]);
    assert_eq!(versions(21), ["1.0", "1.1", "2.0"]);
    assert_eq!(defaults.len(), 12);
    assert_eq!((&registry).into_iter().count(), registry.len());
    let rebuilt: Registry = registry.iter().cloned().collect();
    assert_eq!(rebuilt.len(), registry.len());
}

#[test]
fn registry_is_a_model_lookup() {
    let registry = Registry::standard();
    let lookup: &dyn ModelLookup = &registry;
    assert_eq!(lookup.object(0).unwrap().name, "LWM2M Security");
    assert_eq!(lookup.resource(0, 0).unwrap().name, "LWM2M  Server URI");
    assert_eq!(lookup.resource(0, 0).unwrap().operations, Operations::None);
    assert!(lookup.resource(3, 9999).is_none());
    assert!(lookup.object(65000).is_none());
}

#[test]
fn generated_constants() {
    assert_eq!(device::ID, 3);
    assert_eq!(device::MANUFACTURER, 0);
    assert_eq!(device::REBOOT, 4);
    assert_eq!(device::EXT_DEV_INFO, 22);
    assert_eq!(device::VERSION, "1.2");
    assert_eq!(device::v1_0::VERSION, "1.0");
    assert_eq!(firmware_update::PACKAGE, 0);
    assert_eq!(firmware_update::UPDATE_RESULT, 5);
    assert_eq!(server::ID, 1);
    assert_eq!(server::LIFETIME, 1);
    assert_eq!(server::v1_1::REGISTRATION_PRIORITY_ORDER, 13);
    assert_eq!(server::PROFILE_ID_HASH_ALGORITHM, 27);
    assert_eq!(security::LWM2M_SERVER_URI, 0);
    assert_eq!(security::SMS_BINDING_SECRET_KEY_S, 8);
    assert_eq!(security::TLS_1_3_FEATURES_TO_USE_BY_CLIENT, 22);
    assert_eq!(lwm2m_objects::oscore::OSCORE_ID_CONTEXT, 6);
    assert_eq!(lwm2m_objects::event_log::LOG_DATA_FORMAT, 4015);
    assert_eq!(lwm2m_objects::connectivity_monitoring::SIGNAL_SNR, 11);
    assert_eq!(
        lwm2m_objects::connectivity_monitoring::COVERAGE_ENHANCEMENT_LEVEL,
        13
    );
    assert_eq!(lwm2m_objects::connectivity_monitoring::VERSION, "1.3");
    assert_eq!(lwm2m_objects::connectivity_monitoring::v1_0::SMCC, 10);
    assert_eq!(lwm2m_objects::event_log::APP_ID, 4050);
    assert_eq!(lwm2m_objects::event_log::v1_0::VERSION, "1.0");
    assert_eq!(lwm2m_objects::location::v1_0::SPEED, 6);
    assert_eq!(lwm2m_objects::software_management::PURGE, 22);
    assert_eq!(lwm2m_objects::oscore::VERSION, "2.0");
    // The module's MODEL is its latest version, also reachable by version.
    assert!(std::ptr::eq(&server::MODEL, &server::v1_2::MODEL));
    assert_eq!(server::MODEL.version, server::VERSION);
}

#[test]
fn every_constant_names_its_resource() {
    // Spot-check that constants and tables agree, through the static lookup.
    let check = |model: &StaticObject, id: u16, name: &str| {
        assert_eq!(model.resource(id).map(|r| r.name), Some(name));
    };
    check(&device::MODEL, device::SERIAL_NUMBER, "Serial Number");
    check(
        &device::v1_0::MODEL,
        device::v1_0::MEMORY_FREE,
        "Memory Free",
    );
    check(
        &server::v1_0::MODEL,
        server::v1_0::REGISTRATION_UPDATE_TRIGGER,
        "Registration Update Trigger",
    );
    assert!(device::MODEL.resource(9999).is_none());
}

#[test]
fn generated_tables_are_well_formed() {
    for object in OBJECTS {
        let ids: Vec<u16> = object.resources.iter().map(|r| r.id).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(ids, sorted, "object {} {}", object.id, object.version);
        let model = object.to_model();
        assert_eq!(model.resources.len(), object.resources.len());
        for r in object.resources {
            assert_eq!(model.resource(r.id).unwrap(), &r.to_model());
        }
    }
    // Sorted by (id, version).
    for pair in OBJECTS.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let version_order = lwm2m_objects::compare_versions(a.version, b.version);
        assert!(
            a.id < b.id || (a.id == b.id && version_order == std::cmp::Ordering::Less),
            "{} {} before {} {}",
            a.id,
            a.version,
            b.id,
            b.version
        );
    }
}

#[cfg(all(feature = "ddf", feature = "std"))]
mod loading {
    use super::*;
    use lwm2m_objects::ddf::{DdfError, LoadError};

    const CUSTOM: &str = r#"<LWM2M><Object ObjectType="MODefinition"><Name>Custom</Name>
        <ObjectID>33001</ObjectID><ObjectVersion>2.0</ObjectVersion>
        <MultipleInstances>Multiple</MultipleInstances><Mandatory>Optional</Mandatory>
        <Resources><Item ID="5"><Name>Level</Name><Operations>RW</Operations>
        <MultipleInstances>Single</MultipleInstances><Mandatory>Mandatory</Mandatory>
        <Type>Integer</Type></Item></Resources></Object></LWM2M>"#;

    #[test]
    fn load_ddf_str_adds_a_custom_object() {
        let mut registry = Registry::standard();
        assert_eq!(registry.load_ddf_str(CUSTOM), Ok(1));
        let r = registry.resource(33001, 5).unwrap();
        assert_eq!(r.name, "Level");
        assert_eq!(registry.object(33001).unwrap().version, "2.0");
        // A bad text adds nothing.
        let before = registry.len();
        assert!(matches!(
            registry.load_ddf_str("<LWM2M/>"),
            Err(DdfError::NoObject)
        ));
        assert_eq!(registry.len(), before);
    }

    /// A fresh folder under the system temp dir, removed on drop.
    struct TempDir(std::path::PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            let p =
                std::env::temp_dir().join(format!("lwm2m-objects-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn load_ddf_dir_reads_xml_files_only() {
        let dir = TempDir::new("dir-ok");
        std::fs::write(dir.0.join("a.xml"), CUSTOM).unwrap();
        std::fs::write(
            dir.0.join("B.XML"),
            CUSTOM.replace("33001", "33002").replace("Custom", "Other"),
        )
        .unwrap();
        std::fs::write(dir.0.join("notes.txt"), "not a DDF").unwrap();
        std::fs::create_dir(dir.0.join("sub.xml")).unwrap();
        let mut registry = Registry::new();
        assert_eq!(registry.load_ddf_dir(&dir.0).unwrap(), 2);
        assert_eq!(registry.ids().collect::<Vec<_>>(), [33001, 33002]);
        assert_eq!(registry.object(33002).unwrap().name, "Other");
    }

    #[test]
    fn load_ddf_dir_names_the_bad_file() {
        let dir = TempDir::new("dir-bad");
        std::fs::write(dir.0.join("a.xml"), CUSTOM).unwrap();
        std::fs::write(dir.0.join("b.xml"), CUSTOM.replace("33001", "99999")).unwrap();
        let mut registry = Registry::new();
        match registry.load_ddf_dir(&dir.0) {
            Err(LoadError::Ddf { path, error }) => {
                assert!(path.ends_with("b.xml"));
                assert!(matches!(error, DdfError::IdOutOfRange { value: 99999, .. }));
            }
            other => panic!("expected a DDF error, got {other:?}"),
        }
        assert!(matches!(
            Registry::new().load_ddf_dir(dir.0.join("missing")),
            Err(LoadError::Io { .. })
        ));
    }
}
