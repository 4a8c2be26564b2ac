//! Backups of a BlockSight's PostgreSQL database: the programs the backup, restore and
//! restore-drill Jobs run (`blocksight backup dump|list|prune|restore|verify`).
//!
//! A backup is one database dumped with `pg_dump -Fc` by the client of the server's own major
//! version, plus a manifest. Both go to a destination (an S3 bucket or a local folder) under a
//! prefix, through the `object_store` crate:
//!
//! ```text
//! <prefix>/<backup name>/<database>.dump   the archive, written first
//! <prefix>/<backup name>/manifest.json     written last, once the archive is complete
//! ```
//!
//! A backup exists only when its manifest does, so an upload cut short (pod killed, network
//! gone) never looks complete: it is an orphan, which `prune` deletes once it is older than a
//! grace period. Pruning deletes a manifest before its archive for the same reason.
//!
//! Nothing is restored from an archive whose size and SHA-256 differ from its manifest. A
//! restore goes into a fresh database that replaces the target only once `pg_restore` has
//! succeeded and every table holds the row count the manifest recorded.
//!
//! Exit codes (see [`BackupError::exit_code`]): 0 ok, 1 verification failed or the backup is
//! corrupt (or a client tool failed), 2 usage or configuration error, 3 destination or
//! database unreachable.

pub mod command;
mod dump;
mod error;
mod manifest;
mod pg;
mod prune;
mod restore;
mod store;

pub use dump::{DumpRequest, dump};
pub use error::{BackupError, EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE};
pub use manifest::{Listed, MANIFEST_FILE, Manifest, validate_backup_name};
pub use pg::{PgServer, PgSettings};
pub use prune::{DeleteReport, PrunePolicy, PruneReport, delete_backup, prune};
pub use restore::{
    BackupRef, Mismatch, RestoreReport, RestoreRequest, VerifyReport, restore, verify,
};
pub use store::{Destination, DestinationConfig, S3Settings};
