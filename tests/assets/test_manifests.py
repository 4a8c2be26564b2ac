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
