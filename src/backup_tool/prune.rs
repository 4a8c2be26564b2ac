//! `prune`: retention by age and by count, always keeping the newest backup; and the
//! clean-up of orphans (archives whose manifest never came, or was deleted first).

use std::time::Duration;

use serde::Serialize;

use super::error::{BackupError, Result};
use super::manifest::{Listed, MANIFEST_FILE};
use super::store::Destination;
use crate::retention::keep;

/// Which backups to keep. A backup is kept when any rule keeps it: it is the newest, one of
/// the `keep_last` newest, or younger than `retention`.
#[derive(Clone, Debug, PartialEq)]
pub struct PrunePolicy {
    pub retention: Option<Duration>,
    pub keep_last: Option<usize>,
    /// Orphans younger than this are left alone: they may be uploads in progress.
    pub orphan_grace: Duration,
}

/// What `prune` deleted (or, in a dry run, would delete) and kept.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    pub dry_run: bool,
    /// Backups deleted, newest first.
    pub deleted: Vec<PrunedBackup>,
    /// Backups kept, newest first.
    pub kept: Vec<String>,
    /// Objects of folders without a manifest that were deleted.
    pub orphans_deleted: Vec<String>,
    /// Folders whose manifest cannot be read; never deleted automatically.
    pub broken: Vec<BrokenBackup>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrunedBackup {
    pub name: String,
    pub time: String,
    pub location: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokenBackup {
    pub name: String,
    pub reason: String,
}

/// Apply `policy` at `destination`. Each backup loses its manifest first, then its other
/// objects, so an interruption leaves an orphan (deleted by a later run), never a backup
/// without its archive.
pub async fn prune(
    destination: &Destination,
    policy: &PrunePolicy,
    dry_run: bool,
) -> Result<PruneReport> {
    if policy.retention.is_none() && policy.keep_last.is_none() {
        return Err(BackupError::Usage(
            "prune needs --retention, --keep-last or both".into(),
        ));
    }
    let now = jiff::Timestamp::now();
    let inventory = destination.inventory().await?;
    let keep = plan(&inventory.backups, policy, now);

    let mut report = PruneReport {
        dry_run,
        deleted: Vec::new(),
        kept: Vec::new(),
        orphans_deleted: Vec::new(),
        broken: inventory
            .broken
            .iter()
            .map(|(name, reason)| BrokenBackup {
                name: name.clone(),
                reason: reason.clone(),
            })
            .collect(),
    };
    for (backup, keep) in inventory.backups.iter().zip(keep) {
        let name = &backup.manifest.name;
        if keep {
            report.kept.push(name.clone());
            continue;
        }
        if !dry_run {
            destination.delete(&destination.manifest_path(name)).await?;
            for object in inventory.folders.get(name).into_iter().flatten() {
                if object.location.filename() != Some(MANIFEST_FILE) {
                    destination.delete(&object.location).await?;
                }
            }
        }
        tracing::info!(backup = %name, time = %backup.manifest.time, dry_run, "pruned");
        report.deleted.push(PrunedBackup {
            name: name.clone(),
            time: backup.manifest.time.clone(),
            location: backup.location.clone(),
        });
    }

    let grace = i64::try_from(policy.orphan_grace.as_secs()).unwrap_or(i64::MAX);
    for orphan in &inventory.orphans {
        let age = now.as_second() - orphan.last_modified.timestamp();
        if age < grace {
            tracing::info!(object = %orphan.location, age_seconds = age, "orphan within its grace period, kept");
            continue;
        }
        if !dry_run {
            destination.delete(&orphan.location).await?;
        }
        tracing::info!(object = %orphan.location, dry_run, "orphan deleted");
        report
            .orphans_deleted
            .push(destination.object_url(&orphan.location));
    }
    for broken in &report.broken {
        tracing::warn!(backup = %broken.name, reason = %broken.reason, "unreadable manifest, left alone");
    }
    Ok(report)
}

/// Which of `backups` (newest first) to keep at `now`.
pub(crate) fn plan(backups: &[Listed], policy: &PrunePolicy, now: jiff::Timestamp) -> Vec<bool> {
    // A manifest time that does not parse was ruled out when listing.
    let times: Vec<Option<jiff::Timestamp>> = backups
        .iter()
        .map(|b| b.manifest.timestamp().ok())
        .collect();
    keep(&times, policy.retention, policy.keep_last, now)
}

/// What `delete` removed.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteReport {
    pub name: String,
    /// False when nothing of that name was there (already deleted: deleting is idempotent).
    pub existed: bool,
    pub objects_deleted: usize,
    pub location: String,
}

/// Delete one backup: its manifest first (so an interruption leaves an orphan, never a
/// listed backup without its archive), then every other object of its folder.
pub async fn delete_backup(destination: &Destination, name: &str) -> Result<DeleteReport> {
    super::manifest::validate_backup_name(name).map_err(BackupError::Usage)?;
    let inventory = destination.inventory().await?;
    let objects = inventory.folders.get(name).cloned().unwrap_or_default();
    let manifest = destination.manifest_path(name);
    let mut deleted = 0;
    if objects.iter().any(|o| o.location == manifest) {
        destination.delete(&manifest).await?;
        deleted += 1;
    }
    for object in &objects {
        if object.location != manifest {
            destination.delete(&object.location).await?;
            deleted += 1;
        }
    }
    tracing::info!(backup = %name, objects = deleted, "deleted");
    Ok(DeleteReport {
        name: name.to_owned(),
        existed: !objects.is_empty(),
        objects_deleted: deleted,
        location: destination.location(name),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::backup_tool::manifest::{FORMAT_VERSION, Manifest};

    const DAY: u64 = 86_400;

    fn backup(name: &str, time: &str) -> Listed {
        Listed {
            location: format!("/b/{name}/"),
            manifest: Manifest {
                format_version: FORMAT_VERSION,
                name: name.into(),
                time: time.into(),
                database: "blocksight".into(),
                encoding: "UTF8".into(),
                server_version: "15.8".into(),
                server_version_num: 150008,
                pg_dump_version: "15.8".into(),
                data_object: "blocksight.dump".into(),
                size_bytes: 1,
                sha256: "00".repeat(32),
                tables: BTreeMap::new(),
                duration_seconds: 1.0,
            },
        }
    }

    /// Backups 1, 10, 35 and 40 days old at `now`, newest first.
    fn history() -> (Vec<Listed>, jiff::Timestamp) {
        let now: jiff::Timestamp = "2025-03-01T00:00:00Z".parse().unwrap();
        let ago = |days: i64| (now - jiff::SignedDuration::from_hours(24 * days)).to_string();
        let backups = vec![
            backup("d1", &ago(1)),
            backup("d10", &ago(10)),
            backup("d35", &ago(35)),
            backup("d40", &ago(40)),
        ];
        (backups, now)
    }

    fn policy(retention_days: Option<u64>, keep_last: Option<usize>) -> PrunePolicy {
        PrunePolicy {
            retention: retention_days.map(|d| Duration::from_secs(d * DAY)),
            keep_last,
            orphan_grace: Duration::from_secs(3600),
        }
    }

    #[test]
    fn retention_by_age_keeps_the_young() {
        let (backups, now) = history();
        assert_eq!(
            plan(&backups, &policy(Some(30), None), now),
            [true, true, false, false]
        );
    }

    #[test]
    fn retention_by_count_keeps_the_newest_n() {
        let (backups, now) = history();
        assert_eq!(
            plan(&backups, &policy(None, Some(3)), now),
            [true, true, true, false]
        );
    }

    #[test]
    fn a_backup_is_kept_when_any_rule_keeps_it() {
        let (backups, now) = history();
        assert_eq!(
            plan(&backups, &policy(Some(5), Some(3)), now),
            [true, true, true, false]
        );
        assert_eq!(
            plan(&backups, &policy(Some(36), Some(1)), now),
            [true, true, true, false]
        );
    }

    #[test]
    fn the_newest_is_kept_even_when_past_retention() {
        let (backups, now) = history();
        let old = &backups[2..];
        assert_eq!(plan(old, &policy(Some(30), None), now), [true, false]);
        assert_eq!(
            plan(&backups, &policy(Some(0), None), now),
            [true, false, false, false]
        );
    }

    #[test]
    fn future_times_count_as_young() {
        let (_, now) = history();
        let future = backup("later", "2025-03-05T00:00:00Z");
        let old = backup("old", "2024-01-01T00:00:00Z");
        assert_eq!(
            plan(&[future, old], &policy(Some(1), None), now),
            [true, false]
        );
    }
}
