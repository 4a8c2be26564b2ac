//! Small constructors the component builders share (probes, ports, volumes, env).

use k8s_openapi::api::apps::v1::StatefulSetPersistentVolumeClaimRetentionPolicy;
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, PersistentVolumeClaim, PersistentVolumeClaimSpec, Probe,
    SecretKeySelector, SecretVolumeSource, ServicePort, TCPSocketAction, TypedLocalObjectReference,
    Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::crd::DeletionPolicy;
use crate::validate::{self, ValidBlockSight};

/// A volumeClaimTemplate named `name` for a StatefulSet.
pub fn claim_template(name: &str, volume: &validate::Volume) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: volume.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_owned(), volume.size.clone())].into()),
                ..Default::default()
            }),
            // Only read when the claim is created: an existing PVC keeps its data.
            data_source: volume
                .from_snapshot
                .as_ref()
                .map(|name| TypedLocalObjectReference {
                    api_group: Some(super::volume_snapshot::GROUP.to_owned()),
                    kind: super::volume_snapshot::KIND.to_owned(),
                    name: name.clone(),
                }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// PVCs follow deletionPolicy when the StatefulSet goes (BlockSight deleted or component
/// disabled); scaling down never deletes data.
pub fn claim_retention(bs: &ValidBlockSight) -> StatefulSetPersistentVolumeClaimRetentionPolicy {
    let when_deleted = match bs.deletion_policy {
        DeletionPolicy::Retain => "Retain",
        DeletionPolicy::Delete => "Delete",
    };
    StatefulSetPersistentVolumeClaimRetentionPolicy {
        when_deleted: Some(when_deleted.to_owned()),
        when_scaled: Some("Retain".to_owned()),
    }
}

pub fn tcp_probe(port: &str, period: i32, failure_threshold: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String(port.to_owned()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failure_threshold),
        ..Default::default()
    }
}

pub fn http_probe(path: &str, port: &str, period: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(port.to_owned()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failure_threshold),
        ..Default::default()
    }
}

pub fn container_port(name: &str, port: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: port,
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    }
}

pub fn service_port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port,
        target_port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    }
}

pub fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..Default::default()
    }
}

/// An environment variable read from a Secret key (secrets never go into plain env or args).
pub fn env_from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

/// Writable scratch space for a read-only root filesystem.
pub fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

pub fn config_map_volume(name: &str, config_map: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A Secret volume exposing only the listed keys, readable by the pod's group only.
pub fn secret_volume(name: &str, secret: &str, keys: &[&str]) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            items: Some(
                keys.iter()
                    .map(|k| KeyToPath {
                        key: (*k).to_owned(),
                        path: (*k).to_owned(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `None` for an empty map, so rendered objects carry no empty fields.
pub fn non_empty(
    map: std::collections::BTreeMap<String, String>,
) -> Option<std::collections::BTreeMap<String, String>> {
    (!map.is_empty()).then_some(map)
}

/// `None` for an empty list.
pub fn non_empty_vec<T>(list: Vec<T>) -> Option<Vec<T>> {
    (!list.is_empty()).then_some(list)
}

/// What differs between the components' pod templates.
pub struct PodParts<'a> {
    pub component: super::meta::Component,
    /// Non-root uid (and gid, fsGroup) the pod runs as.
    pub uid: i64,
    /// Hash of the configuration the pod reads; a change rolls the pods.
    pub config_hash: Option<String>,
    pub containers: Vec<k8s_openapi::api::core::v1::Container>,
    pub volumes: Vec<Volume>,
    pub placement: Option<&'a crate::crd::Placement>,
    pub termination_grace_seconds: Option<i64>,
}

/// A pod template that passes the "restricted" Pod Security Standard, mounts no service
/// account token and gets no service-link environment.
pub fn pod_template(
    bs: &ValidBlockSight,
    parts: PodParts<'_>,
) -> k8s_openapi::api::core::v1::PodTemplateSpec {
    use super::meta;
    let placement = parts.placement.cloned().unwrap_or_default();
    k8s_openapi::api::core::v1::PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(meta::labels(bs, parts.component)),
            annotations: pod_annotations(bs, parts.component, parts.config_hash),
            ..Default::default()
        }),
        spec: Some(k8s_openapi::api::core::v1::PodSpec {
            containers: parts.containers,
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            termination_grace_period_seconds: parts.termination_grace_seconds,
            security_context: Some(meta::pod_security(parts.uid)),
            node_selector: non_empty(placement.node_selector),
            tolerations: non_empty_vec(placement.tolerations),
            volumes: non_empty_vec(parts.volumes),
            ..Default::default()
        }),
    }
}

/// A StatefulSet of `component` whose PVCs follow the BlockSight's deletionPolicy.
pub fn stateful_set(
    bs: &ValidBlockSight,
    component: super::meta::Component,
    replicas: i32,
    claims: &[(&str, &validate::Volume)],
    template: k8s_openapi::api::core::v1::PodTemplateSpec,
) -> k8s_openapi::api::apps::v1::StatefulSet {
    use super::meta;
    let name = component.child_name(bs);
    k8s_openapi::api::apps::v1::StatefulSet {
        metadata: meta::owned(bs, component, name.clone()),
        spec: k8s_openapi::api::apps::v1::StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(name),
            selector: meta::selector(bs, component),
            persistent_volume_claim_retention_policy: (!claims.is_empty())
                .then(|| claim_retention(bs)),
            volume_claim_templates: non_empty_vec(
                claims.iter().map(|(n, v)| claim_template(n, v)).collect(),
            ),
            template,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The ClusterIP Service `<blocksight>-<component>` in front of a component's pods.
pub fn service(
    bs: &ValidBlockSight,
    component: super::meta::Component,
    ports: Vec<ServicePort>,
) -> k8s_openapi::api::core::v1::Service {
    use super::meta;
    k8s_openapi::api::core::v1::Service {
        metadata: meta::owned(bs, component, component.child_name(bs)),
        spec: Some(k8s_openapi::api::core::v1::ServiceSpec {
            selector: Some(meta::selector_labels(bs, component)),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A container with its image, resources and the restricted security context; the caller
/// fills in command, ports, probes and mounts.
pub fn container(
    name: &str,
    image: &str,
    resources: &k8s_openapi::api::core::v1::ResourceRequirements,
) -> k8s_openapi::api::core::v1::Container {
    k8s_openapi::api::core::v1::Container {
        name: name.to_owned(),
        image: Some(image.to_owned()),
        resources: Some(resources.clone()),
        security_context: Some(super::meta::container_security()),
        ..Default::default()
    }
}

/// The pod template annotations: the configuration hash and, for pods that read generated
/// credentials, the rotation they run with (a new rotation rolls them).
fn pod_annotations(
    bs: &ValidBlockSight,
    component: super::meta::Component,
    config_hash: Option<String>,
) -> Option<std::collections::BTreeMap<String, String>> {
    let mut annotations = std::collections::BTreeMap::new();
    if let Some(hash) = config_hash {
        annotations.insert(crate::names::CONFIG_HASH_ANNOTATION.to_owned(), hash);
    }
    if let Some(rotation) = bs
        .rotation
        .as_ref()
        .filter(|_| component != super::meta::Component::Prometheus)
    {
        annotations.insert(
            crate::names::ROTATION_ANNOTATION.to_owned(),
            rotation.clone(),
        );
    }
    (!annotations.is_empty()).then_some(annotations)
}

/// An init container that writes this operator release's monitoring assets into the
/// `volume` (an emptyDir) mounted at `path`: the pod then reads them read-only.
pub fn assets_init_container(
    settings: &super::BuildSettings,
    set: crate::assets::AssetSet,
    volume: &str,
    path: &str,
) -> k8s_openapi::api::core::v1::Container {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    let set_name = match set {
        crate::assets::AssetSet::Rules => "rules",
        crate::assets::AssetSet::Dashboards => "dashboards",
    };
    let quantities = |cpu: &str, memory: &str| {
        Some(std::collections::BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ]))
    };
    let resources = k8s_openapi::api::core::v1::ResourceRequirements {
        requests: quantities("10m", "16Mi"),
        limits: quantities("100m", "64Mi"),
        ..Default::default()
    };
    k8s_openapi::api::core::v1::Container {
        args: Some(vec![
            "assets".to_owned(),
            set_name.to_owned(),
            "--dir".to_owned(),
            path.to_owned(),
        ]),
        volume_mounts: Some(vec![mount(volume, path, false)]),
        ..container(
            &format!("{set_name}-from-operator"),
            &settings.operator_image,
            &resources,
        )
    }
}
