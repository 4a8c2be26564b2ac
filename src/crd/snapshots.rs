//! Scheduled VolumeSnapshots of the chain data (bitcoind's blocks, electrs' index), so a
//! rebuilt node starts from a snapshot (`storage.fromSnapshot`) instead of days of initial
//! block download.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// VolumeSnapshots (snapshot.storage.k8s.io/v1) taken by the operator on a schedule.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSnapshotsSpec {
    /// Take snapshots (default true when this block is present). Existing snapshots are
    /// kept when disabled.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// When to take them: five cron fields (minute hour day-of-month month day-of-week, UTC)
    /// or a macro such as `@weekly`, as a Kubernetes CronJob reads it; e.g. `0 4 * * 0`.
    /// A slot missed while the operator was down is taken once when it is back.
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new("self.matches('^\\\\s*(@[a-zA-Z]+|\\\\S+(\\\\s+\\\\S+){4})\\\\s*$')").message("schedule must be five cron fields (minute hour day-of-month month day-of-week) such as \"0 4 * * 0\", or a macro such as @weekly"))]
    pub schedule: String,
    /// Snapshots kept per component (1 to 100, default 3). Older ones are deleted, oldest
    /// first; the newest ready one and those still being taken are never deleted.
    #[serde(default = "default_keep_last")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100").message("keepLast must be between 1 and 100"))]
    pub keep_last: i32,
    /// VolumeSnapshotClass to use; the cluster's default class when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("volumeSnapshotClassName must not be empty"))]
    pub volume_snapshot_class_name: Option<String>,
    /// Volumes to snapshot: `bitcoind` (chain data) and/or `electrs` (its index, replica 0);
    /// default both (electrs only while it is enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2))]
    #[x_kube(validation = Rule::new("self.all(c, self.filter(o, o == c).size() == 1)").message("components must not repeat an entry"))]
    pub components: Option<Vec<SnapshotComponent>>,
}

/// A component whose data volume can be snapshotted.
#[derive(
    Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotComponent {
    Bitcoind,
    Electrs,
}

impl SnapshotComponent {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bitcoind => "bitcoind",
            Self::Electrs => "electrs",
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_keep_last() -> i32 {
    3
}
