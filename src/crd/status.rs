//! What the operator reports about a BlockSight.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a BlockSight, written only by the operator.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlockSightStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Summary of the conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Ready, Progressing, Degraded, Paused, InvalidSpec, ChainSynced, IndexSynced,
    /// DatabaseReady, CacheReady, Restoring and, with backups configured, BackupHealthy (each
    /// with observedGeneration).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Per component (bitcoind, electrs, postgres, redis, api, prometheus, grafana).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, ComponentStatus>,
    /// Chain state reported by bitcoind (filled by the chain probes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainStatus>,
    /// electrs' index, from the Electrum protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub electrs: Option<ElectrsStatus>,
    /// The application database, as PostgreSQL reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseStatus>,
    /// Scheduled VolumeSnapshots of the chain data, per component (spec.volumeSnapshots).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_snapshots: Vec<VolumeSnapshotStatus>,
    /// Backups and restore drills of the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupStatus>,
    /// The volumes of the StatefulSets (chain data, index, database, cache, monitoring):
    /// what each has and what is asked for, so a resize in flight shows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeStatus>,
}

/// One PersistentVolumeClaim of a component's StatefulSet.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeStatus {
    /// The PersistentVolumeClaim.
    pub name: String,
    /// bitcoind, electrs, postgres, redis, prometheus or grafana.
    pub component: String,
    /// The size the spec asks for.
    pub requested: String,
    /// The size the volume has (status.capacity), once bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<String>,
    /// Pending (not bound yet), Bound (has what is asked), Resizing (the volume is being
    /// grown) or FileSystemResizePending (grown; the file system grows when the pod restarts
    /// or, with online expansion, shortly).
    pub phase: String,
}

/// Backups of a BlockSight, as far as the operator has seen them.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// The newest Completed BlockSightBackup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful: Option<BackupRecord>,
    /// The newest Failed BlockSightBackup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<BackupFailure>,
    /// The newest restore drill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verification: Option<VerificationRecord>,
    /// The BlockSightBackup spec.postgres.restoreFrom was restored from (so it runs once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<String>,
}

/// A successful backup.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRecord {
    /// The BlockSightBackup.
    pub name: String,
    /// When it completed.
    pub time: Time,
    /// Size of the archive.
    #[serde(default)]
    pub size_bytes: u64,
    /// Where it is stored.
    #[serde(default)]
    pub location: String,
}

/// A failed backup.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupFailure {
    /// The BlockSightBackup.
    pub name: String,
    /// When it failed.
    pub time: Time,
    /// Why.
    #[serde(default)]
    pub error: String,
}

/// A restore drill.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationRecord {
    /// When the drill finished.
    pub time: Time,
    /// The backup restored.
    #[serde(default)]
    pub backup: String,
    /// How long the restore into the scratch database took.
    #[serde(default)]
    pub duration_seconds: f64,
    /// Passed or Failed.
    pub result: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Scheduled snapshots of one component's volume.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotStatus {
    /// bitcoind or electrs.
    pub component: String,
    /// Name of the newest VolumeSnapshot (ready or not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_snapshot: Option<String>,
    /// When the newest ready snapshot was cut: the point a restore from it starts at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ready_time: Option<Time>,
    /// The next slot of the schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_scheduled: Option<Time>,
}

/// electrs' index.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ElectrsStatus {
    /// Height of the newest block electrs has indexed.
    pub indexed_height: u64,
    /// Blocks the index is behind bitcoind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_blocks: Option<u64>,
}

/// The application database.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseStatus {
    /// PostgreSQL server version.
    pub version: String,
    /// Size of the application database.
    pub size_bytes: u64,
}

/// Lifecycle phase of a BlockSight.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Not acted on yet, or the spec is invalid.
    Pending,
    /// Workloads are being created or rolled out.
    Provisioning,
    /// Workloads run; the chain or the index is catching up.
    Syncing,
    /// Everything is up and serving.
    Ready,
    /// Something that should work does not (see conditions).
    Degraded,
    /// spec.paused is true: the operator does not change children.
    Paused,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Self::Pending,
        Self::Provisioning,
        Self::Syncing,
        Self::Ready,
        Self::Degraded,
        Self::Paused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Provisioning => "Provisioning",
            Self::Syncing => "Syncing",
            Self::Ready => "Ready",
            Self::Degraded => "Degraded",
            Self::Paused => "Paused",
        }
    }
}

/// Replica counts and image of one component's workload.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Replicas the operator asked for (for the API under autoscaling: the HPA's choice).
    pub desired_replicas: i32,
    /// Replicas passing their readiness probe.
    pub ready_replicas: i32,
    /// Image the operator applied.
    pub image: String,
}

/// Chain state reported by bitcoind.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainStatus {
    /// Height of the most-work fully validated chain.
    pub blocks: u64,
    /// Height of the best known header chain.
    pub headers: u64,
    /// Estimated verification progress, 0 to 1.
    pub verification_progress: f64,
    /// Whether bitcoind is in initial block download.
    pub initial_block_download: bool,
    /// Connected peers.
    #[serde(default)]
    pub peers: u32,
    /// Size of the block and undo files on disk.
    #[serde(default)]
    pub size_on_disk_bytes: u64,
    /// bitcoind's version string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Whether the transaction index has caught up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txindex_synced: Option<bool>,
}

/// The condition types of a BlockSight's status. Each has one owner, the step that decides it:
/// Ready, Progressing, Degraded, Paused and InvalidSpec the status step
/// (`controller::blocksight::status`); ChainSynced, IndexSynced, DatabaseReady and CacheReady
/// the chain probes (`chain`); VolumeSnapshotsScheduled the snapshot step; Restoring and
/// BackupHealthy the backup section (`controller::blocksight::backup_status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionType {
    Ready,
    Progressing,
    Degraded,
    Paused,
    InvalidSpec,
    ChainSynced,
    IndexSynced,
    DatabaseReady,
    CacheReady,
    VolumeSnapshotsScheduled,
    Restoring,
    BackupHealthy,
}

impl ConditionType {
    pub const ALL: [ConditionType; 12] = [
        ConditionType::Ready,
        ConditionType::Progressing,
        ConditionType::Degraded,
        ConditionType::Paused,
        ConditionType::InvalidSpec,
        ConditionType::ChainSynced,
        ConditionType::IndexSynced,
        ConditionType::DatabaseReady,
        ConditionType::CacheReady,
        ConditionType::VolumeSnapshotsScheduled,
        ConditionType::Restoring,
        ConditionType::BackupHealthy,
    ];

    /// The `type` as written in status.conditions.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Progressing => "Progressing",
            ConditionType::Degraded => "Degraded",
            ConditionType::Paused => "Paused",
            ConditionType::InvalidSpec => "InvalidSpec",
            ConditionType::ChainSynced => "ChainSynced",
            ConditionType::IndexSynced => "IndexSynced",
            ConditionType::DatabaseReady => "DatabaseReady",
            ConditionType::CacheReady => "CacheReady",
            ConditionType::VolumeSnapshotsScheduled => "VolumeSnapshotsScheduled",
            ConditionType::Restoring => "Restoring",
            ConditionType::BackupHealthy => "BackupHealthy",
        }
    }
}

impl std::fmt::Display for ConditionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
