//! Defaults the API leaves open: pinned images and sizes per network.
//!
//! Sizes come from what each network really needs (2026): a mainnet node with txindex holds
//! ~750 GB of blocks and indexes and wants dbcache + ~1.5 GiB of memory during IBD; electrs'
//! mainnet index is ~60 GB and grows with compaction; regtest fits a laptop.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::Network;

/// Images pinned to exact releases; a default never floats.
pub mod image {
    pub const BITCOIND: &str = "docker.io/bitcoin/bitcoin:28.1";
    pub const ELECTRS: &str = "docker.io/getumbrel/electrs:v0.10.6";
    pub const POSTGRES: &str = "docker.io/library/postgres:17.2";
    pub const POSTGRES_EXPORTER: &str = "quay.io/prometheuscommunity/postgres-exporter:v0.16.0";
    pub const REDIS: &str = "docker.io/library/redis:7.4.2";
    pub const REDIS_EXPORTER: &str = "docker.io/oliver006/redis_exporter:v1.67.0";
    pub const API: &str = "ghcr.io/blocksight-live/blocksight-api:1.4.0";
    pub const PROMETHEUS: &str = "quay.io/prometheus/prometheus:v3.1.0";
    pub const GRAFANA: &str = "docker.io/grafana/grafana:11.4.0";
}

/// UTXO cache in MiB when the spec leaves it open.
pub fn dbcache_mib(network: Network) -> i64 {
    match network {
        Network::Mainnet => 4096,
        Network::Testnet => 1024,
        Network::Testnet4 | Network::Signet => 512,
        Network::Regtest => 128,
    }
}

/// Volume sizes per component and network.
pub fn storage(component: &str, network: Network) -> Quantity {
    use Network::*;
    let size = match (component, network) {
        ("bitcoind", Mainnet) => "1Ti",
        ("bitcoind", Testnet) => "300Gi",
        ("bitcoind", Testnet4) => "100Gi",
        ("bitcoind", Signet) => "50Gi",
        ("bitcoind", Regtest) => "5Gi",
        ("electrs", Mainnet) => "200Gi",
        ("electrs", Testnet) => "80Gi",
        ("electrs", Testnet4 | Signet) => "30Gi",
        ("electrs", Regtest) => "2Gi",
        ("postgres", Mainnet) => "200Gi",
        ("postgres", Testnet) => "50Gi",
        ("postgres", Testnet4 | Signet) => "20Gi",
        ("postgres", Regtest) => "2Gi",
        ("redis", Mainnet) => "8Gi",
        ("redis", Regtest) => "1Gi",
        ("redis", _) => "4Gi",
        ("prometheus", Regtest) => "2Gi",
        ("prometheus", _) => "50Gi",
        (other, _) => unreachable!("no storage default for component {other}"),
    };
    Quantity(size.to_owned())
}

/// API replicas when neither replicas nor autoscaling is given.
pub fn api_replicas(network: Network) -> i32 {
    match network {
        Network::Mainnet => 2,
        _ => 1,
    }
}

/// Prometheus retention when the spec leaves it open.
pub const PROMETHEUS_RETENTION: &str = "15d";

/// Container resources per component and network. bitcoind's memory follows dbcache.
pub fn resources(component: &str, network: Network, dbcache_mib: i64) -> ResourceRequirements {
    let small = network == Network::Regtest;
    let (cpu_req, mem_req, cpu_lim, mem_lim): (&str, String, &str, String) = match component {
        "bitcoind" => {
            // dbcache plus mempool (300 MiB), peers and block relay; the limit leaves room for
            // the UTXO flush at shutdown so the kernel does not OOM-kill it mid-write.
            let request = dbcache_mib + if small { 256 } else { 1536 };
            let limit = request + if small { 256 } else { 2048 };
            let cpu = if small {
                ("100m", "1")
            } else if network == Network::Mainnet {
                ("2", "4")
            } else {
                ("1", "2")
            };
            (cpu.0, format!("{request}Mi"), cpu.1, format!("{limit}Mi"))
        }
        "electrs" if small => ("100m", "256Mi".into(), "1", "512Mi".into()),
        "electrs" if network == Network::Mainnet => ("1", "4Gi".into(), "4", "8Gi".into()),
        "electrs" => ("500m", "2Gi".into(), "2", "4Gi".into()),
        "postgres" if small => ("100m", "256Mi".into(), "1", "512Mi".into()),
        "postgres" if network == Network::Mainnet => ("1", "4Gi".into(), "4", "8Gi".into()),
        "postgres" => ("500m", "1Gi".into(), "2", "2Gi".into()),
        "redis" if small => ("50m", "64Mi".into(), "500m", "128Mi".into()),
        "redis" => ("250m", "1Gi".into(), "1", "2Gi".into()),
        "api" if small => ("100m", "128Mi".into(), "1", "256Mi".into()),
        "api" => ("500m", "512Mi".into(), "2", "1Gi".into()),
        "prometheus" if small => ("100m", "256Mi".into(), "1", "512Mi".into()),
        "prometheus" => ("500m", "2Gi".into(), "2", "4Gi".into()),
        "grafana" if small => ("50m", "128Mi".into(), "500m", "256Mi".into()),
        "grafana" => ("100m", "256Mi".into(), "1", "512Mi".into()),
        // pg_dump / pg_restore: single-threaded, memory grows with the largest table's rows.
        "backup" if small => ("50m", "128Mi".into(), "1", "512Mi".into()),
        "backup" => ("250m", "512Mi".into(), "2", "2Gi".into()),
        // Sidecars (exporters) and the binary installer are small everywhere.
        "installer" => ("10m", "16Mi".into(), "200m", "64Mi".into()),
        "exporter" => ("10m", "32Mi".into(), "200m", "64Mi".into()),
        other => unreachable!("no resource default for component {other}"),
    };
    ResourceRequirements {
        requests: Some(quantities(cpu_req, &mem_req)),
        limits: Some(quantities(cpu_lim, &mem_lim)),
        ..Default::default()
    }
}

fn quantities(cpu: &str, memory: &str) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_owned(), Quantity(cpu.to_owned())),
        ("memory".to_owned(), Quantity(memory.to_owned())),
    ])
}

/// Default backup schedule: daily at 03:00 UTC.
pub const DEFAULT_BACKUP_SCHEDULE: &str = "0 3 * * *";
/// Default retention when neither retention nor keepLast is set.
pub const DEFAULT_BACKUP_RETENTION: &str = "30d";
/// Default size of the backup volume.
pub const DEFAULT_BACKUP_VOLUME_SIZE: &str = "20Gi";
