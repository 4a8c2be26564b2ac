//! Every metric an alert or dashboard reads is exported: by the operator (checked against
//! its registry) or by a component named in docs/metrics.md.

use std::collections::BTreeSet;
use std::path::Path;

use blocksight_operator::metrics::Metrics;

const KEYWORDS: &[&str] = &[
    // Aggregation operators may be followed by a grouping clause instead of "(".
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "inf",
    "nan",
];
/// Clauses whose parenthesised list holds label names, not metrics.
const LABEL_CLAUSES: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Metric names in a PromQL expression: identifiers that are not functions, keywords,
/// label names (in matchers or grouping clauses), strings, durations or dashboard variables.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let (mut i, mut braces, mut brackets) = (0, 0, 0);
    let mut label_parens: Vec<usize> = Vec::new(); // paren depths opened by a label clause
    let mut parens = 0usize;
    let mut last_word = String::new();
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
            }
            '{' => braces += 1,
            '}' => braces -= 1,
            '[' => brackets += 1,
            ']' => brackets -= 1,
            '(' => {
                parens += 1;
                if LABEL_CLAUSES.contains(&last_word.as_str()) {
                    label_parens.push(parens);
                }
            }
            ')' => {
                if label_parens.last() == Some(&parens) {
                    label_parens.pop();
                }
                parens -= 1;
            }
            '$' => {
                // A dashboard variable such as $namespace or ${datasource}.
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || "_{}".contains(chars[i])) {
                    i += 1;
                }
                continue;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                let is_function = next == Some(&'(');
                let in_label_list = !label_parens.is_empty();
                let is_number_suffix = start > 0 && chars[start - 1].is_ascii_digit();
                if braces == 0
                    && brackets == 0
                    && !is_function
                    && !in_label_list
                    && !is_number_suffix
                    && !KEYWORDS.contains(&word.as_str())
                    && !word.contains(':')
                {
                    names.insert(word.clone());
                }
                last_word = word;
                continue;
            }
            _ => {}
        }
        if !c.is_whitespace() {
            last_word.clear();
        }
        i += 1;
    }
    names
}

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Every expression in the rule files and dashboards.
fn expressions() -> Vec<String> {
    let mut exprs = Vec::new();
    for (_, text) in blocksight_operator::assets::RULE_FILES {
        let doc: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
        for group in doc["groups"].as_sequence().unwrap() {
            for rule in group["rules"].as_sequence().unwrap() {
                exprs.push(rule["expr"].as_str().unwrap().to_owned());
            }
        }
    }
    for (_, text) in blocksight_operator::assets::DASHBOARDS {
        let doc: serde_json::Value = serde_json::from_str(text).unwrap();
        fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(map) => {
                    if let Some(expr) = map.get("expr").and_then(|e| e.as_str()) {
                        out.push(expr.to_owned());
                    }
                    if let Some(query) = map
                        .get("query")
                        .and_then(|q| q.as_str())
                        .filter(|q| q.starts_with("label_values("))
                    {
                        out.push(
                            query
                                .trim_start_matches("label_values(")
                                .split(',')
                                .next()
                                .unwrap_or_default()
                                .to_owned(),
                        );
                    }
                    map.values().for_each(|x| walk(x, out));
                }
                serde_json::Value::Array(items) => items.iter().for_each(|x| walk(x, out)),
                _ => {}
            }
        }
        walk(&doc, &mut exprs);
    }
    exprs
}

/// The registry with one series in every labelled family (empty families print nothing).
fn populated() -> Metrics {
    use blocksight_operator::metrics::*;
    let m = Metrics::new();
    let i = InstanceLabels {
        namespace: "n".into(),
        blocksight: "b".into(),
    };
    let c = ChainLabels {
        namespace: "n".into(),
        blocksight: "b".into(),
        network: "mainnet".into(),
    };
    let s = ServiceLabels {
        namespace: "n".into(),
        blocksight: "b".into(),
        service: "bitcoind".into(),
    };
    m.record_failure("apply");
    m.record_instance(
        "n",
        "b",
        blocksight_operator::crd::Phase::Ready,
        &[("api".into(), 2, 2)],
    );
    let chain = &m.chain;
    for g in [
        &chain.blocks,
        &chain.headers,
        &chain.initial_block_download,
        &chain.peers,
        &chain.size_on_disk,
        &chain.tip_timestamp,
        &chain.mempool_transactions,
    ] {
        g.get_or_create(&c).set(1);
    }
    chain.verification_progress.get_or_create(&c).set(0.5);
    for g in [
        &chain.electrs_indexed_height,
        &chain.electrs_lag,
        &chain.database_size,
    ] {
        g.get_or_create(&i).set(1);
    }
    chain.probe_up.get_or_create(&s).set(1);
    chain.probe_errors.get_or_create(&s).inc();
    chain.probe_duration.get_or_create(&s).observe(0.1);
    let b = &m.backup;
    for g in [
        &b.last_success_timestamp,
        &b.last_size,
        &b.verification_last_timestamp,
        &b.verification_last_success,
    ] {
        g.get_or_create(&i).set(1);
    }
    b.last_duration.get_or_create(&i).set(1.0);
    b.verification_last_duration.get_or_create(&i).set(1.0);
    b.failures.get_or_create(&i).inc();
    m.record_snapshot_ready("n", "b", "bitcoind", Some(1));
    m
}

/// Sample names the operator's registry can produce.
fn exported() -> BTreeSet<String> {
    let text = populated().encode();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            match kind {
                "counter" => {
                    names.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {
                    names.insert(name.to_owned());
                }
            }
        }
    }
    names
}

/// First-column metric names of docs/metrics.md's "Metrics from other components" table.
fn documented_elsewhere() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(repo("docs/metrics.md")).unwrap();
    let section = doc
        .split("## Metrics from other components")
        .nth(1)
        .expect("the section exists");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_parser_finds_metrics_and_skips_everything_else() {
    let names = metric_names(
        r#"sum by (namespace, blocksight) (rate(blocksight_api_http_requests_total{status=~"5..", route!="x"}[5m])) / on (namespace) group_left(network) max(blocksight_chain_blocks offset 1h) > 1e3 and up{job="api"} == bool 0 unless ns:rec:rate5m and $__rate_interval"#,
    );
    assert_eq!(
        names,
        BTreeSet::from([
            "blocksight_api_http_requests_total".into(),
            "blocksight_chain_blocks".into(),
            "up".into()
        ])
    );
}

#[test]
fn every_metric_used_by_rules_and_dashboards_is_exported_or_documented() {
    let exprs = expressions();
    assert!(exprs.len() > 30, "found the expressions");
    let used: BTreeSet<String> = exprs.iter().flat_map(|e| metric_names(e)).collect();
    let (exported, elsewhere) = (exported(), documented_elsewhere());
    // Histograms are documented by their base name.
    let base = |m: &str| {
        ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| m.strip_suffix(s))
            .unwrap_or(m)
            .to_owned()
    };
    let unknown: Vec<&String> = used
        .iter()
        .filter(|m| {
            !exported.contains(*m) && !elsewhere.contains(*m) && !elsewhere.contains(&base(m))
        })
        .collect();
    assert!(
        unknown.is_empty(),
        "metrics used but neither exported by the operator nor documented: {unknown:?}"
    );
    // And the operator's own names are not listed as someone else's.
    let misattributed: Vec<&String> = elsewhere.iter().filter(|m| exported.contains(*m)).collect();
    assert!(misattributed.is_empty(), "{misattributed:?}");
    // The alerts really depend on the operator's chain and reconcile metrics.
    for m in [
        "blocksight_chain_blocks",
        "blocksight_reconcile_failures_total",
        "blocksight_backup_last_success_timestamp_seconds",
    ] {
        assert!(used.contains(m), "{m} is used");
    }
}

/// First-column metric names of docs/metrics.md's "Metrics exported by the operator" table.
fn documented_as_exported() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(repo("docs/metrics.md")).unwrap();
    let section = doc
        .split("## Metrics exported by the operator")
        .nth(1)
        .expect("the section exists");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_exported_metric_is_documented_and_every_documented_one_exported() {
    // Histograms are documented by their base name.
    let exported: BTreeSet<String> = exported()
        .into_iter()
        .map(|m| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| m.strip_suffix(s))
                .map(str::to_owned)
                .unwrap_or(m)
        })
        .collect();
    let documented = documented_as_exported();
    let undocumented: Vec<&String> = exported.difference(&documented).collect();
    let stale: Vec<&String> = documented.difference(&exported).collect();
    assert!(
        undocumented.is_empty(),
        "not in docs/metrics.md: {undocumented:?}"
    );
    assert!(stale.is_empty(), "documented but not exported: {stale:?}");
    assert!(documented.contains("blocksight_volume_snapshot_last_ready_timestamp_seconds"));
}

#[test]
fn operator_metric_names_follow_prometheus_conventions() {
    for name in exported() {
        assert!(name.starts_with("blocksight_"), "{name}");
        assert!(
            !name.contains("__") && name == name.to_lowercase(),
            "{name}"
        );
    }
    let text = populated().encode();
    assert!(text.contains("# TYPE blocksight_reconcile_duration_seconds histogram"));
    assert!(text.contains("# TYPE blocksight_reconcile_failures counter"));
    assert!(text.contains("blocksight_build_info{version=\"0.1.0\"} 1"));
}
