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
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use tracing::{info, warn};

use super::context::Context;
use super::jobs::{JobState, job_state, pods_of};
use crate::build::FIELD_MANAGER;
use crate::build::backup::{self as builder, BACKUP_LABEL, Purpose, Task};
use crate::crd::{BackupPhase, BlockSight, BlockSightBackup, BlockSightBackupStatus};
use crate::validate::{self, ValidBlockSight};

/// Kept on every BlockSightBackup until its data is deleted.
pub const FINALIZER: &str = "blocksight.live/backup-data";
/// Why a BlockSightBackup exists: Scheduled, OnDemand (no label) or Safety.
pub const TRIGGER_LABEL: &str = "blocksight.live/trigger";

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
    settings: &crate::build::BuildSettings,
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
        if phase != Some(BackupPhase::Completed) {
            // Nothing usable was stored. A Job still running is stopped, so it cannot finish a
            // backup nobody lists any more.
            if observed.job.as_ref().is_some_and(|j| !j.is_finished()) {
                steps.push(Step::DeleteJob(name.clone()));
            }
            steps.push(Step::RemoveFinalizer);
            return Plan { steps, status };
        }
        match (&observed.delete_job, &observed.blocksight) {
            (Some(JobState::Succeeded { .. }), _) => steps.push(Step::RemoveFinalizer),
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
        .filter(|j| {
            j.labels().get(builder::PURPOSE_LABEL).map(String::as_str)
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
                    (builder::INSTANCE_LABEL.to_owned(), blocksight.to_owned()),
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

/// Publish an event about `reference`; best effort.
pub async fn publish(
    ctx: &Context,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    warning: bool,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.to_owned(),
        note: Some(note),
        action: "Backup".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, reference).await {
        warn!(error = %e, "publishing event failed");
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
        now: super::now(),
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
            } => publish(ctx, &reference, *warning, reason, note.clone()).await,
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

pub fn error_policy(
    _bsb: Arc<BlockSightBackup>,
    error: &BackupControllerError,
    bctx: Arc<BackupContext>,
) -> Action {
    bctx.ctx.metrics.record_failure(error.category());
    warn!(error = %error, "backup reconcile failed");
    Action::requeue(Duration::from_secs(10))
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
            .contains("BlockSightBackup", namespace, &bsb_name, "")
        {
            continue;
        }
        let api: Api<BlockSightBackup> = Api::namespaced(ctx.client.clone(), namespace);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        match api.create(&params, &bsb).await {
            Ok(_) => created.push(bsb_name.clone()),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(kube_err("creating", "BlockSightBackup", &bsb_name)(e)),
        }
        ctx.recent_writes
            .record("BlockSightBackup", namespace, &bsb_name, "");
    }
    Ok(created)
}
