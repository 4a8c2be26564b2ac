//! The three controllers (one folder per custom resource) and what they share.
//!
//! - [`blocksight`]: a BlockSight into its workloads, status, events and metrics.
//! - [`backup`]: a BlockSightBackup into the Job that dumps the database.
//! - [`restore`]: a BlockSightRestore into a safety backup, then the restore Job.
//! - [`shared`]: the watch caches, recent writes, drift, the apply/prune engine and Jobs.
//!
//! Nothing here reads the API server: every decision comes from the watch caches, so an
//! object that already matches the cluster costs no request. Each step that writes is
//! bounded by the reconcile timeout ([`RECONCILE_TIMEOUT`] by default): a server that stops
//! answering fails the step with category `timeout`, retried with backoff.

pub mod backup;
pub mod blocksight;
pub mod error;
pub mod restore;
pub mod shared;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use kube::runtime::controller::Action;
use tracing::warn;

pub use error::ReconcileError;
use error::{Step, TimeoutError};
pub use shared::context::{Caches, Context, RecentWrites};

/// A controller's context: what it owns, and the [`Context`] all three share.
pub trait ControllerContext {
    fn shared(&self) -> &Context;
}

impl ControllerContext for Context {
    fn shared(&self) -> &Context {
        self
    }
}

/// The one error policy of the three controllers: count the failure by category, never
/// retry what the user must fix, and retry anything else with a per-object exponential
/// backoff ([`backoff`]: 5 s doubling to 5 min), reset by the object's next success
/// ([`reconciled`]).
pub fn error_policy<K, E, C>(object: Arc<K>, error: &E, ctx: Arc<C>) -> Action
where
    K: Resource<DynamicType = ()>,
    E: ReconcileError,
    C: ControllerContext,
{
    let ctx = ctx.shared();
    ctx.metrics.record_failure(error.category());
    if error.is_permanent() {
        return Action::await_change();
    }
    let (kind, meta) = (K::kind(&()), object.meta());
    let attempts = ctx.record_failure(
        &kind,
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    );
    warn!(error = %error, category = error.category(), %kind, attempts, "reconcile failed");
    Action::requeue(backoff(attempts))
}

/// Run `reconcile`, then forget the object's failures if it succeeded.
pub async fn reconciled<K, E, C, F>(
    object: Arc<K>,
    ctx: Arc<C>,
    reconcile: impl FnOnce(Arc<K>, Arc<C>) -> F,
) -> Result<Action, E>
where
    K: Resource<DynamicType = ()>,
    C: ControllerContext,
    F: std::future::Future<Output = Result<Action, E>>,
{
    let result = reconcile(object.clone(), ctx.clone()).await;
    if result.is_ok() {
        let meta = object.meta();
        ctx.shared().clear_failures(
            &K::kind(&()),
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
        );
    }
    result
}

/// How often a converged BlockSight is looked at again by default (from the caches: costs
/// nothing).
pub const RESYNC: Duration = Duration::from_secs(300);

/// How long a reconcile step may wait on the API server by default. A healthy server answers
/// a whole BlockSight's applies in well under a second; this only catches one that stopped
/// answering, without failing a merely slow one.
pub const RECONCILE_TIMEOUT: Duration = Duration::from_secs(60);

/// Run `step` under the reconcile timeout.
async fn bounded<T>(
    ctx: &Context,
    step: Step,
    future: impl std::future::Future<Output = T>,
) -> Result<T, TimeoutError> {
    tokio::time::timeout(ctx.reconcile_timeout, future)
        .await
        .map_err(|_| TimeoutError {
            step,
            after: ctx.reconcile_timeout,
        })
}

/// Now, at the second precision of Kubernetes timestamps.
pub(crate) fn now() -> Time {
    second_precision(jiff::Timestamp::now())
}

pub(crate) fn second_precision(now: jiff::Timestamp) -> Time {
    Time(jiff::Timestamp::from_second(now.as_second()).expect("in range"))
}

/// 5 s, 10 s, 20 s … capped at 5 minutes.
pub fn backoff(attempts: u32) -> Duration {
    let seconds = 5u64.saturating_mul(1u64 << attempts.saturating_sub(1).min(10));
    Duration::from_secs(seconds.min(300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_to_five_minutes() {
        let delays: Vec<u64> = (1..=9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }
}
