//! `BlockSightBackup` and `BlockSightRestore`: one backup of a BlockSight's database (on
//! demand or from the schedule), and one in-place restore of such a backup.
//!
//! Both are namespaced, live beside their BlockSight, and are NOT owned by it: backups
//! outlive the installation they came from.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One backup of a BlockSight's PostgreSQL database. Create one to back up now; the
/// schedule (spec.backup.schedule of the BlockSight) creates them too, so `kubectl get bsb`
/// lists every backup. Deleting it deletes the backup's data.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[kube(
    group = "blocksight.live",
    version = "v1alpha1",
    kind = "BlockSightBackup",
    namespaced,
    status = "BlockSightBackupStatus",
    shortname = "bsb",
    category = "blocksight",
    cel,
    doc = "One backup of a BlockSight's PostgreSQL database, taken on demand or on the BlockSight's schedule. Deleting it deletes the backup's data.",
    printcolumn(name = "BlockSight", type_ = "string", json_path = ".spec.blockSight"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Size",
        type_ = "integer",
        json_path = ".status.sizeBytes",
        description = "Archive size in bytes"
    ),
    printcolumn(name = "Completed", type_ = "date", json_path = ".status.completedAt"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable: create another BlockSightBackup"))]
pub struct BlockSightBackupSpec {
    /// Name of the BlockSight (same namespace) whose database is backed up.
    #[schemars(length(max = 40))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("blockSight must name a BlockSight"))]
    pub block_sight: String,
}

/// Lifecycle of a backup.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum BackupPhase {
    /// Accepted; its Job has not started yet.
    Pending,
    /// The backup pod runs.
    Running,
    /// The archive and its manifest are stored.
    Completed,
    /// The backup did not complete (see error); nothing usable was stored.
    Failed,
}

/// What the operator reports about a backup.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockSightBackupStatus {
    /// Pending, Running, Completed or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,
    /// Scheduled (the BlockSight's backup CronJob), OnDemand (created by a user) or Safety
    /// (taken before a restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// The Job that takes (took) the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// When the backup pod started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the backup completed or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Where the backup is stored (URL of its folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Size of the archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// SHA-256 of the archive, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Why the backup failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An in-place restore of a BlockSightBackup into its BlockSight's database: the API is
/// scaled to zero, a safety backup is taken, the database is replaced by the backup's
/// contents (verified against its manifest), and the API comes back.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[kube(
    group = "blocksight.live",
    version = "v1alpha1",
    kind = "BlockSightRestore",
    namespaced,
    status = "BlockSightRestoreStatus",
    shortname = "bsr",
    category = "blocksight",
    cel,
    doc = "An in-place restore of a BlockSightBackup into its BlockSight's database, preceded by a safety backup; reports the measured duration (RTO) and the verification result.",
    printcolumn(name = "BlockSight", type_ = "string", json_path = ".spec.blockSight"),
    printcolumn(name = "Backup", type_ = "string", json_path = ".spec.backup"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Duration",
        type_ = "number",
        json_path = ".status.durationSeconds",
        description = "Measured restore time (RTO) in seconds"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable: create another BlockSightRestore"))]
pub struct BlockSightRestoreSpec {
    /// Name of the BlockSight (same namespace) whose database is replaced.
    #[schemars(length(max = 40))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("blockSight must name a BlockSight"))]
    pub block_sight: String,
    /// Name of a Completed BlockSightBackup of that BlockSight.
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("backup must name a BlockSightBackup"))]
    pub backup: String,
}

/// Lifecycle of a restore.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum RestorePhase {
    /// Accepted, not started.
    Pending,
    /// The API is at zero replicas; the safety backup runs.
    SafetyBackup,
    /// The restore Job runs.
    Restoring,
    /// The database holds the backup's contents, verified; the API serves again.
    Completed,
    /// The restore did not happen or did not complete (see error); the API serves again.
    Failed,
}

impl RestorePhase {
    /// Whether the restore still holds the API down.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Pending | Self::SafetyBackup | Self::Restoring)
    }
}

/// What the operator reports about a restore.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockSightRestoreStatus {
    /// Pending, SafetyBackup, Restoring, Completed or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RestorePhase>,
    /// When the operator started the restore (the API went down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the restore completed or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// completedAt - startedAt: the measured recovery time (RTO), safety backup included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i64>,
    /// The BlockSightBackup taken just before the restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_backup: Option<String>,
    /// Whether every table of the restored database holds the row count the backup's
    /// manifest recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// Tables whose row counts were checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<u64>,
    /// Why the restore failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
