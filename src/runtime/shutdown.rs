//! Graceful shutdown: SIGTERM or Ctrl-C cancels one token that every task watches.

use tokio_util::sync::CancellationToken;
use tracing::info;

/// Cancel `token` on SIGTERM or Ctrl-C.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => info!("interrupted; shutting down"),
            _ = term => info!("SIGTERM; shutting down"),
        }
        token.cancel();
    });
}
