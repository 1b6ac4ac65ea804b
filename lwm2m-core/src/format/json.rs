//! A small JSON (RFC 8259) reader and writer for the JSON content formats
//! (SenML JSON, legacy LwM2M JSON).
//!
//! Why in-house rather than a general JSON crate:
//!
//! * `no_std` + `alloc`: the core crate must build without `std`.
//! * Borrowing: strings without escapes are borrowed from the payload
//!   ([`Cow::Borrowed`]), so a large Read response is not copied twice.
//! * Bounded work on peer input: nesting depth ([`Limits::max_depth`], 16 by
//!   default) and the total number of JSON values ([`Limits::max_elements`])
//!   are capped, so recursion and memory stay bounded whatever a peer sends.
//! * Exact numbers: numbers are kept as their text ([`JsonNumber`]) until the
//!   caller asks for an `i64`, `u64` or `f64`, so 64-bit integers such as
//!   `9007199254740993` or `18446744073709551615` never pass through a float
//!   and lose precision.
//! * Strict grammar: no trailing commas, no leading zeros, no `NaN` /
//!   `Infinity`, no unescaped control characters, no lone UTF-16 surrogates,
//!   nothing after the top-level value. Errors are typed ([`JsonErrorKind`])
//!   and carry the byte offset where the problem was found.
//!
//! The writer ([`JsonWriter`]) produces compact, deterministic output: no
//! whitespace, keys in the order the caller writes them, `f64` in the shortest
//! form that parses back to the same bits, integers as plain digits.
//!
//! Opaque values are base64 text; the codec is in [`super::base64`].

use alloc::borrow::Cow;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::FormatError;

/// Default maximum nesting depth of arrays and objects (the top-level array counts as 1).
pub const MAX_DEPTH: usize = 16;

/// Default maximum number of JSON values (scalars, arrays and objects; keys not
/// counted) in one document. A SenML record of a Read response is about five
/// values, so this allows some 13,000 records.
pub const MAX_ELEMENTS: usize = 65_536;

/// Limits applied while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum nesting depth of arrays/objects.
    pub max_depth: usize,
    /// Maximum number of JSON values in the document.
    pub max_elements: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: MAX_DEPTH,
            max_elements: MAX_ELEMENTS,
        }
    }
}

/// What was wrong with a JSON document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonErrorKind {
    /// The payload ended inside a value.
    UnexpectedEnd,
    /// A byte that does not fit the grammar; the text says what was expected.
    Unexpected(&'static str),
    /// Arrays/objects nested deeper than [`Limits::max_depth`].
    TooDeep,
    /// More values than [`Limits::max_elements`].
    TooManyElements,
    /// A malformed number (`-`, `01`, `1.`, `1e`, ...).
    InvalidNumber,
    /// An unknown escape or a bad `\uXXXX` sequence.
    InvalidEscape,
    /// A `\uD800`–`\uDFFF` escape that is not part of a valid surrogate pair.
    LoneSurrogate,
    /// A raw control character (below U+0020) inside a string.
    ControlCharacter,
    /// The payload is not UTF-8.
    InvalidUtf8,
    /// Something other than whitespace after the top-level value.
    TrailingData,
}

impl JsonErrorKind {
    /// What the parser expected, as text for [`FormatError::Syntax`].
    pub fn expected(&self) -> &'static str {
        match self {
            JsonErrorKind::UnexpectedEnd => "more JSON text",
            JsonErrorKind::Unexpected(what) => what,
            JsonErrorKind::TooDeep => "JSON nesting within the depth limit",
            JsonErrorKind::TooManyElements => "fewer JSON values (the element limit was reached)",
            JsonErrorKind::InvalidNumber => {
                "a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?"
            }
            JsonErrorKind::InvalidEscape => {
                "a JSON escape: \\\" \\\\ \\/ \\b \\f \\n \\r \\t or \\u and 4 hex digits"
            }
            JsonErrorKind::LoneSurrogate => {
                "a UTF-16 surrogate pair: \\uD800-\\uDBFF followed by \\uDC00-\\uDFFF"
            }
            JsonErrorKind::ControlCharacter => "control characters in strings escaped (\\u00XX)",
            JsonErrorKind::InvalidUtf8 => "UTF-8 text",
            JsonErrorKind::TrailingData => "the end of the payload after the JSON value",
        }
    }
}

/// A JSON syntax error and the byte offset where it was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset in the payload.
    pub offset: usize,
    /// What was wrong.
    pub kind: JsonErrorKind,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "JSON error at byte {}: expected {}",
            self.offset,
            self.kind.expected()
        )
    }
}

#[cfg(feature = "std")]
impl std::error::Error for JsonError {}

impl From<JsonError> for FormatError {
    fn from(e: JsonError) -> FormatError {
        match e.kind {
            JsonErrorKind::UnexpectedEnd => FormatError::Truncated { offset: e.offset },
            JsonErrorKind::TooDeep => FormatError::TooDeep,
            JsonErrorKind::InvalidUtf8 => FormatError::InvalidUtf8,
            kind => FormatError::Syntax {
                offset: e.offset,
                expected: kind.expected(),
            },
        }
    }
}

/// A JSON number, kept as the text of the payload.
///
/// ```
/// use lwm2m_core::format::json::{parse, JsonValue};
/// let doc = parse(b"[18446744073709551615, 1.5e3, -0.25]").unwrap();
/// let JsonValue::Array(items) = doc.value else { panic!() };
/// let nums: Vec<_> = items.iter().map(|e| e.value.as_number().unwrap()).collect();
/// assert_eq!(nums[0].as_u64(), Some(u64::MAX));
/// assert_eq!(nums[1].as_i64(), Some(1500));
/// assert_eq!(nums[2].as_i64(), None);
/// assert_eq!(nums[2].as_f64(), Some(-0.25));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonNumber<'a>(&'a str);

impl<'a> JsonNumber<'a> {
    /// The number's text as it appeared in the payload.
    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// True if the text has neither a fraction nor an exponent (`42`, `-7`).
    pub fn is_integer_literal(&self) -> bool {
        !self.0.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'))
    }

    /// The value as an `i64` if it is integral (`1.5e1` is 15) and in range.
    pub fn as_i64(&self) -> Option<i64> {
        let (neg, mag) = self.integral()?;
        if neg {
            if mag == 1u64 << 63 {
                Some(i64::MIN)
            } else {
                i64::try_from(mag).ok().map(|m| -m)
            }
        } else {
            i64::try_from(mag).ok()
        }
    }

    /// The value as a `u64` if it is integral and in range (`-0` is 0).
    pub fn as_u64(&self) -> Option<u64> {
        let (neg, mag) = self.integral()?;
        if neg && mag != 0 {
            None
        } else {
            Some(mag)
        }
    }

    /// The value as the nearest `f64`, or `None` if it overflows to infinity
    /// (`1e400`). Values too small for an `f64` become 0.
    pub fn as_f64(&self) -> Option<f64> {
        let v: f64 = self.0.parse().ok()?;
        v.is_finite().then_some(v)
    }

    /// Splits the text into sign, integer digits, fraction digits and exponent.
    /// The exponent saturates far outside any range that matters.
    fn parts(&self) -> (bool, &'a str, &'a str, i64) {
        let s = self.0;
        let (neg, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (mantissa, exp_text) = match s.find(['e', 'E']) {
            Some(i) => (s.get(..i).unwrap_or(""), s.get(i + 1..).unwrap_or("")),
            None => (s, ""),
        };
        let (int, frac) = match mantissa.find('.') {
            Some(i) => (
                mantissa.get(..i).unwrap_or(""),
                mantissa.get(i + 1..).unwrap_or(""),
            ),
            None => (mantissa, ""),
        };
        let (exp_neg, exp_digits) = match exp_text.as_bytes().first() {
            Some(b'-') => (true, exp_text.get(1..).unwrap_or("")),
            Some(b'+') => (false, exp_text.get(1..).unwrap_or("")),
            _ => (false, exp_text),
        };
        let mut exp: i64 = 0;
        for b in exp_digits.bytes() {
            exp = (exp * 10 + i64::from(b - b'0')).min(1_000_000_000);
        }
        (neg, int, frac, if exp_neg { -exp } else { exp })
    }

    /// Exact integral value as sign and magnitude, `None` if not integral or
    /// above `u64::MAX`. Works on the digits, never through a float.
    fn integral(&self) -> Option<(bool, u64)> {
        let (neg, int, frac, exp) = self.parts();
        let digits = || int.bytes().chain(frac.bytes());
        let total = int.len() + frac.len();
        let trailing_zeros = digits().rev().take_while(|&b| b == b'0').count();
        let leading_zeros = digits().take_while(|&b| b == b'0').count();
        if leading_zeros == total {
            return Some((neg, 0));
        }
        // Value = significant digits * 10^scale.
        let frac_len = i64::try_from(frac.len()).ok()?;
        let tz = i64::try_from(trailing_zeros).ok()?;
        let scale = exp.checked_sub(frac_len)?.checked_add(tz)?;
        if scale < 0 {
            return None;
        }
        let mut mag: u64 = 0;
        for b in digits()
            .skip(leading_zeros)
            .take(total - leading_zeros - trailing_zeros)
        {
            mag = mag.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        }
        let scale = u32::try_from(scale).ok()?;
        mag = mag.checked_mul(10u64.checked_pow(scale)?)?;
        Some((neg, mag))
    }
}

/// One parsed JSON value. Strings borrow from the payload where they have no escapes.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonValue<'a> {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A number, as text.
    Number(JsonNumber<'a>),
    /// A string with escapes resolved.
    String(Cow<'a, str>),
    /// An array.
    Array(Vec<Element<'a>>),
    /// An object: members in payload order (duplicate keys are kept; the
    /// format layers decide what a duplicate means for them).
    Object(Vec<(Cow<'a, str>, Element<'a>)>),
}

impl<'a> JsonValue<'a> {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            JsonValue::String(s) => Some(s),
            _ => None,
        }
    }
    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            JsonValue::Bool(b) => Some(*b),
            _ => None,
        }
    }
    /// The number, if this is one.
    pub fn as_number(&self) -> Option<JsonNumber<'a>> {
        match self {
            JsonValue::Number(n) => Some(*n),
            _ => None,
        }
    }
}

/// A JSON value with the byte offset where it starts in the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Element<'a> {
    /// Byte offset of the value's first character.
    pub offset: usize,
    /// The value.
    pub value: JsonValue<'a>,
}

/// Parses one JSON document with the default [`Limits`].
pub fn parse(payload: &[u8]) -> Result<Element<'_>, JsonError> {
    parse_with_limits(payload, Limits::default())
}

/// Parses one JSON document (any value at top level, surrounded by optional whitespace).
pub fn parse_with_limits(payload: &[u8], limits: Limits) -> Result<Element<'_>, JsonError> {
    let src = core::str::from_utf8(payload).map_err(|e| JsonError {
        offset: e.valid_up_to(),
        kind: JsonErrorKind::InvalidUtf8,
    })?;
    let mut p = Parser {
        src,
        bytes: payload,
        pos: 0,
        depth: 0,
        elements: 0,
        limits,
    };
    p.skip_ws();
    let v = p.value()?;
    p.skip_ws();
    if p.pos < p.bytes.len() {
        return Err(p.err(JsonErrorKind::TrailingData));
    }
    Ok(v)
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
    elements: usize,
    limits: Limits,
}

impl<'a> Parser<'a> {
    fn err(&self, kind: JsonErrorKind) -> JsonError {
        JsonError {
            offset: self.pos,
            kind,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Error for a missing byte: truncated at the end, unexpected elsewhere.
    fn unexpected(&self, expected: &'static str) -> JsonError {
        if self.pos >= self.bytes.len() {
            self.err(JsonErrorKind::UnexpectedEnd)
        } else {
            self.err(JsonErrorKind::Unexpected(expected))
        }
    }

    fn value(&mut self) -> Result<Element<'a>, JsonError> {
        let offset = self.pos;
        self.elements += 1;
        if self.elements > self.limits.max_elements {
            return Err(self.err(JsonErrorKind::TooManyElements));
        }
        let value = match self.peek() {
            None => return Err(self.err(JsonErrorKind::UnexpectedEnd)),
            Some(b'{') => self.object()?,
            Some(b'[') => self.array()?,
            Some(b'"') => JsonValue::String(self.string()?),
            Some(b't') => self.literal("true", JsonValue::Bool(true))?,
            Some(b'f') => self.literal("false", JsonValue::Bool(false))?,
            Some(b'n') => self.literal("null", JsonValue::Null)?,
            Some(b'-' | b'0'..=b'9') => JsonValue::Number(self.number()?),
            Some(_) => return Err(self.err(JsonErrorKind::Unexpected("a JSON value"))),
        };
        Ok(Element { offset, value })
    }

    fn literal(
        &mut self,
        word: &'static str,
        v: JsonValue<'a>,
    ) -> Result<JsonValue<'a>, JsonError> {
        let rest = self.bytes.get(self.pos..).unwrap_or(&[]);
        if rest.starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(v)
        } else if word.as_bytes().starts_with(rest) {
            Err(JsonError {
                offset: self.bytes.len(),
                kind: JsonErrorKind::UnexpectedEnd,
            })
        } else {
            Err(self.err(JsonErrorKind::Unexpected("true, false or null")))
        }
    }

    fn enter(&mut self) -> Result<(), JsonError> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return Err(self.err(JsonErrorKind::TooDeep));
        }
        Ok(())
    }

    fn array(&mut self) -> Result<JsonValue<'a>, JsonError> {
        self.enter()?;
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(JsonValue::Array(items));
        }
        loop {
            self.skip_ws();
            if self.peek() == Some(b']') {
                return Err(self.err(JsonErrorKind::Unexpected(
                    "a JSON value (no trailing comma before ']')",
                )));
            }
            items.push(self.value()?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.unexpected("',' or ']'")),
            }
        }
        self.depth -= 1;
        Ok(JsonValue::Array(items))
    }

    fn object(&mut self) -> Result<JsonValue<'a>, JsonError> {
        self.enter()?;
        self.pos += 1; // '{'
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(JsonValue::Object(members));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.unexpected("a string key (no trailing comma before '}')"));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.unexpected("':' after an object key"));
            }
            self.pos += 1;
            self.skip_ws();
            let v = self.value()?;
            members.push((key, v));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.unexpected("',' or '}'")),
            }
        }
        self.depth -= 1;
        Ok(JsonValue::Object(members))
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    /// Consumes one or more digits, or fails as an invalid (or truncated) number.
    fn require_digits(&mut self) -> Result<(), JsonError> {
        if self.digits() == 0 {
            if self.pos >= self.bytes.len() {
                return Err(self.err(JsonErrorKind::UnexpectedEnd));
            }
            return Err(self.err(JsonErrorKind::InvalidNumber));
        }
        Ok(())
    }

    fn number(&mut self) -> Result<JsonNumber<'a>, JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    // Leading zeros are not JSON (and would read as octal elsewhere).
                    return Err(self.err(JsonErrorKind::InvalidNumber));
                }
            }
            _ => self.require_digits()?,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.require_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.require_digits()?;
        }
        let text = self.src.get(start..self.pos).ok_or(JsonError {
            offset: start,
            kind: JsonErrorKind::InvalidNumber,
        })?;
        Ok(JsonNumber(text))
    }

    fn hex4(&mut self) -> Result<u16, JsonError> {
        let mut v: u16 = 0;
        for _ in 0..4 {
            let d = match self.peek() {
                None => return Err(self.err(JsonErrorKind::UnexpectedEnd)),
                Some(b) => match b {
                    b'0'..=b'9' => b - b'0',
                    b'a'..=b'f' => b - b'a' + 10,
                    b'A'..=b'F' => b - b'A' + 10,
                    _ => return Err(self.err(JsonErrorKind::InvalidEscape)),
                },
            };
            v = (v << 4) | u16::from(d);
            self.pos += 1;
        }
        Ok(v)
    }

    fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        self.pos += 1; // opening quote
        let start = self.pos;
        // Fast path: no escapes, borrow from the payload.
        loop {
            match self.peek() {
                None => return Err(self.err(JsonErrorKind::UnexpectedEnd)),
                Some(b'"') => {
                    let s = self.src.get(start..self.pos).ok_or(JsonError {
                        offset: start,
                        kind: JsonErrorKind::InvalidUtf8,
                    })?;
                    self.pos += 1;
                    return Ok(Cow::Borrowed(s));
                }
                Some(b'\\') => break,
                Some(b) if b < 0x20 => return Err(self.err(JsonErrorKind::ControlCharacter)),
                Some(_) => self.pos += 1,
            }
        }
        let mut out = String::from(self.src.get(start..self.pos).unwrap_or(""));
        loop {
            let run_start = self.pos;
            loop {
                match self.peek() {
                    None => return Err(self.err(JsonErrorKind::UnexpectedEnd)),
                    Some(b'"' | b'\\') => break,
                    Some(b) if b < 0x20 => return Err(self.err(JsonErrorKind::ControlCharacter)),
                    Some(_) => self.pos += 1,
                }
            }
            out.push_str(self.src.get(run_start..self.pos).unwrap_or(""));
            if self.peek() == Some(b'"') {
                self.pos += 1;
                return Ok(Cow::Owned(out));
            }
            // Backslash.
            let esc_at = self.pos;
            self.pos += 1;
            let c = match self.peek() {
                None => return Err(self.err(JsonErrorKind::UnexpectedEnd)),
                Some(b'"') => '"',
                Some(b'\\') => '\\',
                Some(b'/') => '/',
                Some(b'b') => '\u{8}',
                Some(b'f') => '\u{c}',
                Some(b'n') => '\n',
                Some(b'r') => '\r',
                Some(b't') => '\t',
                Some(b'u') => {
                    self.pos += 1;
                    let hi = self.hex4()?;
                    let c = self.unicode_escape(hi, esc_at)?;
                    out.push(c);
                    continue;
                }
                Some(_) => return Err(self.err(JsonErrorKind::InvalidEscape)),
            };
            self.pos += 1;
            out.push(c);
        }
    }

    /// Completes a `\uXXXX` escape whose first unit is `hi`, reading the low
    /// surrogate escape if `hi` is a high surrogate.
    fn unicode_escape(&mut self, hi: u16, esc_at: usize) -> Result<char, JsonError> {
        let lone = JsonError {
            offset: esc_at,
            kind: JsonErrorKind::LoneSurrogate,
        };
        match hi {
            0xD800..=0xDBFF => {
                let rest = self.bytes.get(self.pos..).unwrap_or(&[]);
                if rest.len() < 2 && b"\\u".starts_with(rest) {
                    return Err(JsonError {
                        offset: self.bytes.len(),
                        kind: JsonErrorKind::UnexpectedEnd,
                    });
                }
                if !rest.starts_with(b"\\u") {
                    return Err(lone);
                }
                self.pos += 2;
                let lo = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return Err(lone);
                }
                let cp = 0x10000 + ((u32::from(hi) - 0xD800) << 10) + (u32::from(lo) - 0xDC00);
                char::from_u32(cp).ok_or(lone)
            }
            0xDC00..=0xDFFF => Err(lone),
            _ => char::from_u32(u32::from(hi)).ok_or(lone),
        }
    }
}

/// Lets `write!` append to a byte buffer.
struct ByteSink<'o>(&'o mut Vec<u8>);

impl fmt::Write for ByteSink<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A compact, deterministic JSON writer appending to a byte buffer.
///
/// Commas and colons are placed automatically; the caller opens and closes
/// containers and writes keys and values in the order it wants them.
///
/// ```
/// use lwm2m_core::format::json::JsonWriter;
/// let mut out = Vec::new();
/// let mut w = JsonWriter::new(&mut out);
/// w.begin_array();
/// w.begin_object();
/// w.key("n");
/// w.string("0");
/// w.key("v");
/// w.f64(22.5).unwrap();
/// w.end_object();
/// w.i64(-3);
/// w.end_array();
/// assert_eq!(out, br#"[{"n":"0","v":22.5},-3]"#);
/// ```
pub struct JsonWriter<'o> {
    out: &'o mut Vec<u8>,
    /// One entry per open container: true until its first member is written.
    first: Vec<bool>,
    after_key: bool,
}

impl<'o> JsonWriter<'o> {
    /// A writer appending to `out`.
    pub fn new(out: &'o mut Vec<u8>) -> Self {
        JsonWriter {
            out,
            first: Vec::new(),
            after_key: false,
        }
    }

    fn separator(&mut self) {
        if self.after_key {
            self.after_key = false;
            return;
        }
        if let Some(first) = self.first.last_mut() {
            if *first {
                *first = false;
            } else {
                self.out.push(b',');
            }
        }
    }

    /// Opens an array.
    pub fn begin_array(&mut self) {
        self.separator();
        self.out.push(b'[');
        self.first.push(true);
    }

    /// Closes the innermost array.
    pub fn end_array(&mut self) {
        self.first.pop();
        self.out.push(b']');
    }

    /// Opens an object.
    pub fn begin_object(&mut self) {
        self.separator();
        self.out.push(b'{');
        self.first.push(true);
    }

    /// Closes the innermost object.
    pub fn end_object(&mut self) {
        self.first.pop();
        self.out.push(b'}');
    }

    /// Writes an object key; the next value written belongs to it.
    pub fn key(&mut self, k: &str) {
        self.separator();
        write_escaped(self.out, k);
        self.out.push(b':');
        self.after_key = true;
    }

    /// Writes a string value.
    pub fn string(&mut self, s: &str) {
        self.separator();
        write_escaped(self.out, s);
    }

    /// Writes a boolean.
    pub fn bool(&mut self, b: bool) {
        self.separator();
        self.out
            .extend_from_slice(if b { b"true" } else { b"false" });
    }

    /// Writes a signed integer (plain digits).
    pub fn i64(&mut self, v: i64) {
        self.separator();
        let _ = fmt::Write::write_fmt(&mut ByteSink(self.out), format_args!("{v}"));
    }

    /// Writes an unsigned integer (plain digits).
    pub fn u64(&mut self, v: u64) {
        self.separator();
        let _ = fmt::Write::write_fmt(&mut ByteSink(self.out), format_args!("{v}"));
    }

    /// Writes a float in the shortest form that reads back to the same value,
    /// always with a fraction or an exponent (`23.0`, `0.1`, `1e21`) so that a
    /// reader without a model still sees a float. NaN and infinities have no
    /// JSON form.
    pub fn f64(&mut self, v: f64) -> Result<(), FormatError> {
        if !v.is_finite() {
            return Err(FormatError::NotRepresentable(
                "NaN or infinite float (JSON numbers are finite)",
            ));
        }
        self.separator();
        write_f64(self.out, v, true);
        Ok(())
    }

    /// Writes a number where integral values need no fraction (timestamps):
    /// `25462634`, `-5`, `1.5`.
    pub fn number(&mut self, v: f64) -> Result<(), FormatError> {
        if !v.is_finite() {
            return Err(FormatError::NotRepresentable(
                "NaN or infinite time (JSON numbers are finite)",
            ));
        }
        self.separator();
        write_f64(self.out, v, false);
        Ok(())
    }
}

fn write_escaped(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let mut run = 0;
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let esc: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            0..=0x1f => Some(b""),
            _ => None,
        };
        if let Some(esc) = esc {
            out.extend_from_slice(bytes.get(run..i).unwrap_or(&[]));
            if esc.is_empty() {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            } else {
                out.extend_from_slice(esc);
            }
            run = i + 1;
        }
    }
    out.extend_from_slice(bytes.get(run..).unwrap_or(&[]));
    out.push(b'"');
}

/// Formats a finite `f64` with the shortest round-trip digits, positional
/// from 1e-6 up to below 1e21 (like ECMAScript's `Number.prototype.toString`),
/// exponential outside. `force_fraction` appends `.0` to integral positional
/// output.
fn write_f64(out: &mut Vec<u8>, v: f64, force_fraction: bool) {
    // `{:e}` gives the shortest round-trip digits: "-1.2345e-7", "2.3e1", "0e0".
    let mut sci = String::new();
    let _ = fmt::Write::write_fmt(&mut sci, format_args!("{v:e}"));
    let (neg, body) = match sci.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, sci.as_str()),
    };
    let (mant, exp) = body.split_once('e').unwrap_or((body, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let n = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    if neg {
        out.push(b'-');
    }
    let k = exp + 1; // digits before the decimal point
    if (-5..=21).contains(&k) {
        if k <= 0 {
            out.extend_from_slice(b"0.");
            for _ in 0..-k {
                out.push(b'0');
            }
            out.extend_from_slice(digits.as_bytes());
        } else if k < n {
            let (a, b) = digits.split_at(k as usize);
            out.extend_from_slice(a.as_bytes());
            out.push(b'.');
            out.extend_from_slice(b.as_bytes());
        } else {
            out.extend_from_slice(digits.as_bytes());
            for _ in 0..k - n {
                out.push(b'0');
            }
            if force_fraction {
                out.extend_from_slice(b".0");
            }
        }
    } else {
        let (first, rest) = digits.split_at(1.min(digits.len()));
        out.extend_from_slice(first.as_bytes());
        if !rest.is_empty() {
            out.push(b'.');
            out.extend_from_slice(rest.as_bytes());
        }
        let _ = fmt::Write::write_fmt(&mut ByteSink(out), format_args!("e{exp}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn err(s: &str) -> JsonError {
        parse(s.as_bytes()).unwrap_err()
    }

    fn num(s: &str) -> JsonNumber<'_> {
        parse(s.as_bytes()).unwrap().value.as_number().unwrap()
    }

    fn f64_text(v: f64) -> String {
        let mut out = Vec::new();
        JsonWriter::new(&mut out).f64(v).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn parses_nested_document_with_offsets() {
        let doc = parse(br#" [ {"a" : 1, "b":[true,false,null]}, "x" ] "#).unwrap();
        assert_eq!(doc.offset, 1);
        let JsonValue::Array(items) = doc.value else {
            panic!("not an array")
        };
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].offset, 3);
        let JsonValue::Object(members) = &items[0].value else {
            panic!("not an object")
        };
        assert_eq!(members[0].0, "a");
        assert_eq!(members[0].1.value.as_number().unwrap().as_i64(), Some(1));
        assert_eq!(
            members[1].1.value,
            JsonValue::Array(vec![
                Element {
                    offset: 18,
                    value: JsonValue::Bool(true)
                },
                Element {
                    offset: 23,
                    value: JsonValue::Bool(false)
                },
                Element {
                    offset: 29,
                    value: JsonValue::Null
                },
            ])
        );
        assert_eq!(items[1].value.as_str(), Some("x"));
    }

    #[test]
    fn strings_borrow_without_escapes_and_own_with_them() {
        let doc = parse(br#"["plain", "a\"b\\c\/d\n\u00e9\ud83d\ude00"]"#).unwrap();
        let JsonValue::Array(items) = doc.value else {
            panic!()
        };
        assert!(matches!(
            items[0].value,
            JsonValue::String(Cow::Borrowed("plain"))
        ));
        let JsonValue::String(Cow::Owned(s)) = &items[1].value else {
            panic!("escaped string should be owned")
        };
        assert_eq!(s, "a\"b\\c/d\né😀");
    }

    #[test]
    fn rejects_bad_grammar_with_offsets() {
        assert_eq!(
            err("[1,]"),
            JsonError {
                offset: 3,
                kind: JsonErrorKind::Unexpected("a JSON value (no trailing comma before ']')")
            }
        );
        assert_eq!(err(r#"{"a":1,}"#).offset, 7);
        assert_eq!(err("01").kind, JsonErrorKind::InvalidNumber);
        assert_eq!(err("[-01]").kind, JsonErrorKind::InvalidNumber);
        assert_eq!(err("1.").kind, JsonErrorKind::UnexpectedEnd);
        assert_eq!(err("[1.]").kind, JsonErrorKind::InvalidNumber);
        assert_eq!(err("[1e]").kind, JsonErrorKind::InvalidNumber);
        assert_eq!(err("[.5]").kind, JsonErrorKind::Unexpected("a JSON value"));
        assert_eq!(err("[+1]").kind, JsonErrorKind::Unexpected("a JSON value"));
        assert_eq!(err("NaN").kind, JsonErrorKind::Unexpected("a JSON value"));
        assert_eq!(err("[Infinity]").offset, 1);
        assert_eq!(
            err("[nul]").kind,
            JsonErrorKind::Unexpected("true, false or null")
        );
        assert_eq!(err("[tru").kind, JsonErrorKind::UnexpectedEnd);
        assert_eq!(err("1 2").kind, JsonErrorKind::TrailingData);
        assert_eq!(err("").kind, JsonErrorKind::UnexpectedEnd);
        assert_eq!(err("  ").kind, JsonErrorKind::UnexpectedEnd);
        assert_eq!(
            err("{\"a\" 1}").kind,
            JsonErrorKind::Unexpected("':' after an object key")
        );
        assert_eq!(
            err("{1:2}").kind,
            JsonErrorKind::Unexpected("a string key (no trailing comma before '}')")
        );
        assert_eq!(err("[1 2]").kind, JsonErrorKind::Unexpected("',' or ']'"));
        assert_eq!(err("\"a\u{1}\"").kind, JsonErrorKind::ControlCharacter);
        assert_eq!(err("\"a\\x\"").kind, JsonErrorKind::InvalidEscape);
        assert_eq!(err("\"\\u12g4\"").kind, JsonErrorKind::InvalidEscape);
        assert_eq!(
            err("[\u{a0}]").kind,
            JsonErrorKind::Unexpected("a JSON value")
        );
        assert_eq!(
            parse(b"[\"\xff\"]").unwrap_err(),
            JsonError {
                offset: 2,
                kind: JsonErrorKind::InvalidUtf8
            }
        );
    }

    #[test]
    fn regression_lone_surrogates() {
        let lone = |s: &str, offset| {
            assert_eq!(
                err(s),
                JsonError {
                    offset,
                    kind: JsonErrorKind::LoneSurrogate
                },
                "{s}"
            )
        };
        lone(r#"["\ud800"]"#, 2);
        lone(r#"["x\ud800x"]"#, 3);
        lone(r#"["\udc00"]"#, 2);
        lone(r#"["\ud800\u0041"]"#, 2);
        lone(r#"["\ud800\ud800"]"#, 2);
        assert_eq!(err(r#"["\ud800"#).kind, JsonErrorKind::UnexpectedEnd);
        assert_eq!(err(r#"["\ud800\"#).kind, JsonErrorKind::UnexpectedEnd);
        assert_eq!(err(r#"["\ud800\u12"#).kind, JsonErrorKind::UnexpectedEnd);
    }

    #[test]
    fn regression_unterminated_string() {
        assert_eq!(
            err(r#"["abc"#),
            JsonError {
                offset: 5,
                kind: JsonErrorKind::UnexpectedEnd
            }
        );
        assert_eq!(err(r#"["a\"#).kind, JsonErrorKind::UnexpectedEnd);
        assert_eq!(err(r#"["a\n"#).kind, JsonErrorKind::UnexpectedEnd);
    }

    #[test]
    fn regression_minus_alone_is_not_a_number() {
        assert_eq!(err("[-]").kind, JsonErrorKind::InvalidNumber);
        assert_eq!(err("[-x]").kind, JsonErrorKind::InvalidNumber);
        assert_eq!(err("-").kind, JsonErrorKind::UnexpectedEnd);
    }

    #[test]
    fn regression_nesting_100_deep() {
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(
            err(&deep),
            JsonError {
                offset: 16,
                kind: JsonErrorKind::TooDeep
            }
        );
        let ok = "[".repeat(16) + &"]".repeat(16);
        assert!(parse(ok.as_bytes()).is_ok());
        let objects = "{\"a\":".repeat(17) + "1" + &"}".repeat(17);
        assert_eq!(err(&objects).kind, JsonErrorKind::TooDeep);
        // Depth is released when a container closes: many shallow siblings are fine.
        let siblings = alloc::format!("[{}[]]", "[[[]]],".repeat(50));
        assert!(parse(siblings.as_bytes()).is_ok());
    }

    #[test]
    fn regression_element_limit() {
        let limits = Limits {
            max_depth: 16,
            max_elements: 10,
        };
        let nine = "[1,2,3,4,5,6,7,8,9]";
        assert!(parse_with_limits(nine.as_bytes(), limits).is_ok());
        let ten = "[1,2,3,4,5,6,7,8,9,10]";
        assert_eq!(
            parse_with_limits(ten.as_bytes(), limits).unwrap_err(),
            JsonError {
                offset: 19,
                kind: JsonErrorKind::TooManyElements
            }
        );
        // The default limit on a huge array.
        let huge = alloc::format!("[{}0]", "0,".repeat(MAX_ELEMENTS));
        assert_eq!(err(&huge).kind, JsonErrorKind::TooManyElements);
    }

    #[test]
    fn numbers_stay_exact() {
        assert_eq!(
            num("9007199254740993").as_i64(),
            Some(9_007_199_254_740_993)
        );
        assert_eq!(num("-9223372036854775808").as_i64(), Some(i64::MIN));
        assert_eq!(num("9223372036854775807").as_i64(), Some(i64::MAX));
        assert_eq!(num("9223372036854775808").as_i64(), None);
        assert_eq!(num("9223372036854775808").as_u64(), Some(1 << 63));
        assert_eq!(num("18446744073709551615").as_u64(), Some(u64::MAX));
        assert_eq!(num("18446744073709551616").as_u64(), None);
        assert_eq!(num("-1").as_u64(), None);
        assert_eq!(num("-0").as_u64(), Some(0));
        assert_eq!(num("1.3674912E9").as_i64(), Some(1_367_491_200));
        assert_eq!(num("1.5e1").as_i64(), Some(15));
        assert_eq!(num("1500e-2").as_i64(), Some(15));
        assert_eq!(num("1.0").as_i64(), Some(1));
        assert_eq!(num("0.000e99999").as_i64(), Some(0));
        assert_eq!(num("1.5").as_i64(), None);
        assert_eq!(num("1e-1").as_i64(), None);
        assert_eq!(num("1e19").as_i64(), None);
        assert_eq!(num("1e19").as_u64(), Some(10_000_000_000_000_000_000));
        assert_eq!(num("1e20").as_u64(), None);
        assert_eq!(num("1e99999999999999999999999").as_u64(), None);
        assert!(num("42").is_integer_literal());
        assert!(!num("42.0").is_integer_literal());
        assert!(!num("4e2").is_integer_literal());
    }

    #[test]
    fn regression_1e400_does_not_become_infinity() {
        assert_eq!(num("1e400").as_f64(), None);
        assert_eq!(num("-1e400").as_f64(), None);
        assert_eq!(num("1e-400").as_f64(), Some(0.0));
        assert_eq!(num("1e400").as_i64(), None);
        assert_eq!(num("22.4").as_f64(), Some(22.4));
    }

    #[test]
    fn float_output_is_shortest_round_trip_with_fraction() {
        assert_eq!(f64_text(23.0), "23.0");
        assert_eq!(f64_text(-23.0), "-23.0");
        assert_eq!(f64_text(0.0), "0.0");
        assert_eq!(f64_text(-0.0), "-0.0");
        assert_eq!(f64_text(22.4), "22.4");
        assert_eq!(f64_text(0.1), "0.1");
        assert_eq!(f64_text(1e-7), "1e-7");
        assert_eq!(f64_text(1.5e-6), "0.0000015");
        assert_eq!(f64_text(1e21), "1e21");
        assert_eq!(f64_text(1e20), "100000000000000000000.0");
        assert_eq!(f64_text(1.7976931348623157e308), "1.7976931348623157e308");
        assert_eq!(f64_text(5e-324), "5e-324");
        assert_eq!(f64_text(1367491215.0), "1367491215.0");
        let mut out = Vec::new();
        let mut w = JsonWriter::new(&mut out);
        w.begin_array();
        w.number(-5.0).unwrap();
        w.number(25462634.0).unwrap();
        w.number(1.25).unwrap();
        w.end_array();
        assert_eq!(out, b"[-5,25462634,1.25]");
        assert!(JsonWriter::new(&mut Vec::new()).f64(f64::NAN).is_err());
        assert!(JsonWriter::new(&mut Vec::new()).f64(f64::INFINITY).is_err());
        for v in [
            0.1,
            1.0 / 3.0,
            123456.789e10,
            2.2250738585072014e-308,
            -9.99e-8,
        ] {
            let t = f64_text(v);
            assert_eq!(num(&t).as_f64(), Some(v), "{t}");
        }
    }

    #[test]
    fn writer_escapes_strings() {
        let mut out = Vec::new();
        let mut w = JsonWriter::new(&mut out);
        w.begin_object();
        w.key("k\"");
        w.string("a\\b\n\u{1}\u{1f}é/");
        w.key("e");
        w.begin_array();
        w.end_array();
        w.key("o");
        w.begin_object();
        w.end_object();
        w.key("b");
        w.bool(false);
        w.key("u");
        w.u64(u64::MAX);
        w.end_object();
        assert_eq!(
            core::str::from_utf8(&out).unwrap(),
            r#"{"k\"":"a\\b\n\u0001\u001fé/","e":[],"o":{},"b":false,"u":18446744073709551615}"#
        );
        let back = parse(&out).unwrap();
        let JsonValue::Object(m) = back.value else {
            panic!()
        };
        assert_eq!(m[0].1.value.as_str(), Some("a\\b\n\u{1}\u{1f}é/"));
    }
}
