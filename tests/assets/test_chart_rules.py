"""The chart's PrometheusRule carries exactly the rules in monitoring/ (one copy per cluster)."""
import tempfile
from pathlib import Path

import pytest
import yaml

from conftest import load_all

CHART = "charts/blocksight-operator"


def render(repo, values):
    helm_python = pytest.importorskip("helm_python")
    with helm_python.Chart.load(str(repo / CHART)) as chart:
        return chart.render(values, name="blocksight-operator", namespace="blocksight-system")


def prometheus_rules(rendered):
    docs = [d for path, text in rendered.items() if path.endswith(".yaml") for d in load_all(text)]
    return [d for d in docs if d.get("kind") == "PrometheusRule"]


def test_rule_files_in_the_chart_are_monitorings(repo):
    chart_files = {p.name: p.read_text() for p in (repo / CHART / "files" / "rules").glob("*.yaml")}
    source = {p.name: p.read_text() for p in (repo / "monitoring" / "prometheus" / "rules").glob("*.yaml")}
    assert chart_files == source, "copy monitoring/prometheus/rules/*.yaml to charts/blocksight-operator/files/rules/"


def test_prometheus_rule_holds_every_group_and_validates(repo, kube_validate):
    assert prometheus_rules(render(repo, {})) == [], "off by default"
    rules = prometheus_rules(render(repo, {"metrics": {"prometheusRule": {"enabled": True, "labels": {"release": "kps"}}}}))
    assert len(rules) == 1
    rule = rules[0]
    assert rule["metadata"]["labels"]["release"] == "kps"
    expected = []
    for path in sorted((repo / "monitoring" / "prometheus" / "rules").glob("*.yaml")):
        expected += yaml.safe_load(path.read_text())["groups"]
    key = lambda g: g["name"]
    assert sorted(rule["spec"]["groups"], key=key) == sorted(expected, key=key)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rule.yaml"
        out.write_text(yaml.safe_dump(rule))
        kube_validate(out)
