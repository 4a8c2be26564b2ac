//! The three controllers, wired to their triggers: what wakes each custom resource's
//! reconciler (`controller::{blocksight, backup, restore}`), with what concurrency, until
//! shutdown.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::core::DeserializeGuard;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::ObjectRef;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::watches::Watches;
use crate::controller::backup::BackupContext;
use crate::controller::{Context, backup, blocksight, error_policy, reconciled, restore};
use crate::crd::{BlockSight, BlockSightBackup, BlockSightRestore};
use crate::desired::volume_snapshot;
use crate::names::{BACKUP_LABEL, INSTANCE_LABEL, JOB_NAME_LABEL, PURPOSE_LABEL, RESTORE_LABEL};

/// The BlockSight named by a label or field, in `namespace`.
fn instance_ref(
    name: Option<&String>,
    namespace: Option<String>,
) -> Option<ObjectRef<DeserializeGuard<BlockSight>>> {
    Some(ObjectRef::new(name?).within(&namespace?))
}

/// The BlockSightBackup a backup Job or pod serves: the one its label names (on-demand,
/// safety and delete Jobs), else the one named after a backup Job (scheduled).
fn backup_of(
    labels: &std::collections::BTreeMap<String, String>,
    job: String,
    namespace: Option<String>,
) -> Option<ObjectRef<BlockSightBackup>> {
    let name = match labels.get(BACKUP_LABEL) {
        Some(name) => name.clone(),
        None if labels.get(PURPOSE_LABEL).map(String::as_str) == Some("backup") => job,
        None => return None,
    };
    Some(ObjectRef::new(&name).within(&namespace?))
}

/// How long the controller waits for a burst of triggers on one BlockSight to end.
const RECONCILE_DEBOUNCE: Duration = Duration::from_millis(500);

/// BlockSights reconciled at once. Unbounded, a thousand BlockSights created together
/// open a thousand requests (and, over HTTP/1.1, connections whose buffers stay pooled);
/// a few in flight already keep the API server's write path busy.
const RECONCILE_CONCURRENCY: u16 = 16;

/// Run the three controllers until `shutdown`; the chain probes' reconcile requests come in
/// on `requests`.
pub async fn run(
    watches: Watches,
    ctx: Arc<Context>,
    requests: futures::stream::BoxStream<'static, ObjectRef<DeserializeGuard<BlockSight>>>,
    shutdown: &CancellationToken,
    namespace: Option<&str>,
) {
    let Watches {
        caches,
        primary,
        blocksights,
        compact,
        custom,
        secrets,
        stateful_sets,
        deployments,
        stateful_volumes,
        volume_snapshots,
        jobs: [job_for_backups, job_for_blocksights, job_for_restores],
        pods: pod_for_backups,
        backups:
            [
                backup_for_backups,
                backup_for_blocksights,
                backup_for_restores,
            ],
        restores: [restore_for_blocksights, restore_for_restores],
        ..
    } = watches;
    // Applying a BlockSight's children triggers it again once per child event; a short
    // trailing debounce folds those bursts into one reconcile (a quiet object is never
    // delayed by more than this).
    let mut controller = Controller::for_stream(blocksights, primary.clone()).with_config(
        controller::Config::default()
            .debounce(RECONCILE_DEBOUNCE)
            .concurrency(RECONCILE_CONCURRENCY),
    );
    for (resource, stream) in compact {
        controller = controller.owns_stream_with(stream, resource);
    }
    for (resource, stream) in custom {
        controller = controller.owns_stream_with(stream, resource);
    }
    let controller = controller
        .owns_stream(secrets)
        .owns_stream(stateful_sets)
        .owns_stream(deployments)
        // A StatefulSet's PVCs belong to it, not to the BlockSight: map them by label, so
        // a resize in progress or done updates status.volumes.
        .watches_stream(stateful_volumes, |pvc: PersistentVolumeClaim| {
            instance_ref(pvc.labels().get(INSTANCE_LABEL), pvc.namespace())
        })
        // Snapshots are not owned under deletionPolicy Retain: map them by their labels, so
        // one becoming ready or failing updates the BlockSight's status.
        .watches_stream_with(
            volume_snapshots,
            |snapshot: DynamicObject| {
                let instance = snapshot.labels().get(INSTANCE_LABEL).cloned();
                let namespace = snapshot.namespace();
                instance
                    .zip(namespace)
                    .map(|(name, namespace)| ObjectRef::new(&name).within(&namespace))
            },
            volume_snapshot::resource(),
        )
        // Scheduled backup Jobs (adopted as BlockSightBackups), drills, backups and restores
        // of a BlockSight feed its status.backup and gate its API.
        .watches_shared_stream(job_for_blocksights, |job: Arc<Job>| {
            instance_ref(job.labels().get(INSTANCE_LABEL), job.namespace())
        })
        .watches_shared_stream(backup_for_blocksights, |b: Arc<BlockSightBackup>| {
            instance_ref(Some(&b.spec.block_sight), b.namespace())
        })
        .watches_shared_stream(restore_for_blocksights, |r: Arc<BlockSightRestore>| {
            instance_ref(Some(&r.spec.block_sight), r.namespace())
        })
        // The chain probes ask for a reconcile when what they found changed.
        .reconcile_on(requests);

    let backup_ctx = Arc::new(BackupContext {
        ctx: ctx.clone(),
        blocksights: primary,
    });
    let backup_controller = Controller::for_shared_stream(backup_for_backups, caches.backups)
        .watches_shared_stream(job_for_backups, |job: Arc<Job>| {
            backup_of(job.labels(), job.name_any(), job.namespace())
        })
        .watches_shared_stream(pod_for_backups, |pod: Arc<Pod>| {
            let job = pod
                .labels()
                .get(JOB_NAME_LABEL)
                .cloned()
                .unwrap_or_default();
            backup_of(pod.labels(), job, pod.namespace())
        })
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(
            |o, c| reconciled(o, c, backup::reconcile),
            error_policy,
            backup_ctx.clone(),
        )
        .for_each(|result| log_runtime_error("backup controller", result));
    // Restores: woken by their Jobs, their safety backup, and the API Deployment draining.
    let restores = caches.restores;
    let restore_controller = Controller::for_shared_stream(restore_for_restores, restores.clone())
        .watches_shared_stream(job_for_restores, |job: Arc<Job>| {
            let name = job.labels().get(RESTORE_LABEL)?.clone();
            Some(ObjectRef::<BlockSightRestore>::new(&name).within(&job.namespace()?))
        })
        .watches_shared_stream(backup_for_restores, move |b: Arc<BlockSightBackup>| {
            let namespace = b.namespace();
            restores
                .state()
                .iter()
                .filter(|r| {
                    r.namespace() == namespace
                        && (r.spec.backup == b.name_any()
                            || restore::safety_backup_name(&r.name_any()) == b.name_any())
                })
                .map(|r| ObjectRef::from_obj(r.as_ref()))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(
            |o, c| reconciled(o, c, restore::reconcile),
            error_policy,
            backup_ctx,
        )
        .for_each(|result| log_runtime_error("restore controller", result));
    info!(
        namespace = namespace.unwrap_or("<all>"),
        "starting the controller"
    );
    let blocksight_controller = controller
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(blocksight::reconcile, error_policy, ctx)
        .for_each(|result| log_runtime_error("controller", result));
    futures::join!(blocksight_controller, backup_controller, restore_controller);
}

/// Reconcile errors are logged by the error policies; these are the runtime's own.
async fn log_runtime_error<T, E: std::error::Error, Q: std::error::Error>(
    name: &'static str,
    result: Result<T, controller::Error<E, Q>>,
) {
    match result {
        Ok(_) | Err(controller::Error::ReconcilerFailed(..)) => {}
        Err(other) => warn!(error = %other, "{name}"),
    }
}
