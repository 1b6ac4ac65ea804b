//! Base64 (RFC 4648) for opaque values in text formats: text/plain and
//! legacy LwM2M JSON use the standard alphabet with padding, SenML `vd` uses
//! base64url without padding. One codec, two decoding policies: strict for
//! text/plain (one accepted spelling per byte string), lenient as to
//! alphabet and padding for JSON, where peers disagree.

use alloc::string::String;
use alloc::vec::Vec;

use super::FormatError;

/// The two base64 alphabets of RFC 4648.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alphabet {
    /// `+` and `/` (RFC 4648 §4), used by legacy LwM2M JSON and text.
    Standard,
    /// `-` and `_` (RFC 4648 §5), used by SenML `vd`.
    UrlSafe,
}

/// Base64-encodes `data`, with `=` padding if `pad`.
///
/// ```
/// use lwm2m_core::format::base64::{encode, Alphabet};
/// assert_eq!(encode(&[1, 2, 3, 4, 5], Alphabet::Standard, true), "AQIDBAU=");
/// assert_eq!(encode(&[0xfb, 0xff], Alphabet::UrlSafe, false), "-_8");
/// ```
pub fn encode(data: &[u8], alphabet: Alphabet, pad: bool) -> String {
    let table: &[u8; 64] = match alphabet {
        Alphabet::Standard => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        Alphabet::UrlSafe => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
    };
    let sym = |i: u32| char::from(table[(i & 63) as usize]);
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b0 = u32::from(chunk.first().copied().unwrap_or(0));
        let b1 = u32::from(chunk.get(1).copied().unwrap_or(0));
        let b2 = u32::from(chunk.get(2).copied().unwrap_or(0));
        let n = (b0 << 16) | (b1 << 8) | b2;
        s.push(sym(n >> 18));
        s.push(sym(n >> 12));
        if chunk.len() > 1 {
            s.push(sym(n >> 6));
        } else if pad {
            s.push('=');
        }
        if chunk.len() > 2 {
            s.push(sym(n));
        } else if pad {
            s.push('=');
        }
    }
    s
}

/// Decodes base64 text leniently as to form and strictly as to content:
/// either alphabet (`+/` or `-_`) and padding optional, because LwM2M peers
/// disagree (the TS says base64, RFC 8428 says base64url without padding),
/// but no whitespace, no characters outside the alphabets, padding only at
/// the end and only as much as the length needs, and unused low bits of the
/// last symbol zero (so each byte string has one accepted unpadded spelling
/// per alphabet). `None` if the text is not valid base64.
///
/// ```
/// use lwm2m_core::format::base64::decode_lenient;
/// assert_eq!(decode_lenient("AQIDBAU=").unwrap(), [1, 2, 3, 4, 5]);
/// assert_eq!(decode_lenient("AQIDBAU").unwrap(), [1, 2, 3, 4, 5]);
/// assert_eq!(decode_lenient("-_8").unwrap(), [0xfb, 0xff]);
/// assert!(decode_lenient("AQIDBA=U").is_none());
/// assert!(decode_lenient("A").is_none());
/// ```
pub fn decode_lenient(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let unpadded = bytes.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    let pad = bytes.len() - unpadded;
    if pad > 0 && (!bytes.len().is_multiple_of(4) || pad > 2) {
        return None;
    }
    let body = bytes.get(..unpadded)?;
    if body.len() % 4 == 1 {
        return None;
    }
    // Padding must be exactly what the unpadded length implies.
    if pad > 0 && (4 - body.len() % 4) % 4 != pad {
        return None;
    }
    let val = |b: u8| -> Option<u32> {
        Some(u32::from(match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        }))
    };
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    for chunk in body.chunks(4) {
        let mut n: u32 = 0;
        for &b in chunk {
            n = (n << 6) | val(b)?;
        }
        match chunk.len() {
            4 => {
                out.push((n >> 16) as u8);
                out.push((n >> 8) as u8);
                out.push(n as u8);
            }
            3 => {
                if n & 0x3 != 0 {
                    return None;
                }
                out.push((n >> 10) as u8);
                out.push((n >> 2) as u8);
            }
            2 => {
                if n & 0xf != 0 {
                    return None;
                }
                out.push((n >> 4) as u8);
            }
            _ => return None,
        }
    }
    Some(out)
}

fn is_standard_symbol(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'+' || c == b'/'
}

/// Strict base64 (RFC 4648 §4): only the standard alphabet, a length that
/// is a multiple of 4, `=` only as one or two final padding characters, and
/// zero unused bits before the padding, so every byte string has exactly one
/// accepted text. No whitespace. Errors give the offending byte offset.
///
/// ```
/// use lwm2m_core::format::base64::decode_strict;
/// assert_eq!(decode_strict("Zm9vYg==").unwrap(), b"foob");
/// assert!(decode_strict("Zm9vYg=").is_err());
/// assert!(decode_strict("Zm9vYg").is_err());
/// ```
pub fn decode_strict(text: &str) -> Result<Vec<u8>, FormatError> {
    const ALPHABET: &str = "a base64 character (A-Z a-z 0-9 + /) or final '=' padding";
    let bytes = text.as_bytes();
    // Report a stray character (whitespace, URL-safe alphabet...) where it is,
    // before complaining about the length it causes.
    if let Some(bad) = bytes
        .iter()
        .position(|&c| c != b'=' && !is_standard_symbol(c))
    {
        return Err(FormatError::Syntax {
            offset: bad,
            expected: ALPHABET,
        });
    }
    if !bytes.len().is_multiple_of(4) {
        return Err(FormatError::Syntax {
            offset: bytes.len(),
            expected: "base64 text whose length is a multiple of 4 (with = padding)",
        });
    }
    let pad = bytes.iter().rev().take_while(|&&c| c == b'=').count();
    if let Some(first_eq) = bytes.iter().position(|&c| c == b'=') {
        if first_eq != bytes.len() - pad || pad > 2 {
            return Err(FormatError::Syntax {
                offset: first_eq,
                expected: "base64 padding: at most two '=' at the very end",
            });
        }
    }
    // The form is right; what the lenient decoder can still refuse is a last
    // symbol with non-zero unused bits.
    decode_lenient(text).ok_or_else(|| FormatError::Syntax {
        offset: (bytes.len() - pad).saturating_sub(1),
        expected: "a base64 character whose unused low bits are zero",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_rejects_garbage() {
        for len in 0..10 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 250) as u8).collect();
            for alpha in [Alphabet::Standard, Alphabet::UrlSafe] {
                for pad in [true, false] {
                    let text = encode(&data, alpha, pad);
                    assert_eq!(decode_lenient(&text).as_deref(), Some(&data[..]), "{text}");
                }
            }
        }
        for bad in [
            "A", "AB=", "A===", "AB=C", "QQ==QQ==", "QR==", "QUJ=", "a b=", "AQ\n", "@@@@", "AQ=",
        ] {
            assert!(decode_lenient(bad).is_none(), "{bad:?}");
        }
        assert_eq!(decode_lenient("").unwrap(), Vec::<u8>::new());
    }
}
