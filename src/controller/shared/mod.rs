//! What the three controllers share: the watch caches and their compact entries, the memory
//! of recent writes, drift detection, the apply/prune engine, and the reading of Jobs.

pub mod apply;
pub mod child_cache;
pub mod conditions;
pub mod context;
pub mod drift;
pub mod jobs;
