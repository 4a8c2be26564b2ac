//! The operator against a failing API server: a 500 on one apply and a 409 on a create
//! (another writer won the race) are recovered from, with no duplicate object and no
//! write repeated except the one that failed.

use std::collections::BTreeMap;
use std::time::Duration;

use blocksight_fake_apiserver::convergence::{self, CHILD_RESOURCES};
use blocksight_fake_apiserver::{Fault, Verb};

use crate::common::{self, NAMESPACE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_from_a_failed_apply_and_a_lost_create_race_without_duplicates() {
    let mut h = common::fake().await;
    h.start_operator(Duration::from_secs(1));
    h.wait_watching(Duration::from_secs(30)).await;
    h.fake
        .inject(Fault::once(Verb::Apply, "statefulsets", 500).named("delta-bitcoind"));
    // The Secret is created (by "another replica") but this request hears 409.
    h.fake.inject(
        Fault::once(Verb::Create, "secrets", 409)
            .named("delta-redis-credentials")
            .committed(),
    );
    h.create("delta");
    // A retry comes after at most 5 s (the operator's backoff), sooner when a watch event
    // of another child triggers a reconcile.
    h.wait_converged(&["delta"], Duration::from_secs(60)).await;
    h.wait_quiet(Duration::from_secs(1), Duration::from_secs(30))
        .await;
    assert!(
        h.fake.pending_faults().is_empty(),
        "both faults were hit: {:?}",
        h.fake.pending_faults()
    );

    let expected = h.expected("delta");
    assert!(expected.secrets.contains("delta-redis-credentials"));
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
        let code = if secret == "delta-redis-credentials" {
            409
        } else {
            201
        };
        want.insert((Verb::Create, "secrets".into(), secret.clone()), vec![code]);
    }
    for child in &expected.children {
        let codes = if child.name == "delta-bitcoind" && child.resource == "statefulsets" {
            // Failed before it was performed: the retry creates it.
            vec![500, 201]
        } else {
            vec![201]
        };
        want.insert(
            (Verb::Apply, child.resource.into(), child.name.clone()),
            codes,
        );
    }
    assert_eq!(
        writes, want,
        "each write once, the failed apply retried once"
    );
    assert!(convergence::unexpected_children(&h.fake, NAMESPACE, "delta", &expected).is_empty());

    // Recovered: not degraded any more.
    let degraded = h.condition("delta", "Degraded");
    assert_eq!(degraded["status"], "False", "{degraded}");
}
