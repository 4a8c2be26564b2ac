//! The BlockSight API: a Deployment wired to every data service, its Services, and the
//! HorizontalPodAutoscaler, PodDisruptionBudget and Ingress around it.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{Container, EnvVar, TopologySpreadConstraint};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Child;
use super::bitcoind::{ZMQ_HASHBLOCK_PORT, ZMQ_RAWBLOCK_PORT, ZMQ_RAWTX_PORT, rpc_port};
use super::electrs::ELECTRUM_PORT;
use super::meta::{self, Component};
use super::secrets::{self, key};
use super::workload::*;
use crate::validate::{Postgres, ValidBlockSight};

pub const HTTP_PORT: i32 = 8000;
const UID: i64 = 65532;

/// Name of the headless Service through which Prometheus finds every API pod.
pub fn headless_name(bs: &ValidBlockSight) -> String {
    format!("{}-api-headless", bs.name)
}

/// The API's environment: every endpoint it talks to, secrets by reference only. Entries
/// from `spec.api.env` replace the operator's entry of the same name.
pub fn environment(bs: &ValidBlockSight) -> Vec<EnvVar> {
    let bitcoind = Component::Bitcoind.child_name(bs);
    let rpc_secret = secrets::rpc_secret_name(bs);
    let database_url = match &bs.postgres {
        Postgres::InCluster { .. } => env_from_secret(
            "DATABASE_URL",
            &secrets::postgres_secret_name(bs),
            key::DATABASE_URL,
        ),
        Postgres::External { uri, .. } => env_from_secret("DATABASE_URL", &uri.name, &uri.key),
    };
    let mut wiring = vec![
        env("BLOCKSIGHT_NETWORK", bs.network.as_str()),
        env("PORT", HTTP_PORT.to_string()),
        database_url,
        env_from_secret("REDIS_URL", &secrets::redis_secret_name(bs), key::REDIS_URL),
        env(
            "BITCOIN_RPC_URL",
            format!("http://{bitcoind}:{}", rpc_port(bs.network)),
        ),
        env_from_secret("BITCOIN_RPC_USER", &rpc_secret, key::RPC_USER),
        env_from_secret("BITCOIN_RPC_PASSWORD", &rpc_secret, key::RPC_PASSWORD),
        env(
            "ZMQ_RAWBLOCK_URL",
            format!("tcp://{bitcoind}:{ZMQ_RAWBLOCK_PORT}"),
        ),
        env(
            "ZMQ_RAWTX_URL",
            format!("tcp://{bitcoind}:{ZMQ_RAWTX_PORT}"),
        ),
        env(
            "ZMQ_HASHBLOCK_URL",
            format!("tcp://{bitcoind}:{ZMQ_HASHBLOCK_PORT}"),
        ),
    ];
    if bs.electrs.is_some() {
        wiring.push(env(
            "ELECTRUM_URL",
            format!(
                "tcp://{}:{ELECTRUM_PORT}",
                Component::Electrs.child_name(bs)
            ),
        ));
    }
    let overridden: BTreeMap<&str, &EnvVar> =
        bs.api.env.iter().map(|e| (e.name.as_str(), e)).collect();
    let mut env: Vec<EnvVar> = wiring
        .into_iter()
        .filter(|e| !overridden.contains_key(e.name.as_str()))
        .collect();
    // Kubernetes rejects duplicate names; the last user entry of a name wins.
    let mut seen = std::collections::BTreeSet::new();
    let user: Vec<EnvVar> = bs
        .api
        .env
        .iter()
        .rev()
        .filter(|e| seen.insert(e.name.clone()))
        .cloned()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    env.extend(user);
    env
}

pub fn build(bs: &ValidBlockSight, gates: super::Gates) -> Vec<Child> {
    let api = &bs.api;
    // Held at zero replicas, without its autoscaler (which cannot scale from zero), until the
    // database and cache are ready.
    let autoscaling = api.autoscaling.as_ref().filter(|_| gates.api_serving);
    let name = Component::Api.child_name(bs);
    let container = Container {
        env: Some(environment(bs)),
        ports: Some(vec![container_port("http", HTTP_PORT)]),
        liveness_probe: Some(http_probe("/healthz", "http", 10, 3)),
        readiness_probe: Some(http_probe("/readyz", "http", 5, 3)),
        volume_mounts: Some(vec![mount("tmp", "/tmp", false)]),
        ..container("api", &api.image, &api.resources)
    };
    let mut template = pod_template(
        bs,
        PodParts {
            component: Component::Api,
            uid: UID,
            config_hash: None,
            containers: vec![container],
            volumes: vec![empty_dir("tmp")],
            placement: Some(&api.placement),
            termination_grace_seconds: Some(30),
        },
    );
    if let Some(spec) = template.spec.as_mut() {
        // Spread replicas over nodes so one node loss does not take the API down.
        spec.topology_spread_constraints = Some(vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".to_owned(),
            when_unsatisfiable: "ScheduleAnyway".to_owned(),
            label_selector: Some(meta::selector(bs, Component::Api)),
            ..Default::default()
        }]);
    }
    let deployment = Deployment {
        metadata: meta::owned(bs, Component::Api, name.clone()),
        spec: DeploymentSpec {
            // Under autoscaling the HPA owns the replica count; applying one would fight it.
            replicas: if !gates.api_serving {
                Some(0)
            } else {
                autoscaling.is_none().then_some(api.replicas)
            },
            selector: meta::selector(bs, Component::Api),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template,
            ..Default::default()
        },
        ..Default::default()
    };

    let mut headless = service(bs, Component::Api, vec![service_port("http", HTTP_PORT)]);
    headless.metadata.name = Some(headless_name(bs));
    if let Some(spec) = headless.spec.as_mut() {
        spec.cluster_ip = Some("None".to_owned());
    }
    let mut children = vec![
        Child::Service(service(
            bs,
            Component::Api,
            vec![service_port("http", HTTP_PORT)],
        )),
        Child::Service(headless),
        Child::Deployment(deployment),
        Child::PodDisruptionBudget(PodDisruptionBudget {
            metadata: meta::owned(bs, Component::Api, name.clone()),
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::Int(1)),
                selector: Some(meta::selector(bs, Component::Api)),
                ..Default::default()
            }),
            ..Default::default()
        }),
    ];
    if let Some(scaling) = autoscaling {
        children.push(Child::HorizontalPodAutoscaler(HorizontalPodAutoscaler {
            metadata: meta::owned(bs, Component::Api, name.clone()),
            spec: HorizontalPodAutoscalerSpec {
                scale_target_ref: CrossVersionObjectReference {
                    api_version: Some("apps/v1".to_owned()),
                    kind: "Deployment".to_owned(),
                    name: name.clone(),
                },
                min_replicas: Some(scaling.min_replicas),
                max_replicas: scaling.max_replicas,
                metrics: Some(vec![MetricSpec {
                    type_: "Resource".to_owned(),
                    resource: Some(ResourceMetricSource {
                        name: "cpu".to_owned(),
                        target: MetricTarget {
                            type_: "Utilization".to_owned(),
                            average_utilization: Some(scaling.target_cpu_percent),
                            ..Default::default()
                        },
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            ..Default::default()
        }));
    }
    if let Some(ingress) = &api.ingress {
        let mut metadata = meta::owned(bs, Component::Api, name.clone());
        if let Some(issuer) = &ingress.cluster_issuer {
            metadata.annotations =
                Some([("cert-manager.io/cluster-issuer".to_owned(), issuer.clone())].into());
        }
        children.push(Child::Ingress(Ingress {
            metadata,
            spec: Some(IngressSpec {
                ingress_class_name: ingress.class_name.clone(),
                tls: ingress.tls_secret.as_ref().map(|secret| {
                    vec![IngressTLS {
                        hosts: Some(vec![ingress.host.clone()]),
                        secret_name: Some(secret.clone()),
                    }]
                }),
                rules: Some(vec![IngressRule {
                    host: Some(ingress.host.clone()),
                    http: Some(HTTPIngressRuleValue {
                        paths: vec![HTTPIngressPath {
                            path: Some("/".to_owned()),
                            path_type: "Prefix".to_owned(),
                            backend: IngressBackend {
                                service: Some(IngressServiceBackend {
                                    name: name.clone(),
                                    port: Some(ServiceBackendPort {
                                        name: Some("http".to_owned()),
                                        number: None,
                                    }),
                                }),
                                ..Default::default()
                            },
                        }],
                    }),
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }));
    }
    children
}
