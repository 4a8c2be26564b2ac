"""Everything the project ships or renders validates strictly against the upstream
Kubernetes schemas and the project's CRDs (../shared/tools/kube-validate)."""
import subprocess

import yaml

from conftest import load_all


def render(blocksight_bin, path, *extra):
    proc = subprocess.run([str(blocksight_bin), "render", "-f", str(path), *extra], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_crds_and_examples_validate(repo, kube_validate):
    out = kube_validate(repo / "crds", repo / "examples")
    assert "0 failed" in out


def test_every_example_renders_to_valid_objects(repo, blocksight_bin, kube_validate, tmp_path):
    examples = sorted((repo / "examples").glob("*.yaml"))
    assert len(examples) >= 2
    for example in examples:
        rendered = tmp_path / f"{example.stem}.rendered.yaml"
        rendered.write_text(render(blocksight_bin, example, "--with-secrets"))
        docs = load_all(rendered.read_text())
        kinds = {d["kind"] for d in docs}
        assert {"Secret", "ConfigMap", "Service", "StatefulSet", "Deployment"} <= kinds, kinds
        kube_validate(rendered)


def test_render_json_is_a_valid_list(repo, blocksight_bin, kube_validate, tmp_path):
    out = tmp_path / "mainnet.json"
    out.write_text(render(blocksight_bin, repo / "examples" / "mainnet.yaml", "-o", "json"))
    doc = yaml.safe_load(out.read_text())
    assert doc["kind"] == "List" and len(doc["items"]) > 10
    kube_validate(out)


def test_invalid_documents_exit_non_zero_naming_the_field(repo, blocksight_bin):
    for path in sorted((repo / "tests" / "invalid").glob("*.yaml")):
        expect = next(l for l in path.read_text().splitlines() if l.startswith("# expect: "))[len("# expect: "):]
        proc = subprocess.run([str(blocksight_bin), "render", "-f", str(path)], capture_output=True, text=True)
        assert proc.returncode != 0, path.name
        assert proc.stdout == "", f"{path.name}: nothing is printed for invalid input"
        assert expect in proc.stderr, f"{path.name}: {proc.stderr}"


def test_crd_command_prints_the_crds_folder(repo, blocksight_bin):
    out = subprocess.run([str(blocksight_bin), "crd"], capture_output=True, text=True, check=True).stdout
    files = "".join(p.read_text() for p in sorted((repo / "crds").glob("*.yaml")))
    assert out == files


def test_rendered_prometheus_config_and_rules_pass_promtool(repo, blocksight_bin, tmp_path):
    import shutil

    promtool = shutil.which("promtool")
    if not promtool:
        import pytest

        pytest.skip("SKIPPED: promtool is not installed (tests/run.sh installs it)")
    for example in sorted((repo / "examples").glob("*.yaml")):
        docs = load_all(render(blocksight_bin, example))
        config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-prometheus-config"))
        # The rules come from the operator image: its init container runs `blocksight assets
        # rules --dir /etc/prometheus-rules`. Run the same command, then check what it wrote.
        prometheus = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"].endswith("-prometheus"))
        (init,) = prometheus["spec"]["template"]["spec"]["initContainers"]
        assert init["args"] == ["assets", "rules", "--dir", "/etc/prometheus-rules"], init
        rules_dir = tmp_path / example.stem / "rules"
        subprocess.run([str(blocksight_bin), "assets", "rules", "--dir", str(rules_dir)], check=True, capture_output=True)
        assert sorted(p.name for p in rules_dir.iterdir()) == sorted(p.name for p in (repo / "monitoring" / "prometheus" / "rules").glob("*.yaml"))
        # The pod mounts the rules at /etc/prometheus-rules; point the check at the copies.
        text = config["data"]["prometheus.yml"]
        assert "/etc/prometheus-rules/*.yaml" in text
        config_file = tmp_path / example.stem / "prometheus.yml"
        config_file.write_text(text.replace("/etc/prometheus-rules/", f"{rules_dir}/"))
        proc = subprocess.run([promtool, "check", "config", str(config_file)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.count("SUCCESS") >= 5, proc.stdout  # the config and each rule file


def test_prometheus_operator_objects_validate(repo, blocksight_bin, kube_validate, tmp_path):
    out = tmp_path / "with-prometheus-operator.yaml"
    out.write_text(render(blocksight_bin, repo / "examples" / "mainnet.yaml", "--prometheus-operator"))
    kinds = [d["kind"] for d in load_all(out.read_text())]
    assert kinds.count("ServiceMonitor") == 4 and kinds.count("PodMonitor") == 1, kinds
    kube_validate(out)  # against prometheus-operator's CRDs in ../shared/schemas/crds


def test_the_api_server_schema_rejects_every_non_cel_invalid_document(repo, shared_dir, tmp_path):
    """The corpus cases that are not CEL rules are type, enum or required-field errors: the
    CRD's OpenAPI schema (checked strictly by kube-validate, offline) must reject each. Cases
    marked `# schema: false` or `# apiserver: operator-only` are checked by the operator only;
    the `metadata.name` limits live in the CRD's root metadata schema, which offline
    validators do not apply: the e2e suite (tests/e2e/corpus.rs) sends every case to the real
    API server instead."""
    import sys

    checked = 0
    for path in sorted((repo / "tests" / "invalid").glob("*.yaml")):
        header = path.read_text().splitlines()
        if (
            "# cel: false" not in header
            or any(l.startswith("# schema: false") for l in header)
            or any(l.startswith(("# apiserver: operator-only", "# apiserver: metadata.")) for l in header)
        ):
            continue
        proc = subprocess.run(
            [sys.executable, str(shared_dir / "tools" / "kube-validate"), "--crds", str(repo / "crds"), str(path)],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 1 and "0 passed, 1 failed" in proc.stdout + proc.stderr, f"{path.name} was accepted:\n{proc.stdout}{proc.stderr}"
        checked += 1
    assert checked >= 6


def test_backup_cronjobs_and_jobs_validate(repo, blocksight_bin, kube_validate, tmp_path):
    """The backup and drill CronJobs, and every Job the operator creates for
    BlockSightBackups and BlockSightRestores (one shared Job builder), validate strictly."""
    for example in ("regtest", "mainnet"):
        out = tmp_path / f"{example}.backup.yaml"
        out.write_text(render(blocksight_bin, repo / "examples" / f"{example}.yaml", "--backup-jobs"))
        docs = load_all(out.read_text())
        cron_jobs = [d for d in docs if d["kind"] == "CronJob"]
        jobs = [d for d in docs if d["kind"] == "Job"]
        assert len(cron_jobs) == 2 and len(jobs) == 4, [d["kind"] for d in docs]
        for cron_job in cron_jobs:
            assert cron_job["spec"]["concurrencyPolicy"] == "Forbid"
            template = cron_job["spec"]["jobTemplate"]["spec"]
            assert {"backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"} <= template.keys()
        purposes = sorted(j["metadata"]["labels"]["blocksight.live/purpose"] for j in jobs)
        assert purposes == ["backup", "delete", "restore", "verify"]
        kube_validate(out)
