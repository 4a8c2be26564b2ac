//! The real `blocksight run` code path (Controller, watches, leader election) in-process
//! against the fake. One operator at a time in this process: it finds the fake through
//! KUBECONFIG, which is process-wide, so a [`Harness`] holds [`one_at_a_time`] while it lives.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use blocksight_fake_apiserver::convergence::{self, CHILD_RESOURCES, Expected};
use blocksight_fake_apiserver::operator::{self, regtest_blocksight};
use blocksight_fake_apiserver::{Config, Counts, FakeApiServer};
use blocksight_operator::desired::BuildSettings;
use blocksight_operator::runtime::{RunConfig, run};
use tokio::sync::{Mutex, MutexGuard};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub const NAMESPACE: &str = "default";
pub const IDENTITY: &str = "test-replica";

/// The tests of this binary run one at a time, as when each was a binary of its own: the
/// in-process operator reads KUBECONFIG, which each test points at its own fake, and the
/// timings asserted (backoff, shutdown) assume a test has the machine to itself.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Wait for the tests before to finish; the next one starts when the guard drops (also when
/// a test panics).
pub async fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().await
}

/// A running operator.
struct Operator {
    task: JoinHandle<()>,
    metrics: SocketAddr,
}

pub struct Harness {
    pub fake: FakeApiServer,
    operator: Option<Operator>,
    kubeconfig: PathBuf,
    /// The next operator's `--reconcile-timeout`.
    pub reconcile_timeout: Duration,
    /// Last, so released last: after `drop` has aborted the operator and the fake is gone.
    _one_at_a_time: MutexGuard<'static, ()>,
}

/// Wait for the tests before (see [`one_at_a_time`]), start the fake (kubelet on) and point
/// KUBECONFIG at it; no operator yet.
pub async fn fake() -> Harness {
    let one_at_a_time = one_at_a_time().await;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let fake = FakeApiServer::start(Config {
        kubelet: Some(Duration::from_millis(50)),
        ..Config::default()
    })
    .await
    .expect("fake starts");
    let kubeconfig = std::env::temp_dir().join(format!(
        "blocksight-fake-{}-{}.kubeconfig",
        std::process::id(),
        fake.address().port()
    ));
    fake.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    // SAFETY: the tests of this binary run one at a time (we hold `one_at_a_time`), and
    // nothing reads the environment while it is set (the operator reads it later, when it
    // starts).
    unsafe { std::env::set_var("KUBECONFIG", &kubeconfig) };
    Harness {
        fake,
        operator: None,
        kubeconfig,
        reconcile_timeout: blocksight_operator::controller::RECONCILE_TIMEOUT,
        _one_at_a_time: one_at_a_time,
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(operator) = &self.operator {
            operator.task.abort();
        }
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

impl Harness {
    /// Start (or restart: the previous one is stopped) the operator, with leader election,
    /// probes off and `resync` as its resync interval.
    pub fn start_operator(&mut self, resync: Duration) {
        if let Some(previous) = self.operator.take() {
            previous.task.abort();
        }
        let metrics = operator::free_local_addr().expect("a free port");
        let config = RunConfig {
            namespace: None,
            metrics_addr: metrics,
            leader_election: true,
            lease_name: "blocksight-operator".into(),
            lease_namespace: NAMESPACE.into(),
            identity: IDENTITY.into(),
            settings: BuildSettings::default(),
            probe_interval: Duration::from_secs(30),
            resync_interval: resync,
            reconcile_timeout: self.reconcile_timeout,
            probes: false,
        };
        let task = tokio::spawn(async move {
            if let Err(e) = run(config).await {
                panic!("the operator stopped: {e:#}");
            }
        });
        self.operator = Some(Operator { task, metrics });
    }

    fn operator(&self) -> &Operator {
        self.operator.as_ref().expect("the operator was started")
    }

    /// Wait until the operator watches BlockSights and every kind of child.
    pub async fn wait_watching(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut watched: Vec<&str> = CHILD_RESOURCES.to_vec();
        watched.extend(["blocksights", "secrets"]);
        loop {
            assert!(!self.operator().task.is_finished(), "the operator stopped");
            let open = self.fake.active_watches();
            if watched
                .iter()
                .all(|r| open.get(*r).copied().unwrap_or(0) > 0)
            {
                return;
            }
            assert!(Instant::now() < deadline, "watches not open: {open:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Create the regtest example as `name`, as a user would (not counted as a request).
    pub fn create(&self, name: &str) {
        self.fake
            .create("blocksights", NAMESPACE, regtest_blocksight(name))
            .expect("created");
    }

    /// The condition `type_` in the stored status of BlockSight `name`.
    pub fn condition(&self, name: &str, type_: &str) -> serde_json::Value {
        let bs = self
            .fake
            .get("blocksights", NAMESPACE, name)
            .expect("the BlockSight exists");
        bs["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == type_)
            .cloned()
            .unwrap_or_else(|| panic!("{name} has no condition {type_}: {}", bs["status"]))
    }

    /// What the builders say `name` should have now.
    pub fn expected(&self, name: &str) -> Expected {
        let bs = self
            .fake
            .get("blocksights", NAMESPACE, name)
            .expect("the BlockSight exists");
        convergence::expected(&bs, &BuildSettings::default()).expect("valid")
    }

    /// Wait until every BlockSight in `names` is converged.
    pub async fn wait_converged(&self, names: &[&str], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            assert!(
                !self.operator().task.is_finished(),
                "the operator stopped (see the panic above)"
            );
            let pending: Vec<String> = names
                .iter()
                .filter_map(|name| {
                    convergence::check(&self.fake, NAMESPACE, name, &self.expected(name)).err()
                })
                .collect();
            if pending.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not converged after {timeout:?}: {pending:#?}\nrequests: {:?}",
                self.fake.counts()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Requests so far, without leader election's (Lease renewals are its job, not
    /// reconciliation's).
    pub fn counts(&self) -> Counts {
        self.fake.counts().without("leases")
    }

    /// Wait until `quiet` passes without a write (other than the Lease's).
    pub async fn wait_quiet(&self, quiet: Duration, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut writes = self.counts().writes();
        let mut since = Instant::now();
        while since.elapsed() < quiet {
            assert!(Instant::now() < deadline, "still writing after {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now = self.counts().writes();
            if now != writes {
                writes = now;
                since = Instant::now();
            }
        }
    }

    /// How many BlockSights this operator has reconciled: it sets one phase gauge to 1 for
    /// each (0 until it serves /metrics).
    pub async fn instances(&self) -> f64 {
        match operator::scrape(self.operator().metrics).await {
            Ok(text) => operator::metric(&text, "blocksight_instance_phase"),
            Err(_) => 0.0,
        }
    }

    /// The HTTP status of the operator's /readyz (0 until it serves).
    pub async fn readyz(&self) -> u16 {
        operator::http_get(self.operator().metrics, "/readyz")
            .await
            .map(|(status, _)| status)
            .unwrap_or(0)
    }

    /// The operator's /metrics (empty until it serves).
    pub async fn scrape(&self) -> String {
        operator::scrape(self.operator().metrics)
            .await
            .unwrap_or_default()
    }

    /// blocksight_reconciliations_total from the operator's /metrics (0 until it serves).
    pub async fn reconciliations(&self) -> f64 {
        match operator::scrape(self.operator().metrics).await {
            Ok(text) => operator::metric(&text, "blocksight_reconciliations_total"),
            Err(_) => 0.0,
        }
    }
}
