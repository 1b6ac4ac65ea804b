//! Rust code generation from object models (the library half of `ddf-codegen`).
//!
//! [`generate`] turns a set of [`ObjectModel`]s (usually parsed from DDF files
//! with [`crate::ddf::parse`]) into the text of `src/generated.rs`:
//!
//! * one module per object id, named after the object (see [`module_name`]),
//!   holding `ID`, `VERSION`, `MODEL` (a [`StaticObject`](crate::StaticObject))
//!   and one `u16` constant per resource (see [`const_name`]);
//! * when an object has several versions, one sub-module per version
//!   (`v1_0`, `v1_1`, ...) each with its own `VERSION`, `MODEL` and constants,
//!   and the object module re-exports the latest one;
//! * `OBJECTS`, every model of every version, sorted by (id, version).
//!
//! The output depends only on the models, never on their order, the file
//! names they came from or the machine: generating twice gives the same text.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::{self, Write};

use lwm2m_core::model::{ObjectModel, Operations, ResourceModel, ResourceType};

use crate::registry::compare_versions;

/// Why [`generate`] refused its input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodegenError {
    /// Two models have the same id and version.
    DuplicateObject {
        /// Object id.
        id: u16,
        /// Object version.
        version: String,
    },
    /// Two versions of one object give the same module name (e.g. `1.0` and
    /// `1-0`); the DDF parser only accepts `major.minor`, so this only
    /// happens with models built by hand.
    VersionNameClash {
        /// Object id.
        id: u16,
        /// First version.
        first: String,
        /// Second version.
        second: String,
    },
}

impl fmt::Display for CodegenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodegenError::DuplicateObject { id, version } => {
                write!(f, "object {id} version {version} is given more than once")
            }
            CodegenError::VersionNameClash { id, first, second } => write!(
                f,
                "object {id}: versions {first:?} and {second:?} give the same module name"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for CodegenError {}

/// Rust keywords (all editions), which cannot be module names.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "union", "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Names the crate root already uses (object modules are re-exported there).
const CRATE_NAMES: &[&str] = &["codegen", "ddf", "generated", "registry", "static_model"];

/// Item names each generated object / version module already uses.
const RESERVED_CONSTS: &[&str] = &["ID", "VERSION", "MODEL"];

/// Splits a DDF name into words: runs of ASCII letters and digits, split again
/// at camel-case boundaries (`LogDataFormat` → `Log Data Format`, `SignalSNR`
/// → `Signal SNR`, `SNRValue` → `SNR Value`); `LwM2M` in any case stays one
/// word. Other characters separate words and are dropped.
pub fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for raw in name.split(|c: char| !c.is_ascii_alphanumeric()) {
        if raw.is_empty() {
            continue;
        }
        if raw.eq_ignore_ascii_case("lwm2m") {
            out.push(raw.to_string());
            continue;
        }
        let chars: Vec<char> = raw.chars().collect();
        let mut start = 0;
        for i in 1..chars.len() {
            let prev = chars[i - 1];
            let cur = chars[i];
            // `aB`: a new word starts at B.
            let lower_to_upper = prev.is_ascii_lowercase() && cur.is_ascii_uppercase();
            // `ABcd`: an acronym ends before B when at least two lower-case
            // letters follow (so `IPv6` stays one word, `SNRValue` splits).
            let acronym_end = prev.is_ascii_uppercase()
                && cur.is_ascii_uppercase()
                && chars.get(i + 1).is_some_and(|c| c.is_ascii_lowercase())
                && chars.get(i + 2).is_some_and(|c| c.is_ascii_lowercase());
            if lower_to_upper || acronym_end {
                out.push(chars[start..i].iter().collect());
                start = i;
            }
        }
        out.push(chars[start..].iter().collect());
    }
    out
}

/// The SCREAMING_SNAKE constant name of a resource name, before collision
/// handling: `"Model Number"` → `MODEL_NUMBER`, `"SMS Binding Secret Key(s)"`
/// → `SMS_BINDING_SECRET_KEY_S`. Empty when the name has no letter or digit;
/// prefixed with `RES_` when it would start with a digit.
pub fn const_name(name: &str) -> String {
    let joined = words(name)
        .iter()
        .map(|w| w.to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join("_");
    if joined.starts_with(|c: char| c.is_ascii_digit()) {
        format!("RES_{joined}")
    } else {
        joined
    }
}

/// The snake_case module name of an object name, before collision handling:
/// `"Device"` → `device`, `"BinaryAppDataContainer"` →
/// `binary_app_data_container`. A leading `LwM2M` word is dropped
/// (`"LWM2M Security"` → `security`); names that would be a keyword, a name
/// the crate root uses, or start with a digit get `_object` / `object_` added.
pub fn module_name(name: &str) -> String {
    let mut w: Vec<String> = words(name).iter().map(|w| w.to_ascii_lowercase()).collect();
    if w.len() > 1 && w.first().is_some_and(|f| f == "lwm2m") {
        w.remove(0);
    }
    let joined = w.join("_");
    if joined.starts_with(|c: char| c.is_ascii_digit()) {
        format!("object_{joined}")
    } else if KEYWORDS.contains(&joined.as_str()) || CRATE_NAMES.contains(&joined.as_str()) {
        format!("{joined}_object")
    } else {
        joined
    }
}

/// The module name of a version: `"1.0"` → `v1_0`.
pub fn version_module(version: &str) -> String {
    let mut s = String::from("v");
    for c in version.chars() {
        s.push(if c.is_ascii_alphanumeric() { c } else { '_' });
    }
    s
}

/// Makes `names` (keyed by a unique number) distinct: every name shared by
/// several keys gets `_<key>` appended, until no two are equal. The result
/// depends only on the input, not on iteration order.
fn dedup(mut names: BTreeMap<u16, String>) -> BTreeMap<u16, String> {
    loop {
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for n in names.values() {
            *count.entry(n.clone()).or_default() += 1;
        }
        let mut changed = false;
        for (key, n) in names.iter_mut() {
            if count.get(n).copied().unwrap_or(0) > 1 {
                *n = format!("{n}_{key}");
                changed = true;
            }
        }
        if !changed {
            return names;
        }
    }
}

/// Constant names of the resources of one model, keyed by resource id.
pub fn resource_const_names(model: &ObjectModel) -> BTreeMap<u16, String> {
    let names = model
        .resources
        .values()
        .map(|r| {
            let mut n = const_name(&r.name);
            if n.is_empty() {
                n = format!("RESOURCE_{}", r.id);
            } else if RESERVED_CONSTS.contains(&n.as_str()) {
                n.push_str("_RESOURCE");
            }
            (r.id, n)
        })
        .collect();
    dedup(names)
}

/// Escapes `s` as the inside of a Rust string literal. Hand-written rather than
/// `{:?}` so the output does not change with the compiler's `Debug` rules.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

fn lit(s: &str) -> String {
    format!("\"{}\"", escape(s))
}

fn ops_code(o: Operations) -> &'static str {
    match o {
        Operations::None => "Op::None",
        Operations::Read => "Op::Read",
        Operations::Write => "Op::Write",
        Operations::ReadWrite => "Op::ReadWrite",
        Operations::Execute => "Op::Execute",
    }
}

fn ops_text(o: Operations) -> &'static str {
    match o {
        Operations::None => "no operation",
        Operations::Read => "R",
        Operations::Write => "W",
        Operations::ReadWrite => "RW",
        Operations::Execute => "E",
    }
}

fn type_code(t: ResourceType) -> &'static str {
    match t {
        ResourceType::String => "Ty::String",
        ResourceType::Integer => "Ty::Integer",
        ResourceType::UnsignedInteger => "Ty::UnsignedInteger",
        ResourceType::Float => "Ty::Float",
        ResourceType::Boolean => "Ty::Boolean",
        ResourceType::Opaque => "Ty::Opaque",
        ResourceType::Time => "Ty::Time",
        ResourceType::ObjLnk => "Ty::ObjLnk",
        ResourceType::CoreLnk => "Ty::CoreLnk",
        ResourceType::None => "Ty::None",
    }
}

fn type_text(t: ResourceType) -> &'static str {
    match t {
        ResourceType::String => "String",
        ResourceType::Integer => "Integer",
        ResourceType::UnsignedInteger => "Unsigned Integer",
        ResourceType::Float => "Float",
        ResourceType::Boolean => "Boolean",
        ResourceType::Opaque => "Opaque",
        ResourceType::Time => "Time",
        ResourceType::ObjLnk => "Objlnk",
        ResourceType::CoreLnk => "Corelnk",
        ResourceType::None => "no type",
    }
}

fn resource_doc(r: &ResourceModel) -> String {
    format!(
        "Resource {}, {:?}: {}, {}, {}, {}.",
        r.id,
        r.name,
        ops_text(r.operations),
        if r.multiple { "multiple" } else { "single" },
        if r.mandatory { "mandatory" } else { "optional" },
        type_text(r.resource_type),
    )
}

/// Writes the items of one model (constants, `VERSION`, `MODEL`) at `indent`.
fn write_model_items(out: &mut String, m: &ObjectModel, indent: &str) {
    let names = resource_const_names(m);
    let _ = writeln!(
        out,
        "{indent}use crate::static_model::{{StaticObject, StaticResource}};"
    );
    let _ = writeln!(
        out,
        "{indent}use lwm2m_core::model::{{Operations as Op, ResourceType as Ty}};"
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "{indent}#[doc = \"Object version of this module.\"]");
    let _ = writeln!(
        out,
        "{indent}pub const VERSION: &str = {};",
        lit(&m.version)
    );
    for r in m.resources.values() {
        let name = names.get(&r.id).map(String::as_str).unwrap_or_default();
        let _ = writeln!(out, "{indent}#[doc = {}]", lit(&resource_doc(r)));
        let _ = writeln!(out, "{indent}pub const {name}: u16 = {};", r.id);
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{indent}#[doc = {}]",
        lit(&format!(
            "The definition of {} version {}.",
            m.name, m.version
        ))
    );
    let _ = writeln!(
        out,
        "{indent}pub static MODEL: StaticObject = StaticObject {{"
    );
    let _ = writeln!(out, "{indent}    id: {},", m.id);
    let _ = writeln!(out, "{indent}    name: {},", lit(&m.name));
    let _ = writeln!(out, "{indent}    version: {},", lit(&m.version));
    let _ = writeln!(out, "{indent}    lwm2m_version: {},", lit(&m.lwm2m_version));
    let _ = writeln!(out, "{indent}    multiple: {},", m.multiple);
    let _ = writeln!(out, "{indent}    mandatory: {},", m.mandatory);
    let _ = writeln!(out, "{indent}    description: {},", lit(&m.description));
    let _ = writeln!(out, "{indent}    resources: &[");
    for r in m.resources.values() {
        let _ = writeln!(out, "{indent}        StaticResource {{");
        let _ = writeln!(out, "{indent}            id: {},", r.id);
        let _ = writeln!(out, "{indent}            name: {},", lit(&r.name));
        let _ = writeln!(
            out,
            "{indent}            operations: {},",
            ops_code(r.operations)
        );
        let _ = writeln!(out, "{indent}            multiple: {},", r.multiple);
        let _ = writeln!(out, "{indent}            mandatory: {},", r.mandatory);
        let _ = writeln!(
            out,
            "{indent}            resource_type: {},",
            type_code(r.resource_type)
        );
        let _ = writeln!(out, "{indent}            range: {},", lit(&r.range));
        let _ = writeln!(out, "{indent}            units: {},", lit(&r.units));
        let _ = writeln!(
            out,
            "{indent}            description: {},",
            lit(&r.description)
        );
        let _ = writeln!(out, "{indent}        }},");
    }
    let _ = writeln!(out, "{indent}    ],");
    let _ = writeln!(out, "{indent}}};");
}

/// The header of `generated.rs`.
const HEADER: &str = "\
// @generated by `cargo run -p lwm2m-objects --bin ddf-codegen -- <ddf-folder>`
// from OMA LwM2M DDF files. Do not edit: change the generator or the DDF files
// and regenerate (objects/README.md says which files, from where).
//
// The object definitions (names, descriptions, ...) are Copyright Open Mobile
// Alliance, from the OMA LwM2M registry, under its BSD-3-Clause licence.
";

/// Generates the text of `generated.rs` from `models` (any order).
pub fn generate(models: &[ObjectModel]) -> Result<String, CodegenError> {
    // Group by id, versions sorted oldest first.
    let mut by_id: BTreeMap<u16, Vec<&ObjectModel>> = BTreeMap::new();
    for m in models {
        by_id.entry(m.id).or_default().push(m);
    }
    for (id, versions) in by_id.iter_mut() {
        versions.sort_by(|a, b| compare_versions(&a.version, &b.version));
        for pair in versions.windows(2) {
            if let [a, b] = pair {
                if a.version == b.version {
                    return Err(CodegenError::DuplicateObject {
                        id: *id,
                        version: a.version.clone(),
                    });
                }
                if version_module(&a.version) == version_module(&b.version) {
                    return Err(CodegenError::VersionNameClash {
                        id: *id,
                        first: a.version.clone(),
                        second: b.version.clone(),
                    });
                }
            }
        }
    }

    // Module names come from the latest version's name.
    let modules = dedup(
        by_id
            .iter()
            .map(|(id, versions)| {
                let name = versions.last().map(|m| m.name.as_str()).unwrap_or_default();
                let mut n = module_name(name);
                if n.is_empty() {
                    n = format!("object_{id}");
                }
                (*id, n)
            })
            .collect(),
    );

    let mut out = String::from(HEADER);
    let _ = writeln!(out);
    let _ = writeln!(out, "use crate::static_model::StaticObject;");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "#[doc = \"Every generated object model (all versions), sorted by id then version.\"]"
    );
    let _ = writeln!(out, "pub static OBJECTS: &[&StaticObject] = &[");
    for (id, versions) in &by_id {
        let module = modules.get(id).map(String::as_str).unwrap_or_default();
        for m in versions {
            if versions.len() > 1 {
                let _ = writeln!(out, "    &{module}::{}::MODEL,", version_module(&m.version));
            } else {
                let _ = writeln!(out, "    &{module}::MODEL,");
            }
        }
    }
    let _ = writeln!(out, "];");

    for (id, versions) in &by_id {
        let module = modules.get(id).map(String::as_str).unwrap_or_default();
        let Some(latest) = versions.last() else {
            continue;
        };
        let version_list = versions
            .iter()
            .map(|m| m.version.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(out);
        let doc = if versions.len() > 1 {
            format!(
                "{} (object {id}), versions {version_list}. The items here are those of the \
                 latest version, {}; each version has its own module.",
                latest.name, latest.version
            )
        } else {
            format!("{} (object {id}), version {}.", latest.name, latest.version)
        };
        let _ = writeln!(out, "#[doc = {}]", lit(&doc));
        let _ = writeln!(out, "pub mod {module} {{");
        let _ = writeln!(out, "    #[doc = \"Object id.\"]");
        let _ = writeln!(out, "    pub const ID: u16 = {id};");
        if versions.len() > 1 {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "    pub use self::{}::*;",
                version_module(&latest.version)
            );
            for m in versions {
                let _ = writeln!(out);
                let _ = writeln!(
                    out,
                    "    #[doc = {}]",
                    lit(&format!("{} version {}.", m.name, m.version))
                );
                let _ = writeln!(out, "    pub mod {} {{", version_module(&m.version));
                write_model_items(&mut out, m, "        ");
                let _ = writeln!(out, "    }}");
            }
        } else {
            let _ = writeln!(out);
            write_model_items(&mut out, latest, "    ");
        }
        let _ = writeln!(out, "}}");
    }
    Ok(out)
}
