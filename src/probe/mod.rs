//! Probe clients: ask bitcoind, electrs, PostgreSQL and Redis for their state.
//!
//! The controller's poll loop calls these to fill `status.chain`, gate dependent components
//! and export metrics; `blocksight probe` runs the same code from a shell for diagnosis.
//!
//! Every probe is bounded by the timeout it is given, returns a serialisable report, and
//! fails with a [`ProbeError`] whose [`category`](ProbeError::category) is stable enough to be
//! a metric label. Error texts never contain a password: messages are passed through
//! [`redact`] with the probe's secrets before they leave this module.
//!
//! The bitcoind and Electrum client libraries are blocking; they run on tokio's blocking pool
//! ([`tokio::task::spawn_blocking`]) with socket timeouts, and the caller stops waiting at the
//! deadline even if a socket is slower to give up.

mod cache;
pub mod command;
mod electrum;
mod error;
mod node;
mod scram;
mod sql;

use std::time::{Duration, Instant};

pub use cache::{RedisReport, redis};
pub use electrum::{ElectrsReport, ElectrsTarget, electrs, electrs_lag};
pub use error::{ProbeError, redact, redact_urls};
pub use node::{BitcoindReport, BitcoindTarget, bitcoind};
pub use sql::{Bootstrap, PostgresReport, bootstrap_database, postgres};

/// Run a blocking client call on the blocking pool; give up waiting at `timeout`. `call`
/// receives the deadline so it can stop between requests once it has passed.
async fn run_blocking<T, F>(timeout: Duration, call: F) -> Result<T, ProbeError>
where
    T: Send + 'static,
    F: FnOnce(Instant) -> Result<T, ProbeError> + Send + 'static,
{
    let deadline = Instant::now() + timeout;
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(move || call(deadline))).await {
        Err(_elapsed) => Err(ProbeError::Timeout),
        Ok(Err(join)) => Err(ProbeError::Protocol(format!("probe thread failed: {join}"))),
        Ok(Ok(result)) => result,
    }
}

/// Await `future` for at most `timeout`.
async fn within<T>(
    timeout: Duration,
    future: impl Future<Output = Result<T, ProbeError>>,
) -> Result<T, ProbeError> {
    tokio::time::timeout(timeout, future)
        .await
        .unwrap_or(Err(ProbeError::Timeout))
}
