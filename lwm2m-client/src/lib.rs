//! LwM2M client library.
//!
//! * [`object`]: the [`Object`] trait integrators implement,
//!   one implementation per LwM2M object.
//! * [`engine`]: the sans-IO client ([`Client`]):
//!   registration, device management dispatch, observations. `no_std` +
//!   `alloc`, like `lwm2m-core`.
//! * [`objects`]: ready objects: Security (0), Server (1), Access Control
//!   (2), Device (3),
//!   Connectivity Monitoring (4), Firmware Update (5), Location (6),
//!   Connectivity Statistics (7).
//! * `tokio_driver` (feature `tokio`): runs a client over a UDP socket until
//!   shutdown.
//! * [`security`]: the credentials of a Security object instance
//!   ([`security::SecurityParams`]), which [`Client::peer_security`] gives
//!   the driver per peer. `no_std`.
//! * `dtls` (feature `dtls`): a sans-IO DTLS 1.2 client session (OpenSSL)
//!   for `coaps://` servers, used by the tokio driver.
//! * [`fleet`]: many simulated devices in one compact sans-IO state
//!   machine, for server load tests; with feature `fleet`, its in-process
//!   (server engine, virtual network) and UDP drivers.
//! * `http_fetch` (feature `http`): firmware downloads over `http://` and
//!   `https://` (OpenSSL) for the tokio driver.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

#[cfg(feature = "dtls")]
pub mod dtls;
pub mod engine;
pub mod fleet;
#[cfg(feature = "http")]
pub mod http_fetch;
pub mod object;
pub mod objects;
pub mod security;
#[cfg(feature = "tokio")]
pub mod tokio_driver;

pub use engine::{
    Client, ClientConfig, ClientEvent, RegistrationState, RetryPolicy, SendError, ServerEvent,
};
pub use object::{DmError, Object, ObjectRequest, ObjectRequestError};
