//! `blocksight backup ...`: the commands the backup, prune, restore and restore-drill Jobs
//! run. Results are JSON on stdout, progress goes to stderr. Secrets come from the
//! environment or files only: PGPASSWORD or `--pg-password-file`, and AWS_* variables
//! (secretKeyRef) or the pod's cloud identity for S3. The flags are parsed in
//! `crate::cmd::backup`.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::{Value, json};

use super::error::{BackupError, EXIT_OK, Result};
use super::{
    BackupRef, Destination, DestinationConfig, DumpRequest, PgServer, PgSettings, PrunePolicy,
    RestoreRequest, S3Settings,
};

/// Kubernetes keeps at most 4096 bytes of a container's termination message.
const RESULT_FILE_LIMIT: usize = 4096;

/// One run of the program, as the command line gives it.
#[derive(Debug)]
pub struct Invocation {
    /// Also write a compact JSON result (at most 4 KiB) to this file, e.g.
    /// /dev/termination-log, where the controller reads it from the Pod's status.
    pub result_file: Option<PathBuf>,
    pub command: BackupCommand,
}

#[derive(Debug)]
pub enum BackupCommand {
    /// Dump one database (pg_dump -Fc), upload the archive, then its manifest; print the
    /// manifest.
    Dump {
        request: DumpRequest,
        destination: DestinationOptions,
        postgres: PostgresOptions,
    },
    /// List the complete backups (those with a manifest), newest first.
    List { destination: DestinationOptions },
    /// Delete backups outside the retention policy, and orphans older than its grace period.
    Prune {
        policy: PrunePolicy,
        /// Print what would be deleted, delete nothing.
        dry_run: bool,
        destination: DestinationOptions,
    },
    /// Delete one backup (its manifest first, then its archive).
    Delete {
        name: String,
        destination: DestinationOptions,
    },
    /// Restore a backup into a database, after checking the archive against its manifest.
    Restore {
        request: RestoreRequest,
        destination: DestinationOptions,
        postgres: PostgresOptions,
    },
    /// Restore drill: restore a backup into a scratch database, compare it with the
    /// manifest, drop it.
    Verify {
        backup: BackupRef,
        destination: DestinationOptions,
        postgres: PostgresOptions,
        /// Where the archive is downloaded.
        work_dir: PathBuf,
    },
}

/// Where backups are: an S3 bucket or a local folder (the command line requires exactly
/// one), under `prefix`.
#[derive(Debug)]
pub struct DestinationOptions {
    pub s3: Option<S3Settings>,
    pub local_dir: Option<PathBuf>,
    /// Folder of the backups inside the bucket or the local folder.
    pub prefix: String,
}

/// How to reach PostgreSQL; the password is read from `password_file` when given, else from
/// PGPASSWORD, when the command needs the server.
#[derive(Debug)]
pub struct PostgresOptions {
    /// Server host, or the folder of its Unix socket.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password_file: Option<PathBuf>,
    /// Database to connect to for creating, renaming and dropping databases.
    pub maintenance_database: String,
}

impl DestinationOptions {
    fn open(&self) -> Result<Destination> {
        let config = match (&self.s3, &self.local_dir) {
            (Some(s3), _) => DestinationConfig::S3(s3.clone()),
            (None, Some(dir)) => DestinationConfig::Local(dir.clone()),
            // The command line's clap group makes one of them required.
            (None, None) => return Err(BackupError::Usage("no destination given".into())),
        };
        Destination::open(&config, &self.prefix)
    }
}

impl PostgresOptions {
    fn server(&self) -> Result<PgServer> {
        let password = match &self.password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
                    .map_err(|e| {
                        BackupError::Usage(format!("password file {}: {e}", path.display()))
                    })?,
            ),
            None => std::env::var("PGPASSWORD").ok(),
        };
        Ok(PgServer::new(PgSettings {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            password,
            maintenance_database: self.maintenance_database.clone(),
        }))
    }
}

/// What a command prints on stdout, and the compact form for `--result-file`.
struct Output {
    /// Pretty JSON, fields in their declared order.
    stdout: String,
    summary: Value,
    exit_code: u8,
}

impl Output {
    fn ok(stdout: &impl Serialize, summary: Value) -> Self {
        Self {
            stdout: serde_json::to_string_pretty(stdout).expect("results serialize"),
            summary,
            exit_code: EXIT_OK,
        }
    }
}

/// Run the command; print its result on stdout, or `error: <category>: <message>` on
/// stderr. Returns the exit code.
pub async fn run(invocation: Invocation) -> u8 {
    let (output, code) = match execute(invocation.command).await {
        Ok(output) => {
            println!("{}", output.stdout);
            (output.summary, output.exit_code)
        }
        Err(e) => {
            eprintln!("error: {}: {e}", e.category());
            let summary = json!({"error": shorten(&e.to_string(), 2048), "category": e.category()});
            (summary, e.exit_code())
        }
    };
    if let Some(path) = &invocation.result_file {
        let mut text = output.to_string();
        if text.len() > RESULT_FILE_LIMIT {
            text = json!({"error": "result too long for the result file", "exitCode": code})
                .to_string();
        }
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("warning: writing the result to {}: {e}", path.display());
        }
    }
    code
}

async fn execute(command: BackupCommand) -> Result<Output> {
    match command {
        BackupCommand::Dump {
            request,
            destination,
            postgres,
        } => {
            let destination = destination.open()?;
            let listed = super::dump(&postgres.server()?, &destination, &request).await?;
            let m = &listed.manifest;
            let summary = json!({
                "name": m.name, "time": m.time, "database": m.database,
                "sizeBytes": m.size_bytes, "sha256": m.sha256,
                "durationSeconds": m.duration_seconds, "location": listed.location,
            });
            Ok(Output::ok(&listed, summary))
        }
        BackupCommand::List { destination } => {
            let destination = destination.open()?;
            let inventory = destination.inventory().await?;
            for (name, reason) in &inventory.broken {
                tracing::warn!(backup = %name, reason = %reason, "unreadable manifest, not listed");
            }
            let summary = json!({
                "count": inventory.backups.len(),
                "newest": inventory.backups.first().map(|b| &b.manifest.name),
            });
            Ok(Output::ok(&inventory.backups, summary))
        }
        BackupCommand::Prune {
            policy,
            dry_run,
            destination,
        } => {
            let destination = destination.open()?;
            let report = super::prune(&destination, &policy, dry_run).await?;
            let summary = json!({
                "dryRun": report.dry_run,
                "deleted": report.deleted.len(),
                "kept": report.kept.len(),
                "orphansDeleted": report.orphans_deleted.len(),
                "broken": report.broken.len(),
            });
            Ok(Output::ok(&report, summary))
        }
        BackupCommand::Delete { name, destination } => {
            let destination = destination.open()?;
            let report = super::delete_backup(&destination, &name).await?;
            let summary = serde_json::to_value(&report).expect("reports serialize");
            Ok(Output::ok(&report, summary))
        }
        BackupCommand::Restore {
            request,
            destination,
            postgres,
        } => {
            let destination = destination.open()?;
            let report = super::restore(&postgres.server()?, &destination, &request).await?;
            let summary = serde_json::to_value(&report).expect("reports serialize");
            Ok(Output::ok(&report, summary))
        }
        BackupCommand::Verify {
            backup,
            destination,
            postgres,
            work_dir,
        } => {
            let destination = destination.open()?;
            let report = super::verify(&postgres.server()?, &destination, &backup, &work_dir).await;
            if let Some(e) = &report.failure {
                eprintln!("error: {}: {e}", e.category());
            }
            let summary = json!({
                "backup": report.backup, "ok": report.ok,
                "durationSeconds": report.duration_seconds, "tables": report.tables,
                "mismatches": report.mismatches.len(),
                "error": report.error.as_deref().map(|e| shorten(e, 2048)),
            });
            Ok(Output {
                stdout: serde_json::to_string_pretty(&report).expect("reports serialize"),
                summary,
                exit_code: report.exit_code(),
            })
        }
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorten_cuts_at_characters() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("ééé", 3), "é…");
    }
}
