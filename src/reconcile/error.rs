//! One error type per pipeline step. Each error's category is the Event reason and the
//! `category` label of `blocksight_reconcile_failures_total`.

use crate::build::ChildKind;
use crate::validate::InvalidSpec;

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
}

/// Writing the BlockSight's status failed.
#[derive(Debug, thiserror::Error)]
#[error("writing status: {0}")]
pub struct StatusError(#[source] pub kube::Error);

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
    Status(#[from] StatusError),
    /// Creating the BlockSightBackup of a scheduled Job, or deleting one out of retention.
    #[error(transparent)]
    Backup(#[from] super::backups::BackupControllerError),
}

impl Error {
    /// Stable, low-cardinality name of the failing step.
    pub fn category(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "invalid_spec",
            Error::Malformed(_) => "malformed_object",
            Error::Credentials(_) => "credentials",
            Error::Apply(ApplyError::Apply { .. }) => "apply",
            Error::Apply(ApplyError::Prune { .. }) => "prune",
            Error::Status(_) => "status",
            Error::Backup(e) => e.category(),
        }
    }

    /// The same category in the CamelCase Kubernetes uses for Event and condition reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::Malformed(_) => "MalformedObject",
            Error::Credentials(_) => "CredentialsFailed",
            Error::Apply(ApplyError::Apply { .. }) => "ApplyFailed",
            Error::Apply(ApplyError::Prune { .. }) => "PruneFailed",
            Error::Status(_) => "StatusFailed",
            Error::Backup(_) => "BackupFailed",
        }
    }

    /// Errors the user must fix; retrying before the object changes cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Error::InvalidSpec(_) | Error::Malformed(_))
    }
}
