#!/usr/bin/env bash
# Installs the operator into a cluster as a user would, short of its Deployment:
#   1. the CRDs (crds/), with server-side apply, waited for until Established;
#   2. the namespace blocksight-system and the chart's ServiceAccount, ClusterRole,
#      leader-election Role and their bindings (`helm template`, tests/controlplane/helm_template.py);
#   3. DIR/operator.kubeconfig: the cluster's server with a TokenRequest token of that
#      ServiceAccount, so the operator binary runs with exactly the chart's permissions.
#
#   tests/controlplane/install.sh KUBECONFIG DIR
# Needs kubectl (KUBECTL overrides) and the Python venv of tests/run.sh (PYTHON overrides).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
admin=${1:?usage: install.sh KUBECONFIG DIR}
out=${2:?usage: install.sh KUBECONFIG DIR}
mkdir -p "$out"
kubectl=("${KUBECTL:-kubectl}" --kubeconfig "$admin")
python=${PYTHON:-$repo/.venv/bin/python}
ns=blocksight-system
sa=blocksight-operator

"${kubectl[@]}" apply --server-side --field-manager=blocksight-install -f "$repo/crds/" >/dev/null
"${kubectl[@]}" wait --for condition=Established --timeout=60s -f "$repo/crds/" >/dev/null
"${kubectl[@]}" create namespace "$ns" --dry-run=client -o yaml \
  | "${kubectl[@]}" apply --server-side --field-manager=blocksight-install -f - >/dev/null
"$python" "$here/helm_template.py" --namespace "$ns" \
  | "${kubectl[@]}" apply --server-side --field-manager=blocksight-install -n "$ns" -f - >/dev/null
token=$("${kubectl[@]}" -n "$ns" create token "$sa" --duration=48h)
server=$("${kubectl[@]}" config view --minify --raw -o jsonpath='{.clusters[0].cluster.server}')
ca=$("${kubectl[@]}" config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
umask 077
cat >"$out/operator.kubeconfig" <<EOK
apiVersion: v1
kind: Config
clusters:
- name: cluster
  cluster: {server: "$server", certificate-authority-data: "$ca"}
users:
- name: $sa
  user: {token: "$token"}
contexts:
- name: $sa
  context: {cluster: cluster, user: $sa, namespace: $ns}
current-context: $sa
EOK
echo "install.sh: CRDs established; the operator runs as system:serviceaccount:$ns:$sa ($out/operator.kubeconfig)" >&2
