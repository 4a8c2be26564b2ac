//! Leader election through a coordination.k8s.io/v1 Lease (kube-lease-manager), so replicas
//! can run safely: a standby is ready (rollouts proceed) but runs no controller; the leader
//! hands the Lease back on shutdown, after its last reconcile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube_lease_manager::LeaseManagerBuilder;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::RunConfig;
use super::http::Health;
use crate::metrics::Metrics;
use crate::names::FIELD_MANAGER;

/// Stand by until this replica leads. Ready meanwhile (a standby is healthy); not ready
/// once leading, until its caches have listed. Losing the Lease later sets `lost` and
/// cancels `shutdown`. None when shutdown came first.
pub async fn lead(
    client: &Client,
    config: &RunConfig,
    shutdown: &CancellationToken,
    health: &Health,
    metrics: &Metrics,
    lost: Arc<AtomicBool>,
) -> anyhow::Result<Option<Leadership>> {
    // A standby is healthy: ready, so rollouts of the operator's Deployment proceed.
    health.set_ready(true);
    let Some((mut leading, lease_task)) = wait_for_leadership(client, config, shutdown).await?
    else {
        return Ok(None);
    };
    info!("acquired leadership");
    metrics.leader.set(1);
    health.set_ready(false);
    let shutdown = shutdown.clone();
    let watcher = tokio::spawn(async move {
        while leading.changed().await.is_ok() {
            if !*leading.borrow() {
                lost.store(true, Ordering::Relaxed);
                shutdown.cancel();
                return;
            }
        }
    });
    Ok(Some(Leadership {
        watcher,
        lease_task,
    }))
}

type Leading = tokio::sync::watch::Receiver<bool>;

/// This replica's field manager for the Lease. kube-lease-manager's lock relies on a
/// server-side-apply conflict between candidates: with one field manager shared by every
/// replica there is never a conflict, and two replicas could both believe they lead.
pub fn lease_field_manager(identity: &str) -> String {
    format!("{FIELD_MANAGER}-lease-{identity}")
}

/// Stand by until this replica holds the Lease (Some) or shutdown is asked for (None).
///
/// kube-lease-manager's standby sleeps until the holder's Lease would expire (up to its
/// 30 s duration), so a Lease the leader hands back on SIGTERM would sit free for that long.
/// A watch on the Lease object cuts that short: when it shows the Lease released (no
/// holder), the standby starts a fresh attempt, which takes a free Lease at once.
async fn wait_for_leadership(
    client: &Client,
    config: &RunConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<(Leading, LeaseTask)>> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &config.lease_namespace);
    let released = watcher(
        leases,
        watcher::Config::default().fields(&format!("metadata.name={}", config.lease_name)),
    )
    .default_backoff()
    .applied_objects()
    .try_filter(|lease| {
        let holder = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref());
        futures::future::ready(holder.is_none_or(str::is_empty))
    });
    let mut released = std::pin::pin!(released);
    loop {
        let manager = LeaseManagerBuilder::new(client.clone(), &config.lease_name)
            .with_namespace(&config.lease_namespace)
            .with_identity(&config.identity)
            .with_field_manager(lease_field_manager(&config.identity))
            .build()
            .await
            .context("creating the leader election Lease manager")?;
        let (mut leading, lease_task) = manager.watch().await;
        info!(lease = %config.lease_name, identity = %config.identity, "waiting for leadership");
        loop {
            if *leading.borrow_and_update() {
                return Ok(Some((leading, lease_task)));
            }
            tokio::select! {
                changed = leading.changed() => changed.context("leader election stopped")?,
                _ = shutdown.cancelled() => {
                    // A standby holds nothing, but its Lease task must still end cleanly.
                    drop(leading);
                    release_lease(lease_task).await;
                    return Ok(None);
                }
                free = released.next() => {
                    if let Some(Err(e)) = &free {
                        warn!(error = %e, "watching the leader Lease");
                        continue;
                    }
                    if free.is_none() {
                        continue;
                    }
                    info!("the leader Lease was released; trying to take it now");
                    drop(leading);
                    lease_task.abort();
                    let _ = lease_task.await;
                    break;
                }
            }
        }
    }
}

/// The leader's side of leader election, to hand the Lease back on shutdown.
pub struct Leadership {
    /// Watches for a lost Lease; it holds the last receiver of the Lease task's channel.
    watcher: tokio::task::JoinHandle<()>,
    lease_task: LeaseTask,
}

type LeaseTask =
    tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>;

impl Leadership {
    pub async fn release(self) {
        // Dropping the last receiver tells the Lease task to release the Lease and stop.
        self.watcher.abort();
        let _ = self.watcher.await;
        release_lease(self.lease_task).await;
    }
}

/// Wait (5 s at most) for the Lease task, whose channel is closed, to release the Lease.
/// Released, a standby takes over at once instead of after the Lease expires.
async fn release_lease(task: LeaseTask) {
    match tokio::time::timeout(Duration::from_secs(5), task).await {
        Ok(Ok(Ok(_))) => info!("leader Lease released"),
        Ok(Ok(Err(e))) => {
            warn!(error = %e, "releasing the leader Lease failed; it expires on its own")
        }
        Ok(Err(e)) => warn!(error = %e, "the leader Lease task failed"),
        Err(_) => warn!("the leader Lease was not released within 5 s; it expires on its own"),
    }
}
