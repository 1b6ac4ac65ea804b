//! Message codes and types (RFC 7252 §3, §12.1; RFC 8323 §5 signalling codes).

use core::fmt;

/// A CoAP code: 3-bit class and 5-bit detail, written `c.dd`.
///
/// ```
/// use lwm2m_core::coap::Code;
/// assert_eq!(Code::CONTENT, Code::new(2, 5));
/// assert_eq!(Code::CONTENT.to_string(), "2.05");
/// assert!(Code::GET.is_request());
/// assert!(Code::NOT_FOUND.is_error());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub u8);

impl Code {
    /// Builds `class.detail` (class 0–7, detail 0–31; higher bits are masked).
    pub const fn new(class: u8, detail: u8) -> Code {
        Code(((class & 0x07) << 5) | (detail & 0x1f))
    }
    /// The class (0 request, 2 success, 4 client error, 5 server error, 7 signalling).
    pub const fn class(self) -> u8 {
        self.0 >> 5
    }
    /// The detail.
    pub const fn detail(self) -> u8 {
        self.0 & 0x1f
    }
    /// 0.00, the code of Empty messages.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Class 0 with a non-zero detail.
    pub const fn is_request(self) -> bool {
        self.class() == 0 && self.0 != 0
    }
    /// Classes 2, 4 and 5.
    pub const fn is_response(self) -> bool {
        matches!(self.class(), 2..=5)
    }
    /// Classes 4 and 5.
    pub const fn is_error(self) -> bool {
        matches!(self.class(), 4 | 5)
    }
    /// Class 2.
    pub const fn is_success(self) -> bool {
        self.class() == 2
    }
    /// Class 7 (RFC 8323 signalling, reliable transports only).
    pub const fn is_signalling(self) -> bool {
        self.class() == 7
    }

    /// 0.00 Empty.
    pub const EMPTY: Code = Code::new(0, 0);
    /// 0.01 GET.
    pub const GET: Code = Code::new(0, 1);
    /// 0.02 POST.
    pub const POST: Code = Code::new(0, 2);
    /// 0.03 PUT.
    pub const PUT: Code = Code::new(0, 3);
    /// 0.04 DELETE.
    pub const DELETE: Code = Code::new(0, 4);
    /// 0.05 FETCH (RFC 8132; LwM2M Read-Composite).
    pub const FETCH: Code = Code::new(0, 5);
    /// 0.06 PATCH (RFC 8132).
    pub const PATCH: Code = Code::new(0, 6);
    /// 0.07 iPATCH (RFC 8132; LwM2M Write-Composite).
    pub const IPATCH: Code = Code::new(0, 7);

    /// 2.01 Created.
    pub const CREATED: Code = Code::new(2, 1);
    /// 2.02 Deleted.
    pub const DELETED: Code = Code::new(2, 2);
    /// 2.03 Valid.
    pub const VALID: Code = Code::new(2, 3);
    /// 2.04 Changed.
    pub const CHANGED: Code = Code::new(2, 4);
    /// 2.05 Content.
    pub const CONTENT: Code = Code::new(2, 5);
    /// 2.31 Continue (RFC 7959).
    pub const CONTINUE: Code = Code::new(2, 31);
    /// 4.00 Bad Request.
    pub const BAD_REQUEST: Code = Code::new(4, 0);
    /// 4.01 Unauthorized.
    pub const UNAUTHORIZED: Code = Code::new(4, 1);
    /// 4.02 Bad Option.
    pub const BAD_OPTION: Code = Code::new(4, 2);
    /// 4.03 Forbidden.
    pub const FORBIDDEN: Code = Code::new(4, 3);
    /// 4.04 Not Found.
    pub const NOT_FOUND: Code = Code::new(4, 4);
    /// 4.05 Method Not Allowed.
    pub const METHOD_NOT_ALLOWED: Code = Code::new(4, 5);
    /// 4.06 Not Acceptable.
    pub const NOT_ACCEPTABLE: Code = Code::new(4, 6);
    /// 4.08 Request Entity Incomplete (RFC 7959).
    pub const REQUEST_ENTITY_INCOMPLETE: Code = Code::new(4, 8);
    /// 4.09 Conflict (RFC 8132).
    pub const CONFLICT: Code = Code::new(4, 9);
    /// 4.12 Precondition Failed.
    pub const PRECONDITION_FAILED: Code = Code::new(4, 12);
    /// 4.13 Request Entity Too Large.
    pub const REQUEST_ENTITY_TOO_LARGE: Code = Code::new(4, 13);
    /// 4.15 Unsupported Content-Format.
    pub const UNSUPPORTED_CONTENT_FORMAT: Code = Code::new(4, 15);
    /// 5.00 Internal Server Error.
    pub const INTERNAL_SERVER_ERROR: Code = Code::new(5, 0);
    /// 5.01 Not Implemented.
    pub const NOT_IMPLEMENTED: Code = Code::new(5, 1);
    /// 5.03 Service Unavailable.
    pub const SERVICE_UNAVAILABLE: Code = Code::new(5, 3);
    /// 5.04 Gateway Timeout.
    pub const GATEWAY_TIMEOUT: Code = Code::new(5, 4);
    /// 7.01 CSM (Capabilities and Settings Message, RFC 8323).
    pub const CSM: Code = Code::new(7, 1);
    /// 7.02 Ping.
    pub const PING: Code = Code::new(7, 2);
    /// 7.03 Pong.
    pub const PONG: Code = Code::new(7, 3);
    /// 7.04 Release.
    pub const RELEASE: Code = Code::new(7, 4);
    /// 7.05 Abort.
    pub const ABORT: Code = Code::new(7, 5);
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.class(), self.detail())
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Code({self})")
    }
}

/// The message type of CoAP over UDP (RFC 7252 §3). Reliable transports have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// Confirmable: retransmitted until acknowledged.
    Con = 0,
    /// Non-confirmable.
    Non = 1,
    /// Acknowledgement.
    Ack = 2,
    /// Reset.
    Rst = 3,
}

impl MessageType {
    /// From the two type bits.
    pub const fn from_bits(bits: u8) -> MessageType {
        match bits & 0x03 {
            0 => MessageType::Con,
            1 => MessageType::Non,
            2 => MessageType::Ack,
            _ => MessageType::Rst,
        }
    }
}
