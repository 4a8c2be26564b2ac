//! Validate step (pure): a `BlockSight` becomes a [`ValidBlockSight`] with every default
//! resolved, or an [`InvalidSpec`] naming each offending field.
//!
//! The CEL rules are the CRD's own (`x-kubernetes-validations`), evaluated locally with
//! kube's CEL support, so `render`, the controller and the API server agree on what is valid.

use std::fmt;
use std::sync::OnceLock;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::core::cel::{CompiledSchema, compile_schema, validate_compiled};
use kube::{CustomResourceExt, Resource, ResourceExt};

use crate::crd::defaults;
use crate::crd::{
    BlockSight, DeletionPolicy, Network, Placement, PrometheusOperatorMode, SecretKeyRef,
    SnapshotComponent, StorageSpec,
};
use crate::schedule::Schedule;

/// One problem with the spec, named by its field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path such as `spec.bitcoind.prune`.
    pub field: String,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Why a spec was rejected: every problem found, not only the first.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct InvalidSpec(pub Vec<FieldError>);

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("; "))
    }
}

/// A persistent volume with its size resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Volume {
    pub size: Quantity,
    pub storage_class_name: Option<String>,
    /// VolumeSnapshot a new claim is created from (bitcoind and electrs only).
    pub from_snapshot: Option<String>,
}

/// Scheduled VolumeSnapshots of the chain data, when enabled.
#[derive(Clone, Debug, PartialEq)]
pub struct VolumeSnapshots {
    pub schedule: Schedule,
    pub keep_last: usize,
    pub class_name: Option<String>,
    /// The volumes to snapshot, in a fixed order; electrs only while it runs.
    pub components: Vec<SnapshotComponent>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Bitcoind {
    pub image: String,
    pub txindex: bool,
    pub prune_mib: i64,
    pub dbcache_mib: i64,
    pub extra_args: Vec<String>,
    pub storage: Volume,
    pub resources: ResourceRequirements,
    pub placement: Placement,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Electrs {
    pub image: String,
    pub replicas: i32,
    pub storage: Volume,
    pub resources: ResourceRequirements,
    pub placement: Placement,
}

/// Where the database lives.
#[derive(Clone, Debug, PartialEq)]
pub enum Postgres {
    InCluster {
        image: String,
        database: String,
        storage: Volume,
        resources: ResourceRequirements,
        placement: Placement,
    },
    External {
        database: String,
        uri: SecretKeyRef,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Redis {
    pub image: String,
    pub persistence: Option<Volume>,
    pub resources: ResourceRequirements,
    pub placement: Placement,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Autoscaling {
    pub min_replicas: i32,
    pub max_replicas: i32,
    pub target_cpu_percent: i32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ingress {
    pub host: String,
    pub class_name: Option<String>,
    pub tls_secret: Option<String>,
    pub cluster_issuer: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Api {
    pub image: String,
    /// Replicas without autoscaling.
    pub replicas: i32,
    pub autoscaling: Option<Autoscaling>,
    pub env: Vec<EnvVar>,
    pub ingress: Option<Ingress>,
    pub resources: ResourceRequirements,
    pub placement: Placement,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Prometheus {
    pub image: String,
    pub retention: String,
    pub storage: Volume,
    pub resources: ResourceRequirements,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Grafana {
    pub image: String,
    pub resources: ResourceRequirements,
}

/// Where backups are stored.
#[derive(Clone, Debug, PartialEq)]
pub enum BackupTarget {
    /// The PVC `<name>-backups`.
    Volume(Volume),
    S3 {
        bucket: String,
        /// Explicit prefix; None: `blocksight/<namespace>/<blocksight>/` of the backup's
        /// BlockSight.
        prefix: Option<String>,
        region: Option<String>,
        endpoint: Option<String>,
        force_path_style: bool,
        /// Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; None: pod identity.
        credentials: Option<String>,
    },
}

/// Backups of a BlockSight, every default resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Backup {
    /// spec.backup.enabled: the CronJob runs. BlockSightBackups work either way.
    pub scheduled: bool,
    pub schedule: crate::schedule::Schedule,
    pub retention: Option<std::time::Duration>,
    pub keep_last: Option<usize>,
    pub target: BackupTarget,
    pub verify_schedule: Option<crate::schedule::Schedule>,
    pub service_account_annotations: std::collections::BTreeMap<String, String>,
}

/// A BlockSight that passed validation, every default resolved. Builders take only this.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidBlockSight {
    pub name: String,
    pub namespace: String,
    /// Controller reference for children; None when the object has no uid yet (offline render).
    pub owner: Option<OwnerReference>,
    pub network: Network,
    pub paused: bool,
    pub deletion_policy: DeletionPolicy,
    pub bitcoind: Bitcoind,
    pub electrs: Option<Electrs>,
    pub postgres: Postgres,
    pub redis: Redis,
    pub api: Api,
    pub prometheus: Option<Prometheus>,
    pub grafana: Option<Grafana>,
    pub prometheus_operator: PrometheusOperatorMode,
    /// None when NetworkPolicies are disabled.
    pub network_policy: Option<crate::crd::NetworkPolicySpec>,
    /// Secrets the user manages, used instead of generated credentials.
    pub credentials: crate::crd::CredentialsSpec,
    /// The value of the `blocksight.live/rotate-credentials` annotation: a new value asks for
    /// new generated credentials and a rolling restart of their consumers.
    pub rotation: Option<String>,
    /// None when spec.volumeSnapshots is absent or disabled.
    pub volume_snapshots: Option<VolumeSnapshots>,
    /// Backups; None when spec.backup has no destination.
    pub backup: Option<Backup>,
    /// spec.postgres.restoreFrom: the BlockSightBackup the new database starts from.
    pub restore_from: Option<String>,
}

/// The CRD schema with its CEL rules compiled once per process.
fn compiled_schema() -> &'static CompiledSchema {
    static SCHEMA: OnceLock<CompiledSchema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let crd = BlockSight::crd();
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("the derived CRD has a schema");
        compile_schema(&serde_json::to_value(schema).expect("schema serializes"))
    })
}

/// Evaluate the CRD's CEL rules on `bs` (and the transition rules against `old`).
pub fn check_cel(bs: &BlockSight, old: Option<&BlockSight>) -> Vec<FieldError> {
    let object = serde_json::to_value(bs).expect("BlockSight serializes");
    let old = old.map(|o| serde_json::to_value(o).expect("BlockSight serializes"));
    match validate_compiled(compiled_schema(), &object, old.as_ref()) {
        Ok(()) => vec![],
        Err(errors) => errors
            .into_vec()
            .into_iter()
            .map(|e| FieldError {
                field: e.field_path.trim_start_matches('.').to_owned(),
                reason: e.message,
            })
            .collect(),
    }
}

/// Evaluate the CEL rules of any of our kinds (BlockSightBackup, BlockSightRestore) on
/// `object`, and the transition rules against `old`. Compiles the schema on each call.
pub fn check_cel_of<K>(object: &K, old: Option<&K>) -> Vec<FieldError>
where
    K: CustomResourceExt + serde::Serialize,
{
    let crd = K::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("the derived CRD has a schema");
    let compiled = compile_schema(&serde_json::to_value(schema).expect("schema serializes"));
    let value = serde_json::to_value(object).expect("our kinds serialize");
    let old = old.map(|o| serde_json::to_value(o).expect("our kinds serialize"));
    match validate_compiled(&compiled, &value, old.as_ref()) {
        Ok(()) => vec![],
        Err(errors) => errors
            .into_vec()
            .into_iter()
            .map(|e| FieldError {
                field: e.field_path.trim_start_matches('.').to_owned(),
                reason: e.message,
            })
            .collect(),
    }
}

/// Validate `bs` into a [`ValidBlockSight`]. Pure: reads nothing but its argument.
pub fn validate(bs: &BlockSight) -> Result<ValidBlockSight, InvalidSpec> {
    validate_with_cel(bs, check_cel(bs, None))
}

/// [`validate`], given what [`check_cel`] found on `bs` (the expensive part, which the
/// controller evaluates once per generation).
pub fn validate_with_cel(
    bs: &BlockSight,
    cel_problems: Vec<FieldError>,
) -> Result<ValidBlockSight, InvalidSpec> {
    let mut problems = cel_problems;
    let name = bs.name_any();
    if name.is_empty() {
        problems.push(FieldError {
            field: "metadata.name".into(),
            reason: "is required".into(),
        });
    } else if let Some(reason) =
        crate::crd::name_problem(&name, crate::crd::BLOCKSIGHT_NAME_MAX, true)
    {
        problems.push(FieldError {
            field: "metadata.name".into(),
            reason,
        });
    }
    let spec = &bs.spec;
    check_resources(
        &mut problems,
        "spec.bitcoind.resources",
        &spec.bitcoind.resources,
    );
    check_resources(
        &mut problems,
        "spec.electrs.resources",
        &spec.electrs.resources,
    );
    check_resources(
        &mut problems,
        "spec.postgres.resources",
        &spec.postgres.resources,
    );
    check_resources(&mut problems, "spec.redis.resources", &spec.redis.resources);
    check_resources(&mut problems, "spec.api.resources", &spec.api.resources);
    check_resources(
        &mut problems,
        "spec.monitoring.prometheus.resources",
        &spec.monitoring.prometheus.resources,
    );
    check_resources(
        &mut problems,
        "spec.monitoring.grafana.resources",
        &spec.monitoring.grafana.resources,
    );
    // CEL checks the schedule's shape only; the parser Kubernetes-compatible CronJobs use
    // decides (ranges, names, steps).
    let schedule = spec
        .volume_snapshots
        .as_ref()
        .filter(|v| v.enabled)
        .and_then(|v| match Schedule::parse(&v.schedule) {
            Ok(schedule) => Some(schedule),
            // The CEL rule already named it: one message per problem.
            Err(_)
                if problems
                    .iter()
                    .any(|p| p.field == "spec.volumeSnapshots.schedule") =>
            {
                None
            }
            Err(e) => {
                problems.push(FieldError {
                    field: "spec.volumeSnapshots.schedule".into(),
                    reason: e.to_string(),
                });
                None
            }
        });
    let backup = check_backup(bs, &mut problems);
    if !problems.is_empty() {
        // One problem can be reported by two rules (e.g. a field rule and a struct rule).
        problems.sort_by(|a, b| (&a.field, &a.reason).cmp(&(&b.field, &b.reason)));
        problems.dedup();
        return Err(InvalidSpec(problems));
    }

    let network = spec.network;
    let dbcache_mib = spec
        .bitcoind
        .dbcache
        .unwrap_or_else(|| defaults::dbcache_mib(network));
    let sized = |component: &str, given: &Option<ResourceRequirements>| {
        given
            .clone()
            .unwrap_or_else(|| defaults::resources(component, network, dbcache_mib))
    };
    let volume = |component: &str, given: &StorageSpec| Volume {
        size: given
            .size
            .clone()
            .map(Quantity)
            .unwrap_or_else(|| defaults::storage(component, network)),
        storage_class_name: given.storage_class_name.clone(),
        from_snapshot: given.from_snapshot.clone(),
    };
    let image =
        |given: &Option<String>, default: &str| given.clone().unwrap_or_else(|| default.to_owned());
    let database = spec
        .postgres
        .database
        .clone()
        .unwrap_or_else(|| "blocksight".to_owned());

    let bitcoind = Bitcoind {
        image: image(&spec.bitcoind.image, defaults::image::BITCOIND),
        txindex: spec.bitcoind.txindex.unwrap_or(true),
        prune_mib: spec.bitcoind.prune.unwrap_or(0),
        dbcache_mib,
        extra_args: spec.bitcoind.extra_args.clone(),
        storage: volume("bitcoind", &spec.bitcoind.storage),
        resources: sized("bitcoind", &spec.bitcoind.resources),
        placement: spec.bitcoind.placement.clone(),
    };
    let electrs = spec.electrs.enabled.then(|| Electrs {
        image: image(&spec.electrs.image, defaults::image::ELECTRS),
        replicas: spec.electrs.replicas.unwrap_or(1),
        storage: volume("electrs", &spec.electrs.storage),
        resources: sized("electrs", &spec.electrs.resources),
        placement: spec.electrs.placement.clone(),
    });
    let postgres = match &spec.postgres.external {
        Some(external) => Postgres::External {
            database,
            uri: external.secret_ref.clone(),
        },
        None => Postgres::InCluster {
            image: image(&spec.postgres.image, defaults::image::POSTGRES),
            database,
            storage: volume("postgres", &spec.postgres.storage),
            resources: sized("postgres", &spec.postgres.resources),
            placement: spec.postgres.placement.clone(),
        },
    };
    let redis = Redis {
        image: image(&spec.redis.image, defaults::image::REDIS),
        persistence: spec.redis.persistence.enabled.then(|| Volume {
            size: spec
                .redis
                .persistence
                .size
                .clone()
                .map(Quantity)
                .unwrap_or_else(|| defaults::storage("redis", network)),
            storage_class_name: spec.redis.persistence.storage_class_name.clone(),
            from_snapshot: None,
        }),
        resources: sized("redis", &spec.redis.resources),
        placement: spec.redis.placement.clone(),
    };
    let scaling = &spec.api.autoscaling;
    let api = Api {
        image: image(&spec.api.image, defaults::image::API),
        replicas: spec
            .api
            .replicas
            .unwrap_or_else(|| defaults::api_replicas(network)),
        autoscaling: scaling.enabled.then(|| Autoscaling {
            min_replicas: scaling.min_replicas.unwrap_or(2),
            max_replicas: scaling
                .max_replicas
                .unwrap_or(10)
                .max(scaling.min_replicas.unwrap_or(2)),
            target_cpu_percent: scaling.target_cpu_utilization_percentage.unwrap_or(70),
        }),
        env: spec.api.env.clone(),
        ingress: spec.api.ingress.enabled.then(|| Ingress {
            host: spec.api.ingress.host.clone().unwrap_or_default(),
            class_name: spec.api.ingress.class_name.clone(),
            tls_secret: spec.api.ingress.tls.as_ref().map(|t| t.secret_name.clone()),
            cluster_issuer: spec
                .api
                .ingress
                .tls
                .as_ref()
                .and_then(|t| t.cluster_issuer.clone()),
        }),
        resources: sized("api", &spec.api.resources),
        placement: spec.api.placement.clone(),
    };
    let prom = &spec.monitoring.prometheus;
    let prometheus = prom.enabled.then(|| Prometheus {
        image: image(&prom.image, defaults::image::PROMETHEUS),
        retention: prom
            .retention
            .clone()
            .unwrap_or_else(|| defaults::PROMETHEUS_RETENTION.to_owned()),
        storage: volume("prometheus", &prom.storage),
        resources: sized("prometheus", &prom.resources),
    });
    let graf = &spec.monitoring.grafana;
    let grafana = graf.enabled.then(|| Grafana {
        image: image(&graf.image, defaults::image::GRAFANA),
        resources: sized("grafana", &graf.resources),
    });

    let volume_snapshots = match (&spec.volume_snapshots, schedule) {
        (Some(v), Some(schedule)) => {
            let mut components = v
                .components
                .clone()
                .unwrap_or_else(|| vec![SnapshotComponent::Bitcoind, SnapshotComponent::Electrs]);
            components.sort();
            components.dedup();
            // The default list names electrs; a disabled electrs has no volume worth taking.
            components.retain(|c| *c != SnapshotComponent::Electrs || spec.electrs.enabled);
            Some(VolumeSnapshots {
                schedule,
                keep_last: usize::try_from(v.keep_last).unwrap_or(1),
                class_name: v.volume_snapshot_class_name.clone(),
                components,
            })
        }
        _ => None,
    };

    Ok(ValidBlockSight {
        name,
        namespace: bs.namespace().unwrap_or_else(|| "default".to_owned()),
        owner: bs
            .meta()
            .uid
            .is_some()
            .then(|| bs.controller_owner_ref(&()).expect("has a uid")),
        network,
        paused: spec.paused,
        deletion_policy: spec.deletion_policy,
        bitcoind,
        electrs,
        postgres,
        redis,
        api,
        prometheus,
        grafana,
        prometheus_operator: spec.monitoring.prometheus_operator,
        network_policy: spec
            .network_policy
            .enabled
            .then(|| spec.network_policy.clone()),
        credentials: spec.credentials.clone(),
        rotation: bs
            .annotations()
            .get(crate::names::ROTATE_ANNOTATION)
            .cloned(),
        volume_snapshots,
        backup,
        restore_from: spec
            .postgres
            .restore_from
            .as_ref()
            .map(|r| r.backup.clone()),
    })
}

/// spec.backup (and spec.postgres.restoreFrom, which needs it) resolved, or the problems
/// named by field. The CRD's CEL rules check the shape; schedules and combinations are
/// checked here, with the messages the user needs.
fn check_backup(bs: &BlockSight, problems: &mut Vec<FieldError>) -> Option<Backup> {
    let spec = &bs.spec.backup;
    let mut problem = |field: &str, reason: String| {
        problems.push(FieldError {
            field: field.to_owned(),
            reason,
        })
    };
    let external = bs.spec.postgres.external.is_some();
    if spec.enabled && external {
        problem(
            "spec.backup.enabled",
            "backups of an external PostgreSQL are not supported: use its provider's backups"
                .into(),
        );
    }
    if let Some(from) = &bs.spec.postgres.restore_from {
        if external {
            problem(
                "spec.postgres.restoreFrom",
                "restoreFrom needs the in-cluster PostgreSQL".into(),
            );
        }
        if spec.destination.is_none() {
            problem(
                "spec.postgres.restoreFrom",
                format!(
                    "restoring {:?} needs spec.backup.destination (where the backup is stored)",
                    from.backup
                ),
            );
        }
    }
    let schedule = spec
        .schedule
        .as_deref()
        .unwrap_or(defaults::DEFAULT_BACKUP_SCHEDULE)
        .parse::<crate::schedule::Schedule>()
        .map_err(|e| problem("spec.backup.schedule", e.to_string()))
        .ok();
    let verify_schedule = match &spec.verify {
        None => Some(None),
        Some(v) => v
            .schedule
            .parse::<crate::schedule::Schedule>()
            .map(Some)
            .map_err(|e| problem("spec.backup.verify.schedule", e.to_string()))
            .ok(),
    };
    let retention = match (&spec.retention, spec.keep_last) {
        (None, None) => Some(Some(
            crate::retention::parse_age(defaults::DEFAULT_BACKUP_RETENTION)
                .expect("a valid default"),
        )),
        (None, Some(_)) => Some(None),
        (Some(text), _) => crate::retention::parse_age(text)
            .map(Some)
            .map_err(|e| problem("spec.backup.retention", e))
            .ok(),
    };
    if spec.keep_last.is_some_and(|n| n < 1) {
        problem("spec.backup.keepLast", "keepLast must be at least 1".into());
    }
    let target = match &spec.destination {
        None => None,
        Some(d) => match (&d.volume, &d.s3) {
            (Some(volume), None) => {
                let size = volume
                    .size
                    .clone()
                    .unwrap_or_else(|| defaults::DEFAULT_BACKUP_VOLUME_SIZE.to_owned());
                if parse_quantity(&size).is_none() {
                    problem(
                        "spec.backup.destination.volume.size",
                        format!("{size:?} is not a Kubernetes quantity"),
                    );
                }
                Some(BackupTarget::Volume(Volume {
                    size: Quantity(size),
                    storage_class_name: volume.storage_class_name.clone(),
                    from_snapshot: None,
                }))
            }
            (None, Some(s3)) => Some(BackupTarget::S3 {
                bucket: s3.bucket.clone(),
                prefix: s3.prefix.clone(),
                region: s3.region.clone(),
                endpoint: s3.endpoint.clone(),
                force_path_style: s3.force_path_style,
                credentials: s3
                    .credentials_secret_ref
                    .as_ref()
                    .map(|c| c.secret_name.clone()),
            }),
            _ => {
                problem(
                    "spec.backup.destination",
                    "set exactly one of destination.volume and destination.s3".into(),
                );
                None
            }
        },
    };
    Some(Backup {
        scheduled: spec.enabled,
        schedule: schedule?,
        retention: retention?,
        keep_last: spec.keep_last.map(|n| n.max(1) as usize),
        target: target?,
        verify_schedule: verify_schedule?,
        service_account_annotations: spec.service_account_annotations.clone(),
    })
}

/// Requests must not exceed limits: the API server would reject the pod, not the BlockSight.
fn check_resources(
    problems: &mut Vec<FieldError>,
    field: &str,
    resources: &Option<ResourceRequirements>,
) {
    let Some(r) = resources else { return };
    let (Some(requests), Some(limits)) = (&r.requests, &r.limits) else {
        return;
    };
    for (name, request) in requests {
        let Some(limit) = limits.get(name) else {
            continue;
        };
        match (parse_quantity(&request.0), parse_quantity(&limit.0)) {
            (Some(req), Some(lim)) if req > lim => problems.push(FieldError {
                field: format!("{field}.requests.{name}"),
                reason: format!("request {} exceeds limit {}", request.0, limit.0),
            }),
            (None, _) => problems.push(FieldError {
                field: format!("{field}.requests.{name}"),
                reason: format!("{:?} is not a Kubernetes quantity", request.0),
            }),
            (_, None) => problems.push(FieldError {
                field: format!("{field}.limits.{name}"),
                reason: format!("{:?} is not a Kubernetes quantity", limit.0),
            }),
            _ => {}
        }
    }
}

/// Parse a Kubernetes quantity into a comparable number (enough precision to compare
/// requests with limits; not for arithmetic that must round-trip).
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(number * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocksight(network: Network) -> BlockSight {
        serde_yaml::from_str(&format!(
            "{{apiVersion: blocksight.live/v1alpha1, kind: BlockSight, metadata: {{name: t}}, spec: {{network: {network}}}}}"
        ))
        .unwrap()
    }

    /// Each volume with a per-network default: its size and class fields, and their path.
    const VOLUMES: [(&str, &str); 5] = [
        ("bitcoind", "spec.bitcoind.storage"),
        ("electrs", "spec.electrs.storage"),
        ("postgres", "spec.postgres.storage"),
        ("redis", "spec.redis.persistence"),
        ("prometheus", "spec.monitoring.prometheus.storage"),
    ];

    fn fields<'a>(
        bs: &'a mut BlockSight,
        component: &str,
    ) -> (&'a mut Option<String>, &'a mut Option<String>) {
        let spec = &mut bs.spec;
        match component {
            "bitcoind" => (
                &mut spec.bitcoind.storage.size,
                &mut spec.bitcoind.storage.storage_class_name,
            ),
            "electrs" => (
                &mut spec.electrs.storage.size,
                &mut spec.electrs.storage.storage_class_name,
            ),
            "postgres" => (
                &mut spec.postgres.storage.size,
                &mut spec.postgres.storage.storage_class_name,
            ),
            "redis" => (
                &mut spec.redis.persistence.size,
                &mut spec.redis.persistence.storage_class_name,
            ),
            "prometheus" => (
                &mut spec.monitoring.prometheus.storage.size,
                &mut spec.monitoring.prometheus.storage.storage_class_name,
            ),
            other => unreachable!("{other}"),
        }
    }

    fn with_size(network: Network, component: &str, size: Option<&str>) -> BlockSight {
        let mut bs = blocksight(network);
        *fields(&mut bs, component).0 = size.map(str::to_owned);
        bs
    }

    fn refused(new: &BlockSight, old: &BlockSight, field: &str, reason: &str) -> bool {
        check_cel(new, Some(old))
            .iter()
            .any(|p| p.field == field && p.reason.contains(reason))
    }

    /// The transition rule comparing an added or removed size with the network's default
    /// (quantity literals in a CEL map, `quantity(...).compareTo(...)`) runs in the offline
    /// evaluator, for every volume and network, with the defaults of `defaults::storage`.
    #[test]
    fn validate_size_set_or_removed_never_below_the_network_default() {
        for network in Network::ALL {
            for (component, path) in VOLUMES {
                let field = format!("{path}.size");
                let default = defaults::storage(component, network).0;
                let case = format!("{network} {component} (default {default})");
                let omitted = with_size(network, component, None);
                let tiny = with_size(network, component, Some("1Mi"));
                let same = with_size(network, component, Some(&default));
                let huge = with_size(network, component, Some("100Ti"));
                for bs in [&omitted, &tiny, &same, &huge] {
                    assert_eq!(check_cel(bs, None), vec![], "{case}: valid alone");
                }
                // Set where there was none: at least the default it replaces.
                assert!(refused(&tiny, &omitted, &field, "never shrink"), "{case}");
                assert_eq!(check_cel(&same, Some(&omitted)), vec![], "{case}");
                assert_eq!(check_cel(&huge, Some(&omitted)), vec![], "{case}");
                // Removed: the default that replaces it is at least the size it had.
                assert!(refused(&omitted, &huge, &field, "never shrink"), "{case}");
                assert_eq!(check_cel(&omitted, Some(&same)), vec![], "{case}");
                assert_eq!(check_cel(&omitted, Some(&tiny)), vec![], "{case}");
                // Both set: the field's own rule, once.
                let problems = check_cel(&tiny, Some(&huge));
                assert_eq!(problems.len(), 1, "{case}: {problems:?}");
                assert_eq!(problems[0].field, field);
            }
        }
    }

    #[test]
    fn validate_the_size_rule_names_the_defaults() {
        let crd = serde_json::to_string(&BlockSight::crd()).unwrap();
        assert!(
            crd.contains("the network's default (mainnet 1Ti, testnet 300Gi, testnet4 100Gi, signet 50Gi, regtest 5Gi)"),
            "bitcoind's defaults are in its message"
        );
    }

    #[test]
    fn validate_storage_class_cannot_be_set_changed_or_removed() {
        for (component, path) in VOLUMES {
            let field = format!("{path}.storageClassName");
            let class = |name: Option<&str>| {
                let mut bs = blocksight(Network::Regtest);
                *fields(&mut bs, component).1 = name.map(str::to_owned);
                bs
            };
            let (none, gp3, io2) = (class(None), class(Some("gp3")), class(Some("io2")));
            for (new, old) in [(&gp3, &none), (&none, &gp3), (&io2, &gp3)] {
                assert!(refused(new, old, &field, "immutable"), "{component}");
                assert_eq!(check_cel(new, None), vec![]);
            }
            for bs in [&none, &gp3] {
                assert_eq!(check_cel(bs, Some(bs)), vec![], "{component}: unchanged");
            }
        }
    }

    #[test]
    fn validate_backup_volume_class_and_default_size() {
        let volume = |fields: &str| -> BlockSight {
            serde_yaml::from_str(&format!(
                "{{apiVersion: blocksight.live/v1alpha1, kind: BlockSight, metadata: {{name: t}}, spec: {{network: regtest, backup: {{destination: {fields}}}}}}}"
            ))
            .unwrap()
        };
        let plain = volume("{volume: {}}");
        let classed = volume("{volume: {storageClassName: slow}}");
        let small = volume("{volume: {size: 5Gi}}");
        let large = volume("{volume: {size: 50Gi}}");
        let s3 = volume("{s3: {bucket: backups}}");
        let class = "spec.backup.destination.volume.storageClassName";
        let size = "spec.backup.destination.volume.size";
        assert!(refused(&classed, &plain, class, "immutable"));
        assert!(refused(&plain, &classed, class, "immutable"));
        assert!(refused(&small, &plain, size, "never shrink"));
        assert!(refused(&plain, &large, size, "never shrink"));
        assert_eq!(check_cel(&large, Some(&plain)), vec![]);
        assert_eq!(check_cel(&plain, Some(&small)), vec![]);
        // Another destination in between: not the same volume's fields.
        for (new, old) in [
            (&s3, &classed),
            (&classed, &s3),
            (&small, &s3),
            (&s3, &large),
        ] {
            assert_eq!(check_cel(new, Some(old)), vec![]);
        }
    }
}
