//! The invalid-input corpus (tests/invalid) against the real API server.
//!
//! Each document carries `# apiserver:` with what the server says:
//! - a message part (it names the field): `kubectl apply --server-side` (strict field
//!   validation, as kubectl's default) is refused with it, and nothing is stored;
//! - `operator-only: <why>`: the server's schema cannot express the rule, so the server
//!   stores the object and the operator refuses it: the test creates it and waits for the
//!   `InvalidSpec` condition naming the field (`# expect:`), with no child created.

use std::path::Path;
use std::time::Duration;

use blocksight_operator::crd::BlockSight;
use kube::Client;
use kube::api::{
    Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, ValidationDirective,
};

use crate::kit::{self, Operator};

struct Case {
    file: String,
    documents: Vec<serde_json::Value>,
    expect: String,
    apiserver: String,
}

fn cases(folder: &str) -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
    let mut cases: Vec<Case> = std::fs::read_dir(&dir)
        .expect("corpus folder")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let header = |key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
                    .unwrap_or_else(|| panic!("{file}: no `# {key}:` line"))
                    .to_owned()
            };
            let documents = serde_yaml::Deserializer::from_str(&text)
                .map(|d| {
                    let v: serde_yaml::Value = serde::Deserialize::deserialize(d)
                        .unwrap_or_else(|e| panic!("{file}: {e}"));
                    serde_json::to_value(v).unwrap()
                })
                .collect();
            Case {
                expect: header("expect"),
                apiserver: header("apiserver"),
                documents,
                file,
            }
        })
        .collect();
    cases.sort_by(|a, b| a.file.cmp(&b.file));
    cases
}

fn blocksights(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::erase::<BlockSight>(&()),
    )
}

/// `kubectl apply --server-side [--dry-run=server]`: strict field validation, forced.
async fn apply(
    api: &Api<DynamicObject>,
    document: &serde_json::Value,
    dry_run: bool,
) -> Result<(), String> {
    let name = document["metadata"]["name"].as_str().unwrap_or("unnamed");
    let mut params = PatchParams::apply(crate::TEST_MANAGER).force();
    params.dry_run = dry_run;
    params.field_validation = Some(ValidationDirective::Strict);
    api.patch(name, &params, &Patch::Apply(document))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_refuses_every_invalid_document_naming_the_field() {
    let client = kit::admin().await;
    let ns = kit::namespace(&client, "corpus").await;
    let api = blocksights(&client, &ns);
    let mut operator_only = Vec::new();
    let mut failures = Vec::new();
    let corpus = cases("tests/invalid");
    assert!(corpus.len() >= 50, "the whole corpus is read");
    for case in &corpus {
        let [document] = case.documents.as_slice() else {
            panic!("{}: one document expected", case.file);
        };
        let answer = apply(&api, document, true).await;
        match (case.apiserver.strip_prefix("operator-only: "), answer) {
            (Some(_), Ok(())) => operator_only.push(case),
            (Some(why), Err(e)) => failures.push(format!(
                "{}: marked operator-only ({why}) but the server refused it: {e}",
                case.file
            )),
            (None, Ok(())) => failures.push(format!(
                "{}: the server accepted it; expected {:?}",
                case.file, case.apiserver
            )),
            (None, Err(e)) if e.contains(&case.apiserver) => {}
            (None, Err(e)) => failures.push(format!(
                "{}: expected {:?} in the server's answer: {e}",
                case.file, case.apiserver
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let stored = api.list(&ListParams::default()).await.unwrap();
    assert!(stored.items.is_empty(), "dry runs stored nothing");

    // What only the operator can refuse: stored by the server, refused by the operator with
    // a condition naming the field, and nothing built from it.
    // Each under its own name (`case-NN`): several documents share one.
    let _operator = Operator::start(&ns);
    let name_of = |case: &Case| format!("case-{}", &case.file[..2]);
    for case in &operator_only {
        let mut document = case.documents[0].clone();
        document["metadata"]["name"] = name_of(case).into();
        apply(&api, &document, false)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.file));
    }
    let typed: Api<BlockSight> = Api::namespaced(client.clone(), &ns);
    for case in &operator_only {
        let name = &name_of(case);
        let message = kit::eventually(
            &format!("{}: the InvalidSpec condition", case.file),
            Duration::from_secs(60),
            || async {
                let bs = typed.get(name).await.ok()?;
                let condition = bs
                    .status?
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "InvalidSpec" && c.status == "True")?;
                Some(condition.message)
            },
        )
        .await;
        assert!(
            message.contains(&case.expect),
            "{}: InvalidSpec says {message:?}, expected {:?}",
            case.file,
            case.expect
        );
        typed
            .delete(name, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("{}: deleting: {e}", case.file));
    }
    // Nothing was built from an invalid spec.
    for kind in [
        blocksight_operator::desired::ChildKind::StatefulSet,
        blocksight_operator::desired::ChildKind::Deployment,
        blocksight_operator::desired::ChildKind::ConfigMap,
    ] {
        let children: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &crate::resource_of(kind));
        let listed = children.list(&ListParams::default()).await.unwrap();
        let ours: Vec<String> = listed
            .items
            .iter()
            .filter(|o| o.metadata.name.as_deref() != Some("kube-root-ca.crt"))
            .map(|o| o.metadata.name.clone().unwrap_or_default())
            .collect();
        assert!(
            ours.is_empty(),
            "{kind}s built from invalid specs: {ours:?}"
        );
    }
    kit::delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_refuses_every_transition_in_the_corpus() {
    let client = kit::admin().await;
    let ns = kit::namespace(&client, "transitions").await;
    let api = blocksights(&client, &ns);
    let corpus = cases("tests/invalid/transitions");
    assert!(corpus.len() >= 3);
    let mut failures = Vec::new();
    for case in &corpus {
        let [old, new] = case.documents.as_slice() else {
            panic!("{}: the stored object and the update expected", case.file);
        };
        apply(&api, old, false)
            .await
            .unwrap_or_else(|e| panic!("{}: the stored object is refused: {e}", case.file));
        match apply(&api, new, true).await {
            Err(e) if e.contains(&case.apiserver) => {}
            Err(e) => failures.push(format!(
                "{}: expected {:?} in the server's answer: {e}",
                case.file, case.apiserver
            )),
            Ok(()) => failures.push(format!(
                "{}: the server accepted the update; expected {:?}",
                case.file, case.apiserver
            )),
        }
        let name = old["metadata"]["name"].as_str().unwrap();
        api.delete(name, &Default::default()).await.unwrap();
        kit::eventually(
            "the stored object gone",
            Duration::from_secs(30),
            || async { api.get_opt(name).await.unwrap().is_none().then_some(()) },
        )
        .await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    kit::delete_namespace(&client, &ns).await;
}
