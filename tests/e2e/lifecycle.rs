//! A BlockSight's life on the real server: hand edits repaired, deletion through the real
//! garbage collector with the data kept or removed as deletionPolicy says, adoption by a
//! recreated BlockSight.

use std::collections::BTreeMap;
use std::time::Duration;

use blocksight_operator::crd::BlockSight;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams};

use crate::converge::{wait_for_children, wait_for_observed, wait_for_workloads};
use crate::kit::{self, Operator};

/// Name → uid of the namespace's PVCs.
async fn volumes(client: &Client, ns: &str) -> BTreeMap<String, String> {
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| (p.metadata.name.unwrap(), p.metadata.uid.unwrap()))
        .collect()
}

/// Name → uid of the Secrets the operator generated.
async fn credentials(client: &Client, ns: &str) -> BTreeMap<String, String> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=blocksight-operator"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| (s.metadata.name.unwrap(), s.metadata.uid.unwrap()))
        .collect()
}

async fn workloads_gone(client: &Client, ns: &str) {
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    kit::eventually(
        "the garbage collector removing the children",
        Duration::from_secs(90),
        || async {
            let sts = statefulsets.list(&ListParams::default()).await.ok()?;
            let cms = config_maps
                .list(
                    &ListParams::default()
                        .labels("app.kubernetes.io/managed-by=blocksight-operator"),
                )
                .await
                .ok()?;
            (sts.items.is_empty() && cms.items.is_empty()).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_retain_the_data_outlives_the_blocksight_and_a_new_one_adopts_it() {
    let client = kit::admin().await;
    let ns = kit::namespace(&client, "retain").await;
    let _operator = Operator::start(&ns);
    let yaml = crate::REGTEST.replace("deletionPolicy: Delete", "deletionPolicy: Retain");
    assert_ne!(yaml, crate::REGTEST);
    crate::apply_blocksight(&client, &ns, &yaml).await;
    wait_for_children(&client, &ns, &yaml).await;
    wait_for_workloads(&client, &ns).await;
    let pvcs = volumes(&client, &ns).await;
    let secrets = credentials(&client, &ns).await;
    assert!(pvcs.keys().any(|n| n.contains("bitcoind")), "{pvcs:?}");
    assert!(!secrets.is_empty());

    let blocksights: Api<BlockSight> = Api::namespaced(client.clone(), &ns);
    blocksights
        .delete("dev", &DeleteParams::default())
        .await
        .unwrap();
    workloads_gone(&client, &ns).await;
    // Give the PVC controller time to act, were it to delete anything.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(volumes(&client, &ns).await, pvcs, "volumes kept");
    assert_eq!(credentials(&client, &ns).await, secrets, "credentials kept");

    crate::apply_blocksight(&client, &ns, &yaml).await;
    wait_for_children(&client, &ns, &yaml).await;
    wait_for_workloads(&client, &ns).await;
    assert_eq!(
        volumes(&client, &ns).await,
        pvcs,
        "the new BlockSight runs on the same volumes"
    );
    assert_eq!(
        credentials(&client, &ns).await,
        secrets,
        "and the same credentials"
    );
    kit::delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_delete_volumes_and_credentials_go_with_the_blocksight() {
    let client = kit::admin().await;
    let ns = kit::namespace(&client, "delete").await;
    let _operator = Operator::start(&ns);
    crate::apply_blocksight(&client, &ns, crate::REGTEST).await;
    wait_for_children(&client, &ns, crate::REGTEST).await;
    wait_for_workloads(&client, &ns).await;
    assert!(!volumes(&client, &ns).await.is_empty());
    assert!(!credentials(&client, &ns).await.is_empty());
    Api::<BlockSight>::namespaced(client.clone(), &ns)
        .delete("dev", &DeleteParams::default())
        .await
        .unwrap();
    workloads_gone(&client, &ns).await;
    kit::eventually(
        "volumes and credentials deleted",
        Duration::from_secs(90),
        || async {
            (volumes(&client, &ns).await.is_empty() && credentials(&client, &ns).await.is_empty())
                .then_some(())
        },
    )
    .await;
    kit::delete_namespace(&client, &ns).await;
}

/// `kubectl patch configmap NAME --type=TYPE -p PATCH`, as a person would edit it.
fn patch_by_hand(ns: &str, name: &str, kind_of_patch: &str, patch: serde_json::Value) {
    let (ok, out) = kit::kubectl(
        &[
            "-n",
            ns,
            "patch",
            "configmap",
            name,
            &format!("--type={kind_of_patch}"),
            "-p",
            &patch.to_string(),
        ],
        None,
    );
    assert!(ok, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_edits_are_repaired() {
    let client = kit::admin().await;
    let ns = kit::namespace(&client, "drift").await;
    let _operator = Operator::start(&ns);
    crate::apply_blocksight(&client, &ns, crate::REGTEST).await;
    wait_for_children(&client, &ns, crate::REGTEST).await;
    wait_for_workloads(&client, &ns).await;
    wait_for_observed(&client, &ns, "dev").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let name = "dev-bitcoind-config";
    let original = config_maps.get(name).await.unwrap().data.unwrap();
    let (key, value) = original.iter().next().unwrap();

    // A value changed by another field manager (kubectl patch, kubectl edit).
    patch_by_hand(
        &ns,
        name,
        "merge",
        serde_json::json!({"data": {key: "edited by hand"}}),
    );
    kit::eventually(
        "the edited value restored",
        Duration::from_secs(60),
        || async {
            let data = config_maps.get(name).await.ok()?.data?;
            (data.get(key) == Some(value)).then_some(())
        },
    )
    .await;

    // A field deleted by hand: it leaves every manager's managedFields, the operator's too.
    let remove = serde_json::json!([{"op": "remove", "path": format!("/data/{key}")}]);
    patch_by_hand(&ns, name, "json", remove);
    kit::eventually(
        "the deleted field restored",
        Duration::from_secs(60),
        || async {
            let data = config_maps.get(name).await.ok()?.data?;
            (data.get(key) == Some(value)).then_some(())
        },
    )
    .await;

    // `kubectl scale` of a workload whose replicas the operator sets (through /scale): the
    // spec wins, as docs/deploy.md says.
    let (ok, out) = kit::kubectl(
        &[
            "-n",
            &ns,
            "scale",
            "statefulset",
            "dev-bitcoind",
            "--replicas=3",
        ],
        None,
    );
    assert!(ok, "{out}");
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    kit::eventually(
        "kubectl scale reverted",
        Duration::from_secs(60),
        || async {
            let sts = statefulsets.get("dev-bitcoind").await.ok()?;
            (sts.spec.replicas == Some(1)).then_some(())
        },
    )
    .await;

    // A label added by someone else on an object the operator owns is theirs to keep.
    let (ok, out) = kit::kubectl(
        &["-n", &ns, "label", "configmap", name, "team=payments"],
        None,
    );
    assert!(ok, "{out}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let labels = config_maps
        .get(name)
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap();
    assert_eq!(labels.get("team").map(String::as_str), Some("payments"));

    // An edit that sets one of our fields to our very value, with a field of its own: after
    // at most one apply the shared field is left shared, and the operator rests (before, it
    // re-applied at every resync).
    let shared = serde_json::json!({"data": {key: value, "extra.conf": "# theirs"}});
    patch_by_hand(&ns, name, "merge", shared);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let audit = kit::AuditLog::mark();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let writes: Vec<String> = audit
        .since(kit::OPERATOR_USER, &ns)
        .into_iter()
        .filter(|r| r.is_write() && r.object_ref.as_ref().is_some_and(|o| o.name == name))
        .map(|r| r.line())
        .collect();
    assert!(
        writes.is_empty(),
        "writes at rest over a shared field: {writes:?}"
    );
    kit::delete_namespace(&client, &ns).await;
}
