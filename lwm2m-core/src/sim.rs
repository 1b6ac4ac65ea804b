//! Deterministic simulated network for tests.
