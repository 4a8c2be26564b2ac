//! Pure tests: no server, no services, nothing but the operator's library, the examples and
//! the repository's files (crds/, docs/, tests/invalid/, tests/snapshots/).
//!
//!   cargo test --test offline

mod crds;
mod invalid_input;
mod metrics;
mod network_policy;
mod render;
