//! The LwM2M server: a sans-IO [`engine`] (Registration interface on `/rd`
//! and device-management requests to registered clients), registration
//! [`store`]s (SQLite, in memory) and a tokio [`driver`] that binds a UDP
//! socket and exposes an async API. The [`bootstrap`] module is the
//! Bootstrap Server: its own sans-IO engine, configurations and tokio driver.
//!
//! With the `admin` feature, [`admin`] serves an HTTP API, SSE, Prometheus
//! metrics and a web UI over the driver.
//!
//! Features (all default): `sqlite` ([`store::SqliteStore`]), `redis`
//! ([`redis_store::RedisStore`], [`security::RedisSecurityStore`] and
//! [`bootstrap::RedisConfigStore`]: registrations, observations, security
//! credentials and bootstrap configurations shared by several server nodes),
//! `tokio` ([`driver`]), `dtls` ([`dtls`]: DTLS 1.2 with PSK and X.509, the
//! driver's coaps socket), `tls` ([`coap_tls`]: CoAP over TLS, `coaps+tcp`) and `admin` ([`admin`], implies `tokio`). Without them the crate is the engine and the in-memory
//! store only, for other drivers and for fuzzing.
#![forbid(unsafe_code)]

#[cfg(feature = "admin")]
pub mod admin;
pub mod bootstrap;
#[cfg(feature = "tokio")]
pub mod campaign;
#[cfg(feature = "tokio")]
pub mod coap_tcp;
#[cfg(feature = "tls")]
pub mod coap_tls;
#[cfg(feature = "tokio")]
pub mod driver;
#[cfg(feature = "dtls")]
pub mod dtls;
pub mod engine;
pub mod firmware;
#[cfg(feature = "tokio")]
pub mod fota;
#[cfg(feature = "dtls")]
mod peer_auth;
#[cfg(feature = "redis")]
pub mod redis_store;
pub mod registration;
pub mod security;
pub mod store;

#[cfg(feature = "tokio")]
pub use coap_tcp::TcpOptions;
#[cfg(feature = "tls")]
pub use coap_tls::TlsOptions;
#[cfg(feature = "tokio")]
pub use driver::{SecurityOptions, Server, ServerHandle, StartError};
pub use engine::{
    Content, DmError, DmRequestId, DmResponse, Engine, ServerConfig, ServerEvent, WriteMode,
};
#[cfg(feature = "redis")]
pub use redis_store::RedisStore;
pub use registration::Registration;
pub use registration::RegistrationSecurity;
#[cfg(feature = "redis")]
pub use security::RedisSecurityStore;
#[cfg(feature = "sqlite")]
pub use security::SqliteSecurityStore;
pub use security::{
    AuthorizationError, Authorizer, Credentials, MemorySecurityStore, PeerIdentity,
    SecurityChecker, SecurityError, SecurityInfo, SecurityStore, SharedSecurityStore,
};
#[cfg(feature = "sqlite")]
pub use store::SqliteStore;
pub use store::{MemoryStore, NullStore, RegistrationStore, StoreError, StoredObservation};
