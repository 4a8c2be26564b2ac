//! BlockSightRestore, spec.postgres.restoreFrom and restore drills against the scripted API
//! server: the state machine of an in-place restore (API held at zero, safety backup,
//! restore Job, verified result and measured duration), refusals that change nothing, a
//! new BlockSight starting from a backup, and drill results in status, conditions, events
//! and metrics.

use std::sync::Arc;

use blocksight_operator::controller::backup::BackupContext;
use blocksight_operator::controller::restore as restores;
use blocksight_operator::crd::{
    BlockSight, BlockSightBackup, BlockSightBackupSpec, BlockSightRestore, BlockSightRestoreSpec,
};
use blocksight_operator::desired::{self, BuildSettings, ChildKind};
use blocksight_operator::validate;
use blocksight_testkit::mock_api::{
    self, CacheWriters, Call, Harness, blocksight, caches, child_path, harness,
};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::core::DeserializeGuard;
use kube::runtime::{reflector, watcher};
use serde_json::{Value, json};

const REGTEST: &str = include_str!("../../examples/regtest.yaml");
const GROUP: &str = "/apis/blocksight.live/v1alpha1/namespaces/default";
const EVENTS: &str = "POST /apis/events.k8s.io/v1/namespaces/default/events";

fn lines(calls: &[Call]) -> Vec<String> {
    calls.iter().map(Call::line).collect()
}

fn time(s: &str) -> Time {
    Time(s.parse().unwrap())
}

fn completed_backup(name: &str, of: &str) -> BlockSightBackup {
    let mut b = BlockSightBackup::new(
        name,
        BlockSightBackupSpec {
            block_sight: of.into(),
        },
    );
    b.metadata.namespace = Some("default".into());
    b.status = Some(
        serde_json::from_value(json!({"phase": "Completed", "completedAt": "2026-11-25T03:05:00Z", "startedAt": "2026-11-25T03:00:00Z", "sizeBytes": 1000, "location": format!("file:///backups/{name}/")}))
            .unwrap(),
    );
    b
}

fn restore(name: &str, of: &str, backup: &str) -> BlockSightRestore {
    let mut r = BlockSightRestore::new(
        name,
        BlockSightRestoreSpec {
            block_sight: of.into(),
            backup: backup.into(),
        },
    );
    r.metadata.namespace = Some("default".into());
    r.metadata.uid = Some(format!("uid-{name}"));
    r
}

fn job_status(kind: Option<&str>, at: &str) -> JobStatus {
    JobStatus {
        active: kind.is_none().then_some(1),
        start_time: Some(time("2026-11-26T10:00:30Z")),
        completion_time: (kind == Some("Complete")).then(|| time(at)),
        conditions: kind.map(|k| {
            vec![JobCondition {
                type_: k.into(),
                status: "True".into(),
                reason: Some(
                    if k == "Complete" {
                        "CompletionsReached"
                    } else {
                        "BackoffLimitExceeded"
                    }
                    .into(),
                ),
                message: Some("from the Job controller".into()),
                last_transition_time: Some(time(at)),
                ..Default::default()
            }]
        }),
        ..Default::default()
    }
}

fn job(name: &str, labels: &[(&str, &str)], status: JobStatus) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..Default::default()
        },
        status: Some(status),
        ..Default::default()
    }
}

fn pod(job: &str, container: &str, message: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("{job}-p")),
            namespace: Some("default".into()),
            labels: Some([("batch.kubernetes.io/job-name".to_owned(), job.to_owned())].into()),
            creation_timestamp: Some(time("2026-11-26T10:00:30Z")),
            ..Default::default()
        },
        status: Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: container.into(),
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        message: Some(message.into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn backup_context(h: &Harness, blocksights: &[BlockSight]) -> Arc<BackupContext> {
    let (store, mut writer) = reflector::store::<DeserializeGuard<BlockSight>>();
    writer.apply_watcher_event(&watcher::Event::Init);
    for bs in blocksights {
        writer.apply_watcher_event(&watcher::Event::InitApply(DeserializeGuard(Ok(bs.clone()))));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    std::mem::forget(writer);
    Arc::new(BackupContext {
        ctx: h.ctx.clone(),
        blocksights: store,
    })
}

async fn reconcile_restore(
    h: &Harness,
    bctx: &Arc<BackupContext>,
    bsr: &BlockSightRestore,
) -> Vec<Call> {
    h.stored.lock().unwrap().insert(
        format!(
            "{GROUP}/blocksightrestores/{}",
            bsr.metadata.name.as_deref().unwrap()
        ),
        serde_json::to_value(bsr).unwrap(),
    );
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        restores::reconcile(Arc::new(bsr.clone()), bctx.clone()),
    )
    .await
    .expect("within 5 s")
    .expect("reconciled");
    h.take_calls()
}

fn written_status(calls: &[Call], resource: &str) -> Value {
    calls
        .iter()
        .rev()
        .find(|c| c.line().contains(resource) && c.line().ends_with("/status"))
        .unwrap_or_else(|| panic!("a status write of {resource}: {:?}", lines(calls)))
        .body["status"]
        .clone()
}

fn with_status<T: serde::de::DeserializeOwned>(status: Value) -> Option<T> {
    Some(serde_json::from_value(status).unwrap())
}

fn chain_synced(h: &Harness, bs: &BlockSight) {
    let key = (
        bs.metadata.namespace.clone().unwrap(),
        bs.metadata.name.clone().unwrap(),
    );
    h.ctx
        .poller
        .publish(key, mock_api::synced_observation(bs.spec.electrs.enabled));
}

fn condition(status: &Value, kind: &str) -> (String, String) {
    let c = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .unwrap_or_else(|| panic!("no condition {kind}: {status}"));
    (
        c["status"].as_str().unwrap().into(),
        c["reason"].as_str().unwrap().into(),
    )
}

/// The API Deployment as the controller would apply it, in the cache, with `replicas` pods.
fn put_api(writers: &mut CacheWriters, bs: &BlockSight, serving: bool) {
    let gates = desired::Gates {
        api_serving: serving,
    };
    let valid = validate::validate(bs).unwrap();
    for child in desired::build_gated(&valid, &BuildSettings::default(), gates).children {
        if child.kind() == ChildKind::Deployment && child.name() == "dev-api" {
            writers.put(&child, true);
        }
    }
}

#[tokio::test]
async fn an_in_place_restore_holds_the_api_takes_a_safety_backup_restores_and_verifies() {
    let bs = blocksight(REGTEST);
    let (caches, mut writers) = caches();
    writers.converge(&bs, true);
    writers
        .backups
        .apply_watcher_event(&watcher::Event::Apply(completed_backup("b1", "dev")));
    let h = harness(caches, vec![]);
    chain_synced(&h, &bs);
    let bctx = backup_context(&h, std::slice::from_ref(&bs));

    // Pending → SafetyBackup: the safety backup is requested, the clock starts.
    let mut bsr = restore("r1", "dev", "b1");
    let calls = reconcile_restore(&h, &bctx, &bsr).await;
    assert_eq!(
        lines(&calls),
        [
            format!("POST {GROUP}/blocksightbackups"),
            EVENTS.to_owned(),
            format!("PATCH {GROUP}/blocksightrestores/r1/status"),
        ]
    );
    assert_eq!(calls[0].body["metadata"]["name"], "r1-safety");
    assert_eq!(
        calls[0].body["metadata"]["labels"]["blocksight.live/trigger"],
        "Safety"
    );
    assert_eq!(calls[0].body["spec"]["blockSight"], "dev");
    assert_eq!(calls[1].body["reason"], "RestoreStarted");
    let status = written_status(&calls, "blocksightrestores");
    assert_eq!(status["phase"], "SafetyBackup");
    assert_eq!(status["safetyBackup"], "r1-safety");
    let started = status["startedAt"].as_str().unwrap().to_owned();
    bsr.status = with_status(status);
    writers
        .restores
        .apply_watcher_event(&watcher::Event::Apply(bsr.clone()));

    // The BlockSight now holds its API at zero and says why.
    h.reconcile(&bs).await.expect("reconciled");
    let calls = h.take_calls();
    let api = calls
        .iter()
        .find(|c| c.line() == format!("PATCH {}", child_path(ChildKind::Deployment, "dev-api")))
        .expect("the API is re-applied");
    assert_eq!(api.body["spec"]["replicas"], 0);
    let status = written_status(&calls, "blocksights/dev");
    assert_eq!(
        condition(&status, "Restoring"),
        ("True".into(), "RestoreInProgress".into())
    );

    // The safety backup completed, but an API pod still runs: no restore yet.
    let mut safety = completed_backup("r1-safety", "dev");
    safety.metadata.labels =
        Some([("blocksight.live/trigger".to_owned(), "Safety".to_owned())].into());
    writers
        .backups
        .apply_watcher_event(&watcher::Event::Apply(safety));
    let calls = reconcile_restore(&h, &bctx, &bsr).await;
    assert_eq!(lines(&calls), Vec::<String>::new());

    // The API drained: the restore Job starts, from b1 of dev, owned by the restore.
    put_api(&mut writers, &bs, false);
    let calls = reconcile_restore(&h, &bctx, &bsr).await;
    assert_eq!(
        lines(&calls),
        ["PATCH /apis/batch/v1/namespaces/default/jobs/r1-restore"]
    );
    let job_body = &calls[0].body;
    assert_eq!(
        job_body["metadata"]["ownerReferences"][0]["kind"],
        "BlockSightRestore"
    );
    assert_eq!(
        job_body["metadata"]["labels"]["blocksight.live/restore"],
        "r1"
    );
    let command = job_body["spec"]["template"]["spec"]["containers"][0]["command"].to_string();
    assert!(
        command.contains(
            r#""restore","--backup","b1","--target-database","blocksight","--drop-existing""#
        ),
        "{command}"
    );

    // Running.
    writers.jobs.apply_watcher_event(&watcher::Event::Apply(job(
        "r1-restore",
        &[("blocksight.live/restore", "r1")],
        job_status(None, ""),
    )));
    let calls = reconcile_restore(&h, &bctx, &bsr).await;
    let status = written_status(&calls, "blocksightrestores");
    assert_eq!(status["phase"], "Restoring");
    bsr.status = with_status(status);

    // Done: verified, with the measured duration (RTO) from start to finish.
    writers.jobs.apply_watcher_event(&watcher::Event::Apply(job(
        "r1-restore",
        &[("blocksight.live/restore", "r1")],
        job_status(Some("Complete"), "2030-01-01T00:00:00Z"),
    )));
    writers.pods.apply_watcher_event(&watcher::Event::Apply(pod("r1-restore", "restore", r#"{"backup":"b1","database":"blocksight","replaced":true,"sizeBytes":1000,"tables":7,"durationSeconds":12.5}"#)));
    let calls = reconcile_restore(&h, &bctx, &bsr).await;
    assert_eq!(
        lines(&calls),
        [
            EVENTS.to_owned(),
            format!("PATCH {GROUP}/blocksightrestores/r1/status")
        ]
    );
    assert_eq!(calls[0].body["reason"], "RestoreCompleted");
    let status = written_status(&calls, "blocksightrestores");
    assert_eq!(status["phase"], "Completed");
    assert_eq!(status["verified"], true);
    assert_eq!(status["tables"], 7);
    assert_eq!(status["completedAt"], "2030-01-01T00:00:00Z");
    let started: jiff::Timestamp = started.parse().unwrap();
    let rto = "2030-01-01T00:00:00Z"
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_second()
        - started.as_second();
    assert_eq!(status["durationSeconds"], rto);
    bsr.status = with_status(status);
    writers
        .restores
        .apply_watcher_event(&watcher::Event::Apply(bsr.clone()));

    // Finished: the API serves again.
    h.reconcile(&bs).await.expect("reconciled");
    let calls = h.take_calls();
    let api = calls
        .iter()
        .find(|c| c.line() == format!("PATCH {}", child_path(ChildKind::Deployment, "dev-api")))
        .expect("the API is re-applied");
    assert_eq!(api.body["spec"]["replicas"], 1);
    let status = written_status(&calls, "blocksights/dev");
    assert_eq!(
        condition(&status, "Restoring"),
        ("False".into(), "NotRestoring".into())
    );
}

#[tokio::test]
async fn a_restore_that_cannot_happen_fails_at_once_and_creates_nothing() {
    let bs = blocksight(REGTEST);
    let (caches, mut writers) = caches();
    writers.converge(&bs, true);
    writers
        .backups
        .apply_watcher_event(&watcher::Event::Apply(completed_backup("of-prod", "prod")));
    let mut failed = completed_backup("broken", "dev");
    failed.status = with_status(json!({"phase": "Failed", "error": "pg_dump failed"}));
    writers
        .backups
        .apply_watcher_event(&watcher::Event::Apply(failed));
    let h = harness(caches, vec![]);
    let bctx = backup_context(&h, std::slice::from_ref(&bs));
    for (bsr, says) in [
        (
            restore("r-missing", "dev", "nope"),
            "BlockSightBackup nope does not exist in namespace default",
        ),
        (
            restore("r-other", "dev", "of-prod"),
            "BlockSightBackup of-prod is a backup of BlockSight prod, not of dev",
        ),
        (
            restore("r-failed", "dev", "broken"),
            "BlockSightBackup broken is not Completed (phase Failed)",
        ),
        (
            restore("r-nobs", "gone", "of-prod"),
            "BlockSight gone does not exist in namespace default",
        ),
    ] {
        let name = bsr.metadata.name.clone().unwrap();
        let calls = reconcile_restore(&h, &bctx, &bsr).await;
        assert_eq!(
            lines(&calls),
            [
                EVENTS.to_owned(),
                format!("PATCH {GROUP}/blocksightrestores/{name}/status")
            ],
            "{name}: only a Warning and the status"
        );
        assert_eq!(calls[0].body["type"], "Warning");
        let status = written_status(&calls, "blocksightrestores");
        assert_eq!(status["phase"], "Failed", "{name}");
        assert!(
            status["error"].as_str().unwrap().starts_with(says),
            "{name}: {status}"
        );
    }
}

#[tokio::test]
async fn a_failed_safety_backup_fails_the_restore_without_touching_the_database() {
    let bs = blocksight(REGTEST);
    let (caches, mut writers) = caches();
    writers.converge(&bs, true);
    writers
        .backups
        .apply_watcher_event(&watcher::Event::Apply(completed_backup("b1", "dev")));
    let mut safety = completed_backup("r2-safety", "dev");
    safety.status = with_status(json!({"phase": "Failed", "error": "destination unreachable"}));
    writers
        .backups
        .apply_watcher_event(&watcher::Event::Apply(safety));
    let h = harness(caches, vec![]);
    let bctx = backup_context(&h, std::slice::from_ref(&bs));
    let mut bsr = restore("r2", "dev", "b1");
    bsr.status = with_status(
        json!({"phase": "SafetyBackup", "startedAt": "2026-11-26T10:00:00Z", "safetyBackup": "r2-safety"}),
    );
    let calls = reconcile_restore(&h, &bctx, &bsr).await;
    assert!(!lines(&calls).iter().any(|l| l.contains("/jobs/")));
    let status = written_status(&calls, "blocksightrestores");
    assert_eq!(status["phase"], "Failed");
    assert_eq!(
        status["error"],
        "the safety backup failed, the database was not touched: destination unreachable"
    );
    assert!(status["durationSeconds"].is_i64());
}

#[tokio::test]
async fn a_new_blocksight_starts_from_a_backup_once_before_its_api_serves() {
    let yaml = REGTEST.replace(
        "  api:\n",
        "  postgres:\n    restoreFrom: {backup: old-nightly}\n  api:\n",
    );
    let bs = blocksight(&yaml);
    assert!(bs.spec.postgres.restore_from.is_some());
    let (caches, mut writers) = caches();
    writers.converge(&bs, true);
    writers
        .backups
        .apply_watcher_event(&watcher::Event::Apply(completed_backup(
            "old-nightly",
            "old",
        )));
    let h = harness(caches, vec![]);
    chain_synced(&h, &bs);

    // The database is up: the restore Job starts, reading old's backups; the API stays at 0.
    h.reconcile(&bs).await.expect("reconciled");
    let calls = h.take_calls();
    let job = calls
        .iter()
        .find(|c| c.line() == "PATCH /apis/batch/v1/namespaces/default/jobs/dev-restore-from")
        .expect("the restoreFrom Job");
    let command = job.body["spec"]["template"]["spec"]["containers"][0]["command"].to_string();
    assert!(command.contains(r#""--backup","old-nightly""#), "{command}");
    // It only seeds an empty database: one with data (retained volumes) is refused.
    assert!(
        command.contains(r#""--drop-existing","--only-if-empty""#),
        "{command}"
    );
    assert!(
        command.contains(r#""--prefix","blocksight/default/old/""#),
        "{command}"
    );
    assert_eq!(
        job.body["spec"]["template"]["spec"]["volumes"][2]["persistentVolumeClaim"]["claimName"],
        "old-backups"
    );
    let api = calls
        .iter()
        .find(|c| c.line() == format!("PATCH {}", child_path(ChildKind::Deployment, "dev-api")))
        .expect("the API is re-applied");
    assert_eq!(api.body["spec"]["replicas"], 0);
    let status = written_status(&calls, "blocksights/dev");
    assert_eq!(
        condition(&status, "Restoring"),
        ("True".into(), "RestoringFromBackup".into())
    );

    // It succeeded: recorded in status (so it never runs again) and the API is released.
    put_api(&mut writers, &bs, false);
    writers
        .jobs
        .apply_watcher_event(&watcher::Event::Apply(job_named_complete(
            "dev-restore-from",
        )));
    let bs = BlockSight {
        status: with_status(status),
        ..bs
    };
    h.reconcile(&bs).await.expect("reconciled");
    let calls = h.take_calls();
    let status = written_status(&calls, "blocksights/dev");
    assert_eq!(status["backup"]["restoredFrom"], "old-nightly");
    assert_eq!(condition(&status, "Restoring").0, "False");
    assert!(
        calls
            .iter()
            .any(|c| c.line() == EVENTS && c.body["reason"] == "RestoredFromBackup")
    );
    let api = calls
        .iter()
        .find(|c| c.line() == format!("PATCH {}", child_path(ChildKind::Deployment, "dev-api")))
        .expect("the API is re-applied");
    assert_eq!(api.body["spec"]["replicas"], 1);
    // Recorded: with the Job gone (TTL), it never runs again.
    let bs = BlockSight {
        status: with_status(status),
        ..bs
    };
    writers
        .jobs
        .apply_watcher_event(&watcher::Event::Delete(job_named_complete(
            "dev-restore-from",
        )));
    h.reconcile(&bs).await.expect("reconciled");
    let calls = h.take_calls();
    assert_eq!(
        lines(&calls),
        Vec::<String>::new(),
        "runs once; nothing else changes"
    );
}

fn job_named_complete(name: &str) -> Job {
    job(
        name,
        &[],
        job_status(Some("Complete"), "2026-11-26T11:00:00Z"),
    )
}

#[tokio::test]
async fn restore_from_a_backup_that_does_not_exist_holds_the_api_and_says_so() {
    let yaml = REGTEST.replace(
        "  api:\n",
        "  postgres:\n    restoreFrom: {backup: nope}\n  api:\n",
    );
    let bs = blocksight(&yaml);
    let (caches, mut writers) = caches();
    writers.converge(&bs, true);
    let h = harness(caches, vec![]);
    chain_synced(&h, &bs);
    h.reconcile(&bs).await.expect("reconciled");
    let calls = h.take_calls();
    assert!(!calls.iter().any(|c| c.line().contains("/jobs/")));
    let status = written_status(&calls, "blocksights/dev");
    assert_eq!(
        condition(&status, "Restoring"),
        ("True".into(), "RestoreFromBlocked".into())
    );
    let warning = calls
        .iter()
        .find(|c| c.line() == EVENTS && c.body["reason"] == "RestoreFromBlocked")
        .expect("a Warning");
    assert!(
        warning.body["note"]
            .as_str()
            .unwrap()
            .contains("BlockSightBackup nope does not exist")
    );
}

#[tokio::test]
async fn drill_results_feed_status_backup_healthy_events_and_metrics() {
    let bs = blocksight(REGTEST);
    let (caches, mut writers) = caches();
    writers.converge(&bs, true);
    writers
        .backups
        .apply_watcher_event(&watcher::Event::Apply(completed_backup("b1", "dev")));
    let drill_labels = [
        ("app.kubernetes.io/instance", "dev"),
        ("blocksight.live/purpose", "verify"),
    ];
    writers.jobs.apply_watcher_event(&watcher::Event::Apply(job(
        "dev-verify-1",
        &drill_labels,
        job_status(Some("Failed"), "2026-11-26T05:10:00Z"),
    )));
    writers.pods.apply_watcher_event(&watcher::Event::Apply(pod("dev-verify-1", "verify", r#"{"backup":"b1","ok":false,"durationSeconds":42.0,"tables":7,"mismatches":1,"error":"row counts differ"}"#)));
    let h = harness(caches, vec![]);
    chain_synced(&h, &bs);
    h.reconcile(&bs).await.expect("reconciled");
    let calls = h.take_calls();
    let status = written_status(&calls, "blocksights/dev");
    assert_eq!(status["backup"]["lastSuccessful"]["name"], "b1");
    assert_eq!(status["backup"]["lastSuccessful"]["sizeBytes"], 1000);
    let verification = &status["backup"]["lastVerification"];
    assert_eq!(verification["result"], "Failed");
    assert_eq!(verification["backup"], "b1");
    assert_eq!(verification["durationSeconds"], 42.0);
    assert_eq!(verification["time"], "2026-11-26T05:10:00Z");
    assert_eq!(
        condition(&status, "BackupHealthy"),
        ("False".into(), "DrillFailed".into())
    );
    let warning = calls
        .iter()
        .find(|c| c.line() == EVENTS && c.body["reason"] == "DrillFailed")
        .expect("a Warning event");
    assert_eq!(warning.body["type"], "Warning");
    let metrics = h.ctx.metrics.encode();
    assert!(
        metrics.contains(
            r#"blocksight_backup_verification_last_success{namespace="default",blocksight="dev"} 0"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"blocksight_backup_last_size_bytes{namespace="default",blocksight="dev"} 1000"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"blocksight_backup_last_duration_seconds{namespace="default",blocksight="dev"} 300"#
        ),
        "{metrics}"
    );

    // A later drill (one made by hand from the CronJob counts the same) passes.
    writers.jobs.apply_watcher_event(&watcher::Event::Apply(job(
        "manual-drill",
        &drill_labels,
        job_status(Some("Complete"), "2026-11-26T06:00:00Z"),
    )));
    writers.pods.apply_watcher_event(&watcher::Event::Apply(pod(
        "manual-drill",
        "verify",
        r#"{"backup":"b1","ok":true,"durationSeconds":40.0,"tables":7,"mismatches":0}"#,
    )));
    let bs = BlockSight {
        status: with_status(status),
        ..bs
    };
    h.reconcile(&bs).await.expect("reconciled");
    let calls = h.take_calls();
    let status = written_status(&calls, "blocksights/dev");
    assert_eq!(status["backup"]["lastVerification"]["result"], "Passed");
    assert_eq!(
        condition(&status, "BackupHealthy"),
        ("True".into(), "Verified".into())
    );
    assert!(
        calls
            .iter()
            .any(|c| c.line() == EVENTS && c.body["reason"] == "DrillPassed")
    );
    assert!(h.ctx.metrics.encode().contains(
        r#"blocksight_backup_verification_last_success{namespace="default",blocksight="dev"} 1"#
    ));

    // Steady: nothing more to say.
    let bs = BlockSight {
        status: with_status(status),
        ..bs
    };
    h.reconcile(&bs).await.expect("reconciled");
    assert_eq!(lines(&h.take_calls()), Vec::<String>::new());
}
