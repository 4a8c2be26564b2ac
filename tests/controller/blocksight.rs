//! The controller against a scripted API server: each scenario asserts the exact requests
//! (method, path, query, body) a reconciliation sends, and that it sends no others.

use blocksight_operator::crd::BlockSight;
use blocksight_operator::desired::{self, BuildSettings, Child, ChildKind};
use blocksight_operator::validate;
use blocksight_testkit::mock_api::{self, Call, blocksight, caches, child_path as path, harness};

const REGTEST: &str = include_str!("../../examples/regtest.yaml");
const QUERY: &str = "?&force=true&fieldManager=blocksight-operator";

/// What the controller applies while the API is held at zero (database and cache not ready).
fn desired_gated(bs: &BlockSight) -> Vec<Child> {
    let gates = desired::Gates { api_serving: false };
    desired::build_gated(
        &validate::validate(bs).expect("valid"),
        &BuildSettings::default(),
        gates,
    )
    .children
}

/// The chain probes report every service up and synced.
fn chain_synced(h: &mock_api::Harness, bs: &BlockSight) {
    let key = (
        bs.metadata.namespace.clone().unwrap(),
        bs.metadata.name.clone().unwrap(),
    );
    h.ctx
        .poller
        .publish(key, mock_api::synced_observation(bs.spec.electrs.enabled));
}

fn desired(bs: &BlockSight) -> Vec<Child> {
    desired::build(
        &validate::validate(bs).expect("valid"),
        &BuildSettings::default(),
    )
    .children
}

fn status_path(name: &str) -> String {
    format!("/apis/blocksight.live/v1alpha1/namespaces/default/blocksights/{name}/status")
}

fn lines(calls: &[Call]) -> Vec<String> {
    calls.iter().map(Call::line).collect()
}

#[tokio::test]
async fn first_reconcile_creates_credentials_then_applies_every_child_in_order_then_status() {
    let bs = blocksight(REGTEST);
    let (caches, _writers) = caches();
    let h = harness(caches, vec![]);
    h.reconcile(&bs).await.expect("reconciled");
    let calls = h.take_calls();

    let mut expected: Vec<String> = [
        "dev-bitcoind-rpc",
        "dev-postgres-credentials",
        "dev-redis-credentials",
        "dev-grafana-credentials",
    ]
    .iter()
    .map(|_| "POST /api/v1/namespaces/default/secrets".to_owned())
    .collect();
    let children = desired_gated(&bs);
    expected.extend(
        children
            .iter()
            .map(|c| format!("PATCH {}", path(c.kind(), c.name()))),
    );
    expected.push(format!("PATCH {}", status_path("dev")));
    assert_eq!(lines(&calls), expected);

    // Credentials: created (never applied), with the generated values and our labels.
    let secret_names: Vec<&str> = calls[..4]
        .iter()
        .map(|c| c.body["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        secret_names,
        [
            "dev-bitcoind-rpc",
            "dev-postgres-credentials",
            "dev-redis-credentials",
            "dev-grafana-credentials"
        ]
    );
    assert!(
        calls[0].body["stringData"]["rpcauth.conf"]
            .as_str()
            .unwrap()
            .starts_with("rpcauth=blocksight:")
    );
    assert_eq!(
        calls[0].uri,
        "/api/v1/namespaces/default/secrets?&fieldManager=blocksight-operator"
    );

    // Children: server-side apply with force and our one field manager, body = the built object.
    for (call, child) in calls[4..calls.len() - 1].iter().zip(&children) {
        assert_eq!(
            call.uri,
            format!("{}{QUERY}", path(child.kind(), child.name()))
        );
        assert_eq!(call.body, child.to_value());
        // deletionPolicy Delete: children carry a controller reference to the BlockSight.
        assert_eq!(call.body["metadata"]["ownerReferences"][0]["uid"], "bs-uid");
        assert_eq!(
            call.body["metadata"]["ownerReferences"][0]["controller"],
            true
        );
    }
    // ConfigMaps, Services, ServiceAccounts and volumes strictly before the workloads that
    // use them.
    let first_workload = children
        .iter()
        .position(|c| c.kind() == ChildKind::StatefulSet)
        .unwrap();
    assert!(children[..first_workload].iter().all(|c| matches!(
        c.kind(),
        ChildKind::ConfigMap
            | ChildKind::Service
            | ChildKind::NetworkPolicy
            | ChildKind::ServiceAccount
            | ChildKind::PersistentVolumeClaim
    )));

    // Status: nothing is ready yet, with observedGeneration everywhere.
    let status_call = calls.last().unwrap();
    assert_eq!(status_call.uri, format!("{}{QUERY}", status_path("dev")));
    let status = &status_call.body["status"];
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["phase"], "Provisioning");
    let ready = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["observedGeneration"], 1);
    assert!(
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["observedGeneration"] == 1)
    );
    assert_eq!(status["components"]["bitcoind"]["desiredReplicas"], 1);
    // Nothing answers yet: the API is held at zero replicas and the chain conditions say why.
    let api = calls
        .iter()
        .find(|c| c.line() == format!("PATCH {}", path(ChildKind::Deployment, "dev-api")))
        .unwrap();
    assert_eq!(api.body["spec"]["replicas"], 0);
    let database = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "DatabaseReady")
        .unwrap();
    assert_eq!(
        (database["status"].as_str(), database["reason"].as_str()),
        (Some("Unknown"), Some("NotProbedYet"))
    );
}

/// `bs` with the status the controller last wrote (as the watch would deliver it).
fn with_written_status(mut bs: BlockSight, calls: &[Call]) -> BlockSight {
    let status = calls
        .iter()
        .rev()
        .find(|c| c.line().ends_with("/status"))
        .expect("a status write");
    bs.status =
        Some(serde_json::from_value(status.body["status"].clone()).expect("status deserializes"));
    bs
}

#[tokio::test]
async fn steady_state_sends_no_request_at_all() {
    let bs = blocksight(REGTEST);
    let (caches, mut writers) = caches();
    writers.converge(&bs, true);
    let h = harness(caches, vec![]);
    chain_synced(&h, &bs);

    // The cluster matches; only the status (never written yet) is new.
    h.reconcile(&bs).await.expect("reconciled");
    let calls = h.take_calls();
    let event = "POST /apis/events.k8s.io/v1/namespaces/default/events".to_owned();
    assert_eq!(
        lines(&calls),
        [
            format!("PATCH {}", status_path("dev")),
            event.clone(),
            event.clone(),
            event
        ]
    );
    let status = &calls[0].body["status"];
    assert_eq!(status["phase"], "Ready");
    let events: Vec<(&str, &str)> = calls[1..]
        .iter()
        .map(|c| {
            (
                c.body["type"].as_str().unwrap(),
                c.body["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("Normal", "Ready"),
            ("Normal", "ChainSynced"),
            ("Normal", "IndexSynced")
        ]
    );

    // With that status in place, reconciling again (a resync, a restarted operator with fresh
    // in-memory state) costs nothing.
    let bs = with_written_status(bs, &calls);
    h.reconcile(&bs).await.expect("reconciled");
    assert_eq!(h.take_calls(), vec![]);
    let restarted = harness(h.ctx.caches.clone(), vec![]);
    chain_synced(&restarted, &bs);
    restarted.reconcile(&bs).await.expect("reconciled");
    assert_eq!(restarted.take_calls(), vec![]);
}

#[tokio::test]
async fn a_child_changed_by_hand_is_applied_again_and_only_that_child() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    let bs = blocksight(REGTEST);
    let (caches, mut writers) = caches();
    writers.converge(&bs, true);
    let children = desired(&bs);
    let api = children
        .iter()
        .find(|c| c.kind() == ChildKind::Deployment && c.name() == "dev-api")
        .unwrap();

    // `kubectl scale`/`edit` took spec.replicas from us.
    let mut edited = api.clone();
    let Child::Deployment(d) = &mut edited else {
        unreachable!()
    };
    d.spec.replicas = Some(5);
    let mut meta = mock_api::applied_meta(api);
    meta.managed_fields
        .as_mut()
        .unwrap()
        .push(ManagedFieldsEntry {
            manager: Some("kubectl-edit".into()),
            operation: Some("Update".into()),
            fields_v1: Some(FieldsV1(serde_json::json!({"f:spec": {"f:replicas": {}}}))),
            ..Default::default()
        });
    let mut cached = d.clone();
    cached.metadata = meta;
    cached.status = Some(k8s_openapi::api::apps::v1::DeploymentStatus {
        observed_generation: Some(1),
        replicas: Some(1),
        ready_replicas: Some(1),
        updated_replicas: Some(1),
        ..Default::default()
    });
    writers
        .deployments
        .apply_watcher_event(&kube::runtime::watcher::Event::Apply(cached));

    let h = harness(caches, vec![]);
    chain_synced(&h, &bs);
    let steady = {
        // Status as a converged controller would have written it.
        let probe = harness(mock_api::caches_like(&bs), vec![]);
        chain_synced(&probe, &bs);
        probe.reconcile(&bs).await.unwrap();
        with_written_status(bs.clone(), &probe.take_calls())
    };
    h.reconcile(&steady).await.expect("reconciled");
    let calls = h.take_calls();
    assert_eq!(
        lines(&calls),
        [format!("PATCH {}", path(ChildKind::Deployment, "dev-api"))]
    );
    assert_eq!(
        calls[0].body["spec"]["replicas"], 1,
        "the spec's replica count is restored"
    );
}

#[tokio::test]
async fn disabling_a_component_deletes_its_objects_and_updates_what_referenced_it() {
    let bs = blocksight(REGTEST);
    let (caches, mut writers) = caches();
    writers.converge(&bs, true);
    let before = desired(&bs);
    let h = harness(caches, vec![]);
    chain_synced(&h, &bs);
    h.reconcile(&bs).await.unwrap();
    let bs = with_written_status(bs, &h.take_calls());

    let mut disabled = bs.clone();
    disabled.spec.electrs.enabled = false;
    disabled.metadata.generation = Some(2);
    h.reconcile(&disabled).await.expect("reconciled");
    let calls = h.take_calls();

    let after = desired(&disabled);
    let changed: Vec<String> = after
        .iter()
        .filter(|c| !before.contains(c))
        .map(|c| format!("PATCH {}", path(c.kind(), c.name())))
        .collect();
    // The API loses ELECTRUM_URL, Prometheus its electrs job, and the NetworkPolicies of
    // bitcoind, the API and Prometheus their flows to and from electrs; nothing else changes.
    assert_eq!(
        changed,
        [
            format!(
                "PATCH {}",
                path(ChildKind::ConfigMap, "dev-prometheus-config")
            ),
            format!("PATCH {}", path(ChildKind::NetworkPolicy, "dev-bitcoind")),
            format!("PATCH {}", path(ChildKind::NetworkPolicy, "dev-api")),
            format!("PATCH {}", path(ChildKind::NetworkPolicy, "dev-prometheus")),
            format!("PATCH {}", path(ChildKind::StatefulSet, "dev-prometheus")),
            format!("PATCH {}", path(ChildKind::Deployment, "dev-api")),
        ]
    );
    let mut expected = changed.clone();
    expected.push(format!(
        "DELETE {}",
        path(ChildKind::Service, "dev-electrs")
    ));
    expected.push(format!(
        "DELETE {}",
        path(ChildKind::NetworkPolicy, "dev-electrs")
    ));
    expected.push(format!(
        "DELETE {}",
        path(ChildKind::StatefulSet, "dev-electrs")
    ));
    expected.push(format!("PATCH {}", status_path("dev")));
    assert_eq!(lines(&calls), expected);
    // Background deletion: the StatefulSet's PVCs follow its retention policy (deletionPolicy).
    let delete = calls
        .iter()
        .find(|c| c.line() == format!("DELETE {}", path(ChildKind::StatefulSet, "dev-electrs")))
        .unwrap();
    assert_eq!(delete.body["propagationPolicy"], "Background");
    let status = &calls.last().unwrap().body["status"];
    assert_eq!(status["observedGeneration"], 2);
    assert!(status["components"].get("electrs").is_none());
}

#[tokio::test]
async fn an_invalid_spec_writes_only_status_and_one_warning_and_touches_no_child() {
    let mut bs = blocksight(REGTEST);
    bs.spec.bitcoind.prune = Some(1000);
    let (caches, _writers) = caches();
    let h = harness(caches, vec![]);
    let error = h
        .reconcile(&bs)
        .await
        .expect_err("invalid spec is an error");
    assert_eq!(error.category(), "invalid_spec");
    let calls = h.take_calls();
    assert_eq!(
        lines(&calls),
        [
            format!("PATCH {}", status_path("dev")),
            "POST /apis/events.k8s.io/v1/namespaces/default/events".to_owned()
        ]
    );
    let status = &calls[0].body["status"];
    assert_eq!(status["phase"], "Pending");
    let invalid = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "InvalidSpec")
        .unwrap();
    assert_eq!(invalid["status"], "True");
    assert!(
        invalid["message"]
            .as_str()
            .unwrap()
            .contains("spec.bitcoind.prune"),
        "{invalid}"
    );
    assert_eq!(calls[1].body["type"], "Warning");
    assert_eq!(calls[1].body["reason"], "InvalidSpec");

    // The same invalid spec again: no status change, no second event.
    let bs = with_written_status(bs, &calls);
    let _ = h.reconcile(&bs).await;
    assert_eq!(h.take_calls(), vec![]);
}

#[tokio::test]
async fn paused_writes_no_child_even_when_the_cluster_differs() {
    let mut bs = blocksight(REGTEST);
    bs.spec.paused = true;
    let (caches, _writers) = caches();
    let h = harness(caches, vec![]);
    h.reconcile(&bs).await.expect("reconciled");
    let calls = h.take_calls();
    assert_eq!(
        lines(&calls),
        [
            format!("PATCH {}", status_path("dev")),
            "POST /apis/events.k8s.io/v1/namespaces/default/events".to_owned()
        ]
    );
    assert_eq!(calls[0].body["status"]["phase"], "Paused");
    let paused = calls[0].body["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Paused")
        .cloned()
        .unwrap();
    assert_eq!(paused["status"], "True");
    let bs = with_written_status(bs, &calls);
    h.reconcile(&bs).await.expect("reconciled");
    assert_eq!(h.take_calls(), vec![]);
}

#[tokio::test]
async fn a_server_error_fails_the_step_reports_degraded_and_the_retry_does_not_repeat_writes() {
    let bs = blocksight(REGTEST);
    let (caches, _writers) = caches();
    let fault = (
        format!("PATCH {}", path(ChildKind::StatefulSet, "dev-bitcoind")),
        503,
    );
    let h = harness(caches, vec![fault]);
    let error = h.reconcile(&bs).await.expect_err("apply failed");
    assert_eq!(error.category(), "apply");
    let calls = h.take_calls();
    // One workload's failure does not stop the others: every child is tried once.
    assert_eq!(
        calls
            .iter()
            .filter(
                |c| c.line() == format!("PATCH {}", path(ChildKind::StatefulSet, "dev-bitcoind"))
            )
            .count(),
        1
    );
    assert!(
        calls
            .iter()
            .any(|c| c.line() == format!("PATCH {}", path(ChildKind::StatefulSet, "dev-electrs")))
    );
    let n = calls.len();
    assert_eq!(calls[n - 2].line(), format!("PATCH {}", status_path("dev")));
    let status = &calls[n - 2].body["status"];
    assert_eq!(status["phase"], "Degraded");
    let degraded = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap();
    assert_eq!(degraded["reason"], "ApplyFailed");
    assert_eq!(calls[n - 1].body["type"], "Warning");
    assert_eq!(calls[n - 1].body["reason"], "ApplyFailed");
    // Backoff grows with consecutive failures.
    let action = blocksight_operator::controller::error_policy(
        std::sync::Arc::new(kube::core::DeserializeGuard(Ok(bs.clone()))),
        &error,
        h.ctx.clone(),
    );
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(5))
    );

    // The retry (the caches have not caught up yet) re-sends only what failed: no Secret is
    // created twice, no successful apply repeated.
    h.faults.lock().unwrap().clear();
    let bs = with_written_status(bs, &calls);
    h.reconcile(&bs).await.expect("reconciled");
    let again = h.take_calls();
    assert!(
        !again
            .iter()
            .any(|c| c.method == "POST" && c.line().ends_with("/secrets")),
        "{:?}",
        lines(&again)
    );
    assert_eq!(
        again.first().unwrap().line(),
        format!("PATCH {}", path(ChildKind::StatefulSet, "dev-bitcoind"))
    );
}

#[tokio::test]
async fn a_failed_configmap_holds_back_every_workload_but_not_the_other_configuration() {
    let bs = blocksight(REGTEST);
    let (caches, _writers) = caches();
    let fault = (
        format!(
            "PATCH {}",
            path(ChildKind::ConfigMap, "dev-bitcoind-config")
        ),
        503,
    );
    let h = harness(caches, vec![fault]);
    let error = h.reconcile(&bs).await.expect_err("apply failed");
    assert_eq!(error.category(), "apply");
    let calls = lines(&h.take_calls());
    assert!(
        calls
            .iter()
            .any(|c| c == &format!("PATCH {}", path(ChildKind::Service, "dev-bitcoind"))),
        "the rest of the configuration is applied: {calls:?}"
    );
    assert!(
        !calls.iter().any(|c| c.contains("/statefulsets/")
            || c.contains("/deployments/")
            || c.contains("/cronjobs/")),
        "no workload rolls onto missing configuration: {calls:?}"
    );
}

#[tokio::test]
async fn with_prometheus_operator_the_monitors_are_applied_after_the_workloads() {
    let bs = blocksight(REGTEST);
    let (caches, _writers) = caches();
    let mut h = harness(caches, vec![]);
    std::sync::Arc::get_mut(&mut h.ctx)
        .unwrap()
        .settings
        .prometheus_operator_crds = true;
    h.reconcile(&bs).await.expect("reconciled");
    let calls = lines(&h.take_calls());
    let tail: Vec<&str> = calls
        .iter()
        .rev()
        .skip(1)
        .take(5)
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "PATCH /apis/monitoring.coreos.com/v1/namespaces/default/podmonitors/dev-api",
            "PATCH /apis/monitoring.coreos.com/v1/namespaces/default/servicemonitors/dev-grafana",
            "PATCH /apis/monitoring.coreos.com/v1/namespaces/default/servicemonitors/dev-postgres",
            "PATCH /apis/monitoring.coreos.com/v1/namespaces/default/servicemonitors/dev-electrs",
            "PATCH /apis/monitoring.coreos.com/v1/namespaces/default/servicemonitors/dev-redis",
        ]
    );
}

#[tokio::test]
async fn the_api_starts_serving_once_database_and_cache_are_ready_and_keeps_serving() {
    let bs = blocksight(REGTEST);
    let (caches, mut writers) = caches();
    // Everything exists, the API held at zero.
    for child in desired_gated(&bs) {
        writers.put(&child, true);
    }
    for secret in [
        "dev-bitcoind-rpc",
        "dev-postgres-credentials",
        "dev-redis-credentials",
        "dev-grafana-credentials",
    ] {
        writers.put_secret(secret, "default");
    }
    let h = harness(caches, vec![]);
    // The node is still in initial block download, but the database and the cache answer.
    let mut chain = mock_api::synced_observation(true);
    chain.bitcoind.last.as_mut().unwrap().initial_block_download = true;
    chain.bitcoind.last.as_mut().unwrap().headers = 900_000;
    h.ctx
        .poller
        .publish(("default".into(), "dev".into()), chain);
    h.reconcile(&bs).await.expect("reconciled");
    let calls = h.take_calls();
    assert_eq!(
        lines(&calls),
        [
            format!("PATCH {}", path(ChildKind::Deployment, "dev-api")),
            format!("PATCH {}", status_path("dev"))
        ]
    );
    assert_eq!(
        calls[0].body["spec"]["replicas"], 1,
        "spec.api.replicas of the example"
    );
    let status = &calls[1].body["status"];
    assert_eq!(status["phase"], "Provisioning", "the API is scaling up");
    assert_eq!(status["chain"]["initialBlockDownload"], true);

    // Once the API runs, only the chain is missing: Syncing.
    let bs = with_written_status(bs, &calls);
    let api = desired(&bs)
        .into_iter()
        .find(|c| c.name() == "dev-api" && c.kind() == ChildKind::Deployment)
        .unwrap();
    writers.put(&api, true);
    h.reconcile(&bs).await.expect("reconciled");
    let calls = h.take_calls();
    assert_eq!(lines(&calls), [format!("PATCH {}", status_path("dev"))]);
    let status = &calls[0].body["status"];
    assert_eq!(status["phase"], "Syncing");
    let ready = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["message"], "waiting for ChainSynced, IndexSynced");
}

#[tokio::test]
async fn chain_sync_and_an_unreachable_service_are_reported_once_as_events() {
    use blocksight_operator::chain::UNREACHABLE_AFTER;
    let bs = blocksight(REGTEST);
    let (caches, mut writers) = caches();
    writers.converge(&bs, true);
    let h = harness(caches, vec![]);
    let key = ("default".to_owned(), "dev".to_owned());
    let mut chain = mock_api::synced_observation(true);
    chain.bitcoind.last.as_mut().unwrap().initial_block_download = true;
    h.ctx.poller.publish(key.clone(), chain.clone());
    h.reconcile(&bs).await.unwrap();
    let bs = with_written_status(bs, &h.take_calls());

    // IBD completes: status and one Normal ChainSynced event (and Ready).
    h.ctx
        .poller
        .publish(key.clone(), mock_api::synced_observation(true));
    h.reconcile(&bs).await.unwrap();
    let calls = h.take_calls();
    let reasons: Vec<&str> = calls
        .iter()
        .filter(|c| c.line().ends_with("/events"))
        .map(|c| c.body["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        ["Ready", "ChainSynced", "IndexSynced"],
        "electrs follows once the chain is synced"
    );
    let bs = with_written_status(bs, &calls);

    // Redis stops answering for several polls: Degraded, CacheReady Unknown, a Warning.
    let mut chain = mock_api::synced_observation(true);
    for _ in 0..UNREACHABLE_AFTER {
        chain
            .redis
            .record(Err("unreachable: connection refused".into()));
    }
    h.ctx.poller.publish(key.clone(), chain);
    h.reconcile(&bs).await.unwrap();
    let calls = h.take_calls();
    let status = &calls
        .iter()
        .find(|c| c.line().ends_with("/status"))
        .unwrap()
        .body["status"];
    assert_eq!(status["phase"], "Degraded");
    let cache = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "CacheReady")
        .unwrap();
    assert_eq!(
        (cache["status"].as_str(), cache["reason"].as_str()),
        (Some("Unknown"), Some("Unreachable"))
    );
    let warnings: Vec<&str> = calls
        .iter()
        .filter(|c| c.line().ends_with("/events") && c.body["type"] == "Warning")
        .map(|c| c.body["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        warnings,
        ["ServiceUnreachable"],
        "one Warning, though CacheReady and Degraded both flipped"
    );
    let warning = calls
        .iter()
        .find(|c| c.line().ends_with("/events") && c.body["type"] == "Warning")
        .unwrap();
    assert!(
        warning.body["note"]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{}",
        warning.body
    );
    // The API keeps serving through the outage.
    assert!(
        !calls
            .iter()
            .any(|c| c.line() == format!("PATCH {}", path(ChildKind::Deployment, "dev-api")))
    );
}

#[tokio::test]
async fn rotating_credentials_rewrites_them_keeps_the_superuser_and_rolls_their_consumers() {
    use k8s_openapi::ByteString;
    let bs = blocksight(REGTEST);
    let (caches, mut writers) = caches();
    writers.converge(&bs, true);
    // The PostgreSQL superuser password the data directory was initialised with.
    let mut postgres = k8s_openapi::api::core::v1::Secret::default();
    postgres.metadata.name = Some("dev-postgres-credentials".into());
    postgres.metadata.namespace = Some("default".into());
    postgres.data = Some(
        [(
            "superuser-password".to_owned(),
            ByteString(b"initial-superuser".to_vec()),
        )]
        .into(),
    );
    writers
        .secrets
        .apply_watcher_event(&kube::runtime::watcher::Event::Apply(postgres));
    let h = harness(caches, vec![]);
    chain_synced(&h, &bs);
    h.reconcile(&bs).await.unwrap();
    let bs = with_written_status(bs, &h.take_calls());

    let mut rotated = bs.clone();
    rotated.metadata.annotations = Some(
        [(
            "blocksight.live/rotate-credentials".to_owned(),
            "2026-11-26".to_owned(),
        )]
        .into(),
    );
    h.reconcile(&rotated).await.expect("reconciled");
    let calls = h.take_calls();
    let secrets: Vec<&Call> = calls
        .iter()
        .filter(|c| c.line().contains("/secrets/"))
        .collect();
    let names: Vec<&str> = secrets
        .iter()
        .map(|c| c.body["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "dev-bitcoind-rpc",
            "dev-postgres-credentials",
            "dev-redis-credentials",
            "dev-grafana-credentials"
        ]
    );
    assert!(
        secrets
            .iter()
            .all(|c| c.method == "PATCH" && c.uri.contains("force=true"))
    );
    let pg = secrets[1];
    assert_eq!(
        pg.body["data"]["superuser-password"], "aW5pdGlhbC1zdXBlcnVzZXI=",
        "base64 of the kept superuser password"
    );
    assert_eq!(
        pg.body["metadata"]["annotations"]["blocksight.live/credentials-rotation"],
        "2026-11-26"
    );
    let rolled: Vec<String> = calls
        .iter()
        .filter(|c| c.line().contains("/statefulsets/") || c.line().contains("/deployments/"))
        .map(|c| c.line().rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        rolled,
        [
            "dev-bitcoind",
            "dev-electrs",
            "dev-postgres",
            "dev-redis",
            "dev-api",
            "dev-grafana"
        ],
        "Prometheus reads no credential"
    );
    // Before the watch catches up, a second reconcile writes nothing again.
    h.reconcile(&rotated).await.expect("reconciled");
    assert!(
        !h.take_calls()
            .iter()
            .any(|c| c.line().contains("/secrets/"))
    );
}
