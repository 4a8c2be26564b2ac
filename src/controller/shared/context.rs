//! What every reconciliation shares: the client, the watch caches of children, the event
//! recorder, metrics and settings.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Client;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use crate::controller::shared::child_cache::{
    ChildCache, ChildMeta, VolumeClaimMeta, WorkloadMeta,
};
use crate::crd::SnapshotComponent;
use crate::crd::{BlockSightBackup, BlockSightRestore};
use crate::desired::{BuildSettings, Cache, ChildKind};
use crate::metrics::Metrics;

/// Read-only views of the children the operator watches. Workloads are cached whole (minus
/// their pod template) for their status; the children it only has to recognise in compact
/// [`ChildCache`]s.
#[derive(Clone)]
pub struct Caches {
    /// The `Compact` rows of the child table (`desired::child`), by kind: metadata only.
    pub compact: BTreeMap<ChildKind, ChildCache>,
    /// The `Custom` rows (prometheus-operator's monitors), by kind, whole. Empty (and
    /// ready) when the cluster does not serve their API.
    pub custom: BTreeMap<ChildKind, Store<DynamicObject>>,
    /// The `Workload` rows, whole minus their pod template, for their status.
    pub stateful_sets: ChildCache<WorkloadMeta>,
    pub deployments: ChildCache<WorkloadMeta>,
    /// The PVCs StatefulSets made from their claim templates (selected by the component
    /// labels their selectors copy onto them): grown by the apply step, reported in status.
    pub stateful_volumes: ChildCache<VolumeClaimMeta>,
    /// Whole objects: the chain probes read credentials from here.
    pub secrets: Store<Secret>,
    /// Backup Jobs (label-selected), without their pod template.
    pub jobs: Store<Job>,
    /// Backup pods: metadata and status only (the termination message is the result).
    pub pods: Store<Pod>,
    pub backups: Store<BlockSightBackup>,
    pub restores: Store<BlockSightRestore>,
    /// The operator's scheduled VolumeSnapshots, whole (their status is read). Empty (and
    /// ready) when snapshot.storage.k8s.io/v1 is not served.
    pub volume_snapshots: Store<DynamicObject>,
    /// Whether every store has delivered its first list (see [`Caches::track_listing`]).
    pub listed: Listed,
}

/// Published once every cache has listed. kube's `Store::wait_until_ready` wakes only one
/// of several tasks waiting on it at once (its DelayedInit polls a oneshot receiver, which
/// keeps a single waker): with BlockSights queued before the caches listed, the others
/// would wait forever. So one task waits on the stores, and any number wait here.
#[derive(Clone, Debug)]
pub struct Listed(tokio::sync::watch::Receiver<bool>);

impl Default for Listed {
    /// Never listed: [`Caches::track_listing`] replaces it.
    fn default() -> Self {
        Listed(tokio::sync::watch::channel(false).1)
    }
}

/// The watches stopped before every cache listed (the controller is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the watch caches stopped before their first list")]
pub struct CachesStopped;

/// A ready, empty cache of a custom resource the cluster does not serve
/// (prometheus-operator's monitors, VolumeSnapshots).
pub fn empty_monitor_store(resource: ApiResource) -> Store<DynamicObject> {
    let mut writer = Writer::new(resource);
    let reader = writer.as_reader();
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Init);
    writer.apply_watcher_event(&kube::runtime::watcher::Event::InitDone);
    reader
}

fn get_dynamic(
    store: &Store<DynamicObject>,
    resource: ApiResource,
    namespace: &str,
    name: &str,
) -> Option<Arc<DynamicObject>> {
    store.get(&ObjectRef::new_with(name, resource).within(namespace))
}

fn get<K>(store: &Store<K>, namespace: &str, name: &str) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store.get(&ObjectRef::new(name).within(namespace))
}

/// Names of the objects in `store` whose controller is the object with `uid`.
fn controlled_by<K>(store: &Store<K>, uid: &str) -> Vec<(String, String)>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash,
{
    store
        .state()
        .iter()
        .filter(|o| {
            o.owner_references()
                .iter()
                .any(|r| r.controller == Some(true) && r.uid == uid)
        })
        .map(|o| (o.namespace().unwrap_or_default(), o.name_any()))
        .collect()
}

impl Caches {
    /// Run `f` on what the caches hold of a child's metadata, if the child exists.
    pub fn with_meta<R>(
        &self,
        kind: ChildKind,
        namespace: &str,
        name: &str,
        f: impl FnOnce(&ChildMeta) -> R,
    ) -> Option<R> {
        match kind.info().cache {
            Cache::Compact => self.compact.get(&kind)?.with(namespace, name, f),
            Cache::Workload => match kind {
                ChildKind::StatefulSet => self.stateful_sets.with(namespace, name, |w| f(&w.child)),
                ChildKind::Deployment => self.deployments.with(namespace, name, |w| f(&w.child)),
                _ => None,
            },
            // Cached whole (few, and kube's types): their metadata is read into a ChildMeta.
            Cache::Custom => get_dynamic(
                self.custom.get(&kind)?,
                kind.info().api_resource(),
                namespace,
                name,
            )
            .map(|o| f(&ChildMeta::of(o.meta()))),
        }
    }

    pub fn secret(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        get(&self.secrets, namespace, name)
    }

    pub fn secret_exists(&self, namespace: &str, name: &str) -> bool {
        get(&self.secrets, namespace, name).is_some()
    }

    pub fn stateful_set(&self, namespace: &str, name: &str) -> Option<WorkloadMeta> {
        self.stateful_sets.get(namespace, name)
    }

    pub fn deployment(&self, namespace: &str, name: &str) -> Option<WorkloadMeta> {
        self.deployments.get(namespace, name)
    }

    /// A PVC that a StatefulSet made from one of its claim templates.
    pub fn stateful_volume(&self, namespace: &str, name: &str) -> Option<VolumeClaimMeta> {
        self.stateful_volumes.get(namespace, name)
    }

    /// The scheduled snapshots of one component of one BlockSight (selected by the labels
    /// the snapshot builder sets: ownership would miss those retained under Retain).
    pub fn volume_snapshots_of(
        &self,
        namespace: &str,
        blocksight: &str,
        component: SnapshotComponent,
    ) -> Vec<Arc<DynamicObject>> {
        let workload = crate::desired::volume_snapshot::component(component);
        self.volume_snapshots
            .state()
            .into_iter()
            .filter(|o| {
                let labels = o.labels();
                o.namespace().as_deref() == Some(namespace)
                    && labels.get("app.kubernetes.io/instance").map(String::as_str)
                        == Some(blocksight)
                    && labels
                        .get("app.kubernetes.io/component")
                        .map(String::as_str)
                        == Some(workload.as_str())
                    && labels
                        .get(crate::names::SCHEDULED_LABEL)
                        .map(String::as_str)
                        == Some("true")
            })
            .collect()
    }

    /// Every applied child whose controller is the BlockSight with `uid`, by kind.
    pub fn children_of(&self, uid: &str) -> Vec<(ChildKind, String, String)> {
        let mut out = Vec::new();
        for &kind in ChildKind::ALL {
            let names = match kind {
                ChildKind::StatefulSet => self.stateful_sets.controlled_by(uid),
                ChildKind::Deployment => self.deployments.controlled_by(uid),
                kind => match (self.compact.get(&kind), self.custom.get(&kind)) {
                    (Some(compact), _) => compact.controlled_by(uid),
                    (None, Some(custom)) => controlled_by(custom, uid),
                    (None, None) => Vec::new(),
                },
            };
            out.extend(names.into_iter().map(|(ns, name)| (kind, ns, name)));
        }
        out
    }

    /// Start the one task that waits for every store's first list and publishes it to
    /// [`Caches::wait_until_ready`]. Call once, before anything waits.
    /// `listed_elsewhere` are the first-list signals of the stores a controller waits on
    /// itself (BlockSightBackups, BlockSightRestores).
    pub fn track_listing(
        mut self,
        listed_elsewhere: Vec<tokio::sync::watch::Receiver<bool>>,
    ) -> Self {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let stores = self.clone();
        tokio::spawn(async move {
            for mut signal in listed_elsewhere {
                if signal.wait_for(|listed| *listed).await.is_err() {
                    return;
                }
            }
            if stores.wait_for_stores().await.is_ok() {
                let _ = tx.send(true);
            }
        });
        self.listed = Listed(rx);
        self
    }

    /// Wait until every cache holds its first complete list (any number of tasks may wait).
    pub async fn wait_until_ready(&self) -> Result<(), CachesStopped> {
        let mut listed = self.listed.0.clone();
        listed
            .wait_for(|listed| *listed)
            .await
            .map(|_| ())
            .map_err(|_| CachesStopped)
    }

    /// Wait on each store in turn: only for [`Caches::track_listing`]'s single task.
    async fn wait_for_stores(&self) -> Result<(), CachesStopped> {
        let stopped = |_| CachesStopped;
        self.stateful_sets
            .wait_until_ready()
            .await
            .map_err(|_| CachesStopped)?;
        self.deployments
            .wait_until_ready()
            .await
            .map_err(|_| CachesStopped)?;
        self.stateful_volumes
            .wait_until_ready()
            .await
            .map_err(|_| CachesStopped)?;
        for compact in self.compact.values() {
            compact
                .wait_until_ready()
                .await
                .map_err(|_| CachesStopped)?;
        }
        self.secrets.wait_until_ready().await.map_err(stopped)?;
        self.jobs.wait_until_ready().await.map_err(stopped)?;
        self.pods.wait_until_ready().await.map_err(stopped)?;
        // Not self.backups nor self.restores: their controllers wait on those stores, and a
        // second waiter could take the only wakeup (see Listed). Their first lists arrive
        // through the signals given to track_listing.
        for custom in self.custom.values() {
            custom.wait_until_ready().await.map_err(stopped)?;
        }
        self.volume_snapshots
            .wait_until_ready()
            .await
            .map_err(stopped)
    }
}

/// (kind, namespace, name) of a written object.
type ObjectKey = (&'static str, String, String);

/// The resourceVersions around one write: what the cache showed when we decided to write
/// (None: the object was absent from it) and what the API server answered (None for a
/// delete, or when unknown).
#[derive(Clone, Debug, Default)]
pub struct Versions {
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Our latest write to one object that the watches may not have delivered yet.
struct Written<T> {
    value: T,
    /// The versions the cache may still show that are older than this write: the one it
    /// showed when we first wrote over it, and those our own earlier writes produced since.
    /// While the cache shows one of them, our write is the truth; once it shows anything
    /// else, it has seen our write (or a later change) and is the truth again.
    stale: Vec<Option<String>>,
    after: Option<String>,
    at: Instant,
}

/// A safety net for a watch that stopped delivering: normally the cache catches up within
/// milliseconds.
const RECENT_WRITE_TTL: Duration = Duration::from_secs(30);

/// Writes made but maybe not yet seen by the watches: a reconcile triggered before the
/// watch event arrives (by the event of another child, say) must not send the same write
/// again. An entry lasts until the cache moves past every version older than our write;
/// resourceVersions are only compared for equality, as the API asks.
pub struct Recent<K, T> {
    writes: Mutex<Entries<K, T>>,
}

struct Entries<K, T> {
    map: HashMap<K, Written<T>>,
    /// Expired entries are swept when the map grows past this (then twice its live size):
    /// a sweep on every write would cost O(writes in flight) each time.
    sweep_at: usize,
}

const FIRST_SWEEP: usize = 1024;

impl<K, T> Default for Recent<K, T> {
    fn default() -> Self {
        Recent {
            writes: Mutex::new(Entries {
                map: HashMap::new(),
                sweep_at: FIRST_SWEEP,
            }),
        }
    }
}

impl<K: std::hash::Hash + Eq, T: Clone> Recent<K, T> {
    /// Remember that `value` was written (see [`Versions`]).
    pub fn record(&self, key: K, value: T, versions: Versions) {
        let mut entries = self.writes.lock().expect("not poisoned");
        if entries.map.len() >= entries.sweep_at {
            entries.map.retain(|_, w| w.at.elapsed() < RECENT_WRITE_TTL);
            entries.sweep_at = (2 * entries.map.len()).max(FIRST_SWEEP);
        }
        let writes = &mut entries.map;
        // A second write over the same stale cache: the cache may next show our first
        // write, which is older than this one.
        let stale = match writes.remove(&key) {
            Some(mut earlier) if earlier.stale.contains(&versions.before) => {
                earlier.stale.push(earlier.after);
                earlier.stale
            }
            _ => vec![versions.before],
        };
        writes.insert(
            key,
            Written {
                value,
                stale,
                after: versions.after,
                at: Instant::now(),
            },
        );
    }

    /// What we wrote, while the cache (at `cached_version`) has not caught up with it.
    pub fn newer_than_cache(&self, key: &K, cached_version: Option<&str>) -> Option<T> {
        let mut entries = self.writes.lock().expect("not poisoned");
        let writes = &mut entries.map;
        let written = writes.get(key)?;
        let cache_is_older = written.stale.iter().any(|v| v.as_deref() == cached_version);
        if !cache_is_older || written.at.elapsed() >= RECENT_WRITE_TTL {
            writes.remove(key);
            return None;
        }
        Some(written.value.clone())
    }
}

/// The digest of the fields the operator's own apply owned in each child, as the API
/// server answered its last apply (see `drift::own_fields_digest`). A watch showing another
/// digest means someone took or deleted a field we set: the child is applied again.
/// Unknown after a restart until the next apply (a field deleted while the operator was down
/// is repaired at the next spec change or resync that applies).
/// With it, the digest of other managers' edits our last apply left in place (fields they
/// share with us at our value): those are not drift until they change.
#[derive(Default)]
pub struct OwnFields(Mutex<HashMap<ObjectKey, FieldDigests>>);

/// What [`OwnFields`] keeps per child.
#[derive(Clone, Copy, Debug)]
struct FieldDigests {
    own: u64,
    foreign: u64,
}

impl OwnFields {
    pub fn record(&self, kind: &'static str, namespace: &str, name: &str, own: u64, foreign: u64) {
        let key = (kind, namespace.to_owned(), name.to_owned());
        let mut map = self.0.lock().expect("not poisoned");
        if own == 0 {
            map.remove(&key);
        } else {
            map.insert(key, FieldDigests { own, foreign });
        }
    }

    /// Whether `seen` (the cache's digest of our field set) differs from what our last apply
    /// left.
    pub fn changed(&self, kind: &'static str, namespace: &str, name: &str, seen: u64) -> bool {
        let key = (kind, namespace.to_owned(), name.to_owned());
        self.0
            .lock()
            .expect("not poisoned")
            .get(&key)
            .is_some_and(|recorded| recorded.own != seen)
    }

    /// Whether other managers' edits (digest `seen`) are other than those our last apply
    /// left in place; true when nothing was recorded.
    pub fn foreign_changed(
        &self,
        kind: &'static str,
        namespace: &str,
        name: &str,
        seen: u64,
    ) -> bool {
        let key = (kind, namespace.to_owned(), name.to_owned());
        self.0
            .lock()
            .expect("not poisoned")
            .get(&key)
            .is_none_or(|recorded| recorded.foreign != seen)
    }

    /// Forget the children of a deleted BlockSight's namespace and names.
    pub fn forget(&self, kind: &'static str, namespace: &str, name: &str) {
        self.0
            .lock()
            .expect("not poisoned")
            .remove(&(kind, namespace.to_owned(), name.to_owned()));
    }
}

/// Children and credentials written (the value is the spec hash, the rotation id or a
/// deletion marker).
#[derive(Default)]
pub struct RecentWrites(Recent<ObjectKey, String>);

impl RecentWrites {
    pub fn record(
        &self,
        kind: &'static str,
        namespace: &str,
        name: &str,
        hash: &str,
        versions: Versions,
    ) {
        self.0.record(
            (kind, namespace.to_owned(), name.to_owned()),
            hash.to_owned(),
            versions,
        );
    }

    /// Whether we wrote `hash` to the object and the cache (at `cached_version`, None when the
    /// cache does not hold it) does not show that write yet.
    pub fn contains(
        &self,
        kind: &'static str,
        namespace: &str,
        name: &str,
        hash: &str,
        cached_version: Option<&str>,
    ) -> bool {
        self.0
            .newer_than_cache(
                &(kind, namespace.to_owned(), name.to_owned()),
                cached_version,
            )
            .is_some_and(|h| h == hash)
    }
}

/// For each owner (uid), the desired set of children (a digest of kinds and names) last
/// found with nothing left to prune. Finding prunable children scans every cache, O(all
/// children); it is needed only when the desired set changed (a component disabled) or
/// once after the operator starts, not on every reconcile.
#[derive(Default)]
pub struct PrunedSets(Mutex<HashMap<String, u64>>);

impl PrunedSets {
    pub fn is_settled(&self, owner_uid: &str, desired: u64) -> bool {
        self.0.lock().expect("not poisoned").get(owner_uid) == Some(&desired)
    }

    pub fn settle(&self, owner_uid: &str, desired: u64) {
        self.0
            .lock()
            .expect("not poisoned")
            .insert(owner_uid.to_owned(), desired);
    }

    pub fn forget(&self, owner_uid: &str) {
        self.0.lock().expect("not poisoned").remove(owner_uid);
    }
}

/// What the CRD's CEL rules last found on each BlockSight, by (namespace, name). They read
/// only the spec, so they are evaluated again only when the generation (or the uid)
/// changed, not on every reconcile: they are most of validation's cost.
#[derive(Default)]
pub struct ValidationMemo(Mutex<HashMap<(String, String), MemoEntry>>);

struct MemoEntry {
    uid: Option<String>,
    generation: Option<i64>,
    /// What the CRD's CEL rules found (usually nothing, so no allocation).
    cel_problems: Vec<crate::validate::FieldError>,
}

impl ValidationMemo {
    /// Validate `bs`, evaluating the CEL rules once per generation. The validated value
    /// itself is rebuilt on each call (microseconds): memoized, it was ~10 KiB per
    /// BlockSight held for the life of the process.
    pub fn validate(
        &self,
        bs: &crate::crd::BlockSight,
    ) -> Result<crate::validate::ValidBlockSight, crate::validate::InvalidSpec> {
        let key = (bs.namespace().unwrap_or_default(), bs.name_any());
        let uid = bs.uid();
        let generation = bs.meta().generation;
        let memoized = {
            let memo = self.0.lock().expect("not poisoned");
            memo.get(&key)
                .filter(|e| e.uid == uid && e.generation == generation && generation.is_some())
                .map(|e| e.cel_problems.clone())
        };
        let cel_problems = match memoized {
            Some(problems) => problems,
            None => {
                let problems = crate::validate::check_cel(bs, None);
                self.0.lock().expect("not poisoned").insert(
                    key,
                    MemoEntry {
                        uid,
                        generation,
                        cel_problems: problems.clone(),
                    },
                );
                problems
            }
        };
        crate::validate::validate_with_cel(bs, cel_problems)
    }

    pub fn forget(&self, namespace: &str, name: &str) {
        self.0
            .lock()
            .expect("not poisoned")
            .remove(&(namespace.to_owned(), name.to_owned()));
    }
}

/// Status written to each BlockSight, by (namespace, name): the status a reconcile compares
/// with while the BlockSight in the cache still carries the older one.
pub type RecentStatus = Recent<(String, String), Arc<crate::crd::BlockSightStatus>>;

/// Shared by every reconciliation.
pub struct Context {
    pub client: Client,
    pub caches: Caches,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: BuildSettings,
    pub recent_writes: RecentWrites,
    /// Per child, the digest of the fields our last apply owned ([`OwnFields`]).
    pub own_fields: OwnFields,
    pub recent_status: RecentStatus,
    pub pruned: PrunedSets,
    pub validated: ValidationMemo,
    /// How often a converged BlockSight is reconciled again.
    pub resync: Duration,
    /// How long each step of a reconcile (apply, volume snapshots, status) may wait on the
    /// API server before it fails with category `timeout`.
    pub reconcile_timeout: Duration,
    /// The chain probes: one loop per BlockSight, and what they last published.
    pub poller: Arc<crate::chain::poller::Poller>,
    /// Consecutive failures per (kind, namespace, name) of the three controllers' objects,
    /// for the retry backoff (`controller::error_policy`).
    pub failures: Mutex<HashMap<(String, String, String), u32>>,
    /// The cluster serves snapshot.storage.k8s.io/v1 VolumeSnapshots (discovered at start).
    pub volume_snapshot_api: bool,
    /// The current time; tests set a fixed one (snapshot schedules depend on it).
    pub clock: Clock,
    /// Failed VolumeSnapshots already reported by a Warning Event, by (namespace, name).
    pub warned_snapshots: Mutex<HashSet<(String, String)>>,
}

impl Context {
    /// Publish an Event about `reference` for `action` (Normal, or Warning when `warning`);
    /// best effort: a lost Event is logged, never an error of the reconcile.
    pub async fn publish(
        &self,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        action: &str,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        use kube::runtime::events::{Event, EventType};
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: truncate_utf8(reason, EVENT_REASON_MAX),
            note: Some(truncate_utf8(&note, EVENT_NOTE_MAX)),
            action: truncate_utf8(action, EVENT_REASON_MAX),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, reference).await {
            tracing::warn!(error = %e, "publishing event failed");
        }
    }
}

/// events.k8s.io/v1 refuses a `note` longer than this many bytes (and the whole Event with it).
pub const EVENT_NOTE_MAX: usize = 1024;
/// ... and a `reason` or `action` longer than this.
pub const EVENT_REASON_MAX: usize = 128;

/// At most `max` bytes of `text`, cut at a character boundary, ending in `…` when cut.
pub fn truncate_utf8(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    const ELLIPSIS: &str = "…";
    let mut end = max - ELLIPSIS.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &text[..end])
}

/// Where the controller reads the time.
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(jiff::Timestamp::now)
}

impl Context {
    /// Count a failed reconciliation of one object; returns the consecutive failures.
    pub fn record_failure(&self, kind: &str, namespace: &str, name: &str) -> u32 {
        let mut failures = self.failures.lock().expect("not poisoned");
        let count = failures
            .entry((kind.to_owned(), namespace.to_owned(), name.to_owned()))
            .or_insert(0);
        *count += 1;
        *count
    }

    /// True the first time a failed snapshot is seen by this process (one Warning Event each).
    pub fn first_warning_about(&self, namespace: &str, snapshot: &str) -> bool {
        self.warned_snapshots
            .lock()
            .expect("not poisoned")
            .insert((namespace.to_owned(), snapshot.to_owned()))
    }

    /// Forget an object's failures: its next failure retries after the first backoff step.
    pub fn clear_failures(&self, kind: &str, namespace: &str, name: &str) {
        self.failures.lock().expect("not poisoned").remove(&(
            kind.to_owned(),
            namespace.to_owned(),
            name.to_owned(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocksight(generation: i64, api_replicas: i32) -> crate::crd::BlockSight {
        let mut bs: crate::crd::BlockSight = serde_yaml::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/regtest.yaml"
        )))
        .unwrap();
        bs.metadata.namespace = Some("default".into());
        bs.metadata.uid = Some("uid-1".into());
        bs.metadata.generation = Some(generation);
        bs.spec.api.replicas = Some(api_replicas);
        bs
    }

    #[test]
    fn cel_rules_run_once_per_generation_the_rest_of_validation_every_time() {
        let memo = ValidationMemo::default();
        assert!(memo.validate(&blocksight(1, 2)).is_ok());
        // Same generation: the CEL verdict is reused. Here the spec changed without a new
        // generation (the API server never does that), which shows the rules did not run
        // again: 500 API replicas break the CEL rule (at most 100), not the Rust checks.
        assert!(memo.validate(&blocksight(1, 500)).is_ok());
        // A new generation runs them.
        let invalid = memo.validate(&blocksight(2, 500)).unwrap_err().to_string();
        assert!(
            invalid.contains("replicas must be between 0 and 100"),
            "{invalid}"
        );
        // The rest is computed on every call: the rotation annotation (no new generation)
        // reaches the validated value at once.
        let mut rotated = blocksight(3, 2);
        assert_eq!(memo.validate(&rotated).unwrap().rotation, None);
        rotated.metadata.annotations =
            Some([(crate::names::ROTATE_ANNOTATION.to_owned(), "r1".to_owned())].into());
        assert_eq!(
            memo.validate(&rotated).unwrap().rotation.as_deref(),
            Some("r1")
        );
        // Forgotten (the BlockSight was deleted): evaluated afresh.
        memo.forget("default", "dev");
        assert!(memo.0.lock().unwrap().is_empty());
    }

    fn key() -> ObjectKey {
        ("ConfigMap", "ns".to_owned(), "a".to_owned())
    }

    fn versions(before: Option<&str>, after: Option<&str>) -> Versions {
        Versions {
            before: before.map(str::to_owned),
            after: after.map(str::to_owned),
        }
    }

    #[test]
    fn a_write_is_trusted_while_the_cache_shows_what_it_showed_before() {
        let recent: Recent<ObjectKey, String> = Recent::default();
        recent.record(key(), "h1".to_owned(), versions(Some("10"), Some("11")));
        // The cache has not seen our write yet.
        assert_eq!(
            recent.newer_than_cache(&key(), Some("10")),
            Some("h1".into())
        );
        assert_eq!(
            recent.newer_than_cache(&key(), Some("10")),
            Some("h1".into())
        );
        // It moved on (our write or a later edit): the cache is the truth, for good.
        assert_eq!(recent.newer_than_cache(&key(), Some("11")), None);
        assert_eq!(recent.newer_than_cache(&key(), Some("10")), None);
    }

    #[test]
    fn a_second_write_over_a_stale_cache_outlives_the_first_write_showing_up() {
        let recent: Recent<ObjectKey, String> = Recent::default();
        recent.record(key(), "s1".to_owned(), versions(Some("10"), Some("11")));
        recent.record(key(), "s2".to_owned(), versions(Some("10"), Some("12")));
        assert_eq!(
            recent.newer_than_cache(&key(), Some("10")),
            Some("s2".into())
        );
        // The watch delivers our first write: still older than the second.
        assert_eq!(
            recent.newer_than_cache(&key(), Some("11")),
            Some("s2".into())
        );
        assert_eq!(recent.newer_than_cache(&key(), Some("12")), None);
    }

    #[test]
    fn a_write_over_a_fresh_cache_starts_afresh() {
        let recent: Recent<ObjectKey, String> = Recent::default();
        recent.record(key(), "s1".to_owned(), versions(Some("10"), Some("11")));
        recent.record(key(), "s2".to_owned(), versions(Some("11"), Some("12")));
        assert_eq!(recent.newer_than_cache(&key(), Some("10")), None);
    }

    #[test]
    fn a_create_is_trusted_until_the_object_appears() {
        let recent: Recent<ObjectKey, String> = Recent::default();
        recent.record(key(), String::new(), versions(None, Some("1")));
        assert!(recent.newer_than_cache(&key(), None).is_some());
        assert!(recent.newer_than_cache(&key(), Some("1")).is_none());
    }

    #[test]
    fn recent_writes_match_the_hash_written() {
        let writes = RecentWrites::default();
        writes.record(
            "ConfigMap",
            "ns",
            "a",
            "h1",
            versions(Some("10"), Some("11")),
        );
        assert!(!writes.contains("ConfigMap", "ns", "a", "h2", Some("10")));
        assert!(writes.contains("ConfigMap", "ns", "a", "h1", Some("10")));
        assert!(!writes.contains("Service", "ns", "a", "h1", Some("10")));
    }
}

#[cfg(test)]
mod event_text_tests {
    use super::*;

    #[test]
    fn long_notes_are_cut_at_a_character_boundary_within_the_api_limit() {
        let note = "é".repeat(EVENT_NOTE_MAX); // 2 bytes each
        let cut = truncate_utf8(&note, EVENT_NOTE_MAX);
        assert!(cut.len() <= EVENT_NOTE_MAX, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert!(cut.len() > EVENT_NOTE_MAX - 4);
        assert_eq!(truncate_utf8("short", EVENT_NOTE_MAX), "short");
        let exact = "a".repeat(EVENT_NOTE_MAX);
        assert_eq!(truncate_utf8(&exact, EVENT_NOTE_MAX), exact);
    }
}
