//! LwM2M content formats.
//!
//! One module per format, each with `decode` / `encode` functions. Decoders
//! take a [`ModelLookup`](crate::model::ModelLookup) to type values; where the
//! model is unknown they keep raw values (opaque bytes) rather than failing.
//! Encodings are deterministic: the same node always gives the same bytes.

pub mod base64;
pub mod cbor;
pub mod json;
pub mod link;
pub mod lwm2m_cbor;
pub mod lwm2m_json;
pub mod opaque;
pub mod senml_cbor;
pub mod senml_json;
mod single_value;
#[cfg(test)]
mod test_models;
pub mod text;
pub mod tlv;

use alloc::vec::Vec;
use core::fmt;

use crate::model::{ModelLookup, Node, Path, TimestampedValue};

/// A CoAP Content-Format number. An open set: unknown numbers are kept as they are.
///
/// ```
/// use lwm2m_core::format::ContentFormat;
/// assert_eq!(ContentFormat::SENML_CBOR.0, 112);
/// assert_eq!(ContentFormat::from(11542u16), ContentFormat::TLV);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentFormat(pub u16);

impl ContentFormat {
    /// `text/plain;charset=utf-8`
    pub const TEXT: ContentFormat = ContentFormat(0);
    /// `application/link-format`
    pub const LINK_FORMAT: ContentFormat = ContentFormat(40);
    /// `application/octet-stream`
    pub const OPAQUE: ContentFormat = ContentFormat(42);
    /// `application/cbor`
    pub const CBOR: ContentFormat = ContentFormat(60);
    /// `application/senml+json`
    pub const SENML_JSON: ContentFormat = ContentFormat(110);
    /// `application/senml+cbor`
    pub const SENML_CBOR: ContentFormat = ContentFormat(112);
    /// `application/vnd.oma.lwm2m+tlv`
    pub const TLV: ContentFormat = ContentFormat(11542);
    /// `application/vnd.oma.lwm2m+json`
    pub const LWM2M_JSON: ContentFormat = ContentFormat(11543);
    /// `application/vnd.oma.lwm2m+cbor`
    pub const LWM2M_CBOR: ContentFormat = ContentFormat(11544);
    /// Pre-IANA TLV number still sent by LwM2M 1.0 devices.
    pub const LEGACY_TLV: ContentFormat = ContentFormat(1542);
    /// Pre-IANA LwM2M JSON number.
    pub const LEGACY_JSON: ContentFormat = ContentFormat(1543);

    /// The media type name, if the number is one LwM2M uses.
    pub fn media_type(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "text/plain",
            40 => "application/link-format",
            42 => "application/octet-stream",
            60 => "application/cbor",
            110 => "application/senml+json",
            112 => "application/senml+cbor",
            11542 | 1542 => "application/vnd.oma.lwm2m+tlv",
            11543 | 1543 => "application/vnd.oma.lwm2m+json",
            11544 => "application/vnd.oma.lwm2m+cbor",
            _ => return None,
        })
    }
}

impl From<u16> for ContentFormat {
    fn from(v: u16) -> Self {
        ContentFormat(v)
    }
}

impl fmt::Display for ContentFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.media_type() {
            Some(m) => write!(f, "{} ({m})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

/// Why a payload could not be decoded or a node encoded.
///
/// [`FormatError::coap_code`] says which CoAP response a server should send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    /// The content format is not supported for this operation (answer 4.15).
    UnsupportedFormat(ContentFormat),
    /// The payload ended before a complete element (offset where more was expected).
    Truncated {
        /// Byte offset in the payload.
        offset: usize,
    },
    /// Bytes that do not follow the format's grammar.
    Syntax {
        /// Byte offset in the payload.
        offset: usize,
        /// What was expected there.
        expected: &'static str,
    },
    /// A length field that is impossible (larger than the payload, zero where forbidden...).
    InvalidLength {
        /// Byte offset of the element.
        offset: usize,
    },
    /// Nesting deeper than the decoder allows.
    TooDeep,
    /// A value that cannot have the resource's type (e.g. 3-byte TLV integer).
    InvalidValue {
        /// The path of the offending value, as text, if known.
        what: &'static str,
    },
    /// A path or id in the payload that is invalid or outside the request path.
    InvalidPath,
    /// Text that is not UTF-8.
    InvalidUtf8,
    /// The node cannot be expressed in this format at this path (e.g. an object in text/plain).
    NotRepresentable(&'static str),
}

impl FormatError {
    /// The CoAP response code class.detail a server should answer with:
    /// 4.15 for an unsupported format, 4.00 for everything else.
    pub fn coap_code(&self) -> (u8, u8) {
        match self {
            FormatError::UnsupportedFormat(_) => (4, 15),
            _ => (4, 0),
        }
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::UnsupportedFormat(cf) => {
                write!(f, "content format {cf} is not supported here")
            }
            FormatError::Truncated { offset } => {
                write!(f, "payload truncated at byte {offset}: expected more data")
            }
            FormatError::Syntax { offset, expected } => {
                write!(f, "syntax error at byte {offset}: expected {expected}")
            }
            FormatError::InvalidLength { offset } => write!(
                f,
                "invalid length at byte {offset}: it runs past the payload or is not allowed"
            ),
            FormatError::TooDeep => f.write_str("payload nesting is deeper than allowed"),
            FormatError::InvalidValue { what } => write!(f, "invalid value: {what}"),
            FormatError::InvalidPath => {
                f.write_str("payload contains an invalid path or one outside the request path")
            }
            FormatError::InvalidUtf8 => f.write_str("text is not valid UTF-8"),
            FormatError::NotRepresentable(why) => {
                write!(f, "node cannot be encoded in this format: {why}")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for FormatError {}

/// Decodes `payload` in content format `cf`, for request path `path`.
///
/// ```
/// use lwm2m_core::format::{decode, ContentFormat};
/// use lwm2m_core::model::{Node, Path, Value, NO_MODELS};
/// let node = decode(ContentFormat::TEXT, b"42", &Path::Resource(3, 0, 9), &NO_MODELS).unwrap();
/// assert!(matches!(node, Node::Resource(r) if r.id == 9));
/// assert!(decode(ContentFormat(9999), b"", &Path::Object(3), &NO_MODELS).is_err());
/// ```
pub fn decode(
    cf: ContentFormat,
    payload: &[u8],
    path: &Path,
    models: &dyn ModelLookup,
) -> Result<Node, FormatError> {
    match cf {
        ContentFormat::TEXT => text::decode(payload, path, models),
        ContentFormat::OPAQUE => opaque::decode(payload, path, models),
        ContentFormat::TLV | ContentFormat::LEGACY_TLV => tlv::decode(payload, path, models),
        ContentFormat::LWM2M_JSON | ContentFormat::LEGACY_JSON => {
            lwm2m_json::decode(payload, path, models)
        }
        ContentFormat::SENML_JSON => senml_json::decode(payload, path, models),
        ContentFormat::CBOR => cbor::decode(payload, path, models),
        ContentFormat::SENML_CBOR => senml_cbor::decode(payload, path, models),
        ContentFormat::LWM2M_CBOR => lwm2m_cbor::decode(payload, path, models),
        _ => Err(FormatError::UnsupportedFormat(cf)),
    }
}

/// Encodes `node`, which sits at `path`, in content format `cf`, appending to `out`.
pub fn encode(
    cf: ContentFormat,
    node: &Node,
    path: &Path,
    out: &mut Vec<u8>,
) -> Result<(), FormatError> {
    match cf {
        ContentFormat::TEXT => text::encode(node, path, out),
        ContentFormat::OPAQUE => opaque::encode(node, path, out),
        ContentFormat::TLV | ContentFormat::LEGACY_TLV => tlv::encode(node, path, out),
        ContentFormat::LWM2M_JSON | ContentFormat::LEGACY_JSON => {
            lwm2m_json::encode(node, path, out)
        }
        ContentFormat::SENML_JSON => senml_json::encode(node, path, out),
        ContentFormat::CBOR => cbor::encode(node, path, out),
        ContentFormat::SENML_CBOR => senml_cbor::encode(node, path, out),
        ContentFormat::LWM2M_CBOR => lwm2m_cbor::encode(node, path, out),
        _ => Err(FormatError::UnsupportedFormat(cf)),
    }
}

/// Decodes timestamped path/value records (Send, composite operations,
/// notifications) in a format that carries paths.
pub fn decode_values(
    cf: ContentFormat,
    payload: &[u8],
    models: &dyn ModelLookup,
) -> Result<Vec<TimestampedValue>, FormatError> {
    match cf {
        ContentFormat::SENML_JSON => senml_json::decode_values(payload, models),
        ContentFormat::SENML_CBOR => senml_cbor::decode_values(payload, models),
        ContentFormat::LWM2M_CBOR => lwm2m_cbor::decode_values(payload, models),
        ContentFormat::LWM2M_JSON | ContentFormat::LEGACY_JSON => {
            lwm2m_json::decode_values(payload, models)
        }
        _ => Err(FormatError::UnsupportedFormat(cf)),
    }
}

/// Encodes timestamped path/value records in a format that carries paths.
pub fn encode_values(
    cf: ContentFormat,
    values: &[TimestampedValue],
    out: &mut Vec<u8>,
) -> Result<(), FormatError> {
    match cf {
        ContentFormat::SENML_JSON => senml_json::encode_values(values, out),
        ContentFormat::SENML_CBOR => senml_cbor::encode_values(values, out),
        ContentFormat::LWM2M_CBOR => lwm2m_cbor::encode_values(values, out),
        ContentFormat::LWM2M_JSON | ContentFormat::LEGACY_JSON => {
            lwm2m_json::encode_values(values, out)
        }
        _ => Err(FormatError::UnsupportedFormat(cf)),
    }
}

/// Decodes the path list of a Read-Composite or Observe-Composite request.
pub fn decode_paths(cf: ContentFormat, payload: &[u8]) -> Result<Vec<Path>, FormatError> {
    match cf {
        ContentFormat::SENML_JSON => senml_json::decode_paths(payload),
        ContentFormat::SENML_CBOR => senml_cbor::decode_paths(payload),
        ContentFormat::LWM2M_CBOR => lwm2m_cbor::decode_paths(payload),
        _ => Err(FormatError::UnsupportedFormat(cf)),
    }
}

/// Encodes the path list of a Read-Composite or Observe-Composite request.
pub fn encode_paths(
    cf: ContentFormat,
    paths: &[Path],
    out: &mut Vec<u8>,
) -> Result<(), FormatError> {
    match cf {
        ContentFormat::SENML_JSON => senml_json::encode_paths(paths, out),
        ContentFormat::SENML_CBOR => senml_cbor::encode_paths(paths, out),
        ContentFormat::LWM2M_CBOR => lwm2m_cbor::encode_paths(paths, out),
        _ => Err(FormatError::UnsupportedFormat(cf)),
    }
}
