//! The BlockSight controller: [`reconcile`] is a pipeline of steps, a call each:
//!
//! 1. admit: skip malformed and deleted objects, wait for the caches' first list;
//! 2. validate ([`crate::validate`], pure, memoized per generation) into a `ValidBlockSight`;
//! 3. observe: what the chain probes last found, and the backup facts ([`backup_status`]);
//! 4. desired ([`crate::desired`], pure) and apply ([`apply`]): create missing credentials,
//!    server-side apply what differs from the watch caches (config before workloads), prune
//!    what is no longer desired; then the volume snapshots ([`snapshots`]);
//! 5. status ([`status`], pure): computed from what was applied, written only when it changed;
//! 6. events: one per transition a user cares about; then metrics, and the next look.

pub mod backup_status;
pub mod snapshots;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use crate::controller::backup as backups;
pub use crate::controller::error::Error;
use crate::controller::error::Step;
use crate::controller::shared::{apply, context};
use crate::controller::{Context, bounded, second_precision};
use crate::crd::ConditionType;

use crate::chain::Observation;
use crate::chain::poller::ProbePlan;
use crate::crd::{BlockSight, BlockSightStatus};
use crate::desired::{self, secrets};
use crate::validate;
use status::Outcome;

/// Drop what the operator holds about a BlockSight that is being deleted or is gone: its
/// chain probes, its metric series (a deleted instance must not keep reporting a phase)
/// and its memos. Called by reconcile when it sees a deletionTimestamp, and by the
/// BlockSight watch when it sees a deletion (without a finalizer, reconcile never sees one).
pub fn forget(ctx: &Context, namespace: &str, name: &str, uid: &str) {
    let key = (namespace.to_owned(), name.to_owned());
    ctx.poller.stop(&key);
    ctx.metrics.forget_instance(namespace, name);
    ctx.pruned.forget(uid);
    ctx.validated.forget(namespace, name);
    ctx.clear_failures(&BlockSight::kind(&()), namespace, name);
}

/// Reconcile one BlockSight: the pipeline of the module documentation, a call per step.
pub async fn reconcile(
    guard: Arc<DeserializeGuard<BlockSight>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let bs = match admit(&guard, &ctx).await {
        Ok(bs) => bs,
        Err(action) => return Ok(action),
    };
    let _timer = ctx.metrics.reconcile_timer();
    let now_ts = (ctx.clock)();
    let (observed, applied) = match ctx.validated.validate(bs) {
        Err(invalid) => (None, Applied::invalid(invalid)),
        Ok(valid) => {
            let observed = observe(&ctx, bs, &valid);
            let applied = apply(&ctx, bs, &valid, &observed, now_ts).await;
            (Some((valid, observed)), applied)
        }
    };
    let key = key_of(bs);
    // The status we wrote last, while the cached BlockSight does not show it yet: a
    // reconcile triggered by our own child writes must not write the same status again.
    let written = ctx
        .recent_status
        .newer_than_cache(&key, bs.resource_version().as_deref());
    let previous = written.as_deref().or(bs.status.as_ref());
    let now = second_precision(now_ts);
    let new_status = next_status(bs, previous, observed.as_ref(), &applied, &now);
    record_backup_metrics(&ctx, bs, previous, &new_status, observed.as_ref());
    if previous != Some(&new_status) {
        write_status(&ctx, bs, &key, &new_status).await?;
        publish_events(&ctx, bs, previous, &new_status).await;
    }
    record_instance_metrics(&ctx, bs, &new_status);
    finish(&ctx, bs, applied, now_ts)
}

/// What the observe step found of a valid BlockSight: what the chain probes last published
/// and the backup facts, all from memory and the caches.
struct Observed {
    chain: Observation,
    facts: backup_status::Facts,
}

/// What the apply and snapshot steps did.
struct Applied {
    outcome: Outcome,
    /// The apply's failure, or the invalid spec.
    error: Option<Error>,
    /// None: the snapshot step did not run (invalid or paused); status keeps what it had.
    snapshots: Option<snapshots::Report>,
    snapshot_error: Option<Error>,
}

impl Applied {
    fn invalid(invalid: validate::InvalidSpec) -> Self {
        Applied {
            outcome: Outcome::Invalid(invalid.clone()),
            error: Some(Error::InvalidSpec(invalid)),
            snapshots: None,
            snapshot_error: None,
        }
    }
}

fn key_of(bs: &BlockSight) -> (String, String) {
    (bs.namespace().unwrap_or_default(), bs.name_any())
}

/// The BlockSight to reconcile, or the action instead: a malformed object waits for an edit,
/// nothing is decided before the caches have listed, and a deleted one is forgotten.
async fn admit<'g>(
    guard: &'g DeserializeGuard<BlockSight>,
    ctx: &Context,
) -> Result<&'g BlockSight, Action> {
    let bs = match &guard.0 {
        Ok(bs) => bs,
        Err(invalid) => {
            // One malformed object must not stop the others: report it and wait for an edit.
            warn!(name = ?invalid.metadata.name, namespace = ?invalid.metadata.namespace, error = %invalid.error, "malformed BlockSight");
            ctx.metrics.record_failure("malformed_object");
            return Err(Action::await_change());
        }
    };
    // Decisions come from the caches: never act on a cache that has not listed yet (a
    // restarted operator would otherwise re-apply everything it cannot see).
    if ctx.caches.wait_until_ready().await.is_err() {
        return Err(Action::requeue(Duration::from_secs(1)));
    }
    if bs.meta().deletion_timestamp.is_some() {
        // Children go with their owner reference; PVCs and credentials follow deletionPolicy.
        let (namespace, name) = key_of(bs);
        forget(ctx, &namespace, &name, &bs.uid().unwrap_or_default());
        return Err(Action::await_change());
    }
    Ok(bs)
}

/// Observe: what the chain probes last found (they run beside the controller; this only
/// reads them) and the backup facts.
fn observe(ctx: &Context, bs: &BlockSight, valid: &validate::ValidBlockSight) -> Observed {
    ctx.poller.ensure(ProbePlan::for_blocksight(valid));
    let chain = ctx
        .poller
        .observation(&key_of(bs))
        .unwrap_or_else(|| Observation::initial(valid));
    let facts = backup_status::observe(ctx, valid, bs.status.as_ref());
    Observed { chain, facts }
}

/// Desired and apply (nothing while paused), then the volume snapshots.
async fn apply(
    ctx: &Context,
    bs: &BlockSight,
    valid: &validate::ValidBlockSight,
    observed: &Observed,
    now_ts: jiff::Timestamp,
) -> Applied {
    if valid.paused {
        return Applied {
            outcome: Outcome::Paused,
            error: None,
            snapshots: None,
            snapshot_error: None,
        };
    }
    let (outcome, error) = apply_pipeline(ctx, bs, valid, &observed.chain, &observed.facts).await;
    // Independent of the apply's result: an unrelated failure must not stop the chain data
    // from being snapshotted.
    let snapshots = bounded(
        ctx,
        Step::VolumeSnapshots,
        snapshots::run(ctx, valid, &bs.object_ref(&()), now_ts),
    )
    .await;
    if valid.volume_snapshots.is_none() {
        let (namespace, name) = key_of(bs);
        ctx.metrics.forget_snapshots(&namespace, &name);
    }
    let (snapshots, snapshot_error) = match snapshots {
        Ok((report, error)) => (Some(report), error.map(Error::from)),
        // No report: status keeps what it said about snapshots.
        Err(timeout) => (None, Some(Error::from(timeout))),
    };
    Applied {
        outcome,
        error,
        snapshots,
        snapshot_error,
    }
}

/// Status (pure): computed from what was applied, what the workloads and probes report, the
/// snapshots and the backups.
fn next_status(
    bs: &BlockSight,
    previous: Option<&BlockSightStatus>,
    observed: Option<&(validate::ValidBlockSight, Observed)>,
    applied: &Applied,
    now: &Time,
) -> BlockSightStatus {
    let chain = observed
        .map(|(_, o)| &o.chain)
        .filter(|_| matches!(applied.outcome, Outcome::Applied { .. }));
    let generation = bs.meta().generation;
    let mut new_status =
        status::compute(previous, generation, &applied.outcome, chain, now.clone());
    match &applied.snapshots {
        Some(report) => {
            snapshots::apply_to_status(&mut new_status, previous, report, generation, now)
        }
        None => new_status.conditions.extend(
            previous
                .iter()
                .flat_map(|p| &p.conditions)
                .filter(|c| c.type_ == ConditionType::VolumeSnapshotsScheduled.as_str())
                .cloned(),
        ),
    }
    if let Some((valid, observed)) = observed {
        let facts = &observed.facts;
        let section = backup_status::section(previous.and_then(|p| p.backup.as_ref()), facts);
        let previous_conditions = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
        let extra = backup_status::conditions(
            valid,
            facts,
            section.as_ref(),
            previous_conditions,
            generation,
            now,
        );
        new_status.conditions.retain(|c| {
            c.type_ != ConditionType::Restoring.as_str()
                && c.type_ != ConditionType::BackupHealthy.as_str()
        });
        new_status.conditions.extend(extra);
        new_status.backup = section;
    }
    new_status
}

/// The backup metrics, from the status section just computed.
fn record_backup_metrics(
    ctx: &Context,
    bs: &BlockSight,
    previous: Option<&BlockSightStatus>,
    new_status: &BlockSightStatus,
    observed: Option<&(validate::ValidBlockSight, Observed)>,
) {
    let Some((valid, observed)) = observed else {
        return;
    };
    let (namespace, name) = key_of(bs);
    backup_status::record_metrics(
        &ctx.metrics,
        &namespace,
        &name,
        previous.and_then(|p| p.backup.as_ref()),
        new_status.backup.as_ref(),
        &observed.facts.backups,
        valid.backup.as_ref().is_some_and(|b| b.scheduled),
    );
}

/// Write the status (the caller checked that it changed), and remember it until the cache
/// shows it.
async fn write_status(
    ctx: &Context,
    bs: &BlockSight,
    key: &(String, String),
    new_status: &BlockSightStatus,
) -> Result<(), Error> {
    let api: Api<BlockSight> = Api::namespaced(ctx.client.clone(), &key.0);
    let after = bounded(ctx, Step::Status, status::write(&api, &key.1, new_status)).await??;
    ctx.recent_status.record(
        key.clone(),
        Arc::new(new_status.clone()),
        context::Versions {
            before: bs.resource_version(),
            after,
        },
    );
    Ok(())
}

/// Events for the transitions between `previous` and `new_status`: best effort, and bounded
/// so they never hold the reconcile.
async fn publish_events(
    ctx: &Context,
    bs: &BlockSight,
    previous: Option<&BlockSightStatus>,
    new_status: &BlockSightStatus,
) {
    let events = async {
        publish_transitions(ctx, bs, previous, new_status).await;
        snapshots::announce_missing_api(ctx, &bs.object_ref(&()), previous, new_status).await;
    };
    if let Err(e) = bounded(ctx, Step::Events, events).await {
        warn!(error = %e, "publishing events");
    }
}

fn record_instance_metrics(ctx: &Context, bs: &BlockSight, new_status: &BlockSightStatus) {
    let (namespace, name) = key_of(bs);
    let components: Vec<(String, i32, i32)> = new_status
        .components
        .iter()
        .map(|(c, s)| (c.clone(), s.desired_replicas, s.ready_replicas))
        .collect();
    ctx.metrics.record_instance(
        &namespace,
        &name,
        new_status.phase.unwrap_or(crate::crd::Phase::Pending),
        &components,
    );
}

/// The result: the first failure, or the next look (the resync, or the next snapshot slot).
fn finish(
    ctx: &Context,
    bs: &BlockSight,
    applied: Applied,
    now_ts: jiff::Timestamp,
) -> Result<Action, Error> {
    if let (Some(_), Some(e)) = (&applied.error, &applied.snapshot_error) {
        // Reported through the first error; this one is retried with it.
        warn!(error = %e, "volume snapshots");
    }
    match applied.error.or(applied.snapshot_error) {
        Some(e) => Err(e),
        None => {
            let (namespace, name) = key_of(bs);
            ctx.clear_failures(&BlockSight::kind(&()), &namespace, &name);
            let next_slot = applied.snapshots.and_then(|r| r.next_due);
            Ok(Action::requeue(requeue_after(
                ctx.resync, now_ts, next_slot,
            )))
        }
    }
}

/// The resync, or sooner when a snapshot slot comes first (a second after it, so the slot
/// has begun whatever the timer's precision).
pub fn requeue_after(
    resync: Duration,
    now: jiff::Timestamp,
    next_slot: Option<jiff::Timestamp>,
) -> Duration {
    next_slot
        .and_then(|slot| Duration::try_from(slot.duration_since(now)).ok())
        .map(|until| (until + Duration::from_secs(1)).min(resync))
        .unwrap_or(resync)
}

/// Build with the API gate from what the probes found, apply, and observe the workloads.
async fn apply_pipeline(
    ctx: &Context,
    bs: &BlockSight,
    valid: &validate::ValidBlockSight,
    observed: &Observation,
    facts: &backup_status::Facts,
) -> (Outcome, Option<Error>) {
    let namespace = &valid.namespace;
    // Once serving, the API keeps serving: a database hiccup must not scale it to zero.
    let serving = ctx
        .caches
        .deployment(namespace, &desired::Component::Api.child_name(valid))
        .is_some_and(|d| d.replicas.unwrap_or(1) > 0);
    // A restore replaces the database under the API: it serves nobody meanwhile.
    let gates = desired::Gates {
        api_serving: !facts.hold_api()
            && (serving || (observed.database_ready() && observed.cache_ready())),
    };
    let desired = desired::build_gated(valid, &ctx.settings, gates);
    let mut result = bounded(ctx, Step::Apply, apply_all(ctx, bs, valid, &desired))
        .await
        .unwrap_or_else(|timeout| Err(timeout.into()));
    if result.is_ok() {
        result = start_restore_from(ctx, valid, observed, facts).await;
    }
    let workloads = status::observe(
        &desired.children,
        |n| ctx.caches.stateful_set(namespace, n),
        |n| ctx.caches.deployment(namespace, n),
    );
    let volumes = status::observe_volumes(
        &desired.children,
        |n| ctx.caches.stateful_set(namespace, n),
        |n| ctx.caches.stateful_volume(namespace, n),
    );
    match result {
        Ok(()) => (
            Outcome::Applied {
                workloads,
                failure: None,
                volumes,
            },
            None,
        ),
        Err(e) => {
            let failure = Some((e.reason().to_owned(), e.to_string()));
            (
                Outcome::Applied {
                    workloads,
                    failure,
                    volumes,
                },
                Some(e),
            )
        }
    }
}

async fn apply_all(
    ctx: &Context,
    bs: &BlockSight,
    valid: &validate::ValidBlockSight,
    desired: &desired::Desired,
) -> Result<(), Error> {
    // Only what the operator generates: Secrets the user provides are never written.
    let names = secrets::generated_names(valid);
    let created = apply::ensure_credentials(
        ctx,
        &valid.namespace,
        valid.rotation.as_deref(),
        || secrets::generate(valid, &mut rand::rng()),
        &names,
    )
    .await?;
    for name in created {
        info!(secret = %name, "generated credentials");
    }
    let uid = bs.uid().unwrap_or_default();
    apply::apply_children(ctx, &valid.namespace, &uid, desired).await?;
    if valid.backup.as_ref().is_some_and(|b| b.scheduled) {
        for name in backups::adopt_scheduled(ctx, &valid.namespace, &valid.name).await? {
            info!(backup = %name, "scheduled backup recorded");
        }
    }
    let restored_from = bs
        .status
        .as_ref()
        .and_then(|s| s.backup.as_ref())
        .and_then(|b| b.restored_from.as_deref());
    for name in backups::apply_retention(ctx, valid, restored_from).await? {
        info!(backup = %name, "outside the retention policy: deleted with its data");
    }
    Ok(())
}

/// spec.postgres.restoreFrom: once the new database is up, the Job that restores it.
async fn start_restore_from(
    ctx: &Context,
    valid: &validate::ValidBlockSight,
    observed: &Observation,
    facts: &backup_status::Facts,
) -> Result<(), Error> {
    let source = valid.restore_from.as_ref().and_then(|from| {
        ctx.caches
            .backups
            .get(&kube::runtime::reflector::ObjectRef::new(from).within(&valid.namespace))
            .map(|b| b.spec.block_sight.clone())
    });
    let Some(job) = backup_status::restore_from_job(
        valid,
        facts,
        observed.database_ready(),
        source.as_deref(),
        &ctx.settings,
    ) else {
        return Ok(());
    };
    let name = job.name_any();
    let cached_version = ctx
        .caches
        .jobs
        .get(&kube::runtime::reflector::ObjectRef::new(&name).within(&valid.namespace))
        .and_then(|j| j.resource_version());
    if ctx.recent_writes.contains(
        "Job",
        &valid.namespace,
        &name,
        "",
        cached_version.as_deref(),
    ) {
        return Ok(());
    }
    backups::apply_job(ctx, &valid.namespace, &job).await?;
    let versions = context::Versions {
        before: cached_version,
        after: None,
    };
    ctx.recent_writes
        .record("Job", &valid.namespace, &name, "", versions);
    Ok(())
}

/// Events for the condition changes a user cares about (only on transitions, so a steady
/// state emits none).
async fn publish_transitions(
    ctx: &Context,
    bs: &BlockSight,
    old: Option<&BlockSightStatus>,
    new: &BlockSightStatus,
) {
    let flipped_on = |kind: &str| {
        status::condition_status(Some(new), kind) == Some("True")
            && status::condition_status(old, kind) != Some("True")
    };
    let message = |kind: &str| {
        new.conditions
            .iter()
            .find(|c| c.type_ == kind)
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    let mut events = Vec::new();
    if flipped_on(ConditionType::InvalidSpec.as_str()) {
        let (_, note) = message(ConditionType::InvalidSpec.as_str()).unwrap_or_default();
        events.push((EventType::Warning, "InvalidSpec".to_owned(), note));
    }
    // A service that stays unreachable for several polls (its condition turns Unknown with
    // reason Unreachable).
    for kind in [
        ConditionType::ChainSynced.as_str(),
        ConditionType::IndexSynced.as_str(),
        ConditionType::DatabaseReady.as_str(),
        ConditionType::CacheReady.as_str(),
    ] {
        let reason_of = |s: Option<&BlockSightStatus>| {
            s.and_then(|s| s.conditions.iter().find(|c| c.type_ == kind))
                .map(|c| c.reason.clone())
        };
        if reason_of(Some(new)).as_deref() == Some("Unreachable")
            && reason_of(old).as_deref() != Some("Unreachable")
        {
            let (_, note) = message(kind).unwrap_or_default();
            events.push((EventType::Warning, "ServiceUnreachable".to_owned(), note));
        }
    }
    if flipped_on(ConditionType::Degraded.as_str()) {
        let (reason, note) = message(ConditionType::Degraded.as_str()).unwrap_or_default();
        events.push((EventType::Warning, reason, note));
    }
    if flipped_on(ConditionType::Ready.as_str()) {
        events.push((
            EventType::Normal,
            "Ready".to_owned(),
            "every component is rolled out and ready".to_owned(),
        ));
    }
    if flipped_on(ConditionType::Paused.as_str()) {
        events.push((
            EventType::Normal,
            "Paused".to_owned(),
            "spec.paused is true: children are not changed".to_owned(),
        ));
    } else if status::condition_status(old, ConditionType::Paused.as_str()) == Some("True")
        && status::condition_status(Some(new), ConditionType::Paused.as_str()) != Some("True")
    {
        events.push((
            EventType::Normal,
            "Resumed".to_owned(),
            "spec.paused is false again".to_owned(),
        ));
    }
    for (kind, reason) in [
        (ConditionType::ChainSynced.as_str(), "ChainSynced"),
        (ConditionType::IndexSynced.as_str(), "IndexSynced"),
    ] {
        if flipped_on(kind) && message(kind).is_some_and(|(r, _)| r == "Synced") {
            let (_, note) = message(kind).unwrap_or_default();
            events.push((EventType::Normal, reason.to_owned(), note));
        }
    }
    for (warning, reason, note) in
        backup_status::events(old.and_then(|o| o.backup.as_ref()), new.backup.as_ref())
    {
        let type_ = if warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        events.push((type_, reason.to_owned(), note));
    }
    let reason_of = |s: Option<&BlockSightStatus>, kind: &str| {
        s.and_then(|s| s.conditions.iter().find(|c| c.type_ == kind))
            .map(|c| c.reason.clone())
    };
    if reason_of(Some(new), ConditionType::Restoring.as_str()).as_deref()
        == Some("RestoreFromBlocked")
        && reason_of(old, ConditionType::Restoring.as_str()).as_deref()
            != Some("RestoreFromBlocked")
    {
        let (_, note) = message(ConditionType::Restoring.as_str()).unwrap_or_default();
        events.push((EventType::Warning, "RestoreFromBlocked".to_owned(), note));
    }
    // One event per reason: an unreachable service flips its condition and Degraded together.
    let mut seen = std::collections::BTreeSet::new();
    events.retain(|(type_, reason, _)| seen.insert((*type_ == EventType::Warning, reason.clone())));
    let reference = bs.object_ref(&());
    for (type_, reason, note) in events {
        // Events are best effort: publish logs a failure and never fails the reconcile.
        ctx.publish(
            &reference,
            "Reconcile",
            type_ == EventType::Warning,
            &reason,
            note,
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_slot_before_the_resync_brings_the_requeue_forward() {
        let now: jiff::Timestamp = "2026-11-29T03:58:00Z".parse().unwrap();
        let resync = Duration::from_secs(300);
        let slot = "2026-11-29T04:00:00Z".parse().unwrap();
        assert_eq!(
            requeue_after(resync, now, Some(slot)),
            Duration::from_secs(121)
        );
        let far = "2026-12-06T04:00:00Z".parse().unwrap();
        assert_eq!(requeue_after(resync, now, Some(far)), resync);
        assert_eq!(requeue_after(resync, now, None), resync);
    }
}
