//! The LwM2M server: a sans-IO [`engine`] (Registration interface on `/rd`
//! and device-management requests to registered clients) and registration
//! [`store`]s (SQLite, in memory).
#![forbid(unsafe_code)]

pub mod engine;
pub mod registration;
pub mod store;

pub use engine::{
    Content, DmError, DmRequestId, DmResponse, Engine, ServerConfig, ServerEvent, WriteMode,
};
pub use registration::Registration;
pub use store::{MemoryStore, RegistrationStore, SqliteStore, StoreError};
