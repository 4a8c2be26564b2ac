//! Chain-data VolumeSnapshots: `storage.fromSnapshot` in the volume claim templates, the
//! VolumeSnapshot object against the upstream CRD, and the controller taking and pruning
//! snapshots against a scripted API server with a fixed clock.

use std::sync::Arc;

use blocksight_operator::crd::{BlockSight, SnapshotComponent};
use blocksight_operator::desired::{self, BuildSettings, Child, volume_snapshot};
use blocksight_operator::validate;
use blocksight_testkit::mock_api::{Call, blocksight, caches, harness_with};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::DynamicObject;
use kube::runtime::watcher;
use serde_json::{Value, json};

/// Weekly snapshots of both chain volumes; deletionPolicy Retain (the default).
const SNAPSHOTTED: &str = "
apiVersion: blocksight.live/v1alpha1
kind: BlockSight
metadata: {name: main}
spec:
  network: regtest
  volumeSnapshots:
    schedule: '0 4 * * 0'
    keepLast: 2
    volumeSnapshotClassName: csi-snapclass
";

const SNAPSHOTS_PATH: &str = "/apis/snapshot.storage.k8s.io/v1/namespaces/default/volumesnapshots";

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn statefulset_claims(bs: &BlockSight, name: &str) -> Vec<Value> {
    let valid = validate::validate(bs).expect("valid");
    let children = desired::build(&valid, &BuildSettings::default()).children;
    let set = children
        .iter()
        .find(|c| matches!(c, Child::StatefulSet(_)) && c.name() == name)
        .unwrap_or_else(|| panic!("no StatefulSet {name}"));
    set.to_value()["spec"]["volumeClaimTemplates"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn from_snapshot_becomes_the_data_source_of_the_bitcoind_and_electrs_claims() {
    let bs = blocksight(
        "
apiVersion: blocksight.live/v1alpha1
kind: BlockSight
metadata: {name: rebuilt}
spec:
  network: mainnet
  bitcoind: {storage: {size: 1Ti, fromSnapshot: main-bitcoind-202611290400}}
  electrs: {storage: {fromSnapshot: main-electrs-202611290400}}
",
    );
    for (set, snapshot) in [
        ("rebuilt-bitcoind", "main-bitcoind-202611290400"),
        ("rebuilt-electrs", "main-electrs-202611290400"),
    ] {
        let claims = statefulset_claims(&bs, set);
        assert_eq!(claims.len(), 1);
        assert_eq!(
            claims[0]["spec"]["dataSource"],
            json!({"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": snapshot}),
            "{set}"
        );
    }
    // Other volumes, and volumes without fromSnapshot, have no data source.
    for set in ["rebuilt-postgres", "rebuilt-prometheus"] {
        assert_eq!(
            statefulset_claims(&bs, set)[0]["spec"].get("dataSource"),
            None
        );
    }
    let plain = blocksight(SNAPSHOTTED);
    assert_eq!(
        statefulset_claims(&plain, "main-bitcoind")[0]["spec"].get("dataSource"),
        None
    );
}

fn sample_snapshot(yaml: &str, component: SnapshotComponent) -> DynamicObject {
    let valid = validate::validate(&blocksight(yaml)).expect("valid");
    let settings = valid.volume_snapshots.clone().expect("snapshots enabled");
    volume_snapshot::build(&valid, &settings, component, ts("2026-11-29T04:00:00Z"))
}

#[test]
fn a_volume_snapshot_names_its_slot_and_is_owned_only_under_delete() {
    let retained =
        serde_json::to_value(sample_snapshot(SNAPSHOTTED, SnapshotComponent::Bitcoind)).unwrap();
    assert_eq!(
        retained,
        json!({
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshot",
            "metadata": {
                "name": "main-bitcoind-202611290400",
                "namespace": "default",
                "labels": {
                    "app.kubernetes.io/component": "bitcoind",
                    "app.kubernetes.io/instance": "main",
                    "app.kubernetes.io/managed-by": "blocksight-operator",
                    "app.kubernetes.io/name": "bitcoind",
                    "app.kubernetes.io/part-of": "blocksight",
                    "blocksight.live/scheduled-snapshot": "true"
                },
                "annotations": {"blocksight.live/snapshot-slot": "2026-11-29T04:00:00Z"}
            },
            "spec": {
                "source": {"persistentVolumeClaimName": "data-main-bitcoind-0"},
                "volumeSnapshotClassName": "csi-snapclass"
            }
        })
    );
    let deleted_with_it = SNAPSHOTTED.replace(
        "network: regtest",
        "network: regtest\n  deletionPolicy: Delete",
    );
    let owned = sample_snapshot(&deleted_with_it, SnapshotComponent::Electrs);
    assert_eq!(
        owned.metadata.name.as_deref(),
        Some("main-electrs-202611290400")
    );
    let owner = &owned.metadata.owner_references.as_ref().expect("owned")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("BlockSight", "bs-uid")
    );
}

/// kube-validate (../shared/tools) checks the object against the upstream VolumeSnapshot
/// CRD; skipped, saying so, when the tool or its Python packages are not there.
#[test]
fn the_volume_snapshot_validates_against_the_upstream_crd() {
    let shared = std::env::var("SHARED_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared").to_owned());
    let tool = std::path::Path::new(&shared).join("tools/kube-validate");
    if !tool.exists() {
        eprintln!("SKIPPED: no kube-validate at {}", tool.display());
        return;
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    let python = if std::path::Path::new(venv).exists() {
        venv
    } else {
        "python3"
    };
    let dir = std::env::temp_dir().join(format!("blocksight-vs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // JSON, as the operator sends it (YAML would turn the slot annotation into a timestamp).
    let file = dir.join("volumesnapshots.json");
    let items: Vec<Value> = [SnapshotComponent::Bitcoind, SnapshotComponent::Electrs]
        .into_iter()
        .map(|c| serde_json::to_value(sample_snapshot(SNAPSHOTTED, c)).unwrap())
        .collect();
    let list =
        |items: &[Value]| json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    std::fs::write(&file, list(&items)).unwrap();
    let out = std::process::Command::new(python)
        .arg(&tool)
        .arg(&file)
        .output()
        .expect("runs kube-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.code() == Some(2) && text.contains("missing dependency") {
        eprintln!("SKIPPED: kube-validate's Python packages are missing ({python}): {text}");
        return;
    }
    assert!(out.status.success(), "{text}");
    assert!(text.contains("2 passed, 0 failed"), "{text}");
    // And a broken one is refused, so the check can fail.
    let mut broken = items[0].clone();
    broken["spec"]["source"] = json!({"persistentVolumeClaim": "data-main-bitcoind-0"});
    std::fs::write(&file, list(&[broken])).unwrap();
    let out = std::process::Command::new(python)
        .arg(&tool)
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a malformed VolumeSnapshot is refused"
    );
}

/// A cached VolumeSnapshot of `component`, created at `created`.
fn existing(
    bs: &BlockSight,
    component: SnapshotComponent,
    slot: &str,
    created: &str,
    status: Value,
) -> DynamicObject {
    let valid = validate::validate(bs).unwrap();
    let settings = valid.volume_snapshots.clone().unwrap();
    let mut object = volume_snapshot::build(&valid, &settings, component, ts(slot));
    object.metadata.creation_timestamp = Some(Time(ts(created)));
    object.metadata.uid = Some(format!("uid-{slot}"));
    object.data["status"] = status;
    object
}

fn snapshot_calls(calls: &[Call]) -> Vec<&Call> {
    calls
        .iter()
        .filter(|c| c.uri.starts_with(SNAPSHOTS_PATH))
        .collect()
}

/// Everything but snapshots, status and events: must stay empty in these scenarios.
fn other_writes(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| {
            !c.uri.starts_with(SNAPSHOTS_PATH)
                && !c.line().ends_with("/status")
                && !c.line().contains("/events")
        })
        .map(Call::line)
        .collect()
}

fn status_of(calls: &[Call]) -> Value {
    calls
        .iter()
        .rev()
        .find(|c| c.line().ends_with("/status"))
        .map(|c| c.body["status"].clone())
        .expect("a status write")
}

fn clock(at: &str) -> blocksight_operator::controller::shared::context::Clock {
    let at = ts(at);
    Arc::new(move || at)
}

#[tokio::test]
async fn a_due_slot_creates_exactly_one_snapshot_per_volume_and_requeues_at_the_next_slot() {
    let bs = blocksight(SNAPSHOTTED);
    let (caches, mut writers) = caches();
    writers.converge(&bs, true);
    // A Sunday, half a minute after the 04:00 slot; last week's snapshots exist.
    for component in [SnapshotComponent::Bitcoind, SnapshotComponent::Electrs] {
        writers
            .volume_snapshots
            .apply_watcher_event(&watcher::Event::Apply(existing(
                &bs,
                component,
                "2026-11-22T04:00:00Z",
                "2026-11-22T04:00:02Z",
                json!({"readyToUse": true, "creationTime": "2026-11-22T04:00:03Z"}),
            )));
    }
    let h = harness_with(caches, vec![], true, clock("2026-11-29T04:00:30Z"));
    let action = h.reconcile(&bs).await.expect("reconciled");
    let calls = h.take_calls();

    let snapshots = snapshot_calls(&calls);
    assert_eq!(snapshots.len(), 2, "{snapshots:#?}");
    let valid = validate::validate(&bs).unwrap();
    let settings = valid.volume_snapshots.clone().unwrap();
    for (call, component) in snapshots
        .iter()
        .zip([SnapshotComponent::Bitcoind, SnapshotComponent::Electrs])
    {
        assert_eq!(call.method, "POST");
        assert_eq!(
            call.uri,
            format!("{SNAPSHOTS_PATH}?&fieldManager=blocksight-operator")
        );
        let expected =
            volume_snapshot::build(&valid, &settings, component, ts("2026-11-29T04:00:00Z"));
        assert_eq!(call.body, serde_json::to_value(&expected).unwrap());
    }
    assert_eq!(
        snapshots[0].body["metadata"]["name"],
        "main-bitcoind-202611290400"
    );
    assert_eq!(other_writes(&calls), Vec::<String>::new());

    let status = status_of(&calls);
    assert_eq!(
        status["volumeSnapshots"][0],
        json!({
            "component": "bitcoind",
            "lastSnapshot": "main-bitcoind-202611290400",
            "lastReadyTime": "2026-11-22T04:00:03Z",
            "nextScheduled": "2026-12-06T04:00:00Z"
        })
    );
    let condition = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "VolumeSnapshotsScheduled")
        .expect("condition");
    assert_eq!(
        (condition["status"].as_str(), condition["reason"].as_str()),
        (Some("True"), Some("Scheduled"))
    );
    // The resync (300 s) comes before next Sunday.
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(300))
    );
    let metrics = h.ctx.metrics.encode();
    assert!(
        metrics.contains(
            "blocksight_volume_snapshot_last_ready_timestamp_seconds{namespace=\"default\",blocksight=\"main\",component=\"bitcoind\"} 1795320003"
        ),
        "{metrics}"
    );

    // The same reconcile again before the watch delivers them: no second create.
    h.reconcile(&bs).await.expect("reconciled");
    assert_eq!(snapshot_calls(&h.take_calls()).len(), 0);
}

#[tokio::test]
async fn nothing_is_taken_between_slots_and_the_requeue_waits_for_the_next_one() {
    let bs = blocksight(SNAPSHOTTED);
    let (caches, mut writers) = caches();
    writers.converge(&bs, true);
    for component in [SnapshotComponent::Bitcoind, SnapshotComponent::Electrs] {
        writers
            .volume_snapshots
            .apply_watcher_event(&watcher::Event::Apply(existing(
                &bs,
                component,
                "2026-11-29T04:00:00Z",
                "2026-11-29T04:00:01Z",
                json!({"readyToUse": false}),
            )));
    }
    // Two minutes before next Sunday's slot.
    let h = harness_with(caches, vec![], true, clock("2026-12-06T03:58:00Z"));
    let action = h.reconcile(&bs).await.expect("reconciled");
    let calls = h.take_calls();
    assert!(snapshot_calls(&calls).is_empty(), "{calls:#?}");
    assert_eq!(other_writes(&calls), Vec::<String>::new());
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(121))
    );
}

#[tokio::test]
async fn snapshots_beyond_keep_last_are_deleted_oldest_first() {
    let bs = blocksight(SNAPSHOTTED);
    let (caches, mut writers) = caches();
    writers.converge(&bs, true);
    // keepLast 2; four ready bitcoind snapshots, the newest covering the latest slot.
    for day in ["08", "15", "22", "29"] {
        writers
            .volume_snapshots
            .apply_watcher_event(&watcher::Event::Apply(existing(
                &bs,
                SnapshotComponent::Bitcoind,
                &format!("2026-11-{day}T04:00:00Z"),
                &format!("2026-11-{day}T04:00:01Z"),
                json!({"readyToUse": true}),
            )));
    }
    // electrs' newest attempt failed: a Warning Event, and the condition says so.
    writers
        .volume_snapshots
        .apply_watcher_event(&watcher::Event::Apply(existing(
            &bs,
            SnapshotComponent::Electrs,
            "2026-11-29T04:00:00Z",
            "2026-11-29T04:00:01Z",
            json!({"readyToUse": false, "error": {"message": "snapshot quota exceeded"}}),
        )));
    let h = harness_with(caches, vec![], true, clock("2026-11-30T10:00:00Z"));
    h.reconcile(&bs).await.expect("reconciled");
    let calls = h.take_calls();
    let lines: Vec<String> = snapshot_calls(&calls).iter().map(|c| c.line()).collect();
    assert_eq!(
        lines,
        [
            format!("DELETE {SNAPSHOTS_PATH}/main-bitcoind-202611080400"),
            format!("DELETE {SNAPSHOTS_PATH}/main-bitcoind-202611150400"),
        ]
    );
    assert_eq!(other_writes(&calls), Vec::<String>::new());
    let warning = calls
        .iter()
        .find(|c| c.line().contains("/events") && c.body["reason"] == "VolumeSnapshotFailed")
        .expect("a Warning Event about the failed snapshot");
    assert_eq!(warning.body["type"], "Warning");
    assert!(
        warning.body["note"]
            .as_str()
            .unwrap()
            .contains("main-electrs-202611290400 failed: snapshot quota exceeded")
    );
    let status = status_of(&calls);
    let condition = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "VolumeSnapshotsScheduled")
        .unwrap();
    assert_eq!(
        (condition["status"].as_str(), condition["reason"].as_str()),
        (Some("False"), Some("SnapshotFailed"))
    );
}

#[tokio::test]
async fn without_the_snapshot_api_the_condition_says_so_and_nothing_is_sent() {
    let bs = blocksight(SNAPSHOTTED);
    let (caches, mut writers) = caches();
    writers.converge(&bs, true);
    let h = harness_with(caches, vec![], false, clock("2026-11-29T04:00:30Z"));
    h.reconcile(&bs).await.expect("reconciled");
    let calls = h.take_calls();
    assert!(snapshot_calls(&calls).is_empty());
    assert_eq!(other_writes(&calls), Vec::<String>::new());
    let status = status_of(&calls);
    let condition = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "VolumeSnapshotsScheduled")
        .unwrap();
    assert_eq!(
        (condition["status"].as_str(), condition["reason"].as_str()),
        (Some("False"), Some("ApiNotServed"))
    );
    assert!(calls.iter().any(|c| c.line().contains("/events")
        && c.body["reason"] == "VolumeSnapshotApiMissing"
        && c.body["type"] == "Warning"));
    assert_eq!(status.get("volumeSnapshots"), None);
}

#[tokio::test]
async fn a_volume_whose_pod_is_not_ready_is_not_snapshotted_yet() {
    let bs = blocksight(SNAPSHOTTED);
    let (caches, mut writers) = caches();
    writers.converge(&bs, false);
    let h = harness_with(caches, vec![], true, clock("2026-11-29T04:00:30Z"));
    h.reconcile(&bs).await.expect("reconciled");
    assert!(snapshot_calls(&h.take_calls()).is_empty());
}

#[test]
fn the_operator_may_create_and_delete_snapshots_but_not_change_them() {
    use blocksight_operator::rbac::allows;
    for verb in ["list", "watch", "create", "delete"] {
        assert!(
            allows("snapshot.storage.k8s.io", "volumesnapshots", verb),
            "{verb}"
        );
    }
    assert!(!allows(
        "snapshot.storage.k8s.io",
        "volumesnapshots",
        "patch"
    ));
    assert!(!allows(
        "snapshot.storage.k8s.io",
        "volumesnapshotcontents",
        "delete"
    ));
}

#[test]
fn defaults_take_both_volumes_keep_three_and_skip_a_disabled_electrs() {
    let snapshots = |yaml: &str| {
        validate::validate(&blocksight(yaml))
            .expect("valid")
            .volume_snapshots
    };
    let base = "apiVersion: blocksight.live/v1alpha1\nkind: BlockSight\nmetadata: {name: m}\nspec:\n  network: signet\n";
    let both = snapshots(&format!(
        "{base}  volumeSnapshots: {{schedule: '@weekly'}}\n"
    ))
    .unwrap();
    assert_eq!(
        both.components,
        [SnapshotComponent::Bitcoind, SnapshotComponent::Electrs]
    );
    assert_eq!((both.keep_last, both.class_name), (3, None));
    assert_eq!(both.schedule.as_str(), "@weekly");
    let no_electrs = snapshots(&format!(
        "{base}  electrs: {{enabled: false}}\n  volumeSnapshots: {{schedule: '@weekly'}}\n"
    ))
    .unwrap();
    assert_eq!(no_electrs.components, [SnapshotComponent::Bitcoind]);
    let off = snapshots(&format!(
        "{base}  volumeSnapshots: {{enabled: false, schedule: '@weekly'}}\n"
    ));
    assert_eq!(off, None);
    assert_eq!(snapshots(base), None);
}
