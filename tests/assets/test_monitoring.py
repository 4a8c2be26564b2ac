"""Monitoring assets: Prometheus rules and their unit tests, the Alertmanager example, the
Grafana dashboards, the runbooks and docs/metrics.md.

PromQL validity is proven by promtool, never by a regex: dashboard queries are written into a
temporary rules file as recording rules and checked with `promtool check rules`.
"""
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "monitoring"
RULES_DIR = MONITORING / "prometheus" / "rules"
RULE_TESTS_DIR = MONITORING / "prometheus" / "tests"
ALERTMANAGER_CONFIG = MONITORING / "alertmanager" / "alertmanager.yaml"
DASHBOARDS_DIR = MONITORING / "grafana" / "dashboards"
RUNBOOKS_DIR = REPO / "docs" / "runbooks"
METRICS_DOC = REPO / "docs" / "metrics.md"

# The operator embeds exactly these files with include_str!.
EMBEDDED_RULE_FILES = {"chain.yaml", "services.yaml", "backup.yaml", "operator.yaml"}
RUNBOOK_URL = "https://github.com/blocksight-live/blocksight-operator/blob/main/docs/runbooks/{}.md"
SEVERITIES = {"critical", "warning", "info"}
DASHBOARD_UIDS = {"blocksight-overview.json": "blocksight-overview", "blocksight-operator.json": "blocksight-operator"}

# The operator's metrics as specified: name -> (type, labels). docs/metrics.md must say the same.
INSTANCE = {"namespace", "blocksight"}
CHAIN = INSTANCE | {"network"}
PROBE = INSTANCE | {"service"}
OPERATOR_METRICS = {
    "blocksight_build_info": ("gauge", {"version"}),
    "blocksight_leader": ("gauge", set()),
    "blocksight_reconciliations_total": ("counter", set()),
    "blocksight_reconcile_failures_total": ("counter", {"category"}),
    "blocksight_reconcile_duration_seconds": ("histogram", set()),
    "blocksight_instance_phase": ("gauge", INSTANCE | {"phase"}),
    "blocksight_component_ready_replicas": ("gauge", INSTANCE | {"component"}),
    "blocksight_component_desired_replicas": ("gauge", INSTANCE | {"component"}),
    "blocksight_chain_blocks": ("gauge", CHAIN),
    "blocksight_chain_headers": ("gauge", CHAIN),
    "blocksight_chain_verification_progress": ("gauge", CHAIN),
    "blocksight_chain_initial_block_download": ("gauge", CHAIN),
    "blocksight_chain_peers": ("gauge", CHAIN),
    "blocksight_chain_size_on_disk_bytes": ("gauge", CHAIN),
    "blocksight_chain_tip_timestamp_seconds": ("gauge", CHAIN),
    "blocksight_chain_mempool_transactions": ("gauge", CHAIN),
    "blocksight_electrs_indexed_height": ("gauge", INSTANCE),
    "blocksight_electrs_lag_blocks": ("gauge", INSTANCE),
    "blocksight_database_size_bytes": ("gauge", INSTANCE),
    "blocksight_probe_up": ("gauge", PROBE),
    "blocksight_probe_duration_seconds": ("histogram", PROBE),
    "blocksight_probe_errors_total": ("counter", PROBE),
    "blocksight_backup_last_success_timestamp_seconds": ("gauge", INSTANCE),
    "blocksight_backup_last_size_bytes": ("gauge", INSTANCE),
    "blocksight_backup_last_duration_seconds": ("gauge", INSTANCE),
    "blocksight_backup_failures_total": ("counter", INSTANCE),
    "blocksight_backup_verification_last_timestamp_seconds": ("gauge", INSTANCE),
    "blocksight_backup_verification_last_success": ("gauge", INSTANCE),
    "blocksight_backup_verification_last_duration_seconds": ("gauge", INSTANCE),
    "blocksight_volume_snapshot_last_ready_timestamp_seconds": ("gauge", INSTANCE | {"component"}),
}

# Values for Grafana's variables when a dashboard query is checked as plain PromQL.
GRAFANA_VARIABLES = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "datasource": "prometheus",
    "namespace": "btc",
    "blocksight": "main",
}


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("SKIPPED: promtool is not on PATH (Debian package prometheus)")
    return path


@pytest.fixture(scope="session")
def amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        pytest.skip("SKIPPED: amtool is not on PATH (Debian package prometheus-alertmanager)")
    return path


def run(cmd, cwd=None):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr


def rule_files():
    return sorted(RULES_DIR.glob("*.yaml"))


def rule_test_files():
    return sorted(RULE_TESTS_DIR.glob("*.yaml"))


def all_rules():
    """(file name, rule) for every rule of every rules file."""
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                yield path.name, rule


def alerting_rules():
    return [(f, r) for f, r in all_rules() if "alert" in r]


def alert_names():
    return sorted({r["alert"] for _, r in alerting_rules()})


def recorded_names():
    return {r["record"] for _, r in all_rules() if "record" in r}


# --- PromQL helpers -------------------------------------------------------------------------

PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan",
}


def metric_names(expr: str) -> set:
    """Metric names a PromQL expression selects: identifiers that are not function calls,
    keywords, label names (in matchers or grouping clauses) or parts of durations/numbers."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges and subqueries
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?", s):
        name, is_call = m.group(1), m.group(2)
        if not is_call and name.lower() not in PROMQL_KEYWORDS:
            names.add(name)
    return names


def substitute_grafana_variables(expr: str) -> str:
    def value(m):
        name = m.group(1) or m.group(2)
        assert name in GRAFANA_VARIABLES, f"unknown Grafana variable ${name} in {expr!r}"
        return GRAFANA_VARIABLES[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


# --- Rules ----------------------------------------------------------------------------------


def test_rule_files_are_the_embedded_plain_rule_files():
    assert {p.name for p in rule_files()} == EMBEDDED_RULE_FILES
    for path in rule_files():
        doc = yaml.safe_load(path.read_text())
        # Plain Prometheus rule files: the operator wraps them into PrometheusRule objects.
        assert set(doc) == {"groups"}, f"{path.name}: top level must be `groups:` only"
        assert doc["groups"], f"{path.name} has no groups"


@pytest.mark.parametrize("path", rule_files(), ids=lambda p: p.name)
def test_promtool_check_rules(promtool, path):
    code, out = run([promtool, "check", "rules", str(path)])
    assert code == 0, out


@pytest.mark.parametrize("path", rule_test_files(), ids=lambda p: p.name)
def test_promtool_unit_tests(promtool, path):
    # rule_files in a test file are relative to the test file's directory.
    code, out = run([promtool, "test", "rules", path.name], cwd=path.parent)
    assert code == 0, out
    assert "SUCCESS" in out, out


def test_every_rules_file_is_unit_tested():
    tested = set()
    for path in rule_test_files():
        for ref in yaml.safe_load(path.read_text())["rule_files"]:
            tested.add((path.parent / ref).resolve())
    untested = [p.name for p in rule_files() if p.resolve() not in tested]
    assert not untested, f"rules files no promtool test loads: {untested}"


def test_recording_rules_are_evaluated_before_their_readers():
    # Groups run independently (and in random order in promtool): a rule reading a recorded
    # series from another group, or from later in its own, sees the previous evaluation's value.
    recorded = recorded_names()
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            seen = set()
            for rule in group["rules"]:
                read = metric_names(rule["expr"]) & recorded
                assert read <= seen, f"{path.name}: {rule.get('alert') or rule['record']} reads {read - seen} before its group records it"
                if "record" in rule:
                    seen.add(rule["record"])


def test_alerts_have_severity_summary_description_and_runbook():
    problems = []
    for file, rule in alerting_rules():
        name = rule["alert"]
        if rule.get("labels", {}).get("severity") not in SEVERITIES:
            problems.append(f"{file}:{name}: labels.severity must be one of {sorted(SEVERITIES)}")
        annotations = rule.get("annotations", {})
        for key in ("summary", "description"):
            if not str(annotations.get(key, "")).strip():
                problems.append(f"{file}:{name}: annotations.{key} is missing")
        if annotations.get("runbook_url") != RUNBOOK_URL.format(name):
            problems.append(f"{file}:{name}: runbook_url must be {RUNBOOK_URL.format(name)}")
        if not (RUNBOOKS_DIR / f"{name}.md").is_file():
            problems.append(f"{file}:{name}: docs/runbooks/{name}.md does not exist")
    assert not problems, "\n".join(problems)


def test_runbooks_are_one_per_alert_and_indexed():
    pages = {p.stem for p in RUNBOOKS_DIR.glob("*.md")} - {"README"}
    assert pages == set(alert_names()), "runbook pages and alert names differ"
    index = (RUNBOOKS_DIR / "README.md").read_text()
    unlinked = [name for name in alert_names() if f"({name}.md)" not in index]
    assert not unlinked, f"docs/runbooks/README.md does not link: {unlinked}"
    for name in alert_names():
        text = (RUNBOOKS_DIR / f"{name}.md").read_text()
        assert text.startswith(f"# {name}\n"), f"{name}.md must start with '# {name}'"
        for section in ("## Meaning", "## Check", "## Fix"):
            assert section in text, f"{name}.md has no '{section}' section"


def test_every_alert_and_severity_has_a_firing_and_a_quiet_unit_test():
    firing, quiet = set(), set()
    for path in rule_test_files():
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                expected = check.get("exp_alerts") or []
                if expected:
                    firing.update((check["alertname"], a["exp_labels"]["severity"]) for a in expected)
                else:
                    quiet.add(check["alertname"])
    defined = {(r["alert"], r["labels"]["severity"]) for _, r in alerting_rules()}
    assert not defined - firing, f"never tested firing (alert, severity): {sorted(defined - firing)}"
    assert not set(alert_names()) - quiet, f"never tested quiet: {sorted(set(alert_names()) - quiet)}"
    assert not {a for a, _ in firing} - set(alert_names()), "tests expect alerts no rule defines"


# --- Alertmanager ---------------------------------------------------------------------------


def test_alertmanager_config_is_valid(amtool):
    code, out = run([amtool, "check-config", str(ALERTMANAGER_CONFIG)])
    assert code == 0, out
    assert "SUCCESS" in out, out


# Critical pages; warning and info go to chat channels of decreasing urgency.
EXPECTED_RECEIVERS = {"critical": "pager", "warning": "chat", "info": "chat-low-priority"}


@pytest.mark.parametrize("severity", sorted(EXPECTED_RECEIVERS))
def test_alertmanager_routes_by_severity(amtool, severity):
    proc = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
         "alertname=BlockSightChainStalled", "namespace=btc", "blocksight=main", f"severity={severity}"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == EXPECTED_RECEIVERS[severity]


def test_alertmanager_grouping_inhibition_and_no_inline_secrets():
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    assert config["route"]["group_by"] == ["alertname", "namespace", "blocksight"]
    assert {
        "source_matchers": ['severity="critical"'],
        "target_matchers": ['severity="warning"'],
        "equal": ["namespace", "blocksight"],
    } in config["inhibit_rules"]

    inline = {"api_url", "routing_key", "service_key", "url", "api_key", "token", "password",
              "auth_password", "bot_token", "webhook_url"}

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                assert key not in inline, f"{path}.{key}: secrets must come from a *_file field"
                walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(config["receivers"], "receivers")


# --- Grafana --------------------------------------------------------------------------------


def load_dashboards():
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS_DIR.glob("*.json"))}


def panels_of(dashboard):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels of a collapsed row


def dashboard_queries(dashboard):
    """(where, PromQL) for every panel target and every query variable's selector."""
    for panel in panels_of(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"].strip())
            assert m, f"variable {var['name']}: expected label_values(<selector>, <label>)"
            yield f"variable {var['name']}", m.group(1)


def test_dashboards_identity_and_variables():
    dashboards = load_dashboards()
    assert {name: d["uid"] for name, d in dashboards.items()} == DASHBOARD_UIDS
    for name, d in dashboards.items():
        assert d.get("id") is None, f"{name}: id must be null so provisioning assigns one"
        variables = {v["name"]: v for v in d["templating"]["list"]}
        ds = variables.get("datasource")
        assert ds and ds["type"] == "datasource" and ds["query"] == "prometheus", name
        for var in ("namespace", "blocksight"):
            assert variables.get(var, {}).get("type") == "query", f"{name}: no query variable {var}"
            assert variables[var]["query"].startswith("label_values("), f"{name}: {var}"
            assert variables[var]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_dashboard_panels_use_the_datasource_variable():
    for name, d in load_dashboards().items():
        ids = [p["id"] for p in panels_of(d)]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in panels_of(d):
            if panel["type"] == "row":
                continue
            where = f"{name} panel {panel['id']} {panel['title']!r}"
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert panel["targets"], f"{where} has no query"
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"], where
                assert target["expr"].strip(), where


def test_dashboard_queries_are_valid_promql(promtool, tmp_path):
    groups = []
    for name, d in load_dashboards().items():
        rules = []
        for i, (where, expr) in enumerate(dashboard_queries(d)):
            rules.append({"record": f"dashboard_query_{i}", "expr": substitute_grafana_variables(expr)})
        assert rules, f"{name} has no queries"
        groups.append({"name": d["uid"], "rules": rules})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    code, out = run([promtool, "check", "rules", str(path)])
    assert code == 0, f"{out}\n{path.read_text()}"


# --- docs/metrics.md ------------------------------------------------------------------------


def markdown_table(section_title: str):
    """Rows (lists of cells) of the first table under `## section_title`."""
    text = METRICS_DOC.read_text()
    m = re.search(rf"^## {re.escape(section_title)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"docs/metrics.md has no '## {section_title}' section"
    rows = [line.strip() for line in m.group(1).splitlines() if line.strip().startswith("|")]
    assert len(rows) > 2, f"'## {section_title}' has no table"
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows[2:]]


def backticked(cell: str) -> str:
    m = re.fullmatch(r"`([A-Za-z_:][\w:]*)`", cell)
    assert m, f"first column must be a metric name in backticks, got {cell!r}"
    return m.group(1)


def test_metrics_doc_lists_exactly_the_operator_metrics():
    documented = {}
    for cells in markdown_table("Metrics exported by the operator"):
        labels = set(re.findall(r"`(\w+)`", cells[2])) if cells[2] not in ("", "-", "none") else set()
        documented[backticked(cells[0])] = (cells[1], labels)
    assert documented == OPERATOR_METRICS


def used_metric_names(histograms: set):
    """Every metric a rule or dashboard query selects; _bucket/_sum/_count series of the given
    histograms (and anything read as _bucket) count as their histogram."""
    exprs = [r["expr"] for _, r in all_rules()]
    for d in load_dashboards().values():
        exprs += [substitute_grafana_variables(e) for _, e in dashboard_queries(d)]
    used = set().union(*(metric_names(e) for e in exprs)) - recorded_names()
    histograms = histograms | {n.removesuffix("_bucket") for n in used if n.endswith("_bucket")}
    folded = set()
    for name in used:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        folded.add(base if base in histograms else name)
    return folded


def test_metrics_doc_lists_every_other_metric_used():
    # Columns: metric, exporter/component, type, meaning.
    rows = markdown_table("Metrics from other components")
    documented = [backticked(cells[0]) for cells in rows]
    assert len(documented) == len(set(documented)), "a metric is listed twice"
    for cells in rows:
        assert len(cells) >= 4 and cells[1] and cells[3], f"{cells[0]}: name its exporter and meaning"
    histograms = {n for n, (kind, _) in OPERATOR_METRICS.items() if kind == "histogram"}
    histograms |= {backticked(c[0]) for c in rows if c[2] == "histogram"}
    other = used_metric_names(histograms) - set(OPERATOR_METRICS)
    assert other - set(documented) == set(), "used but not documented"
    assert set(documented) - other == set(), "documented but used by no rule or dashboard"


def test_metric_name_extraction():
    # The documentation check is only as good as this parser.
    expr = (
        'sum by (namespace, le) (rate(foo_bucket{job="a", le!="1"}[5m] offset 1h)) / on (pod) group_left (x)'
        ' bar:baz:rate5m * 1e3 and max_over_time(qux[26h:5m]) unless label_replace(up, "a", "$1", "b", "(.*)")'
    )
    assert metric_names(expr) == {"foo_bucket", "bar:baz:rate5m", "qux", "up"}
