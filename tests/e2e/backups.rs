//! BlockSightBackup and BlockSightRestore on the real server: accepted by the CRDs, and their
//! Jobs created with the operator's own RBAC (kwok runs the Job pods to completion; they
//! report no backup result, as a backup pod killed before it could would not either).

use std::time::Duration;

use blocksight_operator::crd::{BlockSightBackup, BlockSightRestore};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, ListParams, Patch, PatchParams};

use crate::converge::wait_for_children;
use crate::kit::{self, AuditLog, OPERATOR_USER, Operator};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_and_restores_get_their_jobs_and_a_status() {
    let client = kit::admin().await;
    let ns = kit::namespace(&client, "backup").await;
    let audit = AuditLog::mark();
    let _operator = Operator::start(&ns);
    crate::apply_blocksight(&client, &ns, crate::REGTEST).await;
    wait_for_children(&client, &ns, crate::REGTEST).await;

    let backups: Api<BlockSightBackup> = Api::namespaced(client.clone(), &ns);
    let backup = serde_json::json!({
        "apiVersion": "blocksight.live/v1alpha1",
        "kind": "BlockSightBackup",
        "metadata": {"name": "before-upgrade"},
        "spec": {"blockSight": "dev"}
    });
    backups
        .patch(
            "before-upgrade",
            &PatchParams::apply(crate::TEST_MANAGER),
            &Patch::Apply(&backup),
        )
        .await
        .expect("the API server accepts a BlockSightBackup");
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let job = kit::eventually(
        "the backup's Job, owned by the BlockSightBackup",
        Duration::from_secs(60),
        || async {
            jobs.list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|j| {
                    j.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.kind == "BlockSightBackup" && o.name == "before-upgrade")
                })
        },
    )
    .await;
    let phase = kit::eventually("the backup's phase", Duration::from_secs(60), || async {
        backups.get("before-upgrade").await.ok()?.status?.phase
    })
    .await;
    eprintln!(
        "backup Job {} created; backup phase {phase:?}",
        job.metadata.name.unwrap_or_default()
    );

    let restores: Api<BlockSightRestore> = Api::namespaced(client.clone(), &ns);
    let restore = serde_json::json!({
        "apiVersion": "blocksight.live/v1alpha1",
        "kind": "BlockSightRestore",
        "metadata": {"name": "undo"},
        "spec": {"blockSight": "dev", "backup": "before-upgrade"}
    });
    restores
        .patch(
            "undo",
            &PatchParams::apply(crate::TEST_MANAGER),
            &Patch::Apply(&restore),
        )
        .await
        .expect("the API server accepts a BlockSightRestore");
    let phase = kit::eventually("the restore's phase", Duration::from_secs(60), || async {
        restores.get("undo").await.ok()?.status?.phase
    })
    .await;
    eprintln!("restore phase {phase:?}");

    // Nothing the operator asked for was forbidden.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let forbidden: Vec<String> = audit
        .since(OPERATOR_USER, &ns)
        .into_iter()
        .filter(|r| r.response_status.as_ref().is_some_and(|s| s.code == 403))
        .map(|r| r.line())
        .collect();
    assert!(forbidden.is_empty(), "forbidden: {forbidden:?}");
    kit::delete_namespace(&client, &ns).await;
}
