#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what it needs, then runs every check.
#   bash tests/run.sh
# Needs: Debian/Ubuntu with apt (root or sudo) and a Rust toolchain; ../shared beside the repo
# for the kube-validate checks (SHARED_DIR overrides). Set BLOCKSIGHT_E2E_KUBECONFIG to also run
# the end-to-end tests against a kind/k3d cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
export SHARED_DIR="${SHARED_DIR:-$REPO/../shared}"

step() { printf '\n=== %s\n' "$*"; }

step "system packages"
need_apt=()
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v amtool >/dev/null || need_apt+=(prometheus-alertmanager)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
promtool --version 2>&1 | head -1
amtool --version 2>&1 | head -1

step "python tools (.venv)"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
export PATH="$REPO/.venv/bin:$PATH"

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "cargo build"
cargo build --locked
export BLOCKSIGHT_BIN="$REPO/target/debug/blocksight"

step "crds/ in sync with the code"
tmp=$(mktemp -d)
"$BLOCKSIGHT_BIN" crd --dir "$tmp"
diff -r "$tmp" crds/
diff -r crds/ charts/blocksight-operator/crds/
rm -rf "$tmp"

step "cargo test (unit, builders, controller against a mock API server)"
CI=true cargo test --locked --all-targets

step "end-to-end tests (real cluster)"
if [ -n "${BLOCKSIGHT_E2E_KUBECONFIG:-}" ]; then
  cargo test --locked --test e2e -- --ignored --test-threads=1
else
  echo "SKIPPED: e2e tests need a cluster: set BLOCKSIGHT_E2E_KUBECONFIG to a kind/k3d kubeconfig"
fi

step "asset tests: kube-validate, Helm, Argo CD, Terraform, promtool/amtool"
pytest -q tests/assets
