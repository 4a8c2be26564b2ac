{{/*
The operator's permissions, written once and shared by both watch modes: a ClusterRole when
watchNamespace is empty, a Role in watchNamespace otherwise. They must equal what
`blocksight rbac` prints (tests/assets/test_chart.py compares them). Children are written with
server-side apply: the API server authorizes an apply that creates an object as `create` as
well as `patch`, so both are needed; `get` is not (reads come from watches).
*/}}
{{- define "blocksight-operator.watchScopeRules" -}}
# The BlockSight instances: watched, reconciled, finalized.
- apiGroups: ["blocksight.live"]
  resources: ["blocksights"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["blocksight.live"]
  resources: ["blocksights/status"]
  verbs: ["patch"]
# Owner references with blockOwnerDeletion (Jobs owned by backups and restores) need update
# on the owner's finalizers.
- apiGroups: ["blocksight.live"]
  resources: ["blocksights/finalizers", "blocksightbackups/finalizers", "blocksightrestores/finalizers"]
  verbs: ["update"]
# Backups and restores: scheduled backups are created by the operator itself.
- apiGroups: ["blocksight.live"]
  resources: ["blocksightbackups", "blocksightrestores"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["blocksight.live"]
  resources: ["blocksightbackups/status", "blocksightrestores/status"]
  verbs: ["patch"]
# Generated credentials (RPC auth, database passwords) are created once and read back.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Children of a BlockSight, applied server-side and pruned when no longer wanted.
- apiGroups: [""]
  resources: ["configmaps", "services", "serviceaccounts", "persistentvolumeclaims"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# Backup pods: their phase and termination message (the backup's result), read from a watch.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: ["apps"]
  resources: ["statefulsets", "deployments"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["ingresses", "networkpolicies"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["batch"]
  resources: ["cronjobs", "jobs"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors", "podmonitors"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# Scheduled chain-data snapshots: created once per slot, watched, pruned beyond keepLast.
- apiGroups: ["snapshot.storage.k8s.io"]
  resources: ["volumesnapshots"]
  verbs: ["list", "watch", "create", "delete"]
# Kubernetes Events about each BlockSight (the recorder creates, then patches repeats).
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/* The leader-election Lease, always in the release namespace (the operator's POD_NAMESPACE). */}}
{{- define "blocksight-operator.leaderElectionRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "watch", "create", "patch"]
{{- end }}
