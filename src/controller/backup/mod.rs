//! BlockSightBackup lifecycle. Every backup is one Job and one BlockSightBackup of the same
//! name: the operator creates the Job of a BlockSightBackup that has none (on demand), and
//! the BlockSightBackup of a Job the backup CronJob made (see [`scheduled_to_adopt`]). The
//! status follows the Job; a Job that disappears before it finished fails its backup (it is
//! never left Running). A finalizer deletes the backup's data with the object.
//!
//! The decisions are pure ([`plan`]); [`reconcile`] only reads the caches and carries them
//! out.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use tracing::info;

use crate::controller::shared::context::Context;
use crate::controller::shared::jobs::{JobState, job_state, pods_of};
use crate::crd::{BackupPhase, BlockSight, BlockSightBackup, BlockSightBackupStatus};
use crate::desired::backup::{self as builder, Purpose, Task};
use crate::names::{BACKUP_LABEL, FIELD_MANAGER, FINALIZER, TRIGGER_LABEL};
use crate::validate::{self, ValidBlockSight};

/// The state of a BlockSightBackup's world, from the caches.
pub struct Observed<'a> {
    /// The validated BlockSight, or why there is none usable.
    pub blocksight: Result<&'a ValidBlockSight, String>,
    /// The Job named after the backup and its state.
    pub job: Option<JobState>,
    /// The delete Job `<name>-del` and its state.
    pub delete_job: Option<JobState>,
    pub now: Time,
}

/// One write the reconcile makes.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    AddFinalizer,
    RemoveFinalizer,
    /// Server-side apply of a Job (create).
    ApplyJob(Box<Job>),
    DeleteJob(String),
    Event {
        warning: bool,
        reason: &'static str,
        note: String,
    },
}

/// What to do with one BlockSightBackup, and the status it should then have.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub status: BlockSightBackupStatus,
}

/// The trigger of `bsb` for its status.
fn trigger(bsb: &BlockSightBackup) -> String {
    bsb.labels()
        .get(TRIGGER_LABEL)
        .cloned()
        .unwrap_or_else(|| "OnDemand".to_owned())
}

fn failed(mut status: BlockSightBackupStatus, error: String, at: Time) -> BlockSightBackupStatus {
    status.phase = Some(BackupPhase::Failed);
    status.error = Some(error);
    status.completed_at.get_or_insert(at);
    status
}

/// The status a Job's state gives the backup.
fn follow(
    mut status: BlockSightBackupStatus,
    state: &JobState,
    now: &Time,
) -> BlockSightBackupStatus {
    match state {
        JobState::Pending => {
            status.phase = Some(BackupPhase::Pending);
        }
        JobState::Running { started } => {
            status.phase = Some(BackupPhase::Running);
            status.started_at = started.clone().or(status.started_at);
        }
        JobState::Succeeded {
            started,
            finished,
            result,
        } => {
            status.phase = Some(BackupPhase::Completed);
            status.started_at = started.clone().or(status.started_at);
            status.completed_at = finished.clone().or_else(|| Some(now.clone()));
            if let Some(r) = result {
                status.location = r.get("location").and_then(Value::as_str).map(str::to_owned);
                status.size_bytes = r.get("sizeBytes").and_then(Value::as_u64);
                status.sha256 = r.get("sha256").and_then(Value::as_str).map(str::to_owned);
            }
            status.error = None;
        }
        JobState::Failed {
            started,
            finished,
            reason,
            ..
        } => {
            status.started_at = started.clone().or(status.started_at);
            status.completed_at = finished.clone();
            status = failed(status, reason.clone(), now.clone());
        }
    }
    status
}

/// Decide what to do with `bsb`. Pure.
pub fn plan(
    bsb: &BlockSightBackup,
    observed: &Observed<'_>,
    settings: &crate::desired::BuildSettings,
) -> Plan {
    let name = bsb.name_any();
    let previous = bsb.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    status.trigger.get_or_insert_with(|| trigger(bsb));
    let mut steps = Vec::new();
    let has_finalizer = bsb.finalizers().iter().any(|f| f == FINALIZER);
    let phase = previous.phase;
    let finished = matches!(phase, Some(BackupPhase::Completed | BackupPhase::Failed));

    if bsb.meta().deletion_timestamp.is_some() {
        if !has_finalizer {
            return Plan { steps, status };
        }
        // The backup's own Job goes first, and the finalizer only once it is gone: a Job of
        // the backup CronJob still listed without its BlockSightBackup would be recorded
        // again as a new backup (see scheduled_to_adopt).
        let job_gone = observed.job.is_none();
        if phase != Some(BackupPhase::Completed) {
            // Nothing usable was stored; a Job still running is stopped, so it cannot finish
            // a backup nobody lists any more.
            if job_gone {
                steps.push(Step::RemoveFinalizer);
            } else {
                steps.push(Step::DeleteJob(name.clone()));
            }
            return Plan { steps, status };
        }
        match (&observed.delete_job, &observed.blocksight) {
            (Some(JobState::Succeeded { .. }), _) if job_gone => steps.push(Step::RemoveFinalizer),
            (Some(JobState::Succeeded { .. }), _) => steps.push(Step::DeleteJob(name.clone())),
            (Some(JobState::Failed { reason, .. }), _) => {
                let error = format!(
                    "deleting the backup's data failed: {reason}; delete Job {} to retry, or remove the finalizer {FINALIZER} to keep the data and forget the backup",
                    builder::delete_job_name(&name)
                );
                if status.error.as_deref() != Some(error.as_str()) {
                    steps.push(Step::Event {
                        warning: true,
                        reason: "DeleteFailed",
                        note: error.clone(),
                    });
                }
                status.error = Some(error);
            }
            (Some(_), _) => {}
            (None, Ok(bs)) => match &bs.backup {
                Some(backup) => {
                    let owner = bsb.controller_owner_ref(&());
                    steps.push(Step::ApplyJob(Box::new(builder::job(
                        bs,
                        backup,
                        settings,
                        &builder::delete_job_name(&name),
                        &Task::Delete {
                            backup: name.clone(),
                            from: bsb.spec.block_sight.clone(),
                        },
                        owner,
                        &[(BACKUP_LABEL, &name)],
                    ))));
                }
                None => {
                    status.error = Some(format!(
                        "cannot delete the data: BlockSight {} has no spec.backup.destination; remove the finalizer {FINALIZER} to forget the backup",
                        bsb.spec.block_sight
                    ))
                }
            },
            (None, Err(why)) => {
                status.error = Some(format!(
                    "cannot delete the data: {why}; remove the finalizer {FINALIZER} to forget the backup and keep its data"
                ))
            }
        }
        return Plan { steps, status };
    }

    if !has_finalizer {
        steps.push(Step::AddFinalizer);
    }
    if finished {
        return Plan { steps, status };
    }
    match &observed.job {
        Some(state) => status = follow(status, state, &observed.now),
        None if phase == Some(BackupPhase::Running) => {
            status = failed(
                status,
                format!("the backup Job {name} (or its pod) was deleted before it finished"),
                observed.now.clone(),
            );
        }
        None => match &observed.blocksight {
            Err(why) => status = failed(status, why.to_owned(), observed.now.clone()),
            Ok(bs) => match &bs.backup {
                None => {
                    status = failed(
                        status,
                        format!(
                            "BlockSight {} has no spec.backup.destination: nowhere to store a backup",
                            bs.name
                        ),
                        observed.now.clone(),
                    )
                }
                Some(backup) => {
                    steps.push(Step::ApplyJob(Box::new(builder::job(
                        bs,
                        backup,
                        settings,
                        &name,
                        &Task::Dump,
                        bsb.controller_owner_ref(&()),
                        &[(BACKUP_LABEL, &name)],
                    ))));
                    status.phase = Some(BackupPhase::Pending);
                    status.job_name = Some(name.clone());
                }
            },
        },
    }
    if status.job_name.is_none() && observed.job.is_some() {
        status.job_name = Some(name.clone());
    }
    if status.phase != previous.phase {
        match status.phase {
            Some(BackupPhase::Completed) => steps.push(Step::Event {
                warning: false,
                reason: "BackupCompleted",
                note: format!(
                    "backup {name} completed: {} bytes at {}",
                    status.size_bytes.unwrap_or(0),
                    status.location.as_deref().unwrap_or("?")
                ),
            }),
            Some(BackupPhase::Failed) => steps.push(Step::Event {
                warning: true,
                reason: "BackupFailed",
                note: status.error.clone().unwrap_or_default(),
            }),
            _ => {}
        }
    }
    Plan { steps, status }
}

/// Jobs the backup CronJob of a BlockSight made that have no BlockSightBackup yet: the
/// BlockSightBackups to create for them (named after the Job, trigger Scheduled).
pub fn scheduled_to_adopt(
    blocksight: &str,
    namespace: &str,
    jobs: &[Arc<Job>],
    backups: &[Arc<BlockSightBackup>],
) -> Vec<BlockSightBackup> {
    let cron_job = format!("{blocksight}-backup");
    jobs.iter()
        .filter(|j| j.namespace().as_deref() == Some(namespace))
        .filter(|j| j.meta().deletion_timestamp.is_none())
        .filter(|j| {
            j.labels()
                .get(crate::names::PURPOSE_LABEL)
                .map(String::as_str)
                == Some(Purpose::Backup.as_str())
                && j.owner_references()
                    .iter()
                    .any(|o| o.kind == "CronJob" && o.name == cron_job)
        })
        .filter(|j| {
            !backups.iter().any(|b| {
                b.name_any() == j.name_any() && b.namespace().as_deref() == Some(namespace)
            })
        })
        .map(|j| {
            let mut bsb = BlockSightBackup::new(
                &j.name_any(),
                crate::crd::BlockSightBackupSpec {
                    block_sight: blocksight.to_owned(),
                },
            );
            bsb.metadata.namespace = Some(namespace.to_owned());
            bsb.metadata.labels = Some(
                [
                    (TRIGGER_LABEL.to_owned(), "Scheduled".to_owned()),
                    (
                        crate::names::INSTANCE_LABEL.to_owned(),
                        blocksight.to_owned(),
                    ),
                ]
                .into(),
            );
            bsb
        })
        .collect()
}

/// Errors of the backup and restore controllers.
#[derive(Debug, thiserror::Error)]
pub enum BackupControllerError {
    #[error("{action} {kind} {name}: {source}")]
    Kube {
        action: &'static str,
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl BackupControllerError {
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kube { .. } => "backup_api",
        }
    }
}

fn kube_err(
    action: &'static str,
    kind: &'static str,
    name: &str,
) -> impl FnOnce(kube::Error) -> BackupControllerError {
    let name = name.to_owned();
    move |source| BackupControllerError::Kube {
        action,
        kind,
        name,
        source,
    }
}

impl crate::controller::ControllerContext for BackupContext {
    fn shared(&self) -> &Context {
        &self.ctx
    }
}

/// What the backup and restore controllers share besides [`Context`].
pub struct BackupContext {
    pub ctx: Arc<Context>,
    pub blocksights: Store<DeserializeGuard<BlockSight>>,
}

impl BackupContext {
    /// The BlockSight `name` validated, or why it cannot be used.
    pub fn valid_blocksight(&self, namespace: &str, name: &str) -> Result<ValidBlockSight, String> {
        let guard = self
            .blocksights
            .get(&ObjectRef::new(name).within(namespace))
            .ok_or_else(|| format!("BlockSight {name} does not exist in namespace {namespace}"))?;
        let bs = guard
            .0
            .as_ref()
            .map_err(|e| format!("BlockSight {name} is malformed: {}", e.error))?;
        validate::validate(bs).map_err(|e| format!("BlockSight {name} is invalid: {e}"))
    }

    pub fn job(&self, namespace: &str, name: &str) -> Option<Arc<Job>> {
        self.ctx
            .caches
            .jobs
            .get(&ObjectRef::new(name).within(namespace))
    }

    /// The state of Job `name`, running its program in `container`.
    pub fn job_state(&self, namespace: &str, name: &str, container: &str) -> Option<JobState> {
        let job = self.job(namespace, name)?;
        let pods: Vec<Arc<Pod>> = self.ctx.caches.pods.state();
        Some(job_state(&job, pods_of(&pods, name), container))
    }
}

/// Server-side apply of a Job the operator creates.
pub async fn apply_job(
    ctx: &Context,
    namespace: &str,
    job: &Job,
) -> Result<(), BackupControllerError> {
    let name = job.name_any();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(job),
    )
    .await
    .map_err(kube_err("creating", "Job", &name))?;
    info!(job = %name, "created");
    Ok(())
}

pub async fn delete_job(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<(), BackupControllerError> {
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(kube_err("deleting", "Job", name)(e)),
    }
}

/// Reconcile one BlockSightBackup.
pub async fn reconcile(
    bsb: Arc<BlockSightBackup>,
    bctx: Arc<BackupContext>,
) -> Result<Action, BackupControllerError> {
    let ctx = &bctx.ctx;
    if ctx.caches.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let namespace = bsb.namespace().unwrap_or_default();
    let name = bsb.name_any();
    let valid = bctx.valid_blocksight(&namespace, &bsb.spec.block_sight);
    let container = Purpose::Backup.as_str();
    let observed = Observed {
        blocksight: valid.as_ref().map_err(Clone::clone),
        job: bctx.job_state(&namespace, &name, container),
        delete_job: bctx.job_state(
            &namespace,
            &builder::delete_job_name(&name),
            Purpose::Delete.as_str(),
        ),
        now: crate::controller::now(),
    };
    let plan = plan(&bsb, &observed, &ctx.settings);
    let api: Api<BlockSightBackup> = Api::namespaced(ctx.client.clone(), &namespace);
    let reference = bsb.object_ref(&());
    for step in &plan.steps {
        match step {
            Step::AddFinalizer => {
                let patch = match bsb.meta().finalizers.as_ref() {
                    Some(current) => json!([
                        {"op": "test", "path": "/metadata/finalizers", "value": current},
                        {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER},
                    ]),
                    None => {
                        json!([{"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}])
                    }
                };
                let patch: json_patch::Patch = serde_json::from_value(patch).expect("a JSON patch");
                api.patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
                    .await
                    .map_err(kube_err(
                        "adding the finalizer to",
                        "BlockSightBackup",
                        &name,
                    ))?;
            }
            Step::RemoveFinalizer => {
                let index = bsb
                    .finalizers()
                    .iter()
                    .position(|f| f == FINALIZER)
                    .unwrap_or(0);
                let patch: json_patch::Patch = serde_json::from_value(json!([
                    {"op": "test", "path": format!("/metadata/finalizers/{index}"), "value": FINALIZER},
                    {"op": "remove", "path": format!("/metadata/finalizers/{index}")},
                ]))
                .expect("a JSON patch");
                match api
                    .patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => {
                        return Err(kube_err(
                            "removing the finalizer from",
                            "BlockSightBackup",
                            &name,
                        )(e));
                    }
                }
                info!(backup = %name, "data released; finalizer removed");
            }
            Step::ApplyJob(job) => apply_job(ctx, &namespace, job).await?,
            Step::DeleteJob(job) => delete_job(ctx, &namespace, job).await?,
            Step::Event {
                warning,
                reason,
                note,
            } => {
                ctx.publish(&reference, "Backup", *warning, reason, note.clone())
                    .await
            }
        }
    }
    let removed = plan.steps.contains(&Step::RemoveFinalizer);
    if !removed && bsb.status.as_ref() != Some(&plan.status) {
        let patch = json!({
            "apiVersion": "blocksight.live/v1alpha1",
            "kind": "BlockSightBackup",
            "status": plan.status,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(kube_err("writing the status of", "BlockSightBackup", &name))?;
    }
    // Job and Pod events wake us; the requeue is a safety net.
    Ok(Action::requeue(ctx.resync))
}

/// Create the BlockSightBackups of the scheduled Jobs of BlockSight `name` (called from the
/// BlockSight reconcile, which Job events wake).
pub async fn adopt_scheduled(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Vec<String>, BackupControllerError> {
    let jobs = ctx.caches.jobs.state();
    let backups = ctx.caches.backups.state();
    let mut created = Vec::new();
    for bsb in scheduled_to_adopt(name, namespace, &jobs, &backups) {
        let bsb_name = bsb.name_any();
        if ctx
            .recent_writes
            .contains("BlockSightBackup", namespace, &bsb_name, "", None)
        {
            continue;
        }
        let api: Api<BlockSightBackup> = Api::namespaced(ctx.client.clone(), namespace);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        let after = match api.create(&params, &bsb).await {
            Ok(made) => {
                created.push(bsb_name.clone());
                made.resource_version()
            }
            Err(kube::Error::Api(e)) if e.code == 409 => None,
            Err(e) => return Err(kube_err("creating", "BlockSightBackup", &bsb_name)(e)),
        };
        let versions = crate::controller::shared::context::Versions {
            before: None,
            after,
        };
        ctx.recent_writes
            .record("BlockSightBackup", namespace, &bsb_name, "", versions);
    }
    Ok(created)
}

/// When a backup happened, for retention: its completion, else its creation.
fn backup_time(bsb: &BlockSightBackup) -> Option<jiff::Timestamp> {
    bsb.status
        .as_ref()
        .and_then(|s| s.completed_at.as_ref())
        .or(bsb.meta().creation_timestamp.as_ref())
        .map(|t| t.0)
}

/// The BlockSightBackups of BlockSight `blocksight` that retention deletes (pure).
///
/// Completed backups follow the policy (`backup::keep`, the rule `blocksight backup prune`
/// applies: the newest always stays, then keepLast and the retention age). Failed backups go
/// once they are older than the oldest completed backup kept. Backups named in `protected`
/// (a restore in progress, a restoreFrom not done yet) are never deleted.
pub fn out_of_policy(
    blocksight: &str,
    namespace: &str,
    policy: &validate::Backup,
    backups: &[Arc<BlockSightBackup>],
    protected: &std::collections::BTreeSet<String>,
    now: jiff::Timestamp,
) -> Vec<String> {
    let mine: Vec<&Arc<BlockSightBackup>> = backups
        .iter()
        .filter(|b| {
            b.spec.block_sight == blocksight
                && b.namespace().as_deref() == Some(namespace)
                && b.meta().deletion_timestamp.is_none()
        })
        .collect();
    let phase = |b: &BlockSightBackup| b.status.as_ref().and_then(|s| s.phase);
    let mut completed: Vec<&Arc<BlockSightBackup>> = mine
        .iter()
        .copied()
        .filter(|b| phase(b) == Some(BackupPhase::Completed))
        .collect();
    completed.sort_by_key(|b| std::cmp::Reverse((backup_time(b), b.name_any())));
    let times: Vec<Option<jiff::Timestamp>> = completed.iter().map(|b| backup_time(b)).collect();
    let keep = crate::retention::keep(&times, policy.retention, policy.keep_last, now);
    let oldest_kept = completed
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .filter_map(|(b, _)| backup_time(b))
        .min();
    let mut out: Vec<String> = completed
        .iter()
        .zip(&keep)
        .filter(|(_, k)| !**k)
        .map(|(b, _)| b.name_any())
        .collect();
    if let Some(oldest_kept) = oldest_kept {
        out.extend(
            mine.iter()
                .filter(|b| phase(b) == Some(BackupPhase::Failed))
                .filter(|b| backup_time(b).is_some_and(|t| t < oldest_kept))
                .map(|b| b.name_any()),
        );
    }
    out.retain(|name| !protected.contains(name));
    out.sort();
    out
}

/// The backups that must stay whatever the policy: those a restore in progress or a
/// pending restoreFrom of `bs` will read.
pub fn protected_backups(
    bs: &ValidBlockSight,
    restored_from: Option<&str>,
    restores: &[Arc<crate::crd::BlockSightRestore>],
) -> std::collections::BTreeSet<String> {
    let mut names: std::collections::BTreeSet<String> = restores
        .iter()
        .filter(|r| r.namespace().as_deref() == Some(bs.namespace.as_str()))
        .filter(|r| {
            r.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_none_or(|p| p.is_active())
        })
        .map(|r| r.spec.backup.clone())
        .collect();
    if let Some(from) = &bs.restore_from
        && restored_from != Some(from.as_str())
    {
        names.insert(from.clone());
    }
    names
}

/// Delete the BlockSightBackups of `bs` that retention no longer keeps (their finalizer
/// then deletes the data). Returns their names.
pub async fn apply_retention(
    ctx: &Context,
    bs: &ValidBlockSight,
    restored_from: Option<&str>,
) -> Result<Vec<String>, BackupControllerError> {
    let Some(policy) = &bs.backup else {
        return Ok(vec![]);
    };
    let protected = protected_backups(bs, restored_from, &ctx.caches.restores.state());
    let doomed = out_of_policy(
        &bs.name,
        &bs.namespace,
        policy,
        &ctx.caches.backups.state(),
        &protected,
        jiff::Timestamp::now(),
    );
    let api: Api<BlockSightBackup> = Api::namespaced(ctx.client.clone(), &bs.namespace);
    let mut deleted = Vec::new();
    for name in doomed {
        let cached_version = ctx
            .caches
            .backups
            .get(&kube::runtime::reflector::ObjectRef::new(&name).within(&bs.namespace))
            .and_then(|b| b.resource_version());
        if ctx.recent_writes.contains(
            "BlockSightBackup",
            &bs.namespace,
            &name,
            "<deleted>",
            cached_version.as_deref(),
        ) {
            continue;
        }
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => deleted.push(name.clone()),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                return Err(kube_err("deleting (retention)", "BlockSightBackup", &name)(
                    e,
                ));
            }
        }
        let versions = crate::controller::shared::context::Versions {
            before: cached_version,
            after: None,
        };
        ctx.recent_writes.record(
            "BlockSightBackup",
            &bs.namespace,
            &name,
            "<deleted>",
            versions,
        );
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::crd::{BlockSightBackupSpec, BlockSightRestore, BlockSightRestoreSpec};

    const DAY: i64 = 86_400;

    fn now() -> jiff::Timestamp {
        "2026-03-01T00:00:00Z".parse().unwrap()
    }

    fn bsb(name: &str, of: &str, phase: BackupPhase, days_ago: i64) -> Arc<BlockSightBackup> {
        let mut b = BlockSightBackup::new(
            name,
            BlockSightBackupSpec {
                block_sight: of.into(),
            },
        );
        b.metadata.namespace = Some("ns".into());
        b.status = Some(BlockSightBackupStatus {
            phase: Some(phase),
            completed_at: Some(Time(
                now() - jiff::SignedDuration::from_secs(days_ago * DAY),
            )),
            ..Default::default()
        });
        Arc::new(b)
    }

    fn policy(retention_days: Option<u64>, keep_last: Option<usize>) -> validate::Backup {
        validate::Backup {
            scheduled: true,
            schedule: "0 3 * * *".parse().unwrap(),
            retention: retention_days.map(|d| Duration::from_secs(d * DAY as u64)),
            keep_last,
            target: validate::BackupTarget::Volume(validate::Volume {
                size: k8s_openapi::apimachinery::pkg::api::resource::Quantity("1Gi".into()),
                storage_class_name: None,
                from_snapshot: None,
            }),
            verify_schedule: None,
            service_account_annotations: Default::default(),
        }
    }

    fn history() -> Vec<Arc<BlockSightBackup>> {
        use BackupPhase::*;
        vec![
            bsb("d1", "main", Completed, 1),
            bsb("d10", "main", Completed, 10),
            bsb("d35", "main", Completed, 35),
            bsb("d40", "main", Completed, 40),
            bsb("f2", "main", Failed, 2),
            bsb("f50", "main", Failed, 50),
            bsb("running", "main", Running, 60),
            bsb("other", "other", Completed, 90),
        ]
    }

    #[test]
    fn retention_by_age_and_count_over_completed_backups_of_one_blocksight() {
        let none = BTreeSet::new();
        assert_eq!(
            out_of_policy(
                "main",
                "ns",
                &policy(Some(30), None),
                &history(),
                &none,
                now()
            ),
            ["d35", "d40", "f50"]
        );
        assert_eq!(
            out_of_policy(
                "main",
                "ns",
                &policy(None, Some(3)),
                &history(),
                &none,
                now()
            ),
            ["d40", "f50"]
        );
        // Either rule keeps.
        assert_eq!(
            out_of_policy(
                "main",
                "ns",
                &policy(Some(5), Some(2)),
                &history(),
                &none,
                now()
            ),
            ["d35", "d40", "f50"]
        );
    }

    #[test]
    fn the_newest_successful_backup_always_stays() {
        use BackupPhase::*;
        let old = vec![
            bsb("d35", "main", Completed, 35),
            bsb("d40", "main", Completed, 40),
            bsb("f1", "main", Failed, 1),
        ];
        let none = BTreeSet::new();
        assert_eq!(
            out_of_policy("main", "ns", &policy(Some(30), None), &old, &none, now()),
            ["d40"],
            "d35 stays though past retention; the failure after it too"
        );
        // Without any completed backup, failures are all kept (they are the only history).
        let failures = vec![bsb("f1", "main", Failed, 100)];
        assert!(
            out_of_policy(
                "main",
                "ns",
                &policy(Some(1), None),
                &failures,
                &none,
                now()
            )
            .is_empty()
        );
    }

    #[test]
    fn backups_a_restore_needs_are_protected() {
        let mut restore = BlockSightRestore::new(
            "r",
            BlockSightRestoreSpec {
                block_sight: "main".into(),
                backup: "d40".into(),
            },
        );
        restore.metadata.namespace = Some("ns".into());
        let mut bs: crate::crd::BlockSight = serde_yaml::from_str(
            "{apiVersion: blocksight.live/v1alpha1, kind: BlockSight, metadata: {name: main, namespace: ns}, spec: {network: regtest, postgres: {restoreFrom: {backup: d35}}, backup: {destination: {volume: {}}}}}",
        )
        .unwrap();
        bs.metadata.namespace = Some("ns".into());
        let valid = validate::validate(&bs).unwrap();
        let protected = protected_backups(&valid, None, &[Arc::new(restore.clone())]);
        assert_eq!(
            protected,
            BTreeSet::from(["d35".to_owned(), "d40".to_owned()])
        );
        assert_eq!(
            out_of_policy(
                "main",
                "ns",
                &policy(Some(30), None),
                &history(),
                &protected,
                now()
            ),
            ["f50"]
        );
        // Once done, neither protects any more.
        restore.status = Some(crate::crd::BlockSightRestoreStatus {
            phase: Some(crate::crd::RestorePhase::Completed),
            ..Default::default()
        });
        assert!(protected_backups(&valid, Some("d35"), &[Arc::new(restore)]).is_empty());
    }
}
