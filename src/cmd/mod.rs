//! The `blocksight` command line: the clap definitions of every subcommand (one module each)
//! and [`execute`], which hands the parsed command to its module.

pub mod assets;
pub mod backup;
pub mod copy_self;
pub mod crd;
pub mod probe;
pub mod render;
pub mod run;

use clap::{Parser, Subcommand, ValueEnum};

use crate::telemetry;

#[derive(Debug, Parser)]
#[command(
    name = "blocksight",
    version,
    about = "BlockSight Operator: the BlockSight.live backend on Kubernetes"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller.
    Run(run::RunArgs),
    /// Print every CRD of the project as multi-document YAML.
    Crd(crd::CrdArgs),
    /// Print every object the controller would apply for the BlockSight(s) in a file.
    Render(render::RenderArgs),
    /// Write the monitoring assets of this release (Prometheus rules or Grafana dashboards)
    /// into a folder: what the init containers of each BlockSight's Prometheus and Grafana run.
    Assets(assets::AssetsArgs),
    /// Print the RBAC rules the controller needs (the Helm chart grants exactly these).
    Rbac,
    /// Ask bitcoind, electrs, PostgreSQL or Redis for its state; print it as JSON.
    Probe(probe::ProbeArgs),
    /// Back up, list, prune, restore and verify database backups (what the backup Jobs run).
    Backup(backup::BackupArgs),
    /// Print the version.
    Version,
    /// Copy this binary to a path (the backup pods' init container installs it for the
    /// PostgreSQL image's container; the operator image has no shell or cp).
    #[command(hide = true)]
    CopySelf(copy_self::CopySelfArgs),
}

// `--log-format` of `run` and `backup`: telemetry::LogFormat as a flag value.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormatArg {
    Json,
    Plain,
}

impl From<LogFormatArg> for telemetry::LogFormat {
    fn from(format: LogFormatArg) -> Self {
        match format {
            LogFormatArg::Json => Self::Json,
            LogFormatArg::Plain => Self::Plain,
        }
    }
}

/// Execute a parsed command line; returns the process exit code.
pub async fn execute(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Run(args) => run::execute(args).await,
        Command::Crd(args) => crd::execute(args),
        Command::Render(args) => render::execute(args),
        Command::Probe(args) => probe::execute(args).await,
        Command::Backup(args) => backup::execute(args).await,
        Command::Rbac => {
            print!("{}", crate::rbac::to_yaml());
            Ok(0)
        }
        Command::Assets(args) => assets::execute(args),
        Command::Version => {
            println!("blocksight {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        Command::CopySelf(args) => copy_self::execute(args),
    }
}
