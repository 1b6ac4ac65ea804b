//! `application/cbor` (60): one resource or resource-instance value as a
//! single CBOR data item (the CBOR data format of LwM2M TS Core §7.4, added
//! in LwM2M 1.1).
//!
//! | resource type    | written as                           | also accepted when decoding             |
//! |------------------|--------------------------------------|-----------------------------------------|
//! | Integer          | integer (major 0/1)                  |                                         |
//! | Unsigned Integer | unsigned integer (major 0)           |                                         |
//! | Float            | shortest float that keeps the value  | any float width, integers, tag 4 decimal fraction |
//! | Boolean          | `true` / `false`                     |                                         |
//! | String, Corelnk  | text string                          | indefinite-length text                  |
//! | Opaque           | byte string                          | indefinite-length bytes                 |
//! | Time             | tag 1 + integer seconds              | plain integer, tag 1 + float (floored)  |
//! | Objlnk           | text `"O:I"`                         |                                         |
//!
//! Floats follow RFC 8949 §4.2.2 preferred serialization: half precision if
//! that keeps the exact value, else single, else double; NaN is written as
//! the half-precision quiet NaN `f9 7e 00`. The choice is deterministic and
//! loses nothing, and every LwM2M CBOR reader must accept all three widths.
//!
//! When the object model is unknown, the decoder keeps what the CBOR item
//! says: an unsigned integer that fits `i64` becomes [`Value::Integer`]
//! (larger ones [`Value::UnsignedInteger`]), a float [`Value::Float`], text
//! [`Value::String`], bytes [`Value::Opaque`], tag 1 [`Value::Time`].
//!
//! This module also holds the CBOR reading and writing helpers that
//! [`senml_cbor`](super::senml_cbor) and [`lwm2m_cbor`](super::lwm2m_cbor)
//! share: a bounded reader over [`minicbor::Decoder`] that never trusts a
//! declared length, and the builder that turns `(path, value)` leaves into a
//! [`Node`] at a request path.

use alloc::borrow::Cow;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::convert::Infallible;

use minicbor::data::Type;
use minicbor::{Decoder, Encoder};

use super::single_value::{single_value, value_node, value_path};
use super::FormatError;
use crate::model::{
    Instance, ModelLookup, Node, ObjLnk, ObjectNode, Path, Resource, ResourceType, ResourceValue,
    Value,
};

/// Most data items (records, map entries, ids, skipped values) one payload
/// may hold; past it decoding fails with [`FormatError::InvalidLength`]. Each
/// decoded item costs far more memory than its one or two bytes on the wire,
/// so this caps what a peer can make us allocate.
pub const MAX_ITEMS: usize = 65_536;

const ONLY_VALUES: &str = "application/cbor carries one resource or resource instance value";

/// Decodes an `application/cbor` payload for a Read response or Write request
/// on `path`, which must be a resource or resource-instance path.
///
/// ```
/// use lwm2m_core::format::cbor;
/// use lwm2m_core::model::{Node, Path, Resource, Value, NO_MODELS};
/// let node = cbor::decode(&[0x18, 0x2a], &Path::Resource(3, 0, 9), &NO_MODELS).unwrap();
/// assert_eq!(node, Node::Resource(Resource::single(9, Value::Integer(42))));
/// ```
pub fn decode(payload: &[u8], path: &Path, models: &dyn ModelLookup) -> Result<Node, FormatError> {
    let (o, r) = value_path(path, ONLY_VALUES)?;
    let model = models.resource(o, r);
    match (path, model.map(|m| m.multiple)) {
        (Path::Resource(..), Some(true)) => {
            return Err(FormatError::NotRepresentable(
                "a multiple-instance resource needs a format with ids (SenML, LwM2M CBOR, TLV)",
            ))
        }
        (Path::ResourceInstance(..), Some(false)) => {
            return Err(FormatError::NotRepresentable(
                "a single-instance resource has no resource instances",
            ))
        }
        _ => {}
    }
    let mut rd = Reader::new(payload);
    let scalar = rd.scalar()?;
    rd.finish()?;
    let value = typed_value(scalar, model.map(|m| m.resource_type))?;
    Ok(value_node(path, r, value))
}

/// Encodes a single resource or a resource instance sitting at `path`.
///
/// ```
/// use lwm2m_core::format::cbor;
/// use lwm2m_core::model::{Node, Path, Resource, Value};
/// let mut out = Vec::new();
/// let node = Node::Resource(Resource::single(9, Value::Integer(42)));
/// cbor::encode(&node, &Path::Resource(3, 0, 9), &mut out).unwrap();
/// assert_eq!(out, [0x18, 0x2a]);
/// ```
pub fn encode(node: &Node, path: &Path, out: &mut Vec<u8>) -> Result<(), FormatError> {
    let value = single_value(
        node,
        path,
        ONLY_VALUES,
        "application/cbor cannot carry a multiple-instance resource",
    )?;
    write_value(out, value);
    Ok(())
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

/// One CBOR data item that is not a container, before the model types it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'b> {
    /// Major type 0.
    Uint(u64),
    /// Major type 1: -2^64 ..= -1.
    Nint(i128),
    /// Any float width, or a tag 4 decimal fraction.
    Float(f64),
    /// `true` / `false`.
    Bool(bool),
    /// Text string (definite ones borrow from the payload).
    Text(Cow<'b, str>),
    /// Byte string (definite ones borrow from the payload).
    Bytes(Cow<'b, [u8]>),
    /// Tag 1 (epoch-based date/time) around a number, in whole seconds.
    Time(i64),
    /// `null`.
    Null,
}

/// Iterates the entries of a definite or indefinite array or map.
pub(crate) struct Seq {
    /// Entries left, `None` for an indefinite-length item (ends at a break).
    remaining: Option<u64>,
}

impl Seq {
    /// True if another entry follows; consumes the break of an indefinite item.
    pub(crate) fn next(&mut self, rd: &mut Reader<'_>) -> Result<bool, FormatError> {
        match &mut self.remaining {
            Some(0) => Ok(false),
            Some(n) => {
                *n -= 1;
                rd.count_item()?;
                Ok(true)
            }
            None => {
                if rd.datatype()? == Type::Break {
                    rd.consume_break();
                    Ok(false)
                } else {
                    rd.count_item()?;
                    Ok(true)
                }
            }
        }
    }

    /// True if the item has no entries at all (only valid before the first `next`).
    pub(crate) fn is_empty(&self, rd: &Reader<'_>) -> Result<bool, FormatError> {
        Ok(match self.remaining {
            Some(n) => n == 0,
            None => rd.datatype()? == Type::Break,
        })
    }
}

/// A bounded CBOR reader: lengths declared by the peer are checked against
/// the bytes that are really there and never used to preallocate, and the
/// number of items is capped by [`MAX_ITEMS`].
pub(crate) struct Reader<'b> {
    dec: Decoder<'b>,
    items: usize,
}

impl<'b> Reader<'b> {
    pub(crate) fn new(payload: &'b [u8]) -> Reader<'b> {
        Reader {
            dec: Decoder::new(payload),
            items: 0,
        }
    }

    /// Current byte offset.
    pub(crate) fn pos(&self) -> usize {
        self.dec.position()
    }

    fn len(&self) -> usize {
        self.dec.input().len()
    }

    fn remaining(&self) -> usize {
        self.len().saturating_sub(self.pos())
    }

    fn truncated(&self) -> FormatError {
        FormatError::Truncated { offset: self.len() }
    }

    /// Maps a minicbor error for an item that started at `at`.
    fn err(&self, e: minicbor::decode::Error, at: usize, expected: &'static str) -> FormatError {
        if e.is_end_of_input() {
            self.truncated()
        } else {
            FormatError::Syntax {
                offset: e.position().unwrap_or(at),
                expected,
            }
        }
    }

    fn count_item(&mut self) -> Result<(), FormatError> {
        self.items += 1;
        if self.items > MAX_ITEMS {
            return Err(FormatError::InvalidLength { offset: self.pos() });
        }
        Ok(())
    }

    /// The type of the next item (without consuming it).
    pub(crate) fn datatype(&self) -> Result<Type, FormatError> {
        let at = self.pos();
        self.dec
            .datatype()
            .map_err(|e| self.err(e, at, "a CBOR data item"))
    }

    fn consume_break(&mut self) {
        // Only called after `datatype` returned `Break`, so the byte is there.
        self.dec.set_position(self.pos() + 1);
    }

    /// Fails if bytes follow the last item.
    pub(crate) fn finish(&self) -> Result<(), FormatError> {
        if self.remaining() != 0 {
            return Err(FormatError::Syntax {
                offset: self.pos(),
                expected: "end of payload after the top-level item",
            });
        }
        Ok(())
    }

    /// Starts an array (definite or indefinite).
    pub(crate) fn array(&mut self) -> Result<Seq, FormatError> {
        let at = self.pos();
        let len = self.dec.array().map_err(|e| self.err(e, at, "an array"))?;
        // Every entry takes at least one byte: a longer declared length is a lie.
        if let Some(n) = len {
            if n > self.remaining() as u64 {
                return Err(FormatError::InvalidLength { offset: at });
            }
        }
        Ok(Seq { remaining: len })
    }

    /// Starts a map (definite or indefinite); the `Seq` counts key/value pairs.
    pub(crate) fn map(&mut self) -> Result<Seq, FormatError> {
        let at = self.pos();
        let len = self.dec.map().map_err(|e| self.err(e, at, "a map"))?;
        // Every pair takes at least two bytes.
        if let Some(n) = len {
            if n > (self.remaining() / 2) as u64 {
                return Err(FormatError::InvalidLength { offset: at });
            }
        }
        Ok(Seq { remaining: len })
    }

    /// Skips one item of any kind (an unknown SenML field's value, for example).
    pub(crate) fn skip(&mut self) -> Result<(), FormatError> {
        let at = self.pos();
        self.count_item()?;
        // minicbor's skip is iterative (no recursion) and only allocates one
        // small entry per nested indefinite container actually present.
        self.dec
            .skip()
            .map_err(|e| self.err(e, at, "a well-formed CBOR data item"))
    }

    /// Reads an unsigned or negative integer as `i128`.
    pub(crate) fn int(&mut self) -> Result<i128, FormatError> {
        let at = self.pos();
        match self.datatype()? {
            Type::U8 | Type::U16 | Type::U32 | Type::U64 => {}
            Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => {}
            _ => {
                return Err(FormatError::Syntax {
                    offset: at,
                    expected: "an integer",
                })
            }
        }
        let v = self.dec.int().map_err(|e| self.err(e, at, "an integer"))?;
        Ok(i128::from(v))
    }

    /// Reads a text string (definite or indefinite length).
    pub(crate) fn text(&mut self) -> Result<Cow<'b, str>, FormatError> {
        let at = self.pos();
        match self.datatype()? {
            Type::String => self
                .dec
                .str()
                .map(Cow::Borrowed)
                .map_err(|e| self.text_err(e, at)),
            Type::StringIndef => {
                let len = self.len();
                let mut s = String::new();
                let chunks = self.dec.str_iter().map_err(|e| text_err(e, at, len))?;
                for chunk in chunks {
                    s.push_str(chunk.map_err(|e| text_err(e, at, len))?);
                }
                Ok(Cow::Owned(s))
            }
            _ => Err(FormatError::Syntax {
                offset: at,
                expected: "a text string",
            }),
        }
    }

    fn text_err(&self, e: minicbor::decode::Error, at: usize) -> FormatError {
        text_err(e, at, self.len())
    }

    /// Reads a byte string (definite or indefinite length).
    pub(crate) fn bytes(&mut self) -> Result<Cow<'b, [u8]>, FormatError> {
        let at = self.pos();
        match self.datatype()? {
            Type::Bytes => self
                .dec
                .bytes()
                .map(Cow::Borrowed)
                .map_err(|e| self.err(e, at, "a byte string")),
            Type::BytesIndef => {
                let len = self.len();
                let mut v = Vec::new();
                let chunks = self.dec.bytes_iter().map_err(|e| bytes_err(e, at, len))?;
                for chunk in chunks {
                    v.extend_from_slice(chunk.map_err(|e| bytes_err(e, at, len))?);
                }
                Ok(Cow::Owned(v))
            }
            _ => Err(FormatError::Syntax {
                offset: at,
                expected: "a byte string",
            }),
        }
    }

    /// Reads a boolean.
    pub(crate) fn bool(&mut self) -> Result<bool, FormatError> {
        let at = self.pos();
        self.dec.bool().map_err(|e| self.err(e, at, "a boolean"))
    }

    /// Reads a float of any width (half precision decoded here, since
    /// minicbor only does it with its `half` feature).
    fn float(&mut self) -> Result<f64, FormatError> {
        let at = self.pos();
        match self.datatype()? {
            Type::F16 => {
                let input = self.dec.input();
                let hi = input.get(at + 1).ok_or_else(|| self.truncated())?;
                let lo = input.get(at + 2).ok_or_else(|| self.truncated())?;
                self.dec.set_position(at + 3);
                Ok(f16_to_f64(u16::from_be_bytes([*hi, *lo])))
            }
            _ => self.dec.f64().map_err(|e| self.err(e, at, "a float")),
        }
    }

    /// Reads a number: an integer, a float of any width, or a tag 4 decimal
    /// fraction (RFC 8428 §6 allows it for SenML numbers).
    pub(crate) fn number(&mut self) -> Result<Scalar<'b>, FormatError> {
        let at = self.pos();
        match self.datatype()? {
            Type::U8 | Type::U16 | Type::U32 | Type::U64 => int_scalar(self.int()?),
            Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => int_scalar(self.int()?),
            Type::F16 | Type::F32 | Type::F64 => Ok(Scalar::Float(self.float()?)),
            Type::Tag => {
                let tag = self.tag()?;
                if tag != TAG_DECIMAL_FRACTION {
                    return Err(FormatError::Syntax {
                        offset: at,
                        expected: "a number (integer, float or tag 4 decimal fraction)",
                    });
                }
                Ok(Scalar::Float(self.decimal_fraction(at)?))
            }
            _ => Err(FormatError::Syntax {
                offset: at,
                expected: "a number (integer, float or tag 4 decimal fraction)",
            }),
        }
    }

    fn tag(&mut self) -> Result<u64, FormatError> {
        let at = self.pos();
        self.dec
            .tag()
            .map(|t| t.as_u64())
            .map_err(|e| self.err(e, at, "a tag"))
    }

    /// The content of a tag 4 item: `[exponent, mantissa]`, value mantissa * 10^exponent.
    fn decimal_fraction(&mut self, at: usize) -> Result<f64, FormatError> {
        const EXPECTED: &str = "a decimal fraction [exponent, mantissa] of two integers";
        let mut seq = self.array()?;
        let mut parts = [0i128; 2];
        for part in parts.iter_mut() {
            if !seq.next(self)? {
                return Err(FormatError::Syntax {
                    offset: at,
                    expected: EXPECTED,
                });
            }
            *part = self.int().map_err(|_| FormatError::Syntax {
                offset: at,
                expected: EXPECTED,
            })?;
        }
        if seq.next(self)? {
            return Err(FormatError::Syntax {
                offset: at,
                expected: EXPECTED,
            });
        }
        let [exp, mantissa] = parts;
        // mantissa fits f64 approximately (i128 -> f64 rounds), exponent is bounded below.
        scale10(mantissa as f64, exp).ok_or(FormatError::InvalidValue {
            what: "decimal fraction out of the float range",
        })
    }

    /// Reads any non-container item: what `application/cbor` and LwM2M CBOR
    /// values may be. Tags other than 1 (time) and 4 (decimal fraction) are
    /// rejected.
    pub(crate) fn scalar(&mut self) -> Result<Scalar<'b>, FormatError> {
        let at = self.pos();
        match self.datatype()? {
            Type::U8
            | Type::U16
            | Type::U32
            | Type::U64
            | Type::I8
            | Type::I16
            | Type::I32
            | Type::I64
            | Type::Int
            | Type::F16
            | Type::F32
            | Type::F64 => self.number(),
            Type::Bool => Ok(Scalar::Bool(self.bool()?)),
            Type::Null => {
                self.dec.set_position(at + 1);
                Ok(Scalar::Null)
            }
            Type::String | Type::StringIndef => Ok(Scalar::Text(self.text()?)),
            Type::Bytes | Type::BytesIndef => Ok(Scalar::Bytes(self.bytes()?)),
            Type::Tag => {
                let tag = self.tag()?;
                match tag {
                    TAG_EPOCH_TIME => self.epoch_time(at),
                    TAG_DECIMAL_FRACTION => Ok(Scalar::Float(self.decimal_fraction(at)?)),
                    _ => Err(FormatError::Syntax {
                        offset: at,
                        expected: "tag 1 (time) or tag 4 (decimal fraction); no other tag is used",
                    }),
                }
            }
            _ => Err(FormatError::Syntax {
                offset: at,
                expected: "a single value (number, boolean, text, bytes or tagged time)",
            }),
        }
    }

    /// The content of a tag 1 item: integer or float seconds since the epoch.
    fn epoch_time(&mut self, at: usize) -> Result<Scalar<'b>, FormatError> {
        match self.datatype()? {
            Type::F16 | Type::F32 | Type::F64 => {
                let x = self.float()?;
                float_to_time(x).map(Scalar::Time)
            }
            Type::Tag => Err(FormatError::Syntax {
                offset: at,
                expected: "a number inside tag 1 (time)",
            }),
            _ => {
                let n = self.int().map_err(|_| FormatError::Syntax {
                    offset: at,
                    expected: "a number inside tag 1 (time)",
                })?;
                i64::try_from(n)
                    .map(Scalar::Time)
                    .map_err(|_| FormatError::InvalidValue {
                        what: "time outside the signed 64-bit range",
                    })
            }
        }
    }
}

fn text_err(e: minicbor::decode::Error, at: usize, len: usize) -> FormatError {
    if e.is_end_of_input() {
        FormatError::Truncated { offset: len }
    } else if e.is_type_mismatch() {
        FormatError::Syntax {
            offset: e.position().unwrap_or(at),
            expected: "text string chunks inside an indefinite text string",
        }
    } else {
        // The only other failure of a well-delimited text string.
        FormatError::InvalidUtf8
    }
}

fn bytes_err(e: minicbor::decode::Error, at: usize, len: usize) -> FormatError {
    if e.is_end_of_input() {
        FormatError::Truncated { offset: len }
    } else {
        FormatError::Syntax {
            offset: e.position().unwrap_or(at),
            expected: "byte string chunks inside an indefinite byte string",
        }
    }
}

const TAG_EPOCH_TIME: u64 = 1;
const TAG_DECIMAL_FRACTION: u64 = 4;

fn int_scalar<'b>(n: i128) -> Result<Scalar<'b>, FormatError> {
    Ok(match u64::try_from(n) {
        Ok(u) => Scalar::Uint(u),
        Err(_) => Scalar::Nint(n),
    })
}

/// Half-precision bits to f64 (exact: every half is a double).
pub(crate) fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = (bits >> 10) & 0x1f;
    let mant = f64::from(bits & 0x3ff);
    let magnitude = match exp {
        0 => mant / 16_777_216.0, // subnormal: mant * 2^-24
        0x1f if mant == 0.0 => f64::INFINITY,
        0x1f => f64::NAN,
        // (1024 + mant) * 2^(exp - 25); exp - 25 is in -24..=5, a normal double.
        _ => (1024.0 + mant) * f64::from_bits(((i64::from(exp) - 25 + 1023) as u64) << 52),
    };
    sign * magnitude
}

/// The half-precision bits of `x` if that is exactly the same value.
pub(crate) fn f32_to_f16_exact(x: f32) -> Option<u16> {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    if exp == 0xff {
        // Infinity keeps its sign; NaN payloads are not kept (callers write NaN themselves).
        return (mant == 0).then_some(sign | 0x7c00);
    }
    if exp == 0 {
        // Zero is exact; f32 subnormals are far below the smallest half.
        return (mant == 0).then_some(sign);
    }
    let e = exp - 127;
    if (-14..=15).contains(&e) {
        // Normal half: 10 fraction bits, the low 13 bits of the f32 fraction must be zero.
        if mant & 0x1fff != 0 {
            return None;
        }
        return Some(sign | (((e + 15) as u16) << 10) | (mant >> 13) as u16);
    }
    if (-24..=-15).contains(&e) {
        // Subnormal half: value = frac * 2^-24 with frac = full >> shift.
        let full = mant | 0x80_0000;
        let shift = (-(e + 1)) as u32; // 14..=23
        if full & ((1u32 << shift) - 1) != 0 {
            return None;
        }
        return Some(sign | (full >> shift) as u16);
    }
    None
}

/// `m * 10^e`, or `None` if the result is not finite.
fn scale10(m: f64, e: i128) -> Option<f64> {
    // Powers of ten up to 1e22 are exact doubles, so small exponents (the
    // usual case) round only once.
    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    if m == 0.0 {
        return Some(0.0);
    }
    // Past 10^±400 every non-zero mantissa (|m| < 2^64) is out of range.
    if e.unsigned_abs() > 400 {
        return if e < 0 { Some(0.0) } else { None };
    }
    let mut k = e.unsigned_abs() as usize;
    let mut x = m;
    while k > 22 {
        x = if e < 0 { x / 1e22 } else { x * 1e22 };
        k -= 22;
    }
    let p = POW10.get(k).copied().unwrap_or(1.0);
    x = if e < 0 { x / p } else { x * p };
    x.is_finite().then_some(x)
}

/// Whole seconds from a float time, rounded down (RFC 8949 §3.4.2 allows fractions).
pub(crate) fn float_to_time(x: f64) -> Result<i64, FormatError> {
    // 2^63 as f64; the range check keeps the cast exact-or-floored, never saturating.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if !x.is_finite() || !(-LIMIT..LIMIT).contains(&x) {
        return Err(FormatError::InvalidValue {
            what: "time is not a finite number of seconds in the 64-bit range",
        });
    }
    let t = x as i64; // truncates toward zero
    Ok(if (t as f64) > x { t - 1 } else { t })
}

/// Parses an object link `"O:I"` (two ids 0..=65535; `65535:65535` is the null link).
pub(crate) fn parse_objlnk(s: &str) -> Option<ObjLnk> {
    let (o, i) = s.split_once(':')?;
    let id = |p: &str| -> Option<u16> {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse().ok()
    };
    Some(ObjLnk {
        object: id(o)?,
        instance: id(i)?,
    })
}

/// Formats an object link as `"O:I"`.
pub(crate) fn format_objlnk(l: &ObjLnk) -> String {
    use core::fmt::Write;
    let mut s = String::new();
    let _ = write!(s, "{}:{}", l.object, l.instance);
    s
}

const WRONG_TYPE: FormatError = FormatError::InvalidValue {
    what: "the CBOR item does not fit the resource type of the object model",
};

/// Types a scalar by the resource type the model gives (`None`: model unknown).
pub(crate) fn typed_value(s: Scalar<'_>, ty: Option<ResourceType>) -> Result<Value, FormatError> {
    let Some(ty) = ty else {
        return untyped_value(s);
    };
    Ok(match (ty, s) {
        (_, Scalar::Null) => return Err(null_value()),
        (ResourceType::String, Scalar::Text(t)) => Value::String(t.into_owned()),
        (ResourceType::CoreLnk, Scalar::Text(t)) => Value::CoreLnk(t.into_owned()),
        (ResourceType::ObjLnk, Scalar::Text(t)) => {
            Value::ObjLnk(parse_objlnk(&t).ok_or(FormatError::InvalidValue {
                what: "object link is not \"ObjectId:InstanceId\"",
            })?)
        }
        (ResourceType::Integer, Scalar::Uint(u)) => {
            Value::Integer(i64::try_from(u).map_err(|_| out_of_range())?)
        }
        (ResourceType::Integer, Scalar::Nint(n)) => {
            Value::Integer(i64::try_from(n).map_err(|_| out_of_range())?)
        }
        (ResourceType::UnsignedInteger, Scalar::Uint(u)) => Value::UnsignedInteger(u),
        (ResourceType::Float, Scalar::Float(f)) => Value::Float(f),
        // Integers are valid numbers for a float resource; large ones round.
        (ResourceType::Float, Scalar::Uint(u)) => Value::Float(u as f64),
        (ResourceType::Float, Scalar::Nint(n)) => Value::Float(n as f64),
        (ResourceType::Boolean, Scalar::Bool(b)) => Value::Boolean(b),
        (ResourceType::Opaque, Scalar::Bytes(b)) => Value::Opaque(b.into_owned()),
        (ResourceType::Time, Scalar::Time(t)) => Value::Time(t),
        (ResourceType::Time, Scalar::Uint(u)) => {
            Value::Time(i64::try_from(u).map_err(|_| out_of_range())?)
        }
        (ResourceType::Time, Scalar::Nint(n)) => {
            Value::Time(i64::try_from(n).map_err(|_| out_of_range())?)
        }
        (ResourceType::None, _) => {
            return Err(FormatError::InvalidValue {
                what: "an executable resource has no value",
            })
        }
        _ => return Err(WRONG_TYPE),
    })
}

/// What the CBOR item says when no model is known.
fn untyped_value(s: Scalar<'_>) -> Result<Value, FormatError> {
    Ok(match s {
        Scalar::Uint(u) => match i64::try_from(u) {
            Ok(i) => Value::Integer(i),
            Err(_) => Value::UnsignedInteger(u),
        },
        Scalar::Nint(n) => Value::Integer(i64::try_from(n).map_err(|_| out_of_range())?),
        Scalar::Float(f) => Value::Float(f),
        Scalar::Bool(b) => Value::Boolean(b),
        Scalar::Text(t) => Value::String(t.into_owned()),
        Scalar::Bytes(b) => Value::Opaque(b.into_owned()),
        Scalar::Time(t) => Value::Time(t),
        Scalar::Null => return Err(null_value()),
    })
}

fn out_of_range() -> FormatError {
    FormatError::InvalidValue {
        what: "integer outside the range of the resource type (64-bit)",
    }
}

fn null_value() -> FormatError {
    FormatError::InvalidValue {
        what: "null (a deletion marker) where a resource value was expected",
    }
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// A CBOR encoder appending to `out`.
pub(crate) fn enc(out: &mut Vec<u8>) -> Encoder<&mut Vec<u8>> {
    Encoder::new(out)
}

/// Writing to a `Vec` cannot fail: the error type is uninhabited in practice.
pub(crate) fn done<T>(r: Result<T, minicbor::encode::Error<Infallible>>) {
    let _ = r;
}

/// Writes a float in its shortest exact width (RFC 8949 preferred serialization).
pub(crate) fn write_float(out: &mut Vec<u8>, x: f64) {
    if x.is_nan() {
        out.extend_from_slice(&[0xf9, 0x7e, 0x00]);
        return;
    }
    let single = x as f32;
    if f64::from(single) != x {
        done(enc(out).f64(x));
        return;
    }
    match f32_to_f16_exact(single) {
        Some(h) => {
            out.push(0xf9);
            out.extend_from_slice(&h.to_be_bytes());
        }
        None => done(enc(out).f32(single)),
    }
}

/// Writes one value as `application/cbor` and LwM2M CBOR represent it.
pub(crate) fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Integer(i) => done(enc(out).i64(*i)),
        Value::UnsignedInteger(u) => done(enc(out).u64(*u)),
        Value::Float(f) => write_float(out, *f),
        Value::Boolean(b) => done(enc(out).bool(*b)),
        Value::String(s) | Value::CoreLnk(s) => done(enc(out).str(s)),
        Value::Opaque(b) => done(enc(out).bytes(b)),
        Value::Time(t) => done(
            enc(out)
                .tag(minicbor::data::Tag::new(TAG_EPOCH_TIME))
                .and_then(|e| e.i64(*t)),
        ),
        Value::ObjLnk(l) => done(enc(out).str(&format_objlnk(l))),
    }
}

// ---------------------------------------------------------------------------
// Building a node from (path, value) leaves
// ---------------------------------------------------------------------------

/// Collects the leaves of a payload into the tree under a request path,
/// checking ids, depth, duplicates and single/multiple against the model.
pub(crate) struct NodeBuilder<'m> {
    request: Path,
    models: &'m dyn ModelLookup,
    objects: BTreeMap<u16, ObjectNode>,
}

const DUPLICATE: &str = "each path only once (this one repeats or clashes with another)";

impl<'m> NodeBuilder<'m> {
    /// A builder for a node at `request` (not `/`: a node has no root form).
    pub(crate) fn new(
        request: Path,
        models: &'m dyn ModelLookup,
    ) -> Result<NodeBuilder<'m>, FormatError> {
        if request == Path::Root {
            return Err(FormatError::NotRepresentable(
                "a node needs an object path at least; decode `/` with decode_values",
            ));
        }
        Ok(NodeBuilder {
            request,
            models,
            objects: BTreeMap::new(),
        })
    }

    /// The resource type the model gives for a resource or resource-instance path.
    pub(crate) fn resource_type(&self, path: &Path) -> Option<ResourceType> {
        model_type(self.models, path)
    }

    /// True if `path` lies at or below the request path.
    pub(crate) fn covers(&self, path: &Path) -> bool {
        self.request.is_prefix_of(path)
    }

    /// Whether the model says resource `r` of object `o` is multiple (`None`: unknown).
    fn multiple(&self, o: u16, r: u16) -> Option<bool> {
        self.models.resource(o, r).map(|m| m.multiple)
    }

    fn instance_mut(&mut self, o: u16, i: u16) -> &mut Instance {
        self.objects
            .entry(o)
            .or_insert_with(|| ObjectNode {
                id: o,
                instances: BTreeMap::new(),
            })
            .instances
            .entry(i)
            .or_insert_with(|| Instance {
                id: i,
                resources: BTreeMap::new(),
            })
    }

    /// Adds a value at a resource or resource-instance path; `offset` is where
    /// the item started in the payload (for errors).
    pub(crate) fn value(
        &mut self,
        path: Path,
        value: Value,
        offset: usize,
    ) -> Result<(), FormatError> {
        if !self.covers(&path) {
            return Err(FormatError::InvalidPath);
        }
        let dup = FormatError::Syntax {
            offset,
            expected: DUPLICATE,
        };
        match path {
            Path::Resource(o, i, r) => {
                if self.multiple(o, r) == Some(true) {
                    return Err(FormatError::InvalidValue {
                        what: "single value for a multiple-instance resource",
                    });
                }
                let inst = self.instance_mut(o, i);
                if inst.resources.contains_key(&r) {
                    return Err(dup);
                }
                inst.resources.insert(r, Resource::single(r, value));
            }
            Path::ResourceInstance(o, i, r, ri) => {
                if self.multiple(o, r) == Some(false) {
                    return Err(FormatError::InvalidValue {
                        what: "resource instance of a single-instance resource",
                    });
                }
                let inst = self.instance_mut(o, i);
                let res = inst.resources.entry(r).or_insert_with(|| Resource {
                    id: r,
                    value: ResourceValue::Multiple(BTreeMap::new()),
                });
                match &mut res.value {
                    ResourceValue::Multiple(m) if !m.contains_key(&ri) => {
                        m.insert(ri, value);
                    }
                    _ => return Err(dup),
                }
            }
            _ => {
                return Err(FormatError::Syntax {
                    offset,
                    expected: "values only at resource or resource instance paths",
                })
            }
        }
        Ok(())
    }

    /// Records that a container (object, instance or multiple resource) exists
    /// even if it holds nothing (LwM2M CBOR's empty maps). A container above
    /// the request path says nothing about it and is ignored.
    pub(crate) fn container(&mut self, path: Path, offset: usize) -> Result<(), FormatError> {
        if path.is_prefix_of(&self.request) && path != self.request {
            return Ok(());
        }
        if !self.covers(&path) {
            return Err(FormatError::InvalidPath);
        }
        match path {
            Path::Object(o) => {
                self.objects.entry(o).or_insert_with(|| ObjectNode {
                    id: o,
                    instances: BTreeMap::new(),
                });
            }
            Path::Instance(o, i) => {
                self.instance_mut(o, i);
            }
            Path::Resource(o, i, r) => {
                if self.multiple(o, r) == Some(false) {
                    return Err(FormatError::InvalidValue {
                        what: "resource instances for a single-instance resource",
                    });
                }
                let inst = self.instance_mut(o, i);
                let res = inst.resources.entry(r).or_insert_with(|| Resource {
                    id: r,
                    value: ResourceValue::Multiple(BTreeMap::new()),
                });
                if !matches!(res.value, ResourceValue::Multiple(_)) {
                    return Err(FormatError::Syntax {
                        offset,
                        expected: DUPLICATE,
                    });
                }
            }
            _ => {
                return Err(FormatError::Syntax {
                    offset,
                    expected: "a value at a resource instance path",
                })
            }
        }
        Ok(())
    }

    /// The node at the request path.
    pub(crate) fn finish(mut self) -> Result<Node, FormatError> {
        let missing = FormatError::Syntax {
            offset: 0,
            expected: "a value for the requested resource or resource instance",
        };
        match self.request {
            Path::Root => Err(FormatError::InvalidPath),
            Path::Object(o) => Ok(Node::Object(self.objects.remove(&o).unwrap_or(
                ObjectNode {
                    id: o,
                    instances: BTreeMap::new(),
                },
            ))),
            Path::Instance(o, i) => Ok(Node::Instance(
                self.objects
                    .remove(&o)
                    .and_then(|mut obj| obj.instances.remove(&i))
                    .unwrap_or(Instance {
                        id: i,
                        resources: BTreeMap::new(),
                    }),
            )),
            Path::Resource(o, i, r) => {
                let res = self
                    .objects
                    .remove(&o)
                    .and_then(|mut obj| obj.instances.remove(&i))
                    .and_then(|mut inst| inst.resources.remove(&r));
                match res {
                    Some(res) => Ok(Node::Resource(res)),
                    // A multiple-instance resource may legitimately have no instances.
                    None if self.multiple(o, r) == Some(true) => Ok(Node::Resource(Resource {
                        id: r,
                        value: ResourceValue::Multiple(BTreeMap::new()),
                    })),
                    None => Err(missing),
                }
            }
            Path::ResourceInstance(o, i, r, ri) => {
                let value = self
                    .objects
                    .remove(&o)
                    .and_then(|mut obj| obj.instances.remove(&i))
                    .and_then(|mut inst| inst.resources.remove(&r))
                    .and_then(|res| match res.value {
                        ResourceValue::Multiple(mut m) => m.remove(&ri),
                        ResourceValue::Single(_) => None,
                    })
                    .ok_or(missing)?;
                Ok(Node::ResourceInstance { id: ri, value })
            }
        }
    }
}

/// The resource type the model gives for a resource or resource-instance path.
pub(crate) fn model_type(models: &dyn ModelLookup, path: &Path) -> Option<ResourceType> {
    match *path {
        Path::Resource(o, _, r) | Path::ResourceInstance(o, _, r, _) => {
            models.resource(o, r).map(|m| m.resource_type)
        }
        _ => None,
    }
}

/// Checks that `node` is the node for `path` (depth and id).
pub(crate) fn check_node_path(node: &Node, path: &Path) -> Result<(), FormatError> {
    let ok = match (node, *path) {
        (Node::Object(obj), Path::Object(o)) => obj.id == o,
        (Node::Instance(inst), Path::Instance(_, i)) => inst.id == i,
        (Node::Resource(res), Path::Resource(_, _, r)) => res.id == r,
        (Node::ResourceInstance { id, .. }, Path::ResourceInstance(_, _, _, ri)) => *id == ri,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(FormatError::NotRepresentable(
            "the node's depth or id does not match its path",
        ))
    }
}

/// Calls `f` for every value of `node` (at `path`) in id order, with its full path.
pub(crate) fn for_each_leaf<'a>(
    node: &'a Node,
    path: &Path,
    f: &mut dyn FnMut(Path, &'a Value) -> Result<(), FormatError>,
) -> Result<(), FormatError> {
    check_node_path(node, path)?;
    match node {
        Node::Object(obj) => {
            for inst in obj.instances.values() {
                let ip = child(path, inst.id)?;
                for res in inst.resources.values() {
                    resource_leaves(child(&ip, res.id)?, res, f)?;
                }
            }
        }
        Node::Instance(inst) => {
            for res in inst.resources.values() {
                resource_leaves(child(path, res.id)?, res, f)?;
            }
        }
        Node::Resource(res) => resource_leaves(*path, res, f)?,
        Node::ResourceInstance { value, .. } => f(*path, value)?,
    }
    Ok(())
}

fn child(path: &Path, id: u16) -> Result<Path, FormatError> {
    path.child(id).ok_or(FormatError::NotRepresentable(
        "an id in the node is above 65534",
    ))
}

fn resource_leaves<'a>(
    path: Path,
    res: &'a Resource,
    f: &mut dyn FnMut(Path, &'a Value) -> Result<(), FormatError>,
) -> Result<(), FormatError> {
    match &res.value {
        ResourceValue::Single(v) => f(path, v),
        ResourceValue::Multiple(m) => {
            for (ri, v) in m {
                f(child(&path, *ri)?, v)?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_floats_convert_exactly_both_ways() {
        // Every finite half survives f16 -> f64 -> f32 -> f16.
        for bits in 0u16..=u16::MAX {
            let x = f16_to_f64(bits);
            if x.is_nan() {
                continue;
            }
            assert_eq!(f32_to_f16_exact(x as f32), Some(bits), "bits {bits:#06x}");
        }
        assert_eq!(f16_to_f64(0x3c00), 1.0);
        assert_eq!(f16_to_f64(0x0001), 5.960464477539063e-8);
        assert_eq!(f16_to_f64(0xfc00), f64::NEG_INFINITY);
        assert!(f16_to_f64(0x7e00).is_nan());
        assert_eq!(f32_to_f16_exact(1.0e-3), None);
        assert_eq!(f32_to_f16_exact(65520.0), None);
        assert_eq!(f32_to_f16_exact(1.5), Some(0x3e00));
    }

    #[test]
    fn float_width_is_the_shortest_exact_one() {
        let cases: [(f64, &[u8]); 6] = [
            (1.5, &[0xf9, 0x3e, 0x00]),
            (100000.0, &[0xfa, 0x47, 0xc3, 0x50, 0x00]),
            (1.1, &[0xfb, 0x3f, 0xf1, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a]),
            (-0.0, &[0xf9, 0x80, 0x00]),
            (f64::INFINITY, &[0xf9, 0x7c, 0x00]),
            (f64::NAN, &[0xf9, 0x7e, 0x00]),
        ];
        for (x, bytes) in cases {
            let mut out = Vec::new();
            write_float(&mut out, x);
            assert_eq!(out, bytes, "{x}");
        }
    }

    #[test]
    fn scale10_matches_literals() {
        assert_eq!(scale10(45.0, -1), Some(4.5));
        assert_eq!(scale10(27315.0, -2), Some(273.15));
        assert_eq!(scale10(1.0, 30), Some(1e30));
        assert_eq!(scale10(1.0, 500), None);
        assert_eq!(scale10(1.0, -500), Some(0.0));
        assert_eq!(scale10(0.0, 500), Some(0.0));
    }

    #[test]
    fn float_time_rounds_down() {
        assert_eq!(float_to_time(1.5), Ok(1));
        assert_eq!(float_to_time(-1.5), Ok(-2));
        assert_eq!(float_to_time(-2.0), Ok(-2));
        assert!(float_to_time(f64::NAN).is_err());
        assert!(float_to_time(1e19).is_err());
    }

    #[test]
    fn objlnk_text() {
        assert_eq!(
            parse_objlnk("3:0"),
            Some(ObjLnk {
                object: 3,
                instance: 0
            })
        );
        assert_eq!(parse_objlnk("65535:65535"), Some(ObjLnk::NULL));
        for bad in [
            "", ":", "3:", ":0", "3:0:1", "65536:0", "+3:0", "3: 0", "-1:0", "000003:0",
        ] {
            assert_eq!(parse_objlnk(bad), None, "{bad:?}");
        }
        assert_eq!(format_objlnk(&ObjLnk::NULL), "65535:65535");
    }
}
