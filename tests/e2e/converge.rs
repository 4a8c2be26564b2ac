//! The examples converge on the real server, rest at zero requests, and a spec change
//! rewrites only the children whose content changed (counted in the API server's audit log).

use std::collections::BTreeSet;
use std::time::Duration;

use blocksight_operator::crd::BlockSight;
use blocksight_operator::desired::ChildKind;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::Client;
use kube::api::Api;

use crate::kit::{self, AuditLog, OPERATOR_USER, Operator};

/// Waits until every child `render` shows for `yaml` exists on the server.
pub async fn wait_for_children(client: &Client, ns: &str, yaml: &str) {
    let children = crate::desired_children(yaml, ns);
    assert!(children.len() > 10, "the example has its children");
    for child in &children {
        kit::eventually(
            &format!("{} {}", child.kind(), child.name()),
            Duration::from_secs(90),
            || async {
                crate::get_child(client, ns, child.kind(), child.name())
                    .await
                    .map(|_| ())
            },
        )
        .await;
    }
}

/// Waits until every StatefulSet and Deployment of the namespace reports all its replicas
/// ready, through the real workload controllers and kwok's pods.
pub async fn wait_for_workloads(client: &Client, ns: &str) {
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    kit::eventually("every workload ready", Duration::from_secs(120), || async {
        let sts = statefulsets.list(&Default::default()).await.ok()?;
        let deps = deployments.list(&Default::default()).await.ok()?;
        let sts_ready = sts.items.iter().all(|s| {
            let want = s.spec.replicas.unwrap_or(1);
            let status = s.status.clone().unwrap_or_default();
            status.ready_replicas.unwrap_or(0) == want
                && status.observed_generation == s.metadata.generation
        });
        let deps_ready = deps.items.iter().all(|d| {
            let want = d.spec.replicas.unwrap_or(1);
            let status = d.status.clone().unwrap_or_default();
            status.ready_replicas.unwrap_or(0) == want
                && status.observed_generation == d.metadata.generation
        });
        (!sts.items.is_empty() && sts_ready && deps_ready).then_some(())
    })
    .await;
}

/// Waits until the status describes the current generation; returns it.
pub async fn wait_for_observed(client: &Client, ns: &str, name: &str) -> BlockSight {
    let api: Api<BlockSight> = Api::namespaced(client.clone(), ns);
    kit::eventually(
        "status for the current generation",
        Duration::from_secs(90),
        || async {
            let bs = api.get(name).await.ok()?;
            let status = bs.status.as_ref()?;
            (status.observed_generation == bs.metadata.generation
                && !status.conditions.is_empty()
                && status
                    .conditions
                    .iter()
                    .all(|c| c.observed_generation == bs.metadata.generation))
            .then_some(bs)
        },
    )
    .await
}

/// Waits until the BlockSight's resourceVersion has not moved for 15 s (three probe
/// intervals of the test operators): what follows is the operator at rest.
pub async fn wait_for_rest(client: &Client, ns: &str, name: &str) {
    let api: Api<BlockSight> = Api::namespaced(client.clone(), ns);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let (mut last, mut since) = (None, std::time::Instant::now());
    loop {
        let rv = api.get(name).await.unwrap().metadata.resource_version;
        if rv != last {
            (last, since) = (rv, std::time::Instant::now());
        } else if since.elapsed() >= Duration::from_secs(15) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the BlockSight never came to rest"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn example_converges(yaml: &str, prefix: &str) {
    let client = kit::admin().await;
    let ns = kit::namespace(&client, prefix).await;
    let mut operator = Operator::start(&ns);
    let bs = crate::apply_blocksight(&client, &ns, yaml).await;
    let name = bs.metadata.name.clone().unwrap();
    wait_for_children(&client, &ns, yaml).await;
    wait_for_workloads(&client, &ns).await;
    wait_for_observed(&client, &ns, &name).await;
    // Every workload reported ready by the real controllers shows in status.
    let api: Api<BlockSight> = Api::namespaced(client.clone(), &ns);
    let bs = kit::eventually(
        "status showing every component ready",
        Duration::from_secs(60),
        || async {
            let bs = api.get(&name).await.ok()?;
            let status = bs.status.as_ref()?;
            (status.observed_generation == bs.metadata.generation
                && status.components.len() >= 5
                && status
                    .components
                    .values()
                    .all(|c| c.ready_replicas == c.desired_replicas))
            .then_some(bs)
        },
    )
    .await;
    let status = bs.status.clone().unwrap();
    // The chain probes have no bitcoind to reach: status says so instead of guessing.
    let condition = |t: &str| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == t)
            .unwrap_or_else(|| panic!("condition {t} in {:?}", status.conditions))
            .clone()
    };
    let ready = condition("Ready");
    assert_eq!(ready.observed_generation, bs.metadata.generation);
    // Printer columns, as `kubectl get bs` shows them.
    let (ok, table) = kit::kubectl(&["-n", &ns, "get", "bs", &name], None);
    assert!(ok, "{table}");
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "NETWORK", "PHASE", "BLOCKS", "SYNC", "AGE"],
        "{table}"
    );
    let row = table.lines().nth(1).unwrap();
    assert!(row.starts_with(&name), "{table}");
    assert!(
        row.contains(&bs.spec.network.to_string()),
        "the network column: {table}"
    );
    let phase = format!("{:?}", status.phase.expect("a phase"));
    assert!(row.contains(&phase), "the phase column {phase}: {table}");

    // At rest: over several resyncs, no write and no GET/LIST beyond the watches. First
    // let the probes' verdict settle (a service unreachable for 3 polls is a transition).
    wait_for_rest(&client, &ns, &name).await;
    let audit = AuditLog::mark();
    tokio::time::sleep(Duration::from_secs(15)).await;
    let requests = audit.since(OPERATOR_USER, &ns);
    let busy: Vec<String> = requests
        .iter()
        .filter(|r| r.is_write() || r.is_read())
        .map(|r| r.line())
        .collect();
    assert!(
        busy.is_empty(),
        "at rest the operator wrote or read: {busy:?}"
    );
    assert!(operator.is_running(), "{}", operator.log());
    kit::delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_regtest_example_converges_and_rests() {
    example_converges(crate::REGTEST, "regtest").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mainnet_example_converges_and_rests() {
    example_converges(crate::MAINNET, "mainnet").await;
}

/// A spec change rewrites exactly the children whose rendered content changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_change_rewrites_only_the_changed_children() {
    let client = kit::admin().await;
    let ns = kit::namespace(&client, "change").await;
    let _operator = Operator::start(&ns);
    crate::apply_blocksight(&client, &ns, crate::REGTEST).await;
    wait_for_children(&client, &ns, crate::REGTEST).await;
    wait_for_workloads(&client, &ns).await;
    wait_for_observed(&client, &ns, "dev").await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let changed_yaml = crate::REGTEST.replace("dbcache: 128", "dbcache: 256");
    assert_ne!(changed_yaml, crate::REGTEST);
    let before = crate::desired_children(crate::REGTEST, &ns);
    let after = crate::desired_children(&changed_yaml, &ns);
    let changed: BTreeSet<(String, String)> = after
        .iter()
        .filter(|a| {
            !before.iter().any(|b| {
                b.kind() == a.kind() && b.name() == a.name() && b.to_value() == a.to_value()
            })
        })
        .map(|c| (resource_of_kind(c.kind()), c.name().to_owned()))
        .collect();
    assert!(!changed.is_empty());

    let audit = AuditLog::mark();
    crate::apply_blocksight(&client, &ns, &changed_yaml).await;
    wait_for_observed(&client, &ns, "dev").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let written: BTreeSet<(String, String)> = audit
        .since(OPERATOR_USER, &ns)
        .into_iter()
        .filter(|r| r.is_write())
        .filter_map(|r| r.object_ref)
        .filter(|o| o.resource != "blocksights" && o.resource != "events")
        .map(|o| (o.resource, o.name))
        .collect();
    assert_eq!(written, changed, "children written after dbcache changed");
    kit::delete_namespace(&client, &ns).await;
}

fn resource_of_kind(kind: ChildKind) -> String {
    crate::resource_of(kind).plural
}
