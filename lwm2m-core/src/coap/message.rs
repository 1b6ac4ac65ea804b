//! Zero-copy message view, option-ordered writer and owned option list (RFC 7252 §3).

use alloc::vec::Vec;
use core::fmt;

use super::block::BlockValue;
use super::code::{Code, MessageType};
use super::option::{self, decode_uint, encode_uint, number};

/// Largest token length (RFC 7252 §3: 0 to 8 bytes).
pub const MAX_TOKEN_LEN: usize = 8;

/// Most options one message may carry. LwM2M messages use a handful (a 4-level
/// Uri-Path and a few Uri-Query options); the bound keeps a peer from making
/// us walk thousands of zero-length options.
pub const MAX_OPTIONS: usize = 64;

/// Why bytes are not a CoAP message. Each variant is a "message format error"
/// in RFC 7252 terms: a CON is answered with RST, anything else is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// Fewer bytes than the fixed header.
    TooShort,
    /// Version bits are not 1.
    UnsupportedVersion(u8),
    /// Token length 9–15 (reserved).
    InvalidTokenLength(u8),
    /// The token runs past the end of the datagram or frame.
    TruncatedToken,
    /// Option delta or length nibble 15 outside the payload marker.
    ReservedOptionNibble {
        /// Offset of the option header byte.
        offset: usize,
    },
    /// An extended delta/length or an option value runs past the end.
    TruncatedOption {
        /// Offset of the option header byte.
        offset: usize,
    },
    /// The option number passes 65535.
    OptionNumberOverflow {
        /// Offset of the option header byte.
        offset: usize,
    },
    /// A payload marker with no payload after it.
    EmptyPayload,
    /// An Empty (0.00) message with bytes after the header, or an RST that is not Empty.
    NotEmpty,
    /// An ACK carrying a request code.
    RequestInAck,
    /// A code class that is reserved on this transport (1, 6, 7 over UDP).
    ReservedCodeClass(u8),
    /// More than [`MAX_OPTIONS`] options.
    TooManyOptions,
    /// TCP: the frame's length field does not match the bytes given.
    FrameLength,
    /// TCP: the frame is larger than the configured maximum.
    FrameTooLarge {
        /// Declared frame size.
        size: u64,
        /// Configured maximum.
        max: usize,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::TooShort => {
                f.write_str("message shorter than the CoAP header (expected at least 4 bytes)")
            }
            ParseError::UnsupportedVersion(v) => {
                write!(f, "CoAP version {v} is not supported (expected 1)")
            }
            ParseError::InvalidTokenLength(l) => {
                write!(f, "token length {l} is reserved (expected 0 to 8)")
            }
            ParseError::TruncatedToken => f.write_str("token runs past the end of the message"),
            ParseError::ReservedOptionNibble { offset } => {
                write!(f, "option at byte {offset} uses the reserved nibble 15")
            }
            ParseError::TruncatedOption { offset } => write!(
                f,
                "option at byte {offset} runs past the end of the message"
            ),
            ParseError::OptionNumberOverflow { offset } => {
                write!(f, "option at byte {offset} has a number above 65535")
            }
            ParseError::EmptyPayload => f.write_str("payload marker 0xFF followed by no payload"),
            ParseError::NotEmpty => {
                f.write_str("Empty or Reset message carries a token, options or payload")
            }
            ParseError::RequestInAck => {
                f.write_str("Acknowledgement carries a request code (expected a response or Empty)")
            }
            ParseError::ReservedCodeClass(c) => {
                write!(f, "code class {c} is reserved on this transport")
            }
            ParseError::TooManyOptions => write!(f, "more than {MAX_OPTIONS} options"),
            ParseError::FrameLength => f.write_str("frame length field does not match the frame"),
            ParseError::FrameTooLarge { size, max } => {
                write!(f, "frame of {size} bytes exceeds the maximum of {max}")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ParseError {}

/// An option the receiver must reject (RFC 7252 §5.4.1, §5.4.3, §5.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadOption {
    /// The option number.
    pub number: u16,
    /// What is wrong with it.
    pub reason: BadOptionReason,
}

/// Why an option is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadOptionReason {
    /// A critical option this stack does not know.
    UnknownCritical,
    /// A known critical option with a length outside its allowed range.
    InvalidLength,
    /// A critical option that is not repeatable occurs twice.
    Repeated,
}

impl fmt::Display for BadOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.reason {
            BadOptionReason::UnknownCritical => "is critical and not understood",
            BadOptionReason::InvalidLength => "has a length outside its allowed range",
            BadOptionReason::Repeated => "is not repeatable but occurs more than once",
        };
        write!(f, "option {} {why}", self.number)
    }
}

/// A token: 0 to 8 opaque bytes, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Token {
    len: u8,
    bytes: [u8; MAX_TOKEN_LEN],
}

impl Token {
    /// The empty token.
    pub const EMPTY: Token = Token {
        len: 0,
        bytes: [0; MAX_TOKEN_LEN],
    };

    /// A token from up to 8 bytes, `None` if longer.
    pub fn new(bytes: &[u8]) -> Option<Token> {
        if bytes.len() > MAX_TOKEN_LEN {
            return None;
        }
        let mut t = Token {
            len: bytes.len() as u8,
            bytes: [0; MAX_TOKEN_LEN],
        };
        t.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(t)
    }

    /// The token bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// One option: number and raw value, borrowed from a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionRef<'a> {
    /// Option number.
    pub number: u16,
    /// Raw value bytes.
    pub value: &'a [u8],
}

/// A parsed message borrowing from the datagram (or TCP frame) it came from.
///
/// Parsing checks the whole structure once; accessors then never fail on
/// structure. Semantic option checks (unknown critical options, lengths) are
/// separate, in [`Message::check_options`], because the answer to them (4.02)
/// depends on the message's role.
///
/// Over TCP (RFC 8323) messages have no type and no message id: [`tcp`](super::tcp)
/// parsing sets `mtype` to [`MessageType::Non`] and `message_id` to 0, and
/// nothing on that transport reads them.
///
/// ```
/// use lwm2m_core::coap::{Code, Message, MessageType};
/// // CON GET /3/0 with token 0xCAFE, message id 0x1234
/// let bytes = [0x42, 0x01, 0x12, 0x34, 0xCA, 0xFE, 0xB1, b'3', 0x01, b'0'];
/// let m = Message::parse(&bytes).unwrap();
/// assert_eq!(m.mtype, MessageType::Con);
/// assert_eq!(m.code, Code::GET);
/// assert_eq!(m.token, &[0xCA, 0xFE]);
/// let path: Vec<&[u8]> = m.uri_path().collect();
/// assert_eq!(path, [b"3".as_slice(), b"0".as_slice()]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// Message type (UDP only).
    pub mtype: MessageType,
    /// Message id (UDP only).
    pub message_id: u16,
    /// Request method, response code, Empty or signalling code.
    pub code: Code,
    /// Token, 0–8 bytes.
    pub token: &'a [u8],
    raw_options: &'a [u8],
    option_count: u8,
    /// Payload, empty when there is none.
    pub payload: &'a [u8],
}

/// Walks the option area of `bytes` starting at `pos`. Returns the end of the
/// options, the start of the payload and the option count.
pub(crate) fn scan_options(bytes: &[u8], mut pos: usize) -> Result<(usize, usize, u8), ParseError> {
    let mut number: u32 = 0;
    let mut count = 0usize;
    while pos < bytes.len() {
        let header_at = pos;
        let header = bytes[pos];
        if header == 0xFF {
            if pos + 1 == bytes.len() {
                return Err(ParseError::EmptyPayload);
            }
            return Ok((pos, pos + 1, count as u8));
        }
        pos += 1;
        let delta = read_extended(bytes, &mut pos, header >> 4, header_at)?;
        let len = read_extended(bytes, &mut pos, header & 0x0F, header_at)?;
        number += delta;
        if number > u32::from(u16::MAX) {
            return Err(ParseError::OptionNumberOverflow { offset: header_at });
        }
        let len = len as usize;
        if bytes.len() - pos < len {
            return Err(ParseError::TruncatedOption { offset: header_at });
        }
        pos += len;
        count += 1;
        if count > MAX_OPTIONS {
            return Err(ParseError::TooManyOptions);
        }
    }
    Ok((pos, pos, count as u8))
}

fn read_extended(
    bytes: &[u8],
    pos: &mut usize,
    nibble: u8,
    header_at: usize,
) -> Result<u32, ParseError> {
    match nibble {
        0..=12 => Ok(u32::from(nibble)),
        13 => {
            let b = *bytes
                .get(*pos)
                .ok_or(ParseError::TruncatedOption { offset: header_at })?;
            *pos += 1;
            Ok(u32::from(b) + 13)
        }
        14 => {
            let hi = *bytes
                .get(*pos)
                .ok_or(ParseError::TruncatedOption { offset: header_at })?;
            let lo = *bytes
                .get(*pos + 1)
                .ok_or(ParseError::TruncatedOption { offset: header_at })?;
            *pos += 2;
            Ok(u32::from(u16::from_be_bytes([hi, lo])) + 269)
        }
        _ => Err(ParseError::ReservedOptionNibble { offset: header_at }),
    }
}

impl<'a> Message<'a> {
    /// Parses a CoAP-over-UDP datagram (RFC 7252 §3).
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>, ParseError> {
        if bytes.len() < 4 {
            return Err(ParseError::TooShort);
        }
        let version = bytes[0] >> 6;
        if version != 1 {
            return Err(ParseError::UnsupportedVersion(version));
        }
        let mtype = MessageType::from_bits(bytes[0] >> 4);
        let tkl = bytes[0] & 0x0F;
        let code = Code(bytes[1]);
        let message_id = u16::from_be_bytes([bytes[2], bytes[3]]);
        if code.is_empty() || mtype == MessageType::Rst {
            // RFC 7252 §4.1/§4.3: Empty messages (and RST, which must be Empty)
            // end after the message id.
            if bytes.len() != 4 || !code.is_empty() {
                return Err(ParseError::NotEmpty);
            }
            return Ok(Message {
                mtype,
                message_id,
                code,
                token: &[],
                raw_options: &[],
                option_count: 0,
                payload: &[],
            });
        }
        if matches!(code.class(), 1 | 6 | 7) {
            return Err(ParseError::ReservedCodeClass(code.class()));
        }
        if mtype == MessageType::Ack && code.is_request() {
            return Err(ParseError::RequestInAck);
        }
        Self::parse_body(bytes, 4, tkl, mtype, message_id, code)
    }

    /// Parses token, options and payload starting at `pos`, shared by UDP and TCP.
    pub(crate) fn parse_body(
        bytes: &'a [u8],
        pos: usize,
        tkl: u8,
        mtype: MessageType,
        message_id: u16,
        code: Code,
    ) -> Result<Message<'a>, ParseError> {
        if usize::from(tkl) > MAX_TOKEN_LEN {
            return Err(ParseError::InvalidTokenLength(tkl));
        }
        let token_end = pos + usize::from(tkl);
        let token = bytes
            .get(pos..token_end)
            .ok_or(ParseError::TruncatedToken)?;
        let (options_end, payload_start, option_count) = scan_options(bytes, token_end)?;
        Ok(Message {
            mtype,
            message_id,
            code,
            token,
            raw_options: &bytes[token_end..options_end],
            option_count,
            payload: &bytes[payload_start..],
        })
    }

    /// All options in order.
    pub fn options(&self) -> Options<'a> {
        Options {
            bytes: self.raw_options,
            pos: 0,
            number: 0,
        }
    }

    /// Number of options.
    pub fn option_count(&self) -> usize {
        usize::from(self.option_count)
    }

    /// Values of every occurrence of option `number`.
    pub fn options_of(&self, number: u16) -> impl Iterator<Item = &'a [u8]> {
        self.options()
            .filter(move |o| o.number == number)
            .map(|o| o.value)
    }

    /// Value of the first occurrence of option `number`.
    pub fn option(&self, number: u16) -> Option<&'a [u8]> {
        self.options().find(|o| o.number == number).map(|o| o.value)
    }

    /// True if option `number` occurs.
    pub fn has_option(&self, number: u16) -> bool {
        self.option(number).is_some()
    }

    /// First occurrence of option `number` as a uint; `None` if absent or longer than 4 bytes.
    pub fn uint_option(&self, number: u16) -> Option<u32> {
        self.option(number).and_then(decode_uint)
    }

    /// Uri-Path segments.
    pub fn uri_path(&self) -> impl Iterator<Item = &'a [u8]> {
        self.options_of(number::URI_PATH)
    }

    /// Uri-Query parameters.
    pub fn uri_query(&self) -> impl Iterator<Item = &'a [u8]> {
        self.options_of(number::URI_QUERY)
    }

    /// Location-Path segments.
    pub fn location_path(&self) -> impl Iterator<Item = &'a [u8]> {
        self.options_of(number::LOCATION_PATH)
    }

    /// Content-Format.
    pub fn content_format(&self) -> Option<u16> {
        self.uint_option(number::CONTENT_FORMAT)
            .and_then(|v| u16::try_from(v).ok())
    }

    /// Accept.
    pub fn accept(&self) -> Option<u16> {
        self.uint_option(number::ACCEPT)
            .and_then(|v| u16::try_from(v).ok())
    }

    /// Observe (24-bit).
    pub fn observe(&self) -> Option<u32> {
        self.uint_option(number::OBSERVE).filter(|v| *v < 1 << 24)
    }

    /// Block1, if present and well formed.
    pub fn block1(&self) -> Option<BlockValue> {
        self.uint_option(number::BLOCK1)
            .and_then(BlockValue::decode)
    }

    /// Block2, if present and well formed.
    pub fn block2(&self) -> Option<BlockValue> {
        self.uint_option(number::BLOCK2)
            .and_then(BlockValue::decode)
    }

    /// Size1.
    pub fn size1(&self) -> Option<u32> {
        self.uint_option(number::SIZE1)
    }

    /// Size2.
    pub fn size2(&self) -> Option<u32> {
        self.uint_option(number::SIZE2)
    }

    /// Checks the options a receiver must understand (RFC 7252 §5.4.1, §5.4.3,
    /// §5.4.5): an unknown critical option, a critical option with a bad
    /// length, or a repeated non-repeatable critical option. For requests the
    /// answer is 4.02 Bad Option. Elective options with such problems are to
    /// be ignored, so they pass.
    pub fn check_options(&self) -> Result<(), BadOption> {
        let mut previous: Option<u16> = None;
        for opt in self.options() {
            let repeated = previous == Some(opt.number);
            previous = Some(opt.number);
            if !option::is_critical(opt.number) {
                continue;
            }
            let Some(def) = option::definition(opt.number) else {
                return Err(BadOption {
                    number: opt.number,
                    reason: BadOptionReason::UnknownCritical,
                });
            };
            let len = opt.value.len();
            if len < usize::from(def.min_len) || len > usize::from(def.max_len) {
                return Err(BadOption {
                    number: opt.number,
                    reason: BadOptionReason::InvalidLength,
                });
            }
            if repeated && !def.repeatable {
                return Err(BadOption {
                    number: opt.number,
                    reason: BadOptionReason::Repeated,
                });
            }
        }
        Ok(())
    }
}

/// Iterator over the options of a [`Message`].
#[derive(Debug, Clone)]
pub struct Options<'a> {
    bytes: &'a [u8],
    pos: usize,
    number: u16,
}

impl<'a> Iterator for Options<'a> {
    type Item = OptionRef<'a>;

    fn next(&mut self) -> Option<OptionRef<'a>> {
        // The option area was validated by `scan_options`; the `?`s below never
        // fire, they only avoid indexing that could panic.
        let header_at = self.pos;
        let header = *self.bytes.get(self.pos)?;
        self.pos += 1;
        let delta = read_extended(self.bytes, &mut self.pos, header >> 4, header_at).ok()?;
        let len = read_extended(self.bytes, &mut self.pos, header & 0x0F, header_at).ok()? as usize;
        self.number = u16::try_from(u32::from(self.number) + delta).ok()?;
        let value = self.bytes.get(self.pos..self.pos + len)?;
        self.pos += len;
        Some(OptionRef {
            number: self.number,
            value,
        })
    }
}

/// Why a message could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteError {
    /// A token longer than 8 bytes.
    TokenTooLong,
    /// An option number lower than the previous one (options must be written in order).
    OptionOutOfOrder {
        /// The number written before.
        previous: u16,
        /// The number that came after it.
        number: u16,
    },
    /// An option value longer than the format can express (65804 bytes).
    OptionTooLong,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::TokenTooLong => f.write_str("token longer than 8 bytes"),
            WriteError::OptionOutOfOrder { previous, number } => {
                write!(
                    f,
                    "option {number} written after option {previous} (expected ascending order)"
                )
            }
            WriteError::OptionTooLong => f.write_str("option value longer than 65804 bytes"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for WriteError {}

/// Largest option value (or delta) the format can express: 65535 + 269.
const MAX_EXTENDED: usize = 65535 + 269;

/// Appends the option header and value for `delta`/`value` to `out`.
pub(crate) fn write_option(out: &mut Vec<u8>, delta: u16, value: &[u8]) -> Result<(), WriteError> {
    if value.len() > MAX_EXTENDED {
        return Err(WriteError::OptionTooLong);
    }
    let (dn, dext, dlen) = nibble(usize::from(delta));
    let (ln, lext, llen) = nibble(value.len());
    out.push((dn << 4) | ln);
    out.extend_from_slice(&dext[..dlen]);
    out.extend_from_slice(&lext[..llen]);
    out.extend_from_slice(value);
    Ok(())
}

/// Nibble and extended bytes for an option delta or length (RFC 7252 §3.1).
fn nibble(v: usize) -> (u8, [u8; 2], usize) {
    if v < 13 {
        (v as u8, [0, 0], 0)
    } else if v < 269 {
        (13, [(v - 13) as u8, 0], 1)
    } else {
        let x = ((v - 269) as u16).to_be_bytes();
        (14, x, 2)
    }
}

/// Writes a message into a caller-owned buffer, rejecting options out of order.
///
/// ```
/// use lwm2m_core::coap::{Code, Message, MessageType, MessageWriter};
/// use lwm2m_core::coap::option::number;
/// let mut buf = Vec::new();
/// let mut w = MessageWriter::udp(&mut buf, MessageType::Con, Code::POST, 7, &[1, 2, 3, 4]).unwrap();
/// w.option(number::URI_PATH, b"rd").unwrap();
/// w.uint_option(number::CONTENT_FORMAT, 40).unwrap();
/// w.option(number::URI_QUERY, b"ep=dev1").unwrap();
/// assert!(w.option(number::URI_PATH, b"late").is_err());
/// w.finish(b"</3/0>");
/// let m = Message::parse(&buf).unwrap();
/// assert_eq!(m.content_format(), Some(40));
/// assert_eq!(m.payload, b"</3/0>");
/// ```
#[derive(Debug)]
pub struct MessageWriter<'b> {
    buf: &'b mut Vec<u8>,
    start: usize,
    last_option: u16,
    tcp: bool,
}

impl<'b> MessageWriter<'b> {
    /// Starts a CoAP-over-UDP message at the end of `buf`.
    pub fn udp(
        buf: &'b mut Vec<u8>,
        mtype: MessageType,
        code: Code,
        message_id: u16,
        token: &[u8],
    ) -> Result<MessageWriter<'b>, WriteError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(WriteError::TokenTooLong);
        }
        let start = buf.len();
        buf.push(0x40 | ((mtype as u8) << 4) | token.len() as u8);
        buf.push(code.0);
        buf.extend_from_slice(&message_id.to_be_bytes());
        buf.extend_from_slice(token);
        Ok(MessageWriter {
            buf,
            start,
            last_option: 0,
            tcp: false,
        })
    }

    /// Starts a CoAP-over-TCP message (RFC 8323 §3.2) at the end of `buf`. The
    /// length field is filled in by [`MessageWriter::finish`].
    pub fn tcp(
        buf: &'b mut Vec<u8>,
        code: Code,
        token: &[u8],
    ) -> Result<MessageWriter<'b>, WriteError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(WriteError::TokenTooLong);
        }
        let start = buf.len();
        buf.push(token.len() as u8);
        buf.push(code.0);
        buf.extend_from_slice(token);
        Ok(MessageWriter {
            buf,
            start,
            last_option: 0,
            tcp: true,
        })
    }

    /// Appends an option. Options must come in ascending number order; equal
    /// numbers repeat the option.
    pub fn option(&mut self, number: u16, value: &[u8]) -> Result<&mut Self, WriteError> {
        if number < self.last_option {
            return Err(WriteError::OptionOutOfOrder {
                previous: self.last_option,
                number,
            });
        }
        write_option(self.buf, number - self.last_option, value)?;
        self.last_option = number;
        Ok(self)
    }

    /// Appends a uint option in its minimal encoding.
    pub fn uint_option(&mut self, number: u16, value: u32) -> Result<&mut Self, WriteError> {
        let (b, n) = encode_uint(value);
        self.option(number, &b[4 - n..])
    }

    /// Appends the payload (with its marker, if non-empty), completes the
    /// message and returns its length.
    pub fn finish(self, payload: &[u8]) -> usize {
        if !payload.is_empty() {
            self.buf.push(0xFF);
            self.buf.extend_from_slice(payload);
        }
        if self.tcp {
            super::tcp::fill_length(self.buf, self.start);
        }
        self.buf.len() - self.start
    }
}

/// An owned option: number and value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CoapOption {
    /// Option number.
    pub number: u16,
    /// Raw value.
    pub value: Vec<u8>,
}

/// An owned, always-sorted option list, for messages built by applications
/// and kept by the message layer.
///
/// ```
/// use lwm2m_core::coap::OptionList;
/// use lwm2m_core::coap::option::number;
/// let mut o = OptionList::new();
/// o.set_uint(number::CONTENT_FORMAT, 110);
/// o.push(number::URI_PATH, b"3".to_vec());
/// o.push(number::URI_PATH, b"0".to_vec());
/// assert_eq!(o.iter().next().unwrap().number, number::URI_PATH);
/// assert_eq!(o.uint(number::CONTENT_FORMAT), Some(110));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct OptionList {
    items: Vec<CoapOption>,
}

impl OptionList {
    /// An empty list.
    pub const fn new() -> OptionList {
        OptionList { items: Vec::new() }
    }

    /// Copies the options of a parsed message.
    pub fn from_message(m: &Message<'_>) -> OptionList {
        OptionList {
            items: m
                .options()
                .map(|o| CoapOption {
                    number: o.number,
                    value: o.value.to_vec(),
                })
                .collect(),
        }
    }

    /// Adds an occurrence of option `number` after any existing ones.
    pub fn push(&mut self, number: u16, value: Vec<u8>) {
        let at = self.items.partition_point(|o| o.number <= number);
        self.items.insert(at, CoapOption { number, value });
    }

    /// Replaces all occurrences of `number` with one value.
    pub fn set(&mut self, number: u16, value: Vec<u8>) {
        self.remove(number);
        self.push(number, value);
    }

    /// Replaces all occurrences of `number` with one uint value.
    pub fn set_uint(&mut self, number: u16, value: u32) {
        let (b, n) = encode_uint(value);
        self.set(number, b[4 - n..].to_vec());
    }

    /// Removes every occurrence of `number`.
    pub fn remove(&mut self, number: u16) {
        self.items.retain(|o| o.number != number);
    }

    /// First value of `number`.
    pub fn get(&self, number: u16) -> Option<&[u8]> {
        self.items
            .iter()
            .find(|o| o.number == number)
            .map(|o| o.value.as_slice())
    }

    /// Every value of `number`.
    pub fn get_all(&self, number: u16) -> impl Iterator<Item = &[u8]> {
        self.items
            .iter()
            .filter(move |o| o.number == number)
            .map(|o| o.value.as_slice())
    }

    /// First value of `number` as a uint.
    pub fn uint(&self, number: u16) -> Option<u32> {
        self.get(number).and_then(decode_uint)
    }

    /// True if `number` occurs.
    pub fn contains(&self, number: u16) -> bool {
        self.get(number).is_some()
    }

    /// All options in order.
    pub fn iter(&self) -> impl Iterator<Item = &CoapOption> {
        self.items.iter()
    }

    /// Number of options.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sets Uri-Path from a `/`-separated path (`"/3/0/1"` or `"rd"`).
    pub fn set_uri_path(&mut self, path: &str) {
        self.remove(number::URI_PATH);
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            self.push(number::URI_PATH, seg.as_bytes().to_vec());
        }
    }

    /// Writes every option through `w`.
    pub fn write_to(&self, w: &mut MessageWriter<'_>) -> Result<(), WriteError> {
        for o in &self.items {
            w.option(o.number, &o.value)?;
        }
        Ok(())
    }
}
