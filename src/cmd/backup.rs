//! `blocksight backup ...`: the flags of the backup Jobs' program; what runs is
//! `crate::backup_tool::command`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::LogFormatArg;
use crate::backup_tool::command::{self, DestinationOptions, Invocation, PostgresOptions};
use crate::backup_tool::{BackupRef, DumpRequest, PrunePolicy, RestoreRequest, S3Settings};
use crate::telemetry;

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[arg(long, global = true, value_enum, default_value_t = LogFormatArg::Plain)]
    pub log_format: LogFormatArg,
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

impl From<DestinationArgs> for DestinationOptions {
    fn from(args: DestinationArgs) -> Self {
        Self {
            s3: args.kind.s3_bucket.map(|bucket| S3Settings {
                bucket,
                region: args.s3_region,
                endpoint: args.s3_endpoint,
                force_path_style: args.s3_force_path_style,
            }),
            local_dir: args.kind.local_dir,
            prefix: args.prefix,
        }
    }
}

impl From<PostgresArgs> for PostgresOptions {
    fn from(args: PostgresArgs) -> Self {
        Self {
            host: args.host,
            port: args.port,
            user: args.user,
            password_file: args.password_file,
            maintenance_database: args.maintenance_database,
        }
    }
}

impl WorkArgs {
    fn dir(&self) -> PathBuf {
        self.work_dir.clone().unwrap_or_else(std::env::temp_dir)
    }
}

/// Set up logging, run the command; its result is printed (and written to `--result-file`).
pub async fn execute(args: BackupArgs) -> anyhow::Result<u8> {
    telemetry::init_logging(args.log_format.into());
    let to_run = match args.command {
        BackupCommand::Dump {
            database,
            name,
            destination,
            postgres,
            work,
        } => command::BackupCommand::Dump {
            request: DumpRequest {
                database,
                name,
                work_dir: work.dir(),
            },
            destination: destination.into(),
            postgres: postgres.into(),
        },
        BackupCommand::List { destination } => command::BackupCommand::List {
            destination: destination.into(),
        },
        BackupCommand::Prune {
            retention,
            keep_last,
            orphan_grace,
            dry_run,
            destination,
        } => command::BackupCommand::Prune {
            policy: PrunePolicy {
                retention,
                keep_last: keep_last.map(|n| n as usize),
                orphan_grace,
            },
            dry_run,
            destination: destination.into(),
        },
        BackupCommand::Delete { name, destination } => command::BackupCommand::Delete {
            name,
            destination: destination.into(),
        },
        BackupCommand::Restore {
            backup,
            target_database,
            drop_existing,
            only_if_empty,
            owner,
            destination,
            postgres,
            work,
        } => command::BackupCommand::Restore {
            request: RestoreRequest {
                backup: backup.to_ref(),
                target_database,
                drop_existing,
                only_if_empty,
                owner,
                work_dir: work.dir(),
            },
            destination: destination.into(),
            postgres: postgres.into(),
        },
        BackupCommand::Verify {
            backup,
            destination,
            postgres,
            work,
        } => command::BackupCommand::Verify {
            backup: backup.to_ref(),
            destination: destination.into(),
            postgres: postgres.into(),
            work_dir: work.dir(),
        },
    };
    let invocation = Invocation {
        result_file: args.result_file,
        command: to_run,
    };
    Ok(command::run(invocation).await)
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
}
