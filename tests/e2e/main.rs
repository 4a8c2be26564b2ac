//! End-to-end tests on a real API server: the local control plane that `tests/run.sh` starts
//! (etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok, built from the
//! pins in tests/controlplane), or a kind/k3d cluster named by BLOCKSIGHT_E2E_KUBECONFIG.
//!
//! Everything here is decided by the real server: CRD and CEL validation, RBAC (the operator
//! runs as the chart's ServiceAccount), admission, server-side apply merging, the workload
//! controllers and the garbage collector. The chain probes have nothing to talk to (no
//! bitcoind runs under kwok), as in a cluster whose node is still starting.
//!
//!   bash tests/run.sh                      # starts the control plane, runs these among all tests
//!   cargo test --test e2e -- --test-threads=2   # with the BLOCKSIGHT_E2E_* variables of kit.rs

mod kit;

mod backups;
mod converge;
mod corpus;
mod install;
mod leader;
mod lifecycle;
mod scaling;

use blocksight_operator::crd::BlockSight;
use blocksight_operator::desired::{BuildSettings, Child, ChildKind};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};

/// The examples users start from.
pub const REGTEST: &str = include_str!("../../examples/regtest.yaml");
pub const MAINNET: &str = include_str!("../../examples/mainnet.yaml");

/// How the test applies BlockSights: `kubectl apply --server-side`.
pub const TEST_MANAGER: &str = "e2e-user";

/// The API resource of a child kind (group, version, plural).
pub fn resource_of(kind: ChildKind) -> ApiResource {
    let (group, version, plural) = match kind {
        ChildKind::ConfigMap => ("", "v1", "configmaps"),
        ChildKind::Service => ("", "v1", "services"),
        ChildKind::NetworkPolicy => ("networking.k8s.io", "v1", "networkpolicies"),
        ChildKind::ServiceAccount => ("", "v1", "serviceaccounts"),
        ChildKind::PersistentVolumeClaim => ("", "v1", "persistentvolumeclaims"),
        ChildKind::StatefulSet => ("apps", "v1", "statefulsets"),
        ChildKind::Deployment => ("apps", "v1", "deployments"),
        ChildKind::CronJob => ("batch", "v1", "cronjobs"),
        ChildKind::HorizontalPodAutoscaler => ("autoscaling", "v2", "horizontalpodautoscalers"),
        ChildKind::PodDisruptionBudget => ("policy", "v1", "poddisruptionbudgets"),
        ChildKind::Ingress => ("networking.k8s.io", "v1", "ingresses"),
        ChildKind::ServiceMonitor => ("monitoring.coreos.com", "v1", "servicemonitors"),
        ChildKind::PodMonitor => ("monitoring.coreos.com", "v1", "podmonitors"),
    };
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.as_str().into(),
        plural: plural.into(),
    }
}

/// What the controller applies for `yaml` in `namespace`: the very builders of `render`,
/// with the API gated as it is here (no PostgreSQL answers the probes under kwok, so the
/// API is held at zero replicas, without its HorizontalPodAutoscaler).
pub fn desired_children(yaml: &str, namespace: &str) -> Vec<Child> {
    let mut bs: BlockSight = serde_yaml::from_str(yaml).expect("example parses");
    bs.metadata.namespace = Some(namespace.into());
    let valid = blocksight_operator::validate::validate(&bs).expect("example is valid");
    let gates = blocksight_operator::desired::Gates { api_serving: false };
    blocksight_operator::desired::build_gated(&valid, &BuildSettings::default(), gates).children
}

/// `kubectl apply --server-side` of one BlockSight document into `namespace`.
pub async fn apply_blocksight(client: &Client, namespace: &str, yaml: &str) -> BlockSight {
    let mut value: serde_json::Value = serde_yaml::from_str(yaml).expect("YAML");
    // Examples name their own namespace (mainnet's is blocksight-production): the test's wins.
    if let Some(meta) = value["metadata"].as_object_mut() {
        meta.remove("namespace");
    }
    let name = value["metadata"]["name"]
        .as_str()
        .expect("a name")
        .to_owned();
    Api::<BlockSight>::namespaced(client.clone(), namespace)
        .patch(
            &name,
            &PatchParams::apply(TEST_MANAGER).force(),
            &Patch::Apply(&value),
        )
        .await
        .unwrap_or_else(|e| panic!("applying BlockSight {name}: {e}"))
}

/// The live object of a child, if it exists.
pub async fn get_child(
    client: &Client,
    namespace: &str,
    kind: ChildKind,
    name: &str,
) -> Option<DynamicObject> {
    Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource_of(kind))
        .get_opt(name)
        .await
        .unwrap_or_else(|e| panic!("reading {kind} {name}: {e}"))
}
