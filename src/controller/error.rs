//! The error contract of the three controllers ([`ReconcileError`]: a category, permanent or
//! transient), and the BlockSight controller's errors, one type per pipeline step. Each
//! error's category is the `category` label of `blocksight_reconcile_failures_total`, and
//! its CamelCase form the Event and condition reason.

use crate::desired::ChildKind;
use crate::validate::InvalidSpec;

/// What every controller's error tells the runtime: one `error_policy`
/// ([`crate::controller::error_policy`]) serves all three.
pub trait ReconcileError: std::error::Error {
    /// Stable, low-cardinality name of what failed.
    fn category(&self) -> &'static str;
    /// Errors the user must fix: retrying before the object changes cannot help.
    fn is_permanent(&self) -> bool {
        false
    }
}

/// Creating a generated credentials Secret failed.
#[derive(Debug, thiserror::Error)]
#[error("creating Secret {name}: {source}")]
pub struct CredentialsError {
    pub name: String,
    #[source]
    pub source: kube::Error,
}

/// Applying or pruning a child failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: ChildKind,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting {kind} {name} (no longer desired): {source}")]
    Prune {
        kind: ChildKind,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("growing PersistentVolumeClaim {name} to {size}: {source}")]
    Grow {
        name: String,
        size: String,
        #[source]
        source: kube::Error,
    },
    /// Several children failed in one pass (each was still tried).
    #[error("{} failures: {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Several(Vec<ApplyError>),
}

impl ApplyError {
    /// The failure that names the category: the first.
    fn first(&self) -> &ApplyError {
        match self {
            ApplyError::Several(all) => all.first().map_or(self, ApplyError::first),
            other => other,
        }
    }
}

/// Creating or pruning a scheduled VolumeSnapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("creating VolumeSnapshot {name}: {source}")]
    Create {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting VolumeSnapshot {name} (beyond keepLast): {source}")]
    Delete {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Writing the BlockSight's status failed.
#[derive(Debug, thiserror::Error)]
#[error("writing status: {0}")]
pub struct StatusError(#[source] pub kube::Error);

/// A step of the reconcile that the API server did not answer in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Credentials, children and pruning.
    Apply,
    VolumeSnapshots,
    Status,
    Events,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Apply => "applying the children",
            Step::VolumeSnapshots => "requesting volume snapshots",
            Step::Status => "writing status",
            Step::Events => "publishing events",
        })
    }
}

/// A step waited longer than the reconcile timeout on the API server (kube's client has no
/// read timeout: a request the server accepts and never answers would wait for ever). The
/// request in flight is dropped; whatever it may have done is safe to redo (server-side
/// apply, creates of fixed names answered 409).
#[derive(Debug, thiserror::Error)]
#[error("{step}: the API server did not answer within {}s", after.as_secs_f64())]
pub struct TimeoutError {
    pub step: Step,
    pub after: std::time::Duration,
}

/// Everything a reconciliation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec is invalid: nothing was changed; waits for the user to edit it.
    #[error("invalid spec: {0}")]
    InvalidSpec(#[from] InvalidSpec),
    /// The watch delivered an object that does not deserialize (an old CRD let it through).
    #[error("malformed object: {0}")]
    Malformed(String),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(transparent)]
    Timeout(#[from] TimeoutError),
    /// Creating the BlockSightBackup of a scheduled Job, or deleting one out of retention.
    #[error(transparent)]
    Backup(#[from] crate::controller::backup::BackupControllerError),
}

impl Error {
    /// Stable, low-cardinality name of the failing step.
    pub fn category(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "invalid_spec",
            Error::Malformed(_) => "malformed_object",
            Error::Credentials(_) => "credentials",
            Error::Apply(e) => match e.first() {
                ApplyError::Prune { .. } => "prune",
                ApplyError::Grow { .. } => "volume_resize",
                _ => "apply",
            },
            Error::Snapshot(_) => "volume_snapshot",
            Error::Status(_) => "status",
            Error::Timeout(_) => "timeout",
            Error::Backup(e) => e.category(),
        }
    }

    /// The same category in the CamelCase Kubernetes uses for Event and condition reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::Malformed(_) => "MalformedObject",
            Error::Credentials(_) => "CredentialsFailed",
            Error::Apply(e) => match e.first() {
                ApplyError::Prune { .. } => "PruneFailed",
                ApplyError::Grow { .. } => "VolumeResizeFailed",
                _ => "ApplyFailed",
            },
            Error::Snapshot(_) => "VolumeSnapshotRequestFailed",
            Error::Status(_) => "StatusFailed",
            Error::Timeout(_) => "Timeout",
            Error::Backup(_) => "BackupFailed",
        }
    }

    /// Errors the user must fix; retrying before the object changes cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Error::InvalidSpec(_) | Error::Malformed(_))
    }
}

impl ReconcileError for Error {
    fn category(&self) -> &'static str {
        Error::category(self)
    }

    fn is_permanent(&self) -> bool {
        Error::is_permanent(self)
    }
}

impl ReconcileError for crate::controller::backup::BackupControllerError {
    fn category(&self) -> &'static str {
        crate::controller::backup::BackupControllerError::category(self)
    }
}
