//! The LwM2M server: a sans-IO [`engine`] (Registration interface on `/rd`
//! and device-management requests to registered clients), registration
//! [`store`]s (SQLite, in memory) and a tokio [`driver`] that binds a UDP
//! socket and exposes an async API.
#![forbid(unsafe_code)]

pub mod driver;
pub mod engine;
pub mod registration;
pub mod store;

pub use driver::{Server, ServerHandle, StartError};
pub use engine::{
    Content, DmError, DmRequestId, DmResponse, Engine, ServerConfig, ServerEvent, WriteMode,
};
pub use registration::Registration;
pub use store::{MemoryStore, RegistrationStore, SqliteStore, StoreError};
