"""The laptop stack: `blocksight render --format compose` against Compose's own loader.

compose-config (tests/gotools: compose-go, the library `docker compose config` is built on)
validates each rendered project against the Compose specification and resolves it with the
project's .env, as `docker compose up` would; the tests then compare the resolved project with
the Kubernetes objects `blocksight render` prints for the same file: configuration files
byte-equal, the same images, ports, volumes and credentials, and no credential in the compose
file. tests/run.sh builds compose-config (tests/gotools/build.sh) and sets BLOCKSIGHT_COMPOSE_CONFIG.
"""
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


@pytest.fixture(scope="session")
def compose_config() -> Path:
    path = os.environ.get("BLOCKSIGHT_COMPOSE_CONFIG")
    if not path or not Path(path).exists():
        pytest.fail("BLOCKSIGHT_COMPOSE_CONFIG is not set: tests/run.sh builds it (tests/gotools/build.sh)")
    return Path(path)


def render_compose(blocksight_bin, example: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(blocksight_bin), "render", "--format", "compose", "-f", str(example), "--dir", str(out)],
        capture_output=True, text=True, timeout=120,
    )


def resolve(compose_config, out: Path) -> dict:
    proc = subprocess.run([str(compose_config), str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"Compose refused the project:\n{proc.stderr}"
    return yaml.safe_load(proc.stdout)


def cluster_objects(blocksight_bin, example: Path) -> list[dict]:
    proc = subprocess.run([str(blocksight_bin), "render", "-o", "json", "-f", str(example)],
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(proc.stdout)["items"]


def env_values(out: Path) -> dict[str, str]:
    values = {}
    for line in (out / ".env").read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values[key] = value.strip("'")
    return values


@pytest.fixture(scope="module", params=EXAMPLES, ids=lambda p: p.stem)
def rendered(request, tmp_path_factory, blocksight_bin, compose_config):
    example = request.param
    out = tmp_path_factory.mktemp(example.stem) / "stack"
    proc = render_compose(blocksight_bin, example, out)
    assert proc.returncode == 0, proc.stderr
    return {
        "example": example,
        "out": out,
        "stdout": proc.stdout,
        "project": resolve(compose_config, out),
        "objects": cluster_objects(blocksight_bin, example),
    }


def pods(objects):
    for obj in objects:
        if obj["kind"] in ("StatefulSet", "Deployment"):
            yield obj["metadata"]["name"], obj["kind"], obj["spec"]


def test_every_workload_container_is_a_service_with_the_same_image(rendered):
    services = rendered["project"]["services"]
    for name, _, spec in pods(rendered["objects"]):
        pod = spec["template"]["spec"]
        for i, container in enumerate(pod["containers"]):
            service = name if i == 0 else f"{name}-{container['name']}"
            assert services[service]["image"] == container["image"], service
        for init in pod.get("initContainers", []):
            service = services[f"{name}-{init['name']}"]
            assert service["image"] == init["image"]
            assert service["restart"] == "no"
            assert services[name]["depends_on"][f"{name}-{init['name']}"]["condition"] == "service_completed_successfully"


def test_configuration_files_are_byte_equal_to_the_configmaps(rendered):
    out, project = rendered["out"], rendered["project"]
    config_maps = {o["metadata"]["name"]: o["data"] for o in rendered["objects"] if o["kind"] == "ConfigMap"}
    mounted = 0
    for name, _, spec in pods(rendered["objects"]):
        pod = spec["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for i, container in enumerate(pod["containers"] + pod.get("initContainers", [])):
            service = name if i == 0 else f"{name}-{container['name']}"
            targets = {c["target"]: c["source"] for c in project["services"][service].get("configs", [])}
            for mount in container.get("volumeMounts", []):
                cm = volumes.get(mount["name"], {}).get("configMap")
                if not cm:
                    continue
                data = config_maps[cm["name"]]
                # The files the kubelet projects: the listed items (key -> path), else every key.
                paths = {i["key"]: i["path"] for i in cm["items"]} if cm.get("items") else {k: k for k in data}
                for key, path in paths.items():
                    text = data[key]
                    if mount.get("subPath"):
                        if mount["subPath"] != path:
                            continue
                        target = mount["mountPath"]
                    else:
                        target = f"{mount['mountPath'].rstrip('/')}/{path}"
                    source = targets[target]
                    file = Path(project["configs"][source]["file"])
                    assert file.read_bytes() == text.encode(), f"{file} differs from ConfigMap {cm['name']} key {key}"
                    assert file.is_relative_to(out.resolve())
                    mounted += 1
    assert mounted >= 3, "the example mounts bitcoind's, Redis' and Prometheus' configuration"


def test_credentials_live_only_in_the_private_env_file(rendered):
    out = rendered["out"]
    env = env_values(out)
    assert env, ".env holds the generated credentials"
    assert stat.S_IMODE((out / ".env").stat().st_mode) == 0o600
    compose_text = (out / "compose.yaml").read_text()
    config_text = "".join(p.read_text() for p in (out / "config").rglob("*") if p.is_file())
    for key, value in env.items():
        if len(value) >= 12:
            assert value not in compose_text, f"{key}'s value is in compose.yaml"
            assert value not in config_text, f"{key}'s value is in a configuration file"
            assert value not in rendered["stdout"], f"{key}'s value was printed"


def test_secret_environment_and_files_resolve_from_env(rendered):
    """Every variable the cluster reads from a Secret resolves (through .env) to a value, and the
    values agree with each other as the controller's generated Secrets do."""
    env = env_values(rendered["out"])
    project = rendered["project"]
    services = project["services"]
    for name, _, spec in pods(rendered["objects"]):
        pod = spec["template"]["spec"]
        for i, container in enumerate(pod["containers"]):
            service = services[name if i == 0 else f"{name}-{container['name']}"]
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    value = service["environment"][var["name"]]
                    assert value and value in env.values(), (name, var["name"])
    postgres = services.get(next((n for n, _, _ in pods(rendered["objects"]) if n.endswith("-postgres")), ""), None)
    api = next((services[n] for n, k, _ in pods(rendered["objects"]) if n.endswith("-api")), None)
    if postgres and api and "DATABASE_URL" in api.get("environment", {}):
        app_password = next(v for k, v in env.items() if k.endswith("_APP_PASSWORD"))
        assert f":{app_password}@" in api["environment"]["DATABASE_URL"]
    for name, secret in project.get("secrets", {}).items():
        assert secret.get("environment") in env, name


def test_ports_and_volumes_are_the_clusters(rendered):
    services = rendered["project"]["services"]
    volumes = rendered["project"].get("volumes", {})
    for name, kind, spec in pods(rendered["objects"]):
        pod = spec["template"]["spec"]
        ports = sorted(p["containerPort"] for c in pod["containers"] for p in c.get("ports", []))
        published = sorted(int(p["published"]) for p in services[name].get("ports", []))
        assert published == ports, name
        assert all(p["host_ip"] == "127.0.0.1" for p in services[name].get("ports", [])), name
        if kind == "StatefulSet":
            for template in spec.get("volumeClaimTemplates", []):
                claim = f"{template['metadata']['name']}-{name}-0"
                assert claim in volumes, claim
                mounted = [v for v in services[name].get("volumes", []) if v["source"] == claim]
                assert mounted, f"{claim} is not mounted by {name}"


def test_every_cluster_alias_resolves_to_a_service(rendered):
    services = rendered["project"]["services"]
    aliases = {a for s in services.values() for a in ((s.get("networks") or {}).get("default") or {}).get("aliases") or []}
    for obj in rendered["objects"]:
        if obj["kind"] == "Service":
            name, namespace = obj["metadata"]["name"], obj["metadata"].get("namespace", "default")
            assert {name, f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"} <= aliases, name


def test_rerendering_keeps_the_credentials(rendered, blocksight_bin):
    before = env_values(rendered["out"])
    proc = render_compose(blocksight_bin, rendered["example"], rendered["out"])
    assert proc.returncode == 0, proc.stderr
    assert env_values(rendered["out"]) == before
    assert "credentials generated, " in proc.stdout and f"{len(before)} kept" in proc.stdout


def test_compose_refuses_a_broken_project(rendered, compose_config, tmp_path):
    """The validator can fail: a sidecar that joins a service that does not exist."""
    broken = tmp_path / "broken"
    broken.mkdir()
    text = (rendered["out"] / "compose.yaml").read_text()
    (broken / "compose.yaml").write_text(text.replace("network_mode: service:", "network_mode: service:missing-", 1))
    (broken / ".env").write_text((rendered["out"] / ".env").read_text())
    (broken / "config").symlink_to(rendered["out"] / "config")
    assert "network_mode: service:missing-" in (broken / "compose.yaml").read_text()
    proc = subprocess.run([str(compose_config), str(broken)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "missing-" in proc.stderr, proc.stderr


def test_compose_output_refuses_bad_input_naming_the_field(blocksight_bin, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "examples" / "regtest.yaml").read_text().replace("network: regtest", "network: moon"))
    out = tmp_path / "stack"
    proc = render_compose(blocksight_bin, bad, out)
    assert proc.returncode == 1
    assert "spec.network" in proc.stderr
    assert not out.exists(), "invalid input writes nothing"
