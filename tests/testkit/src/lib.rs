//! The shared fixtures of the operator's integration tests (tests/controller and
//! tests/services), one library instead of a copy compiled into each test binary:
//!
//! - [`mock_api`]: a scripted stand-in for the Kubernetes API server (tower-test), the
//!   controller's watch caches and a reconcile harness;
//! - [`fakes`]: the servers the probes talk to (bitcoind JSON-RPC, Electrum, a silent server,
//!   a closed port) and the real PostgreSQL and Redis of tests/run.sh;
//! - [`backup`]: the real PostgreSQL and S3 server (moto) of tests/run.sh, backup
//!   destinations, source databases, and runs of `blocksight backup`.

pub mod backup;
pub mod fakes;
pub mod mock_api;
