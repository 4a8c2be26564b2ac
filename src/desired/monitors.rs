//! ServiceMonitor and PodMonitor objects for a cluster's own prometheus-operator, so a
//! cluster that runs kube-prometheus scrapes every component without an extra Prometheus.
//! (The alert rules ship once per cluster with the operator's Helm chart: per-BlockSight
//! PrometheusRules would evaluate every rule once per BlockSight over all of them.)

use kube::api::{ApiResource, DynamicObject};
use serde_json::{Value, json};

use super::meta::{self, Component};
use super::{BuildSettings, Child, ChildKind};
use crate::crd::PrometheusOperatorMode;
use crate::validate::{Postgres, ValidBlockSight};

pub fn service_monitor_resource() -> ApiResource {
    ChildKind::ServiceMonitor.info().api_resource()
}

pub fn pod_monitor_resource() -> ApiResource {
    ChildKind::PodMonitor.info().api_resource()
}

/// Whether `bs` gets prometheus-operator objects in this cluster.
pub fn wanted(bs: &ValidBlockSight, settings: &BuildSettings) -> bool {
    match bs.prometheus_operator {
        PrometheusOperatorMode::Auto => settings.prometheus_operator_crds,
        PrometheusOperatorMode::Enabled => true,
        PrometheusOperatorMode::Disabled => false,
    }
}

/// Labels every scraped series carries, as the BlockSight's own Prometheus sets them.
fn relabelings(bs: &ValidBlockSight) -> Value {
    json!([
        {"targetLabel": "blocksight", "replacement": bs.name, "action": "replace"},
    ])
}

fn object(
    bs: &ValidBlockSight,
    component: Component,
    resource: &ApiResource,
    spec: Value,
) -> DynamicObject {
    let mut object =
        DynamicObject::new(&component.child_name(bs), resource).data(json!({ "spec": spec }));
    object.metadata = meta::owned(bs, component, component.child_name(bs));
    object
}

pub fn build(bs: &ValidBlockSight, settings: &BuildSettings) -> Vec<Child> {
    if !wanted(bs, settings) {
        return vec![];
    }
    let mut scraped: Vec<(Component, &str, &str)> = vec![(Component::Redis, "metrics", "/metrics")];
    if bs.electrs.is_some() {
        scraped.push((Component::Electrs, "monitoring", "/"));
    }
    if matches!(bs.postgres, Postgres::InCluster { .. }) {
        scraped.push((Component::Postgres, "metrics", "/metrics"));
    }
    if bs.grafana.is_some() {
        scraped.push((Component::Grafana, "http", "/metrics"));
    }
    let mut children: Vec<Child> = scraped
        .into_iter()
        .map(|(component, port, path)| {
            let spec = json!({
                "selector": {"matchLabels": meta::selector_labels(bs, component)},
                "namespaceSelector": {"matchNames": [bs.namespace]},
                "endpoints": [{"port": port, "path": path, "interval": "30s", "relabelings": relabelings(bs)}],
            });
            Child::ServiceMonitor(object(bs, component, &service_monitor_resource(), spec))
        })
        .collect();
    // Every API replica is scraped (a Service would hand each scrape to one of them).
    let spec = json!({
        "selector": {"matchLabels": meta::selector_labels(bs, Component::Api)},
        "namespaceSelector": {"matchNames": [bs.namespace]},
        "podMetricsEndpoints": [{"port": "http", "path": "/metrics", "interval": "30s", "relabelings": relabelings(bs)}],
    });
    children.push(Child::PodMonitor(object(
        bs,
        Component::Api,
        &pod_monitor_resource(),
        spec,
    )));
    children
}
