//! CoAP (RFC 7252, RFC 8323, RFC 7959, RFC 7641) for LwM2M.
//!
//! * [`Message`]: zero-copy view of a parsed message; [`MessageWriter`]: a
//!   writer that enforces option order; [`tcp`]: RFC 8323 framing.
//! * [`Endpoint`]: the sans-IO message layer (reliability, deduplication,
//!   NSTART, token matching), block-wise transfers and observe plumbing.

pub mod block;
mod code;
pub mod endpoint;
mod message;
pub mod observe;
pub mod option;
pub mod tcp;
pub mod tcp_bridge;
pub mod tcp_endpoint;

pub use block::BlockValue;
pub use code::{Code, MessageType};
pub use endpoint::{Endpoint, EndpointConfig, Event, Request, RequestId, Response, Transmit};
pub use message::{
    BadOption, BadOptionReason, CoapOption, Message, MessageWriter, OptionList, OptionRef, Options,
    ParseError, Token, WriteError, MAX_OPTIONS, MAX_TOKEN_LEN,
};
