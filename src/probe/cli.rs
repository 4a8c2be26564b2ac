//! `blocksight probe`: run one probe from a shell (or `kubectl exec`) and print its report as
//! JSON. Secrets are read from an environment variable or a file, never from a flag value,
//! so they stay out of `ps` and shell history.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{BitcoindTarget, ElectrsTarget, ProbeError};

/// Exit code of a probe that ran and failed (clap uses 2 for bad flags as well; both mean
/// "not healthy" to a script).
pub const EXIT_PROBE_FAILED: u8 = 2;

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Give up after this long, e.g. 500ms, 5s, 1m.
    #[arg(long, global = true, default_value = "5s", value_parser = parse_timeout)]
    pub timeout: Duration,
    #[command(subcommand)]
    pub target: ProbeTarget,
}

#[derive(Debug, Subcommand)]
pub enum ProbeTarget {
    /// bitcoind's chain, network, index and mempool state (JSON-RPC).
    Bitcoind {
        /// RPC endpoint, e.g. http://mynode-bitcoind:8332.
        #[arg(long)]
        url: String,
        #[arg(long, default_value = crate::desired::secrets::RPC_USER)]
        user: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// electrs' indexed height (Electrum protocol).
    Electrs {
        /// host:port of the Electrum RPC, e.g. mynode-electrs:50001.
        #[arg(long)]
        addr: String,
    },
    /// PostgreSQL's version and the database's size.
    Postgres {
        #[command(flatten)]
        url: UrlSource,
        /// Database to connect to (overrides the one in the URL).
        #[arg(long, default_value = "blocksight")]
        database: String,
    },
    /// Redis' liveness and memory use.
    Redis {
        #[command(flatten)]
        url: UrlSource,
    },
}

/// Where to read bitcoind's RPC password.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct PasswordSource {
    /// Environment variable holding the RPC password.
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
    /// File holding the RPC password (a trailing newline is ignored), e.g. a mounted Secret.
    #[arg(long, value_name = "PATH")]
    password_file: Option<PathBuf>,
}

/// Where to read a connection URL that embeds a password.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct UrlSource {
    /// Environment variable holding the URL, e.g. postgres://user:password@host:5432/db.
    #[arg(long, value_name = "VAR")]
    url_env: Option<String>,
    /// File holding the URL (a trailing newline is ignored).
    #[arg(long, value_name = "PATH")]
    url_file: Option<PathBuf>,
}

impl PasswordSource {
    fn read(&self) -> Result<String, ProbeError> {
        read_secret(self.password_env.as_deref(), self.password_file.as_ref())
    }
}

impl UrlSource {
    fn read(&self) -> Result<String, ProbeError> {
        read_secret(self.url_env.as_deref(), self.url_file.as_ref())
    }
}

fn read_secret(env: Option<&str>, file: Option<&PathBuf>) -> Result<String, ProbeError> {
    match (env, file) {
        (Some(var), _) => std::env::var(var)
            .map_err(|e| ProbeError::InvalidTarget(format!("environment variable {var}: {e}"))),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|e| ProbeError::InvalidTarget(format!("{}: {e}", path.display()))),
        // clap's group makes one of them required.
        (None, None) => Err(ProbeError::InvalidTarget("no secret source given".into())),
    }
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let span: jiff::SignedDuration = text
        .parse()
        .map_err(|e| format!("{e} (expected e.g. 500ms, 5s, 1m)"))?;
    match Duration::try_from(span) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err("must be positive".into()),
    }
}

/// Run the probe; print its report on stdout, or `error: <category>: <message>` on stderr.
/// Returns the exit code.
pub async fn run(args: ProbeArgs) -> u8 {
    match report(args).await {
        Ok(json) => {
            println!("{json}");
            0
        }
        Err(e) => {
            eprintln!("error: {}: {e}", e.category());
            EXIT_PROBE_FAILED
        }
    }
}

async fn report(args: ProbeArgs) -> Result<String, ProbeError> {
    let timeout = args.timeout;
    match args.target {
        ProbeTarget::Bitcoind {
            url,
            user,
            password,
        } => {
            let target = BitcoindTarget {
                url,
                user,
                password: password.read()?,
                timeout,
            };
            super::bitcoind(&target).await.map(|r| json(&r))
        }
        ProbeTarget::Electrs { addr } => super::electrs(&ElectrsTarget { addr, timeout })
            .await
            .map(|r| json(&r)),
        ProbeTarget::Postgres { url, database } => {
            super::postgres(&url.read()?, &database, timeout)
                .await
                .map(|r| json(&r))
        }
        ProbeTarget::Redis { url } => super::redis(&url.read()?, timeout).await.map(|r| json(&r)),
    }
}

fn json(report: &impl Serialize) -> String {
    serde_json::to_string_pretty(report).expect("reports serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_read_like_durations() {
        assert_eq!(parse_timeout("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("-1s").is_err());
        assert!(parse_timeout("soon").is_err());
    }
}
