//! The `blocksight` command line.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use crate::desired::BuildSettings;
use crate::render::{RenderOptions, Rendering, crd_files, crd_yaml};
use crate::run::{self, RunConfig};

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

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Json,
    Plain,
}

/// `render --output`: [`crate::render::OutputFormat`] as a flag value.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
}

impl From<OutputFormat> for crate::render::OutputFormat {
    fn from(format: OutputFormat) -> Self {
        match format {
            OutputFormat::Yaml => Self::Yaml,
            OutputFormat::Json => Self::Json,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller.
    Run {
        /// Watch only this namespace (needs only a Role there); default: all namespaces.
        #[arg(long)]
        namespace: Option<String>,
        /// Address of /metrics, /livez and /readyz.
        #[arg(long, default_value = "0.0.0.0:8080")]
        metrics_addr: SocketAddr,
        #[arg(long, value_enum, default_value_t = LogFormat::Plain)]
        log_format: LogFormat,
        /// Elect a leader through a coordination.k8s.io/v1 Lease, so replicas can run safely.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        leader_election: bool,
        #[arg(long, default_value = "blocksight-operator")]
        lease_name: String,
        /// Namespace of the Lease: the operator's own.
        #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
        lease_namespace: String,
        /// This replica's name in the Lease.
        #[arg(long, env = "POD_NAME", default_value = "blocksight-operator")]
        identity: String,
        /// host:port where each BlockSight's Prometheus scrapes the operator's metrics.
        #[arg(
            long,
            env = "OPERATOR_METRICS_TARGET",
            default_value = "blocksight-operator-metrics.blocksight-system.svc:8080"
        )]
        operator_metrics_target: String,
        /// The operator's own image (the chart sets it): Prometheus and Grafana pods run it
        /// as an init container that writes this release's rules and dashboards, and backup
        /// pods install the `blocksight` binary from it.
        #[arg(long, env = "OPERATOR_IMAGE", default_value = crate::desired::DEFAULT_OPERATOR_IMAGE)]
        operator_image: String,
        /// How often each BlockSight's bitcoind, electrs, PostgreSQL and Redis are probed (jittered).
        #[arg(long, default_value = "30s", value_parser = parse_interval)]
        probe_interval: std::time::Duration,
        /// How often a converged BlockSight is looked at again (from the watch caches, so it
        /// costs no API request); benchmarks shorten it to simulate hours of steady state.
        #[arg(long, default_value = "5m", value_parser = parse_interval)]
        resync_interval: std::time::Duration,
        /// How long each step of a reconcile (applying the children, volume snapshots, the
        /// status write) may wait on the API server; then it fails with category `timeout`
        /// and is retried with backoff.
        #[arg(long, default_value = "60s", value_parser = parse_interval)]
        reconcile_timeout: std::time::Duration,
        /// Do not run the chain probes (benchmarks against a fake API server with no pods).
        #[arg(long, hide = true)]
        no_probes: bool,
    },
    /// Print every CRD of the project as multi-document YAML.
    Crd {
        /// Instead of printing, write one file per CRD into this folder (how crds/ is made).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print every object the controller would apply for the BlockSight(s) in a file.
    Render {
        /// File with BlockSight documents ("-" for standard input).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Yaml)]
        output: OutputFormat,
        /// Also print the credentials Secrets the controller creates on first reconcile,
        /// with freshly generated values (never commit them).
        #[arg(long)]
        with_secrets: bool,
        /// Render as for a cluster with the prometheus-operator CRDs installed
        /// (ServiceMonitors and PodMonitors under `prometheusOperator: auto`).
        #[arg(long)]
        prometheus_operator: bool,
        /// Also print an example of each Job the operator creates for BlockSightBackup and
        /// BlockSightRestore objects (backup, drill, restore, delete).
        #[arg(long)]
        backup_jobs: bool,
        /// The operator image the deployment runs (as the controller would use it).
        #[arg(long, env = "OPERATOR_IMAGE", default_value = crate::desired::DEFAULT_OPERATOR_IMAGE)]
        operator_image: String,
    },
    /// Write the monitoring assets of this release (Prometheus rules or Grafana dashboards)
    /// into a folder: what the init containers of each BlockSight's Prometheus and Grafana run.
    Assets {
        #[arg(value_enum)]
        set: crate::assets::AssetSet,
        #[arg(long)]
        dir: PathBuf,
    },
    /// Print the RBAC rules the controller needs (the Helm chart grants exactly these).
    Rbac,
    /// Ask bitcoind, electrs, PostgreSQL or Redis for its state; print it as JSON.
    Probe(crate::probe::cli::ProbeArgs),
    /// Back up, list, prune, restore and verify database backups (what the backup Jobs run).
    Backup(crate::backup_tool::cli::BackupArgs),
    /// Print the version.
    Version,
    /// Copy this binary to a path (the backup pods' init container installs it for the
    /// PostgreSQL image's container; the operator image has no shell or cp).
    #[command(hide = true)]
    CopySelf {
        #[arg(long)]
        to: PathBuf,
    },
}

/// A positive duration such as 30s or 2m.
fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let span: jiff::SignedDuration = text
        .parse()
        .map_err(|e| format!("{e} (expected e.g. 30s, 2m)"))?;
    match std::time::Duration::try_from(span) {
        Ok(duration) if duration >= std::time::Duration::from_secs(1) => Ok(duration),
        _ => Err("must be at least 1s".into()),
    }
}

/// Initialise logging: RUST_LOG filters (default info), JSON or plain lines on stderr.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,kube=warn,kube_lease_manager=warn")
    });
    // A log line that cannot be written (stderr piped into a reader that went away) is
    // dropped: tracing-subscriber would otherwise report it with eprintln!, which panics on
    // the same closed stderr, inside whichever task logged; the signal task that panicked
    // there never cancelled the shutdown, and Ctrl-C left the operator running.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Plain => builder.init(),
    }
}

/// Execute a parsed command line; returns the process exit code.
pub async fn execute(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Run {
            namespace,
            metrics_addr,
            log_format,
            leader_election,
            lease_name,
            lease_namespace,
            identity,
            operator_metrics_target,
            operator_image,
            probe_interval,
            resync_interval,
            reconcile_timeout,
            no_probes,
        } => {
            init_logging(log_format);
            let config = RunConfig {
                namespace,
                metrics_addr,
                leader_election,
                lease_name,
                lease_namespace,
                identity,
                // Whether the prometheus-operator CRDs exist is discovered at start.
                settings: BuildSettings {
                    operator_metrics_target,
                    prometheus_operator_crds: false,
                    operator_image,
                },
                probe_interval,
                resync_interval,
                reconcile_timeout,
                probes: !no_probes,
            };
            match run::run(config).await {
                Ok(()) => Ok(0),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "stopped");
                    eprintln!("error: {e:#}");
                    Ok(e.exit_code())
                }
            }
        }
        Command::Crd { dir: None } => {
            print!("{}", crd_yaml());
            Ok(0)
        }
        Command::Crd { dir: Some(dir) } => {
            for (file, yaml) in crd_files() {
                let path = dir.join(file);
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(0)
        }
        Command::Render {
            file,
            output,
            with_secrets,
            prometheus_operator,
            operator_image,
            backup_jobs,
        } => {
            let text = read_input(&file)?;
            let settings = BuildSettings {
                prometheus_operator_crds: prometheus_operator,
                operator_image,
                ..Default::default()
            };
            // Every document is checked before anything is printed: invalid input prints
            // nothing (a pipe into `kubectl apply` never gets half a file).
            let options = RenderOptions {
                output: output.into(),
                with_secrets,
                backup_jobs,
                threads: 0,
            };
            match Rendering::new(&text, options, &settings) {
                Ok(rendering) => {
                    let mut stdout = std::io::stdout().lock();
                    rendering
                        .write_to(&mut stdout)
                        .and_then(|()| std::io::Write::flush(&mut stdout))
                        .context("writing to standard output")?;
                    Ok(0)
                }
                Err(e) => {
                    eprintln!("error: {}: {e}", file.display());
                    Ok(1)
                }
            }
        }
        Command::Probe(args) => Ok(crate::probe::cli::run(args).await),
        Command::Backup(args) => Ok(crate::backup_tool::cli::run(args).await),
        Command::Rbac => {
            print!("{}", crate::rbac::to_yaml());
            Ok(0)
        }
        Command::Assets { set, dir } => {
            for path in set
                .write(&dir)
                .with_context(|| format!("writing {set:?} into {}", dir.display()))?
            {
                println!("{}", path.display());
            }
            Ok(0)
        }
        Command::Version => {
            println!("blocksight {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        Command::CopySelf { to } => {
            copy_self(&to)?;
            Ok(0)
        }
    }
}

/// Copy the running executable to `to`, executable by everyone (the backup container runs
/// as another user than the init container on some images).
pub fn copy_self(to: &std::path::Path) -> anyhow::Result<()> {
    let me = std::env::current_exe().context("locating the running executable")?;
    std::fs::copy(&me, to)
        .with_context(|| format!("copying {} to {}", me.display(), to.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", to.display()))?;
    }
    Ok(())
}

fn read_input(file: &PathBuf) -> anyhow::Result<String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        Ok(text)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_self_installs_an_executable_copy_of_the_running_binary() {
        let dir = tempfile::tempdir().unwrap();
        let to = dir.path().join("blocksight");
        super::copy_self(&to).unwrap();
        let me = std::env::current_exe().unwrap();
        assert_eq!(
            std::fs::metadata(&to).unwrap().len(),
            std::fs::metadata(&me).unwrap().len()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&to).unwrap().permissions().mode() & 0o777,
                0o755
            );
        }
        let missing = dir.path().join("no/such/dir/blocksight");
        assert!(super::copy_self(&missing).is_err());
    }
}
