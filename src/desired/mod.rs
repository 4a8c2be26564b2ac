//! Build step (pure): the desired children of a validated BlockSight, one module per
//! component. The controller applies exactly these; `blocksight render` prints them.

pub mod api;
pub mod backup;
pub mod bitcoind;
pub mod child;
pub mod electrs;
pub mod grafana;
pub mod meta;
pub mod monitors;
pub mod network_policy;
pub mod postgres;
pub mod prometheus;
pub mod redis;
pub mod secrets;
pub mod volume_snapshot;
pub mod workload;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::ObjectMeta;

pub use child::{Cache, Child, ChildKind, ChildVisitor, KindInfo, TypedChild};
pub use meta::Component;

use crate::validate::ValidBlockSight;

/// Settings of the operator deployment that shape what it builds.
#[derive(Clone, Debug)]
pub struct BuildSettings {
    /// `host:port` of the operator's headless metrics Service, through which each BlockSight's
    /// Prometheus discovers every operator replica.
    pub operator_metrics_target: String,
    /// The prometheus-operator CRDs (monitoring.coreos.com/v1) are installed.
    pub prometheus_operator_crds: bool,
    /// The operator's own image: init containers run it to write the monitoring assets
    /// (rules, dashboards) of this very release into the Prometheus and Grafana pods, and
    /// backup pods install the `blocksight` binary from it.
    pub operator_image: String,
}

/// The image of this operator release, when the deployment does not say otherwise.
pub const DEFAULT_OPERATOR_IMAGE: &str = concat!(
    "ghcr.io/blocksight-live/blocksight-operator:",
    env!("CARGO_PKG_VERSION")
);

impl BuildSettings {
    /// The operator metrics target as (DNS name, port); port 8080 when none is given.
    pub fn operator_metrics_endpoint(&self) -> (&str, u16) {
        match self.operator_metrics_target.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().unwrap_or(8080)),
            None => (&self.operator_metrics_target, 8080),
        }
    }
}

impl Default for BuildSettings {
    fn default() -> Self {
        Self {
            operator_metrics_target: "blocksight-operator-metrics.blocksight-system.svc:8080"
                .to_owned(),
            prometheus_operator_crds: false,
            operator_image: DEFAULT_OPERATOR_IMAGE.to_owned(),
        }
    }
}

/// Append `value` as one YAML document (without a `---` line) to `out`, as `blocksight
/// render` prints every object.
///
/// The emitter is serde-saphyr, straight from the typed object in one pass (no YAML DOM, no
/// libyaml). Its options:
/// - YAML 1.1 quoting (`yaml_12: false`): kubectl reads manifests with sigs.k8s.io/yaml
///   (go-yaml, YAML 1.1), so every string a YAML 1.1 or 1.2 reader would resolve to another
///   type (`yes`, `on`, `y`, `~`, `1:20`, `0o17`, `2001-12-14`, `.inf`, ...) is quoted, in
///   keys as in values. `tests/offline/render.rs` checks this against both readers.
/// - block style, 2-space indentation, list items at their key's indentation (as libyaml).
/// - multi-line strings (ConfigMap files, scripts) as literal blocks `|`; long single-line
///   strings stay on one line (no folded `>` blocks: a command line or an annotation reads
///   better, and greps better, unwrapped).
pub fn write_yaml<T: serde::Serialize>(out: &mut String, value: &T) {
    let options = serde_saphyr::ser_options! {
        indent_step: 2,
        compact_list_indent: true,
        yaml_12: false,
        prefer_block_scalars: true,
        folded_wrap_chars: usize::MAX,
    };
    serde_saphyr::to_fmt_writer_with_options(out, value, options)
        .expect("Kubernetes objects serialize as YAML");
}

/// Everything the controller makes for one BlockSight.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    /// Applied with server-side apply, in apply order.
    pub children: Vec<Child>,
}

/// What the cluster's state holds back. The API serves (its replicas leave zero) only once
/// its database and cache are ready; `render` previews the serving state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gates {
    pub api_serving: bool,
}

impl Gates {
    pub const OPEN: Gates = Gates { api_serving: true };
}

/// Build every child of `bs`, gates open (what `render` shows).
pub fn build(bs: &ValidBlockSight, settings: &BuildSettings) -> Desired {
    build_gated(bs, settings, Gates::OPEN)
}

/// Build every child of `bs`. Pure and deterministic: the same input always gives the same
/// objects, byte for byte (argument lists in fixed order, maps sorted).
pub fn build_gated(bs: &ValidBlockSight, settings: &BuildSettings, gates: Gates) -> Desired {
    let mut children = Vec::new();
    children.extend(bitcoind::build(bs));
    if let Some(electrs) = &bs.electrs {
        children.extend(electrs::build(bs, electrs));
    }
    children.extend(postgres::build(bs));
    children.extend(redis::build(bs));
    children.extend(api::build(bs, gates));
    if let Some(prometheus) = &bs.prometheus {
        children.extend(prometheus::build(bs, prometheus, settings));
    }
    if let Some(grafana) = &bs.grafana {
        children.extend(grafana::build(bs, grafana, settings));
    }
    children.extend(monitors::build(bs, settings));
    children.extend(network_policy::build(bs));
    children.extend(backup::build(bs, settings));
    // Stable sort: by kind (apply order), then in the order the builders produced them.
    children.sort_by_key(Child::kind);
    Desired {
        children: children.into_iter().map(Child::stamp).collect(),
    }
}

/// A ConfigMap with the given files.
pub(crate) fn config_map(meta: ObjectMeta, files: &[(&str, String)]) -> ConfigMap {
    ConfigMap {
        metadata: meta,
        data: Some(
            files
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        ),
        ..Default::default()
    }
}

/// The Secret kind, re-exported for the secrets builder's callers.
pub type GeneratedSecret = Secret;
