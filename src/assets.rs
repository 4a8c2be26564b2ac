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

/// A set of assets a BlockSight's pods load: written into the pod by an init container
/// running the operator's own image (`blocksight assets ...`), so the files ship with the
/// operator release instead of being copied into two ConfigMaps per BlockSight (about
/// 125 KiB each time, in etcd and in every render).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AssetSet {
    /// Prometheus rule files.
    Rules,
    /// Grafana dashboards.
    Dashboards,
}

impl AssetSet {
    pub fn files(self) -> &'static [(&'static str, &'static str)] {
        match self {
            AssetSet::Rules => &RULE_FILES,
            AssetSet::Dashboards => &DASHBOARDS,
        }
    }

    /// A digest of the set's contents, for the pod template's config hash: a release that
    /// changes a rule rolls Prometheus even if its image tag did not change.
    pub fn digest(self) -> &'static str {
        static RULES: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| digest_of(AssetSet::Rules));
        static DASHBOARDS: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| digest_of(AssetSet::Dashboards));
        match self {
            AssetSet::Rules => &RULES,
            AssetSet::Dashboards => &DASHBOARDS,
        }
    }

    /// Write every file of the set into `dir` (created if missing); returns the paths.
    pub fn write(self, dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
        std::fs::create_dir_all(dir)?;
        self.files()
            .iter()
            .map(|(name, text)| {
                let path = dir.join(name);
                std::fs::write(&path, text)?;
                Ok(path)
            })
            .collect()
    }
}

fn digest_of(set: AssetSet) -> String {
    let mut all = Vec::new();
    for (name, text) in set.files() {
        all.extend_from_slice(name.as_bytes());
        all.push(0);
        all.extend_from_slice(text.as_bytes());
        all.push(0);
    }
    crate::digest::digest(&all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_file_of_a_set_byte_for_byte() {
        let dir = std::env::temp_dir().join(format!("blocksight-assets-{}", std::process::id()));
        for set in [AssetSet::Rules, AssetSet::Dashboards] {
            let written = set.write(&dir.join(format!("{set:?}"))).unwrap();
            assert_eq!(written.len(), set.files().len());
            for ((name, text), path) in set.files().iter().zip(&written) {
                assert!(path.ends_with(name));
                assert_eq!(std::fs::read_to_string(path).unwrap(), *text);
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert_ne!(AssetSet::Rules.digest(), AssetSet::Dashboards.digest());
    }
}
