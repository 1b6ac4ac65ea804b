//! OMA DDF (Device Description Framework) XML parser.
//!
//! A DDF file is the XML form of LwM2M object definitions (schema `LWM2M.xsd` /
//! `LWM2M-v1_1.xsd`): an `<LWM2M>` root with one or more
//! `<Object ObjectType="MODefinition">` children, each with `<Name>`,
//! `<ObjectID>`, `<ObjectVersion>`, `<LWM2MVersion>`, `<MultipleInstances>`,
//! `<Mandatory>`, `<Description1>` and `<Resources>` holding `<Item ID="..">`
//! elements (`<Name>`, `<Operations>`, `<MultipleInstances>`, `<Mandatory>`,
//! `<Type>`, `<RangeEnumeration>`, `<Units>`, `<Description>`).
//!
//! [`parse`] is the one parser of the crate: the runtime loader
//! ([`Registry::load_ddf_str`](crate::Registry::load_ddf_str),
//! [`Registry::load_ddf_dir`](crate::Registry::load_ddf_dir)) and the
//! `ddf-codegen` generator both use it.
//!
//! # Safety against hostile files
//!
//! The XML is read with `roxmltree`, which does no I/O of its own (so it can
//! never fetch an external entity or DTD), and with DTDs refused outright:
//! any `<!DOCTYPE` gives [`DdfError::DoctypeNotAllowed`], so neither external
//! nor internal entities are ever expanded ("billion laughs" / XXE). Input size
//! ([`MAX_DDF_LEN`]) and node count are bounded.
//!
//! # What is lenient, what is not
//!
//! Unknown elements are ignored (newer schema versions add some), and so are
//! comments. Element order does not matter. Missing `<RangeEnumeration>`,
//! `<Units>`, `<Description>`, `<Description1>` mean empty text; a missing
//! `<ObjectVersion>` / `<LWM2MVersion>` means `"1.0"` (the LwM2M 1.0 DDFs have
//! none); a missing `<Type>` is accepted only for executable resources.
//! Enumerated values (`Single`, `Optional`, `Unsigned Integer`, ...) are
//! matched ignoring ASCII case and surrounding whitespace. Everything else that
//! is missing, repeated or malformed is a typed [`DdfError`]; `<ObjectURN>` and
//! `<Description2>` are not kept.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use lwm2m_core::model::{ObjectModel, Operations, ResourceModel, ResourceType, MAX_ID};
use roxmltree::{Document, Node, ParsingOptions};

/// Largest DDF text accepted (bytes). The biggest OMA registry files are a few
/// hundred kilobytes.
pub const MAX_DDF_LEN: usize = 4 * 1024 * 1024;

/// Largest number of XML nodes accepted in one DDF text.
const MAX_NODES: u32 = 500_000;

/// Where in a DDF text an error was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    /// Position of the `<Object>` among the `<Object>` elements (0-based).
    pub object_index: usize,
    /// `<ObjectID>`, when it was read already.
    pub object: Option<u16>,
    /// `<Item ID>`, for errors inside a resource definition.
    pub resource: Option<u16>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Object> #{}", self.object_index)?;
        if let Some(id) = self.object {
            write!(f, " (ObjectID {id})")?;
        }
        if let Some(id) = self.resource {
            write!(f, ", <Item ID=\"{id}\">")?;
        }
        Ok(())
    }
}

/// Why a DDF text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DdfError {
    /// The text is longer than [`MAX_DDF_LEN`].
    TooLarge {
        /// Length of the text.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The text has a `<!DOCTYPE>`: refused so that no entity is ever expanded
    /// or fetched.
    DoctypeNotAllowed,
    /// The text is not well-formed XML (or exceeds the node limit).
    Xml {
        /// What the XML parser reported.
        message: String,
        /// 1-based line of the error.
        line: u32,
        /// 1-based column of the error.
        column: u32,
    },
    /// The root element is not `<LWM2M>`.
    NotLwm2m {
        /// The root element found.
        root: String,
    },
    /// The `<LWM2M>` root holds no `<Object>`.
    NoObject,
    /// A required element (or the `ID` attribute) is missing.
    MissingElement {
        /// Where.
        at: Location,
        /// Which element, e.g. `"ObjectID"`.
        element: &'static str,
    },
    /// An element that must appear once appears more than once.
    DuplicateElement {
        /// Where.
        at: Location,
        /// Which element.
        element: &'static str,
    },
    /// An object or resource id is not a decimal number.
    BadId {
        /// Where.
        at: Location,
        /// `"ObjectID"` or `"Item ID"`.
        element: &'static str,
        /// The text found.
        value: String,
    },
    /// An object or resource id is above 65534 (65535 is reserved).
    IdOutOfRange {
        /// Where.
        at: Location,
        /// `"ObjectID"` or `"Item ID"`.
        element: &'static str,
        /// The number found.
        value: u64,
    },
    /// `<Type>` is not one of the LwM2M data types.
    BadType {
        /// Where.
        at: Location,
        /// The text found.
        value: String,
    },
    /// `<Operations>` is not one of empty, `R`, `W`, `RW`, `E`.
    BadOperations {
        /// Where.
        at: Location,
        /// The text found.
        value: String,
    },
    /// Some other element has a value outside its enumeration.
    BadValue {
        /// Where.
        at: Location,
        /// Which element.
        element: &'static str,
        /// The text found.
        value: String,
        /// What was expected, e.g. `"Single or Multiple"`.
        expected: &'static str,
    },
    /// Two `<Item>`s of one object have the same `ID`.
    DuplicateResource {
        /// Object id.
        object: u16,
        /// Resource id.
        resource: u16,
    },
    /// Two `<Object>`s of one text have the same id and version.
    DuplicateObject {
        /// Object id.
        object: u16,
        /// Object version.
        version: String,
    },
}

impl fmt::Display for DdfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DdfError::TooLarge { len, max } => {
                write!(f, "DDF text is {len} bytes, more than the {max} accepted")
            }
            DdfError::DoctypeNotAllowed => {
                write!(
                    f,
                    "DDF text has a <!DOCTYPE>; DTDs and entities are not accepted"
                )
            }
            DdfError::Xml {
                message,
                line,
                column,
            } => {
                write!(
                    f,
                    "DDF text is not well-formed XML at {line}:{column}: {message}"
                )
            }
            DdfError::NotLwm2m { root } => {
                write!(f, "DDF root element is <{root}>, expected <LWM2M>")
            }
            DdfError::NoObject => write!(f, "DDF <LWM2M> holds no <Object>"),
            DdfError::MissingElement { at, element } => {
                write!(f, "{at}: missing required {element}")
            }
            DdfError::DuplicateElement { at, element } => {
                write!(f, "{at}: <{element}> appears more than once")
            }
            DdfError::BadId { at, element, value } => {
                write!(f, "{at}: {element} {value:?} is not a decimal number")
            }
            DdfError::IdOutOfRange { at, element, value } => {
                write!(f, "{at}: {element} {value} is above the maximum {MAX_ID}")
            }
            DdfError::BadType { at, value } => write!(
                f,
                "{at}: <Type> {value:?} is not one of String, Integer, Unsigned Integer, \
                 Float, Boolean, Opaque, Time, Objlnk, Corelnk or empty"
            ),
            DdfError::BadOperations { at, value } => write!(
                f,
                "{at}: <Operations> {value:?} is not one of R, W, RW, E or empty"
            ),
            DdfError::BadValue {
                at,
                element,
                value,
                expected,
            } => {
                write!(f, "{at}: <{element}> {value:?}, expected {expected}")
            }
            DdfError::DuplicateResource { object, resource } => {
                write!(
                    f,
                    "object {object} defines resource {resource} more than once"
                )
            }
            DdfError::DuplicateObject { object, version } => {
                write!(
                    f,
                    "object {object} version {version} is defined more than once"
                )
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DdfError {}

/// Parses a DDF text into its object models (usually one).
///
/// ```
/// let xml = r#"<LWM2M><Object ObjectType="MODefinition">
///   <Name>Demo</Name><ObjectID>32000</ObjectID>
///   <MultipleInstances>Single</MultipleInstances><Mandatory>Optional</Mandatory>
///   <Resources><Item ID="0"><Name>Value</Name><Operations>R</Operations>
///     <MultipleInstances>Single</MultipleInstances><Mandatory>Mandatory</Mandatory>
///     <Type>Float</Type></Item></Resources>
/// </Object></LWM2M>"#;
/// let models = lwm2m_objects::ddf::parse(xml).unwrap();
/// assert_eq!(models[0].id, 32000);
/// assert_eq!(models[0].version, "1.0");
/// assert_eq!(models[0].resource(0).unwrap().name, "Value");
/// ```
pub fn parse(xml: &str) -> Result<Vec<ObjectModel>, DdfError> {
    if xml.len() > MAX_DDF_LEN {
        return Err(DdfError::TooLarge {
            len: xml.len(),
            max: MAX_DDF_LEN,
        });
    }
    let options = ParsingOptions {
        // Refuse any DTD: no entity is expanded, none can be external.
        allow_dtd: false,
        nodes_limit: MAX_NODES,
    };
    let doc = Document::parse_with_options(xml, options).map_err(xml_error)?;
    let root = doc.root_element();
    if root.tag_name().name() != "LWM2M" {
        return Err(DdfError::NotLwm2m {
            root: root.tag_name().name().to_string(),
        });
    }
    let mut models: Vec<ObjectModel> = Vec::new();
    for (index, node) in elements(root, "Object").enumerate() {
        let model = parse_object(node, index)?;
        if models
            .iter()
            .any(|m| m.id == model.id && m.version == model.version)
        {
            return Err(DdfError::DuplicateObject {
                object: model.id,
                version: model.version,
            });
        }
        models.push(model);
    }
    if models.is_empty() {
        return Err(DdfError::NoObject);
    }
    Ok(models)
}

fn xml_error(e: roxmltree::Error) -> DdfError {
    if matches!(e, roxmltree::Error::DtdDetected) {
        return DdfError::DoctypeNotAllowed;
    }
    let pos = e.pos();
    DdfError::Xml {
        message: e.to_string(),
        line: pos.row,
        column: pos.col,
    }
}

/// Child elements of `node` named `name` (local name, any namespace).
fn elements<'a, 'input: 'a>(
    node: Node<'a, 'input>,
    name: &'static str,
) -> impl Iterator<Item = Node<'a, 'input>> + 'a {
    node.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

/// The single child element `name` of `node`, if any.
fn child<'a, 'input: 'a>(
    node: Node<'a, 'input>,
    name: &'static str,
    at: Location,
) -> Result<Option<Node<'a, 'input>>, DdfError> {
    let mut found = elements(node, name);
    let first = found.next();
    if found.next().is_some() {
        return Err(DdfError::DuplicateElement { at, element: name });
    }
    Ok(first)
}

/// Text content of an element: its text and CDATA children, trimmed.
fn text_of(node: Node<'_, '_>) -> String {
    let mut s = String::new();
    for c in node.children() {
        if let Some(t) = c.text().filter(|_| c.is_text()) {
            s.push_str(t);
        }
    }
    s.trim().to_string()
}

/// Text of the required single child `name`.
fn required(node: Node<'_, '_>, name: &'static str, at: Location) -> Result<String, DdfError> {
    match child(node, name, at)? {
        Some(n) => Ok(text_of(n)),
        None => Err(DdfError::MissingElement { at, element: name }),
    }
}

/// Text of the optional single child `name` (empty when absent).
fn optional(node: Node<'_, '_>, name: &'static str, at: Location) -> Result<String, DdfError> {
    Ok(child(node, name, at)?.map(text_of).unwrap_or_default())
}

fn parse_id(text: &str, element: &'static str, at: Location) -> Result<u16, DdfError> {
    let t = text.trim();
    // Only plain decimal digits: `+5`, `0x5`, ` 5 5` are not ids.
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DdfError::BadId {
            at,
            element,
            value: text.to_string(),
        });
    }
    // A long run of digits overflows u64: still "out of range", not "bad".
    let value = t.parse::<u64>().unwrap_or(u64::MAX);
    if value > u64::from(MAX_ID) {
        return Err(DdfError::IdOutOfRange { at, element, value });
    }
    // Checked above: value <= MAX_ID < u16::MAX.
    u16::try_from(value).map_err(|_| DdfError::IdOutOfRange { at, element, value })
}

fn parse_multiple(text: &str, at: Location) -> Result<bool, DdfError> {
    if text.eq_ignore_ascii_case("Multiple") {
        Ok(true)
    } else if text.eq_ignore_ascii_case("Single") {
        Ok(false)
    } else {
        Err(DdfError::BadValue {
            at,
            element: "MultipleInstances",
            value: text.to_string(),
            expected: "Single or Multiple",
        })
    }
}

fn parse_mandatory(text: &str, at: Location) -> Result<bool, DdfError> {
    if text.eq_ignore_ascii_case("Mandatory") {
        Ok(true)
    } else if text.eq_ignore_ascii_case("Optional") {
        Ok(false)
    } else {
        Err(DdfError::BadValue {
            at,
            element: "Mandatory",
            value: text.to_string(),
            expected: "Mandatory or Optional",
        })
    }
}

/// `major.minor`, both decimal: the generator turns versions into module
/// names, and the registry orders them numerically.
fn parse_version(text: &str, element: &'static str, at: Location) -> Result<String, DdfError> {
    if text.is_empty() {
        return Ok(String::from("1.0"));
    }
    let mut parts = text.split('.');
    let ok = match (parts.next(), parts.next(), parts.next()) {
        (Some(major), Some(minor), None) => [major, minor]
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit())),
        _ => false,
    };
    if ok {
        Ok(text.to_string())
    } else {
        Err(DdfError::BadValue {
            at,
            element,
            value: text.to_string(),
            expected: "a version like 1.0",
        })
    }
}

/// Parses a `<Type>` value (empty means no type, as for executable resources).
pub fn parse_type(text: &str) -> Option<ResourceType> {
    let t = text.trim();
    let is = |name: &str| t.eq_ignore_ascii_case(name);
    Some(if t.is_empty() {
        ResourceType::None
    } else if is("String") {
        ResourceType::String
    } else if is("Integer") {
        ResourceType::Integer
    } else if is("Unsigned Integer") {
        ResourceType::UnsignedInteger
    } else if is("Float") {
        ResourceType::Float
    } else if is("Boolean") {
        ResourceType::Boolean
    } else if is("Opaque") {
        ResourceType::Opaque
    } else if is("Time") {
        ResourceType::Time
    } else if is("Objlnk") {
        ResourceType::ObjLnk
    } else if is("Corelnk") {
        ResourceType::CoreLnk
    } else {
        return None;
    })
}

/// Parses an `<Operations>` value.
pub fn parse_operations(text: &str) -> Option<Operations> {
    let t = text.trim();
    let is = |name: &str| t.eq_ignore_ascii_case(name);
    Some(if t.is_empty() {
        Operations::None
    } else if is("R") {
        Operations::Read
    } else if is("W") {
        Operations::Write
    } else if is("RW") {
        Operations::ReadWrite
    } else if is("E") {
        Operations::Execute
    } else {
        return None;
    })
}

fn parse_object(node: Node<'_, '_>, index: usize) -> Result<ObjectModel, DdfError> {
    let mut at = Location {
        object_index: index,
        ..Location::default()
    };
    let id_text = required(node, "ObjectID", at)?;
    let id = parse_id(&id_text, "ObjectID", at)?;
    at.object = Some(id);

    let name = required(node, "Name", at)?;
    let version = parse_version(&optional(node, "ObjectVersion", at)?, "ObjectVersion", at)?;
    let lwm2m_version = parse_version(&optional(node, "LWM2MVersion", at)?, "LWM2MVersion", at)?;
    let multiple = parse_multiple(&required(node, "MultipleInstances", at)?, at)?;
    let mandatory = parse_mandatory(&required(node, "Mandatory", at)?, at)?;
    let description = optional(node, "Description1", at)?;

    let Some(items) = child(node, "Resources", at)? else {
        return Err(DdfError::MissingElement {
            at,
            element: "Resources",
        });
    };
    let mut resources = BTreeMap::new();
    for item in elements(items, "Item") {
        let resource = parse_item(item, at)?;
        let rid = resource.id;
        if resources.insert(rid, resource).is_some() {
            return Err(DdfError::DuplicateResource {
                object: id,
                resource: rid,
            });
        }
    }
    Ok(ObjectModel {
        id,
        name,
        version,
        lwm2m_version,
        multiple,
        mandatory,
        description,
        resources,
    })
}

fn parse_item(item: Node<'_, '_>, object_at: Location) -> Result<ResourceModel, DdfError> {
    let Some(id_text) = item.attribute("ID") else {
        return Err(DdfError::MissingElement {
            at: object_at,
            element: "Item ID attribute",
        });
    };
    let id = parse_id(id_text, "Item ID", object_at)?;
    let at = Location {
        resource: Some(id),
        ..object_at
    };
    let name = required(item, "Name", at)?;
    let ops_text = required(item, "Operations", at)?;
    let operations = parse_operations(&ops_text).ok_or(DdfError::BadOperations {
        at,
        value: ops_text,
    })?;
    let multiple = parse_multiple(&required(item, "MultipleInstances", at)?, at)?;
    let mandatory = parse_mandatory(&required(item, "Mandatory", at)?, at)?;
    let resource_type = match child(item, "Type", at)? {
        Some(n) => {
            let t = text_of(n);
            parse_type(&t).ok_or(DdfError::BadType { at, value: t })?
        }
        // Executable resources carry no value, so some DDFs leave <Type> out.
        None if operations == Operations::Execute => ResourceType::None,
        None => {
            return Err(DdfError::MissingElement {
                at,
                element: "Type",
            })
        }
    };
    Ok(ResourceModel {
        id,
        name,
        operations,
        multiple,
        mandatory,
        resource_type,
        range: optional(item, "RangeEnumeration", at)?,
        units: optional(item, "Units", at)?,
        description: optional(item, "Description", at)?,
    })
}

/// Why [`read_dir`] (or [`Registry::load_ddf_dir`](crate::Registry::load_ddf_dir)) failed.
#[cfg(feature = "std")]
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError {
    /// The folder or a file could not be read (or a file is not UTF-8).
    Io {
        /// The folder or file.
        path: std::path::PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A file is not a valid DDF.
    Ddf {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        error: DdfError,
    },
}

#[cfg(feature = "std")]
impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            LoadError::Ddf { path, error } => write!(f, "{}: {error}", path.display()),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Io { error, .. } => Some(error),
            LoadError::Ddf { error, .. } => Some(error),
        }
    }
}

/// Parses every `*.xml` file of folder `dir` (not its sub-folders), in
/// file-name order; returns each file with its objects. Stops at the first
/// unreadable or invalid file.
#[cfg(feature = "std")]
pub fn read_dir(
    dir: &std::path::Path,
) -> Result<Vec<(std::path::PathBuf, Vec<ObjectModel>)>, LoadError> {
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |error| LoadError::Io { path, error }
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let is_xml = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("xml"));
        if is_xml && entry.file_type().map_err(io(&path))?.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut out = Vec::with_capacity(files.len());
    for path in files {
        let len = std::fs::metadata(&path).map_err(io(&path))?.len();
        // Check before reading, so a huge file is never loaded into memory.
        if len > MAX_DDF_LEN as u64 {
            return Err(LoadError::Ddf {
                path,
                error: DdfError::TooLarge {
                    len: usize::try_from(len).unwrap_or(usize::MAX),
                    max: MAX_DDF_LEN,
                },
            });
        }
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        match parse(&text) {
            Ok(models) => out.push((path, models)),
            Err(error) => return Err(LoadError::Ddf { path, error }),
        }
    }
    Ok(out)
}
