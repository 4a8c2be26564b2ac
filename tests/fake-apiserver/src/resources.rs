//! The kinds the fake serves, and the discovery documents that describe them.

use serde_json::{Value, json};

/// One served resource (a REST collection).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for the core group (served under /api).
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub short_names: &'static [&'static str],
    /// Has a /status subresource: writes to the object ignore status, writes to /status
    /// change only status.
    pub status_subresource: bool,
    /// Sets metadata.generation and bumps it when anything but metadata and status changes.
    pub generation: bool,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn singular(&self) -> String {
        self.kind.to_ascii_lowercase()
    }

    /// The path prefix of the group version: /api/v1 or /apis/GROUP/VERSION.
    pub fn prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }
}

/// A kind in `group_version` ("v1" for the core group, else "GROUP/VERSION").
fn kind(
    group_version: &'static str,
    plural: &'static str,
    kind: &'static str,
    short_names: &'static [&'static str],
    status_subresource: bool,
    generation: bool,
) -> ResourceType {
    let (group, version) = group_version.split_once('/').unwrap_or(("", group_version));
    ResourceType {
        group,
        version,
        plural,
        kind,
        short_names,
        status_subresource,
        generation,
    }
}

/// Every kind the operator reads or writes. BlockSight's CRDs and prometheus-operator's are
/// optional, as in a real cluster.
pub fn catalog(blocksight_crds: bool, prometheus_operator_crds: bool) -> Vec<ResourceType> {
    // (group/version, plural, kind, short names, status subresource, generation)
    let mut kinds = vec![
        kind("v1", "configmaps", "ConfigMap", &["cm"], false, false),
        kind("v1", "secrets", "Secret", &[], false, false),
        kind("v1", "services", "Service", &["svc"], true, false),
        kind(
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            &["sa"],
            false,
            false,
        ),
        kind(
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            &["pvc"],
            true,
            false,
        ),
        kind("v1", "pods", "Pod", &["po"], true, false),
        kind("batch/v1", "jobs", "Job", &[], true, true),
        kind("batch/v1", "cronjobs", "CronJob", &["cj"], true, true),
        kind(
            "apps/v1",
            "statefulsets",
            "StatefulSet",
            &["sts"],
            true,
            true,
        ),
        kind(
            "apps/v1",
            "deployments",
            "Deployment",
            &["deploy"],
            true,
            true,
        ),
        kind(
            "autoscaling/v2",
            "horizontalpodautoscalers",
            "HorizontalPodAutoscaler",
            &["hpa"],
            true,
            true,
        ),
        kind(
            "policy/v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            &["pdb"],
            true,
            true,
        ),
        kind(
            "networking.k8s.io/v1",
            "ingresses",
            "Ingress",
            &["ing"],
            true,
            true,
        ),
        kind(
            "networking.k8s.io/v1",
            "networkpolicies",
            "NetworkPolicy",
            &["netpol"],
            false,
            true,
        ),
        kind(
            "coordination.k8s.io/v1",
            "leases",
            "Lease",
            &[],
            false,
            false,
        ),
        kind("events.k8s.io/v1", "events", "Event", &["ev"], false, false),
    ];
    if blocksight_crds {
        kinds.extend([
            kind(
                "blocksight.live/v1alpha1",
                "blocksights",
                "BlockSight",
                &["bs"],
                true,
                true,
            ),
            kind(
                "blocksight.live/v1alpha1",
                "blocksightbackups",
                "BlockSightBackup",
                &["bsb"],
                true,
                true,
            ),
            kind(
                "blocksight.live/v1alpha1",
                "blocksightrestores",
                "BlockSightRestore",
                &["bsr"],
                true,
                true,
            ),
        ]);
    }
    if prometheus_operator_crds {
        kinds.extend([
            kind(
                "monitoring.coreos.com/v1",
                "servicemonitors",
                "ServiceMonitor",
                &["smon"],
                false,
                true,
            ),
            kind(
                "monitoring.coreos.com/v1",
                "podmonitors",
                "PodMonitor",
                &["pmon"],
                false,
                true,
            ),
        ]);
    }
    kinds
}

/// GET /api
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

/// GET /apis
pub fn group_list(kinds: &[ResourceType]) -> Value {
    let mut groups: Vec<(&str, &str)> = Vec::new();
    for k in kinds.iter().filter(|k| !k.group.is_empty()) {
        if !groups.contains(&(k.group, k.version)) {
            groups.push((k.group, k.version));
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(group, version)| {
            let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
            json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// GET /api/v1 or /apis/GROUP/VERSION; None when no kind is served there.
pub fn resource_list(kinds: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let served: Vec<&ResourceType> = kinds
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .collect();
    let first = served.first()?;
    let mut resources = Vec::new();
    for k in &served {
        resources.push(json!({
            "name": k.plural,
            "singularName": k.singular(),
            "namespaced": true,
            "kind": k.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "shortNames": k.short_names,
        }));
        if k.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", k.plural),
                "singularName": "",
                "namespaced": true,
                "kind": k.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": first.api_version(),
        "resources": resources,
    }))
}
