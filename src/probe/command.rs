//! `blocksight probe`: run one probe from a shell (or `kubectl exec`) and print its report as
//! JSON. Secrets are read from an environment variable or a file, never from a flag value,
//! so they stay out of `ps` and shell history. The flags are parsed in `crate::cmd::probe`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::{BitcoindTarget, ElectrsTarget, ProbeError};

/// Exit code of a probe that ran and failed (clap uses 2 for bad flags as well; both mean
/// "not healthy" to a script).
pub const EXIT_PROBE_FAILED: u8 = 2;

/// One probe to run, as the command line gives it.
#[derive(Debug)]
pub struct ProbeRequest {
    /// Give up after this long.
    pub timeout: Duration,
    pub target: ProbeTarget,
}

#[derive(Debug)]
pub enum ProbeTarget {
    /// bitcoind's chain, network, index and mempool state (JSON-RPC).
    Bitcoind {
        /// RPC endpoint, e.g. http://mynode-bitcoind:8332.
        url: String,
        user: String,
        password: SecretSource,
    },
    /// electrs' indexed height (Electrum protocol), at host:port.
    Electrs { addr: String },
    /// PostgreSQL's version and the database's size.
    Postgres {
        url: SecretSource,
        /// Database to connect to (overrides the one in the URL).
        database: String,
    },
    /// Redis' liveness and memory use.
    Redis { url: SecretSource },
}

/// Where to read a secret (a password, or a URL that embeds one): an environment variable
/// or a file; the command line requires exactly one.
#[derive(Debug)]
pub struct SecretSource {
    /// Environment variable holding the secret.
    pub env: Option<String>,
    /// File holding the secret (a trailing newline is ignored).
    pub file: Option<PathBuf>,
}

impl SecretSource {
    fn read(&self) -> Result<String, ProbeError> {
        read_secret(self.env.as_deref(), self.file.as_ref())
    }
}

fn read_secret(env: Option<&str>, file: Option<&PathBuf>) -> Result<String, ProbeError> {
    match (env, file) {
        (Some(var), _) => std::env::var(var)
            .map_err(|e| ProbeError::InvalidTarget(format!("environment variable {var}: {e}"))),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|text| text.trim_end_matches(['\n', '\r']).to_owned())
            .map_err(|e| ProbeError::InvalidTarget(format!("{}: {e}", path.display()))),
        // The command line's clap group makes one of them required.
        (None, None) => Err(ProbeError::InvalidTarget("no secret source given".into())),
    }
}

/// Run the probe; print its report on stdout, or `error: <category>: <message>` on stderr.
/// Returns the exit code.
pub async fn run(request: ProbeRequest) -> u8 {
    match report(request).await {
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

async fn report(request: ProbeRequest) -> Result<String, ProbeError> {
    let timeout = request.timeout;
    match request.target {
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
