//! The process's HTTP endpoints: /metrics (OpenMetrics), /livez, /readyz.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::metrics::Metrics;

/// What the HTTP endpoints report.
pub struct Health {
    metrics: Arc<Metrics>,
    ready: AtomicBool,
}

impl Health {
    /// Not ready until [`Health::set_ready`].
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Health {
            metrics,
            ready: AtomicBool::new(false),
        })
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
}

async fn metrics_handler(
    State(health): State<Arc<Health>>,
) -> ([(&'static str, &'static str); 1], String) {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        health.metrics.encode(),
    )
}

async fn ready_handler(State(health): State<Arc<Health>>) -> StatusCode {
    if health.ready.load(Ordering::Relaxed) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// Serve /metrics, /livez and /readyz until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/livez", get(|| async { StatusCode::OK }))
        .route("/readyz", get(ready_handler))
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    info!(%addr, "serving /metrics, /livez, /readyz");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}
