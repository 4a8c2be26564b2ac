//! Compact watch caches of the operator's children: of each object, only what reconcile
//! reads. For every child ([`ChildMeta`]): the resourceVersion (recent writes), the spec
//! hash (is it what we applied?), the controller's uid (pruning) and other managers' field
//! entries (drift); for StatefulSets and Deployments ([`WorkloadMeta`]) also the replica
//! counts and revisions that status reports.
//!
//! kube's reflector keeps whole objects instead: labels, annotations and owner references
//! as maps and vectors of Strings, about 3 KiB per object (a StatefulSet's struct alone is
//! over 1 KiB with its empty pod template), against 200 to 400 bytes here. At 1,000
//! BlockSights that is 34,000 objects, the difference between ~130 MiB and ~15 MiB
//! (docs/performance.md).
//!
//! The writer takes kube's watcher events, so the watch streams (and their triggers of the
//! controller) are kube's own; readiness is a `watch` channel that any number of tasks may
//! wait on (kube's `Store::wait_until_ready` wakes only one, see [`crate::controller::shared::context::Listed`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};
use kube::Resource;
use kube::runtime::watcher;

use crate::controller::shared::drift;
use crate::names::{FIELD_MANAGER, SPEC_HASH_ANNOTATION};

/// What the cache keeps of one object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChildMeta {
    resource_version: Option<Box<str>>,
    spec_hash: Option<Box<str>>,
    controller_uid: Option<Box<str>>,
    /// Entries of other managers' edits (see [`drift::is_foreign_update`]); usually none.
    foreign_fields: Option<Box<[ManagedFieldsEntry]>>,
    /// Digest of the field set our own apply owns ([`drift::own_fields_digest`]): a field
    /// someone deletes leaves every manager's entry, ours too, without a foreign entry.
    own_fields: u64,
}

impl ChildMeta {
    pub fn of(meta: &ObjectMeta) -> Self {
        let foreign: Vec<ManagedFieldsEntry> = meta
            .managed_fields
            .iter()
            .flatten()
            .filter(|entry| drift::is_foreign_update(entry, FIELD_MANAGER))
            .cloned()
            .collect();
        ChildMeta {
            resource_version: meta.resource_version.as_deref().map(Box::from),
            spec_hash: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(SPEC_HASH_ANNOTATION))
                .map(|h| Box::from(h.as_str())),
            controller_uid: meta
                .owner_references
                .iter()
                .flatten()
                .find(|r| r.controller == Some(true))
                .map(|r| Box::from(r.uid.as_str())),
            foreign_fields: (!foreign.is_empty()).then(|| foreign.into_boxed_slice()),
            own_fields: drift::own_fields_digest(meta, FIELD_MANAGER),
        }
    }

    pub fn own_fields(&self) -> u64 {
        self.own_fields
    }

    pub fn resource_version(&self) -> Option<&str> {
        self.resource_version.as_deref()
    }

    pub fn spec_hash(&self) -> Option<&str> {
        self.spec_hash.as_deref()
    }

    pub fn controller_uid(&self) -> Option<&str> {
        self.controller_uid.as_deref()
    }

    pub fn foreign_fields(&self) -> &[ManagedFieldsEntry] {
        self.foreign_fields.as_deref().unwrap_or_default()
    }
}

impl AsRef<ChildMeta> for ChildMeta {
    fn as_ref(&self) -> &ChildMeta {
        self
    }
}

/// What a cache of `Self` keeps of an object of kind `K`.
pub trait Keep<K>: Sized {
    fn keep(obj: &K) -> Self;
}

impl<K: Resource> Keep<K> for ChildMeta {
    fn keep(obj: &K) -> Self {
        ChildMeta::of(obj.meta())
    }
}

/// What the caches keep of a StatefulSet or Deployment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkloadMeta {
    pub child: ChildMeta,
    pub generation: Option<i64>,
    /// spec.replicas: under autoscaling, the HPA's choice.
    pub replicas: Option<i32>,
    /// None until the workload controller reports.
    pub status: Option<WorkloadStatus>,
    /// StatefulSets: their volumeClaimTemplates as the API server holds them, which it never
    /// lets change (see `apply::keep_claim_templates`). Empty for Deployments.
    pub claims: Box<[ClaimTemplate]>,
    /// Deployments: whether the operator's own apply owns `spec.replicas` (an autoscaled
    /// Deployment needs a handover first, see `apply::hand_over_replicas`).
    pub owns_replicas: bool,
}

/// One volumeClaimTemplate of a live StatefulSet: what identifies it and its size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimTemplate {
    pub name: Box<str>,
    pub storage_class: Option<Box<str>>,
    pub storage: Option<Box<str>>,
}

impl ClaimTemplate {
    pub fn of(pvc: &k8s_openapi::api::core::v1::PersistentVolumeClaim) -> Self {
        let spec = pvc.spec.as_ref();
        ClaimTemplate {
            name: pvc.metadata.name.as_deref().unwrap_or_default().into(),
            storage_class: spec
                .and_then(|s| s.storage_class_name.as_deref())
                .map(Box::from),
            storage: spec
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .map(|q| Box::from(q.0.as_str())),
        }
    }
}

/// What the caches keep of a PersistentVolumeClaim a StatefulSet made from its templates:
/// what the operator needs to grow it and report the resize.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VolumeClaimMeta {
    pub child: ChildMeta,
    /// `app.kubernetes.io/component` of the claim (copied from the StatefulSet's selector).
    pub component: Option<Box<str>>,
    /// spec.resources.requests.storage.
    pub request: Option<Box<str>>,
    /// status.capacity.storage: what the volume has now.
    pub capacity: Option<Box<str>>,
    /// A true `Resizing` or `FileSystemResizePending` condition, if any.
    pub resizing: Option<Box<str>>,
}

impl AsRef<ChildMeta> for VolumeClaimMeta {
    fn as_ref(&self) -> &ChildMeta {
        &self.child
    }
}

impl Keep<k8s_openapi::api::core::v1::PersistentVolumeClaim> for VolumeClaimMeta {
    fn keep(obj: &k8s_openapi::api::core::v1::PersistentVolumeClaim) -> Self {
        let storage = |m: Option<
            &std::collections::BTreeMap<
                String,
                k8s_openapi::apimachinery::pkg::api::resource::Quantity,
            >,
        >| {
            m.and_then(|m| m.get("storage"))
                .map(|q| Box::from(q.0.as_str()))
        };
        let status = obj.status.as_ref();
        VolumeClaimMeta {
            child: ChildMeta::of(&obj.metadata),
            component: obj
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app.kubernetes.io/component"))
                .map(|c| Box::from(c.as_str())),
            request: storage(
                obj.spec
                    .as_ref()
                    .and_then(|s| s.resources.as_ref())
                    .and_then(|r| r.requests.as_ref()),
            ),
            capacity: storage(status.and_then(|s| s.capacity.as_ref())),
            resizing: status
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .find(|c| {
                    c.status == "True"
                        && (c.type_ == "Resizing" || c.type_ == "FileSystemResizePending")
                })
                .map(|c| Box::from(c.type_.as_str())),
        }
    }
}

/// The part of a workload's status that BlockSight status is computed from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkloadStatus {
    pub observed_generation: Option<i64>,
    pub replicas: Option<i32>,
    pub ready_replicas: Option<i32>,
    pub updated_replicas: Option<i32>,
    /// StatefulSets only: the rollout is complete when they are equal.
    pub current_revision: Option<Box<str>>,
    pub update_revision: Option<Box<str>>,
}

impl AsRef<ChildMeta> for WorkloadMeta {
    fn as_ref(&self) -> &ChildMeta {
        &self.child
    }
}

impl WorkloadMeta {
    fn of(meta: &ObjectMeta, replicas: Option<i32>, status: Option<WorkloadStatus>) -> Self {
        WorkloadMeta {
            child: ChildMeta::of(meta),
            generation: meta.generation,
            replicas,
            status,
            claims: Box::default(),
            owns_replicas: false,
        }
    }
}

/// Whether the operator's Apply entry in `meta` owns `spec.replicas`.
fn operator_owns_replicas(meta: &ObjectMeta) -> bool {
    meta.managed_fields.iter().flatten().any(|entry| {
        entry.manager.as_deref() == Some(FIELD_MANAGER)
            && entry.operation.as_deref() == Some("Apply")
            && entry.subresource.as_deref().unwrap_or_default().is_empty()
            && entry
                .fields_v1
                .as_ref()
                .and_then(|f| f.0.get("f:spec"))
                .and_then(|spec| spec.get("f:replicas"))
                .is_some()
    })
}

impl Keep<StatefulSet> for WorkloadMeta {
    fn keep(obj: &StatefulSet) -> Self {
        let status = obj.status.as_ref().map(|s| WorkloadStatus {
            observed_generation: s.observed_generation,
            replicas: Some(s.replicas),
            ready_replicas: s.ready_replicas,
            updated_replicas: s.updated_replicas,
            current_revision: s.current_revision.as_deref().map(Box::from),
            update_revision: s.update_revision.as_deref().map(Box::from),
        });
        let mut meta = WorkloadMeta::of(&obj.metadata, obj.spec.replicas, status);
        meta.claims = obj
            .spec
            .volume_claim_templates
            .iter()
            .flatten()
            .map(ClaimTemplate::of)
            .collect();
        meta
    }
}

impl Keep<Deployment> for WorkloadMeta {
    fn keep(obj: &Deployment) -> Self {
        let status = obj.status.as_ref().map(|s| WorkloadStatus {
            observed_generation: s.observed_generation,
            replicas: s.replicas,
            ready_replicas: s.ready_replicas,
            updated_replicas: s.updated_replicas,
            ..Default::default()
        });
        let mut meta = WorkloadMeta::of(&obj.metadata, obj.spec.replicas, status);
        meta.owns_replicas = operator_owns_replicas(&obj.metadata);
        meta
    }
}

/// Objects by `namespace/name` (one allocation per key; neither part may hold a '/').
type Objects<T> = HashMap<Box<str>, T>;

fn key(namespace: &str, name: &str) -> Box<str> {
    format!("{namespace}/{name}").into_boxed_str()
}

/// The reading side, cheap to clone.
#[derive(Debug)]
pub struct ChildCache<T = ChildMeta> {
    objects: Arc<RwLock<Objects<T>>>,
    listed: tokio::sync::watch::Receiver<bool>,
}

impl<T> Clone for ChildCache<T> {
    fn clone(&self) -> Self {
        ChildCache {
            objects: self.objects.clone(),
            listed: self.listed.clone(),
        }
    }
}

/// The writing side: fed by one watcher stream.
#[derive(Debug)]
pub struct ChildCacheWriter<T = ChildMeta> {
    objects: Arc<RwLock<Objects<T>>>,
    listed: tokio::sync::watch::Sender<bool>,
    /// A (re)list in progress: the cache keeps answering from the previous list until it
    /// is complete, as kube's reflector does.
    relisting: Option<Objects<T>>,
}

/// The writer was dropped before the first list completed.
#[derive(Debug, thiserror::Error)]
#[error("the watch stopped before its first list")]
pub struct NeverListed;

/// An empty cache and its writer.
pub fn child_cache<T>() -> (ChildCache<T>, ChildCacheWriter<T>) {
    let objects = Arc::new(RwLock::new(Objects::new()));
    let (tx, rx) = tokio::sync::watch::channel(false);
    (
        ChildCache {
            objects: objects.clone(),
            listed: rx,
        },
        ChildCacheWriter {
            objects,
            listed: tx,
            relisting: None,
        },
    )
}

impl<T> ChildCacheWriter<T> {
    /// Fold one watcher event into the cache (as kube's `Writer::apply_watcher_event`).
    pub fn apply_watcher_event<K: Resource>(&mut self, event: &watcher::Event<K>)
    where
        T: Keep<K>,
    {
        let entry = |obj: &K| {
            let meta = obj.meta();
            (
                key(
                    meta.namespace.as_deref().unwrap_or_default(),
                    meta.name.as_deref().unwrap_or_default(),
                ),
                T::keep(obj),
            )
        };
        match event {
            watcher::Event::Apply(obj) => {
                let (key, meta) = entry(obj);
                self.write().insert(key, meta);
            }
            watcher::Event::Delete(obj) => {
                let meta = obj.meta();
                self.write().remove(&key(
                    meta.namespace.as_deref().unwrap_or_default(),
                    meta.name.as_deref().unwrap_or_default(),
                ));
            }
            watcher::Event::Init => self.relisting = Some(Objects::new()),
            watcher::Event::InitApply(obj) => {
                let (key, meta) = entry(obj);
                self.relisting.get_or_insert_default().insert(key, meta);
            }
            watcher::Event::InitDone => {
                let mut listed = self.relisting.take().unwrap_or_default();
                listed.shrink_to_fit();
                *self.write() = listed;
                self.listed.send_replace(true);
            }
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Objects<T>> {
        self.objects.write().expect("not poisoned")
    }
}

impl<T: AsRef<ChildMeta>> ChildCache<T> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Objects<T>> {
        self.objects.read().expect("not poisoned")
    }

    /// Run `f` on what the cache holds of `namespace/name`, if anything.
    pub fn with<R>(&self, namespace: &str, name: &str, f: impl FnOnce(&T) -> R) -> Option<R> {
        self.read().get(&key(namespace, name)).map(f)
    }

    /// A copy of what the cache holds of `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<T>
    where
        T: Clone,
    {
        self.with(namespace, name, T::clone)
    }

    /// (namespace, name) of every object whose controller is the object with `uid`.
    pub fn controlled_by(&self, uid: &str) -> Vec<(String, String)> {
        self.read()
            .iter()
            .filter(|(_, meta)| meta.as_ref().controller_uid() == Some(uid))
            .filter_map(|(key, _)| key.split_once('/'))
            .map(|(namespace, name)| (namespace.to_owned(), name.to_owned()))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wait until the first list is in (any number of tasks may wait).
    pub async fn wait_until_ready(&self) -> Result<(), NeverListed> {
        self.listed
            .clone()
            .wait_for(|listed| *listed)
            .await
            .map(|_| ())
            .map_err(|_| NeverListed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, OwnerReference};
    use kube::core::PartialObjectMeta;

    fn entry(manager: &str, operation: &str) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            fields_v1: Some(FieldsV1(serde_json::json!({"f:data": {"f:x": {}}}))),
            ..Default::default()
        }
    }

    fn object(name: &str, owner: &str, version: &str) -> PartialObjectMeta<ConfigMap> {
        let reference = |uid: &str, controller| OwnerReference {
            uid: uid.into(),
            controller: Some(controller),
            ..Default::default()
        };
        PartialObjectMeta {
            types: None,
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(version.into()),
                labels: Some([("app.kubernetes.io/name".to_owned(), "x".to_owned())].into()),
                annotations: Some(
                    [
                        (SPEC_HASH_ANNOTATION.to_owned(), format!("hash-{version}")),
                        ("other".to_owned(), "ignored".to_owned()),
                    ]
                    .into(),
                ),
                owner_references: Some(vec![
                    reference("not-controller", false),
                    reference(owner, true),
                ]),
                managed_fields: Some(vec![
                    entry(FIELD_MANAGER, "Apply"),
                    entry("kubectl-edit", "Update"),
                ]),
                ..Default::default()
            },
            _phantom: Default::default(),
        }
    }

    fn listed() -> (ChildCache, ChildCacheWriter) {
        let (cache, mut writer) = child_cache();
        writer.apply_watcher_event::<ConfigMap>(&watcher::Event::Init);
        writer.apply_watcher_event::<ConfigMap>(&watcher::Event::InitDone);
        (cache, writer)
    }

    #[test]
    fn keeps_only_what_reconcile_reads() {
        let meta = ChildMeta::of(&object("a", "owner-1", "7").metadata);
        assert_eq!(meta.resource_version(), Some("7"));
        assert_eq!(meta.spec_hash(), Some("hash-7"));
        assert_eq!(
            meta.controller_uid(),
            Some("owner-1"),
            "the controller, not the first owner"
        );
        let managers: Vec<_> = meta
            .foreign_fields()
            .iter()
            .map(|e| e.manager.as_deref().unwrap())
            .collect();
        assert_eq!(managers, ["kubectl-edit"], "our own entries are dropped");
        let bare = ChildMeta::of(&ObjectMeta::default());
        assert_eq!(bare, ChildMeta::default());
        assert!(bare.foreign_fields().is_empty());
    }

    #[test]
    fn applies_deletes_and_lookups() {
        let (cache, mut writer) = listed();
        writer.apply_watcher_event(&watcher::Event::Apply(object("a", "u1", "1")));
        writer.apply_watcher_event(&watcher::Event::Apply(object("b", "u2", "1")));
        writer.apply_watcher_event(&watcher::Event::Apply(object("a", "u1", "2")));
        assert_eq!(cache.len(), 2);
        assert_eq!(
            cache.with("ns", "a", |m| m.resource_version().map(str::to_owned)),
            Some(Some("2".to_owned()))
        );
        assert_eq!(
            cache.with("other", "a", |_| ()),
            None,
            "namespaces are apart"
        );
        assert_eq!(
            cache.controlled_by("u1"),
            [("ns".to_owned(), "a".to_owned())]
        );
        writer.apply_watcher_event(&watcher::Event::Delete(object("a", "u1", "3")));
        assert_eq!(cache.with("ns", "a", |_| ()), None);
        assert!(cache.controlled_by("u1").is_empty());
    }

    #[test]
    fn a_relist_replaces_the_contents_only_when_complete() {
        let (cache, mut writer) = listed();
        writer.apply_watcher_event(&watcher::Event::Apply(object("gone", "u1", "1")));
        writer.apply_watcher_event::<PartialObjectMeta<ConfigMap>>(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitApply(object("new", "u1", "5")));
        assert!(
            cache.with("ns", "gone", |_| ()).is_some(),
            "the old list answers meanwhile"
        );
        assert!(cache.with("ns", "new", |_| ()).is_none());
        writer.apply_watcher_event::<PartialObjectMeta<ConfigMap>>(&watcher::Event::InitDone);
        assert!(cache.with("ns", "gone", |_| ()).is_none());
        assert!(cache.with("ns", "new", |_| ()).is_some());
    }

    #[test]
    fn workloads_keep_what_status_reads() {
        use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus, StatefulSetStatus};
        let mut set = StatefulSet {
            metadata: object("db", "u1", "4").metadata,
            ..Default::default()
        };
        set.metadata.generation = Some(3);
        assert_eq!(WorkloadMeta::keep(&set).status, None, "not yet reported");
        set.status = Some(StatefulSetStatus {
            observed_generation: Some(3),
            replicas: 1,
            ready_replicas: Some(1),
            current_revision: Some("r1".into()),
            update_revision: Some("r2".into()),
            ..Default::default()
        });
        let kept = WorkloadMeta::keep(&set);
        assert_eq!(kept.child, ChildMeta::of(&set.metadata));
        assert_eq!(kept.generation, Some(3));
        let status = kept.status.unwrap();
        assert_eq!(status.replicas, Some(1));
        assert_eq!(status.ready_replicas, Some(1));
        assert_eq!(status.current_revision.as_deref(), Some("r1"));
        assert_eq!(status.update_revision.as_deref(), Some("r2"));

        let deployment = Deployment {
            metadata: object("api", "u1", "5").metadata,
            spec: DeploymentSpec {
                replicas: Some(4),
                ..Default::default()
            },
            status: Some(DeploymentStatus {
                replicas: Some(4),
                updated_replicas: Some(2),
                ..Default::default()
            }),
        };
        let kept = WorkloadMeta::keep(&deployment);
        assert_eq!(kept.replicas, Some(4), "the HPA's choice is read back");
        assert_eq!(kept.status.as_ref().unwrap().updated_replicas, Some(2));
        assert_eq!(kept.child.controller_uid(), Some("u1"));
    }

    #[tokio::test]
    async fn every_waiter_wakes_at_the_first_list() {
        let (cache, mut writer) = child_cache::<ChildMeta>();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.wait_until_ready().await.is_ok() })
            })
            .collect();
        tokio::task::yield_now().await;
        writer.apply_watcher_event::<ConfigMap>(&watcher::Event::Init);
        writer.apply_watcher_event::<ConfigMap>(&watcher::Event::InitDone);
        for waiter in waiters {
            assert!(waiter.await.unwrap());
        }
        let (never, writer) = child_cache::<ChildMeta>();
        drop(writer);
        assert!(never.wait_until_ready().await.is_err());
    }
}
