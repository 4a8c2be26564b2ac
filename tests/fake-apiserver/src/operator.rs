//! Helpers to observe a running operator: its metrics endpoint, and the BlockSight
//! manifests the tests and the benchmark create.

use std::net::SocketAddr;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// examples/regtest.yaml: every component, no autoscaling.
pub const REGTEST: &str = include_str!("../../../examples/regtest.yaml");

/// The regtest example under another name.
pub fn regtest_blocksight(name: &str) -> Value {
    let mut bs: Value = serde_yaml::from_str(REGTEST).expect("examples/regtest.yaml parses");
    bs["metadata"] = json!({"name": name});
    bs
}

/// A loopback address with a free port, for the operator's --metrics-addr (so the
/// benchmark can read /metrics; 127.0.0.1:0 would hide the port).
pub fn free_local_addr() -> std::io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// GET http://ADDR/PATH (HTTP/1.0: the body ends with the connection): status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: operator\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// The operator's /metrics.
pub async fn scrape(addr: SocketAddr) -> std::io::Result<String> {
    Ok(http_get(addr, "/metrics").await?.1)
}

/// The sum of every sample of `name` (all label sets) in an OpenMetrics text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_label_sets_and_ignores_prefixes() {
        let text = "# HELP x\nblocksight_reconciliations_total 7\n\
                    blocksight_reconcile_failures_total{category=\"a\"} 1\n\
                    blocksight_reconcile_failures_total{category=\"b\"} 2\n";
        assert_eq!(metric(text, "blocksight_reconciliations_total"), 7.0);
        assert_eq!(metric(text, "blocksight_reconcile_failures_total"), 3.0);
        assert_eq!(metric(text, "blocksight_reconcile"), 0.0);
        assert_eq!(regtest_blocksight("x")["metadata"]["name"], "x");
    }
}
