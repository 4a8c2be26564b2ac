//! An in-memory fake Kubernetes API server for the BlockSight operator's tests and
//! benchmark (development only: the shipped binary never depends on this crate).
//!
//! It serves, over HTTP/1.1 on 127.0.0.1, what kube-rs needs for every kind the operator
//! uses: discovery, get, list (label selectors, pagination), watch (resourceVersion,
//! bookmarks, timeouts), create, server-side apply with managedFields, merge patch, update,
//! delete with owner-reference garbage collection, the status subresource and
//! metadata-only (PartialObjectMetadata) requests. It counts every request by verb and
//! resource, can add latency and inject errors, and can play the kubelet and the workload
//! controllers (StatefulSets and Deployments report ready shortly after they change).
//!
//! **What it is for, and what it does not model.** It stays for fault injection (errors,
//! latency, dropped watches) and the large-N benchmark (`blocksight-bench`), where a real
//! API server would measure itself. Everything the API server decides is tested on the real
//! control plane instead (`tests/controlplane`, `tests/e2e`), because this fake has:
//! no CRD validation (neither OpenAPI schemas nor CEL rules, nor the checks the API server
//! makes on the CRDs themselves, such as resolving `fieldPath`), no authentication or RBAC
//! (every request is allowed, so a missing `create` verb goes unseen), no admission, no
//! immutability rules of built-in kinds (a changed StatefulSet `volumeClaimTemplates` is
//! accepted), no strict field validation, no `/scale` subresource, no PVCs made from claim
//! templates and no volume expansion, no real workload controllers or scheduler, and a
//! simplified server-side apply (lists keyed by guessed keys rather than the schema's
//! `listType`, and an apply replaces a list whole instead of merging other managers' items).
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use blocksight_fake_apiserver::{Config, FakeApiServer, Verb};
//! let fake = FakeApiServer::start(Config::default()).await?;
//! fake.write_kubeconfig(&std::env::temp_dir().join("fake-kubeconfig"))?;
//! // ... run a client against fake.url() ...
//! assert_eq!(fake.counts().get(Verb::Apply, "statefulsets"), 0);
//! # Ok(())
//! # }
//! ```

pub mod convergence;
mod fields;
mod kubelet;
pub mod operator;
pub mod resources;
mod server;
pub mod store;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::oneshot;

pub use store::{ApiError, Selector, Subresource, Written};

/// What the fake serves and simulates.
#[derive(Clone, Debug)]
pub struct Config {
    /// Serve the blocksight.live/v1alpha1 kinds (the CRDs are installed).
    pub blocksight_crds: bool,
    /// Serve ServiceMonitors and PodMonitors (prometheus-operator's CRDs are installed).
    pub prometheus_operator_crds: bool,
    /// Play the workload controllers and the kubelet: this long after a StatefulSet or
    /// Deployment changes, its status reports every replica updated and ready.
    pub kubelet: Option<Duration>,
    /// How often a watch that allows bookmarks gets one.
    pub bookmark_interval: Duration,
    /// Cap on a watch's timeoutSeconds (to make clients re-watch sooner than in a cluster).
    pub max_watch_timeout: Option<Duration>,
    /// Changes kept for watches to resume from; older resource versions get 410 Gone.
    pub log_capacity: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            blocksight_crds: true,
            prometheus_operator_crds: false,
            kubelet: None,
            bookmark_interval: Duration::from_secs(1),
            max_watch_timeout: None,
            log_capacity: 1_000_000,
        }
    }
}

/// Request verbs, as Kubernetes audit logs name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Apply,
    Patch,
    Update,
    Delete,
}

impl Verb {
    pub const ALL: [Verb; 8] = [
        Verb::Get,
        Verb::List,
        Verb::Watch,
        Verb::Create,
        Verb::Apply,
        Verb::Patch,
        Verb::Update,
        Verb::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Apply => "apply",
            Verb::Patch => "patch",
            Verb::Update => "update",
            Verb::Delete => "delete",
        }
    }

    pub fn is_write(self) -> bool {
        matches!(
            self,
            Verb::Create | Verb::Apply | Verb::Patch | Verb::Update | Verb::Delete
        )
    }

    /// GET and LIST: what a controller reading from watch caches should never need.
    pub fn is_read(self) -> bool {
        matches!(self, Verb::Get | Verb::List)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Requests by (verb, resource). The resource is the plural ("statefulsets"), with
/// "/status" for the status subresource; API discovery counts as ("get", "discovery").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts(BTreeMap<(Verb, String), u64>);

impl Counts {
    pub fn get(&self, verb: Verb, resource: &str) -> u64 {
        self.0
            .get(&(verb, resource.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// All requests of `verb`.
    pub fn verb(&self, verb: Verb) -> u64 {
        self.0
            .iter()
            .filter(|((v, _), _)| *v == verb)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn writes(&self) -> u64 {
        self.filtered(|v, _| v.is_write())
    }

    pub fn reads(&self) -> u64 {
        self.filtered(|v, _| v.is_read())
    }

    fn filtered(&self, keep: impl Fn(Verb, &str) -> bool) -> u64 {
        self.0
            .iter()
            .filter(|((v, r), _)| keep(*v, r))
            .map(|(_, n)| n)
            .sum()
    }

    /// What happened after `earlier` was taken.
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts(
            self.0
                .iter()
                .filter_map(|(key, n)| {
                    let delta = n - earlier.0.get(key).copied().unwrap_or(0);
                    (delta > 0).then(|| (key.clone(), delta))
                })
                .collect(),
        )
    }

    /// These counts without the requests on `resource` (and its subresources).
    pub fn without(&self, resource: &str) -> Counts {
        Counts(
            self.0
                .iter()
                .filter(|((_, r), _)| r != resource && !r.starts_with(&format!("{resource}/")))
                .map(|(k, n)| (k.clone(), *n))
                .collect(),
        )
    }

    pub fn iter(&self) -> impl Iterator<Item = (Verb, &str, u64)> {
        self.0.iter().map(|((v, r), n)| (*v, r.as_str(), *n))
    }

    /// `{"apply": {"statefulsets": 3}, ...}`, verbs and resources sorted.
    pub fn to_json(&self) -> Value {
        let mut out = serde_json::Map::new();
        for ((verb, resource), n) in &self.0 {
            out.entry(verb.as_str())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("an object")
                .insert(resource.clone(), json!(n));
        }
        Value::Object(out)
    }
}

/// One request as served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    pub verb: Verb,
    /// As in [`Counts`].
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// The HTTP status code answered.
    pub code: u16,
    /// A write that changed nothing (no new resourceVersion): a wasted request.
    pub unchanged: bool,
    /// When the request arrived, since the fake started.
    pub at: Duration,
    /// How long the fake took to answer it (streams: until the stream started).
    pub took: Duration,
}

/// One request as received, before any latency and before it is served: a request the
/// client gave up on (a timeout, a killed process) has an arrival and no [`RequestRecord`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrival {
    pub verb: Verb,
    /// As in [`Counts`].
    pub resource: String,
    pub namespace: Option<String>,
    /// From the path: None for a create (its name is in the body) and collections.
    pub name: Option<String>,
    /// Since the fake started (the clock of [`RequestRecord::at`]).
    pub at: Duration,
}

/// An error to answer instead of serving matching requests.
#[derive(Clone, Debug)]
pub struct Fault {
    pub verb: Verb,
    /// As in [`Counts`].
    pub resource: String,
    /// Only requests for this object (any when None).
    pub name: Option<String>,
    pub code: u16,
    /// How many matching requests fail.
    pub times: usize,
    /// Perform the request before failing it: e.g. a 409 on create that another writer
    /// won, or a timeout after the write landed.
    pub commit: bool,
}

impl Fault {
    /// Fail the next matching request with `code`, without performing it.
    pub fn once(verb: Verb, resource: &str, code: u16) -> Self {
        Self {
            verb,
            resource: resource.to_owned(),
            name: None,
            code,
            times: 1,
            commit: false,
        }
    }

    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    pub fn committed(mut self) -> Self {
        self.commit = true;
        self
    }
}

/// Extra latency before serving matching requests (None matches anything).
#[derive(Clone, Debug)]
pub struct Latency {
    pub verb: Option<Verb>,
    pub resource: Option<String>,
    pub delay: Duration,
}

pub(crate) struct Shared {
    pub resources: Vec<resources::ResourceType>,
    pub store: Mutex<store::Store>,
    pub counts: Mutex<BTreeMap<(Verb, String), u64>>,
    pub log: Mutex<Vec<RequestRecord>>,
    pub arrivals: Mutex<Vec<Arrival>>,
    pub faults: Mutex<Vec<Fault>>,
    pub latency: Mutex<Vec<Latency>>,
    pub watches: Mutex<BTreeMap<String, usize>>,
    pub config: Config,
    pub address: String,
    pub started: std::time::Instant,
}

impl Shared {
    pub fn store(&self) -> MutexGuard<'_, store::Store> {
        self.store.lock().expect("store lock poisoned")
    }

    fn resource(&self, plural: &str) -> Result<usize, ApiError> {
        self.resources
            .iter()
            .position(|r| r.plural == plural)
            .ok_or_else(|| ApiError::new(404, "NotFound", format!("no resource {plural:?}")))
    }
}

/// A running fake API server; stops when dropped.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    address: std::net::SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl FakeApiServer {
    /// Listen on 127.0.0.1 (a free port) and serve until dropped.
    pub async fn start(config: Config) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let kinds = resources::catalog(config.blocksight_crds, config.prometheus_operator_crds);
        let shared = Arc::new(Shared {
            store: Mutex::new(store::Store::new(kinds.clone(), config.log_capacity)),
            resources: kinds,
            counts: Mutex::default(),
            log: Mutex::default(),
            arrivals: Mutex::default(),
            faults: Mutex::default(),
            latency: Mutex::default(),
            watches: Mutex::default(),
            config: config.clone(),
            address: address.to_string(),
            started: std::time::Instant::now(),
        });
        if let Some(delay) = config.kubelet {
            kubelet::spawn(shared.clone(), delay);
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let app = server::router(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            shared,
            address,
            _stop: stop,
        })
    }

    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    /// http://127.0.0.1:PORT
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A kubeconfig pointing at the fake: no TLS, no credentials, namespace `default`.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    \
             cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\n",
            self.url()
        )
    }

    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }

    /// Requests served so far, by (verb, resource).
    pub fn counts(&self) -> Counts {
        Counts(self.shared.counts.lock().expect("not poisoned").clone())
    }

    /// Every request served so far, in order (`since` skips the first ones).
    pub fn requests(&self, since: usize) -> Vec<RequestRecord> {
        let log = self.shared.log.lock().expect("not poisoned");
        log.get(since..).map(<[_]>::to_vec).unwrap_or_default()
    }

    /// How many requests have been served (a mark for [`Self::requests`]).
    pub fn request_mark(&self) -> usize {
        self.shared.log.lock().expect("not poisoned").len()
    }

    /// Every request received so far (discovery excepted), in order of arrival, answered
    /// or not.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.shared.arrivals.lock().expect("not poisoned").clone()
    }

    /// Open watches per resource.
    pub fn active_watches(&self) -> BTreeMap<String, usize> {
        self.shared.watches.lock().expect("not poisoned").clone()
    }

    pub fn inject(&self, fault: Fault) {
        self.shared.faults.lock().expect("not poisoned").push(fault);
    }

    /// Faults not yet used up.
    pub fn pending_faults(&self) -> Vec<Fault> {
        self.shared.faults.lock().expect("not poisoned").clone()
    }

    pub fn add_latency(&self, latency: Latency) {
        self.shared
            .latency
            .lock()
            .expect("not poisoned")
            .push(latency);
    }

    /// Remove every latency added: new requests are served at once (those already waiting
    /// keep their delay).
    pub fn clear_latency(&self) {
        self.shared.latency.lock().expect("not poisoned").clear();
    }

    /// Time since the fake started (the clock of [`RequestRecord::at`]).
    pub fn elapsed(&self) -> Duration {
        self.shared.started.elapsed()
    }

    /// The current resourceVersion of the whole store.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().resource_version()
    }

    // In-process access, for tests and the benchmark: these act as a user would (kubectl)
    // and are not counted as requests.

    pub fn get(&self, plural: &str, namespace: &str, name: &str) -> Option<Arc<Value>> {
        let resource = self.shared.resource(plural).ok()?;
        self.shared.store().get(resource, namespace, name).ok()
    }

    /// Every object of a kind (in `namespace`, or all when None).
    pub fn list(&self, plural: &str, namespace: Option<&str>) -> Vec<Arc<Value>> {
        let Ok(resource) = self.shared.resource(plural) else {
            return vec![];
        };
        self.shared
            .store()
            .list(resource, namespace, &Selector::default(), None, None)
            .map(|page| page.items)
            .unwrap_or_default()
    }

    /// How many objects of a kind exist.
    pub fn count_objects(&self, plural: &str) -> usize {
        self.shared
            .resource(plural)
            .map(|r| self.shared.store().len(r))
            .unwrap_or(0)
    }

    pub fn create(
        &self,
        plural: &str,
        namespace: &str,
        object: Value,
    ) -> Result<Arc<Value>, ApiError> {
        let resource = self.shared.resource(plural)?;
        self.shared
            .store()
            .create(resource, namespace, object, "kubectl-create")
    }

    /// A merge patch of the object (or of its status), as `manager` (e.g. "kubectl-patch").
    pub fn merge_patch(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
        patch: &Value,
        manager: &str,
        sub: Subresource,
    ) -> Result<Arc<Value>, ApiError> {
        let resource = self.shared.resource(plural)?;
        self.shared
            .store()
            .merge_patch(resource, namespace, name, patch, manager, sub)
            .map(|(object, _)| object)
    }

    /// Delete an object; its dependents follow in the background.
    pub fn delete(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        let resource = self.shared.resource(plural)?;
        let deleted = self.shared.store().delete(resource, namespace, name)?;
        server::collect_garbage_later(self.shared.clone(), &deleted);
        Ok(deleted)
    }
}
