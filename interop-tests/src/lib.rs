//! Helpers for interop tests against third-party peers.
#![forbid(unsafe_code)]
