"""GitOps folder argocd/: Argo CD objects, BlockSight environments, and the Lua health checks.

The health checks run in Lua 5.1 (lupa), the dialect of gopher-lua that Argo CD embeds.
"""
import fnmatch
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO, load_all

ARGOCD = REPO / "argocd"
CHART_DIR = REPO / "charts" / "blocksight-operator"
REPO_URL = "https://github.com/blocksight-live/blocksight-operator.git"
EXPECTED_NETWORKS = {"dev": "regtest", "staging": "testnet4", "production": "mainnet"}
STORAGE_POOL_SELECTOR = {"blocksight.live/node-pool": "storage"}
STORAGE_POOL_TOLERATION = {"key": "blocksight.live/storage", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
HEALTH_KEY = "resource.customizations.health.{}"


def read_yaml(path: Path):
    (doc,) = load_all(path.read_text())
    return doc


def argo_objects():
    """Every Argo CD object under argocd/ (bootstrap and apps/), by kind."""
    found = {}
    for path in [ARGOCD / "bootstrap.yaml", *sorted((ARGOCD / "apps").glob("*.yaml"))]:
        for doc in load_all(path.read_text()):
            found.setdefault(doc["kind"], []).append(doc)
    return found


def one(kind, name=None):
    docs = [d for d in argo_objects().get(kind, []) if name is None or d["metadata"]["name"] == name]
    assert len(docs) == 1, f"expected one {kind} {name or ''} under argocd/, found {len(docs)}"
    return docs[0]


PROJECT = one("AppProject")
OPERATOR_APP = one("Application", "blocksight-operator")
ENVIRONMENTS_APPSET = one("ApplicationSet")
# git files (environments) x clusters (the cluster Secrets labelled for each environment).
((MATRIX,),) = [[g["matrix"] for g in ENVIRONMENTS_APPSET["spec"]["generators"]]]
GIT_GENERATOR, CLUSTER_GENERATOR = (MATRIX["generators"][0]["git"], MATRIX["generators"][1]["clusters"])
(CONFIG_GLOB,) = [f["path"] for f in GIT_GENERATOR["files"]]
CONFIG_FILES = sorted(REPO.glob(CONFIG_GLOB))
BLOCKSIGHT_FILES = sorted(p.parent / "blocksight.yaml" for p in CONFIG_FILES)
IN_CLUSTER_SECRET_FILE = ARGOCD / "cluster-in-cluster.yaml"
IN_CLUSTER_SERVER = "https://kubernetes.default.svc"
# A cluster runs environment <env> when its cluster Secret carries <prefix><env>: "true".
ENVIRONMENT_LABEL_PREFIX = "blocksight.live/environment-"
# Parameters the cluster generator adds; a config.yaml key of the same name would clash in the matrix.
CLUSTER_PARAMS = {"name", "nameNormalized", "server", "project", "metadata", "values"}


def sync_wave(obj) -> int:
    return int(obj["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))


# ---------------------------------------------------------------- Lua health checks

def run_health(script: str, obj: dict):
    """Run an Argo CD health script the way Argo CD does: `obj` global in, `hs` table out."""
    lua51 = pytest.importorskip("lupa.lua51", reason="SKIPPED: lupa (Lua 5.1 runtime) is not installed")
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    hs = lua.execute(script)
    return hs["status"], hs["message"]


def health_scripts(resource: str):
    """The shipped script and its copy in the argocd-cm snippet, so both are exercised."""
    file_script = (ARGOCD / "health" / resource / "health.lua").read_text()
    cm_script = read_yaml(ARGOCD / "argocd-cm-health.yaml")["data"][HEALTH_KEY.format(resource)]
    return {"file": file_script, "argocd-cm": cm_script}


def blocksight(generation=3, status="absent", paused=None, **status_fields):
    obj = {"apiVersion": "blocksight.live/v1alpha1", "kind": "BlockSight",
           "metadata": {"name": "blocksight", "generation": generation}, "spec": {"network": "regtest"}}
    if paused is not None:
        obj["spec"]["paused"] = paused
    if status != "absent":
        obj["status"] = {"observedGeneration": generation, **status_fields}
    return obj


def cond(type_, status, message="", generation=3, reason="Reconciled"):
    return {"type": type_, "status": status, "reason": reason, "message": message, "observedGeneration": generation}


BLOCKSIGHT_HEALTH_CASES = {
    "no status yet": (blocksight(), "Progressing", "Waiting for the operator to observe generation 3"),
    "status from an older generation": (
        {**blocksight(generation=4), "status": {"observedGeneration": 3, "conditions": [cond("Ready", "True", generation=3)]}},
        "Progressing", "Waiting for the operator to observe generation 4",
    ),
    "spec.paused": (
        blocksight(status="present", paused=True, conditions=[cond("Ready", "True", "all up")]),
        "Suspended", "Reconciliation is paused (spec.paused)",
    ),
    "Paused condition": (
        blocksight(status="present", conditions=[cond("Paused", "True", "paused for maintenance"), cond("Degraded", "True", "x")]),
        "Suspended", "paused for maintenance",
    ),
    "invalid spec": (
        blocksight(status="present", conditions=[
            cond("Ready", "True", "still serving the previous spec"),
            cond("InvalidSpec", "True", "spec.bitcoind.prune cannot be combined with txindex", reason="PruneWithTxindex"),
        ]),
        "Degraded", "spec.bitcoind.prune cannot be combined with txindex",
    ),
    "degraded": (
        blocksight(status="present", conditions=[cond("Ready", "True"), cond("Degraded", "True", "electrs is crash-looping")]),
        "Degraded", "electrs is crash-looping",
    ),
    "ready": (
        blocksight(status="present", phase="Ready", conditions=[
            cond("Ready", "True", "all components are ready"), cond("Progressing", "False"),
            cond("Degraded", "False"), cond("InvalidSpec", "False"), cond("Paused", "False"),
        ]),
        "Healthy", "all components are ready",
    ),
    "syncing": (
        blocksight(status="present", phase="Syncing", conditions=[
            cond("Ready", "False", "bitcoind is in initial block download"),
            cond("Progressing", "True", "bitcoind initial block download: 41%"),
        ]),
        "Progressing", "bitcoind initial block download: 41%",
    ),
    "Ready condition left from an older generation": (
        blocksight(status="present", conditions=[cond("Ready", "True", "old", generation=2)]),
        "Progressing", "Waiting for BlockSight to become ready",
    ),
    "unknown readiness, no conditions": (blocksight(status="present"), "Progressing", "Waiting for BlockSight to become ready"),
}


@pytest.mark.parametrize("source", ["file", "argocd-cm"])
@pytest.mark.parametrize("case", list(BLOCKSIGHT_HEALTH_CASES))
def test_blocksight_health(case, source):
    obj, expected_status, expected_message = BLOCKSIGHT_HEALTH_CASES[case]
    script = health_scripts("blocksight.live_BlockSight")[source]
    assert run_health(script, obj) == (expected_status, expected_message)


@pytest.mark.parametrize("source", ["file", "argocd-cm"])
@pytest.mark.parametrize("health, expected", [
    (None, ("Progressing", "")),
    ({"status": "Healthy"}, ("Healthy", "")),
    ({"status": "Degraded", "message": "Deployment exceeded its progress deadline"},
     ("Degraded", "Deployment exceeded its progress deadline")),
])
def test_application_health(health, expected, source):
    app = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "a"}}
    if health is not None:
        app["status"] = {"health": health}
    assert run_health(health_scripts("argoproj.io_Application")[source], app) == expected


def test_argocd_cm_snippet_carries_the_shipped_scripts():
    data = read_yaml(ARGOCD / "argocd-cm-health.yaml")["data"]
    shipped = {HEALTH_KEY.format(p.parent.name): p.read_text() for p in (ARGOCD / "health").glob("*/health.lua")}
    assert shipped and data == shipped


# ---------------------------------------------------------------- schema validation

ARGO_FILES = [ARGOCD / "bootstrap.yaml", ARGOCD / "argocd-cm-health.yaml", IN_CLUSTER_SECRET_FILE,
              *sorted((ARGOCD / "apps").glob("*.yaml"))]


def test_every_yaml_file_is_checked():
    """Each YAML under argocd/ is an Argo CD object, a BlockSight, the cm snippet, the cluster Secret or a generator config."""
    all_files = set(ARGOCD.rglob("*.yaml")) | set(ARGOCD.rglob("*.yml"))
    assert all_files == set(ARGO_FILES) | set(CONFIG_FILES) | set(BLOCKSIGHT_FILES)


def test_argo_objects_are_valid(kube_validate):
    # Argo CD CRDs come with kube-validate; these objects hold no BlockSight kinds.
    files = ARGO_FILES
    out = kube_validate(*files, crds=())
    documents = sum(len(load_all(f.read_text())) for f in files)
    assert f"kube-validate: {documents} passed" in out, out


def test_blocksight_objects_are_valid(kube_validate):
    assert (REPO / "crds").is_dir(), "crds/ is missing: the BlockSight CRD is generated from the Rust code"
    out = kube_validate(*BLOCKSIGHT_FILES)
    assert f"kube-validate: {len(BLOCKSIGHT_FILES)} passed" in out, out


CONFIG_KEYS = {"environment": str, "network": str, "namespace": str, "targetRevision": str}


@pytest.mark.parametrize("config_file", CONFIG_FILES, ids=lambda p: p.parent.name)
def test_generator_config(config_file):
    config = yaml.safe_load(config_file.read_text())
    assert {k: type(v) for k, v in config.items()} == CONFIG_KEYS
    assert not set(config) & CLUSTER_PARAMS, "would clash with the cluster generator's parameters"
    assert config["environment"] == config_file.parent.name
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", config["namespace"])
    # Every key the generators and the template read exists (missingkey=error would stop the ApplicationSet).
    templated = yaml.safe_dump([ENVIRONMENTS_APPSET["spec"]["template"], CLUSTER_GENERATOR])
    used = set(re.findall(r"\{\{\s*\.(\w+)", templated)) - {"path"} - CLUSTER_PARAMS
    assert used and used <= set(config), used - set(config)


# ---------------------------------------------------------------- environments

def test_applicationset_generates_the_three_environments():
    assert GIT_GENERATOR["repoURL"] == REPO_URL
    assert {p.parent.name for p in CONFIG_FILES} == set(EXPECTED_NETWORKS)
    source = ENVIRONMENTS_APPSET["spec"]["template"]["spec"]["source"]
    assert source["directory"]["include"] == "blocksight.yaml"
    assert source["path"] == "{{ .path.path }}"


# ---------------------------------------------------------------- which cluster runs which environment
#
# A small model of the ApplicationSet controller: Go-template substitution of `{{ .a.b }}`
# (anything else is refused, so the model cannot silently disagree with Argo CD), the matrix
# (second generator templated with each parameter set of the first) and Kubernetes label selectors.

def render(text: str, params: dict) -> str:
    def value(match):
        expression = match.group(1).strip()
        assert re.fullmatch(r"(\.\w+)+", expression), f"the test model only handles {{{{ .a.b }}}}, not {expression!r}"
        current = params
        for part in expression.split(".")[1:]:
            assert part in current, f"missingkey=error: {expression}"
            current = current[part]
        return str(current)
    return re.sub(r"\{\{(.*?)\}\}", value, text)


def render_tree(tree, params):
    if isinstance(tree, dict):
        return {render(k, params): render_tree(v, params) for k, v in tree.items()}
    if isinstance(tree, list):
        return [render_tree(v, params) for v in tree]
    return render(tree, params) if isinstance(tree, str) else tree


def selects(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for requirement in selector.get("matchExpressions", []):
        key, operator, values = requirement["key"], requirement["operator"], requirement.get("values", [])
        present = key in labels
        ok = {"In": present and labels.get(key) in values, "NotIn": not present or labels[key] not in values,
              "Exists": present, "DoesNotExist": not present}[operator]
        if not ok:
            return False
    return True


def git_file_params(config_file: Path) -> dict:
    relative = config_file.parent.relative_to(REPO)
    return {**yaml.safe_load(config_file.read_text()),
            "path": {"path": str(relative), "basename": relative.name, "filename": config_file.name}}


def cluster_params(secret: dict) -> dict:
    data = secret.get("stringData", {})
    return {"name": data["name"], "nameNormalized": data["name"], "server": data["server"], "project": "",
            "metadata": {"labels": secret["metadata"].get("labels", {}),
                         "annotations": secret["metadata"].get("annotations", {})}}


def generate_applications(cluster_secrets: list) -> list:
    """The Applications the environments ApplicationSet generates in a cluster with these cluster Secrets."""
    cluster_secrets = [s for s in cluster_secrets
                       if s["metadata"].get("labels", {}).get("argocd.argoproj.io/secret-type") == "cluster"]
    applications = []
    for config_file in CONFIG_FILES:
        first = git_file_params(config_file)
        selector = render_tree(CLUSTER_GENERATOR["selector"], first)
        for secret in cluster_secrets:
            if selects(selector, secret["metadata"].get("labels", {})):
                applications.append(render_tree(ENVIRONMENTS_APPSET["spec"]["template"], {**first, **cluster_params(secret)}))
    return applications


def in_cluster_secret(*environments: str) -> dict:
    secret = read_yaml(IN_CLUSTER_SECRET_FILE)
    labels = {k: v for k, v in secret["metadata"]["labels"].items() if not k.startswith(ENVIRONMENT_LABEL_PREFIX)}
    labels.update({f"{ENVIRONMENT_LABEL_PREFIX}{e}": "true" for e in environments})
    return {**secret, "metadata": {**secret["metadata"], "labels": labels}}



@pytest.mark.parametrize("assigned", [(), ("dev",), ("dev", "staging"), ("production",), ("dev", "staging", "production")],
                         ids=lambda a: "+".join(a) or "none")
def test_a_cluster_runs_only_the_environments_assigned_to_it(assigned):
    applications = generate_applications([in_cluster_secret(*assigned)])
    assert sorted(a["metadata"]["name"] for a in applications) == sorted(f"blocksight-{e}" for e in assigned)
    for application in applications:
        environment = application["metadata"]["labels"]["blocksight.live/environment"]
        config = yaml.safe_load((ARGOCD / "environments" / environment / "config.yaml").read_text())
        assert application["spec"]["destination"] == {"server": IN_CLUSTER_SERVER, "namespace": config["namespace"]}
        assert application["spec"]["source"]["targetRevision"] == config["targetRevision"]
        assert application["spec"]["source"]["path"] == f"argocd/environments/{environment}"


def test_unlabelled_or_foreign_secrets_deploy_nothing():
    plain_in_cluster = in_cluster_secret()
    # A label for another environment name, or a "false" value, assigns nothing.
    other = in_cluster_secret()
    other["metadata"]["labels"].update({f"{ENVIRONMENT_LABEL_PREFIX}qa": "true", f"{ENVIRONMENT_LABEL_PREFIX}production": "false"})
    # Labels on a Secret that is not a cluster Secret (e.g. a repository) do not count.
    repository = in_cluster_secret("production")
    repository["metadata"]["labels"]["argocd.argoproj.io/secret-type"] = "repository"
    assert generate_applications([plain_in_cluster, other, repository]) == []


def test_shipped_cluster_secret_is_argo_cds_own_cluster():
    secret = read_yaml(IN_CLUSTER_SECRET_FILE)
    assert secret["metadata"]["namespace"] == ENVIRONMENTS_APPSET["metadata"]["namespace"]
    assert secret["stringData"]["server"] == IN_CLUSTER_SERVER
    assert yaml.safe_load(secret["stringData"]["config"]) == {"tlsClientConfig": {"insecure": False}}
    # The by-hand copy is for a laptop: dev only, never production.
    assert [a["metadata"]["name"] for a in generate_applications([secret])] == ["blocksight-dev"]
    # The cluster generator reads the Secret from the Argo CD namespace; the app of apps must not sync it.
    assert IN_CLUSTER_SECRET_FILE.parent != ARGOCD / "apps"


def test_environment_revisions():
    """dev and staging follow main (where the generator reads every config.yaml); production a release tag."""
    revisions = {p.parent.name: yaml.safe_load(p.read_text())["targetRevision"] for p in CONFIG_FILES}
    assert GIT_GENERATOR["revision"] == "main"
    assert revisions["dev"] == revisions["staging"] == "main"
    assert re.fullmatch(r"v\d+\.\d+\.\d+", revisions["production"]), revisions["production"]


@pytest.mark.parametrize("environment", sorted(EXPECTED_NETWORKS))
def test_environment_runs_its_network(environment):
    folder = ARGOCD / "environments" / environment
    config = yaml.safe_load((folder / "config.yaml").read_text())
    instance = read_yaml(folder / "blocksight.yaml")
    assert (instance["apiVersion"], instance["kind"]) == ("blocksight.live/v1alpha1", "BlockSight")
    assert instance["spec"]["network"] == EXPECTED_NETWORKS[environment] == config["network"]
    assert "namespace" not in instance["metadata"], "the Application's destination sets the namespace"


@pytest.mark.parametrize("environment", sorted(EXPECTED_NETWORKS))
def test_operator_renders_the_environment(environment, blocksight_bin):
    """The operator accepts the BlockSight and honours each component's placement."""
    path = ARGOCD / "environments" / environment / "blocksight.yaml"
    proc = subprocess.run([str(blocksight_bin), "render", "-f", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    instance = read_yaml(path)
    workloads = {o["metadata"]["name"]: o for o in load_all(proc.stdout) if o["kind"] in ("StatefulSet", "Deployment")}
    assert f"{instance['metadata']['name']}-bitcoind" in workloads, sorted(workloads)
    for component, settings in instance["spec"].items():
        if not isinstance(settings, dict) or "placement" not in settings:
            continue
        pod = workloads[f"{instance['metadata']['name']}-{component}"]["spec"]["template"]["spec"]
        assert pod.get("nodeSelector") == settings["placement"]["nodeSelector"], component
        for toleration in settings["placement"].get("tolerations", []):
            assert toleration in pod.get("tolerations", []), component


def test_production_keeps_its_data_on_the_storage_pool():
    spec = read_yaml(ARGOCD / "environments" / "production" / "blocksight.yaml")["spec"]
    assert spec["deletionPolicy"] == "Retain"
    for component in ("bitcoind", "electrs"):
        placement = spec[component]["placement"]
        assert placement["nodeSelector"] == STORAGE_POOL_SELECTOR, component
        assert STORAGE_POOL_TOLERATION in placement["tolerations"], component


def quantity_bytes(quantity: str) -> float:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(quantity)).groups()
    return float(number) * units.get(unit, 1)


def test_dev_fits_on_a_laptop():
    spec = read_yaml(ARGOCD / "environments" / "dev" / "blocksight.yaml")["spec"]
    text = yaml.safe_dump(spec)
    memory_limits = sum(quantity_bytes(c["resources"]["limits"]["memory"]) for c in spec.values()
                        if isinstance(c, dict) and "resources" in c)
    storage = sum(quantity_bytes(s) for s in re.findall(r"size: (\S+)", text))
    assert spec["network"] == "regtest"
    assert memory_limits <= 4 * 2**30, f"{memory_limits / 2**30:.1f} GiB of memory limits"
    assert storage <= 20 * 2**30, f"{storage / 2**30:.1f} GiB of volumes"
    assert "placement" not in text, "a laptop has no storage node pool"


# ---------------------------------------------------------------- operator Application and project

def test_operator_application_syncs_first_and_server_side():
    spec = OPERATOR_APP["spec"]
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert sync_wave(OPERATOR_APP) == -1 < sync_wave(ENVIRONMENTS_APPSET)
    assert sync_wave(PROJECT) < sync_wave(OPERATOR_APP)
    assert (spec["source"]["chart"], spec["source"]["targetRevision"]) == (chart["name"], chart["version"])
    assert spec["source"]["helm"].get("skipCrds", False) is False, "CRDs must come with the chart"
    policy = spec["syncPolicy"]
    assert policy["automated"] == {"prune": True, "selfHeal": True}
    assert {"ServerSideApply=true", "CreateNamespace=true"} <= set(policy["syncOptions"])


def test_operator_chart_registry_is_declared_as_oci():
    repositories = [s["stringData"] for s in argo_objects().get("Secret", [])
                    if s["metadata"].get("labels", {}).get("argocd.argoproj.io/secret-type") == "repository"]
    chart_repo = OPERATOR_APP["spec"]["source"]["repoURL"]
    assert {"type": "helm", "url": chart_repo, "enableOCI": "true"}.items() <= next(
        (r for r in repositories if r["url"] == chart_repo), {}).items(), repositories


def test_environment_applications_sync_automatically():
    policy = ENVIRONMENTS_APPSET["spec"]["template"]["spec"]["syncPolicy"]
    assert policy["automated"] == {"prune": True, "selfHeal": True}
    assert "CreateNamespace=true" in policy["syncOptions"]
    assert ENVIRONMENTS_APPSET["spec"]["syncPolicy"]["preserveResourcesOnDeletion"] is True


def test_project_admits_only_our_sources_and_destinations():
    project = PROJECT["spec"]
    name = PROJECT["metadata"]["name"]
    operator_source = OPERATOR_APP["spec"]["source"]
    template = ENVIRONMENTS_APPSET["spec"]["template"]["spec"]
    assert OPERATOR_APP["spec"]["project"] == template["project"] == name
    assert set(project["sourceRepos"]) == {REPO_URL, operator_source["repoURL"]}
    assert template["source"]["repoURL"] == REPO_URL

    wanted = [(OPERATOR_APP["spec"]["destination"]["server"], OPERATOR_APP["spec"]["destination"]["namespace"])]
    # The environments land on whichever cluster Secret selects them: Argo CD's own cluster.
    wanted += [(IN_CLUSTER_SERVER, yaml.safe_load(p.read_text())["namespace"]) for p in CONFIG_FILES]
    allowed = [(d["server"], d["namespace"]) for d in project["destinations"]]
    assert sorted(allowed) == sorted(wanted), "destinations must be exactly the operator's and the environments'"


def allowed(whitelist, group, kind, name=None):
    return any(
        fnmatch.fnmatchcase(group, entry["group"]) and fnmatch.fnmatchcase(kind, entry["kind"])
        and (name is None or fnmatch.fnmatchcase(name, entry.get("name", "*")))
        for entry in whitelist
    )


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def test_project_whitelists_every_kind_the_chart_renders():
    helm = pytest.importorskip("helm_python", reason="SKIPPED: helm-python-sdk (import helm_python) is not installed")
    project = PROJECT["spec"]
    operator = OPERATOR_APP["spec"]
    production = yaml.safe_load((CHART_DIR / "ci" / "production-values.yaml").read_text())
    rendered = []
    with helm.Chart.load(CHART_DIR) as chart:
        for values in (operator["source"]["helm"].get("valuesObject", {}), production):
            manifests = chart.render(values, name=operator["source"]["helm"]["releaseName"],
                                     namespace=operator["destination"]["namespace"])
            rendered += [d for path, text in manifests.items() if not path.endswith("NOTES.txt") for d in load_all(text)]
    assert rendered

    for obj in rendered:
        group, kind, name = group_of(obj["apiVersion"]), obj["kind"], obj["metadata"]["name"]
        if "namespace" in obj["metadata"]:
            assert allowed(project["namespaceResourceWhitelist"], group, kind), f"{group}/{kind} not whitelisted"
        else:
            assert allowed(project["clusterResourceWhitelist"], group, kind, name), f"{group}/{kind} {name} not whitelisted"
    for path in BLOCKSIGHT_FILES:
        obj = read_yaml(path)
        assert allowed(project["namespaceResourceWhitelist"], group_of(obj["apiVersion"]), obj["kind"])
    for namespace in [d["namespace"] for d in project["destinations"]]:
        assert allowed(project["clusterResourceWhitelist"], "", "Namespace", namespace), namespace


def test_project_whitelists_the_chart_crds():
    crd_files = sorted((CHART_DIR / "crds").glob("*.yaml"))
    assert crd_files, "charts/blocksight-operator/crds/ is empty: copy the generated crds/*.yaml into it"
    for path in crd_files:
        for crd in load_all(path.read_text()):
            assert allowed(PROJECT["spec"]["clusterResourceWhitelist"], "apiextensions.k8s.io",
                           crd["kind"], crd["metadata"]["name"]), crd["metadata"]["name"]
