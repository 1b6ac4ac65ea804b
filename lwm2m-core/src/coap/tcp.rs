//! CoAP over TCP/TLS framing (RFC 8323 §3.2) and signalling messages (§5).
//!
//! A frame is `Len|TKL` (one byte), an extended length of 0, 1, 2 or 4 bytes,
//! the code, the token, options and payload. `Len` counts the bytes after the
//! token (options, marker and payload). There is no type and no message id:
//! TCP is reliable and ordered.

use alloc::vec::Vec;

use super::code::{Code, MessageType};
use super::message::{Message, ParseError};

/// Signalling option numbers (RFC 8323 §5.3–5.6). Their meaning depends on the signalling code.
pub mod signal_option {
    /// CSM: Max-Message-Size (uint).
    pub const MAX_MESSAGE_SIZE: u16 = 2;
    /// CSM: Block-Wise-Transfer (empty).
    pub const BLOCK_WISE_TRANSFER: u16 = 4;
    /// Ping/Pong: Custody (empty).
    pub const CUSTODY: u16 = 2;
    /// Release: Alternative-Address (string).
    pub const ALTERNATIVE_ADDRESS: u16 = 2;
    /// Release: Hold-Off (uint, seconds).
    pub const HOLD_OFF: u16 = 4;
    /// Abort: Bad-CSM-Option (uint).
    pub const BAD_CSM_OPTION: u16 = 2;
}

/// Default Max-Message-Size of RFC 8323 §5.3.1 when the peer sends no CSM.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1152;

/// Looks at the start of a byte stream and says how long the first frame is:
/// `Ok(None)` if more bytes are needed to know, `Ok(Some(n))` once the header
/// is complete (the frame itself may still be incomplete), and an error if it
/// announces more than `max_frame` bytes. Never allocates.
///
/// ```
/// use lwm2m_core::coap::tcp::frame_len;
/// // Len=0, TKL=0, code 7.02 (Ping): a 2-byte frame.
/// assert_eq!(frame_len(&[0x00, 0xE2], 1152), Ok(Some(2)));
/// assert_eq!(frame_len(&[0xD0], 1152), Ok(None)); // extended length byte missing
/// ```
pub fn frame_len(stream: &[u8], max_frame: usize) -> Result<Option<usize>, ParseError> {
    let Some(&first) = stream.first() else {
        return Ok(None);
    };
    let tkl = usize::from(first & 0x0F);
    if tkl > super::message::MAX_TOKEN_LEN {
        return Err(ParseError::InvalidTokenLength(tkl as u8));
    }
    let (ext_len, base): (usize, u64) = match first >> 4 {
        13 => (1, 13),
        14 => (2, 269),
        15 => (4, 65805),
        n => (0, u64::from(n)),
    };
    let Some(ext) = stream.get(1..1 + ext_len) else {
        return Ok(None);
    };
    let body = ext.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)) + base;
    let total = 1 + ext_len as u64 + 1 + tkl as u64 + body;
    if total > max_frame as u64 {
        return Err(ParseError::FrameTooLarge {
            size: total,
            max: max_frame,
        });
    }
    Ok(Some(total as usize))
}

/// Parses exactly one complete frame (as delimited by [`frame_len`]).
pub fn parse(frame: &[u8]) -> Result<Message<'_>, ParseError> {
    let len = frame_len(frame, usize::MAX)?.ok_or(ParseError::TooShort)?;
    if len != frame.len() {
        return Err(ParseError::FrameLength);
    }
    let ext_len = match frame[0] >> 4 {
        13 => 1,
        14 => 2,
        15 => 4,
        _ => 0,
    };
    let code = Code(frame[1 + ext_len]);
    if matches!(code.class(), 1 | 6) {
        return Err(ParseError::ReservedCodeClass(code.class()));
    }
    Message::parse_body(
        frame,
        2 + ext_len,
        frame[0] & 0x0F,
        MessageType::Non,
        0,
        code,
    )
}

/// Rewrites the first byte of the frame at `start` (which holds the token
/// length) and inserts the extended length, now that the body is written.
pub(crate) fn fill_length(buf: &mut Vec<u8>, start: usize) {
    let tkl = usize::from(buf[start] & 0x0F);
    let body = buf.len() - start - 2 - tkl;
    let (nibble, ext): (u8, Vec<u8>) = if body < 13 {
        (body as u8, Vec::new())
    } else if body < 269 {
        (13, [(body - 13) as u8].to_vec())
    } else if body < 65805 {
        (14, ((body - 269) as u16).to_be_bytes().to_vec())
    } else {
        (15, ((body - 65805) as u32).to_be_bytes().to_vec())
    };
    buf[start] = (nibble << 4) | tkl as u8;
    buf.splice(start + 1..start + 1, ext);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::coap::message::MessageWriter;
    use crate::coap::option::number;
    use alloc::vec;

    /// A frame written by [`MessageWriter::tcp`] (options in order).
    pub(crate) fn frame(
        code: Code,
        token: &[u8],
        options: &[(u16, &[u8])],
        payload: &[u8],
    ) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = MessageWriter::tcp(&mut buf, code, token).unwrap();
        for (n, v) in options {
            w.option(*n, v).unwrap();
        }
        w.finish(payload);
        buf
    }

    #[test]
    fn round_trips_every_length_class() {
        for size in [0usize, 1, 12, 13, 268, 269, 270, 65804, 65805, 70000] {
            let payload = vec![0xA5u8; size];
            let f = frame(
                Code::CONTENT,
                &[1, 2, 3],
                &[(number::CONTENT_FORMAT, &[42])],
                &payload,
            );
            assert_eq!(frame_len(&f, usize::MAX), Ok(Some(f.len())), "size {size}");
            let m = parse(&f).unwrap();
            assert_eq!(m.code, Code::CONTENT);
            assert_eq!(m.token, &[1, 2, 3]);
            assert_eq!(m.content_format(), Some(42));
            assert_eq!(m.payload.len(), size);
        }
    }

    #[test]
    fn exact_bytes_of_a_small_frame() {
        // GET /3 with token 0x01: body is the option (2 bytes) => Len 2, TKL 1.
        let f = frame(Code::GET, &[0x01], &[(number::URI_PATH, b"3")], &[]);
        assert_eq!(f, [0x21, 0x01, 0x01, 0xB1, b'3']);
        // CSM with Max-Message-Size 1152 (0x0480)
        let f = frame(
            Code::CSM,
            &[],
            &[(signal_option::MAX_MESSAGE_SIZE, &[0x04, 0x80])],
            &[],
        );
        assert_eq!(f, [0x30, 0xE1, 0x22, 0x04, 0x80]);
    }

    #[test]
    fn rejects_bad_frames() {
        assert_eq!(
            frame_len(&[0x09], 100),
            Err(ParseError::InvalidTokenLength(9))
        );
        assert!(matches!(
            frame_len(&[0xF0, 0xFF, 0xFF, 0xFF, 0xFF], 1152),
            Err(ParseError::FrameTooLarge { .. })
        ));
        assert_eq!(parse(&[0x10, 0x45]), Err(ParseError::FrameLength));
        // TKL 1 announces a token the 2-byte frame does not have.
        assert_eq!(parse(&[0x01, 0x45]), Err(ParseError::FrameLength));
        assert_eq!(parse(&[0x00, 0x20]), Err(ParseError::ReservedCodeClass(1)));
        assert_eq!(parse(&[0x10, 0x45, 0xFF]), Err(ParseError::EmptyPayload));
    }
}
