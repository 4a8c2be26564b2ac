//! `blocksight render --format compose`: the laptop stack. The same pure builders that the
//! controller applies (`desired`) are translated into a Docker Compose project, for developers
//! of the BlockSight API who have Docker but no Kubernetes:
//!
//! - every StatefulSet and Deployment becomes one service per container (one replica); the
//!   pod's other containers join the first one's network namespace (`network_mode:
//!   service:...`), as containers of a pod share `localhost`; init containers become services
//!   that must complete first;
//! - every Service name that selects the pod (short, `.namespace`, `.namespace.svc`,
//!   `.namespace.svc.cluster.local`, and a StatefulSet pod's stable name) is a network alias,
//!   so the configuration files, which name the Kubernetes Services, work unchanged;
//! - ConfigMap files are written as files and mounted where the pods mount them (byte-equal);
//! - credentials live only in the project's `.env` (generated once, mode 0600, kept on
//!   re-render); the compose file names them as `${VAR}`, and Secret files reach the
//!   containers as Compose secrets read from those variables;
//! - PersistentVolumeClaims and emptyDirs are named volumes (`docker compose down` keeps
//!   them; `down -v` deletes them); a pod's `fsGroup` becomes a `<workload>-volumes` service
//!   that gives the volumes to that group, as the kubelet does;
//! - container ports are published on 127.0.0.1.
//!
//! Left out, because Compose has no equivalent or a laptop does not need them (listed in the
//! file's header): NetworkPolicies, PodDisruptionBudgets, HorizontalPodAutoscalers, Ingresses,
//! ServiceMonitors and PodMonitors, CronJobs (scheduled backups), VolumeSnapshots, more than
//! one replica, and probes other than `exec` (Compose health checks run inside the container).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, PodSecurityContext, PodSpec, Probe, Secret, Volume,
};
use serde::Serialize;

use crate::desired::{self, BuildSettings, Child};
use crate::validate::ValidBlockSight;

/// The files of a rendered project, relative to its directory.
pub const COMPOSE_FILE: &str = "compose.yaml";
pub const ENV_FILE: &str = ".env";
pub const CONFIG_DIR: &str = "config";

/// A Compose project: the compose file's contents, the configuration files it mounts, and the
/// credentials its `.env` must hold.
#[derive(Debug)]
pub struct Project {
    pub file: ComposeFile,
    /// `config/<ConfigMap>/<key>` → contents (the ConfigMap's data, unchanged).
    pub config_files: BTreeMap<String, String>,
    /// Environment variables the file reads, by Secret: name → (key → variable).
    pub credentials: BTreeMap<String, BTreeMap<String, String>>,
}

#[derive(Debug, Serialize)]
pub struct ComposeFile {
    pub name: String,
    pub services: BTreeMap<String, Service>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, NamedVolume>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub configs: BTreeMap<String, FileSource>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, EnvironmentSource>,
}

#[derive(Debug, Default, Serialize)]
pub struct Service {
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub environment: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_add: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem_limit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub networks: Option<BTreeMap<String, Network>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<FileMount>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<FileMount>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub depends_on: BTreeMap<String, Dependency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<String>,
    pub restart: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct Network {
    pub aliases: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct VolumeMount {
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub target: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

#[derive(Debug, Serialize)]
pub struct FileMount {
    pub source: String,
    pub target: String,
}

#[derive(Debug, Serialize)]
pub struct Dependency {
    pub condition: String,
}

#[derive(Debug, Serialize)]
pub struct Healthcheck {
    pub test: Vec<String>,
    pub interval: String,
    pub timeout: String,
    pub retries: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_period: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct NamedVolume {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct FileSource {
    pub file: String,
}

#[derive(Debug, Serialize)]
pub struct EnvironmentSource {
    pub environment: String,
}

/// Translate one validated BlockSight (what the controller would apply) into a Compose project.
pub fn project(bs: &ValidBlockSight, settings: &BuildSettings) -> anyhow::Result<Project> {
    let desired = desired::build(bs, settings);
    let mut config_maps: BTreeMap<String, &ConfigMap> = BTreeMap::new();
    let mut services: Vec<&k8s_openapi::api::core::v1::Service> = Vec::new();
    let mut pods: Vec<Pod<'_>> = Vec::new();
    for child in &desired.children {
        match child {
            Child::ConfigMap(cm) => {
                config_maps.insert(name_of(&cm.metadata)?, cm);
            }
            Child::Service(svc) => services.push(svc),
            Child::StatefulSet(sts) => {
                let name = name_of(&sts.metadata)?;
                let spec = &sts.spec;
                pods.push(Pod {
                    hostname: format!("{name}-0"),
                    workload: name.clone(),
                    governing_service: Some(spec.service_name.clone().unwrap_or_default()),
                    labels: spec
                        .template
                        .metadata
                        .as_ref()
                        .and_then(|m| m.labels.clone())
                        .unwrap_or_default(),
                    spec: spec.template.spec.as_ref().context("pod template")?,
                    claims: spec
                        .volume_claim_templates
                        .iter()
                        .flatten()
                        .filter_map(|t| t.metadata.name.clone())
                        .map(|claim| (claim.clone(), format!("{claim}-{name}-0")))
                        .collect(),
                });
            }
            Child::Deployment(deploy) => {
                let name = name_of(&deploy.metadata)?;
                let spec = &deploy.spec;
                pods.push(Pod {
                    hostname: name.clone(),
                    workload: name,
                    governing_service: None,
                    labels: spec
                        .template
                        .metadata
                        .as_ref()
                        .and_then(|m| m.labels.clone())
                        .unwrap_or_default(),
                    spec: spec.template.spec.as_ref().context("pod template")?,
                    claims: BTreeMap::new(),
                });
            }
            _ => {}
        }
    }

    let mut out = Translation {
        bs,
        config_maps: &config_maps,
        file: ComposeFile {
            name: project_name(&bs.name),
            services: BTreeMap::new(),
            volumes: BTreeMap::new(),
            configs: BTreeMap::new(),
            secrets: BTreeMap::new(),
        },
        config_files: BTreeMap::new(),
        credentials: BTreeMap::new(),
        published: BTreeMap::new(),
    };
    for pod in &pods {
        let aliases = aliases(bs, pod, &services);
        out.pod(pod, aliases)?;
    }
    Ok(Project {
        file: out.file,
        config_files: out.config_files,
        credentials: out.credentials,
    })
}

/// A pod template and what names it.
struct Pod<'a> {
    workload: String,
    /// The pod's name in the cluster (a StatefulSet's first pod: `<name>-0`).
    hostname: String,
    /// A StatefulSet's serviceName: pods are `<pod>.<service>`.
    governing_service: Option<String>,
    labels: BTreeMap<String, String>,
    spec: &'a PodSpec,
    /// volumeClaimTemplate name → PVC name (`<template>-<statefulset>-0`).
    claims: BTreeMap<String, String>,
}

struct Translation<'a> {
    bs: &'a ValidBlockSight,
    config_maps: &'a BTreeMap<String, &'a ConfigMap>,
    file: ComposeFile,
    config_files: BTreeMap<String, String>,
    credentials: BTreeMap<String, BTreeMap<String, String>>,
    /// Host port → the service that publishes it (two would collide on 127.0.0.1).
    published: BTreeMap<i32, String>,
}

impl<'a> Translation<'a> {
    fn pod(&mut self, pod: &Pod<'_>, aliases: Vec<String>) -> anyhow::Result<()> {
        let spec = pod.spec;
        let main_name = pod.workload.clone();
        let pod_security = spec.security_context.as_ref();
        let volumes: BTreeMap<&str, &Volume> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| (v.name.as_str(), v))
            .collect();

        // fsGroup: the kubelet gives writable volumes to the group before any container
        // starts; a root service that exits does the same here.
        let mut first: Vec<String> = Vec::new();
        if let Some(group) = pod_security.and_then(|s| s.fs_group) {
            let mut writable: BTreeMap<String, String> = BTreeMap::new();
            for container in spec
                .init_containers
                .iter()
                .flatten()
                .chain(&spec.containers)
            {
                for mount in container.volume_mounts.iter().flatten() {
                    if mount.read_only == Some(true) {
                        continue;
                    }
                    if let Some(source) = self.named_volume(pod, &volumes, &mount.name)? {
                        writable
                            .entry(source)
                            .or_insert_with(|| format!("/volumes/{}", mount.name));
                    }
                }
            }
            if !writable.is_empty() {
                let name = format!("{main_name}-volumes");
                let user = pod_security.and_then(|s| s.run_as_user).unwrap_or(0);
                let mut entrypoint = vec![
                    "chown".to_owned(),
                    "-R".to_owned(),
                    format!("{user}:{group}"),
                ];
                entrypoint.extend(writable.values().cloned());
                let service = Service {
                    image: spec.containers[0].image.clone().unwrap_or_default(),
                    entrypoint: Some(entrypoint),
                    command: Some(Vec::new()),
                    user: Some("0:0".to_owned()),
                    cap_drop: vec!["ALL".to_owned()],
                    cap_add: vec!["CHOWN".to_owned()],
                    security_opt: vec!["no-new-privileges:true".to_owned()],
                    volumes: writable
                        .into_iter()
                        .map(|(source, target)| VolumeMount {
                            kind: "volume".to_owned(),
                            source,
                            target,
                            read_only: false,
                        })
                        .collect(),
                    restart: "no".to_owned(),
                    labels: component_labels(pod, "volumes"),
                    ..Default::default()
                };
                self.file.services.insert(name.clone(), service);
                first.push(name);
            }
        }

        // Init containers, in order: each waits for the one before.
        for init in spec.init_containers.iter().flatten() {
            let name = format!("{main_name}-{}", init.name);
            let mut service = self.container(pod, &volumes, pod_security, init)?;
            service.restart = "no".to_owned();
            service.depends_on = completed(&first);
            self.file.services.insert(name.clone(), service);
            first = vec![name];
        }

        let mut main: Option<Service> = None;
        for container in &spec.containers {
            let mut service = self.container(pod, &volumes, pod_security, container)?;
            service.restart = "unless-stopped".to_owned();
            service.depends_on = completed(&first);
            service.stop_grace_period = spec
                .termination_grace_period_seconds
                .map(|s| format!("{s}s"));
            let ports: Vec<i32> = container
                .ports
                .iter()
                .flatten()
                .map(|p| p.container_port)
                .collect();
            match &mut main {
                None => {
                    service.hostname = Some(pod.hostname.clone());
                    service.networks = Some(BTreeMap::from([(
                        "default".to_owned(),
                        Network {
                            aliases: aliases.clone(),
                        },
                    )]));
                    self.publish(&main_name, &mut service, &ports)?;
                    main = Some(service);
                }
                Some(main) => {
                    // A pod's containers share one network namespace; the first container's
                    // service owns it and publishes every port.
                    self.publish(&main_name, main, &ports)?;
                    service.network_mode = Some(format!("service:{main_name}"));
                    service.depends_on.insert(
                        main_name.clone(),
                        Dependency {
                            condition: "service_started".to_owned(),
                        },
                    );
                    self.file
                        .services
                        .insert(format!("{main_name}-{}", container.name), service);
                }
            }
        }
        let main = main.with_context(|| format!("{main_name}: a pod without containers"))?;
        self.file.services.insert(main_name, main);
        Ok(())
    }

    fn publish(&mut self, owner: &str, service: &mut Service, ports: &[i32]) -> anyhow::Result<()> {
        for &port in ports {
            if let Some(other) = self.published.insert(port, owner.to_owned())
                && other != owner
            {
                bail!("port {port} of {owner} and of {other} would both be published on 127.0.0.1");
            }
            service.ports.push(format!("127.0.0.1:{port}:{port}"));
        }
        Ok(())
    }

    /// One container as a Compose service (without restart, dependencies or networking).
    fn container(
        &mut self,
        pod: &Pod<'_>,
        volumes: &BTreeMap<&str, &Volume>,
        pod_security: Option<&PodSecurityContext>,
        container: &Container,
    ) -> anyhow::Result<Service> {
        let what = format!("{} container {}", pod.workload, container.name);
        let mut service = Service {
            image: container
                .image
                .clone()
                .with_context(|| format!("{what}: no image"))?,
            working_dir: container.working_dir.clone(),
            labels: component_labels(pod, &container.name),
            ..Default::default()
        };

        // Environment: literal values escaped for Compose, Secret keys as ${VAR} from .env.
        let mut literal: BTreeMap<String, String> = BTreeMap::new();
        for var in container.env.iter().flatten() {
            let value = self.env_value(pod, var).with_context(|| what.clone())?;
            if let EnvValue::Literal(text) = &value {
                literal.insert(var.name.clone(), text.clone());
            }
            service
                .environment
                .insert(var.name.clone(), value.compose());
        }
        for source in container.env_from.iter().flatten() {
            let prefix = source.prefix.clone().unwrap_or_default();
            if let Some(cm) = &source.config_map_ref {
                let config_map = self.config_map(&cm.name).with_context(|| what.clone())?;
                for (key, value) in config_map.data.iter().flatten() {
                    literal.insert(format!("{prefix}{key}"), value.clone());
                    service
                        .environment
                        .insert(format!("{prefix}{key}"), escape(value));
                }
            }
            if let Some(secret) = &source.secret_ref {
                bail!(
                    "{what}: envFrom Secret {} (every key) has no laptop equivalent",
                    secret.name
                );
            }
        }
        // Kubernetes expands $(VAR) in command and args from the container's environment.
        let expand = |args: &Option<Vec<String>>| {
            args.as_ref().map(|args| {
                args.iter()
                    .map(|arg| escape(&expand_references(arg, &literal)))
                    .collect::<Vec<_>>()
            })
        };
        service.entrypoint = expand(&container.command);
        service.command = expand(&container.args);

        // Security context: the container's, over the pod's.
        let security = container.security_context.as_ref();
        let user = security
            .and_then(|s| s.run_as_user)
            .or(pod_security.and_then(|s| s.run_as_user));
        let group = security
            .and_then(|s| s.run_as_group)
            .or(pod_security.and_then(|s| s.run_as_group));
        service.user = match (user, group) {
            (Some(u), Some(g)) => Some(format!("{u}:{g}")),
            (Some(u), None) => Some(u.to_string()),
            _ => None,
        };
        if let Some(group) = pod_security.and_then(|s| s.fs_group) {
            service.group_add.push(group.to_string());
        }
        if let Some(security) = security {
            service.read_only = security.read_only_root_filesystem == Some(true);
            if let Some(caps) = &security.capabilities {
                service.cap_drop = caps.drop.clone().unwrap_or_default();
                service.cap_add = caps.add.clone().unwrap_or_default();
            }
            if security.allow_privilege_escalation == Some(false) {
                service
                    .security_opt
                    .push("no-new-privileges:true".to_owned());
            }
        }

        // Limits (requests have no meaning without a scheduler).
        if let Some(limits) = container.resources.as_ref().and_then(|r| r.limits.as_ref()) {
            if let Some(memory) = limits.get("memory") {
                service.mem_limit = Some(memory_bytes(&memory.0).with_context(|| what.clone())?);
            }
            if let Some(cpu) = limits.get("cpu") {
                service.cpus = Some(cpus(&cpu.0).with_context(|| what.clone())?);
            }
        }

        service.healthcheck = container
            .readiness_probe
            .as_ref()
            .and_then(|p| healthcheck(p, container.startup_probe.as_ref()));

        for mount in container.volume_mounts.iter().flatten() {
            self.mount(pod, volumes, &mut service, mount)
                .with_context(|| format!("{what}: volume {}", mount.name))?;
        }
        Ok(service)
    }

    fn env_value(&mut self, pod: &Pod<'_>, var: &EnvVar) -> anyhow::Result<EnvValue> {
        if let Some(value) = &var.value {
            return Ok(EnvValue::Literal(value.clone()));
        }
        let Some(source) = &var.value_from else {
            return Ok(EnvValue::Literal(String::new()));
        };
        if let Some(secret) = &source.secret_key_ref {
            return Ok(EnvValue::Variable(
                self.credential(&secret.name, &secret.key),
            ));
        }
        if let Some(cm) = &source.config_map_key_ref {
            let value = self
                .config_map(&cm.name)?
                .data
                .as_ref()
                .and_then(|d| d.get(&cm.key))
                .with_context(|| {
                    format!(
                        "env {}: ConfigMap {} has no key {}",
                        var.name, cm.name, cm.key
                    )
                })?;
            return Ok(EnvValue::Literal(value.clone()));
        }
        if let Some(field) = &source.field_ref {
            return match field.field_path.as_str() {
                "metadata.name" => Ok(EnvValue::Literal(pod.hostname.clone())),
                "metadata.namespace" => Ok(EnvValue::Literal(self.bs.namespace.clone())),
                other => bail!(
                    "env {}: fieldRef {other} has no laptop equivalent",
                    var.name
                ),
            };
        }
        bail!(
            "env {}: this kind of valueFrom has no laptop equivalent",
            var.name
        )
    }

    /// The `.env` variable that holds `key` of the Secret `secret`.
    fn credential(&mut self, secret: &str, key: &str) -> String {
        let variable = env_name(&format!("{secret}_{key}"));
        self.credentials
            .entry(secret.to_owned())
            .or_default()
            .insert(key.to_owned(), variable.clone());
        variable
    }

    fn config_map(&self, name: &str) -> anyhow::Result<&'a ConfigMap> {
        self.config_maps
            .get(name)
            .copied()
            .with_context(|| format!("ConfigMap {name} is not one the operator builds"))
    }

    /// The named volume behind a pod volume (claims and emptyDirs), or None for files.
    fn named_volume(
        &mut self,
        pod: &Pod<'_>,
        volumes: &BTreeMap<&str, &Volume>,
        name: &str,
    ) -> anyhow::Result<Option<String>> {
        let source = if let Some(pvc) = pod.claims.get(name) {
            pvc.clone()
        } else if let Some(volume) = volumes.get(name) {
            if let Some(claim) = &volume.persistent_volume_claim {
                claim.claim_name.clone()
            } else if volume.empty_dir.is_some() {
                format!("{}-{name}", pod.hostname)
            } else {
                return Ok(None);
            }
        } else {
            bail!("no volume or volumeClaimTemplate named {name}");
        };
        self.file
            .volumes
            .entry(source.clone())
            .or_insert_with(|| NamedVolume {
                labels: BTreeMap::from([
                    ("live.blocksight.instance".to_owned(), self.bs.name.clone()),
                    ("live.blocksight.workload".to_owned(), pod.workload.clone()),
                ]),
            });
        Ok(Some(source))
    }

    fn mount(
        &mut self,
        pod: &Pod<'_>,
        volumes: &BTreeMap<&str, &Volume>,
        service: &mut Service,
        mount: &k8s_openapi::api::core::v1::VolumeMount,
    ) -> anyhow::Result<()> {
        let read_only = mount.read_only == Some(true);
        if let Some(source) = self.named_volume(pod, volumes, &mount.name)? {
            if mount.sub_path.as_deref().is_some_and(|p| !p.is_empty()) {
                bail!("subPath on a named volume has no laptop equivalent");
            }
            service.volumes.push(VolumeMount {
                kind: "volume".to_owned(),
                source,
                target: mount.mount_path.clone(),
                read_only,
            });
            return Ok(());
        }
        let volume = volumes[mount.name.as_str()];
        // Files: (key in the ConfigMap or Secret, path below the mount).
        let files = |items: &Option<Vec<k8s_openapi::api::core::v1::KeyToPath>>,
                     keys: Vec<String>| {
            let all: Vec<(String, String)> = match items {
                Some(items) => items
                    .iter()
                    .map(|i| (i.key.clone(), i.path.clone()))
                    .collect(),
                None => keys.into_iter().map(|k| (k.clone(), k)).collect(),
            };
            match mount.sub_path.as_deref().filter(|p| !p.is_empty()) {
                // One file, mounted at the mount path itself.
                Some(sub) => all
                    .into_iter()
                    .filter(|(_, path)| path == sub)
                    .map(|(key, _)| (key, mount.mount_path.clone()))
                    .collect::<Vec<_>>(),
                None => all
                    .into_iter()
                    .map(|(key, path)| {
                        (
                            key,
                            format!("{}/{path}", mount.mount_path.trim_end_matches('/')),
                        )
                    })
                    .collect(),
            }
        };
        if let Some(cm) = &volume.config_map {
            let config_map = self.config_map(&cm.name)?;
            let keys = config_map
                .data
                .iter()
                .flatten()
                .map(|(k, _)| k.clone())
                .collect();
            for (key, target) in files(&cm.items, keys) {
                let contents = config_map
                    .data
                    .as_ref()
                    .and_then(|d| d.get(&key))
                    .with_context(|| format!("ConfigMap {} has no key {key}", cm.name))?
                    .clone();
                let file = format!("{CONFIG_DIR}/{}/{key}", cm.name);
                let config = format!("{}-{key}", cm.name);
                self.config_files.insert(file.clone(), contents);
                self.file.configs.insert(
                    config.clone(),
                    FileSource {
                        file: format!("./{file}"),
                    },
                );
                service.configs.push(FileMount {
                    source: config,
                    target,
                });
            }
            return Ok(());
        }
        if let Some(secret) = &volume.secret {
            let name = secret
                .secret_name
                .clone()
                .context("secret volume without secretName")?;
            let Some(items) = &secret.items else {
                bail!("Secret {name} mounted whole: name its keys (items) for the laptop stack");
            };
            for (key, target) in files(&Some(items.clone()), Vec::new()) {
                let variable = self.credential(&name, &key);
                let compose_secret = format!("{name}-{key}");
                self.file.secrets.insert(
                    compose_secret.clone(),
                    EnvironmentSource {
                        environment: variable,
                    },
                );
                service.secrets.push(FileMount {
                    source: compose_secret,
                    target,
                });
            }
            return Ok(());
        }
        bail!("this kind of volume has no laptop equivalent")
    }
}

enum EnvValue {
    Literal(String),
    /// A variable of `.env`.
    Variable(String),
}

impl EnvValue {
    fn compose(&self) -> String {
        match self {
            EnvValue::Literal(text) => escape(text),
            EnvValue::Variable(name) => {
                format!("${{{name}:?is not set: run blocksight render --format compose again}}")
            }
        }
    }
}

fn name_of(meta: &kube::api::ObjectMeta) -> anyhow::Result<String> {
    meta.name.clone().context("an object without a name")
}

/// Compose project names: lowercase letters, digits, dashes and underscores.
pub fn project_name(blocksight: &str) -> String {
    format!("blocksight-{blocksight}")
}

/// `dev-postgres-credentials` + `superuser-password` → `DEV_POSTGRES_CREDENTIALS_SUPERUSER_PASSWORD`.
pub fn env_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// A literal for a Compose file: `$` starts an interpolation there, `$$` is one `$`.
pub fn escape(text: &str) -> String {
    text.replace('$', "$$")
}

/// Kubernetes' `$(VAR)` expansion in command and args: a variable the container defines is
/// replaced, `$$(VAR)` stays `$(VAR)`, anything else is left as written.
pub fn expand_references(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(inner) = tail.strip_prefix("$(")
            && let Some(end) = inner.find(')')
            && let Some(value) = env.get(&inner[..end])
        {
            out.push_str(value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Every name a Service gives the pod, in the forms cluster DNS answers.
fn aliases(
    bs: &ValidBlockSight,
    pod: &Pod<'_>,
    services: &[&k8s_openapi::api::core::v1::Service],
) -> Vec<String> {
    let ns = &bs.namespace;
    let forms = |name: &str| {
        [
            name.to_owned(),
            format!("{name}.{ns}"),
            format!("{name}.{ns}.svc"),
            format!("{name}.{ns}.svc.cluster.local"),
        ]
    };
    let mut names = BTreeSet::new();
    for svc in services {
        let Some(selector) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
            continue;
        };
        if selector.is_empty() || !selector.iter().all(|(k, v)| pod.labels.get(k) == Some(v)) {
            continue;
        }
        let Some(name) = &svc.metadata.name else {
            continue;
        };
        names.extend(forms(name));
        if pod.governing_service.as_deref() == Some(name.as_str()) {
            names.extend(forms(&format!("{}.{name}", pod.hostname)));
        }
    }
    names.into_iter().collect()
}

fn component_labels(pod: &Pod<'_>, container: &str) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = pod
        .labels
        .iter()
        .filter(|(k, _)| k.starts_with("app.kubernetes.io/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert("live.blocksight.workload".to_owned(), pod.workload.clone());
    labels.insert("live.blocksight.container".to_owned(), container.to_owned());
    labels
}

fn completed(services: &[String]) -> BTreeMap<String, Dependency> {
    services
        .iter()
        .map(|s| {
            (
                s.clone(),
                Dependency {
                    condition: "service_completed_successfully".to_owned(),
                },
            )
        })
        .collect()
}

/// A readiness probe that runs a command becomes the health check (Compose runs checks inside
/// the container, so HTTP and TCP probes, which the kubelet runs from outside, have none).
fn healthcheck(readiness: &Probe, startup: Option<&Probe>) -> Option<Healthcheck> {
    let command = readiness.exec.as_ref()?.command.clone()?;
    let mut test = vec!["CMD".to_owned()];
    test.extend(command.iter().map(|c| escape(c)));
    let start_period = startup.map(|p| {
        format!(
            "{}s",
            p.period_seconds.unwrap_or(10) * p.failure_threshold.unwrap_or(3)
        )
    });
    Some(Healthcheck {
        test,
        interval: format!("{}s", readiness.period_seconds.unwrap_or(10)),
        timeout: format!("{}s", readiness.timeout_seconds.unwrap_or(1)),
        retries: readiness.failure_threshold.unwrap_or(3),
        start_period,
    })
}

/// A Kubernetes memory quantity as Compose's byte value (`640Mi` → `640m`, Compose's `m`
/// being MiB; decimal units in bytes).
pub fn memory_bytes(quantity: &str) -> anyhow::Result<String> {
    const BINARY: [(&str, &str); 4] = [("Ki", "k"), ("Mi", "m"), ("Gi", "g"), ("Ti", "t")];
    for (suffix, unit) in BINARY {
        if let Some(number) = quantity.strip_suffix(suffix)
            && let Ok(n) = number.parse::<u64>()
        {
            return Ok(format!("{n}{unit}"));
        }
    }
    const DECIMAL: [(&str, f64); 5] = [("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12), ("", 1.0)];
    for (suffix, factor) in DECIMAL {
        if let Some(number) = quantity.strip_suffix(suffix)
            && let Ok(n) = number.parse::<f64>()
            && n >= 0.0
        {
            return Ok(format!("{}", (n * factor).round() as u64));
        }
    }
    bail!("memory limit {quantity:?} is not a quantity Compose can take")
}

/// A Kubernetes CPU quantity as Compose's `cpus` (`500m` → `0.5`).
pub fn cpus(quantity: &str) -> anyhow::Result<String> {
    let cores = match quantity.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().map(|m| m / 1000.0),
        None => quantity.parse::<f64>(),
    }
    .ok()
    .filter(|c| *c > 0.0)
    .with_context(|| format!("CPU limit {quantity:?} is not a quantity Compose can take"))?;
    Ok(format!("{cores}"))
}

/// The compose file as written: a header that says what it is and what it leaves out, then
/// the project.
pub fn compose_yaml(bs: &ValidBlockSight, file: &ComposeFile) -> String {
    let mut out = format!(
        "# The BlockSight {name:?} as a Docker Compose project (laptop stack), rendered by\n\
         #   blocksight render --format compose\n\
         # from the same builders the operator applies: images, configuration files\n\
         # ({CONFIG_DIR}/), ports and volumes are the cluster's. Credentials are in {ENV_FILE}\n\
         # (generated once, never in this file). Start: docker compose up -d\n\
         # Not here (no Compose equivalent, or not needed on a laptop): NetworkPolicies,\n\
         # PodDisruptionBudgets, autoscaling and extra replicas, Ingresses, ServiceMonitors,\n\
         # scheduled backups (CronJobs), VolumeSnapshots, HTTP and TCP probes.\n",
        name = bs.name
    );
    desired::write_yaml(&mut out, file);
    out
}

/// The `.env` of a project: every credential the compose file names. Values already in
/// `existing` are kept when all the keys of their Secret are there (PostgreSQL and the
/// volumes keep the first ones); the others are generated like the controller's Secrets.
pub fn env_file(
    bs: &ValidBlockSight,
    project: &Project,
    existing: &BTreeMap<String, String>,
) -> anyhow::Result<(String, EnvSummary)> {
    let generated: BTreeMap<String, Secret> = desired::secrets::generate(bs, &mut rand::rng())
        .into_iter()
        .filter_map(|s| s.metadata.name.clone().map(|n| (n, s)))
        .collect();
    let mut summary = EnvSummary::default();
    let mut out = format!(
        "# Credentials of the BlockSight {:?} laptop stack ({COMPOSE_FILE}), generated by\n\
         # `blocksight render --format compose`; re-rendering keeps them. Private: never commit.\n",
        bs.name
    );
    for (secret, keys) in &project.credentials {
        let kept = keys.values().all(|v| existing.contains_key(v));
        out.push_str(&format!("# Secret {secret}\n"));
        for (key, variable) in keys {
            let value = if kept {
                summary.kept += 1;
                existing[variable].clone()
            } else if let Some(value) = generated.get(secret).and_then(|s| secret_value(s, key)) {
                summary.generated += 1;
                value
            } else {
                // A Secret the user manages in the cluster (spec.credentials): no value to
                // generate; the compose file refuses to start until it is set.
                summary.missing.push(variable.clone());
                existing.get(variable).cloned().unwrap_or_default()
            };
            let value = value.strip_suffix('\n').unwrap_or(&value);
            if value.contains(['\'', '\n']) {
                bail!(
                    "Secret {secret} key {key}: a value with a quote or a line break cannot go into {ENV_FILE}"
                );
            }
            out.push_str(&format!("{variable}='{value}'\n"));
        }
    }
    Ok((out, summary))
}

#[derive(Debug, Default)]
pub struct EnvSummary {
    pub kept: usize,
    pub generated: usize,
    /// Variables with no value (Secrets the user manages): set them before starting.
    pub missing: Vec<String>,
}

fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    if let Some(value) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(value.clone());
    }
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// Read the `KEY='value'` lines of an existing `.env` (ours; other lines are ignored).
pub fn read_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(v);
            (k.trim().to_owned(), v.to_owned())
        })
        .collect()
}

/// What [`write_project`] wrote.
#[derive(Debug)]
pub struct Written {
    pub dir: PathBuf,
    pub config_files: usize,
    pub env: EnvSummary,
}

/// Write `compose.yaml`, the configuration files and `.env` (mode 0600, written last and
/// atomically) into `dir`.
pub fn write_project(
    bs: &ValidBlockSight,
    settings: &BuildSettings,
    dir: &Path,
) -> anyhow::Result<Written> {
    let project = project(bs, settings)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let env_path = dir.join(ENV_FILE);
    let existing = match std::fs::read_to_string(&env_path) {
        Ok(text) => read_env(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", env_path.display())),
    };
    let (env, summary) = env_file(bs, &project, &existing)?;
    for (file, contents) in &project.config_files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    let compose = dir.join(COMPOSE_FILE);
    std::fs::write(&compose, compose_yaml(bs, &project.file))
        .with_context(|| format!("writing {}", compose.display()))?;
    write_private(&env_path, &env)?;
    Ok(Written {
        dir: dir.to_owned(),
        config_files: project.config_files.len(),
        env: summary,
    })
}

/// Write a file only its owner can read, replacing it atomically.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let partial = path.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&partial)
        .with_context(|| format!("writing {}", partial.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_limits_in_compose_units() {
        assert_eq!(memory_bytes("640Mi").unwrap(), "640m");
        assert_eq!(memory_bytes("2Gi").unwrap(), "2g");
        assert_eq!(memory_bytes("1G").unwrap(), "1000000000");
        assert_eq!(memory_bytes("134217728").unwrap(), "134217728");
        assert_eq!(
            memory_bytes("1.5Gi").unwrap_err().to_string(),
            "memory limit \"1.5Gi\" is not a quantity Compose can take"
        );
    }

    #[test]
    fn cpu_limits_in_cores() {
        assert_eq!(cpus("1").unwrap(), "1");
        assert_eq!(cpus("200m").unwrap(), "0.2");
        assert_eq!(cpus("2.5").unwrap(), "2.5");
        assert!(cpus("0").is_err());
    }

    #[test]
    fn literals_escape_interpolation() {
        assert_eq!(escape("rpcauth=u:salt$hash"), "rpcauth=u:salt$$hash");
        assert_eq!(escape("$$"), "$$$$");
    }

    #[test]
    fn kubernetes_references_expand_like_the_kubelet() {
        let env = BTreeMap::from([("NAME".to_owned(), "nightly".to_owned())]);
        assert_eq!(expand_references("--name=$(NAME)", &env), "--name=nightly");
        assert_eq!(expand_references("$$(NAME)", &env), "$(NAME)");
        assert_eq!(expand_references("$(OTHER) $", &env), "$(OTHER) $");
    }

    #[test]
    fn env_names_are_shell_names() {
        assert_eq!(
            env_name("dev-bitcoind-rpc_rpcauth.conf"),
            "DEV_BITCOIND_RPC_RPCAUTH_CONF"
        );
    }

    #[test]
    fn env_file_lines_read_back() {
        let env = read_env("# c\nA='x$y:z'\nB=plain\n");
        assert_eq!(env["A"], "x$y:z");
        assert_eq!(env["B"], "plain");
    }
}
