//! BlockSight Operator: runs the BlockSight.live Bitcoin analytics backend on Kubernetes.
//!
//! Reconcile is a pipeline (see `controller::blocksight`): validate the spec into a typed
//! value, build the desired children with pure builders (`desired`), apply them with
//! server-side apply, then compute status from what was applied. `blocksight render` runs the
//! same validate and build steps offline (`render`). ARCHITECTURE.md maps the folders.

pub mod assets;
pub mod backup_tool;
pub mod chain;
pub mod cmd;
pub mod compose;
pub mod controller;
pub mod crd;
pub mod desired;
pub mod digest;
mod layering;
pub mod metrics;
pub mod names;
pub mod probe;
pub mod rbac;
pub mod render;
pub mod retention;
pub mod runtime;
pub mod schedule;
pub mod telemetry;
pub mod validate;
