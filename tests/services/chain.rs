//! The chain poll loop against a scripted bitcoind (IBD -> synced, wrong credentials,
//! silence), a fake Electrum server, and the real PostgreSQL and Redis of tests/run.sh:
//! what it publishes, when it asks for a reconcile, the metrics, and the conditions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blocksight_operator::chain::Observation;
use blocksight_operator::chain::poller::{PollSettings, Poller, PostgresPlan, ProbePlan};
use blocksight_operator::crd::ConditionType;
use blocksight_operator::crd::Network;
use blocksight_operator::metrics::Metrics;
use blocksight_testkit::fakes::SilentServer;
use blocksight_testkit::fakes::bitcoind::{Chain, FakeBitcoind, State};
use blocksight_testkit::fakes::electrum::{FakeElectrum, Tip};
use blocksight_testkit::fakes::services::{self, unique_name};

struct Setup {
    poller: Poller,
    metrics: Arc<Metrics>,
    triggers: Arc<Mutex<Vec<(String, String)>>>,
    exists: Arc<AtomicBool>,
    key: (String, String),
}

/// host:port and password of a service URL such as `postgres://user:pw@127.0.0.1:5432/db`.
fn host_and_password(url: &str) -> (String, String) {
    let rest = url.split("://").nth(1).unwrap();
    let (userinfo, host) = rest.split_once('@').unwrap();
    let password = userinfo.split_once(':').map(|(_, p)| p).unwrap_or_default();
    (
        host.split('/').next().unwrap().to_owned(),
        password.to_owned(),
    )
}

fn start_setup(
    bitcoind: &FakeBitcoind,
    rpc_password: &str,
    electrs: Option<String>,
    postgres_url: &str,
    redis_url: &str,
) -> (Setup, ProbePlan) {
    let name = unique_name("bs");
    let (pg_host, pg_password) = host_and_password(postgres_url);
    let (redis_host, redis_password) = host_and_password(redis_url);
    let secrets: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::from([
        (
            "rpc".to_owned(),
            BTreeMap::from([
                ("rpc-user".to_owned(), bitcoind.user.clone()),
                ("rpc-password".to_owned(), rpc_password.to_owned()),
            ]),
        ),
        (
            "postgres".to_owned(),
            BTreeMap::from([
                ("superuser-password".to_owned(), pg_password),
                ("app-user".to_owned(), unique_name("app")),
                ("app-password".to_owned(), "app-Password-1".to_owned()),
                ("readonly-user".to_owned(), unique_name("ro")),
                ("readonly-password".to_owned(), "ro-Password-1".to_owned()),
            ]),
        ),
        (
            "redis".to_owned(),
            BTreeMap::from([("password".to_owned(), redis_password)]),
        ),
    ]);
    let plan = ProbePlan {
        namespace: "ns".into(),
        name: name.clone(),
        network: Network::Regtest,
        bitcoind_url: bitcoind.url.clone(),
        rpc_secret: "rpc".into(),
        electrs_addr: electrs,
        postgres: PostgresPlan::InCluster {
            host_port: pg_host,
            database: unique_name("db"),
            secret: "postgres".into(),
        },
        redis_addr: redis_host,
        redis_secret: "redis".into(),
        rotation: None,
    };
    let metrics = Arc::new(Metrics::new());
    let triggers = Arc::new(Mutex::new(Vec::new()));
    let exists = Arc::new(AtomicBool::new(true));
    let poller = {
        let (triggers, exists) = (triggers.clone(), exists.clone());
        Poller::new(
            PollSettings {
                interval: Duration::from_millis(100),
                timeout: Duration::from_secs(2),
                ibd_publish_interval: Duration::from_secs(3600),
                max_concurrent_rounds: 4,
            },
            Arc::new(move |_ns, name| {
                let data = secrets.get(&name).cloned();
                Box::pin(async move { data })
            }),
            Arc::new(move |_| exists.load(Ordering::SeqCst)),
            Arc::new(move |key| triggers.lock().unwrap().push(key.clone())),
            metrics.clone(),
        )
    };
    (
        Setup {
            poller,
            metrics,
            triggers,
            exists,
            key: ("ns".into(), name),
        },
        plan,
    )
}

async fn wait_for(setup: &Setup, what: &str, check: impl Fn(&Observation) -> bool) -> Observation {
    for _ in 0..150 {
        if let Some(o) = setup.poller.observation(&setup.key)
            && check(&o)
        {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "timed out waiting for {what}: {:?}",
        setup.poller.observation(&setup.key)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ibd_to_synced_publishes_only_meaningful_changes_and_exports_metrics() {
    let (Some(pg), Some(redis)) = (services::postgres_url(), services::redis_url()) else {
        return;
    };
    let mut states = vec![
        State::Chain(Chain::ibd(100, 1000, 0.1)),
        State::Chain(Chain::ibd(400, 1000, 0.4)),
    ];
    states.extend(std::iter::repeat_n(State::Chain(Chain::synced(1000)), 3));
    let bitcoind = FakeBitcoind::start(states).await;
    let electrum = FakeElectrum::start(Tip::Height(999)).await;
    let password = bitcoind.password.clone();
    let (setup, plan) = start_setup(
        &bitcoind,
        &password,
        Some(electrum.addr.clone()),
        &pg,
        &redis,
    );
    setup.poller.ensure(plan.clone());
    setup.poller.ensure(plan); // the same plan again: still one loop
    assert_eq!(setup.poller.loops(), 1);

    let observation = wait_for(&setup, "the chain to sync", Observation::chain_synced).await;
    assert!(
        observation.database_ready(),
        "bootstrapped and reachable: {:?}",
        observation.postgres
    );
    assert!(observation.cache_ready());
    assert_eq!(observation.index_lag(), Some(1));
    assert!(
        observation.index_synced(),
        "one block behind is within tolerance"
    );

    // Published: the first poll, then IBD ending. The second IBD poll (400 of 1000) moved
    // only progress, which waits for the IBD publish interval; synced polls change nothing.
    // Wait for the polls (not a fixed time: a loaded machine polls later, not less).
    let polls = || {
        bitcoind
            .methods()
            .iter()
            .filter(|m| *m == "getblockchaininfo")
            .count()
    };
    for _ in 0..200 {
        if polls() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(polls() >= 5, "kept polling: {} polls", polls());
    let triggers = setup.triggers.lock().unwrap().clone();
    assert_eq!(triggers.len(), 2, "{triggers:?}");

    let text = setup.metrics.encode();
    let labels = format!("namespace=\"ns\",blocksight=\"{}\"", setup.key.1);
    for expected in [
        format!("blocksight_chain_blocks{{{labels},network=\"regtest\"}} 1000"),
        format!("blocksight_chain_initial_block_download{{{labels},network=\"regtest\"}} 0"),
        format!("blocksight_chain_peers{{{labels},network=\"regtest\"}} 10"),
        format!("blocksight_electrs_lag_blocks{{{labels}}} 1"),
        format!("blocksight_probe_up{{{labels},service=\"bitcoind\"}} 1"),
        format!("blocksight_probe_up{{{labels},service=\"postgres\"}} 1"),
        format!("blocksight_probe_up{{{labels},service=\"redis\"}} 1"),
        format!("blocksight_probe_up{{{labels},service=\"electrs\"}} 1"),
    ] {
        assert!(text.contains(&expected), "missing {expected} in\n{text}");
    }
    assert!(text.contains(&format!(
        "blocksight_probe_duration_seconds_count{{{labels},service=\"bitcoind\"}}"
    )));

    // The BlockSight is deleted: its loop stops and its series go.
    setup.exists.store(false, Ordering::SeqCst);
    for _ in 0..100 {
        if setup.poller.observation(&setup.key).is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(setup.poller.observation(&setup.key).is_none());
    assert!(
        !setup
            .metrics
            .encode()
            .contains(&format!("blocksight_chain_blocks{{{labels}"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_and_silence_make_the_chain_condition_unknown_with_the_error() {
    let (Some(pg), Some(redis)) = (services::postgres_url(), services::redis_url()) else {
        return;
    };
    let bitcoind = FakeBitcoind::start(vec![State::Chain(Chain::synced(10))]).await;
    let (setup, plan) = start_setup(&bitcoind, "not-the-password", None, &pg, &redis);
    setup.poller.ensure(plan);
    let observation = wait_for(&setup, "bitcoind unreachable", |o| o.bitcoind.unreachable()).await;
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::from_second(0).unwrap(),
    );
    let conditions = observation.conditions(Some(1), &now);
    let chain = conditions
        .iter()
        .find(|c| c.type_ == ConditionType::ChainSynced.as_str())
        .unwrap();
    assert_eq!(
        (chain.status.as_str(), chain.reason.as_str()),
        ("Unknown", "Unreachable")
    );
    assert!(chain.message.contains("auth"), "{}", chain.message);
    assert!(
        !chain.message.contains("not-the-password"),
        "no secret in conditions"
    );
    let errors = format!(
        "blocksight_probe_errors_total{{namespace=\"ns\",blocksight=\"{}\",service=\"bitcoind\"}}",
        setup.key.1
    );
    assert!(
        setup
            .metrics
            .encode()
            .lines()
            .any(|l| l.starts_with(&errors)),
        "probe errors counted"
    );
    setup.poller.stop(&setup.key);

    let silent = SilentServer::start().await;
    let mut dead = FakeBitcoind::start(vec![State::Silent]).await;
    dead.url = format!("http://{}", silent.addr);
    let password = dead.password.clone();
    let (setup, plan) = start_setup(&dead, &password, None, &pg, &redis);
    setup.poller.ensure(plan);
    let observation = wait_for(&setup, "a timeout", |o| {
        o.bitcoind
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("timeout"))
    })
    .await;
    assert!(
        observation.cache_ready(),
        "other services are unaffected by a silent bitcoind"
    );
    setup.poller.stop(&setup.key);
}
