//! Stand-ins for the servers the probes talk to: a scripted bitcoind JSON-RPC server, an
//! Electrum server, a server that accepts and never answers, a closed port; and access to
//! the real PostgreSQL and Redis that tests/run.sh starts.

pub mod bitcoind;
pub mod electrum;
pub mod services;

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Accepts connections, reads what comes, never answers: a hung server or a black hole.
pub struct SilentServer {
    pub addr: SocketAddr,
    _task: tokio::task::JoinHandle<()>,
}

impl SilentServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            // Dropping the set (when the task is aborted) closes every connection.
            let mut connections = JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                connections.spawn(async move {
                    let mut sink = tokio::io::sink();
                    let _ = tokio::io::copy(&mut stream, &mut sink).await;
                    std::future::pending::<()>().await;
                });
            }
        });
        Self { addr, _task: task }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self._task.abort();
    }
}

/// A 127.0.0.1 port nothing listens on (bound, then released).
pub async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("address").port()
}
