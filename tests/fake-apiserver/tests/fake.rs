//! The fake API server itself, driven by kube-rs as the operator drives it.

use std::time::Duration;

use blocksight_fake_apiserver::{Config, FakeApiServer, Fault, Latency, Subresource, Verb};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::PartialObjectMeta;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

async fn start(config: Config) -> (FakeApiServer, Client) {
    let fake = FakeApiServer::start(config).await.expect("fake starts");
    let config = kube::Config::new(fake.url().parse().expect("a URL"));
    let client = Client::try_from(config).expect("a client");
    (fake, client)
}

fn config_map(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

fn managed_entry<'a>(object: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
    object["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
}

#[tokio::test]
async fn apply_is_idempotent_tracks_managed_fields_and_takes_back_drift() {
    let (fake, client) = start(Config::default()).await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let apply = PatchParams::apply("test-manager").force();

    let first = api
        .patch(
            "cm",
            &apply,
            &Patch::Apply(config_map("cm", json!({"a": "1", "b": "2"}))),
        )
        .await
        .expect("applied");
    let rv = first.resource_version();
    let again = api
        .patch(
            "cm",
            &apply,
            &Patch::Apply(config_map("cm", json!({"a": "1", "b": "2"}))),
        )
        .await
        .expect("applied again");
    assert_eq!(
        again.resource_version(),
        rv,
        "a no-op apply changes nothing"
    );
    let log = fake.requests(0);
    assert_eq!(
        log.iter().map(|r| r.unchanged).collect::<Vec<_>>(),
        [false, true],
        "the no-op is recorded as a write that changed nothing"
    );

    let stored = fake.get("configmaps", "default", "cm").unwrap();
    let ours = managed_entry(&stored, "test-manager", "Apply").expect("our entry");
    assert_eq!(ours["fieldsV1"], json!({"f:data": {"f:a": {}, "f:b": {}}}));

    // Someone edits a field we apply: they own it now.
    fake.merge_patch(
        "configmaps",
        "default",
        "cm",
        &json!({"data": {"b": "edited"}}),
        "kubectl-edit",
        Subresource::Main,
    )
    .unwrap();
    let edited = fake.get("configmaps", "default", "cm").unwrap();
    assert_eq!(
        managed_entry(&edited, "kubectl-edit", "Update").unwrap()["fieldsV1"],
        json!({"f:data": {"f:b": {}}})
    );
    assert_eq!(
        managed_entry(&edited, "test-manager", "Apply").unwrap()["fieldsV1"],
        json!({"f:data": {"f:a": {}}})
    );

    // Without force that is a conflict; with force the field comes back to us.
    let conflict = api
        .patch(
            "cm",
            &PatchParams::apply("test-manager"),
            &Patch::Apply(config_map("cm", json!({"a": "1", "b": "2"}))),
        )
        .await
        .expect_err("conflict");
    assert!(
        matches!(conflict, kube::Error::Api(ref e) if e.code == 409),
        "{conflict:?}"
    );
    let repaired = api
        .patch(
            "cm",
            &apply,
            &Patch::Apply(config_map("cm", json!({"a": "1", "b": "2"}))),
        )
        .await
        .expect("forced");
    assert_eq!(repaired.data.unwrap()["b"], "2");
    let stored = fake.get("configmaps", "default", "cm").unwrap();
    assert!(managed_entry(&stored, "kubectl-edit", "Update").is_none());

    // A field we stop applying is removed.
    let shrunk = api
        .patch(
            "cm",
            &apply,
            &Patch::Apply(config_map("cm", json!({"a": "1"}))),
        )
        .await
        .expect("applied");
    assert_eq!(shrunk.data.unwrap().keys().collect::<Vec<_>>(), ["a"]);
}

#[tokio::test]
async fn generation_follows_spec_and_status_is_its_own_subresource() {
    let (fake, client) = start(Config::default()).await;
    let api: Api<StatefulSet> = Api::default_namespaced(client);
    let apply = PatchParams::apply("test-manager").force();
    let sts = |replicas: i64, label: &str| {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "labels": {"tier": label}},
            "spec": {"replicas": replicas, "serviceName": "db",
                     "selector": {"matchLabels": {"app": "db"}},
                     "template": {"metadata": {"labels": {"app": "db"}},
                                  "spec": {"containers": [{"name": "db", "image": "postgres:17"}]}}},
            "status": {"replicas": 99},
        })
    };
    let created = api
        .patch("db", &apply, &Patch::Apply(sts(1, "a")))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.status.is_none(),
        "status in an apply to the object is ignored"
    );
    let relabeled = api
        .patch("db", &apply, &Patch::Apply(sts(1, "b")))
        .await
        .unwrap();
    assert_eq!(relabeled.metadata.generation, Some(1), "metadata only");
    let scaled = api
        .patch("db", &apply, &Patch::Apply(sts(2, "b")))
        .await
        .unwrap();
    assert_eq!(scaled.metadata.generation, Some(2));

    let status = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "status": {"replicas": 2, "readyReplicas": 1}, "spec": {"replicas": 7}});
    let with_status = api
        .patch_status(
            "db",
            &PatchParams::apply("kcm").force(),
            &Patch::Apply(status),
        )
        .await
        .unwrap();
    assert_eq!(with_status.status.unwrap().ready_replicas, Some(1));
    assert_eq!(with_status.spec.replicas, Some(2), "spec untouched");
    assert_eq!(with_status.metadata.generation, Some(2));
    let stored = fake.get("statefulsets", "default", "db").unwrap();
    let entry = managed_entry(&stored, "kcm", "Apply").unwrap();
    assert_eq!(entry["subresource"], "status");
}

#[tokio::test]
async fn create_answers_409_when_the_name_is_taken() {
    let (_fake, client) = start(Config::default()).await;
    let api: Api<Secret> = Api::default_namespaced(client);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "creds"}, "stringData": {"password": "x"}
    }))
    .unwrap();
    api.create(&PostParams::default(), &secret)
        .await
        .expect("created");
    let error = api
        .create(&PostParams::default(), &secret)
        .await
        .expect_err("taken");
    match error {
        kube::Error::Api(e) => assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists")),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn deleting_an_owner_collects_its_dependents_in_the_background() {
    let (fake, client) = start(Config::default()).await;
    let owner = fake
        .create("configmaps", "default", config_map("owner", json!({})))
        .unwrap();
    let uid = owner["metadata"]["uid"].as_str().unwrap();
    let mut child = config_map("child", json!({}));
    child["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid, "controller": true}]);
    fake.create("configmaps", "default", child).unwrap();
    fake.create("configmaps", "default", config_map("bystander", json!({})))
        .unwrap();

    let api: Api<ConfigMap> = Api::default_namespaced(client);
    api.delete("owner", &DeleteParams::background())
        .await
        .expect("deleted");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while fake.get("configmaps", "default", "child").is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "child not collected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(fake.get("configmaps", "default", "bystander").is_some());
    assert!(matches!(
        api.delete("owner", &DeleteParams::background()).await,
        Err(kube::Error::Api(e)) if e.code == 404
    ));
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version_with_bookmarks_and_no_event_for_a_no_op() {
    let config = Config {
        bookmark_interval: Duration::from_millis(100),
        ..Config::default()
    };
    let (fake, client) = start(config).await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    fake.create("configmaps", "default", config_map("before", json!({})))
        .unwrap();
    let listed = api.list(&ListParams::default()).await.unwrap();
    let rv = listed.metadata.resource_version.unwrap();
    fake.create(
        "configmaps",
        "default",
        config_map("after", json!({"k": "v"})),
    )
    .unwrap();
    // A no-op (same data) must not produce an event.
    fake.merge_patch(
        "configmaps",
        "default",
        "after",
        &json!({"data": {"k": "v"}}),
        "x",
        Subresource::Main,
    )
    .unwrap();
    fake.merge_patch(
        "configmaps",
        "default",
        "after",
        &json!({"data": {"k": "w"}}),
        "x",
        Subresource::Main,
    )
    .unwrap();

    let events: Vec<WatchEvent<ConfigMap>> = api
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let changes: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            WatchEvent::Added(o) => Some(format!("ADDED {}", o.name_any())),
            WatchEvent::Modified(o) => Some(format!("MODIFIED {}", o.name_any())),
            WatchEvent::Deleted(o) => Some(format!("DELETED {}", o.name_any())),
            _ => None,
        })
        .collect();
    assert_eq!(changes, ["ADDED after", "MODIFIED after"]);
    let bookmarks: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            WatchEvent::Bookmark(b) => b.metadata.resource_version.parse().ok(),
            _ => None,
        })
        .collect();
    assert!(
        bookmarks.len() >= 5,
        "one per 100 ms for 1 s: {bookmarks:?}"
    );
    assert_eq!(*bookmarks.last().unwrap(), fake.resource_version());
    assert_eq!(fake.counts().get(Verb::Watch, "configmaps"), 1);
}

#[tokio::test]
async fn a_watch_from_before_the_kept_log_gets_410_gone() {
    let config = Config {
        log_capacity: 2,
        ..Config::default()
    };
    let (fake, client) = start(config).await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let rv = fake.resource_version().to_string();
    for i in 0..5 {
        fake.create(
            "configmaps",
            "default",
            config_map(&format!("c{i}"), json!({})),
        )
        .unwrap();
    }
    let mut events = api
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .unwrap()
        .boxed();
    match events.next().await {
        Some(Ok(WatchEvent::Error(status))) => assert_eq!(status.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn metadata_only_list_and_watch_carry_metadata_and_no_data() {
    let (fake, client) = start(Config::default()).await;
    let mut labeled = config_map("labeled", json!({"big": "x".repeat(1000)}));
    labeled["metadata"]["labels"] = json!({"app": "a"});
    fake.create("configmaps", "default", labeled).unwrap();
    fake.create("configmaps", "default", config_map("other", json!({})))
        .unwrap();

    let raw = http::Request::get("/api/v1/namespaces/default/configmaps?labelSelector=app%3Da")
        .header(
            "Accept",
            "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
        )
        .body(vec![])
        .unwrap();
    let list: Value = client.request(raw).await.unwrap();
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    assert_eq!(list["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["kind"], "PartialObjectMetadata");
    assert!(list["items"][0].get("data").is_none());

    // kube's metadata API (what the operator's metadata reflectors use) parses it.
    let api: Api<PartialObjectMeta<ConfigMap>> = Api::default_namespaced(client.clone());
    let listed = api
        .list(&ListParams::default().labels("app=a"))
        .await
        .unwrap();
    assert_eq!(
        listed.items[0].metadata.labels.as_ref().unwrap()["app"],
        "a"
    );
    let rv = listed.metadata.resource_version.unwrap();
    fake.merge_patch(
        "configmaps",
        "default",
        "labeled",
        &json!({"metadata": {"annotations": {"touched": "yes"}}}),
        "x",
        Subresource::Main,
    )
    .unwrap();
    let mut events = api
        .watch(&WatchParams::default().labels("app=a").timeout(1), &rv)
        .await
        .unwrap()
        .boxed();
    match events.try_next().await.unwrap() {
        Some(WatchEvent::Modified(meta)) => {
            assert_eq!(meta.annotations()["touched"], "yes")
        }
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    let one = api.get("labeled").await.unwrap();
    assert_eq!(one.types.unwrap().kind, "PartialObjectMetadata");
}

#[tokio::test]
async fn lists_select_by_label_and_page() {
    let (fake, client) = start(Config::default()).await;
    for i in 0..5 {
        let mut cm = config_map(&format!("c{i}"), json!({}));
        if i % 2 == 0 {
            cm["metadata"]["labels"] = json!({"even": "yes"});
        }
        fake.create("configmaps", "default", cm).unwrap();
    }
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let even = api
        .list(&ListParams::default().labels("even=yes"))
        .await
        .unwrap();
    assert_eq!(even.items.len(), 3);
    let not_even = api
        .list(&ListParams::default().labels("!even"))
        .await
        .unwrap();
    assert_eq!(not_even.items.len(), 2);

    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    let token = first.metadata.continue_.clone().expect("more pages");
    let second = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    let third = api
        .list(
            &ListParams::default()
                .limit(2)
                .continue_token(&second.metadata.continue_.clone().unwrap()),
        )
        .await
        .unwrap();
    let names: Vec<String> = [first.items, second.items, third.items.clone()]
        .concat()
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4"]);
    assert!(third.metadata.continue_.is_none());
    assert_eq!(
        first.metadata.resource_version, third.metadata.resource_version,
        "every page reports the snapshot's version"
    );
}

#[tokio::test]
async fn counts_requests_injects_faults_and_adds_latency() {
    let (fake, client) = start(Config::default()).await;
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let apply = PatchParams::apply("m").force();
    fake.inject(Fault::once(Verb::Apply, "configmaps", 500));
    let failed = api
        .patch("x", &apply, &Patch::Apply(config_map("x", json!({}))))
        .await;
    assert!(matches!(failed, Err(kube::Error::Api(e)) if e.code == 500));
    assert!(
        fake.get("configmaps", "default", "x").is_none(),
        "not performed"
    );
    api.patch("x", &apply, &Patch::Apply(config_map("x", json!({}))))
        .await
        .expect("the fault was used up");

    // A committed fault: the write lands, the client hears 409.
    fake.inject(Fault::once(Verb::Create, "configmaps", 409).committed());
    let raced = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(config_map("y", json!({}))).unwrap(),
        )
        .await;
    assert!(matches!(raced, Err(kube::Error::Api(e)) if e.reason == "AlreadyExists"));
    assert!(fake.get("configmaps", "default", "y").is_some());

    fake.add_latency(Latency {
        verb: Some(Verb::Get),
        resource: Some("configmaps".into()),
        delay: Duration::from_millis(300),
    });
    let started = std::time::Instant::now();
    api.get("x").await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));

    let counts = fake.counts();
    assert_eq!(counts.get(Verb::Apply, "configmaps"), 2);
    assert_eq!(counts.get(Verb::Create, "configmaps"), 1);
    assert_eq!(counts.get(Verb::Get, "configmaps"), 1);
    assert_eq!((counts.writes(), counts.reads()), (3, 1));
    let stats: Value = client
        .request(http::Request::get("/__stats").body(vec![]).unwrap())
        .await
        .unwrap();
    assert_eq!(stats["requests"]["apply"]["configmaps"], 2);
    assert_eq!(stats["objects"]["configmaps"], 2);
    let log = fake.requests(0);
    assert_eq!(
        log.iter().map(|r| r.code).collect::<Vec<_>>(),
        [500, 201, 409, 200]
    );
}

#[tokio::test]
async fn a_request_the_client_gave_up_on_has_an_arrival_and_no_record() {
    let (fake, client) = start(Config::default()).await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    fake.add_latency(Latency {
        verb: Some(Verb::Apply),
        resource: Some("configmaps".into()),
        delay: Duration::from_secs(3600),
    });
    let apply = PatchParams::apply("m").force();
    let hung = tokio::time::timeout(
        Duration::from_millis(300),
        api.patch("x", &apply, &Patch::Apply(config_map("x", json!({})))),
    )
    .await;
    assert!(hung.is_err(), "the apply waits for the latency");
    let arrivals = fake.arrivals();
    assert_eq!(arrivals.len(), 1, "{arrivals:?}");
    assert_eq!(
        (
            arrivals[0].verb,
            arrivals[0].resource.as_str(),
            arrivals[0].name.as_deref()
        ),
        (Verb::Apply, "configmaps", Some("x"))
    );
    assert!(fake.requests(0).is_empty(), "never answered");
    assert!(
        fake.get("configmaps", "default", "x").is_none(),
        "not performed"
    );

    fake.clear_latency();
    api.patch("x", &apply, &Patch::Apply(config_map("x", json!({}))))
        .await
        .expect("served at once");
    assert_eq!(fake.arrivals().len(), 2);
    assert_eq!(
        fake.requests(0).iter().map(|r| r.code).collect::<Vec<_>>(),
        [201]
    );
}

#[tokio::test]
async fn discovery_serves_the_installed_groups_only() {
    let (_fake, client) = start(Config::default()).await;
    let blocksight = client
        .list_api_group_resources("blocksight.live/v1alpha1")
        .await
        .unwrap();
    assert!(blocksight.resources.iter().any(|r| r.name == "blocksights"));
    assert!(
        blocksight
            .resources
            .iter()
            .any(|r| r.name == "blocksights/status")
    );
    assert!(matches!(
        client.list_api_group_resources("monitoring.coreos.com/v1").await,
        Err(kube::Error::Api(e)) if e.code == 404
    ));
    let discovery = kube::Discovery::new(client).run().await.unwrap();
    assert!(discovery.has_group("apps"));
    assert!(discovery.has_group("coordination.k8s.io"));

    let (_fake, client) = start(Config {
        prometheus_operator_crds: true,
        blocksight_crds: false,
        ..Config::default()
    })
    .await;
    let monitoring = client
        .list_api_group_resources("monitoring.coreos.com/v1")
        .await
        .unwrap();
    assert!(
        monitoring
            .resources
            .iter()
            .any(|r| r.name == "servicemonitors")
    );
    assert!(
        client
            .list_api_group_resources("blocksight.live/v1alpha1")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_kubelet_reports_workloads_ready_after_they_change() {
    let (fake, client) = start(Config {
        kubelet: Some(Duration::from_millis(50)),
        ..Config::default()
    })
    .await;
    let api: Api<StatefulSet> = Api::default_namespaced(client);
    let sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"replicas": 3, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db"}},
                              "spec": {"containers": [{"name": "db", "image": "postgres:17"}]}}},
    });
    api.patch("db", &PatchParams::apply("m").force(), &Patch::Apply(sts))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = fake.get("statefulsets", "default", "db").unwrap()["status"].clone();
        if status["readyReplicas"] == 3 && status["observedGeneration"] == 1 {
            assert_eq!(status["currentRevision"], status["updateRevision"]);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        fake.counts().writes(),
        1,
        "the kubelet's status writes are not client requests"
    );
}
