//! The real PostgreSQL and Redis of tests/run.sh, found through environment variables.
//!
//! Without them these tests fail, so CI can never skip them silently; a developer without
//! the servers opts out with BLOCKSIGHT_ALLOW_NO_SERVICES=1.

use std::sync::atomic::{AtomicU32, Ordering};

pub const POSTGRES_URL: &str = "BLOCKSIGHT_TEST_POSTGRES_URL";
pub const REDIS_URL: &str = "BLOCKSIGHT_TEST_REDIS_URL";

/// The superuser URL of the test PostgreSQL, or `None` (after printing SKIPPED) when the
/// developer opted out.
pub fn postgres_url() -> Option<String> {
    service_url(POSTGRES_URL)
}

/// The URL (with password, if the server has one) of the test Redis, or `None` (after
/// printing SKIPPED) when the developer opted out.
pub fn redis_url() -> Option<String> {
    service_url(REDIS_URL)
}

fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("BLOCKSIGHT_ALLOW_NO_SERVICES").as_deref() == Ok("1") => {
            println!("SKIPPED: {var} is not set and BLOCKSIGHT_ALLOW_NO_SERVICES=1");
            None
        }
        _ => panic!(
            "{var} is not set: run `bash tests/run.sh`, which starts PostgreSQL and Redis and \
             sets it (or set BLOCKSIGHT_ALLOW_NO_SERVICES=1 to skip the tests that need them)"
        ),
    }
}

/// A name no other test (nor an earlier run) uses: `<prefix>_<pid>_<n>`.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
