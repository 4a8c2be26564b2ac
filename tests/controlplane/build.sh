#!/usr/bin/env bash
# Builds the pinned Kubernetes control plane from source (go.mod beside this file) and prints
# the folder that holds the binaries:
#   etcd kube-apiserver kube-controller-manager kube-scheduler kwok kubectl
#
# Nothing prebuilt is downloaded: only source modules through the Go module proxy. The result
# is cached in <repo>/.cache/controlplane/<key>/bin (git-ignored), where <key> hashes go.mod,
# go.sum and the Go version, so a machine builds once per pin and later runs start at once.
# A fresh 2-core machine takes about 15 minutes; progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

command -v go >/dev/null || { echo "build.sh: Go is needed to build the control plane" >&2; exit 1; }
key=$({ cat "$here/go.mod" "$here/go.sum"; go env GOVERSION; } | sha256sum | cut -c1-16)
out="$repo/.cache/controlplane/$key"
bins=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok kubectl)

complete=1
for b in "${bins[@]}"; do [ -x "$out/bin/$b" ] || complete=""; done
if [ -n "$complete" ]; then
  echo "$out/bin"
  exit 0
fi

echo "build.sh: building the control plane ($(go env GOVERSION), key $key); first time only" >&2
start=$SECONDS
staging="$out/bin.partial"
rm -rf "$staging"
mkdir -p "$staging"
cd "$here"
# -trimpath and no debug info: smaller binaries, and the same bytes on every machine.
# Each command gets its own -o: `go build -o dir/` would name etcd after its module ("server").
build() {
  echo "build.sh:   $1" >&2
  go build -mod=readonly -trimpath -ldflags='-s -w' -o "$staging/$1" "$2"
}
build etcd go.etcd.io/etcd/server/v3
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver
build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager
build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler
build kubectl k8s.io/kubernetes/cmd/kubectl
build kwok sigs.k8s.io/kwok/cmd/kwok
# kwok's own stage definitions (node heartbeats, pod lifecycle, volume provisioning) from the
# pinned kwok module, next to the binaries: up.sh feeds them to kwok.
kwok_dir=$(go list -mod=readonly -m -f '{{.Dir}}' sigs.k8s.io/kwok)
mkdir -p "$staging/kwok-stages"
for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
  pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml \
  volume/fast/pv-bind.yaml volume/fast/pv-delete.yaml volume/fast/pvc-provision.yaml \
  volume/fast/pvc-delete.yaml; do
  cp "$kwok_dir/kustomize/stage/$f" "$staging/kwok-stages/$(basename "$f")"
done
rm -rf "${out:?}/bin"
mv "$staging" "$out/bin"
echo "build.sh: built in $((SECONDS - start)) s" >&2
echo "$out/bin"
