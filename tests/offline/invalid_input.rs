//! Bad input is rejected with the field named, by `render` and by the CRD's CEL rules
//! (evaluated locally, as the API server would), and changes nothing.

use std::path::Path;

use blocksight_operator::crd::BlockSight;
use blocksight_operator::desired::BuildSettings;
use blocksight_operator::render::{self, OutputFormat};
use blocksight_operator::validate;

struct Case {
    file: String,
    text: String,
    expect: String,
    cel: bool,
}

fn corpus() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let mut cases: Vec<Case> = std::fs::read_dir(&dir)
        .expect("tests/invalid")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let header = |key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
                    .unwrap_or_else(|| panic!("{}: no `# {key}:` line", path.display()))
                    .to_owned()
            };
            Case {
                file: path.file_name().unwrap().to_string_lossy().into_owned(),
                expect: header("expect"),
                cel: header("cel") == "true",
                text,
            }
        })
        .collect();
    cases.sort_by(|a, b| a.file.cmp(&b.file));
    cases
}

#[test]
fn the_corpus_is_large_enough() {
    assert!(corpus().len() >= 30, "at least 30 invalid documents");
}

#[test]
fn render_rejects_every_invalid_document_naming_the_field() {
    for case in corpus() {
        let error = render::render(
            &case.text,
            OutputFormat::Yaml,
            false,
            &BuildSettings::default(),
        )
        .err()
        .unwrap_or_else(|| panic!("{}: render accepted an invalid document", case.file));
        let message = error.to_string();
        assert!(
            message.contains(&case.expect),
            "{}: expected {:?} in {message:?}",
            case.file,
            case.expect
        );
    }
}

#[test]
fn the_crd_cel_rules_reject_every_cel_case_on_their_own() {
    let mut checked = 0;
    for case in corpus().into_iter().filter(|c| c.cel) {
        let bs: BlockSight =
            serde_yaml::from_str(&case.text).unwrap_or_else(|e| panic!("{}: {e}", case.file));
        let problems = validate::check_cel(&bs, None);
        let (field, reason) = case.expect.split_once(": ").unwrap();
        assert!(
            problems
                .iter()
                .any(|p| p.field == field && p.reason.contains(reason)),
            "{}: CEL gave {problems:?}, expected {field}: {reason}",
            case.file
        );
        checked += 1;
    }
    assert!(checked >= 20);
}

/// tests/invalid/transitions: updates the API server refuses by a transition rule (the
/// first document is the stored object, the second the update). Each new object is valid
/// on its own, so `render` (which sees one object) accepts it; only the change is refused.
#[test]
fn the_crd_transition_rules_reject_every_update_in_the_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid/transitions");
    let mut checked = 0;
    for path in std::fs::read_dir(&dir).expect("tests/invalid/transitions") {
        let path = path.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{name}: no `# expect:` line"));
        let (field, reason) = expect.split_once(": ").unwrap();
        let documents: Vec<BlockSight> = serde_yaml::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{name}: {e}")))
            .collect();
        let [old, new] = documents.as_slice() else {
            panic!("{name}: two documents expected, the stored object and the update");
        };
        assert_eq!(
            validate::check_cel(old, None),
            vec![],
            "{name}: old is valid"
        );
        assert_eq!(
            validate::check_cel(new, None),
            vec![],
            "{name}: new is valid alone"
        );
        assert_eq!(
            validate::check_cel(new, Some(new)),
            vec![],
            "{name}: no-op update"
        );
        let problems = validate::check_cel(new, Some(old));
        assert!(
            problems
                .iter()
                .any(|p| p.field == field && p.reason.contains(reason)),
            "{name}: CEL gave {problems:?}, expected {expect}"
        );
        checked += 1;
    }
    assert!(checked >= 3);
}

#[test]
fn valid_examples_pass_the_cel_rules() {
    for yaml in [
        include_str!("../../examples/regtest.yaml"),
        include_str!("../../examples/mainnet.yaml"),
    ] {
        let bs: BlockSight = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(validate::check_cel(&bs, None), vec![]);
    }
}

fn mainnet() -> BlockSight {
    serde_yaml::from_str(include_str!("../../examples/mainnet.yaml")).unwrap()
}

#[test]
fn network_is_immutable() {
    let old = mainnet();
    let mut new = old.clone();
    new.spec.network = blocksight_operator::crd::Network::Testnet;
    let problems = validate::check_cel(&new, Some(&old));
    assert!(
        problems
            .iter()
            .any(|p| p.field == "spec.network" && p.reason.contains("network is immutable")),
        "{problems:?}"
    );
    assert_eq!(
        validate::check_cel(&old, Some(&old)),
        vec![],
        "an unchanged object passes"
    );
}

#[test]
fn storage_may_grow_but_never_shrink_and_its_class_is_immutable() {
    let old = mainnet();
    let mut grown = old.clone();
    grown.spec.bitcoind.storage.size = Some("2Ti".into());
    assert_eq!(validate::check_cel(&grown, Some(&old)), vec![]);

    let mut shrunk = old.clone();
    shrunk.spec.bitcoind.storage.size = Some("900Gi".into());
    let problems = validate::check_cel(&shrunk, Some(&old));
    assert!(
        problems
            .iter()
            .any(|p| p.field == "spec.bitcoind.storage.size" && p.reason.contains("never shrink")),
        "{problems:?}"
    );

    let mut reclassed = old.clone();
    reclassed.spec.electrs.storage.storage_class_name = Some("slow".into());
    let problems = validate::check_cel(&reclassed, Some(&old));
    assert!(
        problems
            .iter()
            .any(|p| p.field == "spec.electrs.storage.storageClassName"
                && p.reason.contains("immutable")),
        "{problems:?}"
    );
}

#[test]
fn render_names_the_document_and_the_bad_kind() {
    let error = render::render(
        "kind: Deployment\n",
        OutputFormat::Yaml,
        false,
        &BuildSettings::default(),
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("document 1: kind \"Deployment\" is not BlockSight"),
        "{error}"
    );
    let error =
        render::render("", OutputFormat::Yaml, false, &BuildSettings::default()).unwrap_err();
    assert!(
        error.to_string().contains("no BlockSight document"),
        "{error}"
    );
}

#[test]
fn backup_and_restore_specs_are_immutable() {
    use blocksight_operator::crd::{
        BlockSightBackup, BlockSightBackupSpec, BlockSightRestore, BlockSightRestoreSpec,
    };
    let old = BlockSightBackup::new(
        "nightly",
        BlockSightBackupSpec {
            block_sight: "main".into(),
        },
    );
    let mut moved = old.clone();
    moved.spec.block_sight = "other".into();
    let problems = validate::check_cel_of(&moved, Some(&old));
    assert!(
        problems
            .iter()
            .any(|p| p.field == "spec" && p.reason.contains("spec is immutable")),
        "{problems:?}"
    );
    assert_eq!(validate::check_cel_of(&old, Some(&old)), vec![]);

    let old = BlockSightRestore::new(
        "undo",
        BlockSightRestoreSpec {
            block_sight: "main".into(),
            backup: "nightly".into(),
        },
    );
    let mut other = old.clone();
    other.spec.backup = "weekly".into();
    let problems = validate::check_cel_of(&other, Some(&old));
    assert!(
        problems
            .iter()
            .any(|p| p.field == "spec" && p.reason.contains("spec is immutable")),
        "{problems:?}"
    );
    let mut empty = old.clone();
    empty.spec.backup = String::new();
    let problems = validate::check_cel_of(&empty, None);
    assert!(
        problems
            .iter()
            .any(|p| p.field == "spec.backup" && p.reason.contains("must name a BlockSightBackup")),
        "{problems:?}"
    );
}

#[test]
fn restore_from_is_immutable() {
    let mut old = mainnet();
    old.spec.postgres.restore_from = Some(blocksight_operator::crd::RestoreFrom {
        backup: "nightly".into(),
    });
    let mut new = old.clone();
    new.spec.postgres.restore_from = Some(blocksight_operator::crd::RestoreFrom {
        backup: "weekly".into(),
    });
    let problems = validate::check_cel(&new, Some(&old));
    assert!(
        problems
            .iter()
            .any(|p| p.field == "spec.postgres.restoreFrom"
                && p.reason
                    .contains("only applies when a BlockSight is created")),
        "{problems:?}"
    );
    // Kept as it was, or removed once the database exists: allowed.
    assert_eq!(validate::check_cel(&old, Some(&old)), vec![]);
    let mut removed = old.clone();
    removed.spec.postgres.restore_from = None;
    assert_eq!(validate::check_cel(&removed, Some(&old)), vec![]);
    // Added later (tests/invalid/transitions/04-restore-from-added.yaml) or re-added: refused.
    let problems = validate::check_cel(&old, Some(&removed));
    assert!(
        problems
            .iter()
            .any(|p| p.field == "spec.postgres.restoreFrom"),
        "{problems:?}"
    );
}

#[test]
fn the_backup_volume_may_grow_but_never_shrink_and_keeps_its_class() {
    let yaml = include_str!("../../examples/regtest.yaml").replace(
        "volume: {size: 2Gi}",
        "volume: {size: 2Gi, storageClassName: slow}",
    );
    let old: BlockSight = serde_yaml::from_str(&yaml).unwrap();
    assert!(yaml.contains("storageClassName: slow"));
    let volume = |bs: &mut BlockSight| {
        bs.spec
            .backup
            .destination
            .as_mut()
            .unwrap()
            .volume
            .as_mut()
            .unwrap()
            .clone()
    };
    let mut grown = old.clone();
    let mut v = volume(&mut grown);
    v.size = Some("5Gi".into());
    grown.spec.backup.destination.as_mut().unwrap().volume = Some(v);
    assert_eq!(validate::check_cel(&grown, Some(&old)), vec![]);

    let mut shrunk = old.clone();
    let mut v = volume(&mut shrunk);
    v.size = Some("1Gi".into());
    shrunk.spec.backup.destination.as_mut().unwrap().volume = Some(v);
    let problems = validate::check_cel(&shrunk, Some(&old));
    assert!(
        problems
            .iter()
            .any(|p| p.field == "spec.backup.destination.volume.size"
                && p.reason.contains("never shrink")),
        "{problems:?}"
    );
    let mut reclassed = old.clone();
    let mut v = volume(&mut reclassed);
    v.storage_class_name = Some("fast".into());
    reclassed.spec.backup.destination.as_mut().unwrap().volume = Some(v);
    let problems = validate::check_cel(&reclassed, Some(&old));
    assert!(
        problems.iter().any(
            |p| p.field == "spec.backup.destination.volume.storageClassName"
                && p.reason.contains("immutable")
        ),
        "{problems:?}"
    );
}
