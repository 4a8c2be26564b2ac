//! The Kubernetes permissions the operator needs, as data. The rules for the children come
//! from the child table (`desired::child`), so a new kind is granted with its row. The Helm
//! chart's Role and ClusterRole must grant exactly these (tests/assets/test_chart.py compares
//! them with the output of `blocksight rbac`).

use serde::Serialize;

use crate::desired::ChildKind;

/// One RBAC rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub api_groups: [&'static str; 1],
    pub resources: Vec<&'static str>,
    pub verbs: &'static [&'static str],
}

fn rule(group: &'static str, resources: &[&'static str], verbs: &'static [&'static str]) -> Rule {
    Rule {
        api_groups: [group],
        resources: resources.to_vec(),
        verbs,
    }
}

/// One rule per API group of the child table, its kinds' plurals in table order.
fn child_rules() -> Vec<Rule> {
    let mut rules: Vec<Rule> = Vec::new();
    for kind in ChildKind::ALL {
        let info = kind.info();
        match rules.iter_mut().find(|r| r.api_groups[0] == info.group) {
            Some(rule) => rule.resources.push(info.plural),
            None => rules.push(rule(info.group, &[info.plural], CHILD_VERBS)),
        }
    }
    rules
}

/// Children are read from watches (list, watch), written with server-side apply and pruned
/// (delete); the operator never GETs or updates them. An apply that creates an object is
/// authorized as `create` as well as `patch` (apiserver `handlers/patch.go`), so both.
const CHILD_VERBS: &[&str] = &["list", "watch", "create", "patch", "delete"];

/// Granted in every namespace the operator watches (ClusterRole, or Role per namespace).
pub fn watch_scope() -> Vec<Rule> {
    let mut rules = vec![
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
        // Generated credentials are created once (never applied: that would replace them);
        // the probes read them with get.
        rule(
            "",
            &["secrets"],
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        // Backup pods: read their phase and termination message (the backup's result).
        rule("", &["pods"], &["list", "watch"]),
    ];
    // The children (PrometheusRules are the chart's, one for the cluster, never a child).
    rules.extend(child_rules());
    rules.extend([
        // Backup, restore and drill Jobs, applied by the backup and restore controllers.
        rule("batch", &["jobs"], CHILD_VERBS),
        // Scheduled chain-data snapshots: created once per slot (never applied, never
        // updated), read from a watch, pruned beyond keepLast.
        rule(
            "snapshot.storage.k8s.io",
            &["volumesnapshots"],
            &["list", "watch", "create", "delete"],
        ),
        // events.k8s.io/v1 Events: the recorder creates, then patches the count of a repeat.
        rule("events.k8s.io", &["events"], &["create", "patch"]),
    ]);
    rules
}

/// Granted in the operator's own namespace only. kube-lease-manager reads (get), creates
/// and applies (create, patch) the Lease; a standby watches it (list, watch) to take it the
/// moment the leader hands it back.
pub fn leader_election() -> Vec<Rule> {
    vec![rule(
        "coordination.k8s.io",
        &["leases"],
        &["get", "list", "watch", "create", "patch"],
    )]
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    watch_scope: Vec<Rule>,
    leader_election: Vec<Rule>,
}

/// YAML printed by `blocksight rbac`.
pub fn to_yaml() -> String {
    serde_yaml::to_string(&Document {
        watch_scope: watch_scope(),
        leader_election: leader_election(),
    })
    .expect("YAML")
}

/// Whether the watch scope grants `verb` on `group`/`resource`.
pub fn allows(group: &str, resource: &str, verb: &str) -> bool {
    watch_scope().iter().any(|r| {
        r.api_groups[0] == group && r.resources.contains(&resource) && r.verbs.contains(&verb)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_child_kind_of_the_table_is_granted_what_apply_and_prune_need() {
        for kind in ChildKind::ALL {
            let info = kind.info();
            for verb in CHILD_VERBS {
                assert!(allows(info.group, info.plural, verb), "{info:?} {verb}");
            }
        }
    }
}
