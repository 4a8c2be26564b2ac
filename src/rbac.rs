//! The Kubernetes permissions the operator needs, as data. The Helm chart's Role and
//! ClusterRole must grant exactly these (tests/assets/test_chart.py compares them with the
//! output of `blocksight rbac`), and a unit test checks that every kind the builders emit
//! is covered.

use serde::Serialize;

/// One RBAC rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub api_groups: [&'static str; 1],
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
}

const fn rule(
    group: &'static str,
    resources: &'static [&'static str],
    verbs: &'static [&'static str],
) -> Rule {
    Rule {
        api_groups: [group],
        resources,
        verbs,
    }
}

/// Children are read from watches (list, watch), written with server-side apply and pruned
/// (delete); the operator never GETs or updates them. An apply that creates an object is
/// authorized as `create` as well as `patch` (apiserver `handlers/patch.go`), so both.
const CHILD_VERBS: &[&str] = &["list", "watch", "create", "patch", "delete"];

/// Granted in every namespace the operator watches (ClusterRole, or Role per namespace).
pub const WATCH_SCOPE: &[Rule] = &[
    // Read from a watch (never GET); patched for finalizers and status.
    rule(
        "blocksight.live",
        &["blocksights"],
        &["list", "watch", "patch"],
    ),
    rule("blocksight.live", &["blocksights/status"], &["patch"]),
    // Owner references with blockOwnerDeletion need update on the owner's finalizers.
    rule(
        "blocksight.live",
        &[
            "blocksights/finalizers",
            "blocksightbackups/finalizers",
            "blocksightrestores/finalizers",
        ],
        &["update"],
    ),
    rule(
        "blocksight.live",
        &["blocksightbackups", "blocksightrestores"],
        &["list", "watch", "create", "patch", "delete"],
    ),
    rule(
        "blocksight.live",
        &["blocksightbackups/status", "blocksightrestores/status"],
        &["patch"],
    ),
    // Generated credentials are created once (never applied: that would replace them); the
    // probes read them with get.
    rule(
        "",
        &["secrets"],
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    rule(
        "",
        &[
            "configmaps",
            "services",
            "serviceaccounts",
            "persistentvolumeclaims",
        ],
        CHILD_VERBS,
    ),
    // Backup pods: read their phase and termination message (the backup's result).
    rule("", &["pods"], &["list", "watch"]),
    rule("apps", &["statefulsets", "deployments"], CHILD_VERBS),
    rule("autoscaling", &["horizontalpodautoscalers"], CHILD_VERBS),
    rule("policy", &["poddisruptionbudgets"], CHILD_VERBS),
    rule(
        "networking.k8s.io",
        &["ingresses", "networkpolicies"],
        CHILD_VERBS,
    ),
    rule("batch", &["cronjobs", "jobs"], CHILD_VERBS),
    // PrometheusRules are the chart's (one for the cluster), never a BlockSight's child.
    rule(
        "monitoring.coreos.com",
        &["servicemonitors", "podmonitors"],
        CHILD_VERBS,
    ),
    // Scheduled chain-data snapshots: created once per slot (never applied, never updated),
    // read from a watch, pruned beyond keepLast.
    rule(
        "snapshot.storage.k8s.io",
        &["volumesnapshots"],
        &["list", "watch", "create", "delete"],
    ),
    // events.k8s.io/v1 Events: the recorder creates, then patches the count of a repeat.
    rule("events.k8s.io", &["events"], &["create", "patch"]),
];

/// Granted in the operator's own namespace only. kube-lease-manager reads (get), creates
/// and applies (create, patch) the Lease; a standby watches it (list, watch) to take it the
/// moment the leader hands it back.
pub const LEADER_ELECTION: &[Rule] = &[rule(
    "coordination.k8s.io",
    &["leases"],
    &["get", "list", "watch", "create", "patch"],
)];

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    watch_scope: &'static [Rule],
    leader_election: &'static [Rule],
}

/// YAML printed by `blocksight rbac`.
pub fn to_yaml() -> String {
    serde_yaml::to_string(&Document {
        watch_scope: WATCH_SCOPE,
        leader_election: LEADER_ELECTION,
    })
    .expect("YAML")
}

/// Whether the watch scope grants `verb` on `group`/`resource`.
pub fn allows(group: &str, resource: &str, verb: &str) -> bool {
    WATCH_SCOPE.iter().any(|r| {
        r.api_groups[0] == group && r.resources.contains(&resource) && r.verbs.contains(&verb)
    })
}
