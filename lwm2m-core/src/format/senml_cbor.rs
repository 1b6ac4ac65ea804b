//! `application/senml+cbor` (112): SenML (RFC 8428 §6) as LwM2M uses it
//! (LwM2M 1.1 TS Core §7.4.5).
//!
//! A payload is an array of records; each record is a map with integer
//! labels: `bn` -2, `bt` -3, `n` 0, `v` 2, `vs` 3, `vb` 4, `t` 6, `vd` 8,
//! and the text label `"vlo"` (object link, which has no integer label).
//! A record's name is the base name in force plus its `n`, and must be an
//! LwM2M path (`/3/0/1`); its time is the base time in force plus its `t`.
//!
//! | resource type            | field | CBOR                               |
//! |--------------------------|-------|------------------------------------|
//! | Integer, Unsigned, Float | `v`   | integer, float (shortest exact width), tag 4 decimal fraction accepted |
//! | Time                     | `v`   | integer seconds (a float is floored when decoding) |
//! | Boolean                  | `vb`  | `true` / `false`                   |
//! | String, Corelnk          | `vs`  | text                               |
//! | Opaque                   | `vd`  | bytes                              |
//! | Objlnk                   | `vlo` | text `"O:I"` (`vs` accepted when the model says Objlnk) |
//!
//! Decisions where the specifications leave room:
//!
//! * Encoder shape (as in the TS examples and Leshan): [`encode`] puts the
//!   request path as `bn` on the first record and relative names in `n`
//!   (`bn "/3/0/"`, `n "6/0"`); a single resource or resource instance gets
//!   `bn` = its path and no `n`. [`encode_values`] writes `bn "/O/I/"` each
//!   time the object instance changes and `n "R"` or `"R/RI"`. Keys are
//!   written in the order `bn`, `bt`, `n`, value. Time is only ever written
//!   as `bt`, repeated when it changes; `t` is never written.
//! * Time: a resolved time of 0 means "now" in RFC 8428 §4.5.3, the same as
//!   no time, so it decodes as `None` (and `Some(0.0)` encodes like `None`).
//!   Times below 2^28 are relative to now per the RFC; they are returned as
//!   they are and the caller, who knows the clock, resolves them.
//! * Unknown labels are ignored, as RFC 8428 §4.4 requires, except labels
//!   ending in `_` (must-understand), which are rejected. `bv` and `bs`
//!   (base value, base sum) change the meaning of `v` and LwM2M never uses
//!   them, so records with them are rejected rather than misread.
//! * [`decode`] ignores times (a node has none); [`decode_paths`] rejects
//!   records with a value, and both path decoders reject duplicate paths.

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;

use minicbor::data::Type;

use super::cbor::{
    done, enc, float_to_time, for_each_leaf, format_objlnk, parse_objlnk, typed_value, write_float,
    NodeBuilder, Reader, Scalar,
};
use super::FormatError;
use crate::model::{ModelLookup, Node, Path, PathError, ResourceType, TimestampedValue, Value};

/// The SenML labels this decoder knows (RFC 8428 Table 6, plus `vlo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Bver,
    Bn,
    Bt,
    Bu,
    Bv,
    Bs,
    N,
    U,
    V,
    Vs,
    Vb,
    S,
    T,
    Ut,
    Vd,
    Vlo,
}

impl Label {
    /// The label for a CBOR integer key (RFC 8428 Table 6).
    fn from_int(key: i128) -> Option<Label> {
        Some(match key {
            -1 => Label::Bver,
            -2 => Label::Bn,
            -3 => Label::Bt,
            -4 => Label::Bu,
            -5 => Label::Bv,
            -6 => Label::Bs,
            0 => Label::N,
            1 => Label::U,
            2 => Label::V,
            3 => Label::Vs,
            4 => Label::Vb,
            5 => Label::S,
            6 => Label::T,
            7 => Label::Ut,
            8 => Label::Vd,
            _ => return None,
        })
    }

    fn is_value(self) -> bool {
        matches!(
            self,
            Label::V | Label::Vs | Label::Vb | Label::Vd | Label::Vlo
        )
    }

    /// One bit per label, to find repeated labels in a record.
    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

// The integer keys the encoder writes (RFC 8428 Table 6).
const KEY_BN: i8 = -2;
const KEY_BT: i8 = -3;
const KEY_N: i8 = 0;
const KEY_V: i8 = 2;
const KEY_VS: i8 = 3;
const KEY_VB: i8 = 4;
const KEY_VD: i8 = 8;

/// The object-link value label of the LwM2M TS (a text label).
const VLO: &str = "vlo";

/// Decodes a SenML CBOR payload for a Read response or Write request on
/// `path` into the node at that path. Every record must lie at or below
/// `path` and carry a value; the model types the values and says whether a
/// resource is single or multiple.
pub fn decode(payload: &[u8], path: &Path, models: &dyn ModelLookup) -> Result<Node, FormatError> {
    let mut builder = NodeBuilder::new(*path, models)?;
    for rec in parse(payload)? {
        if !builder.covers(&rec.path) {
            return Err(FormatError::InvalidPath);
        }
        let value = rec.value.ok_or(FormatError::Syntax {
            offset: rec.offset,
            expected: "a value (v, vs, vb, vd or vlo) in every record",
        })?;
        let value = typed(value, builder.resource_type(&rec.path))?;
        builder.value(rec.path, value, rec.offset)?;
    }
    builder.finish()
}

/// Encodes `node`, which sits at `path`, as SenML CBOR records in id order.
///
/// ```
/// use lwm2m_core::format::senml_cbor;
/// use lwm2m_core::model::{Node, Path, Resource, Value};
/// let mut out = Vec::new();
/// let node = Node::Resource(Resource::single(9, Value::Integer(100)));
/// senml_cbor::encode(&node, &Path::Resource(3, 0, 9), &mut out).unwrap();
/// // [{-2: "/3/0/9", 2: 100}]
/// assert_eq!(out, b"\x81\xa2\x21\x66/3/0/9\x02\x18\x64");
/// ```
pub fn encode(node: &Node, path: &Path, out: &mut Vec<u8>) -> Result<(), FormatError> {
    let depth = path.depth();
    let mut leaves: Vec<(Path, &Value)> = Vec::new();
    for_each_leaf(node, path, &mut |p, v| {
        leaves.push((p, v));
        Ok(())
    })?;
    // Names relative to the request path; bn ends with '/' when names follow.
    let nested = leaves.iter().any(|(p, _)| p.depth() > depth);
    let mut bn = path.to_path_string();
    if nested {
        bn.push('/');
    }
    done(enc(out).array(leaves.len() as u64));
    for (k, (p, v)) in leaves.iter().enumerate() {
        let name = p.with_ids(|ids| join_ids(ids.get(depth..).unwrap_or(&[])));
        let base = (k == 0).then_some(bn.as_str());
        write_record(
            out,
            base,
            None,
            (!name.is_empty()).then_some(name.as_str()),
            Some(v),
        );
    }
    Ok(())
}

/// Decodes timestamped values (Send, notifications, Read-Composite responses).
/// Paths must be resource or resource-instance paths; the same path may repeat
/// with different times (historical values), but not with the same time.
pub fn decode_values(
    payload: &[u8],
    models: &dyn ModelLookup,
) -> Result<Vec<TimestampedValue>, FormatError> {
    let mut out: Vec<TimestampedValue> = Vec::new();
    let mut seen: alloc::collections::BTreeSet<(Path, u64)> = alloc::collections::BTreeSet::new();
    for rec in parse(payload)? {
        let (o, r) = match rec.path {
            Path::Resource(o, _, r) | Path::ResourceInstance(o, _, r, _) => (o, r),
            _ => {
                return Err(FormatError::Syntax {
                    offset: rec.offset,
                    expected: "a resource or resource instance path in every record",
                })
            }
        };
        let model = models.resource(o, r);
        match (model.map(|m| m.multiple), rec.path) {
            (Some(true), Path::Resource(..)) => {
                return Err(FormatError::InvalidValue {
                    what: "single value for a multiple-instance resource",
                })
            }
            (Some(false), Path::ResourceInstance(..)) => {
                return Err(FormatError::InvalidValue {
                    what: "resource instance of a single-instance resource",
                })
            }
            _ => {}
        }
        let value = rec.value.ok_or(FormatError::Syntax {
            offset: rec.offset,
            expected: "a value (v, vs, vb, vd or vlo) in every record",
        })?;
        let value = typed(value, model.map(|m| m.resource_type))?;
        let time_key = rec.time.map_or(0, f64::to_bits);
        if !seen.insert((rec.path, time_key)) {
            return Err(FormatError::Syntax {
                offset: rec.offset,
                expected: "each path only once per time",
            });
        }
        out.push(TimestampedValue {
            path: rec.path,
            value,
            time: rec.time,
        });
    }
    Ok(out)
}

/// Encodes timestamped values in the given order (see the module docs for
/// how `bn` and `bt` are chosen).
pub fn encode_values(values: &[TimestampedValue], out: &mut Vec<u8>) -> Result<(), FormatError> {
    done(enc(out).array(values.len() as u64));
    let mut current_bn: Option<String> = None;
    let mut current_bt = 0.0f64;
    for tv in values {
        let (prefix, name) = match tv.path {
            Path::Resource(o, i, r) => (join_path(&[o, i]), join_ids(&[r])),
            Path::ResourceInstance(o, i, r, ri) => (join_path(&[o, i]), join_ids(&[r, ri])),
            _ => {
                return Err(FormatError::NotRepresentable(
                    "a SenML value needs a resource or resource instance path",
                ))
            }
        };
        let time = tv.time.unwrap_or(0.0);
        if !time.is_finite() {
            return Err(FormatError::NotRepresentable(
                "a time must be a finite number",
            ));
        }
        let bn = (current_bn.as_deref() != Some(prefix.as_str())).then_some(prefix.as_str());
        let bt = (time != current_bt).then_some(time);
        write_record(out, bn, bt, Some(&name), Some(&tv.value));
        if bn.is_some() {
            current_bn = Some(prefix.clone());
        }
        current_bt = time;
    }
    Ok(())
}

/// Decodes the paths of a Read-Composite / Observe-Composite request body:
/// records with names only.
pub fn decode_paths(payload: &[u8]) -> Result<Vec<Path>, FormatError> {
    let mut out = Vec::new();
    let mut seen = alloc::collections::BTreeSet::new();
    for rec in parse(payload)? {
        if rec.value.is_some() {
            return Err(FormatError::Syntax {
                offset: rec.offset,
                expected: "records without value in a path list",
            });
        }
        if !seen.insert(rec.path) {
            return Err(FormatError::Syntax {
                offset: rec.offset,
                expected: "each path only once",
            });
        }
        out.push(rec.path);
    }
    Ok(out)
}

/// Encodes a path list (Read-Composite / Observe-Composite request body):
/// one record per path with its full name in `n`.
pub fn encode_paths(paths: &[Path], out: &mut Vec<u8>) -> Result<(), FormatError> {
    done(enc(out).array(paths.len() as u64));
    for p in paths {
        write_record(out, None, None, Some(&p.to_path_string()), None);
    }
    Ok(())
}

// ---------------------------------------------------------------------------

/// A record's value before the model types it.
#[derive(Debug)]
enum RecordValue<'b> {
    Number(Scalar<'b>),
    Text(Cow<'b, str>),
    Bool(bool),
    Data(Cow<'b, [u8]>),
    ObjLnk(Cow<'b, str>),
}

/// A record with name and time resolved against the base values.
#[derive(Debug)]
struct Record<'b> {
    offset: usize,
    path: Path,
    time: Option<f64>,
    value: Option<RecordValue<'b>>,
}

fn parse(payload: &[u8]) -> Result<Vec<Record<'_>>, FormatError> {
    let mut rd = Reader::new(payload);
    let mut records = Vec::new();
    let mut base_name = String::new();
    let mut base_time = 0.0f64;
    let mut seq = rd.array()?;
    while seq.next(&mut rd)? {
        let offset = rd.pos();
        let fields = parse_fields(&mut rd)?;
        if let Some(bn) = fields.bn {
            base_name = bn.into_owned();
        }
        if let Some(bt) = fields.bt {
            base_time = bt;
        }
        let mut name = base_name.clone();
        name.push_str(fields.n.as_deref().unwrap_or(""));
        if name.is_empty() {
            return Err(FormatError::Syntax {
                offset,
                expected: "a record name (n) or a base name (bn) before it",
            });
        }
        let path: Path = name.parse().map_err(|e| match e {
            PathError::TooDeep => FormatError::TooDeep,
            _ => FormatError::InvalidPath,
        })?;
        let time = base_time + fields.t.unwrap_or(0.0);
        if !time.is_finite() {
            return Err(FormatError::InvalidValue {
                what: "record time (bt + t) is not a finite number",
            });
        }
        records.push(Record {
            offset,
            path,
            time: (time != 0.0).then_some(time),
            value: fields.value,
        });
    }
    rd.finish()?;
    Ok(records)
}

#[derive(Default)]
struct Fields<'b> {
    bn: Option<Cow<'b, str>>,
    bt: Option<f64>,
    n: Option<Cow<'b, str>>,
    t: Option<f64>,
    value: Option<RecordValue<'b>>,
}

fn parse_fields<'b>(rd: &mut Reader<'b>) -> Result<Fields<'b>, FormatError> {
    let start = rd.pos();
    if !matches!(rd.datatype()?, Type::Map | Type::MapIndef) {
        return Err(FormatError::Syntax {
            offset: start,
            expected: "a map for each SenML record",
        });
    }
    let mut f = Fields::default();
    // Labels seen in this record, to reject repeats.
    let mut seen = 0u16;
    let mut seq = rd.map()?;
    while seq.next(rd)? {
        let at = rd.pos();
        let label = match rd.datatype()? {
            Type::String | Type::StringIndef => {
                let key = rd.text()?;
                if key == VLO {
                    Some(Label::Vlo)
                } else if key.ends_with('_') {
                    return Err(FormatError::Syntax {
                        offset: at,
                        expected: "no must-understand label (ending in '_'); none is supported",
                    });
                } else {
                    None
                }
            }
            Type::U8
            | Type::U16
            | Type::U32
            | Type::U64
            | Type::I8
            | Type::I16
            | Type::I32
            | Type::I64
            | Type::Int => Label::from_int(rd.int()?),
            _ => {
                return Err(FormatError::Syntax {
                    offset: at,
                    expected: "an integer or text label as SenML map key",
                })
            }
        };
        let Some(label) = label else {
            // Unknown label: ignored, as RFC 8428 §4.4 asks.
            rd.skip()?;
            continue;
        };
        if seen & label.bit() != 0 {
            return Err(FormatError::Syntax {
                offset: at,
                expected: "each label once per record",
            });
        }
        seen |= label.bit();
        if label.is_value() && f.value.is_some() {
            return Err(FormatError::Syntax {
                offset: at,
                expected: "at most one value field (v, vs, vb, vd, vlo) per record",
            });
        }
        match label {
            Label::Bn => f.bn = Some(rd.text()?),
            Label::Bt => f.bt = Some(number_f64(rd)?),
            Label::N => f.n = Some(rd.text()?),
            Label::T => f.t = Some(number_f64(rd)?),
            Label::V => f.value = Some(RecordValue::Number(rd.number()?)),
            Label::Vs => f.value = Some(RecordValue::Text(rd.text()?)),
            Label::Vb => f.value = Some(RecordValue::Bool(rd.bool()?)),
            Label::Vd => f.value = Some(RecordValue::Data(rd.bytes()?)),
            Label::Vlo => f.value = Some(RecordValue::ObjLnk(rd.text()?)),
            Label::Bv | Label::Bs => {
                return Err(FormatError::InvalidValue {
                    what: "SenML base value / base sum (bv, bs) are not used by LwM2M",
                })
            }
            // Known but meaningless for LwM2M: version, units, sum, update time.
            Label::Bver | Label::Bu | Label::U | Label::S | Label::Ut => rd.skip()?,
        }
    }
    Ok(f)
}

fn number_f64(rd: &mut Reader<'_>) -> Result<f64, FormatError> {
    Ok(match rd.number()? {
        Scalar::Uint(u) => u as f64,
        Scalar::Nint(n) => n as f64,
        Scalar::Float(x) => x,
        _ => {
            return Err(FormatError::Syntax {
                offset: rd.pos(),
                expected: "a number",
            })
        }
    })
}

const WRONG_FIELD: FormatError = FormatError::InvalidValue {
    what: "the SenML value field does not fit the resource type of the object model",
};

/// Types a record value by the model's resource type (`None`: unknown model).
fn typed(v: RecordValue<'_>, ty: Option<ResourceType>) -> Result<Value, FormatError> {
    match v {
        RecordValue::Number(s) => match (ty, s) {
            (Some(ResourceType::Time), Scalar::Float(x)) => float_to_time(x).map(Value::Time),
            (
                None
                | Some(
                    ResourceType::Integer
                    | ResourceType::UnsignedInteger
                    | ResourceType::Float
                    | ResourceType::Time,
                ),
                s,
            ) => typed_value(s, ty),
            _ => Err(WRONG_FIELD),
        },
        RecordValue::Text(t) => match ty {
            None | Some(ResourceType::String | ResourceType::CoreLnk | ResourceType::ObjLnk) => {
                typed_value(Scalar::Text(t), ty)
            }
            _ => Err(WRONG_FIELD),
        },
        RecordValue::Bool(b) => match ty {
            None | Some(ResourceType::Boolean) => Ok(Value::Boolean(b)),
            _ => Err(WRONG_FIELD),
        },
        RecordValue::Data(d) => match ty {
            None | Some(ResourceType::Opaque) => Ok(Value::Opaque(d.into_owned())),
            _ => Err(WRONG_FIELD),
        },
        RecordValue::ObjLnk(t) => match ty {
            None | Some(ResourceType::ObjLnk) => {
                parse_objlnk(&t)
                    .map(Value::ObjLnk)
                    .ok_or(FormatError::InvalidValue {
                        what: "object link is not \"ObjectId:InstanceId\"",
                    })
            }
            _ => Err(WRONG_FIELD),
        },
    }
}

/// Writes one record map: keys in the order bn, bt, n, value.
fn write_record(
    out: &mut Vec<u8>,
    bn: Option<&str>,
    bt: Option<f64>,
    n: Option<&str>,
    value: Option<&Value>,
) {
    let len = u64::from(bn.is_some())
        + u64::from(bt.is_some())
        + u64::from(n.is_some())
        + u64::from(value.is_some());
    done(enc(out).map(len));
    if let Some(bn) = bn {
        done(enc(out).i8(KEY_BN).and_then(|e| e.str(bn)));
    }
    if let Some(bt) = bt {
        done(enc(out).i8(KEY_BT));
        write_number(out, bt);
    }
    if let Some(n) = n {
        done(enc(out).i8(KEY_N).and_then(|e| e.str(n)));
    }
    if let Some(v) = value {
        match v {
            Value::Integer(i) | Value::Time(i) => done(enc(out).i8(KEY_V).and_then(|e| e.i64(*i))),
            Value::UnsignedInteger(u) => done(enc(out).i8(KEY_V).and_then(|e| e.u64(*u))),
            Value::Float(x) => {
                done(enc(out).i8(KEY_V));
                write_float(out, *x);
            }
            Value::Boolean(b) => done(enc(out).i8(KEY_VB).and_then(|e| e.bool(*b))),
            Value::String(s) | Value::CoreLnk(s) => {
                done(enc(out).i8(KEY_VS).and_then(|e| e.str(s)))
            }
            Value::Opaque(d) => done(enc(out).i8(KEY_VD).and_then(|e| e.bytes(d))),
            Value::ObjLnk(l) => done(enc(out).str(VLO).and_then(|e| e.str(&format_objlnk(l)))),
        }
    }
}

/// A time as an integer when it is a whole number of seconds, else a float.
fn write_number(out: &mut Vec<u8>, x: f64) {
    // 2^63: below it, integral floats convert to i64 exactly.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    let i = x as i64;
    if (-LIMIT..LIMIT).contains(&x) && i as f64 == x && !(x == 0.0 && x.is_sign_negative()) {
        done(enc(out).i64(i));
    } else {
        write_float(out, x);
    }
}

/// `"1/2/3"`
fn join_ids(ids: &[u16]) -> String {
    use core::fmt::Write;
    let mut s = String::new();
    for (k, id) in ids.iter().enumerate() {
        if k > 0 {
            s.push('/');
        }
        let _ = write!(s, "{id}");
    }
    s
}

/// `"/1/2/"`
fn join_path(ids: &[u16]) -> String {
    let mut s = String::from("/");
    s.push_str(&join_ids(ids));
    s.push('/');
    s
}
