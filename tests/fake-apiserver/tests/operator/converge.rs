//! The operator against the fake: it converges, then costs the API server nothing, and a
//! spec change applies exactly the children whose content changes.

use std::collections::BTreeMap;
use std::time::Duration;

use blocksight_fake_apiserver::convergence::CHILD_RESOURCES;
use blocksight_fake_apiserver::{Subresource, Verb};
use serde_json::json;

use crate::common::{self, IDENTITY, NAMESPACE};

const NAMES: [&str; 3] = ["alpha", "beta", "gamma"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_then_costs_nothing_and_a_spec_change_applies_only_what_changed() {
    let mut h = common::fake().await;
    h.start_operator(Duration::from_secs(1));
    // Created once the operator watches (the restart case has its own test).
    h.wait_watching(Duration::from_secs(30)).await;
    for name in NAMES {
        h.create(name);
    }
    h.wait_converged(&NAMES, Duration::from_secs(60)).await;

    // Leader election ran: this replica holds the Lease.
    let lease = h
        .fake
        .get("leases", NAMESPACE, "blocksight-operator")
        .expect("the Lease exists");
    assert_eq!(lease["spec"]["holderIdentity"], IDENTITY);

    // Creation: every child applied once, every credential created once, no other write
    // to children (status writes are counted apart).
    let creation = h.counts();
    let children: usize = NAMES.iter().map(|n| h.expected(n).children.len()).sum();
    let secrets: usize = NAMES.iter().map(|n| h.expected(n).secrets.len()).sum();
    let applied: u64 = CHILD_RESOURCES
        .iter()
        .map(|r| creation.get(Verb::Apply, r))
        .sum();
    assert_eq!(applied as usize, children, "applies: {creation:?}");
    assert_eq!(creation.get(Verb::Create, "secrets") as usize, secrets);
    let wasted: Vec<_> = h
        .fake
        .requests(0)
        .into_iter()
        .filter(|r| r.verb.is_write() && r.unchanged && r.resource != "leases")
        .collect();
    assert!(wasted.is_empty(), "writes that changed nothing: {wasted:?}");

    // Steady state: several resyncs of every BlockSight, and not one request but watches.
    h.wait_quiet(Duration::from_secs(1), Duration::from_secs(30))
        .await;
    let before = h.counts();
    let reconciled_before = h.reconciliations().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let steady = h.counts().since(&before);
    let reconciled = h.reconciliations().await - reconciled_before;
    assert!(
        reconciled >= (2 * NAMES.len()) as f64,
        "the window must include resyncs: {reconciled} reconciliations"
    );
    assert_eq!(steady.writes(), 0, "writes at steady state: {steady:?}");
    assert_eq!(steady.reads(), 0, "GET/LIST at steady state: {steady:?}");

    // One spec change: exactly the children whose content changes, once each.
    let before_change = h.expected("alpha");
    let mark = h.fake.request_mark();
    h.fake
        .merge_patch(
            "blocksights",
            NAMESPACE,
            "alpha",
            &json!({"spec": {"bitcoind": {"dbcache": 256}}}),
            "kubectl-patch",
            Subresource::Main,
        )
        .expect("patched");
    let after_change = h.expected("alpha");
    let changed = after_change.changed_since(&before_change);
    assert!(
        !changed.is_empty() && changed.len() < after_change.children.len(),
        "the change must touch some children but not all: {changed:?}"
    );
    h.wait_converged(&NAMES, Duration::from_secs(30)).await;
    h.wait_quiet(Duration::from_secs(1), Duration::from_secs(30))
        .await;
    let writes: Vec<_> = h
        .fake
        .requests(mark)
        .into_iter()
        .filter(|r| r.verb.is_write() && r.resource != "leases")
        .collect();
    let mut child_writes: BTreeMap<(String, String), usize> = BTreeMap::new();
    for w in writes
        .iter()
        .filter(|w| CHILD_RESOURCES.contains(&w.resource.as_str()))
    {
        assert_eq!(w.verb, Verb::Apply, "{w:?}");
        *child_writes
            .entry((w.resource.clone(), w.name.clone().unwrap_or_default()))
            .or_default() += 1;
    }
    let expected: BTreeMap<(String, String), usize> = changed
        .iter()
        .map(|(resource, name)| (((*resource).to_owned(), name.clone()), 1))
        .collect();
    assert_eq!(child_writes, expected, "child writes after the spec change");
    let others: Vec<_> = writes
        .iter()
        .filter(|w| !CHILD_RESOURCES.contains(&w.resource.as_str()) && w.resource != "events")
        .collect();
    assert!(
        others
            .iter()
            .all(|w| w.resource == "blocksights/status" && w.name.as_deref() == Some("alpha")),
        "only alpha's status may change besides its children: {others:?}"
    );
    assert!(
        !others.is_empty(),
        "alpha's status reports the new generation"
    );

    // Deleting a BlockSight (no finalizer: reconcile never sees it again) drops its metric
    // series; the others keep theirs.
    let series = |text: &str, name: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains(&format!("blocksight=\"{name}\"")))
            .count()
    };
    let text = h.scrape().await;
    assert!(series(&text, "gamma") > 0, "gamma reports before: {text}");
    h.fake
        .delete("blocksights", NAMESPACE, "gamma")
        .expect("deleted");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = h.scrape().await;
        if series(&text, "gamma") == 0 {
            assert!(series(&text, "alpha") > 0, "alpha still reports: {text}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deleted BlockSight still reports: {}",
            text.lines()
                .filter(|l| l.contains("gamma"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
