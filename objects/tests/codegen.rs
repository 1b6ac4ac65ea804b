//! The generator: naming rules, determinism, and that the committed
//! `generated.rs` is exactly what the generator makes of its own models.
#![cfg(feature = "ddf")]

use std::collections::BTreeMap;

use lwm2m_core::model::{ObjectModel, Operations, ResourceModel, ResourceType};
use lwm2m_objects::codegen::{
    self, const_name, module_name, resource_const_names, version_module, words, CodegenError,
};
use lwm2m_objects::{ddf, Registry};

/// The committed generator output.
const COMMITTED: &str = include_str!("../src/generated.rs");

#[test]
fn committed_generated_rs_is_what_the_generator_makes_of_the_standard_models() {
    // StaticObject -> ObjectModel -> generate must give back the committed
    // file byte for byte: the tables convert losslessly and the committed
    // file is in sync with the generator (a generator change without
    // regenerating, or a hand edit of anything but a table value, fails
    // here). Whether the table values still match the DDF files is what
    // `ddf-codegen <folder> --check` verifies; it needs the DDF files.
    let models: Vec<ObjectModel> = Registry::standard().iter().cloned().collect();
    let text = codegen::generate(&models).unwrap();
    if text != COMMITTED {
        let line = text
            .lines()
            .zip(COMMITTED.lines())
            .position(|(a, b)| a != b)
            .map_or(0, |i| i + 1);
        panic!("generated.rs differs from the generator output (first at line {line}); regenerate");
    }
}

#[test]
fn committed_generated_rs_holds_every_listed_ddf() {
    // The objects/README.md source table, one row per DDF file: regenerating
    // from a folder that misses a file (or has an extra one) changes this.
    let expected: &[(u16, &str)] = &[
        (0, "1.0"),
        (0, "1.1"),
        (0, "1.2"),
        (1, "1.0"),
        (1, "1.1"),
        (1, "1.2"),
        (2, "1.0"),
        (2, "1.1"),
        (3, "1.0"),
        (3, "1.1"),
        (3, "1.2"),
        (4, "1.0"),
        (4, "1.1"),
        (4, "1.2"),
        (4, "1.3"),
        (5, "1.0"),
        (5, "1.1"),
        (6, "1.0"),
        (6, "1.1"),
        (7, "1.0"),
        (9, "1.0"),
        (9, "1.1"),
        (19, "1.0"),
        (20, "1.0"),
        (20, "2.0"),
        (20, "2.1"),
        (20, "3.0"),
        (20, "3.1"),
        (21, "1.0"),
        (21, "1.1"),
        (21, "2.0"),
    ];
    let committed: Vec<(u16, &str)> = lwm2m_objects::OBJECTS
        .iter()
        .map(|o| (o.id, o.version))
        .collect();
    assert_eq!(committed, expected);
    // Multi-version objects get one module per version in the committed text.
    for needle in [
        "pub mod connectivity_monitoring {",
        "    pub use self::v1_3::*;",
        "    &connectivity_monitoring::v1_0::MODEL,",
        "    &location::v1_0::MODEL,",
        "    &software_management::v1_0::MODEL,",
        "    &event_log::v3_1::MODEL,",
        "    &oscore::v2_0::MODEL,",
    ] {
        assert!(COMMITTED.contains(needle), "missing {needle:?}");
    }
}

#[test]
fn generation_is_deterministic_and_order_independent() {
    let models: Vec<ObjectModel> = Registry::standard().iter().cloned().collect();
    let first = codegen::generate(&models).unwrap();
    let second = codegen::generate(&models).unwrap();
    assert_eq!(first, second);
    let mut reversed = models.clone();
    reversed.reverse();
    assert_eq!(codegen::generate(&reversed).unwrap(), first);
    // Interleave: odd positions first.
    let shuffled: Vec<ObjectModel> = models
        .iter()
        .skip(1)
        .step_by(2)
        .chain(models.iter().step_by(2))
        .cloned()
        .collect();
    assert_eq!(codegen::generate(&shuffled).unwrap(), first);
}

#[test]
fn word_splitting() {
    let w = |s: &str| words(s).join(" ");
    assert_eq!(w("LogDataFormat"), "Log Data Format");
    assert_eq!(w("ExtDevInfo"), "Ext Dev Info");
    assert_eq!(w("SignalSNR"), "Signal SNR");
    assert_eq!(w("SNRValue"), "SNR Value");
    assert_eq!(w("IPv6 Address"), "IPv6 Address");
    assert_eq!(w("LwM2M COSE Security"), "LwM2M COSE Security");
    assert_eq!(w("TLS-DTLS Alert Code"), "TLS DTLS Alert Code");
    assert_eq!(w("  **  "), "");
}

#[test]
fn constant_names() {
    assert_eq!(const_name("Manufacturer"), "MANUFACTURER");
    assert_eq!(const_name("Model Number"), "MODEL_NUMBER");
    assert_eq!(const_name("LWM2M  Server URI"), "LWM2M_SERVER_URI");
    assert_eq!(
        const_name("SMS Binding Secret Key(s)"),
        "SMS_BINDING_SECRET_KEY_S"
    );
    assert_eq!(const_name("DTLS/TLS Ciphersuite"), "DTLS_TLS_CIPHERSUITE");
    assert_eq!(
        const_name("TLS 1.3 Features To Use by Client"),
        "TLS_1_3_FEATURES_TO_USE_BY_CLIENT"
    );
    assert_eq!(const_name(" OSCORE ID Context"), "OSCORE_ID_CONTEXT");
    assert_eq!(const_name("Température"), "TEMP_RATURE");
    assert_eq!(const_name("5G Mode"), "RES_5G_MODE");
    assert_eq!(const_name("---"), "");
}

#[test]
fn module_names() {
    assert_eq!(module_name("Device"), "device");
    assert_eq!(module_name("LWM2M Security"), "security");
    assert_eq!(module_name("LwM2M Server"), "server");
    assert_eq!(module_name("LWM2M"), "lwm2m");
    assert_eq!(
        module_name("BinaryAppDataContainer"),
        "binary_app_data_container"
    );
    assert_eq!(module_name("Type"), "type_object");
    assert_eq!(module_name("DDF"), "ddf_object");
    assert_eq!(module_name("3D Printer"), "object_3d_printer");
    assert_eq!(version_module("1.0"), "v1_0");
    assert_eq!(version_module("10.2"), "v10_2");
}

fn resource(id: u16, name: &str) -> ResourceModel {
    ResourceModel {
        id,
        name: name.into(),
        operations: Operations::ReadWrite,
        multiple: false,
        mandatory: false,
        resource_type: ResourceType::Integer,
        range: String::new(),
        units: String::new(),
        description: String::new(),
    }
}

fn object(id: u16, name: &str, version: &str, resources: &[ResourceModel]) -> ObjectModel {
    ObjectModel {
        id,
        name: name.into(),
        version: version.into(),
        lwm2m_version: "1.1".into(),
        multiple: false,
        mandatory: false,
        description: String::new(),
        resources: resources.iter().map(|r| (r.id, r.clone())).collect(),
    }
}

#[test]
fn constant_collisions_are_resolved_by_id() {
    let m = object(
        40000,
        "Collide",
        "1.0",
        &[
            resource(1, "Value"),
            resource(2, "value"),
            resource(3, "Value_1"),
            resource(4, "Version"),
            resource(5, "!!"),
            resource(6, "ID"),
        ],
    );
    let names = resource_const_names(&m);
    let expect: BTreeMap<u16, String> = [
        (1, "VALUE_1_1"),
        (2, "VALUE_2"),
        (3, "VALUE_1_3"),
        (4, "VERSION_RESOURCE"),
        (5, "RESOURCE_5"),
        (6, "ID_RESOURCE"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect();
    assert_eq!(names, expect);
}

#[test]
fn module_collisions_are_resolved_by_id() {
    let a = object(40001, "Meter", "1.0", &[resource(0, "A")]);
    let b = object(40002, "METER", "1.0", &[resource(0, "B")]);
    let text = codegen::generate(&[b, a]).unwrap();
    assert!(text.contains("pub mod meter_40001 {"));
    assert!(text.contains("pub mod meter_40002 {"));
    assert!(!text.contains("pub mod meter {"));
}

#[test]
fn versioned_modules_only_when_versions_differ() {
    let single = object(40003, "Lamp", "1.0", &[resource(0, "On")]);
    let text = codegen::generate(&[single]).unwrap();
    assert!(text.contains("pub mod lamp {"));
    assert!(!text.contains("pub mod v1_0"));
    assert!(text.contains("    &lamp::MODEL,"));

    let old = object(40003, "Lamp", "1.0", &[resource(0, "On")]);
    let new = object(
        40003,
        "Lamp",
        "1.10",
        &[resource(0, "On"), resource(1, "Dim")],
    );
    let newer_but_smaller = object(40003, "Lamp", "1.9", &[resource(0, "On")]);
    let text = codegen::generate(&[new, old, newer_but_smaller]).unwrap();
    // Latest by numeric order is 1.10, re-exported at the object module.
    assert!(text.contains("pub use self::v1_10::*;"));
    let order: Vec<usize> = [
        "&lamp::v1_0::MODEL",
        "&lamp::v1_9::MODEL",
        "&lamp::v1_10::MODEL",
    ]
    .iter()
    .map(|s| text.find(s).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
}

#[test]
fn duplicate_and_clashing_versions_are_refused() {
    let a = object(40004, "Dup", "1.0", &[]);
    assert_eq!(
        codegen::generate(&[a.clone(), a.clone()]).unwrap_err(),
        CodegenError::DuplicateObject {
            id: 40004,
            version: "1.0".into()
        }
    );
    let b = object(40004, "Dup", "1-0", &[]);
    assert!(matches!(
        codegen::generate(&[a, b]).unwrap_err(),
        CodegenError::VersionNameClash { id: 40004, .. }
    ));
}

#[test]
fn string_literals_are_escaped() {
    let mut r = resource(0, "Quote \" and \\ back");
    r.description = "line1\nline2\ttab \u{1} ctl ’ unicode".into();
    let m = object(40005, "Esc", "1.0", &[r]);
    let text = codegen::generate(&[m]).unwrap();
    assert!(text.contains(r#"name: "Quote \" and \\ back","#), "{text}");
    assert!(
        text.contains(r#"description: "line1\nline2\ttab \u{1} ctl ’ unicode","#),
        "{text}"
    );
}

#[test]
fn parsed_custom_ddf_generates_expected_items() {
    let xml = r#"<LWM2M><Object ObjectType="MODefinition"><Name>Water Meter</Name>
        <ObjectID>32770</ObjectID><ObjectVersion>1.1</ObjectVersion><LWM2MVersion>1.1</LWM2MVersion>
        <MultipleInstances>Multiple</MultipleInstances><Mandatory>Optional</Mandatory>
        <Description1>Counts litres.</Description1>
        <Resources>
          <Item ID="0"><Name>Cumulated Volume</Name><Operations>R</Operations><MultipleInstances>Single</MultipleInstances><Mandatory>Mandatory</Mandatory><Type>Float</Type><Units>l</Units></Item>
          <Item ID="1"><Name>Reset</Name><Operations>E</Operations><MultipleInstances>Single</MultipleInstances><Mandatory>Optional</Mandatory><Type></Type></Item>
        </Resources></Object></LWM2M>"#;
    let models = ddf::parse(xml).unwrap();
    let text = codegen::generate(&models).unwrap();
    for needle in [
        "pub mod water_meter {",
        "pub const ID: u16 = 32770;",
        "pub const VERSION: &str = \"1.1\";",
        "pub const CUMULATED_VOLUME: u16 = 0;",
        "pub const RESET: u16 = 1;",
        "#[doc = \"Resource 0, \\\"Cumulated Volume\\\": R, single, mandatory, Float.\"]",
        "operations: Op::Execute,",
        "resource_type: Ty::None,",
        "units: \"l\",",
        "description: \"Counts litres.\",",
        "    &water_meter::MODEL,",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}
