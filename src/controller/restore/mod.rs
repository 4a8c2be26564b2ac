//! BlockSightRestore: an in-place restore as a state machine in its status.
//!
//! ```text
//! Pending ──checks fail──▶ Failed (nothing created, the API never stopped)
//!    │ the BlockSight holds its API at zero (condition Restoring) from here on
//!    ▼
//! SafetyBackup: BlockSightBackup <restore>-safety; once it completed and no API pod is
//!    │           left, the restore Job <restore>-restore is created
//!    ▼
//! Restoring: the Job restores into a fresh database, checks every table's row count against
//!    │        the manifest, and only then puts it in place of the old one
//!    ▼
//! Completed | Failed: the API serves again; durationSeconds = completedAt - startedAt (RTO)
//! ```
//!
//! Decisions are pure ([`plan`]); [`reconcile`] carries them out.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use tracing::info;

use crate::controller::backup::{BackupContext, BackupControllerError, apply_job};
use crate::controller::shared::jobs::JobState;
use crate::crd::{
    BackupPhase, BlockSightBackup, BlockSightBackupSpec, BlockSightRestore,
    BlockSightRestoreStatus, RestorePhase,
};
use crate::desired::backup::{self as builder, Purpose, Task};
use crate::names::{FIELD_MANAGER, RESTORE_LABEL, TRIGGER_LABEL};
use crate::validate::ValidBlockSight;

pub fn safety_backup_name(restore: &str) -> String {
    format!("{restore}-safety")
}

pub fn restore_job_name(restore: &str) -> String {
    format!("{restore}-restore")
}

/// What a restore sees.
pub struct Observed<'a> {
    pub blocksight: Result<&'a ValidBlockSight, String>,
    /// The BlockSightBackup to restore.
    pub backup: Option<&'a BlockSightBackup>,
    /// The safety BlockSightBackup, once it exists.
    pub safety: Option<&'a BlockSightBackup>,
    pub job: Option<JobState>,
    /// API pods still running (the Deployment's status.replicas).
    pub api_pods: i32,
    /// Other restores of the same BlockSight still in progress.
    pub other_active: Vec<String>,
    pub now: Time,
}

#[derive(Clone, Debug)]
pub enum Step {
    CreateSafetyBackup(Box<BlockSightBackup>),
    ApplyJob(Box<k8s_openapi::api::batch::v1::Job>),
    Event {
        warning: bool,
        reason: &'static str,
        note: String,
    },
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub status: BlockSightRestoreStatus,
}

fn finish(
    mut status: BlockSightRestoreStatus,
    phase: RestorePhase,
    error: Option<String>,
    at: Option<Time>,
    now: &Time,
) -> BlockSightRestoreStatus {
    let at = at.unwrap_or_else(|| now.clone());
    status.phase = Some(phase);
    status.error = error;
    if let Some(started) = &status.started_at {
        status.duration_seconds = Some((at.0.as_second() - started.0.as_second()).max(0));
    }
    status.completed_at = Some(at);
    status
}

/// Decide the next step of `bsr`. Pure.
pub fn plan(
    bsr: &BlockSightRestore,
    observed: &Observed<'_>,
    settings: &crate::desired::BuildSettings,
) -> Plan {
    let name = bsr.name_any();
    let previous = bsr.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    let mut steps = Vec::new();
    let now = &observed.now;
    let fail_now = |status: BlockSightRestoreStatus, why: String| {
        finish(status, RestorePhase::Failed, Some(why), None, now)
    };
    match previous.phase {
        Some(RestorePhase::Completed | RestorePhase::Failed) => {}
        None | Some(RestorePhase::Pending) => {
            let refusal = match (&observed.blocksight, observed.backup) {
                (Err(why), _) => Some(why.clone()),
                (Ok(bs), _) if bs.backup.is_none() => Some(format!(
                    "BlockSight {} has no spec.backup.destination: there is no backup to restore",
                    bs.name
                )),
                (_, None) => Some(format!(
                    "BlockSightBackup {} does not exist in namespace {}",
                    bsr.spec.backup,
                    bsr.namespace().unwrap_or_default()
                )),
                (_, Some(b)) if b.spec.block_sight != bsr.spec.block_sight => Some(format!(
                    "BlockSightBackup {} is a backup of BlockSight {}, not of {}: restore it into a new BlockSight with spec.postgres.restoreFrom",
                    bsr.spec.backup, b.spec.block_sight, bsr.spec.block_sight
                )),
                (_, Some(b))
                    if b.status.as_ref().and_then(|s| s.phase) != Some(BackupPhase::Completed) =>
                {
                    Some(format!(
                        "BlockSightBackup {} is not Completed (phase {}): only a completed backup can be restored",
                        bsr.spec.backup,
                        b.status
                            .as_ref()
                            .and_then(|s| s.phase)
                            .map(|p| format!("{p:?}"))
                            .unwrap_or_else(|| "none yet".into())
                    ))
                }
                _ if !observed.other_active.is_empty() => Some(format!(
                    "restore {} of the same BlockSight is in progress",
                    observed.other_active.join(", ")
                )),
                _ => None,
            };
            match refusal {
                Some(why) => {
                    status = fail_now(status, why.clone());
                    steps.push(Step::Event {
                        warning: true,
                        reason: "RestoreRefused",
                        note: why,
                    });
                }
                None => {
                    status.phase = Some(RestorePhase::SafetyBackup);
                    status.started_at = Some(now.clone());
                    status.safety_backup = Some(safety_backup_name(&name));
                    steps.push(Step::CreateSafetyBackup(Box::new(safety_backup(bsr))));
                    steps.push(Step::Event {
                        warning: false,
                        reason: "RestoreStarted",
                        note: format!(
                            "restoring {} into BlockSight {}: API scaled to zero, safety backup {} first",
                            bsr.spec.backup,
                            bsr.spec.block_sight,
                            safety_backup_name(&name)
                        ),
                    });
                }
            }
        }
        Some(RestorePhase::SafetyBackup) => {
            let safety_phase = observed
                .safety
                .and_then(|s| s.status.as_ref())
                .and_then(|s| s.phase);
            match safety_phase {
                Some(BackupPhase::Failed) => {
                    let why = observed
                        .safety
                        .and_then(|s| s.status.as_ref())
                        .and_then(|s| s.error.clone())
                        .unwrap_or_default();
                    status = fail_now(
                        status,
                        format!("the safety backup failed, the database was not touched: {why}"),
                    );
                }
                Some(BackupPhase::Completed) => {
                    if observed.job.is_some() {
                        status.phase = Some(RestorePhase::Restoring);
                    } else if observed.api_pods == 0 {
                        if let (Ok(bs), Some(backup)) = (&observed.blocksight, observed.backup)
                            && let Some(config) = &bs.backup
                        {
                            let job = builder::job(
                                bs,
                                config,
                                settings,
                                &restore_job_name(&name),
                                &Task::Restore {
                                    backup: bsr.spec.backup.clone(),
                                    from: backup.spec.block_sight.clone(),
                                    only_if_empty: false,
                                },
                                bsr.controller_owner_ref(&()),
                                &[(RESTORE_LABEL, &name)],
                            );
                            steps.push(Step::ApplyJob(Box::new(job)));
                        } else {
                            status = fail_now(
                                status,
                                "the BlockSight or the backup disappeared during the restore; the database was not touched".into(),
                            );
                        }
                    }
                }
                // Not there yet (just created) or still running.
                None if observed.safety.is_none() => {
                    steps.push(Step::CreateSafetyBackup(Box::new(safety_backup(bsr))));
                }
                _ => {}
            }
        }
        Some(RestorePhase::Restoring) => match &observed.job {
            None => {
                status = fail_now(
                    status,
                    format!(
                        "the restore Job {} was deleted before it finished; check the database, the safety backup {} holds its state from before",
                        restore_job_name(&name),
                        safety_backup_name(&name)
                    ),
                )
            }
            Some(JobState::Succeeded {
                finished, result, ..
            }) => {
                status.verified = Some(true);
                status.tables = result
                    .as_ref()
                    .and_then(|r| r.get("tables"))
                    .and_then(Value::as_u64);
                status = finish(status, RestorePhase::Completed, None, finished.clone(), now);
            }
            Some(JobState::Failed {
                finished,
                reason,
                result,
                ..
            }) => {
                // A verification failure leaves the old database in place (the restore only
                // swaps once every count matched).
                let mismatch = result
                    .as_ref()
                    .and_then(|r| r.get("category"))
                    .and_then(Value::as_str)
                    == Some("verification");
                status.verified = mismatch.then_some(false);
                status = finish(
                    status,
                    RestorePhase::Failed,
                    Some(reason.clone()),
                    finished.clone(),
                    now,
                );
            }
            Some(_) => {}
        },
    }
    if status.phase != previous.phase {
        match status.phase {
            Some(RestorePhase::Completed) => steps.push(Step::Event {
                warning: false,
                reason: "RestoreCompleted",
                note: format!(
                    "restored {} into {} in {} s, every table verified",
                    bsr.spec.backup,
                    bsr.spec.block_sight,
                    status.duration_seconds.unwrap_or(0)
                ),
            }),
            Some(RestorePhase::Failed) if previous.phase.is_some_and(|p| p.is_active()) => steps
                .push(Step::Event {
                    warning: true,
                    reason: "RestoreFailed",
                    note: status.error.clone().unwrap_or_default(),
                }),
            _ => {}
        }
    }
    Plan { steps, status }
}

/// The backup taken just before a restore.
fn safety_backup(bsr: &BlockSightRestore) -> BlockSightBackup {
    let mut bsb = BlockSightBackup::new(
        &safety_backup_name(&bsr.name_any()),
        BlockSightBackupSpec {
            block_sight: bsr.spec.block_sight.clone(),
        },
    );
    bsb.metadata.namespace = bsr.namespace();
    bsb.metadata.labels = Some(
        [
            (TRIGGER_LABEL.to_owned(), "Safety".to_owned()),
            (
                crate::names::INSTANCE_LABEL.to_owned(),
                bsr.spec.block_sight.clone(),
            ),
        ]
        .into(),
    );
    bsb
}

/// Reconcile one BlockSightRestore.
pub async fn reconcile(
    bsr: Arc<BlockSightRestore>,
    bctx: Arc<BackupContext>,
) -> Result<Action, BackupControllerError> {
    let ctx = &bctx.ctx;
    if ctx.caches.wait_until_ready().await.is_err() {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let namespace = bsr.namespace().unwrap_or_default();
    let name = bsr.name_any();
    let valid = bctx.valid_blocksight(&namespace, &bsr.spec.block_sight);
    let backup = ctx
        .caches
        .backups
        .get(&ObjectRef::new(&bsr.spec.backup).within(&namespace));
    let safety = ctx
        .caches
        .backups
        .get(&ObjectRef::new(&safety_backup_name(&name)).within(&namespace));
    let api_pods = ctx
        .caches
        .deployment(&namespace, &format!("{}-api", bsr.spec.block_sight))
        .and_then(|d| d.status.and_then(|s| s.replicas))
        .unwrap_or(0);
    let other_active = ctx
        .caches
        .restores
        .state()
        .iter()
        .filter(|r| {
            r.namespace().as_deref() == Some(namespace.as_str())
                && r.spec.block_sight == bsr.spec.block_sight
                && r.name_any() != name
                && r.status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .is_some_and(|p| p.is_active() && p != RestorePhase::Pending)
        })
        .map(|r| r.name_any())
        .collect();
    let observed = Observed {
        blocksight: valid.as_ref().map_err(Clone::clone),
        backup: backup.as_deref(),
        safety: safety.as_deref(),
        job: bctx.job_state(
            &namespace,
            &restore_job_name(&name),
            Purpose::Restore.as_str(),
        ),
        api_pods,
        other_active,
        now: crate::controller::now(),
    };
    let plan = plan(&bsr, &observed, &ctx.settings);
    let reference = bsr.object_ref(&());
    for step in &plan.steps {
        match step {
            Step::CreateSafetyBackup(bsb) => {
                let bsb_name = bsb.name_any();
                let api: Api<BlockSightBackup> = Api::namespaced(ctx.client.clone(), &namespace);
                let params = PostParams {
                    field_manager: Some(FIELD_MANAGER.to_owned()),
                    ..Default::default()
                };
                match api.create(&params, bsb).await {
                    Ok(_) => info!(backup = %bsb_name, restore = %name, "safety backup requested"),
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(source) => {
                        return Err(BackupControllerError::Kube {
                            action: "creating",
                            kind: "BlockSightBackup",
                            name: bsb_name,
                            source,
                        });
                    }
                }
            }
            Step::ApplyJob(job) => apply_job(ctx, &namespace, job).await?,
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
    if bsr.status.as_ref() != Some(&plan.status) {
        let api: Api<BlockSightRestore> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = json!({
            "apiVersion": "blocksight.live/v1alpha1",
            "kind": "BlockSightRestore",
            "status": plan.status,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| BackupControllerError::Kube {
            action: "writing the status of",
            kind: "BlockSightRestore",
            name: name.clone(),
            source,
        })?;
    }
    // Waiting on the API to drain is not announced by any watched object: look again soon.
    if plan.status.phase.is_some_and(RestorePhase::is_active) {
        return Ok(Action::requeue(Duration::from_secs(10)));
    }
    Ok(Action::requeue(ctx.resync))
}
