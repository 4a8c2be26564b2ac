#!/usr/bin/env bash
# Starts a local Kubernetes control plane on 127.0.0.1 from the pinned binaries (build.sh):
# etcd, kube-apiserver (RBAC and the default admission plugins on, audit log),
# kube-controller-manager (every controller with its own ServiceAccount), kube-scheduler,
# and kwok, which plays the kubelet of three fake Nodes (pods go Running/Ready, Job pods
# complete), provisions volumes for PVCs and grows them when a PVC asks for more.
#
#   tests/controlplane/up.sh DIR     # DIR: an empty folder for certificates, data and logs
#   tests/controlplane/down.sh DIR   # stops every process it started
#
# It writes DIR/kubeconfig (cluster admin), DIR/audit.log (every request by a
# ServiceAccount), DIR/logs/*.log and DIR/pids, and waits for /readyz and the Nodes. On
# failure it prints the component logs, stops what it started and exits non-zero.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:?usage: up.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
bin=$("$here/build.sh")
mkdir -p "$dir/pki" "$dir/logs" "$dir/etcd"
: >"$dir/pids"

fail() {
  echo "up.sh: $*" >&2
  for f in "$dir"/logs/*.log; do
    [ -f "$f" ] || continue
    echo "----- $(basename "$f") (last 40 lines)" >&2
    tail -n 40 "$f" >&2
  done
  "$here/down.sh" "$dir" --keep || true
  exit 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# --- certificates: a CA, the API server's serving certificate, one client certificate per
# component, and the ServiceAccount token signing key.
pki=$dir/pki
ossl() { openssl "$@" 2>/dev/null; }
ossl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 3650 \
  -subj "/CN=blocksight-test-ca" -keyout "$pki/ca.key" -out "$pki/ca.crt"
cert() { # name subject [extensions]
  local name=$1 subject=$2 ext=${3:-extendedKeyUsage=clientAuth}
  ossl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -subj "$subject" \
    -keyout "$pki/$name.key" -out "$pki/$name.csr"
  ossl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3650 -out "$pki/$name.crt" -extfile <(printf '%s\n' "$ext")
}
cert apiserver "/CN=kube-apiserver" "$(printf 'subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth')"
cert admin "/O=system:masters/CN=blocksight-test-admin"
cert controller-manager "/CN=system:kube-controller-manager"
cert scheduler "/CN=system:kube-scheduler"
cert kwok "/O=system:masters/CN=kwok"
ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key"
ossl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

etcd_port=$(free_port)
etcd_peer_port=$(free_port)
api_port=$(free_port)
server="https://127.0.0.1:$api_port"

kubeconfig() { # file user
  local user=$2
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: blocksight-local
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$pki/$user.crt")
    client-key-data: $(base64 -w0 <"$pki/$user.key")
contexts:
- name: blocksight-local
  context: {cluster: blocksight-local, user: $user}
current-context: blocksight-local
EOF
  chmod 600 "$1"
}
kubeconfig "$dir/kubeconfig" admin
for c in controller-manager scheduler kwok; do kubeconfig "$dir/$c.kubeconfig" "$c"; done

# Each in a session of its own: a Ctrl-C in the terminal that started us (scripts/run.sh)
# reaches the operator, which shuts down cleanly while the API server still answers; the
# control plane is stopped afterwards by down.sh.
start() { # name command...
  local name=$1
  shift
  setsid "$@" >"$dir/logs/$name.log" 2>&1 &
  echo "$! $name" >>"$dir/pids"
}

# --- etcd: a throwaway member; fsync off (test data only).
start etcd "$bin/etcd" --name blocksight-test --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
  --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster "blocksight-test=http://127.0.0.1:$etcd_peer_port" \
  --unsafe-no-fsync --quota-backend-bytes 4294967296 --log-level warn
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1 || fail "etcd did not become healthy"

# --- kube-apiserver. Audit: every request made by a ServiceAccount (the operator runs as
# one), at Metadata level, so tests count the operator's requests on the server itself.
cat >"$dir/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  userGroups: ["system:serviceaccounts"]
- level: None
EOF
start kube-apiserver "$bin/kube-apiserver" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
  --endpoint-reconciler-type none \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --api-audiences https://kubernetes.default.svc.cluster.local \
  --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
  --service-cluster-ip-range 10.96.0.0/16 --allow-privileged=true \
  --audit-policy-file "$dir/audit-policy.yaml" --audit-log-path "$dir/audit.log" \
  --audit-log-format json --audit-log-mode blocking \
  --profiling=false --v=1
export KUBECONFIG=$dir/kubeconfig
kubectl=("$bin/kubectl" --kubeconfig "$dir/kubeconfig")
ready=""
for _ in $(seq 300); do
  if "${kubectl[@]}" get --raw /readyz >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.2
done
[ -n "$ready" ] || fail "kube-apiserver did not become ready on $server"

start kube-controller-manager "$bin/kube-controller-manager" \
  --kubeconfig "$dir/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$dir/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$dir/controller-manager.kubeconfig" \
  --use-service-account-credentials --service-account-private-key-file "$pki/sa.key" \
  --root-ca-file "$pki/ca.crt" --service-cluster-ip-range 10.96.0.0/16 \
  --leader-elect=false --secure-port 0 --controllers '*' --v=1
start kube-scheduler "$bin/kube-scheduler" --kubeconfig "$dir/scheduler.kubeconfig" \
  --authentication-kubeconfig "$dir/scheduler.kubeconfig" \
  --authorization-kubeconfig "$dir/scheduler.kubeconfig" \
  --leader-elect=false --secure-port 0 --v=1

# --- kwok: fake kubelets for Nodes annotated kwok.x-k8s.io/node=fake. Its stages come from
# the pinned kwok module (build.sh copies them) plus pvc-resize.yaml of ours.
# kwok's volume stages serve the class kwok-volume; ours also serve gp3 (the class the mainnet
# example and terraform/ use on EKS), so examples apply unchanged.
stages=$dir/kwok-stages.yaml
: >"$stages"
for f in "$bin"/kwok-stages/*.yaml "$here/pvc-resize.yaml"; do
  sed "s/self.spec.storageClassName == 'kwok-volume'/self.spec.storageClassName in ['kwok-volume', 'gp3']/" "$f" >>"$stages"
  echo "---" >>"$stages"
done
start kwok "$bin/kwok" --kubeconfig "$dir/kwok.kubeconfig" --config "$stages" \
  --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --node-lease-duration-seconds=40 --cidr=10.244.0.0/16 --node-ip=10.0.0.1

# --- four Nodes: three general ones in three zones, and one of a storage pool tainted as the
# EKS node group of terraform/modules/cluster is (the mainnet example's bitcoind and electrs
# select it); StorageClasses that kwok provisions and grows.
node() { # name zone [extra label line] [spec line]
  "${kubectl[@]}" apply --server-side --field-manager=blocksight-test -f - >/dev/null <<EOF || fail "creating node $1"
apiVersion: v1
kind: Node
metadata:
  name: $1
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels:
    kubernetes.io/hostname: $1
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
    topology.kubernetes.io/zone: $2
    ${3:-}
${4:-}
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110", ephemeral-storage: 1Ti}
  capacity: {cpu: "32", memory: 256Gi, pods: "110", ephemeral-storage: 1Ti}
EOF
}
for i in 1 2 3; do node "kwok-node-$i" "zone-$i"; done
node kwok-storage-1 zone-1 "blocksight.live/node-pool: storage" \
  'spec: {taints: [{key: blocksight.live/storage, value: "true", effect: NoSchedule}]}'
"${kubectl[@]}" apply --server-side --field-manager=blocksight-test -f - >/dev/null <<'EOF' || fail "creating the gp3 StorageClass"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: gp3}
provisioner: kwok.x-k8s.io/volume
reclaimPolicy: Delete
volumeBindingMode: Immediate
allowVolumeExpansion: true
EOF
"${kubectl[@]}" apply --server-side --field-manager=blocksight-test -f - >/dev/null <<'EOF' || fail "creating the StorageClass"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: kwok-volume
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kwok.x-k8s.io/volume
reclaimPolicy: Delete
volumeBindingMode: Immediate
allowVolumeExpansion: true
EOF
"${kubectl[@]}" wait --for=condition=Ready node --all --timeout=120s >/dev/null 2>&1 \
  || fail "the kwok Nodes did not become Ready"
# Namespaces get their default ServiceAccount from the controller manager; wait for it once.
for _ in $(seq 150); do
  "${kubectl[@]}" -n default get serviceaccount default >/dev/null 2>&1 && break
  sleep 0.2
done
echo "$server" >"$dir/server"
echo "up.sh: control plane ready at $server (KUBECONFIG=$dir/kubeconfig)" >&2
