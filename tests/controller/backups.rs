//! BlockSightBackup lifecycles against the scripted API server: on-demand, scheduled,
//! completed (result read from the pod's termination message), pod or Job gone mid-backup,
//! a BlockSight that does not exist, and deletion of the data with the object.

use std::sync::Arc;

use blocksight_testkit::mock_api::{self, Call, Harness, blocksight, caches, harness};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::core::DeserializeGuard;
use kube::runtime::reflector;
use kube::runtime::watcher;
use serde_json::json;

use blocksight_operator::controller::backup::{self as backups, BackupContext};
use blocksight_operator::crd::{BlockSight, BlockSightBackup, BlockSightBackupSpec};
use blocksight_operator::names::FINALIZER;

const REGTEST: &str = include_str!("../../examples/regtest.yaml");
const BSB_PATH: &str = "/apis/blocksight.live/v1alpha1/namespaces/default/blocksightbackups";

fn lines(calls: &[Call]) -> Vec<String> {
    calls.iter().map(Call::line).collect()
}

fn time(s: &str) -> Time {
    Time(s.parse().unwrap())
}

fn backup(name: &str, of: &str) -> BlockSightBackup {
    let mut bsb = BlockSightBackup::new(
        name,
        BlockSightBackupSpec {
            block_sight: of.into(),
        },
    );
    bsb.metadata.namespace = Some("default".into());
    bsb.metadata.uid = Some(format!("uid-{name}"));
    bsb
}

fn with_finalizer(mut bsb: BlockSightBackup) -> BlockSightBackup {
    bsb.metadata.finalizers = Some(vec![FINALIZER.into()]);
    bsb
}

struct Scene {
    h: Harness,
    bctx: Arc<BackupContext>,
    jobs: reflector::store::Writer<Job>,
    pods: reflector::store::Writer<Pod>,
}

/// The harness with `blocksights` known to the backup controller.
fn scene(blocksights: &[BlockSight]) -> Scene {
    let (caches, writers) = caches();
    let h = harness(caches, vec![]);
    let (store, mut writer) = reflector::store::<DeserializeGuard<BlockSight>>();
    writer.apply_watcher_event(&watcher::Event::Init);
    for bs in blocksights {
        writer.apply_watcher_event(&watcher::Event::InitApply(DeserializeGuard(Ok(bs.clone()))));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    std::mem::forget(writer);
    let bctx = Arc::new(BackupContext {
        ctx: h.ctx.clone(),
        blocksights: store,
    });
    let mock_api::CacheWriters { jobs, pods, .. } = writers;
    Scene {
        h,
        bctx,
        jobs,
        pods,
    }
}

impl Scene {
    async fn reconcile(&self, bsb: &BlockSightBackup) -> Vec<Call> {
        self.h.stored.lock().unwrap().insert(
            format!("{BSB_PATH}/{}", bsb.metadata.name.as_deref().unwrap()),
            serde_json::to_value(bsb).unwrap(),
        );
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            backups::reconcile(Arc::new(bsb.clone()), self.bctx.clone()),
        )
        .await
        .expect("within 5 s")
        .expect("reconciled");
        self.h.take_calls()
    }

    fn put_job(&mut self, name: &str, status: JobStatus) {
        let job = Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            status: Some(status),
            ..Default::default()
        };
        self.jobs.apply_watcher_event(&watcher::Event::Apply(job));
    }

    fn put_pod(&mut self, job: &str, container: &str, message: &str) {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some(format!("{job}-abcde")),
                namespace: Some("default".into()),
                labels: Some([("batch.kubernetes.io/job-name".to_owned(), job.to_owned())].into()),
                creation_timestamp: Some(time("2026-11-26T03:00:01Z")),
                ..Default::default()
            },
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: container.into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: 0,
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
        };
        self.pods.apply_watcher_event(&watcher::Event::Apply(pod));
    }
}

fn status_of(calls: &[Call]) -> serde_json::Value {
    calls
        .iter()
        .find(|c| c.line().ends_with("/status"))
        .expect("a status write")
        .body["status"]
        .clone()
}

fn finished(kind: &str, reason: &str, at: &str) -> JobStatus {
    JobStatus {
        start_time: Some(time("2026-11-26T03:00:00Z")),
        completion_time: (kind == "Complete").then(|| time(at)),
        conditions: Some(vec![JobCondition {
            type_: kind.into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some("as the Job controller says".into()),
            last_transition_time: Some(time(at)),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_on_demand_backup_gets_a_finalizer_and_its_job_then_follows_it_to_completed() {
    let mut s = scene(&[blocksight(REGTEST)]);
    let bsb = backup("b1", "dev");
    let calls = s.reconcile(&bsb).await;
    assert_eq!(
        lines(&calls),
        [
            format!("PATCH {BSB_PATH}/b1"),
            "PATCH /apis/batch/v1/namespaces/default/jobs/b1".to_owned(),
            format!("PATCH {BSB_PATH}/b1/status"),
        ]
    );
    // The finalizer is added with a JSON patch (no read-modify-write race).
    assert_eq!(
        calls[0].body,
        json!([{"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}])
    );
    // The Job: server-side applied, owned by the backup, labelled with it, the dump task.
    let job = &calls[1];
    assert_eq!(
        job.uri,
        "/apis/batch/v1/namespaces/default/jobs/b1?&force=true&fieldManager=blocksight-operator"
    );
    assert_eq!(
        job.body["metadata"]["ownerReferences"][0]["kind"],
        "BlockSightBackup"
    );
    assert_eq!(job.body["metadata"]["ownerReferences"][0]["uid"], "uid-b1");
    assert_eq!(
        job.body["metadata"]["labels"]["blocksight.live/backup"],
        "b1"
    );
    assert_eq!(
        job.body["metadata"]["labels"]["blocksight.live/purpose"],
        "backup"
    );
    let command = job.body["spec"]["template"]["spec"]["containers"][0]["command"].to_string();
    assert!(command.contains("\"dump\""), "{command}");
    let status = status_of(&calls);
    assert_eq!(
        status,
        json!({"phase": "Pending", "trigger": "OnDemand", "jobName": "b1"})
    );

    // The pod runs.
    let mut bsb = with_finalizer(bsb);
    bsb.status = Some(serde_json::from_value(status).unwrap());
    s.put_job(
        "b1",
        JobStatus {
            active: Some(1),
            start_time: Some(time("2026-11-26T03:00:00Z")),
            ..Default::default()
        },
    );
    let calls = s.reconcile(&bsb).await;
    assert_eq!(lines(&calls), [format!("PATCH {BSB_PATH}/b1/status")]);
    let status = status_of(&calls);
    assert_eq!(status["phase"], "Running");
    assert_eq!(status["startedAt"], "2026-11-26T03:00:00Z");

    // Nothing changed: nothing is sent.
    bsb.status = Some(serde_json::from_value(status).unwrap());
    assert_eq!(s.reconcile(&bsb).await, vec![]);

    // It completes; the result comes from the termination message.
    s.put_job(
        "b1",
        finished("Complete", "CompletionsReached", "2026-11-26T03:04:00Z"),
    );
    s.put_pod(
        "b1",
        "backup",
        r#"{"name":"b1","time":"2026-11-26T03:00:02Z","database":"blocksight","sizeBytes":123456,"sha256":"ab12","durationSeconds":238.0,"location":"file:///backups/blocksight/default/dev/b1/"}"#,
    );
    let calls = s.reconcile(&bsb).await;
    assert_eq!(
        lines(&calls),
        [
            "POST /apis/events.k8s.io/v1/namespaces/default/events".to_owned(),
            format!("PATCH {BSB_PATH}/b1/status"),
        ]
    );
    assert_eq!(calls[0].body["reason"], "BackupCompleted");
    let status = status_of(&calls);
    assert_eq!(status["phase"], "Completed");
    assert_eq!(status["completedAt"], "2026-11-26T03:04:00Z");
    assert_eq!(status["sizeBytes"], 123456);
    assert_eq!(status["sha256"], "ab12");
    assert_eq!(
        status["location"],
        "file:///backups/blocksight/default/dev/b1/"
    );

    // Completed is final: the Job's TTL removing it changes nothing.
    bsb.status = Some(serde_json::from_value(status).unwrap());
    s.jobs.apply_watcher_event(&watcher::Event::Delete(Job {
        metadata: ObjectMeta {
            name: Some("b1".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        ..Default::default()
    }));
    assert_eq!(s.reconcile(&bsb).await, vec![]);
}

#[tokio::test]
async fn a_backup_whose_job_or_pod_died_is_failed_never_left_running() {
    let mut s = scene(&[blocksight(REGTEST)]);
    let mut running = with_finalizer(backup("b2", "dev"));
    running.status = Some(serde_json::from_value(json!({"phase": "Running", "trigger": "OnDemand", "jobName": "b2", "startedAt": "2026-11-26T03:00:00Z"})).unwrap());

    // The Job was deleted (and its pod with it) while the backup ran.
    let calls = s.reconcile(&running).await;
    assert_eq!(
        lines(&calls),
        [
            "POST /apis/events.k8s.io/v1/namespaces/default/events".to_owned(),
            format!("PATCH {BSB_PATH}/b2/status"),
        ]
    );
    assert_eq!(calls[0].body["type"], "Warning");
    assert_eq!(calls[0].body["reason"], "BackupFailed");
    let status = status_of(&calls);
    assert_eq!(status["phase"], "Failed");
    assert!(
        status["error"]
            .as_str()
            .unwrap()
            .contains("was deleted before it finished"),
        "{status}"
    );
    assert!(status["completedAt"].is_string());

    // The pod was killed: with backoffLimit 0 the Job fails at once; the program's own
    // error (when it could write one) comes first.
    s.put_job(
        "b2",
        finished("Failed", "BackoffLimitExceeded", "2026-11-26T03:02:00Z"),
    );
    s.put_pod(
        "b2",
        "backup",
        r#"{"error":"pg_dump exited with signal 9","category":"tool"}"#,
    );
    let calls = s.reconcile(&running).await;
    let status = status_of(&calls);
    assert_eq!(status["phase"], "Failed");
    assert_eq!(
        status["error"],
        "pg_dump exited with signal 9 (BackoffLimitExceeded: as the Job controller says)"
    );
    assert_eq!(status["completedAt"], "2026-11-26T03:02:00Z");
}

#[tokio::test]
async fn a_backup_of_a_blocksight_that_does_not_exist_fails_at_once_and_creates_nothing() {
    let s = scene(&[blocksight(REGTEST)]);
    let calls = s.reconcile(&with_finalizer(backup("b3", "nope"))).await;
    assert_eq!(
        lines(&calls),
        [
            "POST /apis/events.k8s.io/v1/namespaces/default/events".to_owned(),
            format!("PATCH {BSB_PATH}/b3/status"),
        ]
    );
    let status = status_of(&calls);
    assert_eq!(status["phase"], "Failed");
    assert_eq!(
        status["error"],
        "BlockSight nope does not exist in namespace default"
    );

    // A BlockSight without a destination has nowhere to put it.
    let bare = blocksight(
        "{apiVersion: blocksight.live/v1alpha1, kind: BlockSight, metadata: {name: bare}, spec: {network: regtest}}",
    );
    let s = scene(&[bare]);
    let calls = s.reconcile(&with_finalizer(backup("b4", "bare"))).await;
    assert!(!lines(&calls).iter().any(|l| l.contains("/jobs/")));
    assert!(
        status_of(&calls)["error"]
            .as_str()
            .unwrap()
            .contains("has no spec.backup.destination")
    );
}

#[tokio::test]
async fn deleting_a_completed_backup_deletes_its_data_first() {
    let mut s = scene(&[blocksight(REGTEST)]);
    let mut bsb = with_finalizer(backup("b5", "dev"));
    bsb.status = Some(
        serde_json::from_value(
            json!({"phase": "Completed", "trigger": "Scheduled", "jobName": "b5"}),
        )
        .unwrap(),
    );
    bsb.metadata.deletion_timestamp = Some(time("2026-11-27T00:00:00Z"));

    let calls = s.reconcile(&bsb).await;
    assert_eq!(
        lines(&calls),
        ["PATCH /apis/batch/v1/namespaces/default/jobs/b5-del".to_owned()]
    );
    let command = calls[0].body["spec"]["template"]["spec"]["containers"][0]["command"].to_string();
    assert!(command.contains(r#""delete","--name","b5""#), "{command}");
    assert_eq!(
        calls[0].body["metadata"]["labels"]["blocksight.live/purpose"],
        "delete"
    );

    // While it runs, the finalizer stays.
    s.put_job(
        "b5-del",
        JobStatus {
            active: Some(1),
            ..Default::default()
        },
    );
    assert_eq!(s.reconcile(&bsb).await, vec![]);

    // The data is gone; the backup's own Job (kept in the CronJob's history) goes next, so
    // it cannot be recorded again as a backup once the object is gone.
    s.put_job(
        "b5-del",
        finished("Complete", "CompletionsReached", "2026-11-27T00:01:00Z"),
    );
    s.put_job(
        "b5",
        finished("Complete", "CompletionsReached", "2026-11-26T03:04:00Z"),
    );
    let calls = s.reconcile(&bsb).await;
    assert_eq!(
        lines(&calls),
        ["DELETE /apis/batch/v1/namespaces/default/jobs/b5".to_owned()]
    );

    // Then the object may go.
    s.jobs.apply_watcher_event(&watcher::Event::Delete(Job {
        metadata: ObjectMeta {
            name: Some("b5".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        ..Default::default()
    }));
    let calls = s.reconcile(&bsb).await;
    assert_eq!(lines(&calls), [format!("PATCH {BSB_PATH}/b5")]);
    assert_eq!(
        calls[0].body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"}
        ])
    );
}

#[tokio::test]
async fn deleting_a_backup_that_never_completed_stops_its_job_then_releases_it() {
    let mut s = scene(&[blocksight(REGTEST)]);
    let mut bsb = with_finalizer(backup("b6", "dev"));
    bsb.status = Some(
        serde_json::from_value(json!({"phase": "Running", "trigger": "OnDemand", "jobName": "b6"}))
            .unwrap(),
    );
    bsb.metadata.deletion_timestamp = Some(time("2026-11-27T00:00:00Z"));
    s.put_job(
        "b6",
        JobStatus {
            active: Some(1),
            ..Default::default()
        },
    );
    let calls = s.reconcile(&bsb).await;
    assert_eq!(
        lines(&calls),
        ["DELETE /apis/batch/v1/namespaces/default/jobs/b6".to_owned()]
    );
    // Released once the Job is gone.
    s.jobs.apply_watcher_event(&watcher::Event::Delete(Job {
        metadata: ObjectMeta {
            name: Some("b6".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        ..Default::default()
    }));
    let calls = s.reconcile(&bsb).await;
    assert_eq!(lines(&calls), [format!("PATCH {BSB_PATH}/b6")]);
    // A Failed backup without a Job (TTL) goes at once.
    let mut failed = with_finalizer(backup("b7", "dev"));
    failed.status = Some(
        serde_json::from_value(json!({"phase": "Failed", "trigger": "OnDemand", "error": "x"}))
            .unwrap(),
    );
    failed.metadata.deletion_timestamp = Some(time("2026-11-27T00:00:00Z"));
    let calls = s.reconcile(&failed).await;
    assert_eq!(lines(&calls), [format!("PATCH {BSB_PATH}/b7")]);
}

#[tokio::test]
async fn the_blocksight_reconcile_records_each_scheduled_job_as_a_backup_once() {
    let bs = blocksight(REGTEST);
    let (caches, mut writers) = caches();
    writers.converge(&bs, true);
    let scheduled = Job {
        metadata: ObjectMeta {
            name: Some("dev-backup-29400000".into()),
            namespace: Some("default".into()),
            labels: Some(
                [
                    ("app.kubernetes.io/instance".to_owned(), "dev".to_owned()),
                    ("blocksight.live/purpose".to_owned(), "backup".to_owned()),
                ]
                .into(),
            ),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                name: "dev-backup".into(),
                uid: "cj".into(),
                controller: Some(true),
                ..Default::default()
            }]),
            ..Default::default()
        },
        ..Default::default()
    };
    // A drill Job of the same BlockSight is not a backup.
    let mut drill = scheduled.clone();
    drill.metadata.name = Some("dev-verify-29400000".into());
    drill
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("blocksight.live/purpose".into(), "verify".into());
    drill.metadata.owner_references.as_mut().unwrap()[0].name = "dev-verify".into();
    writers
        .jobs
        .apply_watcher_event(&watcher::Event::Apply(scheduled));
    writers
        .jobs
        .apply_watcher_event(&watcher::Event::Apply(drill));
    let h = harness(caches, vec![]);
    h.reconcile(&bs).await.expect("reconciled");
    let calls = h.take_calls();
    let created: Vec<&Call> = calls
        .iter()
        .filter(|c| c.line() == format!("POST {BSB_PATH}"))
        .collect();
    assert_eq!(created.len(), 1, "{:?}", lines(&calls));
    let body = &created[0].body;
    assert_eq!(body["metadata"]["name"], "dev-backup-29400000");
    assert_eq!(body["spec"]["blockSight"], "dev");
    assert_eq!(
        body["metadata"]["labels"]["blocksight.live/trigger"],
        "Scheduled"
    );
    assert!(
        body["metadata"].get("ownerReferences").is_none(),
        "backups outlive the BlockSight"
    );

    // Once it exists (in the cache), it is not created again.
    let mut recorded = backup("dev-backup-29400000", "dev");
    recorded.metadata.labels =
        Some([("blocksight.live/trigger".to_owned(), "Scheduled".to_owned())].into());
    writers
        .backups
        .apply_watcher_event(&watcher::Event::Apply(recorded));
    let h2 = harness(h.ctx.caches.clone(), vec![]);
    h2.reconcile(&bs).await.expect("reconciled");
    assert!(!lines(&h2.take_calls()).contains(&format!("POST {BSB_PATH}")));
}

#[tokio::test]
async fn retention_deletes_old_backups_objects_and_the_finalizer_takes_the_data() {
    // regtest example: keepLast 4.
    let bs = blocksight(REGTEST);
    let (caches, mut writers) = caches();
    writers.converge(&bs, true);
    for (name, day) in [
        ("b1", 1),
        ("b2", 2),
        ("b3", 3),
        ("b4", 4),
        ("b5", 5),
        ("b6", 6),
    ] {
        let mut b = with_finalizer(backup(name, "dev"));
        b.status = Some(
            serde_json::from_value(json!({"phase": "Completed", "completedAt": format!("2026-11-{:02}T03:00:00Z", 26 - day)}))
                .unwrap(),
        );
        writers
            .backups
            .apply_watcher_event(&watcher::Event::Apply(b));
    }
    // Another BlockSight's backups are not ours to prune.
    let mut foreign = backup("x1", "prod");
    foreign.status = Some(
        serde_json::from_value(
            json!({"phase": "Completed", "completedAt": "2020-01-01T00:00:00Z"}),
        )
        .unwrap(),
    );
    writers
        .backups
        .apply_watcher_event(&watcher::Event::Apply(foreign));
    let h = harness(caches, vec![]);
    h.reconcile(&bs).await.expect("reconciled");
    let deletes: Vec<String> = lines(&h.take_calls())
        .into_iter()
        .filter(|l| l.starts_with("DELETE"))
        .collect();
    assert_eq!(
        deletes,
        [
            format!("DELETE {BSB_PATH}/b5"),
            format!("DELETE {BSB_PATH}/b6")
        ]
    );
    // Sent once, not again while the watch has not caught up.
    h.reconcile(&bs).await.expect("reconciled");
    assert!(
        !lines(&h.take_calls())
            .iter()
            .any(|l| l.starts_with("DELETE"))
    );
}
