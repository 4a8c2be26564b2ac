"""The operator's Helm chart (charts/blocksight-operator): lint, render, schema, security, RBAC.

Helm runs in-process through helm-python-sdk (real Helm v4 via a shared library): `lint`
and `Chart.render` behave like `helm lint --strict` and `helm template`, including the
values.schema.json check. Every rendered object is then validated by kube-validate.
"""
import re
import subprocess
import tomllib

import pytest
import yaml

from conftest import REPO, load_all

helm = pytest.importorskip("helm_python", reason="SKIPPED: helm-python-sdk (import helm_python) is not installed")

CHART_DIR = REPO / "charts" / "blocksight-operator"
RELEASE = "blocksight-operator"
RELEASE_NAMESPACE = "blocksight-system"
OPERATOR_UID = 65532

DEFAULT_VALUES: dict = {}
PRODUCTION_VALUES = yaml.safe_load((CHART_DIR / "ci" / "production-values.yaml").read_text())
VALUE_SETS = {"default": DEFAULT_VALUES, "production": PRODUCTION_VALUES}

# Values Helm must refuse, each with the part of the error that proves the schema caught it.
BAD_VALUES_FILES = {
    "replicas-not-a-number": ("replicaCount: two\n", "/replicaCount"),
    "unknown-top-level-key": ("replicas: 2\n", "additional properties 'replicas'"),
    "bad-log-format": ("logFormat: xml\n", "/logFormat"),
    "bad-watch-namespace": ("watchNamespace: Blocksight_Prod\n", "/watchNamespace"),
    "two-replicas-without-leader-election": (
        "replicaCount: 2\nleaderElection:\n  enabled: false\n  leaseName: blocksight-operator\n",
        "/replicaCount",
    ),
}


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


def render(chart, values):
    """`helm template`: the rendered manifests as one YAML stream (NOTES.txt left out)."""
    manifests = chart.render(values, name=RELEASE, namespace=RELEASE_NAMESPACE)
    texts = [text for path, text in sorted(manifests.items()) if not path.endswith("NOTES.txt") and text.strip()]
    return "\n---\n".join(texts)


def objects_of(chart, values):
    return load_all(render(chart, values))


def only(objects, kind, name=None):
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, rendered {len(found)}"
    return found[0]


def lint_problems(values):
    """Findings that fail `helm lint --strict` (warnings and errors; info is advice only)."""
    report = helm.lint(CHART_DIR, values, strict=True)
    return [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]


def rule_triples(rules):
    """A list of RBAC PolicyRules as a set of (apiGroup, resource, verb)."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


def test_app_version_is_the_crate_version():
    crate_version = tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["version"]
    metadata = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert metadata["apiVersion"] == "v2"
    assert re.fullmatch(r"\d+\.\d+\.\d+", metadata["version"]), metadata["version"]
    assert metadata["appVersion"] == crate_version, "Chart.yaml appVersion must follow the crate version"


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_lint_strict_passes(value_set):
    assert lint_problems(VALUE_SETS[value_set]) == []


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_every_rendered_object_is_valid(chart, value_set, kube_validate, tmp_path):
    manifest = tmp_path / f"{value_set}.yaml"
    manifest.write_text(render(chart, VALUE_SETS[value_set]))
    # The templates render no BlockSight kinds, so the project CRDs are not needed here.
    out = kube_validate(manifest, crds=())
    rendered = len(load_all(manifest.read_text()))
    assert f"kube-validate: {rendered} passed" in out, out


@pytest.mark.parametrize("case", sorted(BAD_VALUES_FILES))
def test_bad_values_are_rejected(chart, case, tmp_path):
    text, expected_error = BAD_VALUES_FILES[case]
    values_file = tmp_path / f"{case}.yaml"
    values_file.write_text(text)
    values = helm.values_from_yaml(values_file.read_text())

    problems = lint_problems(values)
    assert any(expected_error in str(p) for p in problems), f"helm lint accepted {case}: {problems}"
    with pytest.raises(helm.HelmValuesError, match=re.escape(expected_error)):
        chart.render(values, name=RELEASE, namespace=RELEASE_NAMESPACE)


def test_pdb_that_would_block_every_drain_is_rejected(chart):
    # Helm lint ignores `fail` in templates, so this guard is only visible when rendering.
    with pytest.raises(helm.HelmRenderError, match="minAvailable must be lower than replicaCount"):
        chart.render({"podDisruptionBudget": {"minAvailable": 2}}, name=RELEASE, namespace=RELEASE_NAMESPACE)


def test_default_values_pass_the_schema(chart):
    chart.validate_schema(chart.values)  # would raise HelmValuesError


def test_every_value_is_documented():
    """Each leaf of values.yaml has a comment right above itself or above one of its parents."""
    undocumented = []
    parents = []  # (indent, documented) of the open mappings
    previous = ""
    for line in (CHART_DIR / "values.yaml").read_text().splitlines():
        match = re.match(r"^(\s*)([A-Za-z][\w.-]*):(.*)$", line)
        if match:
            indent, key, rest = len(match[1]), match[2], match[3].split("#")[0].strip()
            while parents and parents[-1][0] >= indent:
                parents.pop()
            documented = previous.lstrip().startswith("#") or any(d for _, d in parents)
            if rest:
                if not documented:
                    undocumented.append(key)
            else:
                parents.append((indent, documented))
        if line.strip():
            previous = line
    assert undocumented == [], f"values without a comment: {undocumented}"


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_deployment_meets_restricted_pod_security(chart, value_set):
    deployment = only(objects_of(chart, VALUE_SETS[value_set]), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    pod_security = pod.get("securityContext", {})
    assert pod_security.get("runAsNonRoot") is True
    assert pod_security.get("runAsUser") == OPERATOR_UID
    assert pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault"
    for host_field in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(host_field), host_field
    assert not [v for v in pod.get("volumes", []) if "hostPath" in v]
    containers = pod["containers"] + pod.get("initContainers", [])
    for container in containers:
        security = container.get("securityContext", {})
        assert security.get("allowPrivilegeEscalation") is False, container["name"]
        assert security.get("privileged") is not True, container["name"]
        assert security.get("readOnlyRootFilesystem") is True, container["name"]
        assert security.get("capabilities", {}).get("drop") == ["ALL"], container["name"]
        assert not security.get("capabilities", {}).get("add"), container["name"]
        assert security.get("runAsUser", OPERATOR_UID) == OPERATOR_UID, container["name"]
        assert "seccompProfile" not in security or security["seccompProfile"]["type"] == "RuntimeDefault"


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_deployment_runs_the_operator_highly_available(chart, value_set):
    objects = objects_of(chart, VALUE_SETS[value_set])
    deployment = only(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    app_version = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["appVersion"]

    assert deployment["spec"]["replicas"] == 2
    assert container["image"] == f"ghcr.io/blocksight-live/blocksight-operator:{app_version}"
    args = container["args"]
    assert args[0] == "run"
    assert "--leader-election=true" in args
    assert args[args.index("--metrics-addr") + 1] == "0.0.0.0:8080"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert list(ports.values()) == [8080], "one port serves /metrics, /livez and /readyz"
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path
        assert get["port"] in (8080, *ports), f"{probe} must hit the metrics port"
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    assert container["resources"]["limits"]["memory"]

    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    (spread,) = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["labelSelector"]["matchLabels"] == selector
    pdb = only(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == selector

    service = only(objects, "Service")
    assert service["spec"]["selector"] == selector
    assert [p["targetPort"] for p in service["spec"]["ports"]] == list(ports)
    account = only(objects, "ServiceAccount")
    assert pod["serviceAccountName"] == account["metadata"]["name"]


def test_single_replica_renders_no_pdb(chart):
    objects = objects_of(chart, {"replicaCount": 1})
    assert [o for o in objects if o["kind"] == "PodDisruptionBudget"] == []


def test_priority_class_is_optional(chart):
    default_pod = only(objects_of(chart, {}), "Deployment")["spec"]["template"]["spec"]
    assert "priorityClassName" not in default_pod
    pod = only(objects_of(chart, {"priorityClassName": "blocksight-critical"}), "Deployment")["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "blocksight-critical"


def test_service_monitor_scrapes_the_metrics_service(chart):
    assert not [o for o in objects_of(chart, DEFAULT_VALUES) if o["kind"] == "ServiceMonitor"]
    objects = objects_of(chart, PRODUCTION_VALUES)
    monitor = only(objects, "ServiceMonitor")
    service = only(objects, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selected = monitor["spec"]["selector"]["matchLabels"]
    assert selected.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]]
    assert endpoint["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == PRODUCTION_VALUES["metrics"]["serviceMonitor"]["labels"]["release"]


def test_cluster_wide_mode(chart):
    objects = objects_of(chart, DEFAULT_VALUES)
    args = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace" not in args
    assert {o["kind"] for o in objects} >= {"ClusterRole", "ClusterRoleBinding"}


def test_single_namespace_mode(chart):
    watched = PRODUCTION_VALUES["watchNamespace"]
    assert watched and watched != RELEASE_NAMESPACE, "ci/production-values.yaml must exercise namespaced mode"
    objects = objects_of(chart, PRODUCTION_VALUES)
    args = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--namespace") + 1] == watched
    assert not [o for o in objects if o["kind"].startswith("Cluster")], "namespaced mode must not grant cluster-wide rights"
    role = only(objects, "Role", RELEASE)
    assert role["metadata"]["namespace"] == watched


@pytest.fixture(scope="module")
def operator_rbac(blocksight_bin):
    """The rules the operator declares it needs: `blocksight rbac`."""
    proc = subprocess.run([str(blocksight_bin), "rbac"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    declared = yaml.safe_load(proc.stdout)
    assert set(declared) == {"watchScope", "leaderElection"}, declared
    return {scope: rule_triples(rules) for scope, rules in declared.items()}


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_rbac_is_exactly_what_the_operator_needs(chart, value_set, operator_rbac):
    values = VALUE_SETS[value_set]
    objects = objects_of(chart, values)
    watch_namespace = values.get("watchNamespace", "")
    account = only(objects, "ServiceAccount")["metadata"]
    subject = {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}

    watch_kind = "Role" if watch_namespace else "ClusterRole"
    watch_role = only(objects, watch_kind, RELEASE)
    lease_role = only(objects, "Role", f"{RELEASE}-leader-election")
    assert watch_role["metadata"].get("namespace") == (watch_namespace or None)
    assert lease_role["metadata"]["namespace"] == RELEASE_NAMESPACE == account["namespace"]

    for role in (watch_role, lease_role):
        binding = only(objects, role["kind"] + "Binding", role["metadata"]["name"])
        assert binding["metadata"].get("namespace") == role["metadata"].get("namespace")
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io", "kind": role["kind"], "name": role["metadata"]["name"],
        }
        assert binding["subjects"] == [subject]

    assert rule_triples(watch_role["rules"]) == operator_rbac["watchScope"]
    assert rule_triples(lease_role["rules"]) == operator_rbac["leaderElection"]
    # Nothing beyond those two roles is granted.
    roles = [o for o in objects if o["kind"] in ("Role", "ClusterRole")]
    assert len(roles) == 2, [r["metadata"]["name"] for r in roles]


def test_chart_crds_are_the_repository_crds():
    repo_crds, chart_crds = REPO / "crds", CHART_DIR / "crds"
    assert repo_crds.is_dir() and list(repo_crds.glob("*.yaml")), "crds/ is missing: generate it from the Rust code"
    assert chart_crds.is_dir(), f"{chart_crds} is missing: copy crds/*.yaml into it"
    repo_files = sorted(p.name for p in repo_crds.iterdir() if p.is_file())
    chart_files = sorted(p.name for p in chart_crds.iterdir() if p.is_file())
    assert chart_files == repo_files
    for name in repo_files:
        assert (chart_crds / name).read_bytes() == (repo_crds / name).read_bytes(), f"{name} differs"


# ---------------------------------------------------------------- leader election off, metrics discovery

NO_LEADER_ELECTION = {"replicaCount": 1, "leaderElection": {"enabled": False, "leaseName": "blocksight-operator"}}


def test_leader_election_off(chart, operator_rbac, kube_validate, tmp_path):
    objects = objects_of(chart, NO_LEADER_ELECTION)
    args = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--leader-election=false" in args
    assert "--lease-name" not in args and not [a for a in args if a.startswith("--leader-election") and a != "--leader-election=false"]
    # No Lease, so no right to one: only the watch-scope role and its binding remain.
    roles = [o for o in objects if o["kind"] in ("Role", "ClusterRole")]
    assert [r["metadata"]["name"] for r in roles] == [RELEASE]
    assert rule_triples(roles[0]["rules"]) == operator_rbac["watchScope"]
    assert not [o for o in objects if o["kind"] in ("Role", "RoleBinding") and "leader-election" in o["metadata"]["name"]]
    manifest = tmp_path / "no-leader-election.yaml"
    manifest.write_text(render(chart, NO_LEADER_ELECTION))
    kube_validate(manifest, crds=())


def test_leader_election_role_only_with_leader_election(chart):
    with_lease = {o["metadata"]["name"] for o in objects_of(chart, DEFAULT_VALUES) if o["kind"] in ("Role", "RoleBinding")}
    without = {o["metadata"]["name"] for o in objects_of(chart, NO_LEADER_ELECTION) if o["kind"] in ("Role", "RoleBinding")}
    assert with_lease - without == {f"{RELEASE}-leader-election"}


METRICS_CASES = {
    "default": DEFAULT_VALUES,
    "production": PRODUCTION_VALUES,
    "other port and name": {"metrics": {"port": 9443}, "fullnameOverride": "bso"},
    "leader election off": NO_LEADER_ELECTION,
}


@pytest.mark.parametrize("case", sorted(METRICS_CASES))
def test_metrics_service_is_headless_and_handed_to_the_operator(chart, case):
    """Each BlockSight's Prometheus resolves OPERATOR_METRICS_TARGET by DNS to every replica: only the
    leader exports per-instance series, so a ClusterIP (one random replica per scrape) would lose them."""
    objects = objects_of(chart, METRICS_CASES[case])
    service = only(objects, "Service")
    container = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert service["spec"]["clusterIP"] == "None"
    (container_port,) = [p["containerPort"] for p in container["ports"]]
    (service_port,) = service["spec"]["ports"]
    # Headless Services do not translate ports: the advertised port must be the one the pods listen on.
    assert service_port["port"] == container_port
    assert container["args"][container["args"].index("--metrics-addr") + 1] == f"0.0.0.0:{container_port}"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OPERATOR_METRICS_TARGET"] == (
        f"{service['metadata']['name']}.{RELEASE_NAMESPACE}.svc:{container_port}"
    )


@pytest.mark.parametrize("case", sorted(METRICS_CASES))
def test_operator_binary_accepts_the_rendered_command_line(chart, blocksight_bin, case):
    """The real `blocksight run` parses the rendered args (clap checks every value before --help)."""
    container = only(objects_of(chart, METRICS_CASES[case]), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    proc = subprocess.run([str(blocksight_bin), *container["args"], "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # Every plain env var the chart sets for the operator is one the binary reads.
    read_from_env = set(re.findall(r"\[env: (\w+)=", proc.stdout))
    chart_env = {e["name"] for e in container["env"]} - {"RUST_LOG"}
    assert chart_env <= read_from_env, chart_env - read_from_env


@pytest.mark.parametrize("case", sorted(METRICS_CASES))
def test_the_operator_hands_its_own_image_to_the_monitoring_init_containers(chart, case):
    """Prometheus and Grafana pods run the operator's image to write its rules and dashboards:
    it must be exactly the image the operator runs (same release, same digest or tag)."""
    container = only(objects_of(chart, METRICS_CASES[case]), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["OPERATOR_IMAGE"] == container["image"]
