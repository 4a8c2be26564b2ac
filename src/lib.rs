//! BlockSight Operator: runs the BlockSight.live Bitcoin analytics backend on Kubernetes.
//!
//! Reconcile is a pipeline (see `reconcile`): validate the spec into a typed value, build the
//! desired children with pure builders (`build`), apply them with server-side apply, then
//! compute status from what was applied. `blocksight render` runs the same validate and build
//! steps offline.

pub mod assets;
pub mod backup;
pub mod build;
pub mod chain;
pub mod cli;
pub mod cluster_version;
pub mod crd;
pub mod metrics;
pub mod probe;
pub mod rbac;
pub mod reconcile;
pub mod run;
pub mod schedule;
pub mod validate;
