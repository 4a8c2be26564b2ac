//! The reconcilers (BlockSight, BlockSightBackup, BlockSightRestore, volume snapshots) against
//! the scripted API server of blocksight_testkit::mock_api (tower-test, in-process): the exact
//! requests each reconciliation sends, and the faults it meets. No cluster, no services
//! (volume_snapshots also checks its VolumeSnapshot with ../shared's kube-validate, when that
//! tool is there).
//!
//!   cargo test --test controller

mod backups;
mod blocksight;
mod faults;
mod restores;
mod volume_snapshots;
