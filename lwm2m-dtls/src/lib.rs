//! OpenSSL glue shared by the client's and the server's DTLS layers.
//!
//! LwM2M security mode 1 (Raw Public Key, RFC 7250) authenticates each side
//! with a bare public key instead of a certificate. OpenSSL supports that
//! since 3.2, but the `openssl` crate has no binding for it yet, so this
//! crate holds the project's one FFI module, [`rpk`], and nothing else
//! needs `unsafe`: every other crate of the workspace keeps
//! `forbid(unsafe_code)`.
//!
//! With the `rpk` feature (default) OpenSSL is built from source (the
//! `openssl` crate's `vendored` feature; Debian 12 ships 3.0) and linked
//! statically, for the whole build: one OpenSSL serves PSK, X.509, RPK and
//! the client's https downloads. [`RPK_SUPPORTED`] tells callers whether
//! the functions are there.
#![deny(unsafe_code)]

/// Whether this build can negotiate Raw Public Keys (the `rpk` feature).
pub const RPK_SUPPORTED: bool = cfg!(feature = "rpk");

#[cfg(feature = "rpk")]
pub mod rpk;
