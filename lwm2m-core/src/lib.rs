//! Sans-IO core of the LwM2M stack.
//!
//! Nothing in this crate owns a socket, a clock or a random number generator:
//! callers feed bytes and the current [`time::Instant`] in, and ask what to send
//! and when to wake up next. That keeps every protocol engine deterministic,
//! testable in the simulated network of [`sim`], and portable to `no_std`
//! targets (only `alloc` is required).
//!
//! * [`coap`]: RFC 7252 / RFC 8323 codec, message layer, block-wise and observe.
//! * [`model`]: LwM2M paths, values, nodes, object models and attributes.
//! * [`format`](mod@format): LwM2M content formats (TLV, SenML, LwM2M CBOR, ...).
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod coap;
#[cfg(feature = "std")]
pub mod datagram_pipe;
pub mod format;
pub mod model;
pub mod rng;
pub mod sim;
pub mod time;
