#!/usr/bin/env bash
# The main job: run the BlockSight operator against a cluster, with a BlockSight to look at.
#
#   bash scripts/run.sh                  # no cluster configured: a local control plane
#   KUBECONFIG=~/.kube/kind bash scripts/run.sh   # your kind/k3d/any cluster (current context)
#
# 1. A cluster: the current kube context when one works (KUBECONFIG or ~/.kube/config), else
#    the local control plane of the tests (tests/controlplane: etcd, kube-apiserver,
#    controllers and kwok's fake nodes, built from pinned Go modules on first use, about 15
#    minutes on 2 cores, then cached in .cache/). BLOCKSIGHT_LOCAL=1 forces the local one.
# 2. The CRDs and the chart's ServiceAccount and RBAC, as `helm install` would create them.
# 3. examples/regtest.yaml in namespace blocksight-dev (BLOCKSIGHT_EXAMPLE, BLOCKSIGHT_NAMESPACE).
# 4. The operator, built from this tree, running as the chart's ServiceAccount until Ctrl-C.
#
# Another terminal, with the KUBECONFIG this prints: kubectl -n blocksight-dev get bs -w
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
example=${BLOCKSIGHT_EXAMPLE:-examples/regtest.yaml}
ns=${BLOCKSIGHT_NAMESPACE:-blocksight-dev}
say() { printf '\n==> %s\n' "$*" >&2; }

say "building the operator (cargo build)"
cargo build --locked --bin blocksight
bin=$repo/target/debug/blocksight

say "Python tools for helm template (.venv)"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt

cp_bin=$(tests/controlplane/build.sh)
kubectl_bin=$(command -v kubectl || echo "$cp_bin/kubectl")
state=$(mktemp -d)
cleanup=()
run_cleanup() {
  local step
  for step in "${cleanup[@]}"; do eval "$step"; done
  rm -rf "$state"
}
trap run_cleanup EXIT
# A closed terminal or a kill cleans up too (the control plane runs in sessions of its own).
trap 'exit 130' INT TERM HUP
if [ "${BLOCKSIGHT_LOCAL:-}" != 1 ] && "$kubectl_bin" config current-context >/dev/null 2>&1 \
  && "$kubectl_bin" get --raw /readyz >/dev/null 2>&1; then
  admin=$(mktemp)
  "$kubectl_bin" config view --minify --raw >"$admin"
  cleanup+=("rm -f '$admin'")
  say "using the current kube context: $("$kubectl_bin" config current-context)"
else
  say "no cluster configured: starting the local control plane"
  kubectl_bin=$cp_bin/kubectl
  tests/controlplane/up.sh "$state/cluster"
  cleanup+=("tests/controlplane/down.sh '$state/cluster'")
  admin=$repo/.cache/local-kubeconfig
  cp "$state/cluster/kubeconfig" "$admin"
fi

say "installing the CRDs and the chart's RBAC"
KUBECTL=$kubectl_bin PYTHON=$repo/.venv/bin/python tests/controlplane/install.sh "$admin" "$state"
"$kubectl_bin" --kubeconfig "$admin" create namespace "$ns" --dry-run=client -o yaml \
  | "$kubectl_bin" --kubeconfig "$admin" apply --server-side -f - >/dev/null
"$kubectl_bin" --kubeconfig "$admin" -n "$ns" apply --server-side -f "$example"

cat >&2 <<EOF

==> the operator runs below (Ctrl-C stops it$( [ -f "$state/cluster/pids" ] && echo " and the local control plane")).
    In another terminal:
      export KUBECONFIG=$admin
      kubectl -n $ns get bs -w
      kubectl -n $ns get statefulsets,deployments,pvc
      kubectl -n $ns describe bs

EOF
# In the foreground, so that Ctrl-C reaches it (the operator stops on SIGINT and SIGTERM);
# the EXIT trap then stops the local control plane.
KUBECONFIG=$state/operator.kubeconfig POD_NAMESPACE=blocksight-system POD_NAME="$(hostname)" \
  "$bin" run --leader-election=false --metrics-addr 127.0.0.1:8080 || true
