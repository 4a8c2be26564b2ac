//! Build step (pure): the desired children of a validated BlockSight, one module per
//! component. The controller applies exactly these; `blocksight render` prints them.

pub mod api;
pub mod backup;
pub mod bitcoind;
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

use std::fmt;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Resource;
use kube::api::{DynamicObject, ObjectMeta};
pub use meta::Component;
use serde_json::Value;

use crate::names::SPEC_HASH_ANNOTATION;
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

/// Kinds of applied children, in apply order: configuration and Services before the
/// workloads that read them, so pods never start on half-written config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChildKind {
    ConfigMap,
    Service,
    /// Before the workloads, so pods start isolated.
    NetworkPolicy,
    /// Before the pods that run as it.
    ServiceAccount,
    /// Before the pods that mount it.
    PersistentVolumeClaim,
    StatefulSet,
    Deployment,
    CronJob,
    HorizontalPodAutoscaler,
    PodDisruptionBudget,
    Ingress,
    ServiceMonitor,
    PodMonitor,
}

impl ChildKind {
    pub const ALL: [ChildKind; 13] = [
        Self::ConfigMap,
        Self::Service,
        Self::NetworkPolicy,
        Self::ServiceAccount,
        Self::PersistentVolumeClaim,
        Self::StatefulSet,
        Self::Deployment,
        Self::CronJob,
        Self::HorizontalPodAutoscaler,
        Self::PodDisruptionBudget,
        Self::Ingress,
        Self::ServiceMonitor,
        Self::PodMonitor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConfigMap => "ConfigMap",
            Self::Service => "Service",
            Self::NetworkPolicy => "NetworkPolicy",
            Self::ServiceAccount => "ServiceAccount",
            Self::PersistentVolumeClaim => "PersistentVolumeClaim",
            Self::StatefulSet => "StatefulSet",
            Self::Deployment => "Deployment",
            Self::CronJob => "CronJob",
            Self::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
            Self::PodDisruptionBudget => "PodDisruptionBudget",
            Self::Ingress => "Ingress",
            Self::ServiceMonitor => "ServiceMonitor",
            Self::PodMonitor => "PodMonitor",
        }
    }
}

impl fmt::Display for ChildKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One child applied with server-side apply.
#[derive(Clone, Debug, PartialEq)]
pub enum Child {
    ConfigMap(ConfigMap),
    Service(Service),
    NetworkPolicy(NetworkPolicy),
    ServiceAccount(ServiceAccount),
    PersistentVolumeClaim(PersistentVolumeClaim),
    StatefulSet(StatefulSet),
    Deployment(Deployment),
    /// Boxed: its spec is not optional, which makes it the largest variant by far.
    CronJob(Box<CronJob>),
    HorizontalPodAutoscaler(HorizontalPodAutoscaler),
    PodDisruptionBudget(PodDisruptionBudget),
    Ingress(Ingress),
    /// monitoring.coreos.com/v1 (no Rust types upstream: a typed-by-construction dynamic object).
    ServiceMonitor(DynamicObject),
    PodMonitor(DynamicObject),
}

macro_rules! for_each_child {
    ($child:expr, $obj:ident => $body:expr) => {
        match $child {
            Child::ConfigMap($obj) => $body,
            Child::Service($obj) => $body,
            Child::NetworkPolicy($obj) => $body,
            Child::ServiceAccount($obj) => $body,
            Child::PersistentVolumeClaim($obj) => $body,
            Child::StatefulSet($obj) => $body,
            Child::Deployment($obj) => $body,
            Child::CronJob($obj) => $body,
            Child::HorizontalPodAutoscaler($obj) => $body,
            Child::PodDisruptionBudget($obj) => $body,
            Child::Ingress($obj) => $body,
            Child::ServiceMonitor($obj) => $body,
            Child::PodMonitor($obj) => $body,
        }
    };
}

impl Child {
    pub fn kind(&self) -> ChildKind {
        match self {
            Child::ConfigMap(_) => ChildKind::ConfigMap,
            Child::Service(_) => ChildKind::Service,
            Child::NetworkPolicy(_) => ChildKind::NetworkPolicy,
            Child::ServiceAccount(_) => ChildKind::ServiceAccount,
            Child::PersistentVolumeClaim(_) => ChildKind::PersistentVolumeClaim,
            Child::StatefulSet(_) => ChildKind::StatefulSet,
            Child::Deployment(_) => ChildKind::Deployment,
            Child::CronJob(_) => ChildKind::CronJob,
            Child::HorizontalPodAutoscaler(_) => ChildKind::HorizontalPodAutoscaler,
            Child::PodDisruptionBudget(_) => ChildKind::PodDisruptionBudget,
            Child::Ingress(_) => ChildKind::Ingress,
            Child::ServiceMonitor(_) => ChildKind::ServiceMonitor,
            Child::PodMonitor(_) => ChildKind::PodMonitor,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        for_each_child!(self, o => o.meta())
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        for_each_child!(self, o => o.meta_mut())
    }

    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or_default()
    }

    /// The object as sent to the API server, with apiVersion and kind.
    pub fn to_value(&self) -> Value {
        for_each_child!(self, o => with_type_meta(o))
    }

    /// The hash of the object, stored in [`SPEC_HASH_ANNOTATION`] when applied.
    pub fn spec_hash(&self) -> &str {
        self.meta()
            .annotations
            .as_ref()
            .and_then(|a| a.get(SPEC_HASH_ANNOTATION))
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The object as YAML, with apiVersion and kind, fields in the API's order.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        self.write_yaml(&mut out);
        out
    }

    /// [`Child::to_yaml`], appended to `out` (no intermediate string per child).
    pub fn write_yaml(&self, out: &mut String) {
        for_each_child!(self, o => write_yaml(out, o))
    }

    /// Stamp the object with the hash of its content (computed without the stamp), from its
    /// JSON straight from the typed object: deterministic (struct order, sorted maps) and
    /// without an intermediate Value.
    fn stamp(mut self) -> Self {
        let json = for_each_child!(&self, o => serde_json::to_vec(o))
            .expect("Kubernetes objects serialize");
        let hash = meta::digest(&json);
        self.meta_mut()
            .annotations
            .get_or_insert_with(Default::default)
            .insert(SPEC_HASH_ANNOTATION.to_owned(), hash);
        self
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
///   keys as in values. `tests/render.rs` checks this against both readers.
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

/// Serialize a typed object with its apiVersion and kind (k8s-openapi's Serialize adds them).
fn with_type_meta<K: serde::Serialize>(obj: &K) -> Value {
    serde_json::to_value(obj).expect("Kubernetes objects serialize")
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
