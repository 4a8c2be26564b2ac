//! The watches, started once: one per row of the child table (`desired::child`: metadata
//! only for `Compact` rows, whole for workloads and `Custom` rows), the operator's Secrets,
//! the StatefulSets' volume claims, VolumeSnapshots, backup Jobs and Pods, and the three
//! custom resources. Each feeds a cache ([`Caches`]) and a trigger stream for the
//! controllers (`runtime::controllers`).

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};

use super::discovery::OptionalApis;
use crate::chain::poller::SecretReader;
use crate::controller::Caches;
use crate::controller::shared::child_cache::{
    ChildMeta, VolumeClaimMeta, WorkloadMeta, child_cache,
};
use crate::controller::shared::context::empty_monitor_store;
use crate::controller::shared::drift;
use crate::crd::{BlockSight, BlockSightBackup, BlockSightRestore};
use crate::desired::{Cache, ChildKind, volume_snapshot};
use crate::names::{FIELD_MANAGER, MANAGED_BY, ROTATION_ANNOTATION};

/// A stream of changed objects, for a controller's triggers.
pub type Trigger<K> = BoxStream<'static, Result<K, watcher::Error>>;

/// Subscribers of a shared store, one per controller it wakes.
pub type Shared<K> = ReflectHandle<K>;

/// Every watch's cache and trigger streams.
pub struct Watches {
    pub caches: Caches,
    /// The BlockSights, whole minus managedFields; `blocksights` streams their changes.
    pub primary: Store<DeserializeGuard<BlockSight>>,
    pub blocksights: Trigger<DeserializeGuard<BlockSight>>,
    /// Raised when the BlockSight watch has delivered its first list.
    pub primary_listed: tokio::sync::watch::Receiver<bool>,
    /// (namespace, name, uid) of each BlockSight the watch saw deleted.
    pub deleted: tokio::sync::mpsc::UnboundedReceiver<(String, String, String)>,
    /// The `Compact` rows, metadata only, with their API resource.
    pub compact: Vec<(ApiResource, Trigger<PartialObjectMeta<DynamicObject>>)>,
    /// The `Custom` rows (pending streams where the cluster does not serve them).
    pub custom: Vec<(ApiResource, Trigger<DynamicObject>)>,
    pub secrets: Trigger<Secret>,
    pub stateful_sets: Trigger<StatefulSet>,
    pub deployments: Trigger<Deployment>,
    /// The PVCs of the StatefulSets (not owned by the BlockSight: mapped by label).
    pub stateful_volumes: Trigger<PersistentVolumeClaim>,
    pub volume_snapshots: Trigger<DynamicObject>,
    pub jobs: [Shared<Job>; 3],
    pub pods: Shared<Pod>,
    pub backups: [Shared<BlockSightBackup>; 3],
    pub restores: [Shared<BlockSightRestore>; 2],
}

/// Objects per page of the watches' initial lists (kube's default is 500). A page is held
/// whole while it is folded into the caches, with every object's managedFields; at 500,
/// the seventeen lists a starting operator runs at once held over 100 MiB with 1,000
/// BlockSights. More, smaller pages cost a few more requests at start only.
const LIST_PAGE_SIZE: u32 = 100;

pub fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// What the whole-object caches keep of an object's metadata: name, namespace, uid,
/// resourceVersion, generation, the controller reference (pruning), the annotations named
/// in `keep` and other managers' field entries (drift, see
/// [`drift::keep_foreign_updates`]). Labels, other annotations and our own managedFields
/// are never read from a cache, and were most of its memory.
fn slim(meta: &mut kube::api::ObjectMeta, keep: &[&str]) {
    drift::keep_foreign_updates(meta, FIELD_MANAGER);
    meta.labels = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|k, _| keep.contains(&k.as_str()));
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
    if let Some(owners) = meta.owner_references.as_mut() {
        owners.retain(|o| o.controller == Some(true));
    }
    meta.finalizers = None;
    meta.generate_name = None;
}

/// Credentials for the chain probes: the operator's own Secrets from the watch cache; a
/// user's Secret (external database URI) by a GET, cached for ten minutes.
pub fn secret_reader(client: Client, cache: Store<Secret>) -> SecretReader {
    type Fetched = std::collections::HashMap<
        (String, String),
        (
            std::collections::BTreeMap<String, String>,
            std::time::Instant,
        ),
    >;
    let fetched: Arc<std::sync::Mutex<Fetched>> = Arc::default();
    Arc::new(move |namespace: String, name: String| {
        let (client, cache, fetched) = (client.clone(), cache.clone(), fetched.clone());
        Box::pin(async move {
            let decode = |s: &Secret| {
                s.data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
                    .collect()
            };
            if let Some(secret) = cache.get(&ObjectRef::new(&name).within(&namespace)) {
                return Some(decode(&secret));
            }
            let key = (namespace.clone(), name.clone());
            if let Some((data, at)) = fetched.lock().expect("not poisoned").get(&key)
                && at.elapsed() < Duration::from_secs(600)
            {
                return Some(data.clone());
            }
            let api: Api<Secret> = Api::namespaced(client, &namespace);
            let data: std::collections::BTreeMap<String, String> =
                decode(&api.get_opt(&name).await.ok()??);
            fetched
                .lock()
                .expect("not poisoned")
                .insert(key, (data.clone(), std::time::Instant::now()));
            Some(data)
        })
    })
}

/// A reflector of a custom resource such as ServiceMonitors (when `installed`; otherwise an empty, ready
/// cache and a stream that never yields).
fn monitor_reflector(
    client: &Client,
    namespace: Option<&str>,
    config: &watcher::Config,
    resource: ApiResource,
    installed: bool,
) -> (
    Store<DynamicObject>,
    futures::stream::BoxStream<'static, Result<DynamicObject, watcher::Error>>,
) {
    if !installed {
        return (
            empty_monitor_store(resource),
            futures::stream::pending().boxed(),
        );
    }
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let writer = reflector::store::Writer::new(resource);
    let reader = writer.as_reader();
    let stream = watcher(api, config.clone())
        .default_backoff()
        .reflect(writer)
        .touched_objects()
        .boxed();
    (reader, stream)
}

/// Raise `listed` when a watch stream delivers its first complete list.
fn first_list_signal<K>(
    listed: tokio::sync::watch::Sender<bool>,
) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) {
    move |event| {
        if let Ok(watcher::Event::InitDone) = event {
            listed.send_replace(true);
        }
    }
}

/// A metadata-only watch of one `Compact` row of the child table into a compact cache.
fn compact_reflector(
    client: &Client,
    namespace: Option<&str>,
    config: &watcher::Config,
    resource: &ApiResource,
) -> (
    crate::controller::shared::child_cache::ChildCache<ChildMeta>,
    Trigger<PartialObjectMeta<DynamicObject>>,
) {
    let (reader, mut writer) = child_cache::<ChildMeta>();
    // An Api of PartialObjectMeta makes metadata-only list and watch requests.
    let api: Api<PartialObjectMeta<DynamicObject>> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    };
    let stream = watcher(api, config.clone())
        .default_backoff()
        .inspect_ok(move |event| writer.apply_watcher_event(event))
        .touched_objects()
        .boxed();
    (reader, stream)
}

/// Start every watch (lazily: a trigger stream lists when its controller first polls it;
/// the shared stores run in tasks of their own).
pub fn start(client: &Client, namespace: Option<&str>, apis: OptionalApis) -> Watches {
    let ns = namespace;
    let children = watcher::Config::default()
        .labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"))
        .page_size(LIST_PAGE_SIZE);
    let mut compact_caches = std::collections::BTreeMap::new();
    let mut compact = Vec::new();
    for kind in ChildKind::cached_as(Cache::Compact) {
        let resource = kind.info().api_resource();
        let (cache, stream) = compact_reflector(client, ns, &children, &resource);
        compact_caches.insert(kind, cache);
        compact.push((resource, stream));
    }
    let mut custom_caches = std::collections::BTreeMap::new();
    let mut custom = Vec::new();
    for kind in ChildKind::cached_as(Cache::Custom) {
        // ServiceMonitors and PodMonitors only where prometheus-operator's CRDs are installed.
        let resource = kind.info().api_resource();
        let (cache, stream) =
            monitor_reflector(client, ns, &children, resource.clone(), apis.monitoring);
        custom_caches.insert(kind, cache);
        custom.push((resource, stream));
    }
    // The operator's own Secrets whole (only those it labels): the chain probes read their
    // credentials from this cache instead of the API.
    let (secrets, writer) = reflector::store();
    let secret_events = watcher(scoped::<Secret>(client, ns), children.clone())
        .default_backoff()
        .modify(|s: &mut Secret| slim(&mut s.metadata, &[ROTATION_ANNOTATION]))
        .reflect(writer)
        .touched_objects()
        .boxed();
    // Workloads are watched whole for their status; the caches keep the few numbers
    // status reads (see child_cache::WorkloadMeta).
    let (stateful_sets, mut writer) = child_cache::<WorkloadMeta>();
    let stateful_set_events = watcher(scoped::<StatefulSet>(client, ns), children.clone())
        .default_backoff()
        .inspect_ok(move |event| writer.apply_watcher_event(event))
        .touched_objects()
        .boxed();
    // The PVCs of the StatefulSets: the claim templates carry no labels, so the StatefulSet
    // controller gives each claim its pods' selector labels (component, instance).
    let (stateful_volumes, mut writer) = child_cache::<VolumeClaimMeta>();
    let stateful_volume_events = watcher(
        scoped::<PersistentVolumeClaim>(client, ns),
        watcher::Config::default()
            .labels("app.kubernetes.io/component,app.kubernetes.io/instance")
            .page_size(LIST_PAGE_SIZE),
    )
    .default_backoff()
    .inspect_ok(move |event| writer.apply_watcher_event(event))
    .touched_objects()
    .boxed();
    let (deployments, mut writer) = child_cache::<WorkloadMeta>();
    let deployment_events = watcher(scoped::<Deployment>(client, ns), children.clone())
        .default_backoff()
        .inspect_ok(move |event| writer.apply_watcher_event(event))
        .touched_objects()
        .boxed();
    // The operator's scheduled VolumeSnapshots, where the cluster serves them. Whole
    // objects: their status says whether they are ready or failed.
    let (volume_snapshots, volume_snapshot_events) = monitor_reflector(
        client,
        ns,
        &watcher::Config::default().labels(&volume_snapshot::watch_selector()),
        volume_snapshot::resource(),
        apis.volume_snapshots,
    );
    // Backups: Jobs and Pods of the backup component (slimmed), and the two backup kinds;
    // shared streams, since several controllers are woken by them.
    let backup_objects = watcher::Config::default().labels(&format!(
        "app.kubernetes.io/component=backup,app.kubernetes.io/managed-by={MANAGED_BY}"
    ));
    let (jobs, job_writer) = reflector::store_shared::<Job>(256);
    let job_subscribers = [(); 3].map(|()| job_writer.subscribe().expect("a shared store"));
    tokio::spawn(
        watcher(scoped::<Job>(client, ns), backup_objects.clone())
            .default_backoff()
            .modify(|j: &mut Job| {
                if let Some(spec) = j.spec.as_mut() {
                    spec.template = Default::default();
                }
                j.metadata.managed_fields = None;
            })
            .reflect_shared(job_writer)
            .for_each(|_| futures::future::ready(())),
    );
    let (pods, pod_writer) = reflector::store_shared::<Pod>(256);
    let pod_subscriber = pod_writer.subscribe().expect("a shared store");
    tokio::spawn(
        watcher(scoped::<Pod>(client, ns), backup_objects)
            .default_backoff()
            .modify(|p: &mut Pod| {
                p.spec = None;
                p.metadata.managed_fields = None;
            })
            .reflect_shared(pod_writer)
            .for_each(|_| futures::future::ready(())),
    );
    // Their controllers wait on these two stores themselves; the caches learn of their first
    // list from the streams instead (see context::Listed).
    let (backups_listed_tx, backups_listed) = tokio::sync::watch::channel(false);
    let (restores_listed_tx, restores_listed) = tokio::sync::watch::channel(false);
    let (backups, backup_writer) = reflector::store_shared::<BlockSightBackup>(256);
    let backup_subscribers = [(); 3].map(|()| backup_writer.subscribe().expect("a shared store"));
    tokio::spawn(
        watcher(
            scoped::<BlockSightBackup>(client, ns),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(|b: &mut BlockSightBackup| b.metadata.managed_fields = None)
        .reflect_shared(backup_writer)
        .inspect(first_list_signal(backups_listed_tx))
        .for_each(|_| futures::future::ready(())),
    );
    let (restores, restore_writer) = reflector::store_shared::<BlockSightRestore>(256);
    let restore_subscribers = [(); 2].map(|()| restore_writer.subscribe().expect("a shared store"));
    tokio::spawn(
        watcher(
            scoped::<BlockSightRestore>(client, ns),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(|r: &mut BlockSightRestore| r.metadata.managed_fields = None)
        .reflect_shared(restore_writer)
        .inspect(first_list_signal(restores_listed_tx))
        .for_each(|_| futures::future::ready(())),
    );
    let caches = Caches {
        compact: compact_caches,
        custom: custom_caches,
        stateful_sets,
        deployments,
        stateful_volumes,
        secrets,
        jobs,
        pods,
        backups,
        restores,
        volume_snapshots,
        listed: Default::default(),
    }
    .track_listing(vec![backups_listed, restores_listed]);

    // The BlockSight watch, as Controller::new builds it, plus a signal when its first list
    // is in: the controller itself waits on the store's readiness, and kube's
    // Store::wait_until_ready wakes only one waiter (see context::Listed), so /readyz must
    // not wait on the same store.
    let (primary_listed_tx, primary_listed) = tokio::sync::watch::channel(false);
    // BlockSights deleted (seen by the watch): what the operator holds about them is
    // dropped once the context exists (see blocksight::forget).
    let (deleted_tx, deleted) = tokio::sync::mpsc::unbounded_channel::<(String, String, String)>();
    let writer = reflector::store::Writer::<DeserializeGuard<BlockSight>>::default();
    let primary = writer.as_reader();
    let blocksights = reflector::reflector(
        writer,
        watcher(
            scoped::<DeserializeGuard<BlockSight>>(client, ns),
            watcher::Config::default()
                .any_semantic()
                .page_size(LIST_PAGE_SIZE),
        )
        // managedFields are never read, and were a third of a BlockSight's memory.
        .modify(|guard: &mut DeserializeGuard<BlockSight>| {
            if let Ok(bs) = guard.0.as_mut() {
                bs.metadata.managed_fields = None;
            }
        }),
    )
    .inspect(first_list_signal(primary_listed_tx))
    .inspect(move |event| {
        if let Ok(watcher::Event::Delete(gone)) = event {
            let _ = deleted_tx.send((
                gone.namespace().unwrap_or_default(),
                gone.name_any(),
                gone.uid().unwrap_or_default(),
            ));
        }
    })
    .applied_objects()
    .boxed();
    Watches {
        caches,
        primary,
        blocksights,
        primary_listed,
        deleted,
        compact,
        custom,
        secrets: secret_events,
        stateful_sets: stateful_set_events,
        deployments: deployment_events,
        stateful_volumes: stateful_volume_events,
        volume_snapshots: volume_snapshot_events,
        jobs: job_subscribers,
        pods: pod_subscriber,
        backups: backup_subscribers,
        restores: restore_subscribers,
    }
}
