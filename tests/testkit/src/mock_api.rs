//! A scripted stand-in for the Kubernetes API server (tower-test), helpers to fill the
//! controller's watch caches, and a harness that reconciles against both.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use k8s_openapi::api::apps::v1::{DeploymentStatus, StatefulSet, StatefulSetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta};
use kube::client::Body;
use kube::core::{PartialObjectMeta, TypeMeta};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde_json::{Value, json};

use blocksight_operator::chain::poller::Poller;
use blocksight_operator::controller::shared::child_cache::{
    ChildCache, ChildCacheWriter, VolumeClaimMeta, WorkloadMeta, child_cache,
};
use blocksight_operator::controller::shared::context::empty_monitor_store;
use blocksight_operator::controller::{Caches, Context, RecentWrites};
use blocksight_operator::crd::BlockSight;
use blocksight_operator::desired::{self, BuildSettings, Cache, Child, ChildKind};
use blocksight_operator::metrics::Metrics;
use blocksight_operator::names::FIELD_MANAGER;
use blocksight_operator::validate;

/// One request the controller sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub method: String,
    /// Path and query, e.g. `/api/v1/namespaces/default/configmaps/x?&force=true&fieldManager=...`.
    pub uri: String,
    pub body: Value,
}

impl Call {
    /// `METHOD path` without the query, for compact assertions.
    pub fn line(&self) -> String {
        format!(
            "{} {}",
            self.method,
            self.uri.split('?').next().unwrap_or_default()
        )
    }
}

/// Errors to inject: requests whose `METHOD path` matches get this status code, or
/// [`HANG`].
pub type Faults = Vec<(String, u16)>;

/// Not a status code: the request is received and never answered (a hung API server).
pub const HANG: u16 = 0;

/// Objects the server holds by REST path (without query): PATCHes of them and of their
/// status answer with the stored object (status replaced by a status patch's).
pub type Stored = Arc<Mutex<std::collections::BTreeMap<String, Value>>>;

/// Answer every request as the API server would (echo applied and created objects with a
/// uid and resourceVersion, acknowledge deletes, answer for the [`Stored`] objects), and
/// record it.
pub async fn serve_with(
    mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
    calls: Arc<Mutex<Vec<Call>>>,
    faults: Arc<Mutex<Faults>>,
    primary: Arc<Mutex<Option<Value>>>,
    stored: Stored,
) {
    // Kept, never used: dropping one would answer its request with an error.
    let mut unanswered = Vec::new();
    while let Some((request, send)) = handle.next_request().await {
        let method = request.method().to_string();
        let uri = request.uri().to_string();
        let bytes = request.into_body().collect_bytes().await.expect("body");
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        let call = Call {
            method: method.clone(),
            uri: uri.clone(),
            body: body.clone(),
        };
        let line = call.line();
        calls.lock().unwrap().push(call);
        let fault = faults
            .lock()
            .unwrap()
            .iter()
            .find(|(l, _)| *l == line)
            .map(|(_, code)| *code);
        if fault == Some(HANG) {
            unanswered.push(send);
            continue;
        }
        if let Some(code) = fault {
            let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "injected", "reason": "InternalError", "code": code});
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&status).unwrap()))
                    .unwrap(),
            );
            continue;
        }
        let path = line.split_once(' ').map(|(_, p)| p).unwrap_or_default();
        let held = stored
            .lock()
            .unwrap()
            .get(path.trim_end_matches("/status"))
            .cloned();
        let (status, answer) = match method.as_str() {
            "PATCH" if held.is_some() => {
                let mut object = held.unwrap();
                if path.ends_with("/status") {
                    object["status"] = body["status"].clone();
                }
                (200, object)
            }
            "DELETE" => (
                200,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            ),
            // The status subresource answers with the whole object, new status included.
            "PATCH" if line.ends_with("/status") => {
                let mut object = primary
                    .lock()
                    .unwrap()
                    .clone()
                    .expect("a BlockSight to patch");
                object["status"] = body["status"].clone();
                (200, object)
            }
            "POST" => (201, with_server_fields(body)),
            _ => (200, with_server_fields(body)),
        };
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
    }
}

fn with_server_fields(mut object: Value) -> Value {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.entry("uid").or_insert(json!("server-uid"));
        meta.insert("resourceVersion".into(), json!("2"));
    }
    object
}

/// Writers of the controller's caches, to put objects in them.
pub struct CacheWriters {
    /// The `Compact` rows of the child table, by kind.
    pub compact: BTreeMap<ChildKind, ChildCacheWriter>,
    pub secrets: Writer<k8s_openapi::api::core::v1::Secret>,
    pub jobs: Writer<k8s_openapi::api::batch::v1::Job>,
    pub pods: Writer<k8s_openapi::api::core::v1::Pod>,
    pub backups: Writer<blocksight_operator::crd::BlockSightBackup>,
    pub restores: Writer<blocksight_operator::crd::BlockSightRestore>,
    pub stateful_sets: ChildCacheWriter<WorkloadMeta>,
    pub stateful_volumes: ChildCacheWriter<VolumeClaimMeta>,
    pub deployments: ChildCacheWriter<WorkloadMeta>,
    pub volume_snapshots: Writer<kube::api::DynamicObject>,
}

/// Empty caches that have completed their first list.
pub fn caches() -> (Caches, CacheWriters) {
    fn ready<K: Resource<DynamicType = ()> + Clone>() -> (reflector::Store<K>, Writer<K>) {
        let (reader, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        (reader, writer)
    }
    fn compact() -> (ChildCache, ChildCacheWriter) {
        let (reader, mut writer) = child_cache();
        writer.apply_watcher_event::<k8s_openapi::api::core::v1::ConfigMap>(&watcher::Event::Init);
        writer.apply_watcher_event::<k8s_openapi::api::core::v1::ConfigMap>(
            &watcher::Event::InitDone,
        );
        (reader, writer)
    }
    let (mut compact_caches, mut compact_writers) = (BTreeMap::new(), BTreeMap::new());
    for kind in ChildKind::cached_as(Cache::Compact) {
        let (cache, writer) = compact();
        compact_caches.insert(kind, cache);
        compact_writers.insert(kind, writer);
    }
    let (secrets, se) = ready();
    let (jobs, jo) = ready();
    let (pods, po) = ready();
    let (backups, bk) = ready();
    let (restores, rs) = ready();
    fn workloads() -> (ChildCache<WorkloadMeta>, ChildCacheWriter<WorkloadMeta>) {
        let (reader, mut writer) = child_cache();
        writer.apply_watcher_event::<StatefulSet>(&watcher::Event::Init);
        writer.apply_watcher_event::<StatefulSet>(&watcher::Event::InitDone);
        (reader, writer)
    }
    let (stateful_sets, ss) = workloads();
    let (stateful_volumes, svol) = {
        let (reader, mut writer) = child_cache();
        writer.apply_watcher_event::<k8s_openapi::api::core::v1::PersistentVolumeClaim>(
            &watcher::Event::Init,
        );
        writer.apply_watcher_event::<k8s_openapi::api::core::v1::PersistentVolumeClaim>(
            &watcher::Event::InitDone,
        );
        (reader, writer)
    };
    let (deployments, de) = workloads();
    // The scenario clusters have no prometheus-operator CRDs.
    let custom = ChildKind::cached_as(Cache::Custom)
        .map(|kind| (kind, empty_monitor_store(kind.info().api_resource())))
        .collect();
    let mut vs = Writer::new(desired::volume_snapshot::resource());
    let volume_snapshots = vs.as_reader();
    vs.apply_watcher_event(&watcher::Event::Init);
    vs.apply_watcher_event(&watcher::Event::InitDone);
    (
        Caches {
            compact: compact_caches,
            custom,
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
        .track_listing(vec![]),
        CacheWriters {
            compact: compact_writers,
            secrets: se,
            jobs: jo,
            pods: po,
            backups: bk,
            restores: rs,
            stateful_sets: ss,
            stateful_volumes: svol,
            deployments: de,
            volume_snapshots: vs,
        },
    )
}

/// Metadata as the API server returns it after our apply: our manager owns what we set.
pub fn applied_meta(child: &Child) -> ObjectMeta {
    let mut meta = child.meta().clone();
    meta.uid = Some(format!("uid-{}", child.name()));
    meta.resource_version = Some("1".into());
    meta.generation = Some(1);
    meta.managed_fields = Some(vec![ManagedFieldsEntry {
        manager: Some(FIELD_MANAGER.into()),
        operation: Some("Apply".into()),
        api_version: Some("v1".into()),
        fields_type: Some("FieldsV1".into()),
        fields_v1: Some(FieldsV1(json!({"f:metadata": {"f:labels": {}}}))),
        ..Default::default()
    }]);
    meta
}

fn partial<K: Resource<DynamicType = ()>>(meta: ObjectMeta) -> PartialObjectMeta<K> {
    PartialObjectMeta {
        types: Some(TypeMeta {
            api_version: K::api_version(&()).into(),
            kind: K::kind(&()).into(),
        }),
        metadata: meta,
        _phantom: Default::default(),
    }
}

impl CacheWriters {
    /// Put `child` in the caches as the API server would hold it once applied; workloads
    /// report every replica ready when `ready`.
    pub fn put(&mut self, child: &Child, ready: bool) {
        let meta = applied_meta(child);
        match child {
            Child::ServiceMonitor(_) | Child::PodMonitor(_) => {
                panic!("the scenario clusters have no prometheus-operator")
            }
            Child::StatefulSet(s) => {
                let replicas = s.spec.replicas.unwrap_or(1);
                let n = if ready { replicas } else { 0 };
                let mut s = s.clone();
                s.metadata = meta;
                s.status = Some(StatefulSetStatus {
                    observed_generation: Some(1),
                    replicas,
                    ready_replicas: Some(n),
                    updated_replicas: Some(replicas),
                    current_revision: Some("r1".into()),
                    update_revision: Some("r1".into()),
                    ..Default::default()
                });
                self.stateful_sets
                    .apply_watcher_event(&watcher::Event::Apply(s));
            }
            Child::Deployment(d) => {
                let replicas = d.spec.replicas.unwrap_or(2);
                let n = if ready { replicas } else { 0 };
                let mut d = d.clone();
                d.metadata = meta;
                d.spec.replicas = Some(replicas);
                d.status = Some(DeploymentStatus {
                    observed_generation: Some(1),
                    replicas: Some(replicas),
                    ready_replicas: Some(n),
                    updated_replicas: Some(replicas),
                    ..Default::default()
                });
                self.deployments
                    .apply_watcher_event(&watcher::Event::Apply(d));
            }
            // The compact caches keep metadata only: the Rust type of the event is immaterial.
            compact => self
                .compact
                .get_mut(&compact.kind())
                .expect("a compact cache per Compact row of the child table")
                .apply_watcher_event(&watcher::Event::Apply(partial::<
                    k8s_openapi::api::core::v1::ConfigMap,
                >(meta))),
        }
    }

    pub fn put_secret(&mut self, name: &str, namespace: &str) {
        let secret = k8s_openapi::api::core::v1::Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        self.secrets
            .apply_watcher_event(&watcher::Event::Apply(secret));
    }

    /// Everything `bs` needs, as if a previous reconcile had applied it.
    pub fn converge(&mut self, bs: &BlockSight, ready: bool) {
        let valid = validate::validate(bs).expect("valid");
        for child in desired::build(&valid, &BuildSettings::default()).children {
            self.put(&child, ready);
        }
        for secret in desired::secrets::generate(&valid, &mut rand::rng()) {
            self.put_secret(secret.metadata.name.as_deref().unwrap(), &valid.namespace);
        }
    }
}

/// A BlockSight as the API server stores it (uid, generation) from a YAML spec.
pub fn blocksight(yaml: &str) -> BlockSight {
    let mut bs: BlockSight = serde_yaml::from_str(yaml).expect("BlockSight YAML");
    bs.metadata
        .namespace
        .get_or_insert_with(|| "default".into());
    bs.metadata.uid = Some("bs-uid".into());
    bs.metadata.generation = Some(1);
    bs.metadata.resource_version = Some("1".into());
    bs
}

/// A controller context whose client talks to the scripted API server.
pub struct Harness {
    pub ctx: Arc<Context>,
    pub calls: Arc<Mutex<Vec<Call>>>,
    pub server: tokio::task::JoinHandle<()>,
    /// The BlockSight the server holds (answers status patches).
    pub primary: Arc<Mutex<Option<Value>>>,
    /// Errors the server injects; clear them to let a retry succeed.
    pub faults: Arc<Mutex<Faults>>,
    /// Other objects the server holds (BlockSightBackups, BlockSightRestores).
    pub stored: Stored,
}

pub fn harness(caches: Caches, faults: Faults) -> Harness {
    harness_with(
        caches,
        faults,
        true,
        blocksight_operator::controller::shared::context::system_clock(),
    )
}

/// A harness whose cluster may lack the VolumeSnapshot API, with a given clock.
pub fn harness_with(
    caches: Caches,
    faults: Faults,
    volume_snapshot_api: bool,
    clock: blocksight_operator::controller::shared::context::Clock,
) -> Harness {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let calls = Arc::new(Mutex::new(Vec::new()));
    let primary = Arc::new(Mutex::new(None));
    let faults = Arc::new(Mutex::new(faults));
    let stored = Stored::default();
    let server = tokio::spawn(serve_with(
        handle,
        calls.clone(),
        faults.clone(),
        primary.clone(),
        stored.clone(),
    ));
    let metrics = Arc::new(Metrics::new());
    let ctx = Arc::new(Context {
        client: client.clone(),
        caches,
        recorder: Recorder::new(
            client,
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: Some("test".into()),
            },
        ),
        metrics: metrics.clone(),
        settings: BuildSettings::default(),
        recent_writes: RecentWrites::default(),
        own_fields: Default::default(),
        recent_status: Default::default(),
        pruned: Default::default(),
        validated: Default::default(),
        failures: Default::default(),
        poller: Arc::new(Poller::manual(metrics.clone())),
        resync: std::time::Duration::from_secs(300),
        reconcile_timeout: blocksight_operator::controller::RECONCILE_TIMEOUT,
        volume_snapshot_api,
        clock,
        warned_snapshots: Default::default(),
    });
    Harness {
        ctx,
        calls,
        server,
        primary,
        faults,
        stored,
    }
}

impl Harness {
    /// Reconcile `bs` once (failing the test after 5 s: a call the server never answered).
    pub async fn reconcile(
        &self,
        bs: &BlockSight,
    ) -> Result<kube::runtime::controller::Action, blocksight_operator::controller::blocksight::Error>
    {
        *self.primary.lock().unwrap() = Some(serde_json::to_value(bs).unwrap());
        let guard = Arc::new(kube::core::DeserializeGuard(Ok(bs.clone())));
        tokio::time::timeout(
            Duration::from_secs(5),
            blocksight_operator::controller::blocksight::reconcile(guard, self.ctx.clone()),
        )
        .await
        .expect("reconcile finished within 5 s")
    }

    /// The calls so far, and forget them.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

/// Caches holding everything `bs` needs, every workload ready.
pub fn caches_like(bs: &BlockSight) -> Caches {
    let (caches, mut writers) = caches();
    writers.converge(bs, true);
    // The writers must outlive the caches' readiness; leaking them in a test is harmless.
    std::mem::forget(writers);
    caches
}

/// What the chain probes publish when every service is up and synced.
pub fn synced_observation(electrs: bool) -> blocksight_operator::chain::Observation {
    use blocksight_operator::chain::{Observation, ServiceState};
    use blocksight_operator::probe::{BitcoindReport, ElectrsReport, PostgresReport, RedisReport};
    fn up<T>(report: T) -> ServiceState<T> {
        let mut state = ServiceState::default();
        state.record(Ok(report));
        state
    }
    Observation {
        bitcoind: up(BitcoindReport {
            blocks: 200,
            headers: 200,
            verification_progress: 1.0,
            initial_block_download: false,
            size_on_disk_bytes: 1_000_000,
            pruned: false,
            tip_time: 1_700_000_000,
            version: "/Satoshi:28.1.0/".into(),
            peers: 0,
            txindex_synced: Some(true),
            mempool_transactions: 0,
        }),
        electrs: electrs.then(|| {
            up(ElectrsReport {
                indexed_height: 200,
            })
        }),
        postgres: up(PostgresReport {
            version: "17.2".into(),
            database_size_bytes: 8_000_000,
        }),
        redis: up(RedisReport {
            used_memory_bytes: 1_000_000,
        }),
        database_bootstrapped: true,
    }
}

/// The REST path of a namespaced child in namespace `default`.
pub fn child_path(kind: ChildKind, name: &str) -> String {
    format!("{}/{name}", kind.info().path("default"))
}
