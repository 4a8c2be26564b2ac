//! Monitoring assets compiled into the binary from monitoring/, the single source: the
//! Prometheus a BlockSight deploys loads these very rules and Grafana these dashboards.

/// Prometheus rule files (`groups:` documents), by file name.
pub const RULE_FILES: [(&str, &str); 4] = [
    (
        "chain.yaml",
        include_str!("../monitoring/prometheus/rules/chain.yaml"),
    ),
    (
        "services.yaml",
        include_str!("../monitoring/prometheus/rules/services.yaml"),
    ),
    (
        "backup.yaml",
        include_str!("../monitoring/prometheus/rules/backup.yaml"),
    ),
    (
        "operator.yaml",
        include_str!("../monitoring/prometheus/rules/operator.yaml"),
    ),
];

/// Grafana dashboards (JSON models), by file name.
pub const DASHBOARDS: [(&str, &str); 2] = [
    (
        "blocksight-overview.json",
        include_str!("../monitoring/grafana/dashboards/blocksight-overview.json"),
    ),
    (
        "blocksight-operator.json",
        include_str!("../monitoring/grafana/dashboards/blocksight-operator.json"),
    ),
];
