//! One poll loop per BlockSight: probes bitcoind, electrs, PostgreSQL and Redis on an
//! interval (jittered, one call in flight per service), bootstraps the database roles once
//! PostgreSQL answers, exports the chain metrics, and publishes an [`Observation`] when it
//! changed meaningfully, asking the controller to reconcile that BlockSight.
//!
//! It runs beside the controller, never in a reconcile: a slow node cannot delay another
//! BlockSight. Credentials come from the operator's watch cache of its own Secrets, and the
//! loop stops when its BlockSight leaves the controller's cache: no extra API reads.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Observation, ServiceState, is_significant};
use crate::crd::Network;
use crate::desired::secrets::{self, key};
use crate::desired::{Component, bitcoind as bitcoind_builder, electrs as electrs_builder};
use crate::metrics::{ChainLabels, InstanceLabels, Metrics, ServiceLabels};
use crate::probe::{self, BitcoindTarget, Bootstrap, ElectrsTarget, ProbeError};
use crate::validate::{Postgres, ValidBlockSight};

/// (namespace, name) of a BlockSight.
pub type Key = (String, String);

/// Reads a Secret's data (namespace, name) as strings.
pub type SecretReader = Arc<
    dyn Fn(String, String) -> BoxFuture<'static, Option<BTreeMap<String, String>>> + Send + Sync,
>;
/// Whether the BlockSight still exists (the controller's cache).
pub type Exists = Arc<dyn Fn(&Key) -> bool + Send + Sync>;
/// Asks the controller to reconcile a BlockSight.
pub type Trigger = Arc<dyn Fn(&Key) + Send + Sync>;

/// Where and how to probe one BlockSight's services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbePlan {
    pub namespace: String,
    pub name: String,
    pub network: Network,
    pub bitcoind_url: String,
    pub rpc_secret: String,
    pub electrs_addr: Option<String>,
    pub postgres: PostgresPlan,
    pub redis_addr: String,
    pub redis_secret: String,
    /// The credentials rotation in force: a new one restarts the loop, which bootstraps the
    /// database roles again with the new passwords.
    pub rotation: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostgresPlan {
    /// The operator's PostgreSQL: superuser from the generated Secret; it bootstraps roles.
    InCluster {
        host_port: String,
        database: String,
        secret: String,
    },
    /// The user's: a connection URI from their Secret; no bootstrap.
    External {
        secret: String,
        key: String,
        database: String,
    },
}

impl ProbePlan {
    /// The plan for a validated BlockSight: its Services by cluster DNS name.
    pub fn for_blocksight(bs: &ValidBlockSight) -> Self {
        let host = |c: Component| format!("{}.{}.svc", c.child_name(bs), bs.namespace);
        Self {
            namespace: bs.namespace.clone(),
            name: bs.name.clone(),
            network: bs.network,
            bitcoind_url: format!(
                "http://{}:{}",
                host(Component::Bitcoind),
                bitcoind_builder::rpc_port(bs.network)
            ),
            rpc_secret: secrets::rpc_secret_name(bs),
            electrs_addr: bs.electrs.as_ref().map(|_| {
                format!(
                    "{}:{}",
                    host(Component::Electrs),
                    electrs_builder::ELECTRUM_PORT
                )
            }),
            postgres: match &bs.postgres {
                Postgres::InCluster { database, .. } => PostgresPlan::InCluster {
                    host_port: format!(
                        "{}:{}",
                        host(Component::Postgres),
                        crate::desired::postgres::PORT
                    ),
                    database: database.clone(),
                    secret: secrets::postgres_secret_name(bs),
                },
                Postgres::External { database, uri } => PostgresPlan::External {
                    secret: uri.name.clone(),
                    key: uri.key.clone(),
                    database: database.clone(),
                },
            },
            redis_addr: format!("{}:{}", host(Component::Redis), crate::desired::redis::PORT),
            redis_secret: secrets::redis_secret_name(bs),
            rotation: bs.rotation.clone(),
        }
    }

    fn key(&self) -> Key {
        (self.namespace.clone(), self.name.clone())
    }
}

/// Settings of the poll loops.
#[derive(Clone, Debug)]
pub struct PollSettings {
    pub interval: Duration,
    /// Timeout of each probe call.
    pub timeout: Duration,
    /// How often IBD progress alone is published.
    pub ibd_publish_interval: Duration,
    /// Probe rounds (of all BlockSights) running at once.
    pub max_concurrent_rounds: usize,
}

impl Default for PollSettings {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            ibd_publish_interval: Duration::from_secs(300),
            max_concurrent_rounds: 64,
        }
    }
}

struct Shared {
    settings: PollSettings,
    /// Probe rounds in flight across every BlockSight: bounded, so thousands of BlockSights
    /// do not open thousands of connections at once.
    rounds: tokio::sync::Semaphore,
    published: Mutex<HashMap<Key, Observation>>,
    secrets: SecretReader,
    exists: Exists,
    trigger: Trigger,
    metrics: Arc<Metrics>,
}

/// The poll loops of every BlockSight, and what they last published.
pub struct Poller {
    shared: Arc<Shared>,
    loops: Mutex<HashMap<Key, (ProbePlan, CancellationToken)>>,
    /// Off in tests of the reconciler, which publish observations by hand.
    spawn_loops: bool,
}

impl Poller {
    pub fn new(
        settings: PollSettings,
        secrets: SecretReader,
        exists: Exists,
        trigger: Trigger,
        metrics: Arc<Metrics>,
    ) -> Self {
        let shared = Shared {
            rounds: tokio::sync::Semaphore::new(settings.max_concurrent_rounds),
            settings,
            published: Mutex::default(),
            secrets,
            exists,
            trigger,
            metrics,
        };
        Self {
            shared: Arc::new(shared),
            loops: Mutex::default(),
            spawn_loops: true,
        }
    }

    /// A poller that runs no loop: observations come only from [`Poller::publish`].
    pub fn manual(metrics: Arc<Metrics>) -> Self {
        let mut poller = Self::new(
            PollSettings::default(),
            Arc::new(|_, _| Box::pin(async { None })),
            Arc::new(|_| true),
            Arc::new(|_| {}),
            metrics,
        );
        poller.spawn_loops = false;
        poller
    }

    /// Start (or restart, when the plan changed) the loop of `plan`'s BlockSight.
    pub fn ensure(&self, plan: ProbePlan) {
        if !self.spawn_loops {
            return;
        }
        let key = plan.key();
        let mut loops = self.loops.lock().expect("not poisoned");
        if loops.get(&key).is_some_and(|(running, _)| *running == plan) {
            return;
        }
        if let Some((_, stop)) = loops.remove(&key) {
            stop.cancel();
        }
        let stop = CancellationToken::new();
        tokio::spawn(poll_loop(plan.clone(), self.shared.clone(), stop.clone()));
        loops.insert(key, (plan, stop));
    }

    /// Stop a BlockSight's loop and forget what it published.
    pub fn stop(&self, key: &Key) {
        if let Some((_, stop)) = self.loops.lock().expect("not poisoned").remove(key) {
            stop.cancel();
        }
        self.shared
            .published
            .lock()
            .expect("not poisoned")
            .remove(key);
    }

    /// The last published observation of a BlockSight.
    pub fn observation(&self, key: &Key) -> Option<Observation> {
        self.shared
            .published
            .lock()
            .expect("not poisoned")
            .get(key)
            .cloned()
    }

    /// Publish an observation (the loops do this; tests call it directly).
    pub fn publish(&self, key: Key, observation: Observation) {
        self.shared
            .published
            .lock()
            .expect("not poisoned")
            .insert(key, observation);
    }

    /// Number of running loops.
    pub fn loops(&self) -> usize {
        self.loops.lock().expect("not poisoned").len()
    }
}

/// `interval` ± 10%, so the loops of many BlockSights do not probe in lockstep.
fn jittered(interval: Duration) -> Duration {
    let factor = rand::rng().random_range(0.9..1.1);
    interval.mul_f64(factor)
}

fn text(error: ProbeError) -> String {
    format!("{}: {error}", error.category())
}

async fn poll_loop(plan: ProbePlan, shared: Arc<Shared>, stop: CancellationToken) {
    let key = plan.key();
    info!(namespace = %plan.namespace, name = %plan.name, "chain probes started");
    let mut observation = Observation {
        electrs: plan.electrs_addr.as_ref().map(|_| ServiceState::default()),
        // The user provisions an external database.
        database_bootstrapped: matches!(plan.postgres, PostgresPlan::External { .. }),
        ..Default::default()
    };
    let mut published_at: Option<Instant> = None;
    loop {
        if !(shared.exists)(&key) {
            break;
        }
        {
            let _permit = shared
                .rounds
                .acquire()
                .await
                .expect("the semaphore is never closed");
            poll_once(&plan, &shared, &mut observation).await;
        }
        record_metrics(&plan, &shared.metrics, &observation);
        let published = shared
            .published
            .lock()
            .expect("not poisoned")
            .get(&key)
            .cloned();
        let since = published_at.map_or(Duration::MAX, |t| t.elapsed());
        if is_significant(
            published.as_ref(),
            &observation,
            since,
            shared.settings.ibd_publish_interval,
        ) {
            shared
                .published
                .lock()
                .expect("not poisoned")
                .insert(key.clone(), observation.clone());
            published_at = Some(Instant::now());
            (shared.trigger)(&key);
        }
        tokio::select! {
            _ = tokio::time::sleep(jittered(shared.settings.interval)) => {}
            _ = stop.cancelled() => break,
        }
    }
    shared.published.lock().expect("not poisoned").remove(&key);
    shared
        .metrics
        .forget_chain(&plan.namespace, &plan.name, plan.network.as_str());
    info!(namespace = %plan.namespace, name = %plan.name, "chain probes stopped");
}

/// One round: every service probed concurrently, each once, each within the timeout.
async fn poll_once(plan: &ProbePlan, shared: &Shared, observation: &mut Observation) {
    let timeout = shared.settings.timeout;
    let secret = |name: &str| (shared.secrets)(plan.namespace.clone(), name.to_owned());
    let (rpc, redis_credentials) =
        tokio::join!(secret(&plan.rpc_secret), secret(&plan.redis_secret));
    let missing = |what: &str| Err::<(), String>(format!("config: Secret {what} not found yet"));

    let bitcoind = async {
        let Some(rpc) = &rpc else {
            return (
                missing(&plan.rpc_secret).map(|_| unreachable!()),
                Duration::ZERO,
            );
        };
        let target = BitcoindTarget {
            url: plan.bitcoind_url.clone(),
            user: rpc.get(key::RPC_USER).cloned().unwrap_or_default(),
            password: rpc.get(key::RPC_PASSWORD).cloned().unwrap_or_default(),
            timeout,
        };
        timed(probe::bitcoind(&target)).await
    };
    let electrs = async {
        let addr = plan.electrs_addr.clone()?;
        Some(timed(probe::electrs(&ElectrsTarget { addr, timeout })).await)
    };
    let redis = async {
        let Some(credentials) = &redis_credentials else {
            return (
                missing(&plan.redis_secret).map(|_| unreachable!()),
                Duration::ZERO,
            );
        };
        let password = credentials
            .get(key::REDIS_PASSWORD)
            .cloned()
            .unwrap_or_default();
        timed(probe::redis(
            &format!("redis://:{password}@{}/0", plan.redis_addr),
            timeout,
        ))
        .await
    };
    let postgres = postgres_round(plan, shared, observation.database_bootstrapped);
    let ((b, b_took), e, (r, r_took), (p, p_took, bootstrapped)) =
        tokio::join!(bitcoind, electrs, redis, postgres);

    let metrics = &shared.metrics;
    let note = |service: &str, ok: bool, took: Duration| {
        let labels = ServiceLabels {
            namespace: plan.namespace.clone(),
            blocksight: plan.name.clone(),
            service: service.to_owned(),
        };
        metrics
            .chain
            .probe_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        metrics
            .chain
            .probe_up
            .get_or_create(&labels)
            .set(i64::from(ok));
        if !ok {
            metrics.chain.probe_errors.get_or_create(&labels).inc();
        }
    };
    note("bitcoind", b.is_ok(), b_took);
    note("redis", r.is_ok(), r_took);
    note("postgres", p.is_ok(), p_took);
    if let Some((e, took)) = &e {
        note("electrs", e.is_ok(), *took);
    }
    for (service, error) in [
        ("bitcoind", b.as_ref().err()),
        ("redis", r.as_ref().err()),
        ("postgres", p.as_ref().err()),
    ] {
        if let Some(error) = error {
            debug!(namespace = %plan.namespace, name = %plan.name, service, %error, "probe failed");
        }
    }
    observation.bitcoind.record(b);
    observation.redis.record(r);
    observation.postgres.record(p);
    if let (Some(state), Some((result, _))) = (observation.electrs.as_mut(), e) {
        state.record(result);
    }
    observation.database_bootstrapped |= bootstrapped;
}

async fn timed<T>(
    probe: impl Future<Output = Result<T, ProbeError>>,
) -> (Result<T, String>, Duration) {
    let started = Instant::now();
    let result = probe.await.map_err(text);
    (result, started.elapsed())
}

/// Probe PostgreSQL; for the operator's own, create the roles once it answers.
async fn postgres_round(
    plan: &ProbePlan,
    shared: &Shared,
    bootstrapped: bool,
) -> (Result<probe::PostgresReport, String>, Duration, bool) {
    let timeout = shared.settings.timeout;
    let started = Instant::now();
    let (url, database, credentials) = match &plan.postgres {
        PostgresPlan::InCluster {
            host_port,
            database,
            secret,
        } => {
            let Some(credentials) = (shared.secrets)(plan.namespace.clone(), secret.clone()).await
            else {
                return (
                    Err(format!("config: Secret {secret} not found yet")),
                    Duration::ZERO,
                    false,
                );
            };
            let password = credentials
                .get(key::SUPERUSER_PASSWORD)
                .cloned()
                .unwrap_or_default();
            (
                format!("postgres://postgres:{password}@{host_port}/postgres"),
                database,
                Some(credentials),
            )
        }
        PostgresPlan::External {
            secret,
            key,
            database,
        } => {
            let Some(uri) = (shared.secrets)(plan.namespace.clone(), secret.clone())
                .await
                .and_then(|d| d.get(key).cloned())
            else {
                return (
                    Err(format!("config: Secret {secret} (key {key}) not found")),
                    Duration::ZERO,
                    true,
                );
            };
            (uri, database, None)
        }
    };
    // Bootstrap first: it also creates the database when the data directory was initialised
    // without it (a restore, an image without POSTGRES_DB), which the probe then reads.
    let mut done = bootstrapped;
    if let (Some(c), false) = (&credentials, bootstrapped) {
        let bootstrap = Bootstrap {
            admin_url: &url,
            database,
            app_user: c
                .get(key::APP_USER)
                .map(String::as_str)
                .unwrap_or(secrets::APP_DB_USER),
            app_password: c
                .get(key::APP_PASSWORD)
                .map(String::as_str)
                .unwrap_or_default(),
            readonly_user: c
                .get(key::READONLY_USER)
                .map(String::as_str)
                .unwrap_or(secrets::READONLY_DB_USER),
            readonly_password: c
                .get(key::READONLY_PASSWORD)
                .map(String::as_str)
                .unwrap_or_default(),
        };
        match probe::bootstrap_database(&bootstrap, timeout).await {
            Ok(()) => {
                info!(namespace = %plan.namespace, name = %plan.name, "database roles bootstrapped");
                done = true;
            }
            // Unreachable is the probe's to report; anything else is worth a log line.
            Err(ProbeError::Unreachable(_) | ProbeError::Timeout) => {}
            Err(e) => {
                warn!(namespace = %plan.namespace, name = %plan.name, error = %e, "database bootstrap failed")
            }
        }
    }
    let report = probe::postgres(&url, database, timeout).await.map_err(text);
    (report, started.elapsed(), done)
}

/// Export the chain gauges of one BlockSight.
fn record_metrics(plan: &ProbePlan, metrics: &Metrics, observation: &Observation) {
    let chain = ChainLabels {
        namespace: plan.namespace.clone(),
        blocksight: plan.name.clone(),
        network: plan.network.as_str().to_owned(),
    };
    let instance = InstanceLabels {
        namespace: plan.namespace.clone(),
        blocksight: plan.name.clone(),
    };
    let m = &metrics.chain;
    if let Some(b) = &observation.bitcoind.last {
        let gauge = |g: &prometheus_client::metrics::family::Family<
            ChainLabels,
            prometheus_client::metrics::gauge::Gauge,
        >,
                     v: u64| {
            g.get_or_create(&chain)
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        gauge(&m.blocks, b.blocks);
        gauge(&m.headers, b.headers);
        gauge(
            &m.initial_block_download,
            u64::from(b.initial_block_download),
        );
        gauge(&m.peers, u64::from(b.peers));
        gauge(&m.size_on_disk, b.size_on_disk_bytes);
        gauge(&m.mempool_transactions, b.mempool_transactions);
        m.tip_timestamp.get_or_create(&chain).set(b.tip_time);
        m.verification_progress
            .get_or_create(&chain)
            .set(b.verification_progress);
    }
    if let Some(e) = observation.electrs.as_ref().and_then(|e| e.last.as_ref()) {
        m.electrs_indexed_height
            .get_or_create(&instance)
            .set(i64::try_from(e.indexed_height).unwrap_or(i64::MAX));
    }
    if let Some(lag) = observation.index_lag() {
        m.electrs_lag
            .get_or_create(&instance)
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
    }
    if let Some(p) = &observation.postgres.last {
        m.database_size
            .get_or_create(&instance)
            .set(i64::try_from(p.database_size_bytes).unwrap_or(i64::MAX));
    }
}
