//! Prometheus for one BlockSight: scrapes every component (and this instance's series of
//! the operator's metrics) and evaluates the BlockSight alert rules from monitoring/.

use k8s_openapi::api::core::v1::Container;
use serde_json::json;

use super::meta::{self, Component};
use super::workload::*;
use super::{BuildSettings, Child, config_map};
use crate::assets::AssetSet;
use crate::validate::{Postgres, Prometheus, ValidBlockSight};

pub const PORT: i32 = 9090;
/// The image's `nobody` user.
const UID: i64 = 65534;

fn config_name(bs: &ValidBlockSight) -> String {
    format!("{}-prometheus-config", bs.name)
}

/// prometheus.yml. Static targets through Services (and DNS discovery for the API's
/// replicas), so this Prometheus needs no Kubernetes API access and no RBAC.
pub fn prometheus_yml(bs: &ValidBlockSight, settings: &BuildSettings) -> String {
    let labels = json!({"namespace": bs.namespace, "blocksight": bs.name});
    let target = |component: Component, port: i32| format!("{}:{port}", component.child_name(bs));
    let static_job = |job: &str, target: String| json!({"job_name": job, "static_configs": [{"targets": [target], "labels": labels}]});
    let (operator_host, operator_port) = settings.operator_metrics_endpoint();
    let mut jobs = vec![
        static_job("prometheus", format!("localhost:{PORT}")),
        json!({
            "job_name": "blocksight-operator",
            // The operator labels its series with namespace/blocksight itself.
            "honor_labels": true,
            // Every replica, through the headless metrics Service: only the leader exports
            // per-instance series, and a Service would hand each scrape to a random replica.
            "dns_sd_configs": [{"names": [operator_host], "type": "A", "port": operator_port}],
            // Keep this instance's series and the operator-wide ones (no blocksight label).
            "metric_relabel_configs": [{
                "source_labels": ["namespace", "blocksight"],
                "regex": format!("{};{}|;", bs.namespace, bs.name),
                "action": "keep",
            }],
        }),
        static_job(
            "redis",
            target(Component::Redis, super::redis::EXPORTER_PORT),
        ),
        json!({
            "job_name": "api",
            "dns_sd_configs": [{
                "names": [format!("{}.{}.svc", super::api::headless_name(bs), bs.namespace)],
                "type": "A",
                "port": super::api::HTTP_PORT,
            }],
            "relabel_configs": [
                {"target_label": "namespace", "replacement": bs.namespace},
                {"target_label": "blocksight", "replacement": bs.name},
            ],
        }),
    ];
    if bs.electrs.is_some() {
        jobs.push(static_job(
            "electrs",
            target(Component::Electrs, super::electrs::MONITORING_PORT),
        ));
    }
    if matches!(bs.postgres, Postgres::InCluster { .. }) {
        jobs.push(static_job(
            "postgres",
            target(Component::Postgres, super::postgres::EXPORTER_PORT),
        ));
    }
    if bs.grafana.is_some() {
        jobs.push(static_job(
            "grafana",
            target(Component::Grafana, super::grafana::PORT),
        ));
    }
    let config = json!({
        "global": {
            "scrape_interval": "30s",
            "evaluation_interval": "30s",
            "external_labels": labels,
        },
        "rule_files": ["/etc/prometheus-rules/*.yaml"],
        "scrape_configs": jobs,
    });
    format!(
        "# Managed by blocksight-operator; edits are overwritten.\n{}",
        serde_yaml::to_string(&config).expect("YAML")
    )
}

pub fn build(
    bs: &ValidBlockSight,
    prometheus: &Prometheus,
    settings: &BuildSettings,
) -> Vec<Child> {
    let config = prometheus_yml(bs, settings);
    // The rules come from the operator image (see assets_init_container); their digest
    // rolls the pod when a release changes them.
    let hashed = format!("{config}\n{}", AssetSet::Rules.digest());
    let server = Container {
        args: Some(vec![
            "--config.file=/etc/prometheus/prometheus.yml".to_owned(),
            "--storage.tsdb.path=/prometheus".to_owned(),
            format!("--storage.tsdb.retention.time={}", prometheus.retention),
            format!("--web.listen-address=:{PORT}"),
        ]),
        ports: Some(vec![container_port("http", PORT)]),
        startup_probe: Some(http_probe("/-/ready", "http", 10, 60)),
        liveness_probe: Some(http_probe("/-/healthy", "http", 30, 6)),
        readiness_probe: Some(http_probe("/-/ready", "http", 10, 3)),
        volume_mounts: Some(vec![
            mount("data", "/prometheus", false),
            mount("config", "/etc/prometheus", true),
            mount("rules", "/etc/prometheus-rules", true),
        ]),
        ..container("prometheus", &prometheus.image, &prometheus.resources)
    };
    let template = pod_template(
        bs,
        PodParts {
            component: Component::Prometheus,
            uid: UID,
            config_hash: Some(meta::digest(hashed.as_bytes())),
            containers: vec![server],
            volumes: vec![
                config_map_volume("config", &config_name(bs)),
                empty_dir("rules"),
            ],
            placement: None,
            termination_grace_seconds: Some(120),
        },
    );
    let mut template = template;
    if let Some(pod) = template.spec.as_mut() {
        pod.init_containers = Some(vec![assets_init_container(
            settings,
            AssetSet::Rules,
            "rules",
            "/etc/prometheus-rules",
        )]);
    }
    vec![
        Child::ConfigMap(config_map(
            meta::owned(bs, Component::Prometheus, config_name(bs)),
            &[("prometheus.yml", config)],
        )),
        Child::Service(service(
            bs,
            Component::Prometheus,
            vec![service_port("http", PORT)],
        )),
        Child::StatefulSet(stateful_set(
            bs,
            Component::Prometheus,
            1,
            &[("data", &prometheus.storage)],
            template,
        )),
    ]
}
