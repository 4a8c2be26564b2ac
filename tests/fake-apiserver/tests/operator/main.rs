//! The operator against the fake API server: the real `blocksight run` code path in-process
//! (common's Harness: convergence, faults, restart, timeout) and the built `blocksight` binary
//! as a subprocess (sigterm; build it first: `cargo build --bin blocksight`, or set
//! BLOCKSIGHT_BIN). The tests run one at a time (common::one_at_a_time), as they did when
//! each was a binary of its own.
//!
//!   cargo build --bin blocksight && cargo test -p blocksight-fake-apiserver --test operator

mod common;
mod converge;
mod faults;
mod restart;
mod sigterm;
mod timeout;
