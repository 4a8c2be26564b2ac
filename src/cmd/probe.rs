//! `blocksight probe`: the flags of a one-off probe; what runs is `crate::probe::command`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::probe::command::{self, ProbeRequest, SecretSource};

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

impl From<PasswordSource> for SecretSource {
    fn from(source: PasswordSource) -> Self {
        Self {
            env: source.password_env,
            file: source.password_file,
        }
    }
}

impl From<UrlSource> for SecretSource {
    fn from(source: UrlSource) -> Self {
        Self {
            env: source.url_env,
            file: source.url_file,
        }
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

/// Run the probe; its report or error is printed, a failed probe exits 2.
pub async fn execute(args: ProbeArgs) -> anyhow::Result<u8> {
    let target = match args.target {
        ProbeTarget::Bitcoind {
            url,
            user,
            password,
        } => command::ProbeTarget::Bitcoind {
            url,
            user,
            password: password.into(),
        },
        ProbeTarget::Electrs { addr } => command::ProbeTarget::Electrs { addr },
        ProbeTarget::Postgres { url, database } => command::ProbeTarget::Postgres {
            url: url.into(),
            database,
        },
        ProbeTarget::Redis { url } => command::ProbeTarget::Redis { url: url.into() },
    };
    let request = ProbeRequest {
        timeout: args.timeout,
        target,
    };
    Ok(command::run(request).await)
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
