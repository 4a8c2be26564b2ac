//! `BlockSight`: one object describing a whole BlockSight backend.

use std::fmt;

use k8s_openapi::api::core::v1::EnvVar;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    BlockSightStatus, Placement, Resources, SecretKeyRef, StorageSpec, VolumeSnapshotsSpec,
};

/// Desired state of a BlockSight installation: Bitcoin Core, electrs, PostgreSQL, Redis,
/// the BlockSight API and its monitoring, in the BlockSight's namespace.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[kube(
    group = "blocksight.live",
    version = "v1alpha1",
    kind = "BlockSight",
    namespaced,
    status = "BlockSightStatus",
    shortname = "bs",
    category = "blocksight",
    cel,
    doc = "A BlockSight installation: Bitcoin Core, electrs, PostgreSQL, Redis, the BlockSight API and monitoring, run and kept healthy by the BlockSight operator.",
    printcolumn(name = "Network", type_ = "string", json_path = ".spec.network"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Blocks", type_ = "integer", json_path = ".status.chain.blocks"),
    printcolumn(
        name = "Sync",
        type_ = "number",
        json_path = ".status.chain.verificationProgress",
        description = "Chain verification progress (0 to 1)"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.bitcoind) || !has(self.bitcoind.prune) || self.bitcoind.prune == 0 || (has(self.electrs) && has(self.electrs.enabled) && !self.electrs.enabled)")
        .message("bitcoind.prune must be 0 while electrs is enabled: electrs needs the full block chain")
        .field_path(".bitcoind.prune"),
    validation = Rule::new("!has(self.bitcoind) || !has(self.bitcoind.prune) || self.bitcoind.prune == 0 || (has(self.bitcoind.txindex) && !self.bitcoind.txindex)")
        .message("bitcoind.txindex must be false when bitcoind.prune is set: Bitcoin Core cannot index a pruned chain")
        .field_path(".bitcoind.txindex"),
    // On the spec, not on the field: a rule on an optional field does not see it being
    // added or removed, and a volume claim template cannot change either way.
    validation = Rule::new("(has(self.bitcoind) && has(self.bitcoind.storage) && has(self.bitcoind.storage.fromSnapshot) ? self.bitcoind.storage.fromSnapshot : '') == (has(oldSelf.bitcoind) && has(oldSelf.bitcoind.storage) && has(oldSelf.bitcoind.storage.fromSnapshot) ? oldSelf.bitcoind.storage.fromSnapshot : '')")
        .message("fromSnapshot is immutable: it only seeds a volume when the BlockSight is created; create a new BlockSight to start from another snapshot")
        .field_path(".bitcoind.storage.fromSnapshot"),
    validation = Rule::new("(has(self.electrs) && has(self.electrs.storage) && has(self.electrs.storage.fromSnapshot) ? self.electrs.storage.fromSnapshot : '') == (has(oldSelf.electrs) && has(oldSelf.electrs.storage) && has(oldSelf.electrs.storage.fromSnapshot) ? oldSelf.electrs.storage.fromSnapshot : '')")
        .message("fromSnapshot is immutable: it only seeds a volume when the BlockSight is created; create a new BlockSight to start from another snapshot")
        .field_path(".electrs.storage.fromSnapshot"),
    validation = Rule::new("!has(self.volumeSnapshots) || !has(self.volumeSnapshots.components) || !self.volumeSnapshots.components.exists(c, c == 'electrs') || !has(self.electrs) || !has(self.electrs.enabled) || self.electrs.enabled")
        .message("volumeSnapshots.components lists electrs, but electrs is disabled")
        .field_path(".volumeSnapshots.components"),
    // restoreFrom seeds a new database once; added later it would do nothing (the operator
    // restores only into a database it just created). Removing it is harmless.
    validation = Rule::new("!has(self.postgres) || !has(self.postgres.restoreFrom) || (has(oldSelf.postgres) && has(oldSelf.postgres.restoreFrom) && self.postgres.restoreFrom == oldSelf.postgres.restoreFrom)")
        .message("restoreFrom only applies when a BlockSight is created: it cannot be added or changed later; use a BlockSightRestore to restore into an existing one")
        .field_path(".postgres.restoreFrom"),
    // Every volume's class and size, on the spec for the same reason as fromSnapshot (the
    // backup volume's are on BackupDestination). Grafana has no volume.
    validation = super::common::storage_class_immutable(".bitcoind.storage", false),
    validation = super::common::storage_class_immutable(".electrs.storage", false),
    validation = super::common::storage_class_immutable(".postgres.storage", false),
    validation = super::common::storage_class_immutable(".redis.persistence", false),
    validation = super::common::storage_class_immutable(".monitoring.prometheus.storage", false),
    validation = super::common::size_never_below_network_default(".bitcoind.storage", "bitcoind"),
    validation = super::common::size_never_below_network_default(".electrs.storage", "electrs"),
    validation = super::common::size_never_below_network_default(".postgres.storage", "postgres"),
    validation = super::common::size_never_below_network_default(".redis.persistence", "redis"),
    validation = super::common::size_never_below_network_default(".monitoring.prometheus.storage", "prometheus")
)]
pub struct BlockSightSpec {
    /// Bitcoin network: mainnet, testnet, testnet4, signet or regtest. Immutable: a node's
    /// chain data belongs to one network.
    #[x_kube(validation = Rule::new("self == oldSelf").message("network is immutable: create a new BlockSight for another network"))]
    pub network: Network,

    /// Stop changing child objects (maintenance). The operator still reports status.
    #[serde(default)]
    pub paused: bool,

    /// What happens to the data volumes and generated credentials when this BlockSight is
    /// deleted or a component disabled: Retain (default) keeps them, Delete removes them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Bitcoin Core full node.
    #[serde(default)]
    pub bitcoind: BitcoindSpec,

    /// electrs Electrum server indexing bitcoind's chain.
    #[serde(default)]
    pub electrs: ElectrsSpec,

    /// PostgreSQL database of the BlockSight API (in-cluster or external).
    #[serde(default)]
    pub postgres: PostgresSpec,

    /// Redis cache of the BlockSight API.
    #[serde(default)]
    pub redis: RedisSpec,

    /// The BlockSight API (stateless, horizontally scalable).
    #[serde(default)]
    pub api: ApiSpec,

    /// Prometheus and Grafana for this installation.
    #[serde(default)]
    pub monitoring: MonitoringSpec,

    /// NetworkPolicies isolating this installation: default deny, then only the flows the
    /// design needs (see docs/security.md).
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,

    /// Credentials you manage yourself (external-secrets, sealed-secrets, Vault): name an
    /// existing Secret per service and the operator uses it instead of generating one. Each
    /// must hold the keys the generated one would (see docs/security.md).
    #[serde(default)]
    pub credentials: CredentialsSpec,

    /// Scheduled VolumeSnapshots of the chain data volumes (bitcoind, electrs), taken by the
    /// operator; needs the snapshot.storage.k8s.io/v1 API and a CSI driver that snapshots.
    /// They are not owned by the BlockSight unless deletionPolicy is Delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_snapshots: Option<VolumeSnapshotsSpec>,
    /// Scheduled backups of the PostgreSQL database, their retention, and restore drills
    /// (see docs/backup.md).
    #[serde(default)]
    pub backup: BackupSpec,
}

/// Backups of the database: a CronJob that dumps it on a schedule, retention, and an
/// optional scheduled restore drill.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.enabled || has(self.destination)").message("backup.destination is required when backups are enabled").field_path(".destination"))]
pub struct BackupSpec {
    /// Take scheduled backups (default false). BlockSightBackup objects work either way
    /// once a destination is set.
    #[serde(default)]
    pub enabled: bool,
    /// When to back up: five cron fields (minute hour day-of-month month day-of-week, UTC)
    /// or a macro such as @daily; default `0 3 * * *`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100))]
    pub schedule: Option<String>,
    /// Keep backups younger than this (a duration such as 30d, 12h, 2w). With keepLast, a
    /// backup is kept when either keeps it; the newest successful backup is always kept.
    /// Default 30d when neither is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+(s|m|h|d|w|y)$')").message("retention must be a duration such as 30d, 12h or 2w"))]
    pub retention: Option<String>,
    /// Keep the N newest successful backups (1 to 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000").message("keepLast must be between 1 and 1000"))]
    pub keep_last: Option<i32>,
    /// Where backups are stored: exactly one of volume and s3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<BackupDestination>,
    /// Scheduled restore drills: restore the newest backup into a scratch database, compare
    /// it with its manifest, drop it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<BackupVerify>,
    /// Annotations of the backup pods' ServiceAccount `<name>-backup`, e.g.
    /// `eks.amazonaws.com/role-arn` for IRSA (the pods' cloud identity for S3).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub service_account_annotations: std::collections::BTreeMap<String, String>,
}

/// Where backups go.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("has(self.volume) != has(self.s3)").message("set exactly one of destination.volume and destination.s3"),
    // While a volume is the destination before and after: here, not on BackupVolume, so that
    // setting or removing its fields is seen too.
    validation = super::common::storage_class_immutable(".volume", true),
    validation = super::common::backup_size_never_below_default()
)]
pub struct BackupDestination {
    /// A PersistentVolumeClaim `<name>-backups` created once and kept when the BlockSight
    /// is deleted (unless deletionPolicy is Delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<BackupVolume>,
    /// An S3 (or S3-compatible) bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Destination>,
}

/// A volume for backups.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupVolume {
    /// Size of the volume (a Kubernetes quantity, default 20Gi). May grow (when the
    /// StorageClass allows expansion) but never shrink, also not below 20Gi when set or
    /// removed later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new("isQuantity(self)").message("must be a Kubernetes quantity such as 50Gi"),
        validation = Rule::new("!isQuantity(self) || !isQuantity(oldSelf) || quantity(self).compareTo(quantity(oldSelf)) >= 0").message("storage size may grow but never shrink")
    )]
    pub size: Option<String>,
    /// StorageClass of the volume; the cluster default when omitted. Immutable: it cannot be
    /// set, changed or removed while the volume is the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub storage_class_name: Option<String>,
}

/// An S3 bucket for backups.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Destination {
    /// Bucket name.
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$')").message("bucket must be an S3 bucket name"))]
    pub bucket: String,
    /// Folder inside the bucket (default `blocksight/<namespace>/<name>/`, under the
    /// `blocksight/` prefix the Terraform backup role is scoped to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub prefix: Option<String>,
    /// Region of the bucket (default: the pod's AWS_REGION, then us-east-1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub region: Option<String>,
    /// S3-compatible endpoint URL, e.g. https://minio.storage:9000 (default AWS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/ ]+(/.*)?$')").message("endpoint must be an http(s) URL"))]
    pub endpoint: Option<String>,
    /// Path-style requests (endpoint/bucket/key), which most S3-compatible services need.
    #[serde(default)]
    pub force_path_style: bool,
    /// Secret holding `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`. Omitted: the pods use
    /// their cloud identity (IRSA / EKS Pod Identity, see serviceAccountAnnotations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<ExistingSecret>,
}

/// Scheduled restore drills.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupVerify {
    /// When to run a drill (five cron fields, UTC, or a macro such as @weekly).
    #[schemars(length(max = 100))]
    pub schedule: String,
}

/// Existing Secrets to use instead of generated credentials.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSpec {
    /// bitcoind RPC: keys `rpc-user`, `rpc-password`, `rpcauth.conf` (an `rpcauth=` line for
    /// that user and password, as share/rpcauth/rpcauth.py prints it) and `electrs-auth`
    /// (`user:password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitcoind_rpc: Option<ExistingSecret>,
    /// In-cluster PostgreSQL: keys `superuser-password`, `app-user`, `app-password`,
    /// `readonly-user`, `readonly-password`, `database-url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<ExistingSecret>,
    /// Redis: keys `password`, `auth.conf` (`requirepass <password>`) and `redis-url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<ExistingSecret>,
    /// Grafana: keys `admin-user` and `admin-password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grafana: Option<ExistingSecret>,
}

/// A Secret in the BlockSight's namespace.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExistingSecret {
    /// Name of the Secret.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("secretName must not be empty"))]
    pub secret_name: String,
}

/// NetworkPolicies of a BlockSight.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Create them (default true). Needs a CNI that enforces NetworkPolicy.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Namespace of the BlockSight operator, whose probes reach bitcoind, electrs, PostgreSQL
    /// and Redis and whose metrics this installation's Prometheus scrapes.
    #[serde(default = "default_operator_namespace")]
    #[schemars(length(max = 63))]
    pub operator_namespace: String,
    /// Namespaces of the ingress controller(s) allowed to reach the API and Grafana.
    #[serde(default = "default_ingress_namespaces")]
    #[schemars(length(max = 16), inner(length(max = 63)))]
    pub ingress_namespaces: Vec<String>,
    /// Namespaces of a cluster Prometheus (e.g. kube-prometheus) allowed to scrape the
    /// metrics ports.
    #[serde(default = "default_monitoring_namespaces")]
    #[schemars(length(max = 16), inner(length(max = 63)))]
    pub monitoring_namespaces: Vec<String>,
    /// More peers (core/v1 NetworkPolicyPeer) allowed to reach the API's HTTP port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_api_peers: Vec<k8s_openapi::api::networking::v1::NetworkPolicyPeer>,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self {
            enabled: true,
            operator_namespace: default_operator_namespace(),
            ingress_namespaces: default_ingress_namespaces(),
            monitoring_namespaces: default_monitoring_namespaces(),
            extra_api_peers: vec![],
        }
    }
}

fn default_operator_namespace() -> String {
    "blocksight-system".to_owned()
}

fn default_ingress_namespaces() -> Vec<String> {
    vec!["ingress-nginx".to_owned()]
}

fn default_monitoring_namespaces() -> Vec<String> {
    vec!["monitoring".to_owned()]
}

/// Bitcoin network the installation runs on.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    Mainnet,
    Testnet,
    Testnet4,
    Signet,
    Regtest,
}

impl Network {
    pub const ALL: [Network; 5] = [
        Self::Mainnet,
        Self::Testnet,
        Self::Testnet4,
        Self::Signet,
        Self::Regtest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mainnet => "mainnet",
            Self::Testnet => "testnet",
            Self::Testnet4 => "testnet4",
            Self::Signet => "signet",
            Self::Regtest => "regtest",
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What deleting the BlockSight (or disabling a component) does to its data.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep PersistentVolumeClaims and generated credentials (days of chain sync and the
    /// database survive a mistaken delete; recreating the BlockSight adopts them).
    #[default]
    Retain,
    /// Delete PersistentVolumeClaims and generated credentials with their workloads.
    Delete,
}

/// Bitcoin Core settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BitcoindSpec {
    /// Container image; defaults to a pinned Bitcoin Core release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("image must not be empty"))]
    pub image: Option<String>,
    /// Maintain a full transaction index (`-txindex`); default true. Needs an unpruned node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txindex: Option<bool>,
    /// Prune the block store to this many MiB (0 = off, otherwise at least 550). Must be 0
    /// while electrs is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == 0 || self >= 550").message("prune must be 0 (off) or at least 550 MiB"))]
    pub prune: Option<i64>,
    /// UTXO database cache in MiB (4 to 16384); sized per network when omitted. Memory
    /// requests and limits grow with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 4 && self <= 16384").message("dbcache must be between 4 and 16384 MiB"))]
    pub dbcache: Option<i64>,
    /// Extra command-line options for bitcoind (for example `-maxmempool=300`). Options the
    /// operator manages (network, data dir, RPC, ZMQ, credentials) are rejected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 256)))]
    #[x_kube(
        validation = Rule::new("self.all(a, a.startsWith('-'))").message("every extraArgs entry must be an option starting with '-'"),
        validation = Rule::new("!self.exists(a, a.matches('^--?(rpcpassword|rpcuser|rpcauth|rpcbind|rpcport|rpcallowip|rpccookiefile|datadir|conf|chain|testnet|testnet4|signet|regtest|port|bind|server|txindex|prune|dbcache|zmqpub[a-z]+|includeconf)(=.*)?$'))").message("extraArgs must not set options the operator manages (network, datadir, conf, RPC, credentials, ZMQ, txindex, prune, dbcache)")
    )]
    pub extra_args: Vec<String>,
    /// Volume for the chain data.
    #[serde(default)]
    pub storage: StorageSpec,
    /// Container resources; sized from dbcache and the network when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Resources,
    /// Node selection and tolerations.
    #[serde(default)]
    pub placement: Placement,
}

/// electrs settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ElectrsSpec {
    /// Run electrs (default true). Disabling removes its workload; its index volume follows
    /// deletionPolicy.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Container image; defaults to a pinned electrs release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("image must not be empty"))]
    pub image: Option<String>,
    /// Number of electrs instances, each with its own index (0 to 10, default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 10").message("replicas must be between 0 and 10"))]
    pub replicas: Option<i32>,
    /// Volume for the index.
    #[serde(default)]
    pub storage: StorageSpec,
    /// Container resources; sized per network when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Resources,
    /// Node selection and tolerations.
    #[serde(default)]
    pub placement: Placement,
}

impl Default for ElectrsSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            image: None,
            replicas: None,
            storage: StorageSpec::default(),
            resources: None,
            placement: Placement::default(),
        }
    }
}

/// PostgreSQL settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.storage) || !has(self.storage.fromSnapshot)").message("fromSnapshot is only for bitcoind and electrs: restore the database from a backup instead").field_path(".storage.fromSnapshot"))]
pub struct PostgresSpec {
    /// Container image; defaults to a pinned PostgreSQL release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("image must not be empty"))]
    pub image: Option<String>,
    /// Name of the application database (default `blocksight`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z_][a-z0-9_]{0,62}$')").message("database must be a lower-case SQL identifier of at most 63 characters"))]
    pub database: Option<String>,
    /// Volume for the database.
    #[serde(default)]
    pub storage: StorageSpec,
    /// Container resources; sized per network when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Resources,
    /// Use an external PostgreSQL instead of running one: the connection URI comes from this
    /// Secret key. No PostgreSQL workload is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalPostgres>,
    /// Node selection and tolerations.
    #[serde(default)]
    pub placement: Placement,
    /// Start the new database from a backup: once PostgreSQL is up and before the API
    /// serves, the named BlockSightBackup is restored (once). Only when the BlockSight is
    /// created: it cannot be added or changed later (removing it is allowed); to restore into
    /// an existing BlockSight, create a BlockSightRestore.
    // The rule is on the spec: here it would not see restoreFrom being added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<RestoreFrom>,
}

/// The backup a new database starts from.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreFrom {
    /// Name of a Completed BlockSightBackup in this namespace (possibly of another,
    /// deleted BlockSight that used the same destination).
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("backup must name a BlockSightBackup"))]
    pub backup: String,
}

/// An externally managed PostgreSQL.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalPostgres {
    /// Secret key holding the connection URI (`postgres://user:password@host:5432/db`).
    pub secret_ref: SecretKeyRef,
}

/// Redis settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// Container image; defaults to a pinned Redis release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("image must not be empty"))]
    pub image: Option<String>,
    /// Append-only-file persistence on a volume.
    #[serde(default)]
    pub persistence: RedisPersistence,
    /// Container resources; sized per network when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Resources,
    /// Node selection and tolerations.
    #[serde(default)]
    pub placement: Placement,
}

/// Redis persistence.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisPersistence {
    /// Keep the cache on a volume (append-only file); default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Volume size; sized per network when omitted. May grow, never shrink (also not below
    /// the network's default when set or removed later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new("isQuantity(self)").message("must be a Kubernetes quantity such as 8Gi"),
        validation = Rule::new("!isQuantity(self) || !isQuantity(oldSelf) || quantity(self).compareTo(quantity(oldSelf)) >= 0").message("storage size may grow but never shrink")
    )]
    pub size: Option<String>,
    /// StorageClass of the volume. Immutable: it cannot be set, changed or removed once the
    /// BlockSight exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub storage_class_name: Option<String>,
}

impl Default for RedisPersistence {
    fn default() -> Self {
        Self {
            enabled: true,
            size: None,
            storage_class_name: None,
        }
    }
}

/// BlockSight API settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiSpec {
    /// Container image; defaults to the pinned BlockSight API release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("image must not be empty"))]
    pub image: Option<String>,
    /// Replicas when autoscaling is off (0 to 100; default per network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 100").message("replicas must be between 0 and 100"))]
    pub replicas: Option<i32>,
    /// HorizontalPodAutoscaler on CPU utilisation.
    #[serde(default)]
    pub autoscaling: Autoscaling,
    /// Extra environment variables (core/v1 EnvVar); they override the operator's wiring
    /// of the same name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Ingress for the API.
    #[serde(default)]
    pub ingress: IngressSpec,
    /// Container resources; sized per network when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Resources,
    /// Node selection and tolerations.
    #[serde(default)]
    pub placement: Placement,
}

/// Autoscaling of the API.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must not exceed autoscaling.maxReplicas").field_path(".minReplicas"))]
pub struct Autoscaling {
    /// Create a HorizontalPodAutoscaler (replicas is then ignored).
    #[serde(default)]
    pub enabled: bool,
    /// Lower bound (1 to 100, default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100").message("minReplicas must be between 1 and 100"))]
    pub min_replicas: Option<i32>,
    /// Upper bound (1 to 100, default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100").message("maxReplicas must be between 1 and 100"))]
    pub max_replicas: Option<i32>,
    /// Target average CPU utilisation in percent (1 to 100, default 70).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 100").message("targetCPUUtilizationPercentage must be between 1 and 100"))]
    #[serde(rename = "targetCPUUtilizationPercentage")]
    pub target_cpu_utilization_percentage: Option<i32>,
}

/// Ingress for the API.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.enabled || has(self.host)").message("ingress.host is required when ingress is enabled").field_path(".host"))]
pub struct IngressSpec {
    /// Create an Ingress.
    #[serde(default)]
    pub enabled: bool,
    /// Host name served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("host must be a DNS name"))]
    pub host: Option<String>,
    /// IngressClass name; the cluster default when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// TLS termination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<IngressTls>,
}

/// TLS for the API Ingress.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressTls {
    /// Secret holding (or receiving, with cert-manager) the certificate.
    pub secret_name: String,
    /// cert-manager ClusterIssuer that issues the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_issuer: Option<String>,
}

/// Monitoring of the installation.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!((!has(self.grafana) || !has(self.grafana.enabled) || self.grafana.enabled) && has(self.prometheus) && has(self.prometheus.enabled) && !self.prometheus.enabled)").message("Grafana needs spec.monitoring.prometheus.enabled").field_path(".grafana.enabled"))]
pub struct MonitoringSpec {
    /// A Prometheus for this installation, loaded with the BlockSight alert rules.
    #[serde(default)]
    pub prometheus: PrometheusSpec,
    /// A Grafana provisioned with the BlockSight dashboards.
    #[serde(default)]
    pub grafana: GrafanaSpec,
    /// ServiceMonitor and PodMonitor objects for a cluster's own prometheus-operator (e.g.
    /// kube-prometheus): auto creates them when its CRDs are installed, enabled always,
    /// disabled never. With them, `prometheus.enabled: false` needs no extra Prometheus.
    #[serde(default)]
    pub prometheus_operator: PrometheusOperatorMode,
}

/// Whether to create prometheus-operator objects.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PrometheusOperatorMode {
    /// When the monitoring.coreos.com CRDs are installed.
    #[default]
    Auto,
    /// Always (applying fails while the CRDs are missing).
    Enabled,
    /// Never.
    Disabled,
}

/// Prometheus settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.storage) || !has(self.storage.fromSnapshot)").message("fromSnapshot is only for bitcoind and electrs").field_path(".storage.fromSnapshot"))]
pub struct PrometheusSpec {
    /// Run Prometheus (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Container image; defaults to a pinned Prometheus release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("image must not be empty"))]
    pub image: Option<String>,
    /// How long samples are kept (a Prometheus duration such as `15d`; default 15d).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]+(ms|s|m|h|d|w|y)$')").message("retention must be a duration such as 15d or 720h"))]
    pub retention: Option<String>,
    /// Volume for the time series database.
    #[serde(default)]
    pub storage: StorageSpec,
    /// Container resources; sized per network when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Resources,
}

impl Default for PrometheusSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            image: None,
            retention: None,
            storage: StorageSpec::default(),
            resources: None,
        }
    }
}

/// Grafana settings.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrafanaSpec {
    /// Run Grafana (default true); needs Prometheus.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Container image; defaults to a pinned Grafana release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self.size() > 0").message("image must not be empty"))]
    pub image: Option<String>,
    /// Container resources; sized per network when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Resources,
}

impl Default for GrafanaSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            image: None,
            resources: None,
        }
    }
}

fn default_true() -> bool {
    true
}
