//! An API server that accepts an apply and never answers: the reconcile fails with category
//! `timeout` after the reconcile timeout (instead of waiting for ever), reports it in status,
//! is retried with backoff rather than in a loop, and converges once the server answers
//! again, with every child and Secret written exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use blocksight_fake_apiserver::convergence::{self, CHILD_RESOURCES};
use blocksight_fake_apiserver::{Latency, Verb};
use tokio::time::Instant;

use crate::common::{self, NAMESPACE};

const TIMEOUT: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_apply_times_out_is_retried_with_backoff_and_converges_without_duplicates() {
    let mut h = common::fake().await;
    h.reconcile_timeout = TIMEOUT;
    h.start_operator(Duration::from_secs(1));
    h.wait_watching(Duration::from_secs(30)).await;
    // Far beyond the timeout: as good as never.
    h.fake.add_latency(Latency {
        verb: Some(Verb::Apply),
        resource: Some("statefulsets".into()),
        delay: Duration::from_secs(3600),
    });
    h.create("slow");

    let hung_attempts = |h: &common::Harness| -> Vec<(Duration, String)> {
        h.fake
            .arrivals()
            .into_iter()
            .filter(|a| a.verb == Verb::Apply && a.resource == "statefulsets")
            .map(|a| (a.at, a.name.unwrap_or_default()))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while hung_attempts(&h).len() < 4 {
        assert!(
            Instant::now() < deadline,
            "fewer than 4 attempts in 60 s: {:?}",
            hung_attempts(&h)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The server answers again (the requests already waiting never will).
    h.fake.clear_latency();
    let hung = hung_attempts(&h);
    let name = &hung[0].1;
    assert!(
        hung.iter().all(|(_, n)| n == name),
        "applies stop at the hung StatefulSet: {hung:?}"
    );
    // The operator's own writes are changes it is woken by: the children and credentials
    // written before the hang, then the failure's status, may each bring one prompt retry
    // (debounced). After that only the backoff (5 s, then 10 s) retries; a hot loop would
    // retry every timeout.
    let gaps: Vec<Duration> = hung.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(
        gaps.iter().filter(|g| **g < Duration::from_secs(4)).count() <= 2
            && gaps.last().is_some_and(|g| *g >= Duration::from_secs(4)),
        "retried without backoff: {gaps:?}"
    );

    let degraded = h.condition("slow", "Degraded");
    assert_eq!(
        (degraded["status"].as_str(), degraded["reason"].as_str()),
        (Some("True"), Some("Timeout")),
        "{degraded}"
    );
    let metrics = h.scrape().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("blocksight_reconcile_failures_total{category=\"timeout\"}")),
        "{metrics}"
    );

    // The next retry (after the 10 s or 20 s backoff) converges.
    h.wait_converged(&["slow"], Duration::from_secs(60)).await;
    h.wait_quiet(Duration::from_secs(1), Duration::from_secs(30))
        .await;

    let expected = h.expected("slow");
    let mut writes: BTreeMap<(Verb, String, String), Vec<u16>> = BTreeMap::new();
    for r in h.fake.requests(0) {
        if r.verb.is_write()
            && (CHILD_RESOURCES.contains(&r.resource.as_str()) || r.resource == "secrets")
        {
            writes
                .entry((r.verb, r.resource, r.name.unwrap_or_default()))
                .or_default()
                .push(r.code);
        }
    }
    let mut want: BTreeMap<(Verb, String, String), Vec<u16>> = BTreeMap::new();
    for secret in &expected.secrets {
        want.insert((Verb::Create, "secrets".into(), secret.clone()), vec![201]);
    }
    for child in &expected.children {
        want.insert(
            (Verb::Apply, child.resource.into(), child.name.clone()),
            vec![201],
        );
    }
    // The hung applies were never answered (nor performed): each write once.
    assert_eq!(writes, want, "each write once");
    let statefulset_arrivals = h
        .fake
        .arrivals()
        .into_iter()
        .filter(|a| a.verb == Verb::Apply && a.name.as_deref() == Some(name.as_str()))
        .count();
    assert!(
        statefulset_arrivals > hung.len(),
        "the hung StatefulSet was sent again once the server answered"
    );
    assert!(convergence::unexpected_children(&h.fake, NAMESPACE, "slow", &expected).is_empty());
    let degraded = h.condition("slow", "Degraded");
    assert_eq!(degraded["status"], "False", "{degraded}");
}
