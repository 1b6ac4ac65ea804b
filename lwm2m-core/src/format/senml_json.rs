//! SenML JSON (`application/senml+json`, content format 110) as LwM2M 1.1+
//! uses it: RFC 8428 records, profiled by the LwM2M TS Core §7.4.4.
//!
//! A payload is a JSON array of records. Each record may carry a base name
//! `bn` and a base time `bt` that apply to it and to every following record
//! until the next `bn`/`bt`; the record's name `n` is appended to the base
//! name in force, and the result is an LwM2M path (`/3/0/7/1`). Values:
//!
//! | label | JSON     | LwM2M types                          |
//! |-------|----------|--------------------------------------|
//! | `v`   | number   | Integer, Unsigned Integer, Float, Time |
//! | `vs`  | string   | String, Corelnk                      |
//! | `vb`  | boolean  | Boolean                              |
//! | `vd`  | string   | Opaque (base64url, no padding)       |
//! | `vlo` | string   | Objlnk (`"3:0"`)                      |
//!
//! Decisions where the specifications leave room:
//!
//! * **Without a model** a `v` number is [`Value::Integer`] if it is written
//!   as an integer literal (no fraction, no exponent) that fits an `i64`,
//!   [`Value::UnsignedInteger`] if it only fits a `u64`, and [`Value::Float`]
//!   otherwise. The encoder therefore always writes floats with a fraction or
//!   an exponent (`23.0`), so a float survives a round trip through a peer
//!   without the model. `vs` is a String, `vd` Opaque, `vlo` an Objlnk.
//! * **With a model** the value label must fit the resource type: a number
//!   for Integer / Unsigned Integer / Time must be integral and in range
//!   (`1.3674912E9` is accepted as 1367491200), `vs` for String and Corelnk,
//!   and so on; anything else is [`FormatError::InvalidValue`]. A path whose
//!   depth contradicts the model (an instance of a single resource) is
//!   [`FormatError::InvalidPath`].
//! * **Times** are `bt + t` in seconds, kept as the raw value: RFC 8428 says
//!   values below 2^28 are relative to "now", but the decoder does not know
//!   "now", so the caller interprets them ([`TimestampedValue::time`],
//!   [`RELATIVE_TIME_LIMIT`]).
//!   [`decode`] ignores times; [`decode_values`] keeps them.
//! * **Opaque** `vd` is written in base64url without padding as RFC 8428
//!   says; the decoder also accepts the standard alphabet and padding,
//!   because some LwM2M clients send plain base64.
//! * RFC 8428 base value/sum fields (`bv`, `bs`, `s`) and must-understand
//!   labels (ending in `_`) are rejected, `bver` above 10 is rejected, other
//!   unknown labels (`u`, `bu`, ...) are ignored.
//!
//! The encoder follows the TS examples: a single resource or resource
//! instance is one record whose `bn` is its full path
//! (`[{"bn":"/3/0/0","vs":"Open Mobile Alliance"}]`); anything larger puts
//! `bn` = request path + `/` on the first record and names relative to it, in
//! id order (`[{"bn":"/3/0/","n":"0","vs":"..."},{"n":"6/0","v":1},...]`).
//! Within a record the labels are written `bn`, `bt`, `n`, value, `t`, as in
//! TS Table 7.4.4-3.

use alloc::borrow::Cow;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use super::base64::{
    decode_lenient as base64_decode, encode as base64_encode, Alphabet as Base64Alphabet,
};
use super::json::{parse, Element, JsonNumber, JsonValue, JsonWriter};
use super::FormatError;
use crate::model::{
    Instance, ModelLookup, Node, ObjLnk, ObjectNode, Path, Resource, ResourceType, ResourceValue,
    TimestampedValue, Value,
};

/// RFC 8428 §4.5.3: a resolved time below 2^28 seconds is relative to the
/// time the receiver got the pack (negative: in the past); at or above it is
/// seconds since the Unix epoch. The decoders keep times as sent; a caller
/// that knows "now" compares against this to turn relative times absolute.
pub const RELATIVE_TIME_LIMIT: f64 = 268_435_456.0;

/// Decodes a SenML JSON payload that belongs to request path `path` (a Read
/// response or a Write request) into the node at that path.
///
/// Every record must lie at or below `path` ([`FormatError::InvalidPath`]
/// otherwise), carry exactly one value, and name a resource or resource
/// instance at most once. Timestamps are ignored.
pub fn decode(payload: &[u8], path: &Path, models: &dyn ModelLookup) -> Result<Node, FormatError> {
    let records = records(payload)?;
    let mut entries = Vec::with_capacity(records.len());
    for r in records {
        let raw = r.value.ok_or(FormatError::Syntax {
            offset: r.offset,
            expected: "a value field (\"v\", \"vs\", \"vb\", \"vd\" or \"vlo\")",
        })?;
        if !path.is_prefix_of(&r.path) {
            return Err(FormatError::InvalidPath);
        }
        let value = type_value(raw, &r.path, models, false)?;
        entries.push((r.offset, r.path, value));
    }
    build_node(path, entries, models)
}

/// Encodes `node`, which sits at `path`, as SenML JSON, appending to `out`.
///
/// ```
/// use lwm2m_core::format::senml_json;
/// use lwm2m_core::model::{Node, Path, Resource, Value};
/// let node = Node::Resource(Resource::multiple(7, [(0, Value::Integer(3800)), (1, Value::Integer(5000))]));
/// let mut out = Vec::new();
/// senml_json::encode(&node, &Path::Resource(3, 0, 7), &mut out).unwrap();
/// assert_eq!(out, br#"[{"bn":"/3/0/7/","n":"0","v":3800},{"n":"1","v":5000}]"#);
/// ```
pub fn encode(node: &Node, path: &Path, out: &mut Vec<u8>) -> Result<(), FormatError> {
    keep_whole(out, |out| encode_node(node, path, out))
}

/// Runs an encoder and removes what it appended if it fails, so `out` never
/// ends with half a document.
pub(crate) fn keep_whole(
    out: &mut Vec<u8>,
    f: impl FnOnce(&mut Vec<u8>) -> Result<(), FormatError>,
) -> Result<(), FormatError> {
    let start = out.len();
    let r = f(out);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

fn encode_node(node: &Node, path: &Path, out: &mut Vec<u8>) -> Result<(), FormatError> {
    let flat = flatten(node, path)?;
    let mut w = JsonWriter::new(out);
    w.begin_array();
    for (i, (p, value)) in flat.entries.iter().enumerate() {
        // The base name goes on the first record only.
        let bn = (i == 0).then_some(flat.base.as_str());
        let n = if flat.leaf {
            None
        } else {
            Some(relative_name(&flat.base, p)?)
        };
        write_record(&mut w, bn, n.as_deref(), value, None, &SENML_LABELS)?;
    }
    w.end_array();
    Ok(())
}

/// Decodes timestamped values (Send, Observe-Composite notifications,
/// Read-Composite responses, Write-Composite requests), in payload order.
///
/// Each record must name a resource or resource instance and carry exactly
/// one value. A path may repeat (a time series). `time` is `bt + t` if either
/// is present, as sent (see the module doc about relative times).
pub fn decode_values(
    payload: &[u8],
    models: &dyn ModelLookup,
) -> Result<Vec<TimestampedValue>, FormatError> {
    let records = records(payload)?;
    let mut values = Vec::with_capacity(records.len());
    for r in records {
        let raw = r.value.ok_or(FormatError::Syntax {
            offset: r.offset,
            expected: "a value field (\"v\", \"vs\", \"vb\", \"vd\" or \"vlo\")",
        })?;
        let value = type_value(raw, &r.path, models, false)?;
        values.push(TimestampedValue {
            path: r.path,
            value,
            time: r.time,
        });
    }
    Ok(values)
}

/// Encodes timestamped values in the given order, appending to `out`.
///
/// If all values share one path, every record is named by a `bn` of that
/// path on the first record; if they share a longer prefix than `/`, the
/// first record carries `bn` = prefix + `/` and names are relative; otherwise
/// each record has its full path in `n` (TS Tables 7.4.4-7 and 7.4.4-8). A
/// time is written as `t` (absolute as given, no `bt`).
pub fn encode_values(values: &[TimestampedValue], out: &mut Vec<u8>) -> Result<(), FormatError> {
    keep_whole(out, |out| encode_values_inner(values, out))
}

fn encode_values_inner(values: &[TimestampedValue], out: &mut Vec<u8>) -> Result<(), FormatError> {
    let paths: Vec<Path> = values.iter().map(|v| v.path).collect();
    let (base, names) = value_names(&paths);
    let mut w = JsonWriter::new(out);
    w.begin_array();
    for (i, (tv, name)) in values.iter().zip(names.iter()).enumerate() {
        check_value_path(&tv.path)?;
        let bn = if i == 0 { base.as_deref() } else { None };
        write_record(
            &mut w,
            bn,
            name.as_deref(),
            &tv.value,
            tv.time,
            &SENML_LABELS,
        )?;
    }
    w.end_array();
    Ok(())
}

/// Decodes the paths of a Read-Composite or Observe-Composite request body
/// (`[{"n":"/3/0/0"},{"n":"/1/0/1"}]`), in payload order. Records must not
/// carry values; any path depth, including `/`, is accepted.
pub fn decode_paths(payload: &[u8]) -> Result<Vec<Path>, FormatError> {
    let records = records(payload)?;
    let mut paths = Vec::with_capacity(records.len());
    for r in records {
        if r.value.is_some() {
            return Err(FormatError::Syntax {
                offset: r.offset,
                expected: "a record without a value (a composite request names paths only)",
            });
        }
        paths.push(r.path);
    }
    Ok(paths)
}

/// Encodes paths for a Read-Composite or Observe-Composite request, one
/// record with the full path in `n` each (TS Table 7.4.4-6).
pub fn encode_paths(paths: &[Path], out: &mut Vec<u8>) -> Result<(), FormatError> {
    let mut w = JsonWriter::new(out);
    w.begin_array();
    for p in paths {
        w.begin_object();
        w.key("n");
        w.string(&p.to_path_string());
        w.end_object();
    }
    w.end_array();
    Ok(())
}

// ---------------------------------------------------------------------------
// Record parsing

/// A value as found in the payload, before the model types it.
pub(crate) enum Raw<'a> {
    /// `v`
    Number(JsonNumber<'a>),
    /// `vs` (SenML) / `sv` (legacy)
    Text(Cow<'a, str>),
    /// `vb` / `bv`
    Bool(bool),
    /// `vd` (SenML only)
    Data(Cow<'a, str>),
    /// `vlo` / `ov`
    Link(Cow<'a, str>),
}

/// A record with its name and time resolved.
pub(crate) struct Record<'a> {
    /// Byte offset of the record.
    pub offset: usize,
    /// `bn` + `n`.
    pub path: Path,
    /// `bt` + `t`, if either is present.
    pub time: Option<f64>,
    /// The value, if any.
    pub value: Option<Raw<'a>>,
}

/// Fields of one SenML record, with duplicate detection.
#[derive(Default)]
struct Fields<'a> {
    bn: Option<Cow<'a, str>>,
    bt: Option<f64>,
    n: Option<Cow<'a, str>>,
    t: Option<f64>,
    value: Option<Raw<'a>>,
}

pub(crate) fn expect_str<'a>(
    e: Element<'a>,
    what: &'static str,
) -> Result<Cow<'a, str>, FormatError> {
    match e.value {
        JsonValue::String(s) => Ok(s),
        _ => Err(FormatError::Syntax {
            offset: e.offset,
            expected: what,
        }),
    }
}

fn expect_number<'a>(e: &Element<'a>, what: &'static str) -> Result<JsonNumber<'a>, FormatError> {
    e.value.as_number().ok_or(FormatError::Syntax {
        offset: e.offset,
        expected: what,
    })
}

/// A number used as a time, which must be a finite `f64`.
pub(crate) fn time_number(e: &Element<'_>, what: &'static str) -> Result<f64, FormatError> {
    expect_number(e, what)?
        .as_f64()
        .ok_or(FormatError::InvalidValue {
            what: "time out of the f64 range",
        })
}

/// Resolves `base` + `name` into a path. `lenient_slash` adds a missing
/// leading `/` (legacy JSON peers write `"bn":"1024/0/"`).
pub(crate) fn resolve_path(
    base: &str,
    name: Option<&str>,
    offset: usize,
    lenient_slash: bool,
    buf: &mut String,
) -> Result<Path, FormatError> {
    buf.clear();
    buf.push_str(base);
    buf.push_str(name.unwrap_or(""));
    if buf.is_empty() {
        return Err(FormatError::Syntax {
            offset,
            expected: "a record name: \"n\", or a base name \"bn\" on this or an earlier record",
        });
    }
    if lenient_slash && !buf.starts_with('/') {
        buf.insert(0, '/');
    }
    buf.parse().map_err(|_| FormatError::InvalidPath)
}

/// `bt + t` if either is present (an absent one counts as 0); a sum out of
/// the f64 range is [`FormatError::InvalidValue`].
pub(crate) fn resolve_time(bt: Option<f64>, t: Option<f64>) -> Result<Option<f64>, FormatError> {
    match (bt, t) {
        (None, None) => Ok(None),
        (bt, t) => {
            let sum = bt.unwrap_or(0.0) + t.unwrap_or(0.0);
            if !sum.is_finite() {
                return Err(FormatError::InvalidValue {
                    what: "time out of the f64 range",
                });
            }
            Ok(Some(sum))
        }
    }
}

fn records(payload: &[u8]) -> Result<Vec<Record<'_>>, FormatError> {
    let doc = parse(payload)?;
    let items = match doc.value {
        JsonValue::Array(items) => items,
        _ => {
            return Err(FormatError::Syntax {
                offset: doc.offset,
                expected: "a JSON array of SenML records",
            })
        }
    };
    let mut out = Vec::with_capacity(items.len());
    let mut base = String::new();
    let mut base_time: Option<f64> = None;
    let mut buf = String::new();
    for item in items {
        let offset = item.offset;
        let members = match item.value {
            JsonValue::Object(m) => m,
            _ => {
                return Err(FormatError::Syntax {
                    offset,
                    expected: "a SenML record (a JSON object)",
                })
            }
        };
        let f = record_fields(members)?;
        if let Some(bn) = f.bn {
            base.clear();
            base.push_str(&bn);
        }
        if let Some(bt) = f.bt {
            base_time = Some(bt);
        }
        let path = resolve_path(&base, f.n.as_deref(), offset, false, &mut buf)?;
        let time = resolve_time(base_time, f.t)?;
        out.push(Record {
            offset,
            path,
            time,
            value: f.value,
        });
    }
    Ok(out)
}

fn record_fields<'a>(members: Vec<(Cow<'a, str>, Element<'a>)>) -> Result<Fields<'a>, FormatError> {
    let mut f = Fields::default();
    // Bit per known label, to reject duplicates (a record with two names is ambiguous).
    let mut seen: u16 = 0;
    for (key, e) in members {
        let offset = e.offset;
        let bit = match key.as_ref() {
            "bn" => 1,
            "bt" => 2,
            "n" => 4,
            "t" => 8,
            "bver" => 16,
            "v" | "vs" | "vb" | "vd" | "vlo" => 32,
            _ => 0,
        };
        if bit != 0 {
            if seen & bit != 0 {
                return Err(FormatError::Syntax {
                    offset,
                    expected: if bit == 32 {
                        "exactly one value field per record"
                    } else {
                        "each SenML label at most once per record"
                    },
                });
            }
            seen |= bit;
        }
        match key.as_ref() {
            "bn" => f.bn = Some(expect_str(e, "a string for \"bn\"")?),
            "n" => f.n = Some(expect_str(e, "a string for \"n\"")?),
            "bt" => f.bt = Some(time_number(&e, "a number for \"bt\"")?),
            "t" => f.t = Some(time_number(&e, "a number for \"t\"")?),
            "bver" => {
                let n = expect_number(&e, "a number for \"bver\"")?;
                // RFC 8428 §4.4: fail on a version newer than the one we understand (10).
                if !matches!(n.as_u64(), Some(1..=10)) {
                    return Err(FormatError::Syntax {
                        offset,
                        expected: "a SenML base version (\"bver\") from 1 to 10",
                    });
                }
            }
            "v" => f.value = Some(Raw::Number(expect_number(&e, "a number for \"v\"")?)),
            "vs" => f.value = Some(Raw::Text(expect_str(e, "a string for \"vs\"")?)),
            "vd" => f.value = Some(Raw::Data(expect_str(e, "a base64 string for \"vd\"")?)),
            "vlo" => {
                f.value = Some(Raw::Link(expect_str(
                    e,
                    "a \"object:instance\" string for \"vlo\"",
                )?))
            }
            "vb" => {
                f.value = Some(Raw::Bool(e.value.as_bool().ok_or(FormatError::Syntax {
                    offset,
                    expected: "true or false for \"vb\"",
                })?))
            }
            "bv" | "bs" | "s" => return Err(FormatError::Syntax {
                offset,
                expected:
                    "no SenML base value or sum (\"bv\", \"bs\", \"s\"): LwM2M does not use them",
            }),
            k if k.ends_with('_') => {
                return Err(FormatError::Syntax {
                    offset,
                    expected: "no must-understand SenML labels (ending in '_')",
                })
            }
            // Units and other labels LwM2M does not use carry nothing we need.
            _ => {}
        }
    }
    Ok(f)
}

// ---------------------------------------------------------------------------
// Typing (shared with the legacy LwM2M JSON format)

/// Parses `"object:instance"` (each id 0..=65535; `65535:65535` is the null link).
pub(crate) fn parse_objlnk(s: &str) -> Option<ObjLnk> {
    let (o, i) = s.split_once(':')?;
    let id = |t: &str| -> Option<u16> {
        if t.is_empty() || t.len() > 5 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    Some(ObjLnk {
        object: id(o)?,
        instance: id(i)?,
    })
}

/// Formats an object link as `"object:instance"`.
pub(crate) fn format_objlnk(l: &ObjLnk) -> String {
    alloc::format!("{}:{}", l.object, l.instance)
}

fn decode_base64(s: &str) -> Result<Vec<u8>, FormatError> {
    base64_decode(s).ok_or(FormatError::InvalidValue {
        what: "opaque value is not valid base64",
    })
}

fn objlnk(s: &str) -> Result<ObjLnk, FormatError> {
    parse_objlnk(s).ok_or(FormatError::InvalidValue {
        what: "object link must be \"object:instance\" with decimal ids up to 65535",
    })
}

/// Types a raw value for the resource at `path` using the model if there is
/// one. `legacy` selects the legacy LwM2M JSON rules (opaque as base64 text).
pub(crate) fn type_value(
    raw: Raw<'_>,
    path: &Path,
    models: &dyn ModelLookup,
    legacy: bool,
) -> Result<Value, FormatError> {
    let depth = path.depth();
    if depth < 3 {
        // A value belongs to a resource or a resource instance.
        return Err(FormatError::InvalidPath);
    }
    let model = match (path.object_id(), path.resource_id()) {
        (Some(o), Some(r)) => models.resource(o, r),
        _ => None,
    };
    let Some(model) = model else {
        return Ok(match raw {
            Raw::Number(n) => untyped_number(n)?,
            Raw::Text(s) => Value::String(s.into_owned()),
            Raw::Bool(b) => Value::Boolean(b),
            Raw::Data(d) => Value::Opaque(decode_base64(&d)?),
            Raw::Link(l) => Value::ObjLnk(objlnk(&l)?),
        });
    };
    if model.multiple != (depth == 4) {
        return Err(FormatError::InvalidPath);
    }
    let rt = model.resource_type;
    Ok(match (rt, raw) {
        (ResourceType::Integer, Raw::Number(n)) => {
            Value::Integer(n.as_i64().ok_or(FormatError::InvalidValue {
                what: "an Integer resource needs an integral number in the i64 range",
            })?)
        }
        (ResourceType::UnsignedInteger, Raw::Number(n)) => {
            Value::UnsignedInteger(n.as_u64().ok_or(FormatError::InvalidValue {
                what: "an Unsigned Integer resource needs an integral number from 0 to 2^64-1",
            })?)
        }
        (ResourceType::Time, Raw::Number(n)) => {
            Value::Time(n.as_i64().ok_or(FormatError::InvalidValue {
                what: "a Time resource needs an integral number of seconds in the i64 range",
            })?)
        }
        (ResourceType::Float, Raw::Number(n)) => {
            Value::Float(n.as_f64().ok_or(FormatError::InvalidValue {
                what: "a Float resource needs a number in the f64 range",
            })?)
        }
        (ResourceType::Boolean, Raw::Bool(b)) => Value::Boolean(b),
        (ResourceType::String, Raw::Text(s)) => Value::String(s.into_owned()),
        (ResourceType::CoreLnk, Raw::Text(s)) => Value::CoreLnk(s.into_owned()),
        (ResourceType::Opaque, Raw::Data(d)) => Value::Opaque(decode_base64(&d)?),
        (ResourceType::Opaque, Raw::Text(d)) if legacy => Value::Opaque(decode_base64(&d)?),
        (ResourceType::ObjLnk, Raw::Link(l)) => Value::ObjLnk(objlnk(&l)?),
        (rt, _) => {
            return Err(FormatError::InvalidValue {
                what: mismatch(rt, legacy),
            })
        }
    })
}

fn mismatch(rt: ResourceType, legacy: bool) -> &'static str {
    match (rt, legacy) {
        (ResourceType::Integer, _) => "an Integer resource needs a number (\"v\")",
        (ResourceType::UnsignedInteger, _) => "an Unsigned Integer resource needs a number (\"v\")",
        (ResourceType::Float, _) => "a Float resource needs a number (\"v\")",
        (ResourceType::Time, _) => "a Time resource needs a number (\"v\")",
        (ResourceType::Boolean, false) => "a Boolean resource needs \"vb\"",
        (ResourceType::Boolean, true) => "a Boolean resource needs \"bv\"",
        (ResourceType::String, false) => "a String resource needs \"vs\"",
        (ResourceType::String, true) => "a String resource needs \"sv\"",
        (ResourceType::CoreLnk, false) => "a Corelnk resource needs \"vs\"",
        (ResourceType::CoreLnk, true) => "a Corelnk resource needs \"sv\"",
        (ResourceType::Opaque, false) => "an Opaque resource needs \"vd\"",
        (ResourceType::Opaque, true) => "an Opaque resource needs base64 in \"sv\"",
        (ResourceType::ObjLnk, false) => "an Objlnk resource needs \"vlo\"",
        (ResourceType::ObjLnk, true) => "an Objlnk resource needs \"ov\"",
        (ResourceType::None, _) => "an executable resource has no value",
    }
}

/// A number without a model: integer literals stay integers (exactly).
fn untyped_number(n: JsonNumber<'_>) -> Result<Value, FormatError> {
    if n.is_integer_literal() {
        if let Some(i) = n.as_i64() {
            return Ok(Value::Integer(i));
        }
        if let Some(u) = n.as_u64() {
            return Ok(Value::UnsignedInteger(u));
        }
    }
    n.as_f64()
        .map(Value::Float)
        .ok_or(FormatError::InvalidValue {
            what: "number out of the f64 range",
        })
}

// ---------------------------------------------------------------------------
// Node assembly and flattening (shared with the legacy LwM2M JSON format)

/// Builds the node at `path` from `(record offset, path, value)` entries.
pub(crate) fn build_node(
    path: &Path,
    entries: Vec<(usize, Path, Value)>,
    models: &dyn ModelLookup,
) -> Result<Node, FormatError> {
    let dup = |offset| FormatError::Syntax {
        offset,
        expected: "each resource or resource instance at most once",
    };
    let mut tree: BTreeMap<u16, BTreeMap<u16, ResourceValue>> = BTreeMap::new();
    for (offset, p, v) in entries {
        if !path.is_prefix_of(&p) {
            return Err(FormatError::InvalidPath);
        }
        match p {
            Path::Resource(_, i, r) => {
                let inst = tree.entry(i).or_default();
                if inst.contains_key(&r) {
                    return Err(dup(offset));
                }
                inst.insert(r, ResourceValue::Single(v));
            }
            Path::ResourceInstance(_, i, r, ri) => {
                let inst = tree.entry(i).or_default();
                match inst
                    .entry(r)
                    .or_insert_with(|| ResourceValue::Multiple(BTreeMap::new()))
                {
                    ResourceValue::Multiple(m) => {
                        if m.insert(ri, v).is_some() {
                            return Err(dup(offset));
                        }
                    }
                    ResourceValue::Single(_) => return Err(dup(offset)),
                }
            }
            _ => return Err(FormatError::InvalidPath),
        }
    }
    let instance = |id: u16, resources: BTreeMap<u16, ResourceValue>| Instance {
        id,
        resources: resources
            .into_iter()
            .map(|(r, value)| (r, Resource { id: r, value }))
            .collect(),
    };
    Ok(match *path {
        Path::Root => {
            return Err(FormatError::NotRepresentable(
                "no single node at the root path (decode the values instead)",
            ))
        }
        Path::Object(o) => Node::Object(ObjectNode {
            id: o,
            instances: tree
                .into_iter()
                .map(|(i, res)| (i, instance(i, res)))
                .collect(),
        }),
        Path::Instance(_, i) => Node::Instance(instance(i, tree.remove(&i).unwrap_or_default())),
        Path::Resource(o, i, r) => {
            match tree.get_mut(&i).and_then(|inst| inst.remove(&r)) {
                Some(value) => Node::Resource(Resource { id: r, value }),
                None => match models.resource(o, r) {
                    Some(m) if !m.multiple => {
                        return Err(FormatError::InvalidValue {
                            what: "no value for the single-instance resource",
                        })
                    }
                    // Only a multiple resource can have no value at all.
                    _ => Node::Resource(Resource::multiple(r, [])),
                },
            }
        }
        Path::ResourceInstance(_, i, r, ri) => {
            match tree.get_mut(&i).and_then(|inst| inst.remove(&r)) {
                Some(ResourceValue::Multiple(mut m)) => match m.remove(&ri) {
                    Some(value) => Node::ResourceInstance { id: ri, value },
                    None => {
                        return Err(FormatError::InvalidValue {
                            what: "no value for the resource instance",
                        })
                    }
                },
                _ => {
                    return Err(FormatError::InvalidValue {
                        what: "no value for the resource instance",
                    })
                }
            }
        }
    })
}

/// A node as a list of values with full paths, in id order.
pub(crate) struct Flat<'n> {
    /// The base name: the full path for a leaf, else the path and `/`.
    pub base: String,
    /// True for a single resource or a resource instance: one value named by `base`.
    pub leaf: bool,
    /// The values.
    pub entries: Vec<(Path, &'n Value)>,
}

fn mismatched() -> FormatError {
    FormatError::InvalidPath
}

fn push_resource<'n>(
    entries: &mut Vec<(Path, &'n Value)>,
    instance_path: Path,
    key: u16,
    res: &'n Resource,
) -> Result<(), FormatError> {
    if res.id != key {
        return Err(mismatched());
    }
    let rp = instance_path.child(key).ok_or_else(mismatched)?;
    match &res.value {
        ResourceValue::Single(v) => entries.push((rp, v)),
        ResourceValue::Multiple(m) => {
            for (ri, v) in m {
                entries.push((rp.child(*ri).ok_or_else(mismatched)?, v));
            }
        }
    }
    Ok(())
}

fn push_instance<'n>(
    entries: &mut Vec<(Path, &'n Value)>,
    instance_path: Path,
    inst: &'n Instance,
) -> Result<(), FormatError> {
    for (k, res) in &inst.resources {
        push_resource(entries, instance_path, *k, res)?;
    }
    Ok(())
}

/// Flattens `node`, which must sit at `path` (ids matching, none above 65534).
pub(crate) fn flatten<'n>(node: &'n Node, path: &Path) -> Result<Flat<'n>, FormatError> {
    let mut entries = Vec::new();
    let mut leaf = false;
    match (node, *path) {
        (Node::Object(obj), Path::Object(o)) if obj.id == o => {
            for (k, inst) in &obj.instances {
                if inst.id != *k {
                    return Err(mismatched());
                }
                let ip = path.child(*k).ok_or_else(mismatched)?;
                push_instance(&mut entries, ip, inst)?;
            }
        }
        (Node::Instance(inst), Path::Instance(_, i)) if inst.id == i => {
            push_instance(&mut entries, *path, inst)?;
        }
        (Node::Resource(res), Path::Resource(o, i, r)) if res.id == r => {
            leaf = matches!(res.value, ResourceValue::Single(_));
            push_resource(&mut entries, Path::Instance(o, i), r, res)?;
        }
        (Node::ResourceInstance { id, value }, Path::ResourceInstance(.., ri)) if *id == ri => {
            leaf = true;
            entries.push((*path, value));
        }
        _ => return Err(mismatched()),
    }
    if path.with_ids(|ids| ids.iter().any(|&id| id > crate::model::MAX_ID)) {
        return Err(mismatched());
    }
    let mut base = path.to_path_string();
    if !leaf {
        base.push('/');
    }
    Ok(Flat {
        base,
        leaf,
        entries,
    })
}

/// The name of `p` relative to the base name `base` (which ends in `/`).
pub(crate) fn relative_name(base: &str, p: &Path) -> Result<String, FormatError> {
    let full = p.to_path_string();
    full.strip_prefix(base)
        .map(String::from)
        .ok_or(FormatError::InvalidPath)
}

/// Base name and per-value names for a list of value paths (see [`encode_values`]).
pub(crate) fn value_names(paths: &[Path]) -> (Option<String>, Vec<Option<String>>) {
    let Some(first) = paths.first() else {
        return (None, Vec::new());
    };
    if paths.iter().all(|p| p == first) {
        return (
            Some(first.to_path_string()),
            paths.iter().map(|_| None).collect(),
        );
    }
    // Longest common prefix, shortened while it names one of the values itself
    // (a value's name relative to "P/" cannot be empty).
    let mut prefix = *first;
    for p in paths {
        while !prefix.is_prefix_of(p) {
            prefix = prefix.parent();
        }
    }
    while prefix != Path::Root && paths.contains(&prefix) {
        prefix = prefix.parent();
    }
    if prefix == Path::Root {
        return (
            None,
            paths.iter().map(|p| Some(p.to_path_string())).collect(),
        );
    }
    let mut base = prefix.to_path_string();
    base.push('/');
    let names = paths
        .iter()
        .map(|p| {
            let full = p.to_path_string();
            Some(String::from(
                full.strip_prefix(base.as_str()).unwrap_or(&full),
            ))
        })
        .collect();
    (Some(base), names)
}

/// The value labels of a JSON record: SenML's here, legacy LwM2M JSON's in
/// [`lwm2m_json`](super::lwm2m_json). Numbers are `v` in both.
pub(crate) struct ValueLabels {
    /// Boolean.
    pub boolean: &'static str,
    /// String and Corelnk.
    pub string: &'static str,
    /// Opaque, written in base64 with this alphabet and padding.
    pub opaque: &'static str,
    /// The base64 alphabet of opaque values.
    pub opaque_alphabet: Base64Alphabet,
    /// Whether opaque values get `=` padding.
    pub opaque_padding: bool,
    /// Objlnk (`"object:instance"`).
    pub objlnk: &'static str,
}

/// SenML (RFC 8428, LwM2M TS 1.1 §7.4.4): opaque is `vd` in unpadded base64url.
const SENML_LABELS: ValueLabels = ValueLabels {
    boolean: "vb",
    string: "vs",
    opaque: "vd",
    opaque_alphabet: Base64Alphabet::UrlSafe,
    opaque_padding: false,
    objlnk: "vlo",
};

/// A timestamped value needs a resource or resource instance path.
pub(crate) fn check_value_path(path: &Path) -> Result<(), FormatError> {
    if path.depth() < 3 {
        return Err(FormatError::NotRepresentable(
            "a value needs a resource or resource instance path",
        ));
    }
    Ok(())
}

/// Writes one record object: `bn` and `n` if given, the value under its
/// label, and `t` if given.
pub(crate) fn write_record(
    w: &mut JsonWriter<'_>,
    bn: Option<&str>,
    n: Option<&str>,
    value: &Value,
    t: Option<f64>,
    labels: &ValueLabels,
) -> Result<(), FormatError> {
    w.begin_object();
    if let Some(bn) = bn {
        w.key("bn");
        w.string(bn);
    }
    if let Some(n) = n {
        w.key("n");
        w.string(n);
    }
    write_value(w, value, labels)?;
    if let Some(t) = t {
        w.key("t");
        w.number(t)?;
    }
    w.end_object();
    Ok(())
}

fn write_value(w: &mut JsonWriter<'_>, v: &Value, labels: &ValueLabels) -> Result<(), FormatError> {
    match v {
        Value::Integer(i) | Value::Time(i) => {
            w.key("v");
            w.i64(*i);
        }
        Value::UnsignedInteger(u) => {
            w.key("v");
            w.u64(*u);
        }
        Value::Float(f) => {
            w.key("v");
            w.f64(*f)?;
        }
        Value::Boolean(b) => {
            w.key(labels.boolean);
            w.bool(*b);
        }
        Value::String(s) | Value::CoreLnk(s) => {
            w.key(labels.string);
            w.string(s);
        }
        Value::Opaque(d) => {
            w.key(labels.opaque);
            w.string(&base64_encode(
                d,
                labels.opaque_alphabet,
                labels.opaque_padding,
            ));
        }
        Value::ObjLnk(l) => {
            w.key(labels.objlnk);
            w.string(&format_objlnk(l));
        }
    }
    Ok(())
}
