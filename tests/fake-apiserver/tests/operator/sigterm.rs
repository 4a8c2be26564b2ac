//! SIGTERM in the middle of a reconcile, to the real `blocksight` binary (as Kubernetes
//! stops a pod), against the fake API server.
//!
//! A clean shutdown, as asserted here:
//! - the process exits 0 within 20 s and its log says it shut down;
//! - the reconcile in flight at the signal runs to its end: every request the process sent
//!   was answered (none abandoned mid-flight), every child of that BlockSight was written
//!   exactly once and its status was written;
//! - no new reconcile starts after the signal: a BlockSight created after it gets nothing,
//!   and the only requests after the signal are that reconcile's writes, its Events, and the
//!   Lease's release (no list, get or watch of anything else);
//! - the leader Lease is released, so a standby takes over at once rather than when the
//!   Lease expires (30 s);
//! - a second operator then converges both BlockSights without writing any child twice.
//!
//! Needs the built binary (`cargo build --bin blocksight`; tests/run.sh builds it first).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use blocksight_fake_apiserver::convergence::{self, CHILD_RESOURCES, Expected};
use blocksight_fake_apiserver::operator::{self, regtest_blocksight};
use blocksight_fake_apiserver::{Config, FakeApiServer, Latency, Verb};
use blocksight_operator::desired::BuildSettings;
use tokio::time::Instant;

use crate::common;

const NAMESPACE: &str = "default";
const LEASE: &str = "blocksight-operator";

/// The operator binary: $BLOCKSIGHT_BIN (tests/run.sh sets it), else the workspace's debug
/// build.
fn binary() -> PathBuf {
    let path = std::env::var_os("BLOCKSIGHT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/blocksight")
        });
    assert!(
        path.is_file(),
        "{} does not exist: build the operator first (cargo build --bin blocksight; \
         tests/run.sh builds everything before running the tests) or set BLOCKSIGHT_BIN",
        path.display()
    );
    path
}

/// One `blocksight run` process.
struct Process {
    child: tokio::process::Child,
    log: PathBuf,
}

impl Process {
    fn start(kubeconfig: &Path, identity: &str, scratch: &Path, elect: bool) -> Process {
        let metrics: SocketAddr = operator::free_local_addr().expect("a free port");
        let log = scratch.join(format!("{identity}.log"));
        let child = tokio::process::Command::new(binary())
            .args([
                "run",
                &format!("--leader-election={elect}"),
                &format!("--lease-name={LEASE}"),
                &format!("--lease-namespace={NAMESPACE}"),
                &format!("--identity={identity}"),
                "--no-probes",
                // Short, so a reconcile queued for later would surely be due during shutdown.
                "--resync-interval=1s",
                "--metrics-addr",
                &metrics.to_string(),
            ])
            .env("KUBECONFIG", kubeconfig)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .kill_on_drop(true)
            .spawn()
            .expect("the operator starts");
        Process { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> i32 {
        self.child.id().expect("not reaped yet") as i32
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("the operator exited ({status}):\n{}", self.log());
        }
    }

    async fn sigterm(&mut self) {
        // SAFETY: signalling our own child, not reaped yet (it is running).
        let sent = unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        assert_eq!(sent, 0, "kill(SIGTERM)");
    }

    /// Wait until the log has a line containing `text`.
    async fn wait_log(&mut self, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(text) {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "no {text:?} in the log after {timeout:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn lease_holder(fake: &FakeApiServer) -> Option<String> {
    let lease = fake.get("leases", NAMESPACE, LEASE)?;
    lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
}

fn expected(fake: &FakeApiServer, name: &str) -> Expected {
    let bs = fake
        .get("blocksights", NAMESPACE, name)
        .expect("the BlockSight exists");
    convergence::expected(&bs, &BuildSettings::default()).expect("valid")
}

/// Whether a write (create, apply, patch, update, delete) is of `name`'s children or
/// credentials (all named `<name>-...`).
fn is_child_write(resource: &str, object: Option<&str>, name: &str) -> bool {
    (CHILD_RESOURCES.contains(&resource) || resource == "secrets")
        && object.is_some_and(|o| o.starts_with(&format!("{name}-")))
}

/// The codes of every write of `name`'s children and credentials, by (verb, resource, name).
fn child_writes(fake: &FakeApiServer, name: &str) -> BTreeMap<(Verb, String, String), Vec<u16>> {
    let mut writes: BTreeMap<_, Vec<u16>> = BTreeMap::new();
    for r in fake.requests(0) {
        if r.verb.is_write() && is_child_write(&r.resource, r.name.as_deref(), name) {
            writes
                .entry((r.verb, r.resource, r.name.unwrap_or_default()))
                .or_default()
                .push(r.code);
        }
    }
    writes
}

/// Each desired child applied once (201) and each credentials Secret created once (201).
fn written_once(expected: &Expected) -> BTreeMap<(Verb, String, String), Vec<u16>> {
    let mut want = BTreeMap::new();
    for secret in &expected.secrets {
        want.insert((Verb::Create, "secrets".into(), secret.clone()), vec![201]);
    }
    for child in &expected.children {
        want.insert(
            (Verb::Apply, child.resource.into(), child.name.clone()),
            vec![201],
        );
    }
    want
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_reconcile_finishes_it_starts_nothing_and_releases_the_lease() {
    let _one_at_a_time = common::one_at_a_time().await;
    let binary = binary();
    let fake = FakeApiServer::start(Config {
        kubelet: Some(Duration::from_millis(50)),
        ..Config::default()
    })
    .await
    .expect("fake starts");
    let scratch = std::env::temp_dir().join(format!(
        "blocksight-sigterm-{}-{}",
        std::process::id(),
        fake.address().port()
    ));
    std::fs::create_dir_all(&scratch).unwrap();
    let kubeconfig = scratch.join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig).unwrap();

    let mut first = Process::start(&kubeconfig, "first", &scratch, true);
    let deadline = Instant::now() + Duration::from_secs(30);
    while lease_holder(&fake).as_deref() != Some("first") {
        first.assert_running();
        assert!(Instant::now() < deadline, "{} never led", binary.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first
        .wait_log("starting the controller", Duration::from_secs(30))
        .await;
    // Slow StatefulSet applies (five in the example): the reconcile is surely in flight
    // when the signal comes, and still has several seconds of work.
    fake.add_latency(Latency {
        verb: Some(Verb::Apply),
        resource: Some("statefulsets".into()),
        delay: Duration::from_millis(1000),
    });
    fake.create("blocksights", NAMESPACE, regtest_blocksight("first"))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let in_flight = loop {
        if let Some(arrival) = fake
            .arrivals()
            .into_iter()
            .find(|a| a.verb == Verb::Apply && a.resource == "statefulsets")
        {
            break arrival;
        }
        first.assert_running();
        assert!(Instant::now() < deadline, "no StatefulSet apply arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    first.sigterm().await;
    let signalled = fake.elapsed();
    let arrived_before_signal = fake.arrivals().len();
    first
        .wait_log("SIGTERM; shutting down", Duration::from_secs(5))
        .await;
    // Created after the controller was told to stop: must not be reconciled.
    fake.create("blocksights", NAMESPACE, regtest_blocksight("late"))
        .unwrap();
    first.assert_running();

    let status = tokio::time::timeout(Duration::from_secs(20), first.child.wait())
        .await
        .unwrap_or_else(|_| panic!("no exit within 20 s of SIGTERM:\n{}", first.log()))
        .expect("wait");
    let log = first.log();
    assert_eq!(status.code(), Some(0), "exit status {status}:\n{log}");
    for line in [
        "SIGTERM; shutting down",
        "controller stopped",
        "leader Lease released",
        "shut down",
    ] {
        assert!(log.contains(line), "no {line:?} in the log:\n{log}");
    }

    // Nothing abandoned: every request that reached the fake was answered.
    let arrivals = fake.arrivals();
    let answered: Vec<_> = fake
        .requests(0)
        .into_iter()
        .filter(|r| r.resource != "discovery")
        .collect();
    assert_eq!(
        arrivals.len(),
        answered.len(),
        "requests cut off by the exit: {:?}",
        &arrivals[answered.len().min(arrivals.len())..]
    );
    let in_flight_answer = answered
        .iter()
        .find(|r| {
            r.verb == in_flight.verb && r.resource == in_flight.resource && r.at == in_flight.at
        })
        .expect("the in-flight apply was answered");
    assert_eq!(
        in_flight_answer.code, 201,
        "the in-flight apply completed: {in_flight_answer:?}"
    );

    // The in-flight reconcile ran to its end, each write once, its status written.
    let first_expected = expected(&fake, "first");
    assert_eq!(
        child_writes(&fake, "first"),
        written_once(&first_expected),
        "every child of the in-flight reconcile written exactly once"
    );
    let bs = fake.get("blocksights", NAMESPACE, "first").unwrap();
    assert_eq!(
        bs["status"]["observedGeneration"], bs["metadata"]["generation"],
        "the in-flight reconcile wrote its status: {}",
        bs["status"]
    );

    // After the signal: that reconcile's writes, Events, the Lease; nothing started anew.
    for arrival in &arrivals[arrived_before_signal..] {
        let finishing_first = arrival.verb.is_write()
            && (is_child_write(&arrival.resource, arrival.name.as_deref(), "first")
                || (arrival.resource == "blocksights/status"
                    && arrival.name.as_deref() == Some("first"))
                || arrival.resource == "events");
        let releasing = arrival.resource == "leases";
        assert!(
            finishing_first || releasing,
            "a request after SIGTERM (at {signalled:?}) that the in-flight reconcile does not \
             make: {arrival:?}"
        );
    }
    assert!(
        child_writes(&fake, "late").is_empty(),
        "a BlockSight created after SIGTERM was reconciled: {:?}",
        child_writes(&fake, "late")
    );
    let late = fake.get("blocksights", NAMESPACE, "late").unwrap();
    assert!(late.get("status").is_none(), "{late}");
    assert_eq!(lease_holder(&fake), None, "the Lease was released");

    // A new operator converges both, writing no child twice. The Lease takeover itself is
    // the real API server's business (server-side apply ownership of a released Lease, which
    // this fake does not model for two field managers): tests/e2e/leader.rs measures it on
    // the real control plane. So the second operator runs without leader election here.
    fake.clear_latency();
    let mut second = Process::start(&kubeconfig, "second", &scratch, false);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        second.assert_running();
        let pending: Vec<String> = ["first", "late"]
            .iter()
            .filter_map(|name| {
                convergence::check(&fake, NAMESPACE, name, &expected(&fake, name)).err()
            })
            .collect();
        if pending.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not converged: {pending:#?}\n{}",
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the second operator settle (status writes as workloads turn ready).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        child_writes(&fake, "first"),
        written_once(&first_expected),
        "the second operator rewrote children of the first BlockSight"
    );
    assert_eq!(
        child_writes(&fake, "late"),
        written_once(&expected(&fake, "late"))
    );
    for name in ["first", "late"] {
        assert!(
            convergence::unexpected_children(&fake, NAMESPACE, name, &expected(&fake, name))
                .is_empty()
        );
    }

    second.sigterm().await;
    let status = tokio::time::timeout(Duration::from_secs(20), second.child.wait())
        .await
        .expect("the second operator exits")
        .expect("wait");
    assert_eq!(status.code(), Some(0), "{}", second.log());
    assert_eq!(lease_holder(&fake), None);
    let _ = std::fs::remove_dir_all(&scratch);
}
