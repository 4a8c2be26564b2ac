//! Snapshot step: scheduled VolumeSnapshots of the chain data volumes.
//!
//! CronJobs cannot create VolumeSnapshots without kubectl in a pod, so the operator takes
//! them itself. [`plan`] is pure: from the time, the schedule and the snapshots the watch
//! cache holds, it decides what to create and what to prune. [`run`] carries it out.
//!
//! - Due when the latest slot at or before now is newer than the newest snapshot: a
//!   restarted operator does not take a slot twice, and slots missed while it was down are
//!   caught up with one snapshot, not one per missed slot.
//! - Names come from the slot, so a retried create gets 409 instead of a duplicate.
//! - Pruning keeps `keepLast` (oldest go first), never the newest ready snapshot and never
//!   one still being taken; a failed one may go.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::runtime::reflector::ObjectRef;
use tracing::{debug, info};

use crate::controller::error::SnapshotError;
use crate::controller::shared::conditions;
use crate::controller::shared::context::{Context, Versions};
use crate::crd::ConditionType;
use crate::crd::{BlockSightStatus, SnapshotComponent, VolumeSnapshotStatus};
use crate::desired::meta::Component;
use crate::desired::volume_snapshot;
use crate::names::FIELD_MANAGER;
use crate::schedule::Schedule;
use crate::validate::ValidBlockSight;

/// A snapshot of one component, as the watch cache shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Existing {
    pub name: String,
    /// metadata.creationTimestamp: when the operator asked for it.
    pub created: Timestamp,
    /// status.readyToUse.
    pub ready: bool,
    /// status.creationTime: when the storage system cut it.
    pub taken: Option<Timestamp>,
    /// status.error.message: the snapshot failed.
    pub error: Option<String>,
}

impl Existing {
    /// Read a cached VolumeSnapshot; None for one being deleted (it is already going).
    pub fn from_object(object: &DynamicObject) -> Option<Existing> {
        if object.metadata.deletion_timestamp.is_some() {
            return None;
        }
        let status = object.data.get("status");
        let time = |v: Option<&serde_json::Value>| {
            v.and_then(serde_json::Value::as_str)
                .and_then(|s| s.parse::<Timestamp>().ok())
        };
        let error = status.and_then(|s| s.get("error")).map(|e| {
            e.get("message")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("failed without a message")
                .to_owned()
        });
        Some(Existing {
            name: object.name_any(),
            created: object
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(Timestamp::UNIX_EPOCH),
            ready: status
                .and_then(|s| s.get("readyToUse"))
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            taken: time(status.and_then(|s| s.get("creationTime"))),
            error,
        })
    }
}

/// What to do for one component now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Take a snapshot for this slot, with this name.
    pub create: Option<(String, Timestamp)>,
    /// Snapshots to delete, oldest first.
    pub delete: Vec<String>,
    /// The next slot after now.
    pub next_due: Option<Timestamp>,
}

/// Decide, purely, what the schedule asks of `component` of `blocksight` at `now`, given its
/// existing snapshots. Pruning counts only snapshots that exist: a new one makes an old one
/// go once it shows up, not before.
pub fn plan(
    now: Timestamp,
    schedule: &Schedule,
    blocksight: &str,
    component: SnapshotComponent,
    existing: &[Existing],
    keep_last: usize,
) -> Plan {
    let mut sorted: Vec<&Existing> = existing.iter().collect();
    sorted.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    let newest = sorted.last().map(|e| e.created);
    let create = schedule.latest_at_or_before(now).and_then(|slot| {
        let name = volume_snapshot::name(blocksight, component, slot);
        // A snapshot of this slot whose creationTimestamp reads earlier than the slot (clock
        // skew between the operator and the API server) still covers it.
        let due = newest.is_none_or(|n| n < slot) && !sorted.iter().any(|e| e.name == name);
        due.then_some((name, slot))
    });

    let newest_ready = sorted.iter().rev().find(|e| e.ready).map(|e| &e.name);
    let excess = sorted.len().saturating_sub(keep_last);
    let delete = sorted
        .iter()
        .filter(|e| Some(&e.name) != newest_ready)
        // Still being taken: deleting it could abort a snapshot in progress.
        .filter(|e| e.ready || e.error.is_some())
        .take(excess)
        .map(|e| e.name.clone())
        .collect();
    Plan {
        create,
        delete,
        next_due: schedule.next_after(now),
    }
}

/// What the snapshot step did and found, for status, metrics and the requeue.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub statuses: Vec<VolumeSnapshotStatus>,
    pub condition: Option<(bool, String, String)>,
    /// The earliest next slot of any component.
    pub next_due: Option<Timestamp>,
    pub created: Vec<String>,
    pub deleted: Vec<String>,
}

/// Take and prune the snapshots `bs` asks for. Reads only the watch cache.
pub async fn run(
    ctx: &Context,
    bs: &ValidBlockSight,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    now: Timestamp,
) -> (Report, Option<SnapshotError>) {
    let mut report = Report::default();
    let Some(settings) = &bs.volume_snapshots else {
        return (report, None);
    };
    if !ctx.volume_snapshot_api {
        report.condition = Some((
            false,
            "ApiNotServed".to_owned(),
            "spec.volumeSnapshots is set, but this cluster does not serve snapshot.storage.k8s.io/v1 VolumeSnapshots: install the external-snapshotter CRDs and controller and a CSI driver that supports snapshots, then restart the operator".to_owned(),
        ));
        return (report, None);
    }
    let namespace = &bs.namespace;
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), namespace, &volume_snapshot::resource());
    let mut failures = Vec::new();
    let mut error = None;
    for &component in &settings.components {
        let existing: Vec<Existing> = ctx
            .caches
            .volume_snapshots_of(namespace, &bs.name, component)
            .iter()
            .filter_map(|o| Existing::from_object(o))
            .collect();
        let plan = plan(
            now,
            &settings.schedule,
            &bs.name,
            component,
            &existing,
            settings.keep_last,
        );
        report.next_due = match (report.next_due, plan.next_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut last_snapshot = existing
            .iter()
            .max_by_key(|e| (e.created, e.name.clone()))
            .map(|e| e.name.clone());
        if let Some((name, slot)) = &plan.create
            && !ctx
                .recent_writes
                .contains(volume_snapshot::KIND, namespace, name, "", None)
        {
            if !volume_in_use(ctx, bs, component) {
                // No running pod yet: its claim may not exist or hold anything worth keeping.
                debug!(%name, "snapshot due, but the volume's pod is not ready yet");
            } else {
                let object = volume_snapshot::build(bs, settings, component, *slot);
                let params = PostParams {
                    field_manager: Some(FIELD_MANAGER.to_owned()),
                    ..Default::default()
                };
                let mut after = None;
                match api.create(&params, &object).await {
                    Ok(created) => {
                        info!(snapshot = %name, "volume snapshot created");
                        report.created.push(name.clone());
                        last_snapshot = Some(name.clone());
                        after = created.resource_version();
                    }
                    // Taken already (a retry, or a cache that has not caught up).
                    Err(kube::Error::Api(e)) if e.code == 409 => {
                        last_snapshot = Some(name.clone());
                    }
                    Err(source) => {
                        error.get_or_insert(SnapshotError::Create {
                            name: name.clone(),
                            source,
                        });
                    }
                }
                let versions = Versions {
                    before: None,
                    after,
                };
                ctx.recent_writes
                    .record(volume_snapshot::KIND, namespace, name, "", versions);
            }
        }
        for name in &plan.delete {
            let cached_version = ctx
                .caches
                .volume_snapshots
                .get(&ObjectRef::new_with(name, volume_snapshot::resource()).within(namespace))
                .and_then(|o| o.resource_version());
            if ctx.recent_writes.contains(
                volume_snapshot::KIND,
                namespace,
                name,
                DELETED,
                cached_version.as_deref(),
            ) {
                continue;
            }
            match api.delete(name, &DeleteParams::background()).await {
                Ok(_) => {
                    info!(snapshot = %name, "volume snapshot deleted: beyond keepLast");
                    report.deleted.push(name.clone());
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => {
                    error.get_or_insert(SnapshotError::Delete {
                        name: name.clone(),
                        source,
                    });
                    continue;
                }
            }
            let versions = Versions {
                before: cached_version,
                after: None,
            };
            ctx.recent_writes
                .record(volume_snapshot::KIND, namespace, name, DELETED, versions);
        }
        for failed in existing.iter().filter(|e| e.error.is_some()) {
            if ctx.first_warning_about(namespace, &failed.name) {
                ctx.publish(
                    reference,
                    "VolumeSnapshot",
                    true,
                    "VolumeSnapshotFailed",
                    format!(
                        "VolumeSnapshot {} failed: {}",
                        failed.name,
                        failed.error.as_deref().unwrap_or_default()
                    ),
                )
                .await;
            }
        }
        // Only the newest attempt counts: a later success clears an older failure.
        if let Some(newest) = existing.iter().max_by_key(|e| (e.created, e.name.clone()))
            && let Some(message) = &newest.error
        {
            failures.push(format!("{} failed: {message}", newest.name));
        }
        let last_ready = existing
            .iter()
            .filter(|e| e.ready)
            .max_by_key(|e| (e.created, e.name.clone()));
        let last_ready_time = last_ready.map(|e| e.taken.unwrap_or(e.created));
        ctx.metrics.record_snapshot_ready(
            namespace,
            &bs.name,
            component.as_str(),
            last_ready_time.map(|t| t.as_second()),
        );
        report.statuses.push(VolumeSnapshotStatus {
            component: component.as_str().to_owned(),
            last_snapshot,
            last_ready_time: last_ready_time.map(Time),
            next_scheduled: plan.next_due.map(Time),
        });
    }
    for gone in [SnapshotComponent::Bitcoind, SnapshotComponent::Electrs] {
        if !settings.components.contains(&gone) {
            ctx.metrics
                .record_snapshot_ready(namespace, &bs.name, gone.as_str(), None);
        }
    }
    report.condition = Some(if failures.is_empty() {
        let components: Vec<&str> = settings.components.iter().map(|c| c.as_str()).collect();
        (
            true,
            "Scheduled".to_owned(),
            format!(
                "{} on \"{}\", keeping {}",
                if components.is_empty() {
                    "nothing".to_owned()
                } else {
                    components.join(", ")
                },
                settings.schedule,
                settings.keep_last
            ),
        )
    } else {
        (false, "SnapshotFailed".to_owned(), failures.join("; "))
    });
    (report, error)
}

/// Marks a recent delete in [`crate::controller::shared::context::RecentWrites`].
const DELETED: &str = "<deleted>";

/// Whether the component's first pod runs (so its claim exists and holds data).
fn volume_in_use(ctx: &Context, bs: &ValidBlockSight, component: SnapshotComponent) -> bool {
    let workload: Component = volume_snapshot::component(component);
    ctx.caches
        .stateful_set(&bs.namespace, &workload.child_name(bs))
        .and_then(|s| s.status.and_then(|s| s.ready_replicas))
        .unwrap_or(0)
        > 0
}

/// The status fields and condition of `report` on top of `status`; the condition keeps its
/// lastTransitionTime unless it flips, and is absent when snapshots are not configured.
pub fn apply_to_status(
    status: &mut BlockSightStatus,
    previous: Option<&BlockSightStatus>,
    report: &Report,
    generation: Option<i64>,
    now: &Time,
) {
    status.volume_snapshots = report.statuses.clone();
    status
        .conditions
        .retain(|c| c.type_ != ConditionType::VolumeSnapshotsScheduled.as_str());
    if let Some((ok, reason, message)) = &report.condition {
        let built = conditions::condition(
            ConditionType::VolumeSnapshotsScheduled,
            conditions::status_of(*ok),
            reason,
            message.clone(),
            generation,
            now,
        );
        status.conditions.extend(conditions::keep_transition_times(
            previous.iter().flat_map(|p| &p.conditions),
            [built],
        ));
    }
}

/// A Warning Event when the snapshot API turns out to be missing (once per transition).
pub async fn announce_missing_api(
    ctx: &Context,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    previous: Option<&BlockSightStatus>,
    new: &BlockSightStatus,
) {
    let reason = |s: Option<&BlockSightStatus>| {
        s.and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == ConditionType::VolumeSnapshotsScheduled.as_str())
        })
        .map(|c| (c.reason.clone(), c.message.clone()))
    };
    if let Some((r, message)) = reason(Some(new))
        && r == "ApiNotServed"
        && reason(previous).map(|(r, _)| r).as_deref() != Some("ApiNotServed")
    {
        ctx.publish(
            reference,
            "VolumeSnapshot",
            true,
            "VolumeSnapshotApiMissing",
            message,
        )
        .await;
    }
}

/// The snapshots `status` last reported, by component (kept while paused or invalid).
pub fn previous_statuses(previous: Option<&BlockSightStatus>) -> Vec<VolumeSnapshotStatus> {
    previous
        .map(|p| p.volume_snapshots.clone())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn weekly() -> Schedule {
        // Sundays 04:00 UTC; 2026-11-29 is a Sunday.
        Schedule::parse("0 4 * * 0").unwrap()
    }

    fn snap(name: &str, created: &str, ready: bool, error: Option<&str>) -> Existing {
        Existing {
            name: name.to_owned(),
            created: ts(created),
            ready,
            taken: ready.then(|| ts(created)),
            error: error.map(str::to_owned),
        }
    }

    fn plan_at(now: &str, existing: &[Existing], keep_last: usize) -> Plan {
        plan(
            ts(now),
            &weekly(),
            "main",
            SnapshotComponent::Bitcoind,
            existing,
            keep_last,
        )
    }

    #[test]
    fn due_at_the_slot_with_a_name_from_the_slot() {
        let existing = [snap(
            "main-bitcoind-202611220400",
            "2026-11-22T04:00:02Z",
            true,
            None,
        )];
        let p = plan_at("2026-11-29T04:00:30Z", &existing, 3);
        assert_eq!(
            p.create,
            Some((
                "main-bitcoind-202611290400".to_owned(),
                ts("2026-11-29T04:00:00Z")
            ))
        );
        assert_eq!(p.next_due, Some(ts("2026-12-06T04:00:00Z")));
        assert!(p.delete.is_empty());
    }

    #[test]
    fn not_due_between_slots_or_once_the_slot_is_taken() {
        let taken = [snap(
            "main-bitcoind-202611290400",
            "2026-11-29T04:00:02Z",
            false,
            None,
        )];
        // Right after it was taken, and days later (a restarted operator): nothing new.
        for now in ["2026-11-29T04:00:05Z", "2026-12-02T12:00:00Z"] {
            let p = plan_at(now, &taken, 3);
            assert_eq!(p.create, None, "{now}");
            assert_eq!(p.next_due, Some(ts("2026-12-06T04:00:00Z")));
        }
    }

    #[test]
    fn missed_slots_are_caught_up_once() {
        // The operator was down for three slots: one snapshot, for the latest slot.
        let old = [snap(
            "main-bitcoind-202611080400",
            "2026-11-08T04:00:01Z",
            true,
            None,
        )];
        let p = plan_at("2026-12-01T09:00:00Z", &old, 3);
        assert_eq!(
            p.create.map(|(n, _)| n),
            Some("main-bitcoind-202611290400".to_owned())
        );
        // With that one in the cache, nothing more until the next slot.
        let caught_up = [
            old[0].clone(),
            snap(
                "main-bitcoind-202611290400",
                "2026-12-01T09:00:01Z",
                false,
                None,
            ),
        ];
        assert_eq!(plan_at("2026-12-01T09:05:00Z", &caught_up, 3).create, None);
    }

    #[test]
    fn a_first_snapshot_is_taken_for_the_latest_slot() {
        let p = plan_at("2026-11-26T12:00:00Z", &[], 3);
        assert_eq!(
            p.create.map(|(n, _)| n),
            Some("main-bitcoind-202611220400".to_owned())
        );
    }

    #[test]
    fn a_snapshot_of_the_slot_stamped_early_by_a_skewed_clock_still_covers_it() {
        let skewed = [snap(
            "main-bitcoind-202611290400",
            "2026-11-29T03:59:58Z",
            true,
            None,
        )];
        assert_eq!(plan_at("2026-11-29T04:00:01Z", &skewed, 3).create, None);
    }

    fn weekly_history(ready: [bool; 5]) -> Vec<Existing> {
        ["01", "08", "15", "22", "29"]
            .iter()
            .zip(ready)
            .map(|(day, ready)| {
                snap(
                    &format!("main-bitcoind-202611{day}0400"),
                    &format!("2026-11-{day}T04:00:01Z"),
                    ready,
                    None,
                )
            })
            .collect()
    }

    #[test]
    fn keep_last_prunes_the_oldest_first() {
        let p = plan_at("2026-11-30T00:00:00Z", &weekly_history([true; 5]), 3);
        assert_eq!(
            p.delete,
            ["main-bitcoind-202611010400", "main-bitcoind-202611080400"]
        );
        assert_eq!(p.create, None);
        let p = plan_at("2026-11-30T00:00:00Z", &weekly_history([true; 5]), 5);
        assert!(p.delete.is_empty());
    }

    #[test]
    fn the_newest_ready_snapshot_is_never_pruned() {
        // Only the oldest is ready; the four newer ones are still being taken.
        let history = weekly_history([true, false, false, false, false]);
        let p = plan_at("2026-11-30T00:00:00Z", &history, 1);
        assert!(p.delete.is_empty(), "{:?}", p.delete);
        // Two ready: the older one may go, the newest ready stays even beyond keepLast.
        let history = weekly_history([true, true, false, false, false]);
        let p = plan_at("2026-11-30T00:00:00Z", &history, 1);
        assert_eq!(p.delete, ["main-bitcoind-202611010400"]);
    }

    #[test]
    fn failed_snapshots_are_pruned_but_pending_ones_are_not() {
        let mut history = weekly_history([true, true, true, true, true]);
        history[0].ready = false;
        history[0].error = Some("quota exceeded".into());
        history[1].ready = false; // still being taken
        let p = plan_at("2026-11-30T00:00:00Z", &history, 3);
        assert_eq!(
            p.delete,
            ["main-bitcoind-202611010400", "main-bitcoind-202611150400"]
        );
    }

    #[test]
    fn existing_snapshots_are_read_from_the_cached_object() {
        let object: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshot",
            "metadata": {"name": "main-bitcoind-202611290400", "creationTimestamp": "2026-11-29T04:00:01Z"},
            "spec": {"source": {"persistentVolumeClaimName": "data-main-bitcoind-0"}},
            "status": {"readyToUse": true, "creationTime": "2026-11-29T04:00:03Z", "error": {"message": "late"}}
        }))
        .unwrap();
        assert_eq!(
            Existing::from_object(&object),
            Some(Existing {
                name: "main-bitcoind-202611290400".into(),
                created: ts("2026-11-29T04:00:01Z"),
                ready: true,
                taken: Some(ts("2026-11-29T04:00:03Z")),
                error: Some("late".into()),
            })
        );
        let mut deleting = object;
        deleting.metadata.deletion_timestamp = Some(Time(ts("2026-11-30T00:00:00Z")));
        assert_eq!(Existing::from_object(&deleting), None);
    }
}
