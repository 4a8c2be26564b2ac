//! crds/ (and the Helm chart's copy) hold exactly what `blocksight crd` prints.

use std::collections::BTreeMap;
use std::path::Path;

fn folder(dir: &str) -> BTreeMap<String, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn crds_folder_matches_the_code() {
    let generated: BTreeMap<String, String> = blocksight_operator::render::crd_files()
        .into_iter()
        .collect();
    for dir in ["crds", "charts/blocksight-operator/crds"] {
        assert!(
            folder(dir) == generated,
            "{dir}/ differs from the code: run `cargo run -- crd --dir crds && cp crds/*.yaml charts/blocksight-operator/crds/`"
        );
    }
}

#[test]
fn every_field_has_a_description() {
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(properties) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, sub) in properties {
                let here = format!("{path}.{name}");
                // Fields of embedded core types (resources, tolerations, env) keep upstream docs.
                if sub.get("description").is_none() {
                    missing.push(here.clone());
                }
                walk(&here, sub, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    for crd in blocksight_operator::crd::all_crds() {
        let schema = serde_json::to_value(
            crd.spec.versions[0]
                .schema
                .as_ref()
                .unwrap()
                .open_api_v3_schema
                .as_ref()
                .unwrap(),
        )
        .unwrap();
        let mut missing = Vec::new();
        walk("", &schema["properties"]["spec"], &mut missing);
        walk("", &schema["properties"]["status"], &mut missing);
        assert!(
            missing.is_empty(),
            "fields without a description (kubectl explain shows nothing): {missing:#?}"
        );
    }
}
