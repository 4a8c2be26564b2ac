//! Logging setup: RUST_LOG filters, JSON or plain lines on stderr.

/// How log lines are written.
#[derive(Clone, Copy, Debug)]
pub enum LogFormat {
    Json,
    Plain,
}

/// Initialise logging: RUST_LOG filters (default info), JSON or plain lines on stderr.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,kube=warn,kube_lease_manager=warn")
    });
    // A log line that cannot be written (stderr piped into a reader that went away) is
    // dropped: tracing-subscriber would otherwise report it with eprintln!, which panics on
    // the same closed stderr, inside whichever task logged; the signal task that panicked
    // there never cancelled the shutdown, and Ctrl-C left the operator running.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Plain => builder.init(),
    }
}
