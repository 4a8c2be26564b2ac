//! The project's custom resources: the `blocksight.live/v1alpha1` API.
//!
//! Everything the API server can enforce (enums, required fields, CEL cross-field and
//! transition rules) is declared here, so `blocksight crd` and `blocksight render` share it.

mod backup;
mod blocksight;
mod common;
mod snapshots;
mod status;

pub use backup::*;
pub use blocksight::*;
pub use common::*;
pub use snapshots::*;
pub use status::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of every BlockSight kind.
pub const GROUP: &str = "blocksight.live";

/// Every CRD the operator ships, in the order `blocksight crd` prints them.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        BlockSight::crd(),
        BlockSightBackup::crd(),
        BlockSightRestore::crd(),
    ]
}
