//! `blocksight run`: the controller process. Watches, leader election, the HTTP endpoints
//! (/metrics, /livez, /readyz) and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Controller;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::chain::poller::{PollSettings, Poller, SecretReader};
use crate::controller::backup::{self as backups, BackupContext};
use crate::controller::blocksight;
use crate::controller::restore as restores;
use crate::controller::shared::child_cache::{
    ChildCache, ChildMeta, VolumeClaimMeta, WorkloadMeta, child_cache,
};
use crate::controller::shared::context::{empty_monitor_store, system_clock};
use crate::controller::shared::drift;
use crate::controller::{Caches, Context, RecentWrites};
use crate::crd::{BlockSight, BlockSightBackup, BlockSightRestore};
use crate::desired::monitors::{pod_monitor_resource, service_monitor_resource};
use crate::desired::{BuildSettings, volume_snapshot};
use crate::metrics::Metrics;
use crate::names::{
    BACKUP_LABEL, FIELD_MANAGER, INSTANCE_LABEL, JOB_NAME_LABEL, MANAGED_BY, PURPOSE_LABEL,
    RESTORE_LABEL,
};

/// Settings of `blocksight run`.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Watch only this namespace (Role-only RBAC); all namespaces when None.
    pub namespace: Option<String>,
    pub metrics_addr: SocketAddr,
    pub leader_election: bool,
    pub lease_name: String,
    pub lease_namespace: String,
    pub identity: String,
    pub settings: BuildSettings,
    /// How often each BlockSight's services are probed.
    pub probe_interval: Duration,
    /// How often a converged BlockSight is reconciled again.
    pub resync_interval: Duration,
    /// How long each reconcile step may wait on the API server (see
    /// [`crate::controller::RECONCILE_TIMEOUT`]).
    pub reconcile_timeout: Duration,
    /// Run the chain probes (off only in benchmarks against a fake API server).
    pub probes: bool,
}

/// Why the process stopped abnormally; each has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "the BlockSight CRDs (blocksight.live/v1alpha1: BlockSight, BlockSightBackup, \
         BlockSightRestore) are not installed in this cluster: install them with `blocksight crd | kubectl apply --server-side -f -` (or the Helm chart)"
    )]
    CrdMissing,
    #[error("lost the leader Lease; exiting so that a restart re-joins the election")]
    LostLeadership,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl RunError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::CrdMissing => 3,
            RunError::LostLeadership => 4,
            RunError::Other(_) => 1,
        }
    }
}

/// What the HTTP endpoints report.
struct Health {
    metrics: Arc<Metrics>,
    ready: AtomicBool,
}

async fn metrics_handler(
    State(health): State<Arc<Health>>,
) -> ([(&'static str, &'static str); 1], String) {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        health.metrics.encode(),
    )
}

async fn ready_handler(State(health): State<Arc<Health>>) -> StatusCode {
    if health.ready.load(Ordering::Relaxed) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// Serve /metrics, /livez and /readyz until `shutdown`.
async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/livez", get(|| async { StatusCode::OK }))
        .route("/readyz", get(ready_handler))
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    info!(%addr, "serving /metrics, /livez, /readyz");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// Cancel `token` on SIGTERM or Ctrl-C.
fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => info!("interrupted; shutting down"),
            _ = term => info!("SIGTERM; shutting down"),
        }
        token.cancel();
    });
}

/// Objects per page of the watches' initial lists (kube's default is 500). A page is held
/// whole while it is folded into the caches, with every object's managedFields; at 500,
/// the seventeen lists a starting operator runs at once held over 100 MiB with 1,000
/// BlockSights. More, smaller pages cost a few more requests at start only.
const LIST_PAGE_SIZE: u32 = 100;

/// Fail fast, with a clear message, when the CRD is not installed (API discovery needs no RBAC).
pub async fn check_crd(client: &Client) -> Result<(), RunError> {
    match client
        .list_api_group_resources("blocksight.live/v1alpha1")
        .await
    {
        Ok(list)
            if ["blocksights", "blocksightbackups", "blocksightrestores"]
                .iter()
                .all(|kind| list.resources.iter().any(|r| r.name == *kind)) =>
        {
            Ok(())
        }
        Ok(_) => Err(RunError::CrdMissing),
        Err(kube::Error::Api(e)) if e.code == 404 => Err(RunError::CrdMissing),
        Err(e) => Err(RunError::Other(
            anyhow::Error::new(e).context("API discovery of blocksight.live/v1alpha1"),
        )),
    }
}

fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A metadata-only watch of the operator's children of kind `K` into a compact
/// [`ChildCache`], and the trigger stream for the controller.
fn metadata_reflector<K>(
    client: &Client,
    namespace: Option<&str>,
    config: &watcher::Config,
) -> (
    ChildCache<ChildMeta>,
    impl futures::Stream<Item = Result<kube::core::PartialObjectMeta<K>, watcher::Error>>
    + Send
    + 'static,
)
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, mut writer) = child_cache::<ChildMeta>();
    // An Api of PartialObjectMeta makes metadata-only list and watch requests.
    let stream = watcher(
        scoped::<kube::core::PartialObjectMeta<K>>(client, namespace),
        config.clone(),
    )
    .default_backoff()
    .inspect_ok(move |event| writer.apply_watcher_event(event))
    .touched_objects();
    (reader, stream)
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
fn secret_reader(client: Client, cache: Store<Secret>) -> SecretReader {
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

/// Whether the cluster serves the prometheus-operator kinds the operator creates.
async fn prometheus_operator_installed(client: &Client) -> bool {
    match client
        .list_api_group_resources("monitoring.coreos.com/v1")
        .await
    {
        Ok(list) => ["servicemonitors", "podmonitors"]
            .iter()
            .all(|k| list.resources.iter().any(|r| r.name == *k)),
        Err(_) => false,
    }
}

/// Whether the cluster serves snapshot.storage.k8s.io/v1 VolumeSnapshots (the
/// external-snapshotter CRDs).
async fn volume_snapshots_served(client: &Client) -> bool {
    match client
        .list_api_group_resources("snapshot.storage.k8s.io/v1")
        .await
    {
        Ok(list) => list.resources.iter().any(|r| r.name == "volumesnapshots"),
        Err(_) => false,
    }
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

/// The BlockSight named by a label or field, in `namespace`.
fn instance_ref(
    name: Option<&String>,
    namespace: Option<String>,
) -> Option<ObjectRef<DeserializeGuard<BlockSight>>> {
    Some(ObjectRef::new(name?).within(&namespace?))
}

/// The BlockSightBackup a backup Job or pod serves: the one its label names (on-demand,
/// safety and delete Jobs), else the one named after a backup Job (scheduled).
fn backup_of(
    labels: &std::collections::BTreeMap<String, String>,
    job: String,
    namespace: Option<String>,
) -> Option<ObjectRef<BlockSightBackup>> {
    let name = match labels.get(BACKUP_LABEL) {
        Some(name) => name.clone(),
        None if labels.get(PURPOSE_LABEL).map(String::as_str) == Some("backup") => job,
        None => return None,
    };
    Some(ObjectRef::new(&name).within(&namespace?))
}

/// How long the controller waits for a burst of triggers on one BlockSight to end.
const RECONCILE_DEBOUNCE: Duration = Duration::from_millis(500);

/// BlockSights reconciled at once. Unbounded, a thousand BlockSights created together
/// open a thousand requests (and, over HTTP/1.1, connections whose buffers stay pooled);
/// a few in flight already keep the API server's write path busy.
const RECONCILE_CONCURRENCY: u16 = 16;

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

/// Run the controller until SIGTERM (or until leadership is lost).
pub async fn run(config: RunConfig) -> Result<(), RunError> {
    let client = Client::try_default()
        .await
        .context("loading the Kubernetes client configuration")?;
    crate::cluster_version::ensure_supported(&client).await?;
    check_crd(&client).await?;

    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health {
        metrics: metrics.clone(),
        ready: AtomicBool::new(false),
    });
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let server = tokio::spawn(serve(config.metrics_addr, health.clone(), shutdown.clone()));

    let lost_leadership = Arc::new(AtomicBool::new(false));
    let mut leadership = None;
    if !config.leader_election {
        // The only replica: it leads.
        metrics.leader.set(1);
    } else {
        // A standby is healthy: ready, so rollouts of the operator's Deployment proceed.
        health.ready.store(true, Ordering::Relaxed);
        let Some((leading, lease_task)) = wait_for_leadership(&client, &config, &shutdown).await?
        else {
            info!("shut down");
            return Ok(());
        };
        let mut leading = leading;
        info!("acquired leadership");
        metrics.leader.set(1);
        health.ready.store(false, Ordering::Relaxed);
        let (shutdown, lost) = (shutdown.clone(), lost_leadership.clone());
        let watcher = tokio::spawn(async move {
            while leading.changed().await.is_ok() {
                if !*leading.borrow() {
                    lost.store(true, Ordering::Relaxed);
                    shutdown.cancel();
                    return;
                }
            }
        });
        leadership = Some(Leadership {
            watcher,
            lease_task,
        });
    }

    let ns = config.namespace.as_deref();
    let children = watcher::Config::default()
        .labels(&format!("app.kubernetes.io/managed-by={MANAGED_BY}"))
        .page_size(LIST_PAGE_SIZE);
    let (config_maps, config_map_events) = metadata_reflector::<ConfigMap>(&client, ns, &children);
    // The operator's own Secrets whole (only those it labels): the chain probes read their
    // credentials from this cache instead of the API.
    let (secrets, writer) = reflector::store();
    let secret_events = watcher(scoped::<Secret>(&client, ns), children.clone())
        .default_backoff()
        .modify(|s: &mut Secret| slim(&mut s.metadata, &[crate::names::ROTATION_ANNOTATION]))
        .reflect(writer)
        .touched_objects();
    let (services, service_events) = metadata_reflector::<Service>(&client, ns, &children);
    let (network_policies, network_policy_events) =
        metadata_reflector::<NetworkPolicy>(&client, ns, &children);
    let (service_accounts, service_account_events) =
        metadata_reflector::<ServiceAccount>(&client, ns, &children);
    let (volume_claims, volume_claim_events) =
        metadata_reflector::<PersistentVolumeClaim>(&client, ns, &children);
    let (cron_jobs, cron_job_events) = metadata_reflector::<CronJob>(&client, ns, &children);
    let (autoscalers, autoscaler_events) =
        metadata_reflector::<HorizontalPodAutoscaler>(&client, ns, &children);
    let (disruption_budgets, budget_events) =
        metadata_reflector::<PodDisruptionBudget>(&client, ns, &children);
    let (ingresses, ingress_events) = metadata_reflector::<Ingress>(&client, ns, &children);
    // Workloads are watched whole for their status; the caches keep the few numbers
    // status reads (see child_cache::WorkloadMeta).
    let (stateful_sets, mut writer) = child_cache::<WorkloadMeta>();
    let stateful_set_events = watcher(scoped::<StatefulSet>(&client, ns), children.clone())
        .default_backoff()
        .inspect_ok(move |event| writer.apply_watcher_event(event))
        .touched_objects();
    // The PVCs of the StatefulSets: the claim templates carry no labels, so the StatefulSet
    // controller gives each claim its pods' selector labels (component, instance).
    let (stateful_volumes, mut writer) = child_cache::<VolumeClaimMeta>();
    let stateful_volume_events = watcher(
        scoped::<PersistentVolumeClaim>(&client, ns),
        watcher::Config::default()
            .labels("app.kubernetes.io/component,app.kubernetes.io/instance")
            .page_size(LIST_PAGE_SIZE),
    )
    .default_backoff()
    .inspect_ok(move |event| writer.apply_watcher_event(event))
    .touched_objects();
    let (deployments, mut writer) = child_cache::<WorkloadMeta>();
    let deployment_events = watcher(scoped::<Deployment>(&client, ns), children.clone())
        .default_backoff()
        .inspect_ok(move |event| writer.apply_watcher_event(event))
        .touched_objects();

    // ServiceMonitors and PodMonitors only where prometheus-operator's CRDs are installed.
    let monitoring = prometheus_operator_installed(&client).await;
    info!(
        installed = monitoring,
        "prometheus-operator CRDs (monitoring.coreos.com/v1)"
    );
    let (service_monitors, service_monitor_events) = monitor_reflector(
        &client,
        ns,
        &children,
        service_monitor_resource(),
        monitoring,
    );
    let (pod_monitors, pod_monitor_events) =
        monitor_reflector(&client, ns, &children, pod_monitor_resource(), monitoring);
    // The operator's scheduled VolumeSnapshots, where the cluster serves them. Whole
    // objects: their status says whether they are ready or failed.
    let snapshots_served = volume_snapshots_served(&client).await;
    info!(
        served = snapshots_served,
        "VolumeSnapshot API (snapshot.storage.k8s.io/v1)"
    );
    let (volume_snapshots, volume_snapshot_events) = monitor_reflector(
        &client,
        ns,
        &watcher::Config::default().labels(&volume_snapshot::watch_selector()),
        volume_snapshot::resource(),
        snapshots_served,
    );
    // Backups: Jobs and Pods of the backup component (slimmed), and the two backup kinds;
    // shared streams, since several controllers are woken by them.
    let backup_objects = watcher::Config::default().labels(&format!(
        "app.kubernetes.io/component=backup,app.kubernetes.io/managed-by={MANAGED_BY}"
    ));
    let (jobs, job_writer) = reflector::store_shared::<Job>(256);
    let job_for_backups = job_writer.subscribe().expect("a shared store");
    let job_for_blocksights = job_writer.subscribe().expect("a shared store");
    let job_for_restores = job_writer.subscribe().expect("a shared store");
    tokio::spawn(
        watcher(scoped::<Job>(&client, ns), backup_objects.clone())
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
    let pod_for_backups = pod_writer.subscribe().expect("a shared store");
    tokio::spawn(
        watcher(scoped::<Pod>(&client, ns), backup_objects)
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
    let backup_for_backups = backup_writer.subscribe().expect("a shared store");
    let backup_for_blocksights = backup_writer.subscribe().expect("a shared store");
    let backup_for_restores = backup_writer.subscribe().expect("a shared store");
    tokio::spawn(
        watcher(
            scoped::<BlockSightBackup>(&client, ns),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(|b: &mut BlockSightBackup| b.metadata.managed_fields = None)
        .reflect_shared(backup_writer)
        .inspect(first_list_signal(backups_listed_tx))
        .for_each(|_| futures::future::ready(())),
    );
    let (restores, restore_writer) = reflector::store_shared::<BlockSightRestore>(256);
    let restore_for_blocksights = restore_writer.subscribe().expect("a shared store");
    let restore_for_restores = restore_writer.subscribe().expect("a shared store");
    tokio::spawn(
        watcher(
            scoped::<BlockSightRestore>(&client, ns),
            watcher::Config::default(),
        )
        .default_backoff()
        .modify(|r: &mut BlockSightRestore| r.metadata.managed_fields = None)
        .reflect_shared(restore_writer)
        .inspect(first_list_signal(restores_listed_tx))
        .for_each(|_| futures::future::ready(())),
    );
    let caches = Caches {
        jobs,
        pods,
        backups: backups.clone(),
        restores: restores.clone(),
        config_maps,
        secrets,
        services,
        network_policies,
        service_accounts,
        volume_claims,
        cron_jobs,
        stateful_sets,
        stateful_volumes,
        deployments,
        autoscalers,
        disruption_budgets,
        ingresses,
        service_monitors,
        pod_monitors,
        volume_snapshots,
        listed: Default::default(),
    }
    .track_listing(vec![backups_listed, restores_listed]);
    let reporter = Reporter {
        controller: FIELD_MANAGER.to_owned(),
        instance: Some(config.identity.clone()),
    };
    let (request_reconcile, reconcile_requests) =
        futures::channel::mpsc::unbounded::<(String, String)>();
    // The BlockSight watch, as Controller::new builds it, plus a signal when its first list
    // is in: the controller itself waits on the store's readiness, and kube's
    // Store::wait_until_ready wakes only one waiter (see context::Listed), so /readyz must
    // not wait on the same store.
    let (primary_listed_tx, mut primary_listed) = tokio::sync::watch::channel(false);
    // BlockSights deleted (seen by the watch): what the operator holds about them is
    // dropped once the context exists (see blocksight::forget).
    let (deleted_tx, mut deleted) =
        tokio::sync::mpsc::unbounded_channel::<(String, String, String)>();
    let writer = reflector::store::Writer::<DeserializeGuard<BlockSight>>::default();
    let primary = writer.as_reader();
    let blocksight_events = reflector::reflector(
        writer,
        watcher(
            scoped::<DeserializeGuard<BlockSight>>(&client, ns),
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
    .applied_objects();
    // Applying a BlockSight's children triggers it again once per child event; a short
    // trailing debounce folds those bursts into one reconcile (a quiet object is never
    // delayed by more than this).
    let controller = Controller::for_stream(blocksight_events, primary.clone())
        .with_config(
            kube::runtime::controller::Config::default()
                .debounce(RECONCILE_DEBOUNCE)
                .concurrency(RECONCILE_CONCURRENCY),
        )
        .owns_stream(config_map_events)
        .owns_stream(secret_events)
        .owns_stream(service_events)
        .owns_stream(network_policy_events)
        .owns_stream(service_account_events)
        .owns_stream(volume_claim_events)
        .owns_stream(cron_job_events)
        .owns_stream(stateful_set_events)
        // A StatefulSet's PVCs belong to it, not to the BlockSight: map them by label, so
        // a resize in progress or done updates status.volumes.
        .watches_stream(stateful_volume_events, |pvc: PersistentVolumeClaim| {
            instance_ref(pvc.labels().get(INSTANCE_LABEL), pvc.namespace())
        })
        .owns_stream(deployment_events)
        .owns_stream(autoscaler_events)
        .owns_stream(budget_events)
        .owns_stream(ingress_events)
        .owns_stream_with(service_monitor_events, service_monitor_resource())
        .owns_stream_with(pod_monitor_events, pod_monitor_resource())
        // Snapshots are not owned under deletionPolicy Retain: map them by their labels, so
        // one becoming ready or failing updates the BlockSight's status.
        .watches_stream_with(
            volume_snapshot_events,
            |snapshot: DynamicObject| {
                let instance = snapshot.labels().get("app.kubernetes.io/instance").cloned();
                let namespace = snapshot.namespace();
                instance
                    .zip(namespace)
                    .map(|(name, namespace)| ObjectRef::new(&name).within(&namespace))
            },
            volume_snapshot::resource(),
        )
        // Scheduled backup Jobs (adopted as BlockSightBackups), drills, backups and restores
        // of a BlockSight feed its status.backup and gate its API.
        .watches_shared_stream(job_for_blocksights, |job: Arc<Job>| {
            instance_ref(job.labels().get(INSTANCE_LABEL), job.namespace())
        })
        .watches_shared_stream(backup_for_blocksights, |b: Arc<BlockSightBackup>| {
            instance_ref(Some(&b.spec.block_sight), b.namespace())
        })
        .watches_shared_stream(restore_for_blocksights, |r: Arc<BlockSightRestore>| {
            instance_ref(Some(&r.spec.block_sight), r.namespace())
        })
        // The chain probes ask for a reconcile when what they found changed.
        .reconcile_on(
            reconcile_requests.map(|(namespace, name): (String, String)| {
                ObjectRef::new(&name).within(&namespace)
            }),
        );
    let poller = if !config.probes {
        Arc::new(Poller::manual(metrics.clone()))
    } else {
        Arc::new(Poller::new(
            PollSettings {
                interval: config.probe_interval,
                ..Default::default()
            },
            secret_reader(client.clone(), caches.secrets.clone()),
            {
                let primary = primary.clone();
                Arc::new(move |(namespace, name): &(String, String)| {
                    primary
                        .get(&ObjectRef::new(name).within(namespace))
                        .is_some()
                })
            },
            Arc::new(move |key: &(String, String)| {
                let _ = request_reconcile.unbounded_send(key.clone());
            }),
            metrics.clone(),
        ))
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        caches: caches.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        metrics: metrics.clone(),
        settings: BuildSettings {
            prometheus_operator_crds: monitoring,
            ..config.settings.clone()
        },
        recent_writes: RecentWrites::default(),
        own_fields: Default::default(),
        recent_status: Default::default(),
        pruned: Default::default(),
        validated: Default::default(),
        failures: Default::default(),
        poller: poller.clone(),
        resync: config.resync_interval,
        reconcile_timeout: config.reconcile_timeout,
        volume_snapshot_api: snapshots_served,
        clock: system_clock(),
        warned_snapshots: Default::default(),
    });
    {
        // Ends when the BlockSight watch (the sender) is dropped at shutdown.
        let ctx = Arc::downgrade(&ctx);
        tokio::spawn(async move {
            while let Some((namespace, name, uid)) = deleted.recv().await {
                let Some(ctx) = ctx.upgrade() else { return };
                blocksight::forget(&ctx, &namespace, &name, &uid);
            }
        });
    }

    {
        let (health, caches) = (health.clone(), caches.clone());
        tokio::spawn(async move {
            if primary_listed.wait_for(|listed| *listed).await.is_ok()
                && caches.wait_until_ready().await.is_ok()
            {
                info!("every watch has delivered its first list: ready");
                health.ready.store(true, Ordering::Relaxed);
            }
        });
    }
    let backup_ctx = Arc::new(BackupContext {
        ctx: ctx.clone(),
        blocksights: primary.clone(),
    });
    let backup_controller = Controller::for_shared_stream(backup_for_backups, backups)
        .watches_shared_stream(job_for_backups, |job: Arc<Job>| {
            backup_of(job.labels(), job.name_any(), job.namespace())
        })
        .watches_shared_stream(pod_for_backups, |pod: Arc<Pod>| {
            let job = pod
                .labels()
                .get(JOB_NAME_LABEL)
                .cloned()
                .unwrap_or_default();
            backup_of(pod.labels(), job, pod.namespace())
        })
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(
            backups::reconcile,
            backups::error_policy,
            backup_ctx.clone(),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                match e {
                    kube::runtime::controller::Error::ReconcilerFailed(..) => {}
                    other => warn!(error = %other, "backup controller"),
                }
            }
        });
    // Restores: woken by their Jobs, their safety backup, and the API Deployment draining.
    let restore_controller = Controller::for_shared_stream(restore_for_restores, restores.clone())
        .watches_shared_stream(job_for_restores, |job: Arc<Job>| {
            let name = job.labels().get(RESTORE_LABEL)?.clone();
            Some(ObjectRef::<BlockSightRestore>::new(&name).within(&job.namespace()?))
        })
        .watches_shared_stream(backup_for_restores, {
            let restores = restores.clone();
            move |b: Arc<BlockSightBackup>| {
                let namespace = b.namespace();
                restores
                    .state()
                    .iter()
                    .filter(|r| {
                        r.namespace() == namespace
                            && (r.spec.backup == b.name_any()
                                || restores::safety_backup_name(&r.name_any()) == b.name_any())
                    })
                    .map(|r| ObjectRef::from_obj(r.as_ref()))
                    .collect::<Vec<_>>()
            }
        })
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(
            restores::reconcile,
            restores::error_policy,
            backup_ctx.clone(),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                match e {
                    kube::runtime::controller::Error::ReconcilerFailed(..) => {}
                    other => warn!(error = %other, "restore controller"),
                }
            }
        });
    info!(namespace = ns.unwrap_or("<all>"), "starting the controller");
    let blocksight_controller = controller
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(blocksight::reconcile, blocksight::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                // Reconcile errors are logged by error_policy; these are the runtime's own.
                match e {
                    kube::runtime::controller::Error::ReconcilerFailed(..) => {}
                    other => warn!(error = %other, "controller"),
                }
            }
        });
    futures::join!(blocksight_controller, backup_controller, restore_controller);
    info!("controller stopped");
    shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => error!(error = %e, "HTTP server failed"),
        Err(_) => warn!("HTTP server did not stop within 5 s"),
        _ => {}
    }
    // Only now that no reconcile is running: the next leader must never overlap with us.
    if let Some(leadership) = leadership {
        leadership.release().await;
    }
    if lost_leadership.load(Ordering::Relaxed) {
        return Err(RunError::LostLeadership);
    }
    info!("shut down");
    Ok(())
}

type Leading = tokio::sync::watch::Receiver<bool>;

/// This replica's field manager for the Lease. kube-lease-manager's lock relies on a
/// server-side-apply conflict between candidates: with one field manager shared by every
/// replica there is never a conflict, and two replicas could both believe they lead.
pub fn lease_field_manager(identity: &str) -> String {
    format!("{FIELD_MANAGER}-lease-{identity}")
}

/// Stand by until this replica holds the Lease (Some) or shutdown is asked for (None).
///
/// kube-lease-manager's standby sleeps until the holder's Lease would expire (up to its
/// 30 s duration), so a Lease the leader hands back on SIGTERM would sit free for that long.
/// A watch on the Lease object cuts that short: when it shows the Lease released (no
/// holder), the standby starts a fresh attempt, which takes a free Lease at once.
async fn wait_for_leadership(
    client: &Client,
    config: &RunConfig,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<(Leading, LeaseTask)>> {
    use k8s_openapi::api::coordination::v1::Lease;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &config.lease_namespace);
    let released = watcher(
        leases,
        watcher::Config::default().fields(&format!("metadata.name={}", config.lease_name)),
    )
    .default_backoff()
    .applied_objects()
    .try_filter(|lease| {
        let holder = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref());
        futures::future::ready(holder.is_none_or(str::is_empty))
    });
    let mut released = std::pin::pin!(released);
    loop {
        let manager = LeaseManagerBuilder::new(client.clone(), &config.lease_name)
            .with_namespace(&config.lease_namespace)
            .with_identity(&config.identity)
            .with_field_manager(lease_field_manager(&config.identity))
            .build()
            .await
            .context("creating the leader election Lease manager")?;
        let (mut leading, lease_task) = manager.watch().await;
        info!(lease = %config.lease_name, identity = %config.identity, "waiting for leadership");
        loop {
            if *leading.borrow_and_update() {
                return Ok(Some((leading, lease_task)));
            }
            tokio::select! {
                changed = leading.changed() => changed.context("leader election stopped")?,
                _ = shutdown.cancelled() => {
                    // A standby holds nothing, but its Lease task must still end cleanly.
                    drop(leading);
                    release_lease(lease_task).await;
                    return Ok(None);
                }
                free = released.next() => {
                    if let Some(Err(e)) = &free {
                        warn!(error = %e, "watching the leader Lease");
                        continue;
                    }
                    if free.is_none() {
                        continue;
                    }
                    info!("the leader Lease was released; trying to take it now");
                    drop(leading);
                    lease_task.abort();
                    let _ = lease_task.await;
                    break;
                }
            }
        }
    }
}

/// The leader's side of leader election, to hand the Lease back on shutdown.
struct Leadership {
    /// Watches for a lost Lease; it holds the last receiver of the Lease task's channel.
    watcher: tokio::task::JoinHandle<()>,
    lease_task: LeaseTask,
}

type LeaseTask =
    tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>;

impl Leadership {
    async fn release(self) {
        // Dropping the last receiver tells the Lease task to release the Lease and stop.
        self.watcher.abort();
        let _ = self.watcher.await;
        release_lease(self.lease_task).await;
    }
}

/// Wait (5 s at most) for the Lease task, whose channel is closed, to release the Lease.
/// Released, a standby takes over at once instead of after the Lease expires.
async fn release_lease(task: LeaseTask) {
    match tokio::time::timeout(Duration::from_secs(5), task).await {
        Ok(Ok(Ok(_))) => info!("leader Lease released"),
        Ok(Ok(Err(e))) => {
            warn!(error = %e, "releasing the leader Lease failed; it expires on its own")
        }
        Ok(Err(e)) => warn!(error = %e, "the leader Lease task failed"),
        Err(_) => warn!("the leader Lease was not released within 5 s; it expires on its own"),
    }
}
