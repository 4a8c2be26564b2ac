#!/usr/bin/env python3
"""The release version, and every place that must name it.

    scripts/version.py                 print the version (Cargo.toml's)
    scripts/version.py --check X.Y.Z   fail unless every place below says X.Y.Z

One source of truth: Cargo.toml's package version. The operator's default image tag follows it
in the code (env!("CARGO_PKG_VERSION")); these files repeat it and must agree:
  charts/blocksight-operator/Chart.yaml   version and appVersion (a release packages both)
  argocd/apps/blocksight-operator.yaml    spec.source.targetRevision (the chart it deploys)
Used by .github/workflows/release.yml on a tag and by tests/assets/test_release.py.
Standard library only, so it runs on any runner without installing anything.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def crate_version() -> str:
    return tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["version"]


def yaml_scalar(path: Path, key: str) -> str:
    """A top-level or nested `key: value` line's value (the files keep them unique)."""
    values = re.findall(rf"^\s*{re.escape(key)}:\s*\"?([^\"\s#]+)\"?\s*(?:#.*)?$", path.read_text(), re.M)
    if len(values) != 1:
        raise SystemExit(f"{path.relative_to(REPO)}: expected one `{key}:` line, found {len(values)}")
    return values[0]


def places() -> dict[str, str]:
    chart = REPO / "charts/blocksight-operator/Chart.yaml"
    application = REPO / "argocd/apps/blocksight-operator.yaml"
    return {
        "Cargo.toml package.version": crate_version(),
        "Chart.yaml version": yaml_scalar(chart, "version"),
        "Chart.yaml appVersion": yaml_scalar(chart, "appVersion"),
        "argocd/apps/blocksight-operator.yaml targetRevision": yaml_scalar(application, "targetRevision"),
    }


def mismatches(expected: str) -> list[str]:
    return [f"{place} is {value}, not {expected}" for place, value in places().items() if value != expected]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", metavar="VERSION", help="fail unless every place names VERSION")
    args = parser.parse_args()
    if args.check is None:
        print(crate_version())
        return 0
    if not re.fullmatch(r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?", args.check):
        print(f"version {args.check!r} is not semantic (X.Y.Z)", file=sys.stderr)
        return 1
    problems = mismatches(args.check)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems:
        print(f"version {args.check}: {', '.join(places())} agree")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
