//! The direction of imports, checked: names and leaves ← crd ← validate ← desired ← (probes,
//! metrics, rbac, render, the backup program) ← chain ← controller ← runtime ← cmd. A module
//! may import only modules of a lower rank; a test fails on any `crate::` path (outside
//! comments) that points the other way, so the layering stays fixed as the code grows.
#![cfg(test)]

use std::path::Path;

/// Rank of each top-level module of the crate (file or folder under src/).
const RANKS: &[(&str, u8)] = &[
    ("names", 0),
    ("digest", 0),
    ("retention", 0),
    ("schedule", 0),
    ("telemetry", 0),
    ("assets", 1),
    ("crd", 2),
    ("validate", 3),
    ("desired", 4),
    ("probe", 5),
    ("metrics", 5),
    ("rbac", 5),
    ("render", 5),
    ("compose", 5),
    ("backup_tool", 5),
    ("chain", 6),
    ("controller", 7),
    ("runtime", 8),
    ("cmd", 9),
];

fn rank(module: &str) -> Option<u8> {
    RANKS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
}

/// Every `crate::<module>` a file names in code (comments and doc comments skipped).
fn imports(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let tail = &rest[at + "crate::".len()..];
            let ident = |text: &str| -> String {
                text.trim_start()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect()
            };
            // `crate::{a, b::c}` names several modules (one line is enough: rustfmt keeps
            // a crate-root group short).
            if let Some(group) = tail.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or_default();
                out.extend(inner.split(',').map(ident).filter(|n| !n.is_empty()));
            } else {
                let name = ident(tail);
                if !name.is_empty() {
                    out.push(name);
                }
            }
            rest = tail;
        }
    }
    out
}

fn visit(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            visit(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn every_import_points_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    visit(&src, &mut files);
    let mut violations = Vec::new();
    let mut unranked = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src/");
        let module = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("a file name")
            .trim_end_matches(".rs");
        if ["lib", "main", "layering"].contains(&module) {
            continue;
        }
        let Some(own) = rank(module) else {
            unranked.push(module.to_owned());
            continue;
        };
        let text = std::fs::read_to_string(file).expect("a readable source file");
        for target in imports(&text) {
            if target == module {
                continue;
            }
            match rank(&target) {
                Some(theirs) if theirs < own => {}
                Some(_) => violations.push(format!(
                    "src/{} ({module}) imports crate::{target}",
                    relative.display()
                )),
                None => unranked.push(target),
            }
        }
    }
    unranked.sort();
    unranked.dedup();
    assert!(
        unranked.is_empty(),
        "modules without a rank in src/layering.rs: {unranked:?}"
    );
    assert!(
        violations.is_empty(),
        "imports against the layering (see src/layering.rs):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_scanner_sees_code_and_skips_comments() {
    let text = "use crate::crd::X; // crate::cmd\n/// [`crate::runtime`]\nlet a = crate::desired::build();\nuse crate::{names, validate::V};";
    assert_eq!(imports(text), ["crd", "desired", "names", "validate"]);
}
