//! An Electrum server: newline-delimited JSON-RPC over TCP, answering `server.version` and
//! `blockchain.headers.subscribe` as electrs does.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Bitcoin's genesis block header: a well-formed 80-byte header for the `hex` field.
const GENESIS_HEADER: &str = "0100000000000000000000000000000000000000000000000000000000000000\
    000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c";

#[derive(Clone, Debug)]
pub enum Tip {
    /// Indexed up to this height.
    Height(u64),
    /// blockchain.headers.subscribe fails with this JSON-RPC error.
    Error { code: i64, message: &'static str },
}

pub struct FakeElectrum {
    /// host:port
    pub addr: String,
    received: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeElectrum {
    pub async fn start(tip: Tip) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address").to_string();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                connections.spawn(serve(stream, tip.clone(), log.clone()));
            }
        });
        Self {
            addr,
            received,
            task,
        }
    }

    /// Methods called so far, in order.
    pub fn methods(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for FakeElectrum {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(stream: TcpStream, tip: Tip, log: Arc<Mutex<Vec<String>>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let request: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        let method = request["method"].as_str().unwrap_or_default().to_owned();
        log.lock().unwrap().push(method.clone());
        let id = request["id"].clone();
        let outcome = match (method.as_str(), &tip) {
            ("server.version", _) => Ok(json!(["electrs/0.10.9", "1.4"])),
            ("blockchain.headers.subscribe", Tip::Height(height)) => {
                Ok(json!({"height": height, "hex": GENESIS_HEADER}))
            }
            ("blockchain.headers.subscribe", Tip::Error { code, message }) => {
                Err(json!({"code": code, "message": message}))
            }
            _ => Err(json!({"code": -32601, "message": format!("unknown method {method}")})),
        };
        let response = match outcome {
            Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
            Err(error) => json!({"jsonrpc": "2.0", "id": id, "error": error}),
        };
        let mut line = response.to_string();
        line.push('\n');
        if write.write_all(line.as_bytes()).await.is_err() {
            return;
        }
    }
}
