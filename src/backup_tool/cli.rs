//! `blocksight backup ...`: the commands the backup, prune, restore and restore-drill Jobs
//! run. Results are JSON on stdout, progress goes to stderr. Secrets come from the
//! environment or files only: PGPASSWORD or `--pg-password-file`, and AWS_* variables
//! (secretKeyRef) or the pod's cloud identity for S3.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::{Value, json};

use super::error::{BackupError, EXIT_OK, Result};
use super::{
    BackupRef, Destination, DestinationConfig, DumpRequest, PgServer, PgSettings, PrunePolicy,
    RestoreRequest, S3Settings,
};
use crate::telemetry::LogFormat;

/// Kubernetes keeps at most 4096 bytes of a container's termination message.
const RESULT_FILE_LIMIT: usize = 4096;

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
    /// Also write a compact JSON result (at most 4 KiB) to this file, e.g.
    /// /dev/termination-log, where the controller reads it from the Pod's status.
    #[arg(long, global = true, value_name = "PATH")]
    pub result_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: BackupCommand,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Dump one database (pg_dump -Fc), upload the archive, then its manifest; print the
    /// manifest.
    Dump {
        /// The database to back up.
        #[arg(long)]
        database: String,
        /// The backup's name (default `<database>-<UTC time>`); never overwritten.
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        destination: DestinationArgs,
        #[command(flatten)]
        postgres: PostgresArgs,
        #[command(flatten)]
        work: WorkArgs,
    },
    /// List the complete backups (those with a manifest), newest first.
    List {
        #[command(flatten)]
        destination: DestinationArgs,
    },
    /// Delete backups outside the retention policy (a backup is kept when any rule keeps
    /// it; the newest is always kept), and orphans older than the grace period.
    Prune {
        /// Keep backups younger than this, e.g. 30d, 720h.
        #[arg(long, value_parser = crate::retention::parse_age)]
        retention: Option<std::time::Duration>,
        /// Keep the N newest backups.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        keep_last: Option<u32>,
        /// Archives without a manifest younger than this may be uploads in progress.
        #[arg(long, default_value = "1h", value_parser = crate::retention::parse_age)]
        orphan_grace: std::time::Duration,
        /// Print what would be deleted, delete nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        destination: DestinationArgs,
    },
    /// Delete one backup (its manifest first, then its archive). Deleting a backup that is
    /// not there succeeds (reported with existed: false), so a retried Job is harmless.
    Delete {
        /// The backup's name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        destination: DestinationArgs,
    },
    /// Restore a backup into a database (created if missing), after checking the archive
    /// against its manifest; the target is replaced only once the restore succeeded.
    Restore {
        #[command(flatten)]
        backup: BackupSelector,
        #[arg(long)]
        target_database: String,
        /// Replace the target database when it exists.
        #[arg(long)]
        drop_existing: bool,
        /// With --drop-existing: replace it only when it holds no table (else exit 2).
        #[arg(long, requires = "drop_existing")]
        only_if_empty: bool,
        /// Owner of a target created by the restore (an existing one keeps its owner).
        #[arg(long)]
        owner: Option<String>,
        #[command(flatten)]
        destination: DestinationArgs,
        #[command(flatten)]
        postgres: PostgresArgs,
        #[command(flatten)]
        work: WorkArgs,
    },
    /// Restore drill: restore a backup into a scratch database, compare it with the
    /// manifest, drop it; print the result. Exits 1 when the backup does not verify.
    Verify {
        #[command(flatten)]
        backup: BackupSelector,
        #[command(flatten)]
        destination: DestinationArgs,
        #[command(flatten)]
        postgres: PostgresArgs,
        #[command(flatten)]
        work: WorkArgs,
    },
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct BackupSelector {
    /// The backup's name.
    #[arg(long)]
    backup: Option<String>,
    /// The newest backup at the destination.
    #[arg(long)]
    latest: bool,
}

/// Where backups are: `--s3-bucket` or `--local-dir`, under `--prefix`.
#[derive(Debug, Args)]
pub struct DestinationArgs {
    #[command(flatten)]
    kind: DestinationKind,
    /// Region of the bucket (default AWS_REGION, then us-east-1).
    #[arg(long, conflicts_with = "local_dir")]
    s3_region: Option<String>,
    /// S3-compatible endpoint, e.g. https://minio.storage:9000 (default AWS).
    #[arg(long, conflicts_with = "local_dir")]
    s3_endpoint: Option<String>,
    /// Path-style requests (endpoint/bucket/key), which most S3-compatible services need.
    #[arg(long, conflicts_with = "local_dir")]
    s3_force_path_style: bool,
    /// Folder of the backups inside the bucket or the local folder.
    #[arg(long, default_value = "blocksight/")]
    prefix: String,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct DestinationKind {
    /// S3 bucket. Credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, else the pod's
    /// identity (IRSA web identity, EKS Pod Identity, instance metadata).
    #[arg(long)]
    s3_bucket: Option<String>,
    /// Local folder, e.g. a mounted volume.
    #[arg(long)]
    local_dir: Option<PathBuf>,
}

/// How to reach PostgreSQL; the flags default to libpq's PG* variables.
#[derive(Debug, Args)]
pub struct PostgresArgs {
    /// Server host, or the folder of its Unix socket.
    #[arg(long = "pg-host", env = "PGHOST", default_value = "localhost")]
    host: String,
    #[arg(long = "pg-port", env = "PGPORT", default_value_t = 5432)]
    port: u16,
    #[arg(long = "pg-user", env = "PGUSER", default_value = "postgres")]
    user: String,
    /// File holding the password (e.g. a mounted Secret); default PGPASSWORD, then
    /// ~/.pgpass.
    #[arg(long = "pg-password-file", value_name = "PATH")]
    password_file: Option<PathBuf>,
    /// Database to connect to for creating, renaming and dropping databases.
    #[arg(long, default_value = "postgres")]
    maintenance_database: String,
}

#[derive(Debug, Args)]
pub struct WorkArgs {
    /// Where archives are written and downloaded (room for one archive); default TMPDIR.
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
}

impl BackupSelector {
    fn to_ref(&self) -> BackupRef {
        match &self.backup {
            Some(name) => BackupRef::Name(name.clone()),
            None => BackupRef::Latest,
        }
    }
}

impl DestinationArgs {
    fn open(&self) -> Result<Destination> {
        let config = match (&self.kind.s3_bucket, &self.kind.local_dir) {
            (Some(bucket), _) => DestinationConfig::S3(S3Settings {
                bucket: bucket.clone(),
                region: self.s3_region.clone(),
                endpoint: self.s3_endpoint.clone(),
                force_path_style: self.s3_force_path_style,
            }),
            (None, Some(dir)) => DestinationConfig::Local(dir.clone()),
            // clap's group makes one of them required.
            (None, None) => return Err(BackupError::Usage("no destination given".into())),
        };
        Destination::open(&config, &self.prefix)
    }
}

impl PostgresArgs {
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

impl WorkArgs {
    fn dir(&self) -> PathBuf {
        self.work_dir.clone().unwrap_or_else(std::env::temp_dir)
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
pub async fn run(args: BackupArgs) -> u8 {
    crate::telemetry::init_logging(args.log_format);
    let (output, code) = match execute(args.command).await {
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
    if let Some(path) = &args.result_file {
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
            database,
            name,
            destination,
            postgres,
            work,
        } => {
            let destination = destination.open()?;
            let request = DumpRequest {
                database,
                name,
                work_dir: work.dir(),
            };
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
            retention,
            keep_last,
            orphan_grace,
            dry_run,
            destination,
        } => {
            let destination = destination.open()?;
            let policy = PrunePolicy {
                retention,
                keep_last: keep_last.map(|n| n as usize),
                orphan_grace,
            };
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
            backup,
            target_database,
            drop_existing,
            only_if_empty,
            owner,
            destination,
            postgres,
            work,
        } => {
            let destination = destination.open()?;
            let request = RestoreRequest {
                backup: backup.to_ref(),
                target_database,
                drop_existing,
                only_if_empty,
                owner,
                work_dir: work.dir(),
            };
            let report = super::restore(&postgres.server()?, &destination, &request).await?;
            let summary = serde_json::to_value(&report).expect("reports serialize");
            Ok(Output::ok(&report, summary))
        }
        BackupCommand::Verify {
            backup,
            destination,
            postgres,
            work,
        } => {
            let destination = destination.open()?;
            let report = super::verify(
                &postgres.server()?,
                &destination,
                &backup.to_ref(),
                &work.dir(),
            )
            .await;
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
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: BackupArgs,
    }

    fn parse(line: &[&str]) -> std::result::Result<BackupArgs, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("backup").chain(line.iter().copied()))
            .map(|w| w.args)
    }

    #[test]
    fn exactly_one_destination() {
        assert!(parse(&["list", "--local-dir", "/b"]).is_ok());
        assert!(parse(&["list", "--s3-bucket", "b", "--s3-force-path-style"]).is_ok());
        assert!(parse(&["list"]).is_err());
        assert!(parse(&["list", "--local-dir", "/b", "--s3-bucket", "b"]).is_err());
        // S3 settings without a bucket are a mistake, not something to ignore.
        assert!(parse(&["list", "--local-dir", "/b", "--s3-endpoint", "http://x"]).is_err());
    }

    #[test]
    fn restore_and_verify_take_a_name_or_latest() {
        let base = ["verify", "--local-dir", "/b"];
        assert!(parse(&[&base[..], &["--backup", "x"]].concat()).is_ok());
        assert!(parse(&[&base[..], &["--latest"]].concat()).is_ok());
        assert!(parse(&base).is_err());
        assert!(parse(&[&base[..], &["--latest", "--backup", "x"]].concat()).is_err());
    }

    #[test]
    fn prune_flags_are_checked() {
        let prune = |extra: &[&str]| parse(&[&["prune", "--local-dir", "/b"][..], extra].concat());
        assert!(prune(&["--retention", "30d", "--keep-last", "7"]).is_ok());
        assert!(prune(&["--retention", "a month"]).is_err());
        assert!(prune(&["--keep-last", "0"]).is_err());
        let Ok(BackupArgs {
            command: BackupCommand::Prune { orphan_grace, .. },
            ..
        }) = prune(&["--keep-last", "1"])
        else {
            panic!("prune parses");
        };
        assert_eq!(orphan_grace, std::time::Duration::from_secs(3600));
    }

    #[test]
    fn shorten_cuts_at_characters() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("ééé", 3), "é…");
    }
}
