//! LwM2M client library.
#![forbid(unsafe_code)]
