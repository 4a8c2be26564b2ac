//! `restore` and `verify`: download an archive while checking it against its manifest, then
//! `pg_restore` it into a fresh database and compare every table's row count with the
//! manifest. `restore` then puts that database in the target's place; `verify` (the restore
//! drill) drops it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use sqlx::Connection as _;

use super::error::{BackupError, Result};
use super::manifest::Manifest;
use super::pg::{self, PgServer};
use super::store::Destination;

/// Which backup to use.
#[derive(Clone, Debug, PartialEq)]
pub enum BackupRef {
    Name(String),
    /// The newest complete backup at the destination.
    Latest,
}

#[derive(Clone, Debug)]
pub struct RestoreRequest {
    pub backup: BackupRef,
    pub target_database: String,
    /// Replace the target when it exists; without it an existing target is refused.
    pub drop_existing: bool,
    /// Replace an existing target only when it holds no table: what `restoreFrom` asks for,
    /// since it seeds a new BlockSight's database (one recreated over retained volumes
    /// already has its data, and must keep it).
    pub only_if_empty: bool,
    /// Owner of a target that does not exist yet (an existing target keeps its owner);
    /// default: the connecting role.
    pub owner: Option<String>,
    /// Where the archive is downloaded (needs room for the whole archive).
    pub work_dir: PathBuf,
}

/// What `restore` did.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
    pub backup: String,
    pub database: String,
    /// Whether an existing database was replaced.
    pub replaced: bool,
    pub size_bytes: u64,
    /// Tables whose row counts were checked.
    pub tables: usize,
    pub duration_seconds: f64,
}

/// The result of a restore drill.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub backup: String,
    pub ok: bool,
    pub duration_seconds: f64,
    /// Tables whose row counts were compared.
    pub tables: usize,
    pub mismatches: Vec<Mismatch>,
    pub error: Option<String>,
    /// Why the drill failed, for the exit code.
    #[serde(skip)]
    pub failure: Option<BackupError>,
}

/// A table whose row count differs from the manifest's; `None`: the table is missing on
/// that side.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mismatch {
    pub table: String,
    pub expected: Option<u64>,
    pub actual: Option<u64>,
}

impl VerifyReport {
    pub fn exit_code(&self) -> u8 {
        match &self.failure {
            None => super::EXIT_OK,
            Some(e) => e.exit_code(),
        }
    }
}

/// Restore a backup into `request.target_database`, creating it if missing. Nothing is
/// changed until the archive has been downloaded and matched its size and SHA-256, restored
/// into a fresh database, and every table's row count matched the manifest; only then does
/// the fresh database take the target's name (the old target, with `drop_existing`, is
/// dropped just before). On any failure the fresh database is dropped.
pub async fn restore(
    server: &PgServer,
    destination: &Destination,
    request: &RestoreRequest,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let target = request.target_database.as_str();
    pg::check_database_name(target)?;
    if ["template0", "template1", server.maintenance_database()].contains(&target) {
        return Err(BackupError::Usage(format!(
            "refusing to restore into {target:?}: it is a template or the maintenance database"
        )));
    }
    let manifest = resolve(destination, &request.backup).await?;
    check_pg_restore(server, &manifest).await?;

    let admin_db = server.maintenance_database();
    let admin_shown = server.shown(admin_db);
    let mut admin = server.connect(admin_db).await?;
    let existing_owner = pg::database_owner(&mut admin, &admin_shown, target).await?;
    if existing_owner.is_some() && !request.drop_existing {
        return Err(BackupError::Usage(format!(
            "database {target:?} exists on {admin_shown}; pass --drop-existing to replace it"
        )));
    }
    if existing_owner.is_some() && request.only_if_empty {
        let shown = server.shown(target);
        let mut conn = server.connect(target).await?;
        let tables = pg::row_counts(&mut conn, &shown).await?;
        let _ = conn.close().await;
        if !tables.is_empty() {
            return Err(BackupError::Usage(format!(
                "database {target:?} on {admin_shown} already holds {} tables: restoreFrom only                  seeds an empty database, and this one keeps its data (a BlockSight recreated                  over retained volumes?); remove spec.postgres.restoreFrom, or restore into it                  with a BlockSightRestore",
                tables.len()
            )));
        }
    }

    let work = work_folder(&request.work_dir)?;
    let archive = work.path().join("archive.dump");
    tracing::info!(backup = %manifest.name, "downloading");
    destination.download_verified(&manifest, &archive).await?;

    let staging = pg::scratch_name(target, "restore");
    let owner = existing_owner.clone().or_else(|| request.owner.clone());
    tracing::info!(backup = %manifest.name, database = %staging, "restoring");
    let restored = until_terminated(restore_into(
        server,
        &staging,
        owner.as_deref(),
        &manifest,
        &archive,
    ))
    .await
    .and_then(|check| check.into_result(&manifest.name));
    let tables = match restored {
        Ok(tables) => tables,
        Err(e) => {
            drop_scratch(server, &staging).await;
            return Err(e);
        }
    };

    // The swap: the target is gone for the instant between these two statements.
    let mut admin = match admin.ping().await {
        Ok(()) => admin,
        // Idle through a long restore: a server-side timeout may have closed it.
        Err(_) => server.connect(admin_db).await?,
    };
    if existing_owner.is_some() {
        pg::drop_database(&mut admin, &admin_shown, target).await?;
    }
    pg::rename_database(&mut admin, &admin_shown, &staging, target)
        .await
        .map_err(|e| {
            e.with_note(&format!(
                "the restored data is in database {staging:?}, rename it to {target:?}"
            ))
        })?;
    let _ = admin.close().await;
    tracing::info!(backup = %manifest.name, database = %target, "restored");
    Ok(RestoreReport {
        backup: manifest.name,
        database: target.to_owned(),
        replaced: existing_owner.is_some(),
        size_bytes: manifest.size_bytes,
        tables,
        duration_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The restore drill: restore the backup into a scratch database `<db>_verify_<random>`,
/// compare its tables' row counts with the manifest (the archive's checksum is checked on
/// download), and drop the scratch database whatever happens. Never fails: the report says
/// what went wrong, and [`VerifyReport::exit_code`] how badly.
pub async fn verify(
    server: &PgServer,
    destination: &Destination,
    backup: &BackupRef,
    work_dir: &Path,
) -> VerifyReport {
    let started = Instant::now();
    let mut report = VerifyReport {
        backup: match backup {
            BackupRef::Name(name) => name.clone(),
            BackupRef::Latest => String::new(),
        },
        ok: false,
        duration_seconds: 0.0,
        tables: 0,
        mismatches: Vec::new(),
        error: None,
        failure: None,
    };
    let outcome = drill(server, destination, backup, work_dir, &mut report).await;
    report.duration_seconds = started.elapsed().as_secs_f64();
    let failure = match outcome {
        Err(e) => Some(e),
        Ok(()) if !report.mismatches.is_empty() => Some(BackupError::Corrupt(format!(
            "{} of {} tables differ from the manifest",
            report.mismatches.len(),
            report.tables
        ))),
        Ok(()) => None,
    };
    report.ok = failure.is_none();
    report.error = failure.as_ref().map(ToString::to_string);
    report.failure = failure;
    report
}

async fn drill(
    server: &PgServer,
    destination: &Destination,
    backup: &BackupRef,
    work_dir: &Path,
    report: &mut VerifyReport,
) -> Result<()> {
    let manifest = resolve(destination, backup).await?;
    report.backup = manifest.name.clone();
    check_pg_restore(server, &manifest).await?;
    let work = work_folder(work_dir)?;
    let archive = work.path().join("archive.dump");
    tracing::info!(backup = %manifest.name, "downloading");
    destination.download_verified(&manifest, &archive).await?;

    let scratch = pg::scratch_name(&manifest.database, "verify");
    tracing::info!(backup = %manifest.name, database = %scratch, "restoring");
    let outcome = until_terminated(restore_into(server, &scratch, None, &manifest, &archive)).await;
    let dropped = drop_database(server, &scratch).await;
    let check = match (outcome, dropped) {
        (Ok(check), Ok(())) => check,
        (Err(e), Ok(())) | (Ok(_), Err(e)) => return Err(e),
        (Err(e), Err(drop_error)) => {
            return Err(e.with_note(&format!(
                "dropping the scratch database {scratch:?} failed too: {drop_error}"
            )));
        }
    };
    report.tables = check.tables;
    report.mismatches = check.mismatches;
    Ok(())
}

/// Row counts of a restored database against its manifest.
struct Check {
    tables: usize,
    mismatches: Vec<Mismatch>,
}

impl Check {
    /// The number of tables, or the mismatches as an error.
    fn into_result(self, backup: &str) -> Result<usize> {
        if self.mismatches.is_empty() {
            return Ok(self.tables);
        }
        let shown: Vec<String> = self
            .mismatches
            .iter()
            .take(5)
            .map(|m| {
                let count = |c: Option<u64>| c.map_or("missing".to_owned(), |c| c.to_string());
                format!(
                    "{}: {} rows, manifest {}",
                    m.table,
                    count(m.actual),
                    count(m.expected)
                )
            })
            .collect();
        Err(BackupError::Corrupt(format!(
            "backup {backup:?} restored with {} of {} tables differing from its manifest ({})",
            self.mismatches.len(),
            self.tables,
            shown.join("; ")
        )))
    }
}

/// Create `database`, pg_restore the archive into it in one transaction, and compare its
/// row counts with the manifest. Leaves the database behind either way: the caller drops
/// or renames it.
async fn restore_into(
    server: &PgServer,
    database: &str,
    owner: Option<&str>,
    manifest: &Manifest,
    archive: &Path,
) -> Result<Check> {
    let admin_db = server.maintenance_database();
    let mut admin = server.connect(admin_db).await?;
    pg::create_database(
        &mut admin,
        &server.shown(admin_db),
        database,
        owner,
        &manifest.encoding,
    )
    .await?;
    let _ = admin.close().await;

    let mut command = server.tool("pg_restore");
    command
        .arg("--no-password")
        // All or nothing, and stop at the first error instead of reporting it at the end.
        .arg("--exit-on-error")
        .arg("--single-transaction")
        .arg(format!("--dbname={}", pg::conninfo(database)))
        .arg(archive);
    server
        .run_tool(
            command,
            "pg_restore",
            &format!("of backup {:?} into {database:?}", manifest.name),
        )
        .await?;

    let shown = server.shown(database);
    let mut conn = server.connect(database).await?;
    let actual = pg::row_counts(&mut conn, &shown).await?;
    let _ = conn.close().await;
    let names: BTreeSet<&String> = manifest.tables.keys().chain(actual.keys()).collect();
    let mismatches = names
        .into_iter()
        .filter_map(|table| {
            let expected = manifest.tables.get(table).copied();
            let actual = actual.get(table).copied();
            (expected != actual).then(|| Mismatch {
                table: table.clone(),
                expected,
                actual,
            })
        })
        .collect();
    Ok(Check {
        tables: manifest.tables.len(),
        mismatches,
    })
}

async fn resolve(destination: &Destination, backup: &BackupRef) -> Result<Manifest> {
    match backup {
        BackupRef::Name(name) => destination.read_manifest(name).await,
        BackupRef::Latest => {
            let inventory = destination.inventory().await?;
            match inventory.backups.into_iter().next() {
                Some(newest) => Ok(newest.manifest),
                None => Err(BackupError::Usage(format!(
                    "no backup at {}",
                    destination.url()
                ))),
            }
        }
    }
}

/// pg_restore reads archives of its own and older pg_dump versions only.
async fn check_pg_restore(server: &PgServer, manifest: &Manifest) -> Result<()> {
    let tool = server.tool_version("pg_restore").await?;
    let dumped_by = pg::parse_tool_version(&format!("(PostgreSQL) {}", manifest.pg_dump_version))
        .map(|v| v.major)
        .unwrap_or_else(|| pg::major_of_version_num(manifest.server_version_num));
    if pg::major_key(&tool.major) < pg::major_key(&dumped_by) {
        return Err(BackupError::Usage(format!(
            "pg_restore {} cannot read backup {:?}, written by pg_dump {}: run the restore \
             with a client of PostgreSQL {dumped_by} or newer",
            tool.full, manifest.name, manifest.pg_dump_version
        )));
    }
    Ok(())
}

fn work_folder(work_dir: &Path) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("blocksight-restore-")
        .tempdir_in(work_dir)
        .map_err(|e| super::error::local_io("creating a work folder in", work_dir, e))
}

/// Run `work` unless SIGTERM (Kubernetes stopping the Job) or SIGINT comes first; then the
/// caller still gets to clean up, and a dropped pg_restore is killed.
async fn until_terminated<T>(work: impl Future<Output = Result<T>>) -> Result<T> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|e| BackupError::Failed(format!("listening for SIGTERM: {e}")))?;
    tokio::select! {
        result = work => result,
        _ = terminate.recv() => Err(BackupError::Failed("interrupted by SIGTERM".into())),
        _ = tokio::signal::ctrl_c() => Err(BackupError::Failed("interrupted by SIGINT".into())),
    }
}

/// Drop a database over a fresh connection (the one in use may have been interrupted).
async fn drop_database(server: &PgServer, database: &str) -> Result<()> {
    let admin_db = server.maintenance_database();
    let mut admin = server.connect(admin_db).await?;
    pg::drop_database(&mut admin, &server.shown(admin_db), database).await?;
    let _ = admin.close().await;
    Ok(())
}

/// [`drop_database`] after a failure that is reported already; its own failure is logged.
async fn drop_scratch(server: &PgServer, database: &str) {
    if let Err(e) = drop_database(server, database).await {
        tracing::error!(database, error = %e, "could not drop the partial restore; drop it by hand");
    }
}
