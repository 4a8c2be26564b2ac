//! End-to-end tests against a real cluster (kind or k3d). They run only when
//! BLOCKSIGHT_E2E_KUBECONFIG points at a cluster's kubeconfig:
//!
//!   BLOCKSIGHT_E2E_KUBECONFIG=$HOME/.kube/kind cargo test --test e2e -- --ignored --test-threads=1
//!
//! Without it they are reported as ignored (skipped), never as passed. The operator runs in
//! this process; the cluster needs no image of it.

use std::time::Duration;

use blocksight_operator::build::BuildSettings;
use blocksight_operator::crd::BlockSight;
use blocksight_operator::run::{RunConfig, run};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Config};

const SKIP: &str = "needs a cluster: set BLOCKSIGHT_E2E_KUBECONFIG and run with --ignored";

async fn client() -> Client {
    let path = std::env::var("BLOCKSIGHT_E2E_KUBECONFIG")
        .expect("BLOCKSIGHT_E2E_KUBECONFIG is set (these tests are #[ignore]d otherwise)");
    // SAFETY: set before any thread reads the environment (the operator's client reads it too).
    unsafe { std::env::set_var("KUBECONFIG", &path) };
    Client::try_from(Config::infer().await.expect("kubeconfig")).expect("client")
}

async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn setup(client: &Client, namespace: &str) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in blocksight_operator::crd::all_crds() {
        let name = crd.metadata.name.clone().unwrap();
        crds.patch(
            &name,
            &PatchParams::apply("blocksight-e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("CRD applied");
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}})).unwrap();
    let _ = namespaces.create(&PostParams::default(), &ns).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // CRD established
}

fn operator(namespace: &str) -> tokio::task::JoinHandle<()> {
    let config = RunConfig {
        namespace: Some(namespace.to_owned()),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        leader_election: false,
        lease_name: "blocksight-e2e".into(),
        lease_namespace: namespace.into(),
        identity: "e2e".into(),
        settings: BuildSettings::default(),
        probe_interval: Duration::from_secs(10),
        resync_interval: Duration::from_secs(60),
        reconcile_timeout: blocksight_operator::reconcile::RECONCILE_TIMEOUT,
        probes: true,
    };
    tokio::spawn(async move {
        run(config).await.expect("operator ran");
    })
}

#[tokio::test]
#[ignore = "needs a cluster: set BLOCKSIGHT_E2E_KUBECONFIG and run with --ignored"]
async fn e2e_regtest_lifecycle() {
    eprintln!("e2e: {SKIP} (running: the variable is set)");
    let client = client().await;
    let ns = "blocksight-e2e";
    setup(&client, ns).await;
    let handle = operator(ns);

    let blocksights: Api<BlockSight> = Api::namespaced(client.clone(), ns);
    let bs: BlockSight = serde_yaml::from_str(include_str!("../examples/regtest.yaml")).unwrap();
    blocksights
        .patch(
            "dev",
            &PatchParams::apply("blocksight-e2e").force(),
            &Patch::Apply(&bs),
        )
        .await
        .expect("BlockSight applied");

    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    eventually(
        "the bitcoind StatefulSet",
        Duration::from_secs(60),
        || async {
            statefulsets
                .get_opt("dev-bitcoind")
                .await
                .ok()
                .flatten()
                .is_some()
        },
    )
    .await;
    eventually(
        "a status for generation 1",
        Duration::from_secs(60),
        || async {
            blocksights
                .get("dev")
                .await
                .ok()
                .and_then(|b| b.status)
                .and_then(|s| s.observed_generation)
                == Some(1)
        },
    )
    .await;

    // Steady state: nothing the operator owns changes by itself.
    let before = statefulsets
        .get("dev-bitcoind")
        .await
        .unwrap()
        .metadata
        .resource_version;
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        statefulsets
            .get("dev-bitcoind")
            .await
            .unwrap()
            .metadata
            .resource_version,
        before
    );

    // The API server enforces the CRD's CEL rules: the network cannot change.
    let change = serde_json::json!({"spec": {"network": "mainnet"}});
    let rejected = blocksights
        .patch("dev", &PatchParams::default(), &Patch::Merge(&change))
        .await;
    assert!(
        format!("{rejected:?}").contains("network is immutable"),
        "{rejected:?}"
    );

    // Disabling electrs removes its StatefulSet.
    let disable = serde_json::json!({"spec": {"electrs": {"enabled": false}}});
    blocksights
        .patch("dev", &PatchParams::default(), &Patch::Merge(&disable))
        .await
        .unwrap();
    eventually("electrs removed", Duration::from_secs(60), || async {
        statefulsets
            .get_opt("dev-electrs")
            .await
            .ok()
            .flatten()
            .is_none()
    })
    .await;

    blocksights
        .delete("dev", &DeleteParams::default())
        .await
        .unwrap();
    handle.abort();
}
