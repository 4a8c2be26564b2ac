//! electrs over the Electrum protocol.

use std::time::Duration;

use electrum_client::ElectrumApi;
use electrum_client::raw_client::RawClient;
use serde::{Deserialize, Serialize};

use super::error::{ProbeError, from_io};

/// Where electrs serves the Electrum protocol.
#[derive(Clone, Debug)]
pub struct ElectrsTarget {
    /// `host:port` of the Electrum RPC (plain TCP).
    pub addr: String,
    pub timeout: Duration,
}

/// How far electrs has indexed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ElectrsReport {
    /// Height of the tip electrs has indexed and serves.
    pub indexed_height: u64,
}

/// Ask electrs for its indexed tip with `blockchain.headers.subscribe` (after the
/// `server.version` handshake).
///
/// Why the Electrum protocol rather than a TCP check or electrs' Prometheus metrics: it is
/// the standard interface every Electrum server implements and what the API itself uses; an
/// open port says nothing about how far the index is; and the metric names differ between
/// electrs versions and forks. Note that electrs only opens this port after its initial
/// index, so "unreachable" is expected while it first catches up.
pub async fn electrs(target: &ElectrsTarget) -> Result<ElectrsReport, ProbeError> {
    let target = target.clone();
    super::run_blocking(target.timeout, move |_deadline| {
        // One connection, two requests, each read bounded by the socket timeout.
        let client = RawClient::new(target.addr.as_str(), Some(target.timeout), None)
            .map_err(|e| electrum_error(e, &target.addr))?;
        let tip = client
            .block_headers_subscribe_raw()
            .map_err(|e| electrum_error(e, &target.addr))?;
        Ok(ElectrsReport {
            indexed_height: tip.height as u64,
        })
    })
    .await
}

/// Blocks electrs still has to index to reach bitcoind's tip (0 when it is at or, briefly
/// during a reorg or a bitcoind restart, above it).
pub fn electrs_lag(bitcoind_blocks: u64, indexed: u64) -> u64 {
    bitcoind_blocks.saturating_sub(indexed)
}

fn electrum_error(error: electrum_client::Error, addr: &str) -> ProbeError {
    use electrum_client::Error;
    match error {
        Error::IOError(io) => from_io(&io, addr),
        Error::SharedIOError(io) => from_io(&io, addr),
        // Connecting tries each resolved address; the last failure is the telling one.
        Error::AllAttemptsErrored(mut errors) => match errors.pop() {
            Some(last) => electrum_error(last, addr),
            None => ProbeError::Unreachable(format!("{addr}: the name resolves to no address")),
        },
        Error::Protocol(value) => ProbeError::Server {
            code: value
                .get("code")
                .map(ToString::to_string)
                .unwrap_or_else(|| "unknown".to_owned()),
            message: value
                .get("message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string()),
        },
        other => ProbeError::Protocol(format!("{addr}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_never_underflows() {
        assert_eq!(electrs_lag(850_010, 850_000), 10);
        assert_eq!(electrs_lag(850_000, 850_000), 0);
        assert_eq!(electrs_lag(849_999, 850_000), 0);
    }
}
