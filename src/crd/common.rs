//! Building blocks shared by several component specs.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use kube::KubeSchema;
use kube::core::{Message, Rule};
use serde::{Deserialize, Serialize};

use super::Network;

/// A persistent volume request for one component.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of the volume (a Kubernetes quantity such as `1Ti`). Defaults depend on the
    /// network. May grow (when the StorageClass allows expansion) but never shrink: neither
    /// below the size it replaces nor, set or removed later, below the network's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new("isQuantity(self)").message("must be a Kubernetes quantity such as 500Gi"),
        validation = Rule::new("!isQuantity(self) || !isQuantity(oldSelf) || quantity(self).compareTo(quantity(oldSelf)) >= 0").message("storage size may grow but never shrink")
    )]
    pub size: Option<String>,
    /// StorageClass of the volume; the cluster default when omitted. Immutable: it cannot be
    /// set, changed or removed once the BlockSight exists.
    // Checked by a rule on the spec (storage_class_immutable): a rule here would not see it
    // being added or removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
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

// Transition rules of volumes, placed on an object that holds the volume: a rule with
// `oldSelf` on an optional field runs only when both the old and the new value exist, so it
// does not see the field being added or removed.

/// CEL: whether every step of `path` (".a.b.c", relative to the rule's object) is set in
/// `root` (`self` or `oldSelf`).
fn set_in(root: &str, path: &str) -> String {
    let mut prefix = root.to_owned();
    let checks: Vec<String> = path
        .trim_start_matches('.')
        .split('.')
        .map(|segment| {
            prefix = format!("{prefix}.{segment}");
            format!("has({prefix})")
        })
        .collect();
    format!("({})", checks.join(" && "))
}

/// CEL: `rule` only where the volume at `volume` exists in both the old and the new object
/// (`volume_may_go`), or always.
fn while_kept(volume: &str, volume_may_go: bool, rule: String) -> String {
    if volume_may_go {
        format!(
            "!{} || !{} || ({rule})",
            set_in("self", volume),
            set_in("oldSelf", volume)
        )
    } else {
        rule
    }
}

/// `storageClassName` of the volume at `volume` (e.g. `.bitcoind.storage`) cannot be set,
/// changed or removed: a StatefulSet's volume claim templates and a claim's class never
/// change. `volume_may_go`: only while the volume exists in both (the backup volume, which
/// may be swapped for S3).
pub(crate) fn storage_class_immutable(volume: &str, volume_may_go: bool) -> Rule {
    let field = format!("{volume}.storageClassName");
    let (new, old) = (set_in("self", &field), set_in("oldSelf", &field));
    let rule = format!("{new} == {old} && (!{new} || self{field} == oldSelf{field})");
    let while_ = if volume_may_go {
        "while the volume is the backup destination"
    } else {
        "once the BlockSight exists"
    };
    Rule::new(while_kept(volume, volume_may_go, rule))
        .message(Message::Message(format!(
            "storageClassName is immutable: it cannot be set, changed or removed {while_} (a volume claim's class never changes)"
        )))
        .field_path(field)
}

/// The size of the volume at `volume` (e.g. `.bitcoind.storage`) may not shrink when its
/// `size` is set or removed: the size it replaces, or that replaces it, is the default of
/// `component` for the BlockSight's network. Both set: the field's own rule compares them.
///
/// A CEL rule, not an operator-side check: the operator validates each generation alone
/// (`check_cel(bs, None)`, memoized per generation) and never sees the previous spec, while
/// the API server has it and can refuse the update before anything is stored. The defaults
/// are written into the rule from `crd::defaults`, so they cannot drift apart.
pub(crate) fn size_never_below_network_default(volume: &str, component: &str) -> Rule {
    let defaults: Vec<(Network, String)> = Network::ALL
        .iter()
        .map(|n| (*n, super::defaults::storage(component, *n).0))
        .collect();
    let table = defaults
        .iter()
        .map(|(n, size)| format!("'{n}': '{size}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let listed = defaults
        .iter()
        .map(|(n, size)| format!("{n} {size}"))
        .collect::<Vec<_>>()
        .join(", ");
    grows_from_default(
        volume,
        false,
        |root| format!("{{{table}}}[{root}.network]"),
        format!(
            "storage size may grow but never shrink: with size omitted the volume has the network's default ({listed})"
        ),
    )
}

/// [`size_never_below_network_default`] for the backup volume, whose default does not
/// depend on the network; only while a volume is the destination in both.
pub(crate) fn backup_size_never_below_default() -> Rule {
    let default = super::defaults::DEFAULT_BACKUP_VOLUME_SIZE;
    grows_from_default(
        ".volume",
        true,
        |_| format!("'{default}'"),
        format!(
            "storage size may grow but never shrink: with size omitted the volume has {default}"
        ),
    )
}

fn grows_from_default(
    volume: &str,
    volume_may_go: bool,
    default: impl Fn(&str) -> String,
    message: String,
) -> Rule {
    let field = format!("{volume}.size");
    let (new, old) = (set_in("self", &field), set_in("oldSelf", &field));
    let size = |root: &str, set: &str| {
        format!(
            "({set} ? quantity({root}{field}) : quantity({}))",
            default(root)
        )
    };
    let rule = format!(
        "({new} && {old}) || ({new} && !isQuantity(self{field})) || ({old} && !isQuantity(oldSelf{field})) || {}.compareTo({}) >= 0",
        size("self", &new),
        size("oldSelf", &old)
    );
    Rule::new(while_kept(volume, volume_may_go, rule))
        .message(Message::Message(message))
        .field_path(field)
}
