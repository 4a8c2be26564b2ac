//! Building blocks shared by several component specs.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// A persistent volume request for one component.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of the volume (a Kubernetes quantity such as `1Ti`). Defaults depend on the
    /// network. May grow (when the StorageClass allows expansion) but never shrink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new("isQuantity(self)").message("must be a Kubernetes quantity such as 500Gi"),
        validation = Rule::new("!isQuantity(self) || !isQuantity(oldSelf) || quantity(self).compareTo(quantity(oldSelf)) >= 0").message("storage size may grow but never shrink")
    )]
    pub size: Option<String>,
    /// StorageClass of the volume; the cluster default when omitted. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storageClassName is immutable"))]
    pub storage_class_name: Option<String>,
    /// Name of a VolumeSnapshot (snapshot.storage.k8s.io/v1) in the BlockSight's namespace
    /// to create the volume from, e.g. one the operator took of another BlockSight
    /// (spec.volumeSnapshots): the node starts where the snapshot was taken instead of
    /// syncing from scratch. bitcoind and electrs only. Used only when the volume is created:
    /// a PersistentVolumeClaim that already exists (retained from an earlier BlockSight of
    /// the same name) is never touched. Immutable once the BlockSight exists (a
    /// StatefulSet's volume claim template cannot change); size must be at least the
    /// snapshot's restoreSize.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("fromSnapshot must be the name of a VolumeSnapshot (a DNS subdomain)"))]
    pub from_snapshot: Option<String>,
}

/// Where a component's pods may run: node selection and taints they tolerate
/// (for example the storage-heavy node group for bitcoind and electrs).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Placement {
    /// Node labels the pods require.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// A key in a Secret in the BlockSight's namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("name must not be empty"))]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("key must not be empty"))]
    pub key: String,
}

/// Compute resources of a container (core/v1 ResourceRequirements). Omitted: sized per
/// network by the operator.
pub type Resources = Option<ResourceRequirements>;
