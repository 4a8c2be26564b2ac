//! The backup side of a BlockSight's reconcile (pure, but for [`observe`]): whether its API
//! is held at zero for a restore, the restoreFrom Job, `status.backup`, the conditions
//! Restoring and BackupHealthy, the Events of drill results, and the backup metrics.

use std::sync::Arc;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use crate::controller::shared::conditions;
use crate::controller::shared::jobs::{JobState, job_state, pods_of};
use crate::crd::ConditionType;
use crate::crd::{
    BackupFailure, BackupPhase, BackupRecord, BackupStatus, BlockSightBackup, BlockSightStatus,
    VerificationRecord,
};
use crate::desired::backup::{self as builder, Purpose, Task};
use crate::metrics::{InstanceLabels, Metrics};
use crate::names::{INSTANCE_LABEL, PURPOSE_LABEL};
use crate::validate::ValidBlockSight;

/// The restoreFrom Job of a BlockSight.
pub fn restore_from_job_name(bs: &ValidBlockSight) -> String {
    format!("{}-restore-from", bs.name)
}

/// Where spec.postgres.restoreFrom stands.
#[derive(Clone, Debug, PartialEq)]
pub enum RestoreFrom {
    /// Not asked for, or done (status.backup.restoredFrom names it).
    Settled,
    /// The backup cannot be used (missing, not completed): the API stays held.
    Blocked(String),
    /// Waiting for the database, or the Job runs.
    Pending {
        job: Option<JobState>,
    },
    /// The Job succeeded: record it.
    Done(String),
    Failed(String),
}

/// Everything the backup side of a BlockSight looks at, from the caches.
#[derive(Clone, Debug)]
pub struct Facts {
    /// An active BlockSightRestore of this BlockSight.
    pub restoring: Option<String>,
    pub restore_from: RestoreFrom,
    /// This BlockSight's BlockSightBackups.
    pub backups: Vec<Arc<BlockSightBackup>>,
    /// The newest finished restore drill Job: (name, state).
    pub drill: Option<(String, JobState)>,
}

impl Facts {
    /// The API must serve nobody: a restore replaces its database.
    pub fn hold_api(&self) -> bool {
        self.restoring.is_some()
            || matches!(
                self.restore_from,
                RestoreFrom::Blocked(_) | RestoreFrom::Pending { .. } | RestoreFrom::Failed(_)
            )
    }
}

/// Read the facts about `bs` from the caches.
pub fn observe(
    ctx: &crate::controller::Context,
    bs: &ValidBlockSight,
    status: Option<&BlockSightStatus>,
) -> Facts {
    let caches = &ctx.caches;
    let namespace = bs.namespace.as_str();
    let restoring = caches
        .restores
        .state()
        .iter()
        .filter(|r| r.namespace().as_deref() == Some(namespace) && r.spec.block_sight == bs.name)
        .find(|r| {
            r.status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(|p| p.is_active() && p != crate::crd::RestorePhase::Pending)
        })
        .map(|r| r.name_any());
    let backups: Vec<Arc<BlockSightBackup>> = caches
        .backups
        .state()
        .into_iter()
        .filter(|b| b.namespace().as_deref() == Some(namespace) && b.spec.block_sight == bs.name)
        .collect();
    let pods = caches.pods.state();
    let jobs = caches.jobs.state();
    let state_of =
        |job: &Job, container: &str| job_state(job, pods_of(&pods, &job.name_any()), container);
    let restored = status
        .and_then(|s| s.backup.as_ref())
        .and_then(|b| b.restored_from.as_deref());
    let restore_from = match &bs.restore_from {
        None => RestoreFrom::Settled,
        Some(from) if restored == Some(from.as_str()) => RestoreFrom::Settled,
        Some(from) => {
            let job = jobs
                .iter()
                .find(|j| {
                    j.namespace().as_deref() == Some(namespace)
                        && j.name_any() == restore_from_job_name(bs)
                })
                .map(|j| state_of(j, Purpose::Restore.as_str()));
            let source = caches
                .backups
                .get(&kube::runtime::reflector::ObjectRef::new(from).within(namespace));
            match (job, source) {
                (Some(JobState::Succeeded { .. }), _) => RestoreFrom::Done(from.clone()),
                (Some(JobState::Failed { reason, .. }), _) => {
                    RestoreFrom::Failed(format!("restoring {from} failed: {reason}"))
                }
                (Some(job), _) => RestoreFrom::Pending { job: Some(job) },
                (None, None) => RestoreFrom::Blocked(format!(
                    "spec.postgres.restoreFrom: BlockSightBackup {from} does not exist in namespace {namespace}"
                )),
                (None, Some(b))
                    if b.status.as_ref().and_then(|s| s.phase) != Some(BackupPhase::Completed) =>
                {
                    RestoreFrom::Blocked(format!(
                        "spec.postgres.restoreFrom: BlockSightBackup {from} is not Completed"
                    ))
                }
                (None, Some(_)) => RestoreFrom::Pending { job: None },
            }
        }
    };
    let drill = jobs
        .iter()
        .filter(|j| {
            j.namespace().as_deref() == Some(namespace)
                && j.labels().get(INSTANCE_LABEL) == Some(&bs.name)
                && j.labels().get(PURPOSE_LABEL).map(String::as_str)
                    == Some(Purpose::Verify.as_str())
        })
        .map(|j| (j.name_any(), state_of(j, Purpose::Verify.as_str())))
        .filter(|(_, s)| s.is_finished())
        .max_by_key(|(name, s)| (finished_at(s).map(|t| t.0), name.clone()));
    Facts {
        restoring,
        restore_from,
        backups,
        drill,
    }
}

fn finished_at(state: &JobState) -> Option<Time> {
    match state {
        JobState::Succeeded { finished, .. } | JobState::Failed { finished, .. } => {
            finished.clone()
        }
        _ => None,
    }
}

/// The restoreFrom Job to create, when the database is up and none exists yet.
pub fn restore_from_job(
    bs: &ValidBlockSight,
    facts: &Facts,
    database_ready: bool,
    source_blocksight: Option<&str>,
    settings: &crate::desired::BuildSettings,
) -> Option<Job> {
    let (RestoreFrom::Pending { job: None }, Some(from), Some(config)) =
        (&facts.restore_from, &bs.restore_from, &bs.backup)
    else {
        return None;
    };
    if !database_ready {
        return None;
    }
    Some(builder::job(
        bs,
        config,
        settings,
        &restore_from_job_name(bs),
        // Seeds an empty database only: a BlockSight recreated over retained volumes keeps
        // its data, and the Job fails with why (the condition says so; removing restoreFrom
        // settles it).
        &Task::Restore {
            backup: from.clone(),
            from: source_blocksight.unwrap_or(&bs.name).to_owned(),
            only_if_empty: true,
        },
        bs.owner.clone(),
        &[],
    ))
}

fn newest(backups: &[Arc<BlockSightBackup>], phase: BackupPhase) -> Option<&Arc<BlockSightBackup>> {
    backups
        .iter()
        .filter(|b| b.status.as_ref().and_then(|s| s.phase) == Some(phase))
        .filter(|b| {
            b.status
                .as_ref()
                .and_then(|s| s.completed_at.as_ref())
                .is_some()
        })
        .max_by_key(|b| {
            (
                b.status
                    .as_ref()
                    .and_then(|s| s.completed_at.as_ref())
                    .map(|t| t.0),
                b.name_any(),
            )
        })
}

/// status.backup from the facts; `previous` keeps what the caches no longer show (a drill
/// Job removed by its TTL, a restoreFrom done long ago).
pub fn section(previous: Option<&BackupStatus>, facts: &Facts) -> Option<BackupStatus> {
    let last_successful = newest(&facts.backups, BackupPhase::Completed)
        .map(|b| {
            let s = b.status.clone().unwrap_or_default();
            BackupRecord {
                name: b.name_any(),
                time: s.completed_at.clone().expect("filtered on completedAt"),
                size_bytes: s.size_bytes.unwrap_or(0),
                location: s.location.clone().unwrap_or_default(),
            }
        })
        .or_else(|| previous.and_then(|p| p.last_successful.clone()));
    let last_failure = newest(&facts.backups, BackupPhase::Failed)
        .map(|b| {
            let s = b.status.clone().unwrap_or_default();
            BackupFailure {
                name: b.name_any(),
                time: s.completed_at.clone().expect("filtered on completedAt"),
                error: s.error.clone().unwrap_or_default(),
            }
        })
        .or_else(|| previous.and_then(|p| p.last_failure.clone()));
    let drill = facts.drill.as_ref().and_then(|(name, state)| {
        let time = finished_at(state)?;
        let result = match state {
            JobState::Succeeded { result, .. } | JobState::Failed { result, .. } => result.clone(),
            _ => None,
        };
        let field = |k: &str| result.as_ref().and_then(|r| r.get(k)).cloned();
        let passed = matches!(state, JobState::Succeeded { .. })
            && field("ok").and_then(|v| v.as_bool()).unwrap_or(true);
        Some(VerificationRecord {
            time,
            backup: field("backup")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("(Job {name})")),
            duration_seconds: field("durationSeconds")
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0),
            result: if passed { "Passed" } else { "Failed" }.to_owned(),
            error: match state {
                JobState::Failed { reason, .. } => Some(reason.clone()),
                _ => None,
            },
        })
    });
    let last_verification = match (drill, previous.and_then(|p| p.last_verification.clone())) {
        (Some(new), Some(old)) if old.time.0 > new.time.0 => Some(old),
        (Some(new), _) => Some(new),
        (None, old) => old,
    };
    let restored_from = match &facts.restore_from {
        RestoreFrom::Done(from) => Some(from.clone()),
        _ => previous.and_then(|p| p.restored_from.clone()),
    };
    let section = BackupStatus {
        last_successful,
        last_failure,
        last_verification,
        restored_from,
    };
    (section != BackupStatus::default()).then_some(section)
}

/// The Restoring and BackupHealthy conditions (BackupHealthy only with backups configured).
/// lastTransitionTime is kept unless the status flips.
pub fn conditions(
    bs: &ValidBlockSight,
    facts: &Facts,
    section: Option<&BackupStatus>,
    previous: &[Condition],
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut out = Vec::new();
    let (restoring, reason, message) = match (&facts.restoring, &facts.restore_from) {
        (Some(r), _) => (
            true,
            "RestoreInProgress",
            format!(
                "BlockSightRestore {r} is restoring the database: the API is held at zero replicas"
            ),
        ),
        (None, RestoreFrom::Pending { .. }) => (
            true,
            "RestoringFromBackup",
            "spec.postgres.restoreFrom: the database is being restored before the API serves"
                .to_owned(),
        ),
        (None, RestoreFrom::Blocked(why) | RestoreFrom::Failed(why)) => (
            true,
            "RestoreFromBlocked",
            format!("{why}; the API is held at zero replicas"),
        ),
        (None, RestoreFrom::Done(_) | RestoreFrom::Settled) => {
            (false, "NotRestoring", String::new())
        }
    };
    out.push((ConditionType::Restoring, restoring, reason, message));
    if bs.backup.is_some() {
        let section = section.cloned().unwrap_or_default();
        let success_time = section.last_successful.as_ref().map(|s| s.time.0);
        let (healthy, reason, message) = match (
            &section.last_verification,
            &section.last_failure,
            success_time,
        ) {
            (Some(v), _, _) if v.result != "Passed" => (
                false,
                "DrillFailed",
                format!(
                    "the restore drill of {} failed: {}",
                    v.backup,
                    v.error.clone().unwrap_or_default()
                ),
            ),
            (_, Some(f), s) if s.is_none_or(|s| f.time.0 > s) => (
                false,
                "BackupFailed",
                format!("backup {} failed: {}", f.name, f.error),
            ),
            (_, _, None) => (
                false,
                "NoBackupYet",
                "no backup has completed yet".to_owned(),
            ),
            (v, _, Some(_)) => (
                true,
                if v.is_some() { "Verified" } else { "BackedUp" },
                match (&section.last_successful, v) {
                    (Some(s), Some(v)) => format!(
                        "newest backup {}; newest drill of {} passed",
                        s.name, v.backup
                    ),
                    (Some(s), None) => format!("newest backup {}; no restore drill yet", s.name),
                    _ => String::new(),
                },
            ),
        };
        out.push((ConditionType::BackupHealthy, healthy, reason, message));
    }
    let built = out.into_iter().map(|(kind, status, reason, message)| {
        conditions::condition(
            kind,
            conditions::status_of(status),
            reason,
            message,
            generation,
            now,
        )
    });
    conditions::keep_transition_times(previous, built)
}

/// Events for what changed between two sections: a drill result, a restoreFrom done.
pub fn events(
    old: Option<&BackupStatus>,
    new: Option<&BackupStatus>,
) -> Vec<(bool, &'static str, String)> {
    let mut events = Vec::new();
    let verification = |s: Option<&BackupStatus>| s.and_then(|s| s.last_verification.clone());
    if let Some(v) = verification(new)
        && verification(old) != Some(v.clone())
    {
        if v.result == "Passed" {
            events.push((
                false,
                "DrillPassed",
                format!(
                    "restore drill of {} passed in {:.0} s",
                    v.backup, v.duration_seconds
                ),
            ));
        } else {
            events.push((
                true,
                "DrillFailed",
                format!(
                    "restore drill of {} failed: {}",
                    v.backup,
                    v.error.unwrap_or_default()
                ),
            ));
        }
    }
    let restored = |s: Option<&BackupStatus>| s.and_then(|s| s.restored_from.clone());
    if let Some(from) = restored(new)
        && restored(old).as_ref() != Some(&from)
    {
        events.push((
            false,
            "RestoredFromBackup",
            format!("the database was restored from {from}"),
        ));
    }
    events
}

/// Fill the backup metrics of one BlockSight from its section (and the failure count from
/// the section's change). With backups `enabled`, every series exists from the start (a
/// timestamp of 0 means never; the failure counter counts from zero), as the alert rules in
/// monitoring/ expect.
pub fn record_metrics(
    metrics: &Metrics,
    namespace: &str,
    name: &str,
    old: Option<&BackupStatus>,
    new: Option<&BackupStatus>,
    backups: &[Arc<BlockSightBackup>],
    enabled: bool,
) {
    let labels = InstanceLabels {
        namespace: namespace.to_owned(),
        blocksight: name.to_owned(),
    };
    let m = &metrics.backup;
    if enabled {
        let _ = m.last_success_timestamp.get_or_create(&labels);
        let _ = m.verification_last_timestamp.get_or_create(&labels);
        let _ = m.failures.get_or_create(&labels);
    }
    let Some(new) = new else { return };
    if let Some(s) = &new.last_successful {
        m.last_success_timestamp
            .get_or_create(&labels)
            .set(s.time.0.as_second());
        m.last_size
            .get_or_create(&labels)
            .set(i64::try_from(s.size_bytes).unwrap_or(i64::MAX));
        let duration = backups
            .iter()
            .find(|b| b.name_any() == s.name)
            .and_then(|b| b.status.as_ref())
            .and_then(|st| {
                Some(
                    st.completed_at.as_ref()?.0.as_second() - st.started_at.as_ref()?.0.as_second(),
                )
            });
        if let Some(d) = duration {
            m.last_duration.get_or_create(&labels).set(d as f64);
        }
    }
    let failure =
        |s: Option<&BackupStatus>| s.and_then(|s| s.last_failure.as_ref().map(|f| f.name.clone()));
    if failure(Some(new)).is_some() && failure(Some(new)) != failure(old) {
        m.failures.get_or_create(&labels).inc();
    }
    if let Some(v) = &new.last_verification {
        m.verification_last_timestamp
            .get_or_create(&labels)
            .set(v.time.0.as_second());
        m.verification_last_success
            .get_or_create(&labels)
            .set(i64::from(v.result == "Passed"));
        m.verification_last_duration
            .get_or_create(&labels)
            .set(v.duration_seconds);
    }
}
