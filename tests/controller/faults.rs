//! Faults: a malformed object in the watch, the CRD missing at start, an operator restarted
//! in the middle of a reconcile, an API server that stops answering, secrets kept out of
//! the logs.

use std::sync::{Arc, Mutex};

use blocksight_operator::desired::{self, BuildSettings};
use blocksight_operator::runtime::{RunError, check_crd};
use blocksight_testkit::mock_api::{Call, HANG, blocksight, caches, child_path as path, harness};
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;

const REGTEST: &str = include_str!("../../examples/regtest.yaml");

#[tokio::test]
async fn a_malformed_blocksight_is_reported_and_skipped_without_a_request() {
    let (caches, _writers) = caches();
    let h = harness(caches, vec![]);
    // What the watch delivers for an object with wrong types (spec.network: 5).
    let raw = serde_json::json!({
        "apiVersion": "blocksight.live/v1alpha1", "kind": "BlockSight",
        "metadata": {"name": "broken", "namespace": "default", "uid": "u"},
        "spec": {"network": 5}
    });
    let guard: DeserializeGuard<blocksight_operator::crd::BlockSight> =
        serde_json::from_value(raw).unwrap();
    assert!(
        guard.0.is_err(),
        "the guard holds the error instead of failing the watch"
    );
    let action =
        blocksight_operator::controller::blocksight::reconcile(Arc::new(guard), h.ctx.clone())
            .await
            .expect("no error");
    assert_eq!(action, Action::await_change());
    assert_eq!(h.take_calls(), vec![]);
    assert!(
        h.ctx
            .metrics
            .encode()
            .contains("blocksight_reconcile_failures_total{category=\"malformed_object\"} 1")
    );
    // The next BlockSight is reconciled as usual.
    h.reconcile(&blocksight(REGTEST)).await.expect("reconciled");
    assert!(!h.take_calls().is_empty());
}

#[tokio::test]
async fn a_missing_crd_is_a_clear_error_with_its_own_exit_code() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        let (request, send) = handle.next_request().await.expect("a discovery request");
        assert_eq!(request.uri().path(), "/apis/blocksight.live/v1alpha1");
        let status = serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404});
        send.send_response(
            Response::builder()
                .status(404)
                .body(Body::from(serde_json::to_vec(&status).unwrap()))
                .unwrap(),
        );
    });
    let error = check_crd(&Client::new(service, "default"))
        .await
        .expect_err("no CRD");
    assert!(matches!(error, RunError::CrdMissing));
    assert_eq!(error.exit_code(), 3);
    assert!(
        error
            .to_string()
            .contains("blocksight crd | kubectl apply --server-side -f -"),
        "{error}"
    );
    server.await.unwrap();
}

/// The operator dies after applying part of the children; a new process, whose caches show
/// what was applied, sends exactly the rest.
#[tokio::test]
async fn an_operator_restarted_mid_reconcile_finishes_without_repeating_writes() {
    let bs = blocksight(REGTEST);
    let valid = blocksight_operator::validate::validate(&bs).unwrap();
    let gated = desired::build_gated(
        &valid,
        &BuildSettings::default(),
        desired::Gates { api_serving: false },
    )
    .children;
    let half = gated.len() / 2;
    let (caches, mut writers) = caches();
    for child in &gated[..half] {
        writers.put(child, false);
    }
    for secret in desired::secrets::generate(&valid, &mut rand::rng()) {
        writers.put_secret(secret.metadata.name.as_deref().unwrap(), "default");
    }
    let h = harness(caches, vec![]);
    h.reconcile(&bs).await.expect("reconciled");
    let calls = h.take_calls();
    let applied: Vec<String> = calls
        .iter()
        .filter(|c| c.method == "PATCH" && !c.line().ends_with("/status"))
        .map(Call::line)
        .collect();
    let rest: Vec<String> = gated[half..]
        .iter()
        .map(|c| format!("PATCH {}", path(c.kind(), c.name())))
        .collect();
    assert_eq!(applied, rest);
    assert!(
        !calls
            .iter()
            .any(|c| c.method == "POST" && c.line().ends_with("/secrets")),
        "no credentials regenerated"
    );
}

/// An apply the API server never answers fails the reconcile with category `timeout` after
/// the reconcile timeout (not never), reports it in status and an Event, is retried with
/// backoff, and the retry re-sends only what had not been answered.
#[tokio::test]
async fn an_apply_that_never_answers_times_out_reports_degraded_and_is_retried() {
    use std::time::{Duration, Instant};

    use blocksight_operator::desired::ChildKind;
    use kube::runtime::controller::Action;

    let bs = blocksight(REGTEST);
    let hung = format!("PATCH {}", path(ChildKind::StatefulSet, "dev-bitcoind"));
    let (caches, _writers) = caches();
    let mut h = harness(caches, vec![(hung.clone(), HANG)]);
    let timeout = Duration::from_millis(300);
    Arc::get_mut(&mut h.ctx).unwrap().reconcile_timeout = timeout;

    let started = Instant::now();
    let error = h.reconcile(&bs).await.expect_err("timed out");
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
    assert_eq!(error.category(), "timeout");
    assert_eq!(error.reason(), "Timeout");
    assert!(!error.is_permanent());
    assert_eq!(
        error.to_string(),
        "applying the children: the API server did not answer within 0.3s"
    );
    let calls = h.take_calls();
    let lines: Vec<String> = calls.iter().map(Call::line).collect();
    let at = lines
        .iter()
        .position(|l| *l == hung)
        .expect("the hung apply");
    // Nothing applied past the hung one; then the status says why, and an Event.
    let status_path = "/apis/blocksight.live/v1alpha1/namespaces/default/blocksights/dev/status";
    assert_eq!(
        lines[at + 1..],
        [
            format!("PATCH {status_path}"),
            "POST /apis/events.k8s.io/v1/namespaces/default/events".to_owned()
        ],
        "{lines:#?}"
    );
    let status = &calls[at + 1].body["status"];
    assert_eq!(status["phase"], "Degraded");
    let degraded = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Degraded")
        .unwrap();
    assert_eq!(degraded["reason"], "Timeout");
    assert!(
        degraded["message"]
            .as_str()
            .unwrap()
            .contains("did not answer"),
        "{degraded}"
    );
    assert_eq!(calls[at + 2].body["reason"], "Timeout");

    // Retried with the transient backoff, counted under its own category.
    let guard = || Arc::new(DeserializeGuard(Ok(bs.clone())));
    let policy = |e| blocksight_operator::controller::error_policy(guard(), e, h.ctx.clone());
    assert_eq!(policy(&error), Action::requeue(Duration::from_secs(5)));
    assert_eq!(policy(&error), Action::requeue(Duration::from_secs(10)));
    assert!(
        h.ctx
            .metrics
            .encode()
            .contains("blocksight_reconcile_failures_total{category=\"timeout\"} 2")
    );

    // The server answers again: the retry starts at the hung apply, writes nothing twice.
    h.faults.lock().unwrap().clear();
    let mut bs = bs.clone();
    bs.status = Some(serde_json::from_value(status.clone()).unwrap());
    h.reconcile(&bs).await.expect("reconciled");
    let again: Vec<String> = h.take_calls().iter().map(Call::line).collect();
    assert_eq!(again.first(), Some(&hung), "{again:#?}");
    for line in &lines[..at] {
        assert!(!again.contains(line), "{line} sent again");
    }
}

/// A writer that keeps everything the operator logs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn generated_secrets_never_reach_the_logs_or_events() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut bs = blocksight(REGTEST);
    let (caches, _writers) = caches();
    let h = harness(caches, vec![]);
    h.reconcile(&bs).await.expect("reconciled");
    let calls = h.take_calls();
    let values: Vec<String> = calls
        .iter()
        .filter(|c| c.line().ends_with("/secrets"))
        .flat_map(|c| {
            c.body["stringData"]
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|v| v.len() >= 20)
        .collect();
    assert!(values.len() >= 6);
    // An invalid spec next (a Warning event with a message).
    bs.spec.bitcoind.prune = Some(1000);
    let _ = h.reconcile(&bs).await;
    let events: Vec<String> = h
        .take_calls()
        .iter()
        .filter(|c| c.line().ends_with("/events"))
        .map(|c| c.body.to_string())
        .collect();
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("generated credentials"),
        "the log is captured: {logs:.200}"
    );
    for value in &values {
        assert!(!logs.contains(value.as_str()), "a secret value was logged");
        assert!(
            events.iter().all(|e| !e.contains(value.as_str())),
            "a secret value reached an event"
        );
    }
    // Status carries no credential either.
    let status: Vec<String> = calls
        .iter()
        .filter(|c| c.line().ends_with("/status"))
        .map(|c| c.body.to_string())
        .collect();
    for value in &values {
        assert!(status.iter().all(|s| !s.contains(value.as_str())));
    }
}

#[tokio::test]
async fn credentials_that_already_exist_at_create_time_are_kept_not_duplicated() {
    // Another replica (or an earlier attempt whose answer was lost) created them: 409.
    let bs = blocksight(REGTEST);
    let (caches, _writers) = caches();
    let conflict = ("POST /api/v1/namespaces/default/secrets".to_owned(), 409);
    let h = harness(caches, vec![conflict]);
    h.reconcile(&bs)
        .await
        .expect("a conflict on create is not an error");
    let calls = h.take_calls();
    let posts = calls
        .iter()
        .filter(|c| c.method == "POST" && c.line().ends_with("/secrets"))
        .count();
    assert_eq!(posts, 4, "one attempt per Secret, no retry loop");
    assert!(
        calls.iter().any(|c| c.line().ends_with("/status")),
        "the reconcile went on"
    );
    // And the next reconcile does not try again before the watch shows them.
    h.reconcile(&bs).await.expect("reconciled");
    assert!(
        !h.take_calls()
            .iter()
            .any(|c| c.method == "POST" && c.line().ends_with("/secrets"))
    );
}
