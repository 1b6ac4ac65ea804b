//! Option numbers and their properties (RFC 7252 §5.10, RFC 7641, RFC 7959, RFC 8132).

/// Value format of an option (RFC 7252 §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionFormat {
    /// Zero-length.
    Empty,
    /// Opaque bytes.
    Opaque,
    /// Unsigned integer, big-endian, no leading zero bytes.
    Uint,
    /// UTF-8 string.
    String,
}

/// Definition of a known option: format, allowed length range, repeatable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionDef {
    /// Option number.
    pub number: u16,
    /// Name as in the RFCs.
    pub name: &'static str,
    /// Value format.
    pub format: OptionFormat,
    /// Smallest allowed value length.
    pub min_len: u16,
    /// Largest allowed value length.
    pub max_len: u16,
    /// May occur more than once.
    pub repeatable: bool,
}

/// Option numbers this stack knows.
pub mod number {
    /// If-Match (1)
    pub const IF_MATCH: u16 = 1;
    /// Uri-Host (3)
    pub const URI_HOST: u16 = 3;
    /// ETag (4)
    pub const ETAG: u16 = 4;
    /// If-None-Match (5)
    pub const IF_NONE_MATCH: u16 = 5;
    /// Observe (6, RFC 7641)
    pub const OBSERVE: u16 = 6;
    /// Uri-Port (7)
    pub const URI_PORT: u16 = 7;
    /// Location-Path (8)
    pub const LOCATION_PATH: u16 = 8;
    /// Uri-Path (11)
    pub const URI_PATH: u16 = 11;
    /// Content-Format (12)
    pub const CONTENT_FORMAT: u16 = 12;
    /// Max-Age (14)
    pub const MAX_AGE: u16 = 14;
    /// Uri-Query (15)
    pub const URI_QUERY: u16 = 15;
    /// Accept (17)
    pub const ACCEPT: u16 = 17;
    /// Location-Query (20)
    pub const LOCATION_QUERY: u16 = 20;
    /// Block2 (23, RFC 7959)
    pub const BLOCK2: u16 = 23;
    /// Block1 (27, RFC 7959)
    pub const BLOCK1: u16 = 27;
    /// Size2 (28, RFC 7959)
    pub const SIZE2: u16 = 28;
    /// Proxy-Uri (35)
    pub const PROXY_URI: u16 = 35;
    /// Proxy-Scheme (39)
    pub const PROXY_SCHEME: u16 = 39;
    /// Size1 (60)
    pub const SIZE1: u16 = 60;
    /// No-Response (258, RFC 7967)
    pub const NO_RESPONSE: u16 = 258;
}

use number::*;
use OptionFormat::*;

const fn def(
    number: u16,
    name: &'static str,
    format: OptionFormat,
    min_len: u16,
    max_len: u16,
    repeatable: bool,
) -> OptionDef {
    OptionDef {
        number,
        name,
        format,
        min_len,
        max_len,
        repeatable,
    }
}

/// Known options, sorted by number.
pub const KNOWN_OPTIONS: &[OptionDef] = &[
    def(IF_MATCH, "If-Match", Opaque, 0, 8, true),
    def(URI_HOST, "Uri-Host", String, 1, 255, false),
    def(ETAG, "ETag", Opaque, 1, 8, true),
    def(IF_NONE_MATCH, "If-None-Match", Empty, 0, 0, false),
    def(OBSERVE, "Observe", Uint, 0, 3, false),
    def(URI_PORT, "Uri-Port", Uint, 0, 2, false),
    def(LOCATION_PATH, "Location-Path", String, 0, 255, true),
    def(URI_PATH, "Uri-Path", String, 0, 255, true),
    def(CONTENT_FORMAT, "Content-Format", Uint, 0, 2, false),
    def(MAX_AGE, "Max-Age", Uint, 0, 4, false),
    def(URI_QUERY, "Uri-Query", String, 0, 255, true),
    def(ACCEPT, "Accept", Uint, 0, 2, false),
    def(LOCATION_QUERY, "Location-Query", String, 0, 255, true),
    def(BLOCK2, "Block2", Uint, 0, 3, false),
    def(BLOCK1, "Block1", Uint, 0, 3, false),
    def(SIZE2, "Size2", Uint, 0, 4, false),
    def(PROXY_URI, "Proxy-Uri", String, 1, 1034, false),
    def(PROXY_SCHEME, "Proxy-Scheme", String, 1, 255, false),
    def(SIZE1, "Size1", Uint, 0, 4, false),
    def(NO_RESPONSE, "No-Response", Uint, 0, 1, false),
];

/// The definition of option `number`, if this stack knows it.
pub fn definition(number: u16) -> Option<&'static OptionDef> {
    KNOWN_OPTIONS
        .binary_search_by_key(&number, |d| d.number)
        .ok()
        .map(|i| &KNOWN_OPTIONS[i])
}

/// Critical options (odd numbers) must be understood by the receiver (RFC 7252 §5.4.1).
pub const fn is_critical(number: u16) -> bool {
    number & 1 == 1
}

/// Unsafe-to-forward options (bit 1 set, RFC 7252 §5.4.2).
pub const fn is_unsafe(number: u16) -> bool {
    number & 2 == 2
}

/// Options that are not part of the cache key (RFC 7252 §5.4.2: NoCacheKey bits 111).
pub const fn is_no_cache_key(number: u16) -> bool {
    number & 0x1e == 0x1c
}

/// Encodes `value` as a minimal-length CoAP uint (RFC 7252 §3.2) into a small buffer.
/// Returns the buffer and the number of significant trailing bytes used.
///
/// ```
/// use lwm2m_core::coap::option::encode_uint;
/// let (buf, len) = encode_uint(0x0102);
/// assert_eq!(&buf[4 - len..], &[1, 2]);
/// assert_eq!(encode_uint(0).1, 0);
/// ```
pub fn encode_uint(value: u32) -> ([u8; 4], usize) {
    let bytes = value.to_be_bytes();
    let len = 4 - (value.leading_zeros() / 8) as usize;
    (bytes, len)
}

/// Decodes a CoAP uint of up to 4 bytes. Leading zero bytes are tolerated on
/// input (RFC 7252 says senders should not send them, receivers accept them).
pub fn decode_uint(bytes: &[u8]) -> Option<u32> {
    if bytes.len() > 4 {
        return None;
    }
    Some(bytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_options_sorted_and_found() {
        assert!(KNOWN_OPTIONS.windows(2).all(|w| w[0].number < w[1].number));
        assert_eq!(definition(URI_PATH).unwrap().name, "Uri-Path");
        assert!(definition(2).is_none());
    }

    #[test]
    fn option_classes() {
        assert!(is_critical(URI_PATH) && is_critical(BLOCK1) && is_critical(ACCEPT));
        assert!(!is_critical(CONTENT_FORMAT) && !is_critical(OBSERVE));
        assert!(is_no_cache_key(SIZE1) && is_no_cache_key(SIZE2) && !is_no_cache_key(URI_PATH));
        assert!(is_unsafe(URI_HOST) && !is_unsafe(ETAG));
    }

    #[test]
    fn uint_round_trip() {
        for v in [
            0u32,
            1,
            255,
            256,
            65535,
            65536,
            0xff_ffff,
            0x100_0000,
            u32::MAX,
        ] {
            let (b, n) = encode_uint(v);
            assert_eq!(decode_uint(&b[4 - n..]), Some(v));
        }
        assert_eq!(decode_uint(&[0, 0, 1]), Some(1));
        assert_eq!(decode_uint(&[1, 2, 3, 4, 5]), None);
    }
}
