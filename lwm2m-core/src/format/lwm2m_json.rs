//! The legacy LwM2M JSON format (`application/vnd.oma.lwm2m+json`, content
//! format 11543, and the pre-IANA number 1543) of LwM2M TS 1.0 §6.4.4.
//!
//! A payload is one object with an optional base name `bn`, an optional base
//! time `bt` and the array `e` of entries:
//!
//! ```text
//! {"bn":"/3/0/","e":[{"n":"0","sv":"Open Mobile Alliance"},{"n":"6/0","v":1},...]}
//! ```
//!
//! An entry's path is `bn` + `n`; its value is one of `v` (number: Integer,
//! Unsigned Integer, Float, Time), `sv` (string: String, Corelnk, and Opaque
//! as base64), `bv` (boolean) or `ov` (object link `"3:0"`); `t` is a time
//! relative to `bt`.
//!
//! Typing follows [`senml_json`](super::senml_json) (see its module doc),
//! with these differences:
//!
//! * Without a model, `sv` is always a String (the format cannot tell an
//!   opaque value from text); with an Opaque model it is decoded as base64
//!   (either alphabet, padding optional). The encoder writes opaque values in
//!   standard base64 with padding, as TS 1.0 devices expect.
//! * A path without its leading `/` is accepted (`"bn":"1024/0/"`), because
//!   some 1.0 devices send it.
//! * `{}` (no `e`) is a syntax error; `{"e":[]}` is an empty object, instance
//!   or multiple resource.
//!
//! The encoder writes `bn` (the full path for a single resource or a
//! resource instance, else the path and `/`) and then `e` with names relative
//! to it in id order; entry labels are written `n`, value, `t`.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

use super::base64::Alphabet as Base64Alphabet;
use super::json::{parse, Element, JsonValue, JsonWriter};
use super::senml_json::{
    build_node, check_value_path, expect_str, flatten, keep_whole, relative_name, resolve_path,
    resolve_time, time_number, type_value, value_names, write_record, Raw, ValueLabels,
};
use super::FormatError;
use crate::model::{ModelLookup, Node, Path, TimestampedValue};

/// Decodes an LwM2M JSON payload that belongs to request path `path` into the
/// node at that path. Times are ignored; entries must lie at or below `path`
/// ([`FormatError::InvalidPath`]) and name each resource (instance) once.
pub fn decode(payload: &[u8], path: &Path, models: &dyn ModelLookup) -> Result<Node, FormatError> {
    let entries = entries(payload)?;
    let mut typed = Vec::with_capacity(entries.len());
    for e in entries {
        if !path.is_prefix_of(&e.path) {
            return Err(FormatError::InvalidPath);
        }
        let value = type_value(e.value, &e.path, models, true)?;
        typed.push((e.offset, e.path, value));
    }
    build_node(path, typed, models)
}

/// Encodes `node`, which sits at `path`, as LwM2M JSON, appending to `out`.
///
/// ```
/// use lwm2m_core::format::lwm2m_json;
/// use lwm2m_core::model::{Node, Path, Resource, Value};
/// let node = Node::Resource(Resource::single(0, Value::String("Open Mobile Alliance".into())));
/// let mut out = Vec::new();
/// lwm2m_json::encode(&node, &Path::Resource(3, 0, 0), &mut out).unwrap();
/// assert_eq!(out, br#"{"bn":"/3/0/0","e":[{"sv":"Open Mobile Alliance"}]}"#);
/// ```
pub fn encode(node: &Node, path: &Path, out: &mut Vec<u8>) -> Result<(), FormatError> {
    keep_whole(out, |out| {
        let flat = flatten(node, path)?;
        let mut w = JsonWriter::new(out);
        w.begin_object();
        w.key("bn");
        w.string(&flat.base);
        w.key("e");
        w.begin_array();
        for (p, value) in &flat.entries {
            let n = if flat.leaf {
                None
            } else {
                Some(relative_name(&flat.base, p)?)
            };
            write_record(&mut w, None, n.as_deref(), value, None, &LEGACY_LABELS)?;
        }
        w.end_array();
        w.end_object();
        Ok(())
    })
}

/// Decodes timestamped values (LwM2M 1.0 notifications with historical
/// values) in payload order. `time` is `bt + t` if either is present, as
/// sent: TS 1.0 times are relative when negative or small, and the caller
/// knows "now".
pub fn decode_values(
    payload: &[u8],
    models: &dyn ModelLookup,
) -> Result<Vec<TimestampedValue>, FormatError> {
    let entries = entries(payload)?;
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let value = type_value(e.value, &e.path, models, true)?;
        out.push(TimestampedValue {
            path: e.path,
            value,
            time: e.time,
        });
    }
    Ok(out)
}

/// Encodes timestamped values in the given order, appending to `out`. Names
/// are chosen as in [`senml_json::encode_values`](super::senml_json::encode_values);
/// times are written as absolute `t` (no `bt`).
pub fn encode_values(values: &[TimestampedValue], out: &mut Vec<u8>) -> Result<(), FormatError> {
    keep_whole(out, |out| {
        let paths: Vec<Path> = values.iter().map(|v| v.path).collect();
        let (base, names) = value_names(&paths);
        let mut w = JsonWriter::new(out);
        w.begin_object();
        if let Some(bn) = &base {
            w.key("bn");
            w.string(bn);
        }
        w.key("e");
        w.begin_array();
        for (tv, name) in values.iter().zip(names.iter()) {
            check_value_path(&tv.path)?;
            write_record(
                &mut w,
                None,
                name.as_deref(),
                &tv.value,
                tv.time,
                &LEGACY_LABELS,
            )?;
        }
        w.end_array();
        w.end_object();
        Ok(())
    })
}

/// One entry with its name and time resolved.
struct Entry<'a> {
    offset: usize,
    path: Path,
    time: Option<f64>,
    value: Raw<'a>,
}

fn syntax(offset: usize, expected: &'static str) -> FormatError {
    FormatError::Syntax { offset, expected }
}

fn entries(payload: &[u8]) -> Result<Vec<Entry<'_>>, FormatError> {
    let doc = parse(payload)?;
    let JsonValue::Object(members) = doc.value else {
        return Err(syntax(doc.offset, "a JSON object with \"e\" (LwM2M JSON)"));
    };
    let mut bn: Option<Cow<'_, str>> = None;
    let mut bt: Option<f64> = None;
    let mut list: Option<Vec<Element<'_>>> = None;
    for (key, e) in members {
        let offset = e.offset;
        let dup = || syntax(offset, "each of \"bn\", \"bt\", \"e\" at most once");
        match key.as_ref() {
            "bn" => {
                if bn.is_some() {
                    return Err(dup());
                }
                bn = Some(expect_str(e, "a string for \"bn\"")?);
            }
            "bt" => {
                if bt.is_some() {
                    return Err(dup());
                }
                bt = Some(time_number(&e, "a number for \"bt\"")?);
            }
            "e" => {
                if list.is_some() {
                    return Err(dup());
                }
                let JsonValue::Array(items) = e.value else {
                    return Err(syntax(offset, "an array for \"e\""));
                };
                list = Some(items);
            }
            _ => {}
        }
    }
    let Some(items) = list else {
        return Err(syntax(doc.offset, "an \"e\" array of entries"));
    };
    let base = bn.unwrap_or(Cow::Borrowed(""));
    let mut buf = String::new();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let offset = item.offset;
        let JsonValue::Object(fields) = item.value else {
            return Err(syntax(offset, "an LwM2M JSON entry (a JSON object)"));
        };
        let mut n: Option<Cow<'_, str>> = None;
        let mut t: Option<f64> = None;
        let mut value: Option<Raw<'_>> = None;
        for (key, e) in fields {
            let at = e.offset;
            let is_value = matches!(key.as_ref(), "v" | "sv" | "bv" | "ov");
            if is_value && value.is_some() {
                return Err(syntax(at, "exactly one value field per entry"));
            }
            match key.as_ref() {
                "n" => {
                    if n.is_some() {
                        return Err(syntax(at, "\"n\" at most once per entry"));
                    }
                    n = Some(expect_str(e, "a string for \"n\"")?);
                }
                "t" => {
                    if t.is_some() {
                        return Err(syntax(at, "\"t\" at most once per entry"));
                    }
                    t = Some(time_number(&e, "a number for \"t\"")?);
                }
                "v" => {
                    let num = e
                        .value
                        .as_number()
                        .ok_or(syntax(at, "a number for \"v\""))?;
                    value = Some(Raw::Number(num));
                }
                "sv" => value = Some(Raw::Text(expect_str(e, "a string for \"sv\"")?)),
                "ov" => {
                    value = Some(Raw::Link(expect_str(
                        e,
                        "an \"object:instance\" string for \"ov\"",
                    )?))
                }
                "bv" => {
                    let b = e
                        .value
                        .as_bool()
                        .ok_or(syntax(at, "true or false for \"bv\""))?;
                    value = Some(Raw::Bool(b));
                }
                _ => {}
            }
        }
        let value = value.ok_or(syntax(
            offset,
            "a value field (\"v\", \"sv\", \"bv\" or \"ov\")",
        ))?;
        let path = resolve_path(&base, n.as_deref(), offset, true, &mut buf)?;
        let time = resolve_time(bt, t)?;
        out.push(Entry {
            offset,
            path,
            time,
            value,
        });
    }
    Ok(out)
}

/// TS 1.0 §6.4.4: `bv`, `sv`, `ov`; opaque goes in `sv` as padded standard
/// base64, which TS 1.0 devices expect.
const LEGACY_LABELS: ValueLabels = ValueLabels {
    boolean: "bv",
    string: "sv",
    opaque: "sv",
    opaque_alphabet: Base64Alphabet::Standard,
    opaque_padding: true,
    objlnk: "ov",
};
