//! LwM2M content formats.
//!
//! One module per format, each with `decode` / `encode` functions. Decoders
//! take a [`ModelLookup`](crate::model::ModelLookup) to type values; where the
//! model is unknown they keep raw values (opaque bytes) rather than failing.
//! Encodings are deterministic: the same node always gives the same bytes.

use core::fmt;

pub mod cbor;
pub mod lwm2m_cbor;
pub mod senml_cbor;

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
