"""Shared fixtures for the asset tests (manifests, chart, GitOps, Terraform, monitoring).

These tests run real tools (kube-validate, Helm, promtool, amtool, terraform, Lua) over the
files the project ships. tests/run.sh installs the tools and sets the environment they read:
  BLOCKSIGHT_BIN  path of the built `blocksight` binary (default: target/debug/blocksight)
  SHARED_DIR      the shared/ folder beside the repo (default: ../shared)
"""
import os
import sys
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = Path(os.environ.get("SHARED_DIR", REPO.parent / "shared")).resolve()
    if not (path / "tools" / "kube-validate").exists():
        pytest.skip(f"SKIPPED: no shared/ folder at {path}; kube-validate checks need it")
    return path


@pytest.fixture(scope="session")
def kube_validate(shared_dir):
    """Run ../shared/tools/kube-validate strictly; fail the test with its output on any error."""

    def run(*paths, crds=(REPO / "crds",), stdin=None):
        # The interpreter running pytest (the venv) has kube-validate's dependencies.
        cmd = [sys.executable, str(shared_dir / "tools" / "kube-validate")]
        for c in crds:
            cmd += ["--crds", str(c)]
        cmd += [str(p) for p in paths]
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"kube-validate failed:\n{out}"
        assert " 0 failed" in out, out
        return out

    return run


@pytest.fixture(scope="session")
def blocksight_bin() -> Path:
    path = Path(os.environ.get("BLOCKSIGHT_BIN", REPO / "target" / "debug" / "blocksight"))
    if not path.exists():
        pytest.fail(f"{path} does not exist: build it with `cargo build` (tests/run.sh does)")
    return path


def load_all(text: str):
    return [d for d in yaml.safe_load_all(text) if d]
