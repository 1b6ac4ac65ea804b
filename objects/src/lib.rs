//! LwM2M object models and standard object implementations.
#![forbid(unsafe_code)]
