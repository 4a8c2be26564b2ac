//! What every reconciliation shares: the client, the watch caches of children, the event
//! recorder, metrics and settings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::crd::{BlockSightBackup, BlockSightRestore};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::{ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

use crate::build::monitors::{pod_monitor_resource, service_monitor_resource};
use crate::build::{BuildSettings, ChildKind};
use crate::metrics::Metrics;

/// Read-only views of the children the operator watches. Workloads are cached whole (minus
/// their pod template) for their status; everything else as metadata only.
#[derive(Clone)]
pub struct Caches {
    pub config_maps: Store<PartialObjectMeta<ConfigMap>>,
    /// Whole objects: the chain probes read credentials from here.
    pub secrets: Store<Secret>,
    pub services: Store<PartialObjectMeta<Service>>,
    pub network_policies: Store<PartialObjectMeta<NetworkPolicy>>,
    pub service_accounts: Store<PartialObjectMeta<ServiceAccount>>,
    pub volume_claims: Store<PartialObjectMeta<PersistentVolumeClaim>>,
    pub cron_jobs: Store<PartialObjectMeta<CronJob>>,
    /// Backup Jobs (label-selected), without their pod template.
    pub jobs: Store<Job>,
    /// Backup pods: metadata and status only (the termination message is the result).
    pub pods: Store<Pod>,
    pub backups: Store<BlockSightBackup>,
    pub restores: Store<BlockSightRestore>,
    pub stateful_sets: Store<StatefulSet>,
    pub deployments: Store<Deployment>,
    pub autoscalers: Store<PartialObjectMeta<HorizontalPodAutoscaler>>,
    pub disruption_budgets: Store<PartialObjectMeta<PodDisruptionBudget>>,
    pub ingresses: Store<PartialObjectMeta<Ingress>>,
    /// Empty (and ready) when the prometheus-operator CRDs are not installed.
    pub service_monitors: Store<DynamicObject>,
    pub pod_monitors: Store<DynamicObject>,
}

/// A ready, empty cache of monitors, for clusters without the prometheus-operator CRDs.
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
    /// Run `f` on the cached metadata of a child, if the child exists.
    pub fn with_meta<R>(
        &self,
        kind: ChildKind,
        namespace: &str,
        name: &str,
        f: impl FnOnce(&kube::api::ObjectMeta) -> R,
    ) -> Option<R> {
        match kind {
            ChildKind::ConfigMap => get(&self.config_maps, namespace, name).map(|o| f(o.meta())),
            ChildKind::Service => get(&self.services, namespace, name).map(|o| f(o.meta())),
            ChildKind::NetworkPolicy => {
                get(&self.network_policies, namespace, name).map(|o| f(o.meta()))
            }
            ChildKind::ServiceAccount => {
                get(&self.service_accounts, namespace, name).map(|o| f(o.meta()))
            }
            ChildKind::PersistentVolumeClaim => {
                get(&self.volume_claims, namespace, name).map(|o| f(o.meta()))
            }
            ChildKind::CronJob => get(&self.cron_jobs, namespace, name).map(|o| f(o.meta())),
            ChildKind::StatefulSet => {
                get(&self.stateful_sets, namespace, name).map(|o| f(o.meta()))
            }
            ChildKind::Deployment => get(&self.deployments, namespace, name).map(|o| f(o.meta())),
            ChildKind::HorizontalPodAutoscaler => {
                get(&self.autoscalers, namespace, name).map(|o| f(o.meta()))
            }
            ChildKind::PodDisruptionBudget => {
                get(&self.disruption_budgets, namespace, name).map(|o| f(o.meta()))
            }
            ChildKind::Ingress => get(&self.ingresses, namespace, name).map(|o| f(o.meta())),
            ChildKind::ServiceMonitor => get_dynamic(
                &self.service_monitors,
                service_monitor_resource(),
                namespace,
                name,
            )
            .map(|o| f(o.meta())),
            ChildKind::PodMonitor => {
                get_dynamic(&self.pod_monitors, pod_monitor_resource(), namespace, name)
                    .map(|o| f(o.meta()))
            }
        }
    }

    pub fn secret(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        get(&self.secrets, namespace, name)
    }

    pub fn secret_exists(&self, namespace: &str, name: &str) -> bool {
        get(&self.secrets, namespace, name).is_some()
    }

    pub fn stateful_set(&self, namespace: &str, name: &str) -> Option<Arc<StatefulSet>> {
        get(&self.stateful_sets, namespace, name)
    }

    pub fn deployment(&self, namespace: &str, name: &str) -> Option<Arc<Deployment>> {
        get(&self.deployments, namespace, name)
    }

    /// Every applied child whose controller is the BlockSight with `uid`, by kind.
    pub fn children_of(&self, uid: &str) -> Vec<(ChildKind, String, String)> {
        let mut out = Vec::new();
        for kind in ChildKind::ALL {
            let names = match kind {
                ChildKind::ConfigMap => controlled_by(&self.config_maps, uid),
                ChildKind::Service => controlled_by(&self.services, uid),
                ChildKind::NetworkPolicy => controlled_by(&self.network_policies, uid),
                ChildKind::ServiceAccount => controlled_by(&self.service_accounts, uid),
                ChildKind::PersistentVolumeClaim => controlled_by(&self.volume_claims, uid),
                ChildKind::CronJob => controlled_by(&self.cron_jobs, uid),
                ChildKind::StatefulSet => controlled_by(&self.stateful_sets, uid),
                ChildKind::Deployment => controlled_by(&self.deployments, uid),
                ChildKind::HorizontalPodAutoscaler => controlled_by(&self.autoscalers, uid),
                ChildKind::PodDisruptionBudget => controlled_by(&self.disruption_budgets, uid),
                ChildKind::Ingress => controlled_by(&self.ingresses, uid),
                ChildKind::ServiceMonitor => controlled_by(&self.service_monitors, uid),
                ChildKind::PodMonitor => controlled_by(&self.pod_monitors, uid),
            };
            out.extend(names.into_iter().map(|(ns, name)| (kind, ns, name)));
        }
        out
    }

    /// Wait until every cache holds its first complete list.
    pub async fn wait_until_ready(
        &self,
    ) -> Result<(), kube::runtime::reflector::store::WriterDropped> {
        self.config_maps.wait_until_ready().await?;
        self.secrets.wait_until_ready().await?;
        self.services.wait_until_ready().await?;
        self.network_policies.wait_until_ready().await?;
        self.service_accounts.wait_until_ready().await?;
        self.volume_claims.wait_until_ready().await?;
        self.cron_jobs.wait_until_ready().await?;
        self.jobs.wait_until_ready().await?;
        self.pods.wait_until_ready().await?;
        self.backups.wait_until_ready().await?;
        self.restores.wait_until_ready().await?;
        self.stateful_sets.wait_until_ready().await?;
        self.deployments.wait_until_ready().await?;
        self.autoscalers.wait_until_ready().await?;
        self.disruption_budgets.wait_until_ready().await?;
        self.ingresses.wait_until_ready().await?;
        self.service_monitors.wait_until_ready().await?;
        self.pod_monitors.wait_until_ready().await
    }
}

/// (kind, namespace, name) of a written object.
type ObjectKey = (&'static str, String, String);

/// Writes made but maybe not yet seen by the watches: a reconcile triggered before the
/// watch event arrives must not send the same write again.
#[derive(Default)]
pub struct RecentWrites {
    /// The hash written, and when.
    writes: Mutex<HashMap<ObjectKey, (String, Instant)>>,
}

/// How long a write is trusted over a cache that does not show it yet.
const RECENT_WRITE_TTL: Duration = Duration::from_secs(30);

impl RecentWrites {
    pub fn record(&self, kind: &'static str, namespace: &str, name: &str, hash: &str) {
        let mut writes = self.writes.lock().expect("not poisoned");
        writes.retain(|_, (_, at)| at.elapsed() < RECENT_WRITE_TTL);
        writes.insert(
            (kind, namespace.to_owned(), name.to_owned()),
            (hash.to_owned(), Instant::now()),
        );
    }

    pub fn contains(&self, kind: &'static str, namespace: &str, name: &str, hash: &str) -> bool {
        let writes = self.writes.lock().expect("not poisoned");
        writes
            .get(&(kind, namespace.to_owned(), name.to_owned()))
            .is_some_and(|(h, at)| h == hash && at.elapsed() < RECENT_WRITE_TTL)
    }
}

/// Shared by every reconciliation.
pub struct Context {
    pub client: Client,
    pub caches: Caches,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: BuildSettings,
    pub recent_writes: RecentWrites,
    /// How often a converged BlockSight is reconciled again.
    pub resync: Duration,
    /// The chain probes: one loop per BlockSight, and what they last published.
    pub poller: Arc<crate::chain::poller::Poller>,
    /// Consecutive failures per (namespace, name), for the retry backoff.
    pub failures: Mutex<HashMap<(String, String), u32>>,
}

impl Context {
    /// Count a failed reconciliation of one object; returns the consecutive failures.
    pub fn record_failure(&self, namespace: &str, name: &str) -> u32 {
        let mut failures = self.failures.lock().expect("not poisoned");
        let count = failures
            .entry((namespace.to_owned(), name.to_owned()))
            .or_insert(0);
        *count += 1;
        *count
    }

    pub fn clear_failures(&self, namespace: &str, name: &str) {
        self.failures
            .lock()
            .expect("not poisoned")
            .remove(&(namespace.to_owned(), name.to_owned()));
    }
}
