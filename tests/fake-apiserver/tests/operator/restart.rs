//! BlockSights that exist when the operator starts (a restart, a new leader): every one
//! converges, and a restart over a converged cluster costs its initial lists and nothing
//! else.

use std::time::Duration;

use blocksight_fake_apiserver::convergence::CHILD_RESOURCES;
use blocksight_fake_apiserver::{Latency, Verb};

use crate::common;

const NAMES: [&str; 3] = ["one", "two", "three"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocksights_existing_at_startup_converge_and_a_restart_writes_nothing() {
    let mut h = common::fake().await;
    for name in NAMES {
        h.create(name);
    }
    // A slow list of one child kind, as on a busy API server: the BlockSights are queued
    // for reconciliation before every child cache is ready.
    h.fake.add_latency(Latency {
        verb: Some(Verb::List),
        resource: Some("statefulsets".into()),
        delay: Duration::from_millis(500),
    });
    h.start_operator(Duration::from_secs(1));
    h.wait_converged(&NAMES, Duration::from_secs(30)).await;
    h.wait_quiet(Duration::from_secs(1), Duration::from_secs(30))
        .await;

    // Restart over the converged cluster.
    let before = h.counts();
    h.start_operator(Duration::from_secs(1));
    h.wait_watching(Duration::from_secs(30)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while h.instances().await < NAMES.len() as f64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restarted operator reconciled {} of {} BlockSights",
            h.instances().await,
            NAMES.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while h.readyz().await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz is not 200 though every cache has listed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    h.wait_quiet(Duration::from_secs(1), Duration::from_secs(30))
        .await;
    // API discovery at startup (the CRD check) is not reading objects.
    let restart = h.counts().since(&before).without("discovery");
    assert_eq!(restart.writes(), 0, "writes after a restart: {restart:?}");
    // One initial list per watch, nothing read one by one. PVCs have two watches: the
    // operator's own PVC children, and the claims its StatefulSets made (volume growth).
    assert_eq!(restart.verb(Verb::Get), 0, "{restart:?}");
    for resource in CHILD_RESOURCES.iter().chain(&["blocksights", "secrets"]) {
        let watches = if *resource == "persistentvolumeclaims" {
            2
        } else {
            1
        };
        assert_eq!(
            restart.get(Verb::List, resource),
            watches,
            "{resource}: {restart:?}"
        );
    }
}
