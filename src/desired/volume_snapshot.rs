//! VolumeSnapshots (snapshot.storage.k8s.io/v1) of the chain data volumes. Not children:
//! the operator creates one per schedule slot (see [`crate::controller::blocksight::snapshots`]) and
//! never applies or updates them, so `render` does not show them.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use kube::api::{ApiResource, DynamicObject};
use serde_json::json;

use super::meta::{self, Component};
use crate::crd::SnapshotComponent;
use crate::names::{SCHEDULED_LABEL, SLOT_ANNOTATION};
use crate::validate::{ValidBlockSight, VolumeSnapshots};

pub const GROUP: &str = "snapshot.storage.k8s.io";
pub const VERSION: &str = "v1";
pub const KIND: &str = "VolumeSnapshot";

pub fn resource() -> ApiResource {
    ApiResource {
        group: GROUP.to_owned(),
        version: VERSION.to_owned(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: KIND.to_owned(),
        plural: "volumesnapshots".to_owned(),
    }
}

/// Label selector of the operator's scheduled snapshots (its watch).
pub fn watch_selector() -> String {
    format!(
        "app.kubernetes.io/managed-by={},{SCHEDULED_LABEL}=true",
        crate::names::MANAGED_BY
    )
}

pub fn component(c: SnapshotComponent) -> Component {
    match c {
        SnapshotComponent::Bitcoind => Component::Bitcoind,
        SnapshotComponent::Electrs => Component::Electrs,
    }
}

/// The PVC the StatefulSet made for replica 0 from its `data` claim template.
pub fn source_claim(bs: &ValidBlockSight, c: SnapshotComponent) -> String {
    format!("data-{}-0", component(c).child_name(bs))
}

/// `<blocksight>-<component>-<YYYYMMDDHHMM>`: one name per slot, so a retried create is
/// answered 409 instead of making a second snapshot.
pub fn name(blocksight: &str, c: SnapshotComponent, slot: Timestamp) -> String {
    let minute = slot.to_zoned(TimeZone::UTC).strftime("%Y%m%d%H%M");
    format!("{blocksight}-{}-{minute}", c.as_str())
}

/// The snapshot of `c`'s volume for `slot`. Owned by the BlockSight only under
/// deletionPolicy Delete (like generated credentials): chain data outlives its BlockSight.
pub fn build(
    bs: &ValidBlockSight,
    settings: &VolumeSnapshots,
    c: SnapshotComponent,
    slot: Timestamp,
) -> DynamicObject {
    let name = name(&bs.name, c, slot);
    let mut spec = json!({
        "source": {"persistentVolumeClaimName": source_claim(bs, c)},
    });
    if let Some(class) = &settings.class_name {
        spec["volumeSnapshotClassName"] = json!(class);
    }
    let mut object = DynamicObject::new(&name, &resource()).data(json!({ "spec": spec }));
    object.metadata = meta::retained(bs, component(c), name);
    object
        .metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(SCHEDULED_LABEL.to_owned(), "true".to_owned());
    object.metadata.annotations = Some(BTreeMap::from([(
        SLOT_ANNOTATION.to_owned(),
        slot.to_string(),
    )]));
    object
}
