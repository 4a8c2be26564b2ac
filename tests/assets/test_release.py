"""Release rules: the shipped binary's C library, one version everywhere, and the linters of
what builds and publishes the operator (the workflows, the Dockerfile, the shell scripts).

The linters are real binaries from PyPI wheels (tests/requirements.txt): actionlint (which
also runs shellcheck over every `run:` block), hadolint and shellcheck.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest
import yaml

from conftest import REPO

# The C library of the default PostgreSQL image (Debian bookworm), into which the backup, drill
# and restore Jobs copy the binary, and of the distroless base of the operator image.
TARGET_GLIBC = "2.36"
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: tests/run.sh installs it into .venv (tests/requirements.txt)")
    return path


def run(*cmd, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300, **kwargs)


def crate_version() -> str:
    return tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["version"]


# --- the binary runs where the Jobs copy it ------------------------------------------------

def test_built_binary_needs_no_glibc_newer_than_the_postgres_image(blocksight_bin):
    proc = run(sys.executable, REPO / "scripts" / "check-glibc.py", blocksight_bin, "--max-glibc", TARGET_GLIBC)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    newest = re.search(r"newest glibc symbol version (\S+) <= ", proc.stdout)
    assert newest and newest.group(1) != "none", proc.stdout


def test_glibc_check_fails_on_a_binary_built_for_a_newer_system(blocksight_bin):
    """The same binary against an older target than it needs: the check names what is missing."""
    proc = run(sys.executable, REPO / "scripts" / "check-glibc.py", blocksight_bin, "--max-glibc", "2.2")
    assert proc.returncode == 1, proc.stdout
    assert re.search(r"needs GLIBC_2\.\d+(\.\d+)? from libc\.so\.6; the target has glibc 2\.2", proc.stderr), proc.stderr


def test_the_dockerfile_builds_on_the_target_c_library():
    text = (REPO / "Dockerfile").read_text()
    build = re.search(r"^FROM\s+(?:--platform=\S+\s+)?(\S+)\s+AS\s+build$", text, re.M)
    assert build and build.group(1).endswith("-bookworm"), "the build stage is Debian bookworm (glibc 2.36)"
    final = re.findall(r"^FROM\s+(\S+)", text, re.M)[-1]
    assert "debian12" in final, f"the runtime base {final} is Debian 12 as well"


# --- one version ---------------------------------------------------------------------------

def test_every_place_names_the_crate_version():
    proc = run(sys.executable, REPO / "scripts" / "version.py", "--check", crate_version())
    assert proc.returncode == 0, proc.stderr


def test_the_version_check_names_each_place_that_disagrees():
    proc = run(sys.executable, REPO / "scripts" / "version.py", "--check", "99.0.0")
    assert proc.returncode == 1
    for place in ("Cargo.toml package.version", "Chart.yaml version", "Chart.yaml appVersion",
                  "argocd/apps/blocksight-operator.yaml targetRevision"):
        assert f"{place} is " in proc.stderr and "not 99.0.0" in proc.stderr, proc.stderr
    assert run(sys.executable, REPO / "scripts" / "version.py", "--check", "1.2").returncode == 1


def test_the_operator_hands_its_own_release_image_to_the_children(blocksight_bin):
    """The default operator image in the code (init containers of Prometheus and Grafana, the
    backup Jobs) is this release's, and the chart deploys the same one (tag empty: appVersion)."""
    env = {k: v for k, v in os.environ.items() if k != "OPERATOR_IMAGE"}
    proc = run(blocksight_bin, "render", "-o", "json", "--backup-jobs", "-f", REPO / "examples" / "mainnet.yaml", env=env)
    assert proc.returncode == 0, proc.stderr
    expected = f"ghcr.io/blocksight-live/blocksight-operator:{crate_version()}"
    images = set()

    def walk(node):
        if isinstance(node, dict):
            if "image" in node and isinstance(node["image"], str) and "blocksight-operator" in node["image"]:
                images.add(node["image"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(proc.stdout))
    assert images == {expected}, images
    values = yaml.safe_load((REPO / "charts" / "blocksight-operator" / "values.yaml").read_text())
    assert f"{values['image']['repository']}:{crate_version()}" == expected
    assert values["image"]["tag"] == "", "an empty tag deploys the chart's appVersion"


# --- CI/CD ---------------------------------------------------------------------------------

def test_the_workflows_exist():
    assert {w.name for w in WORKFLOWS} >= {"ci.yml", "release.yml", "e2e-kind.yml"}


def test_actionlint_passes_on_every_workflow():
    tool("shellcheck")  # actionlint checks every `run:` script with it when it is on PATH
    proc = run(tool("actionlint"), "-color=false", *WORKFLOWS, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_can_fail(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n"
                   "      - run: echo ${{ github.event.nope.what }}\n        shell: bash\n"
                   "      - run: if [ $x = 1 ]; then echo; fi\n")
    proc = run(tool("actionlint"), "-color=false", bad)
    assert proc.returncode == 1 and "shellcheck" in proc.stdout, proc.stdout


def test_every_third_party_action_is_pinned_by_commit():
    uses = []
    for workflow in WORKFLOWS:
        for number, line in enumerate(workflow.read_text().splitlines(), 1):
            match = re.match(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", line)
            if match:
                uses.append((f"{workflow.name}:{number}", match.group(1), match.group(2)))
    assert uses
    for where, action, comment in uses:
        if action.startswith("./"):
            continue
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action), f"{where}: {action} is not pinned by a commit SHA"
        assert re.match(r"\s+# v\d", comment), f"{where}: say which release the SHA is (# vX.Y.Z)"


def test_the_release_workflow_publishes_signed_and_attested_artifacts():
    release = yaml.safe_load((REPO / ".github" / "workflows" / "release.yml").read_text())
    assert release[True]["push"]["tags"] == ["v*.*.*"]  # PyYAML reads the key `on` as True
    job = release["jobs"]["release"]
    assert job["permissions"]["id-token"] == "write" and job["permissions"]["packages"] == "write"
    steps = {s.get("uses", "").split("@")[0]: s for s in job["steps"]}
    build = steps["docker/build-push-action"]["with"]
    assert build["platforms"] == "linux/amd64,linux/arm64"
    assert build["sbom"] is True and build["provenance"].startswith("mode=max")
    scripts = "\n".join(s.get("run", "") for s in job["steps"])
    for needed in ("scripts/version.py --check", "scripts/check-glibc.py", "cosign sign --yes",
                   "cosign verify", "helm package", "helm push", "gh release create", "crds/*.yaml"):
        assert needed in scripts, needed
    # The registry follows the repository's owner, so a fork publishes with no edit.
    assert "ghcr.io/$owner/" in scripts and "GITHUB_REPOSITORY_OWNER" in scripts


def test_ci_runs_the_readme_test_command():
    ci = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    commands = [s.get("run", "") for s in ci["jobs"]["test"]["steps"]]
    assert "bash tests/run.sh" in commands
    assert "bash tests/run.sh" in (REPO / "README.md").read_text()


def test_the_kind_workflow_installs_the_chart_and_waits_for_the_blocksight():
    e2e = yaml.safe_load((REPO / ".github" / "workflows" / "e2e-kind.yml").read_text())
    scripts = "\n".join(s.get("run", "") for s in e2e["jobs"]["kind"]["steps"])
    assert "kind load docker-image" in scripts
    assert "helm install blocksight-operator charts/blocksight-operator" in scripts
    assert "apply -f examples/regtest.yaml" in scripts
    assert "--for=condition=Ready" in scripts


# --- the image and the scripts -------------------------------------------------------------

def test_hadolint_passes_on_the_dockerfile():
    proc = run(tool("hadolint"), "--failure-threshold", "info", REPO / "Dockerfile")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_can_fail(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install curl\n")
    proc = run(tool("hadolint"), bad)
    assert proc.returncode == 1 and "DL3006" in proc.stdout, proc.stdout


def test_the_image_runs_one_binary_as_non_root():
    text = (REPO / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM "):]
    assert re.search(r"^USER 65532:65532$", final, re.M), "a numeric non-root user (runAsNonRoot can check it)"
    assert re.findall(r"^COPY .*", final, re.M) == ["COPY --from=build /out/blocksight /usr/local/bin/blocksight"]
    assert "cargo build --release --locked --bin blocksight" in text
    for label in ("version", "revision", "source"):
        assert f"org.opencontainers.image.{label}=" in final, label


def test_dockerignore_lets_in_exactly_what_the_dockerfile_copies():
    ignore = [l.strip() for l in (REPO / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert ignore[0] == "*", "everything is left out unless named"
    allowed = {l[1:].rstrip("/") for l in ignore[1:] if l.startswith("!")}
    copied = set()
    for line in (REPO / "Dockerfile").read_text().splitlines():
        match = re.match(r"^COPY (?!--from)(.+) \S+$", line)
        if match:
            copied.update(p.rstrip("/") for p in match.group(1).split())
    assert copied == allowed, (copied, allowed)
    for path in copied:
        assert (REPO / path).exists(), path


def test_shellcheck_passes_on_every_shell_script():
    scripts = run("git", "ls-files", "*.sh", cwd=REPO).stdout.split()
    assert "tests/run.sh" in scripts and "scripts/run.sh" in scripts
    proc = run(tool("shellcheck"), "--severity=warning", *scripts, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shellcheck_can_fail(tmp_path):
    bad = tmp_path / "bad.sh"
    bad.write_text("#!/bin/sh\nrm -rf $1/*\n")
    proc = run(tool("shellcheck"), "--severity=warning", bad)
    assert proc.returncode == 1 and "SC2115" in proc.stdout, proc.stdout
