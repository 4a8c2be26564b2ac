//! Growth on the real server: bigger volumes (PVC expansion, never a changed claim template,
//! never a 422) and autoscaling handed over without dropping a serving API's replicas.

use std::time::Duration;

use blocksight_operator::crd::BlockSight;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::Api;

use crate::converge::{wait_for_children, wait_for_observed, wait_for_workloads};
use crate::kit::{self, AuditLog, OPERATOR_USER, Operator};

fn storage(pvc: &PersistentVolumeClaim) -> (Option<String>, Option<String>) {
    let request = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone());
    let capacity = pvc
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .map(|q| q.0.clone());
    (request, capacity)
}

/// Waits until PVC `name` exists and satisfies `ok`.
async fn volume_when(
    pvcs: &Api<PersistentVolumeClaim>,
    name: &str,
    what: &str,
    ok: impl Fn(&PersistentVolumeClaim) -> bool,
) -> PersistentVolumeClaim {
    kit::eventually(what, Duration::from_secs(60), || async {
        pvcs.get_opt(name).await.ok().flatten().filter(|p| ok(p))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_storage_grows_the_volumes_in_place() {
    let client = kit::admin().await;
    let ns = kit::namespace(&client, "grow").await;
    let mut operator = Operator::start(&ns);
    crate::apply_blocksight(&client, &ns, crate::REGTEST).await;
    wait_for_children(&client, &ns, crate::REGTEST).await;
    wait_for_workloads(&client, &ns).await;
    wait_for_observed(&client, &ns, "dev").await;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let pvc_name = "data-dev-bitcoind-0";
    let before = volume_when(&pvcs, pvc_name, "bitcoind's volume bound", |p| {
        storage(p).1.is_some()
    })
    .await;
    assert_eq!(storage(&before), (Some("5Gi".into()), Some("5Gi".into())));
    let sts_uid = statefulsets.get("dev-bitcoind").await.unwrap().metadata.uid;

    // The regtest default is 5Gi: ask for 8Gi.
    let audit = AuditLog::mark();
    let grown_yaml = crate::REGTEST.replace(
        "    dbcache: 128\n",
        "    dbcache: 128\n    storage: {size: 8Gi}\n",
    );
    assert_ne!(grown_yaml, crate::REGTEST);
    crate::apply_blocksight(&client, &ns, &grown_yaml).await;
    let after = volume_when(&pvcs, pvc_name, "the volume grown to 8Gi", |p| {
        storage(p) == (Some("8Gi".into()), Some("8Gi".into()))
    })
    .await;
    assert_eq!(after.metadata.uid, before.metadata.uid, "the same volume");
    assert_eq!(
        statefulsets.get("dev-bitcoind").await.unwrap().metadata.uid,
        sts_uid,
        "the StatefulSet was not recreated"
    );
    // Status reports the volume at its new size, and nothing failed.
    let bs = kit::eventually("status.volumes at 8Gi", Duration::from_secs(60), || async {
        let bs = Api::<BlockSight>::namespaced(client.clone(), &ns)
            .get("dev")
            .await
            .ok()?;
        let status = bs.status.as_ref()?;
        status
            .volumes
            .iter()
            .any(|v| {
                v.name == pvc_name
                    && v.phase == "Bound"
                    && v.capacity.as_deref() == Some("8Gi")
                    && v.requested == "8Gi"
            })
            .then_some(bs)
    })
    .await;
    let degraded = bs
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(degraded.status, "False", "{degraded:?}");
    let refused: Vec<String> = audit
        .since(OPERATOR_USER, &ns)
        .into_iter()
        .filter(|r| r.response_status.as_ref().is_some_and(|s| s.code >= 400))
        .map(|r| format!("{} -> {:?}", r.line(), r.response_status.map(|s| s.code)))
        .collect();
    assert!(refused.is_empty(), "refused requests: {refused:?}");
    // And nothing in its log: the audit log above is the server's word; this is the
    // operator's (a bare "422" would match timestamps and uids).
    let log = operator.log();
    assert!(
        !log.contains("code: 422") && !log.contains("updates to statefulset spec"),
        "a 422 in the operator's log:\n{log}"
    );
    assert!(operator.is_running());
    kit::delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enabling_autoscaling_never_drops_a_serving_api_below_its_replicas() {
    let client = kit::admin().await;
    let ns = kit::namespace(&client, "hpa").await;
    let _operator = Operator::start(&ns);
    let three = crate::REGTEST.replace("    replicas: 1\n", "    replicas: 3\n");
    assert_ne!(three, crate::REGTEST);
    crate::apply_blocksight(&client, &ns, &three).await;
    wait_for_children(&client, &ns, &three).await;
    // The API is held at zero replicas until its database answers, and nothing answers
    // here. Once it has served (replicas above zero) the gate stays open, so a hand scale
    // stands in for the first successful probe; the operator then applies its 3 replicas.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let (ok, out) = kit::kubectl(
        &["-n", &ns, "scale", "deployment", "dev-api", "--replicas=3"],
        None,
    );
    assert!(ok, "{out}");
    kit::eventually(
        "the operator applying the API's 3 replicas",
        Duration::from_secs(60),
        || async {
            let d = deployments.get("dev-api").await.ok()?;
            let owned = d.metadata.managed_fields.iter().flatten().any(|e| {
                e.manager.as_deref() == Some("blocksight-operator")
                    && e.fields_v1
                        .as_ref()
                        .and_then(|f| f.0.get("f:spec"))
                        .and_then(|s| s.get("f:replicas"))
                        .is_some()
            });
            (owned && d.spec.replicas == Some(3)).then_some(())
        },
    )
    .await;
    let autoscaled = three.replace(
        "    replicas: 3\n",
        "    replicas: 3\n    autoscaling: {enabled: true, minReplicas: 2, maxReplicas: 6}\n",
    );
    let watch_replicas = tokio::spawn({
        let deployments = deployments.clone();
        async move {
            let mut lowest = i32::MAX;
            for _ in 0..60 {
                if let Ok(d) = deployments.get("dev-api").await {
                    lowest = lowest.min(d.spec.replicas.unwrap_or(1));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            lowest
        }
    });
    let before = deployments
        .get("dev-api")
        .await
        .unwrap()
        .spec
        .replicas
        .unwrap_or(1);
    crate::apply_blocksight(&client, &ns, &autoscaled).await;
    wait_for_observed(&client, &ns, "dev").await;
    let lowest = watch_replicas.await.unwrap();
    assert!(
        lowest >= before,
        "spec.replicas dipped to {lowest} (was {before}) when autoscaling took over"
    );
    let after = deployments.get("dev-api").await.unwrap();
    let replicas = after.spec.replicas;
    assert_eq!(replicas, Some(before), "the live count is kept for the HPA");
    let owners: Vec<String> = after
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            e.fields_v1
                .as_ref()
                .and_then(|f| f.0.get("f:spec"))
                .and_then(|s| s.get("f:replicas"))
                .is_some()
        })
        .filter_map(|e| e.manager)
        .collect();
    assert!(
        !owners.iter().any(|m| m == "blocksight-operator"),
        "the operator no longer owns spec.replicas: {owners:?}"
    );
    kit::delete_namespace(&client, &ns).await;
}
