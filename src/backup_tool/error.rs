//! Why a backup program failed, and the exit code that says so to the Job and the controller.

/// The operation succeeded.
pub const EXIT_OK: u8 = 0;
/// Verification failed, the backup is corrupt, or a client tool failed.
pub const EXIT_FAILED: u8 = 1;
/// Bad flags or configuration: the same command will fail again until someone changes it.
pub const EXIT_USAGE: u8 = 2;
/// The destination or the database could not be reached, or refused the credentials.
pub const EXIT_UNREACHABLE: u8 = 3;

/// Why a backup program failed. The text says what happened and never holds a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BackupError {
    /// Bad flags, an unreadable secret file, a backup or database that does not exist, a
    /// client tool of another major version than the server.
    #[error("{0}")]
    Usage(String),
    /// Could not connect to, or log in to, the destination or the database.
    #[error("{0}")]
    Unreachable(String),
    /// An archive whose bytes, or a restored database whose contents, differ from the
    /// manifest; or a manifest that cannot be read.
    #[error("{0}")]
    Corrupt(String),
    /// The operation ran and failed: pg_dump or pg_restore failed, a local file could not be
    /// written, the program was interrupted.
    #[error("{0}")]
    Failed(String),
}

impl BackupError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => EXIT_USAGE,
            Self::Unreachable(_) => EXIT_UNREACHABLE,
            Self::Corrupt(_) | Self::Failed(_) => EXIT_FAILED,
        }
    }

    /// Short stable name of the failure class (CLI output, a future metric label).
    pub fn category(&self) -> &'static str {
        match self {
            Self::Usage(_) => "usage",
            Self::Unreachable(_) => "unreachable",
            Self::Corrupt(_) => "corrupt",
            Self::Failed(_) => "failed",
        }
    }
}

impl BackupError {
    /// The same class of failure with `more` appended to its text.
    pub fn with_note(self, more: &str) -> Self {
        match self {
            Self::Usage(m) => Self::Usage(format!("{m}; {more}")),
            Self::Unreachable(m) => Self::Unreachable(format!("{m}; {more}")),
            Self::Corrupt(m) => Self::Corrupt(format!("{m}; {more}")),
            Self::Failed(m) => Self::Failed(format!("{m}; {more}")),
        }
    }
}

pub type Result<T, E = BackupError> = std::result::Result<T, E>;

/// A failure of a local file operation (the work folder), naming the file.
pub(crate) fn local_io(what: &str, path: &std::path::Path, e: std::io::Error) -> BackupError {
    BackupError::Failed(format!("{what} {}: {e}", path.display()))
}
