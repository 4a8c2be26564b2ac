//! `blocksight run`: the controller, with its flags.

use std::net::SocketAddr;

use clap::Args;

use super::LogFormatArg;
use crate::desired::BuildSettings;
use crate::runtime::{self as run, RunConfig};
use crate::telemetry;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Watch only this namespace (needs only a Role there); default: all namespaces.
    #[arg(long)]
    namespace: Option<String>,
    /// Address of /metrics, /livez and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    #[arg(long, value_enum, default_value_t = LogFormatArg::Plain)]
    log_format: LogFormatArg,
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

/// Run the controller until it stops; a failure is logged and becomes the exit code.
pub async fn execute(args: RunArgs) -> anyhow::Result<u8> {
    let RunArgs {
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
    } = args;
    telemetry::init_logging(log_format.into());
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
