//! Redis: liveness and memory use.

use std::time::Duration;

use redis::{AsyncConnectionConfig, ErrorKind, RedisError};
use serde::{Deserialize, Serialize};

use super::error::{ProbeError, redact_urls, url_secrets};

/// What Redis says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedisReport {
    /// `used_memory` of `INFO memory`.
    pub used_memory_bytes: u64,
}

/// `PING`, then `INFO memory`, over one connection to `url` (`redis://:password@host:port/db`).
pub async fn redis(url: &str, timeout: Duration) -> Result<RedisReport, ProbeError> {
    let shown = redact_urls(url);
    let probe = async {
        let client = redis::Client::open(url)
            .map_err(|e| ProbeError::InvalidTarget(format!("Redis URL {shown}: {e}")))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| redis_error(e, &shown))?;
        let pong: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_error(e, &shown))?;
        if pong != "PONG" {
            return Err(ProbeError::Protocol(format!(
                "{shown}: PING answered {pong:?}"
            )));
        }
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_error(e, &shown))?;
        let used_memory_bytes = info_field(&info, "used_memory")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                ProbeError::Protocol(format!("{shown}: INFO memory has no used_memory"))
            })?;
        Ok(RedisReport { used_memory_bytes })
    };
    super::within(timeout, probe)
        .await
        .map_err(|e| e.redacted(&url_secrets(url)))
}

/// The value of `field` in an INFO answer (`field:value` lines, CRLF-terminated).
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.trim_end()
            .strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
    })
}

fn redis_error(error: RedisError, target: &str) -> ProbeError {
    if error.kind() == ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("NOAUTH" | "WRONGPASS"))
    {
        return ProbeError::Auth(format!("{target}: {error}"));
    }
    if error.is_timeout() {
        return ProbeError::Timeout;
    }
    if let Some(code) = error.code() {
        return ProbeError::Server {
            code: code.to_owned(),
            message: error.detail().unwrap_or_default().to_owned(),
        };
    }
    if error.is_io_error() {
        return ProbeError::Unreachable(format!("{target}: {error}"));
    }
    ProbeError::Protocol(format!("{target}: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_found_by_exact_name() {
        let info = "# Memory\r\nused_memory_human:1.00M\r\nused_memory:1048576\r\n";
        assert_eq!(info_field(info, "used_memory"), Some("1048576"));
        assert_eq!(info_field(info, "used_memory_human"), Some("1.00M"));
        assert_eq!(info_field(info, "maxmemory"), None);
    }
}
