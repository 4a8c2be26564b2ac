//! bitcoind over JSON-RPC: chain, network, index and mempool state.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use bitcoincore_rpc::RpcApi;
use bitcoincore_rpc::jsonrpc::{self, simple_http};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::{ProbeError, from_io, redact_urls};
use crate::crd::ChainStatus;

/// Where bitcoind's RPC listens and how to log in.
#[derive(Clone)]
pub struct BitcoindTarget {
    /// `http://host:port` (bitcoind speaks plain HTTP only).
    pub url: String,
    pub user: String,
    pub password: String,
    pub timeout: Duration,
}

impl fmt::Debug for BitcoindTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BitcoindTarget")
            .field("url", &redact_urls(&self.url))
            .field("user", &self.user)
            .field("password", &"***")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What bitcoind says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BitcoindReport {
    /// Height of the most-work fully validated chain.
    pub blocks: u64,
    /// Height of the best known header chain.
    pub headers: u64,
    /// Estimated verification progress, 0 to 1.
    pub verification_progress: f64,
    pub initial_block_download: bool,
    /// Block and undo files on disk.
    pub size_on_disk_bytes: u64,
    pub pruned: bool,
    /// Block time of the tip (Unix seconds; the median time past on bitcoind before 28).
    pub tip_time: i64,
    /// The user agent, e.g. `/Satoshi:28.1.0/`.
    pub version: String,
    /// Connected peers.
    pub peers: u32,
    /// Whether the transaction index has caught up; `None` when txindex is off.
    pub txindex_synced: Option<bool>,
    pub mempool_transactions: u64,
}

impl BitcoindReport {
    /// The part of the report that goes into `status.chain`.
    pub fn chain_status(&self) -> ChainStatus {
        ChainStatus {
            blocks: self.blocks,
            headers: self.headers,
            verification_progress: self.verification_progress,
            initial_block_download: self.initial_block_download,
            peers: self.peers,
            size_on_disk_bytes: self.size_on_disk_bytes,
            version: Some(self.version.clone()),
            txindex_synced: self.txindex_synced,
        }
    }
}

// Only the fields we use, parsed from the raw JSON: the typed results of bitcoincore-rpc
// 0.19 reject Bitcoin Core 28's answers (`warnings` became an array).
#[derive(Deserialize)]
struct BlockchainInfo {
    blocks: u64,
    headers: u64,
    verificationprogress: f64,
    initialblockdownload: bool,
    size_on_disk: u64,
    pruned: bool,
    /// Added in Bitcoin Core 28.
    time: Option<i64>,
    mediantime: i64,
}

#[derive(Deserialize)]
struct NetworkInfo {
    subversion: String,
    connections: u32,
}

#[derive(Deserialize)]
struct IndexInfo {
    synced: bool,
}

#[derive(Deserialize)]
struct MempoolInfo {
    size: u64,
}

/// JSON-RPC "method not found".
const METHOD_NOT_FOUND: i32 = -32601;

/// Ask bitcoind for its chain, network, index and mempool state (`getblockchaininfo`,
/// `getnetworkinfo`, `getindexinfo`, `getmempoolinfo`).
pub async fn bitcoind(target: &BitcoindTarget) -> Result<BitcoindReport, ProbeError> {
    let secrets = vec![target.password.clone()];
    let owned = target.clone();
    super::run_blocking(target.timeout, move |deadline| query(&owned, deadline))
        .await
        .map_err(|e| e.redacted(&secrets))
}

fn query(target: &BitcoindTarget, deadline: Instant) -> Result<BitcoindReport, ProbeError> {
    let shown_url = redact_urls(&target.url);
    if !target.url.starts_with("http://") {
        return Err(ProbeError::InvalidTarget(format!(
            "bitcoind URL {shown_url}: must start with http:// (bitcoind serves RPC over plain HTTP)"
        )));
    }
    // Resolves the host name, so a DNS failure shows up here.
    let transport = simple_http::Builder::new()
        .url(&target.url)
        .map_err(|e| transport_error(e, &shown_url))?
        .timeout(target.timeout)
        .auth(target.user.as_str(), Some(target.password.as_str()))
        .build();
    let client = bitcoincore_rpc::Client::from_jsonrpc(jsonrpc::Client::with_transport(transport));
    let rpc = Rpc {
        client: &client,
        url: &shown_url,
        deadline,
    };

    let chain: BlockchainInfo = rpc.call("getblockchaininfo")?;
    let network: NetworkInfo = rpc.call("getnetworkinfo")?;
    let txindex_synced = match rpc.call::<HashMap<String, IndexInfo>>("getindexinfo") {
        Ok(indexes) => indexes.get("txindex").map(|index| index.synced),
        // bitcoind before 0.21 has no getindexinfo.
        Err(ProbeError::Server { code, .. }) if code == METHOD_NOT_FOUND.to_string() => None,
        Err(e) => return Err(e),
    };
    let mempool: MempoolInfo = rpc.call("getmempoolinfo")?;

    Ok(BitcoindReport {
        blocks: chain.blocks,
        headers: chain.headers,
        verification_progress: chain.verificationprogress,
        initial_block_download: chain.initialblockdownload,
        size_on_disk_bytes: chain.size_on_disk,
        pruned: chain.pruned,
        tip_time: chain.time.unwrap_or(chain.mediantime),
        version: network.subversion,
        peers: network.connections,
        txindex_synced,
        mempool_transactions: mempool.size,
    })
}

struct Rpc<'a> {
    client: &'a bitcoincore_rpc::Client,
    url: &'a str,
    deadline: Instant,
}

impl Rpc<'_> {
    fn call<T: DeserializeOwned>(&self, method: &str) -> Result<T, ProbeError> {
        // The caller has stopped waiting: do not keep a blocking thread busy for nothing.
        if Instant::now() >= self.deadline {
            return Err(ProbeError::Timeout);
        }
        let value: serde_json::Value = self.client.call(method, &[]).map_err(|e| match e {
            bitcoincore_rpc::Error::JsonRpc(e) => jsonrpc_error(e, self.url),
            other => ProbeError::Protocol(format!("{method}: {other}")),
        })?;
        serde_json::from_value(value).map_err(|e| {
            ProbeError::Protocol(format!(
                "{method}: unexpected answer from {}: {e}",
                self.url
            ))
        })
    }
}

fn jsonrpc_error(error: jsonrpc::Error, url: &str) -> ProbeError {
    match error {
        jsonrpc::Error::Rpc(rpc) => ProbeError::Server {
            code: rpc.code.to_string(),
            message: rpc.message,
        },
        jsonrpc::Error::Transport(boxed) => match boxed.downcast::<simple_http::Error>() {
            Ok(http) => transport_error(*http, url),
            Err(other) => ProbeError::Unreachable(format!("{url}: {other}")),
        },
        other => ProbeError::Protocol(format!("{url}: {other}")),
    }
}

fn transport_error(error: simple_http::Error, url: &str) -> ProbeError {
    match error {
        simple_http::Error::SocketError(io) => from_io(&io, url),
        simple_http::Error::HttpErrorCode(401) => ProbeError::Auth(format!(
            "{url}: bitcoind rejected the RPC user or password (HTTP 401)"
        )),
        simple_http::Error::HttpErrorCode(403) => ProbeError::Auth(format!(
            "{url}: bitcoind refused this client address (HTTP 403, see rpcallowip)"
        )),
        simple_http::Error::InvalidUrl { .. } => ProbeError::InvalidTarget(error.to_string()),
        other => ProbeError::Protocol(format!("{url}: {other}")),
    }
}
