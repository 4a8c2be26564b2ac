//! A scripted bitcoind JSON-RPC server: HTTP/1.1 with keep-alive and basic auth, answering
//! getblockchaininfo, getnetworkinfo, getindexinfo and getmempoolinfo from a sequence of
//! states. Each getblockchaininfo (the first call of a probe) moves to the next state; the
//! last one stays.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Chain state as bitcoind would report it.
#[derive(Clone, Debug)]
pub struct Chain {
    pub blocks: u64,
    pub headers: u64,
    pub verification_progress: f64,
    pub initial_block_download: bool,
    /// `time` of getblockchaininfo; `None` mimics bitcoind before 28, which lacks it.
    pub time: Option<i64>,
    pub median_time: i64,
    pub size_on_disk: u64,
    pub pruned: bool,
    pub subversion: &'static str,
    pub connections: u32,
    /// `None`: txindex off (getindexinfo answers `{}`).
    pub txindex_synced: Option<bool>,
    /// `false` mimics bitcoind before 0.21 (getindexinfo: method not found).
    pub has_getindexinfo: bool,
    pub mempool_size: u64,
}

impl Chain {
    /// Initial block download at `blocks` of `headers`.
    pub fn ibd(blocks: u64, headers: u64, verification_progress: f64) -> Self {
        Self {
            blocks,
            headers,
            verification_progress,
            initial_block_download: true,
            time: Some(1_231_006_505 + blocks as i64 * 600),
            median_time: 1_231_006_505 + blocks as i64 * 600 - 3000,
            size_on_disk: blocks * 1_000_000,
            pruned: false,
            subversion: "/Satoshi:28.1.0/",
            connections: 8,
            txindex_synced: Some(false),
            has_getindexinfo: true,
            mempool_size: 0,
        }
    }

    /// Caught up at `height`, txindex synced, a busy mempool.
    pub fn synced(height: u64) -> Self {
        Self {
            verification_progress: 0.999_999_8,
            initial_block_download: false,
            txindex_synced: Some(true),
            connections: 10,
            mempool_size: 42_000,
            ..Self::ibd(height, height, 1.0)
        }
    }
}

#[derive(Clone, Debug)]
pub enum State {
    Chain(Chain),
    /// Every method fails with this JSON-RPC error (e.g. -28 while loading the block index).
    RpcError {
        code: i64,
        message: &'static str,
    },
    /// Read requests, never answer.
    Silent,
}

/// One request the fake received.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    pub method: String,
    pub params: Value,
    /// Whether its basic-auth header carried the right user and password.
    pub authorized: bool,
}

/// The password the fake accepts.
pub const RPC_PASSWORD: &str = "rpc-Secret-4242";

pub struct FakeBitcoind {
    pub url: String,
    pub user: String,
    pub password: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

struct Script {
    states: Vec<State>,
    current: Option<usize>,
    expected_auth: String,
    /// Answer RPC errors with HTTP 500 as bitcoind before 28 (and for JSON-RPC 1.0
    /// requests) does; otherwise HTTP 200 with a JSON-RPC 2.0 error, as bitcoind 28+ does.
    legacy_errors: bool,
}

impl FakeBitcoind {
    pub async fn start(states: Vec<State>) -> Self {
        Self::start_with(states, false).await
    }

    pub async fn start_with(states: Vec<State>, legacy_errors: bool) -> Self {
        assert!(!states.is_empty(), "a scenario needs at least one state");
        let (user, password) = ("blocksight".to_owned(), RPC_PASSWORD.to_owned());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let received = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(Script {
            states,
            current: None,
            expected_auth: format!("Basic {}", BASE64.encode(format!("{user}:{password}"))),
            legacy_errors,
        }));
        let log = received.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(serve(stream, script.clone(), log.clone()));
            }
        });
        Self {
            url,
            user,
            password,
            received,
            task,
        }
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The methods called so far, in order.
    pub fn methods(&self) -> Vec<String> {
        self.received().into_iter().map(|r| r.method).collect()
    }
}

impl Drop for FakeBitcoind {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(stream: TcpStream, script: Arc<Mutex<Script>>, log: Arc<Mutex<Vec<Received>>>) {
    let mut stream = BufReader::new(stream);
    loop {
        let Some((authorization, body)) = read_request(&mut stream).await else {
            return;
        };
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let method = request["method"].as_str().unwrap_or_default().to_owned();
        let (authorized, answer) = {
            let mut script = script.lock().unwrap();
            let authorized = authorization.as_deref() == Some(script.expected_auth.as_str());
            let answer = authorized.then(|| script.answer(&method, &request));
            (authorized, answer)
        };
        log.lock().unwrap().push(Received {
            method,
            params: request["params"].clone(),
            authorized,
        });
        let response = match answer {
            // bitcoind answers a bad login with an empty 401.
            None => "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"jsonrpc\"\r\n\
                     Content-Length: 0\r\n\r\n"
                .to_owned(),
            Some(Answer::Silent) => return std::future::pending().await,
            Some(Answer::Json(status, body)) => {
                let body = body.to_string();
                format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
        };
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Read one HTTP request: its Authorization header and body. `None` at end of stream.
async fn read_request(stream: &mut BufReader<TcpStream>) -> Option<(Option<String>, Vec<u8>)> {
    let mut line = String::new();
    if stream.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let (mut length, mut authorization) = (0usize, None);
    loop {
        line.clear();
        if stream.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "authorization" => authorization = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.ok()?;
    Some((authorization, body))
}

enum Answer {
    Json(&'static str, Value),
    Silent,
}

impl Script {
    fn answer(&mut self, method: &str, request: &Value) -> Answer {
        if method == "getblockchaininfo" {
            self.current = Some(match self.current {
                None => 0,
                Some(i) => (i + 1).min(self.states.len() - 1),
            });
        }
        let state = self.states[self.current.unwrap_or(0)].clone();
        let id = request["id"].clone();
        match state {
            State::Silent => Answer::Silent,
            State::RpcError { code, message } => self.error(id, code, message),
            State::Chain(chain) => match result(&chain, method) {
                Some(result) if self.legacy_errors => {
                    Answer::Json("200 OK", json!({"result": result, "error": null, "id": id}))
                }
                Some(result) => Answer::Json(
                    "200 OK",
                    json!({"jsonrpc": "2.0", "result": result, "id": id}),
                ),
                None => self.error(id, -32601, "Method not found"),
            },
        }
    }

    fn error(&self, id: Value, code: i64, message: &str) -> Answer {
        let error = json!({"code": code, "message": message});
        if self.legacy_errors {
            let status = if code == -32601 {
                "404 Not Found"
            } else {
                "500 Internal Server Error"
            };
            Answer::Json(status, json!({"result": null, "error": error, "id": id}))
        } else {
            Answer::Json(
                "200 OK",
                json!({"jsonrpc": "2.0", "error": error, "id": id}),
            )
        }
    }
}

fn result(chain: &Chain, method: &str) -> Option<Value> {
    Some(match method {
        "getblockchaininfo" => {
            let mut info = json!({
                "chain": "main",
                "blocks": chain.blocks,
                "headers": chain.headers,
                "bestblockhash": "00000000000000000001f0c2a2e3b1a6f1d0e1c0b0a090807060504030201000",
                "bits": "17030ecd",
                "target": "0000000000000000000030ecd0000000000000000000000000000000000000000",
                "difficulty": 110_568_428_300_952.7,
                "mediantime": chain.median_time,
                "verificationprogress": chain.verification_progress,
                "initialblockdownload": chain.initial_block_download,
                "chainwork": "0000000000000000000000000000000000000000a5ddb3e3b9a8b3c2d1e0f000",
                "size_on_disk": chain.size_on_disk,
                "pruned": chain.pruned,
                // An array since bitcoind 28 (a string before).
                "warnings": [],
            });
            if let Some(time) = chain.time {
                info["time"] = json!(time);
            }
            info
        }
        "getnetworkinfo" => json!({
            "version": 280100,
            "subversion": chain.subversion,
            "protocolversion": 70016,
            "localservices": "0000000000000c09",
            "localrelay": true,
            "timeoffset": 0,
            "networkactive": true,
            "connections": chain.connections,
            "connections_in": 0,
            "connections_out": chain.connections,
            "networks": [],
            "relayfee": 0.00001,
            "incrementalfee": 0.00001,
            "localaddresses": [],
            "warnings": [],
        }),
        "getindexinfo" if chain.has_getindexinfo => match chain.txindex_synced {
            Some(synced) => {
                json!({"txindex": {"synced": synced, "best_block_height": chain.blocks}})
            }
            None => json!({}),
        },
        "getmempoolinfo" => json!({
            "loaded": true,
            "size": chain.mempool_size,
            "bytes": chain.mempool_size * 250,
            "usage": chain.mempool_size * 900,
            "total_fee": 0.5,
            "maxmempool": 300_000_000,
            "mempoolminfee": 0.00001,
            "minrelaytxfee": 0.00001,
            "incrementalrelayfee": 0.00001,
            "unbroadcastcount": 0,
            "fullrbf": true,
        }),
        _ => return None,
    })
}
