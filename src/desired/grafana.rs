//! Grafana for one BlockSight: stateless (everything is provisioned), with the Prometheus
//! datasource and the BlockSight dashboards from monitoring/, admin login from a Secret.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::Container;
use serde_json::json;

use super::meta::{self, Component};
use super::secrets::{self, key};
use super::workload::*;
use super::{BuildSettings, Child, config_map};
use crate::assets::AssetSet;
use crate::validate::{Grafana, ValidBlockSight};

pub const PORT: i32 = 3000;
/// The image's `grafana` user.
const UID: i64 = 472;

fn provisioning_name(bs: &ValidBlockSight) -> String {
    format!("{}-grafana-provisioning", bs.name)
}

fn provisioning(bs: &ValidBlockSight) -> [(&'static str, String); 2] {
    let datasources = json!({
        "apiVersion": 1,
        "datasources": [{
            "name": "Prometheus",
            "uid": "prometheus",
            "type": "prometheus",
            "access": "proxy",
            "url": format!("http://{}:{}", Component::Prometheus.child_name(bs), super::prometheus::PORT),
            "isDefault": true,
            "editable": false,
        }],
    });
    let dashboards = json!({
        "apiVersion": 1,
        "providers": [{
            "name": "blocksight",
            "folder": "BlockSight",
            "type": "file",
            "disableDeletion": true,
            "allowUiUpdates": false,
            "options": {"path": "/var/lib/grafana/dashboards"},
        }],
    });
    [
        (
            "datasources.yaml",
            serde_yaml::to_string(&datasources).expect("YAML"),
        ),
        (
            "dashboards.yaml",
            serde_yaml::to_string(&dashboards).expect("YAML"),
        ),
    ]
}

pub fn build(bs: &ValidBlockSight, grafana: &Grafana, settings: &BuildSettings) -> Vec<Child> {
    let provisioning = provisioning(bs);
    // The dashboards come from the operator image (see assets_init_container); their
    // digest rolls the pod when a release changes them.
    let mut hashed = AssetSet::Dashboards.digest().to_owned();
    provisioning.iter().for_each(|(_, c)| hashed.push_str(c));
    let credentials = secrets::grafana_secret_name(bs);
    let server = Container {
        env: Some(vec![
            env_from_secret("GF_SECURITY_ADMIN_USER", &credentials, key::ADMIN_USER),
            env_from_secret(
                "GF_SECURITY_ADMIN_PASSWORD",
                &credentials,
                key::ADMIN_PASSWORD,
            ),
            env("GF_PATHS_DATA", "/var/lib/grafana/data"),
            env("GF_PATHS_PROVISIONING", "/etc/grafana/provisioning"),
            env("GF_AUTH_ANONYMOUS_ENABLED", "false"),
            env("GF_ANALYTICS_REPORTING_ENABLED", "false"),
            env("GF_ANALYTICS_CHECK_FOR_UPDATES", "false"),
        ]),
        ports: Some(vec![container_port("http", PORT)]),
        liveness_probe: Some(http_probe("/api/health", "http", 30, 6)),
        readiness_probe: Some(http_probe("/api/health", "http", 10, 3)),
        volume_mounts: Some(vec![
            mount("data", "/var/lib/grafana/data", false),
            mount("dashboards", "/var/lib/grafana/dashboards", true),
            mount("datasources", "/etc/grafana/provisioning/datasources", true),
            mount("providers", "/etc/grafana/provisioning/dashboards", true),
            mount("tmp", "/tmp", false),
        ]),
        ..container("grafana", &grafana.image, &grafana.resources)
    };
    let provisioning_cm = provisioning_name(bs);
    let mut volumes = vec![
        empty_dir("data"),
        empty_dir("tmp"),
        empty_dir("dashboards"),
        config_map_volume("datasources", &provisioning_cm),
        config_map_volume("providers", &provisioning_cm),
    ];
    // Each provisioning folder sees only its own file.
    for (volume, file) in [
        ("datasources", "datasources.yaml"),
        ("providers", "dashboards.yaml"),
    ] {
        if let Some(source) = volumes
            .iter_mut()
            .find(|v| v.name == volume)
            .and_then(|v| v.config_map.as_mut())
        {
            source.items = Some(vec![k8s_openapi::api::core::v1::KeyToPath {
                key: file.to_owned(),
                path: file.to_owned(),
                ..Default::default()
            }]);
        }
    }
    let template = pod_template(
        bs,
        PodParts {
            component: Component::Grafana,
            uid: UID,
            config_hash: Some(meta::digest(hashed.as_bytes())),
            containers: vec![server],
            volumes,
            placement: None,
            termination_grace_seconds: Some(30),
        },
    );
    let mut template = template;
    if let Some(pod) = template.spec.as_mut() {
        pod.init_containers = Some(vec![assets_init_container(
            settings,
            AssetSet::Dashboards,
            "dashboards",
            "/var/lib/grafana/dashboards",
        )]);
    }
    vec![
        Child::ConfigMap(config_map(
            meta::owned(bs, Component::Grafana, provisioning_cm),
            &provisioning,
        )),
        Child::Service(service(
            bs,
            Component::Grafana,
            vec![service_port("http", PORT)],
        )),
        Child::Deployment(Deployment {
            metadata: meta::owned(bs, Component::Grafana, Component::Grafana.child_name(bs)),
            spec: DeploymentSpec {
                replicas: Some(1),
                selector: meta::selector(bs, Component::Grafana),
                template,
                ..Default::default()
            },
            ..Default::default()
        }),
    ]
}
