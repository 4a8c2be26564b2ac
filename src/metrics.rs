//! The operator's Prometheus metrics (`blocksight_` prefix). Per-instance series carry
//! `namespace` and `blocksight` labels only, so cardinality is bounded by the number of
//! BlockSight objects; failures are labelled by error category, never by object name.
//! docs/metrics.md lists every series.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::crd::Phase;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CategoryLabels {
    pub category: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    pub namespace: String,
    pub blocksight: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub namespace: String,
    pub blocksight: String,
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    pub namespace: String,
    pub blocksight: String,
    pub component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChainLabels {
    pub namespace: String,
    pub blocksight: String,
    pub network: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub namespace: String,
    pub blocksight: String,
    pub service: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The data services the chain probes watch (the `service` label).
pub const PROBED_SERVICES: [&str; 4] = ["bitcoind", "electrs", "postgres", "redis"];

/// Reconcile loop metrics.
#[derive(Clone)]
pub struct ReconcileMetrics {
    pub reconciliations: Counter,
    pub failures: Family<CategoryLabels, Counter>,
    pub duration: Histogram,
    pub instance_phase: Family<PhaseLabels, Gauge>,
    pub component_ready_replicas: Family<ComponentLabels, Gauge>,
    pub component_desired_replicas: Family<ComponentLabels, Gauge>,
}

/// Chain and data-service state, set by the chain probes.
#[derive(Clone)]
pub struct ChainMetrics {
    pub blocks: Family<ChainLabels, Gauge>,
    pub headers: Family<ChainLabels, Gauge>,
    pub verification_progress: Family<ChainLabels, FloatGauge>,
    pub initial_block_download: Family<ChainLabels, Gauge>,
    pub peers: Family<ChainLabels, Gauge>,
    pub size_on_disk: Family<ChainLabels, Gauge>,
    pub tip_timestamp: Family<ChainLabels, Gauge>,
    pub mempool_transactions: Family<ChainLabels, Gauge>,
    pub electrs_indexed_height: Family<InstanceLabels, Gauge>,
    pub electrs_lag: Family<InstanceLabels, Gauge>,
    pub database_size: Family<InstanceLabels, Gauge>,
    pub probe_up: Family<ServiceLabels, Gauge>,
    pub probe_errors: Family<ServiceLabels, Counter>,
    pub probe_duration: Family<ServiceLabels, Histogram, fn() -> Histogram>,
}

/// Backup and restore-drill results, set by the backup controller.
#[derive(Clone, Default)]
pub struct BackupMetrics {
    pub last_success_timestamp: Family<InstanceLabels, Gauge>,
    pub last_size: Family<InstanceLabels, Gauge>,
    pub last_duration: Family<InstanceLabels, FloatGauge>,
    pub failures: Family<InstanceLabels, Counter>,
    pub verification_last_timestamp: Family<InstanceLabels, Gauge>,
    pub verification_last_success: Family<InstanceLabels, Gauge>,
    pub verification_last_duration: Family<InstanceLabels, FloatGauge>,
}

/// Scheduled VolumeSnapshots of the chain data, set by the snapshot step.
#[derive(Clone, Default)]
pub struct SnapshotMetrics {
    pub last_ready_timestamp: Family<ComponentLabels, Gauge>,
}

/// The components whose volumes can be snapshotted (the `component` label).
const SNAPSHOT_COMPONENTS: [&str; 2] = ["bitcoind", "electrs"];

fn probe_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

impl Default for ReconcileMetrics {
    fn default() -> Self {
        Self {
            reconciliations: Counter::default(),
            failures: Family::default(),
            duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            instance_phase: Family::default(),
            component_ready_replicas: Family::default(),
            component_desired_replicas: Family::default(),
        }
    }
}

/// Every metric of the process, and the registry that exposes them.
pub struct Metrics {
    pub registry: Registry,
    pub leader: Gauge,
    pub reconcile: ReconcileMetrics,
    pub chain: ChainMetrics,
    pub backup: BackupMetrics,
    pub snapshots: SnapshotMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("blocksight");
        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        registry.register(
            "build_info",
            "Operator build; the value is always 1",
            build_info,
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 when this replica holds the leader Lease",
            leader.clone(),
        );

        let reconcile = ReconcileMetrics::default();
        registry.register(
            "reconciliations",
            "Reconciliations started",
            reconcile.reconciliations.clone(),
        );
        registry.register(
            "reconcile_failures",
            "Failed reconciliations by error category",
            reconcile.failures.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "Duration of one reconciliation",
            Unit::Seconds,
            reconcile.duration.clone(),
        );
        registry.register(
            "instance_phase",
            "1 for the BlockSight's current phase, 0 for the others",
            reconcile.instance_phase.clone(),
        );
        registry.register(
            "component_ready_replicas",
            "Ready replicas per component",
            reconcile.component_ready_replicas.clone(),
        );
        registry.register(
            "component_desired_replicas",
            "Desired replicas per component",
            reconcile.component_desired_replicas.clone(),
        );

        let chain = ChainMetrics {
            blocks: Family::default(),
            headers: Family::default(),
            verification_progress: Family::default(),
            initial_block_download: Family::default(),
            peers: Family::default(),
            size_on_disk: Family::default(),
            tip_timestamp: Family::default(),
            mempool_transactions: Family::default(),
            electrs_indexed_height: Family::default(),
            electrs_lag: Family::default(),
            database_size: Family::default(),
            probe_up: Family::default(),
            probe_errors: Family::default(),
            probe_duration: Family::new_with_constructor(probe_histogram),
        };
        registry.register(
            "chain_blocks",
            "Height of the validated chain",
            chain.blocks.clone(),
        );
        registry.register(
            "chain_headers",
            "Height of the best header chain",
            chain.headers.clone(),
        );
        registry.register(
            "chain_verification_progress",
            "Estimated verification progress (0 to 1)",
            chain.verification_progress.clone(),
        );
        registry.register(
            "chain_initial_block_download",
            "1 while bitcoind is in initial block download",
            chain.initial_block_download.clone(),
        );
        registry.register("chain_peers", "Connected P2P peers", chain.peers.clone());
        registry.register_with_unit(
            "chain_size_on_disk",
            "Block and undo files on disk",
            Unit::Bytes,
            chain.size_on_disk.clone(),
        );
        registry.register_with_unit(
            "chain_tip_timestamp",
            "Block time of the chain tip (Unix time)",
            Unit::Seconds,
            chain.tip_timestamp.clone(),
        );
        registry.register(
            "chain_mempool_transactions",
            "Transactions in the mempool",
            chain.mempool_transactions.clone(),
        );
        registry.register(
            "electrs_indexed_height",
            "Height electrs has indexed",
            chain.electrs_indexed_height.clone(),
        );
        registry.register(
            "electrs_lag_blocks",
            "Blocks electrs' index is behind bitcoind",
            chain.electrs_lag.clone(),
        );
        registry.register_with_unit(
            "database_size",
            "Size of the application database",
            Unit::Bytes,
            chain.database_size.clone(),
        );
        registry.register(
            "probe_up",
            "1 when the last probe of the service answered",
            chain.probe_up.clone(),
        );
        registry.register(
            "probe_errors",
            "Probes that failed, by service",
            chain.probe_errors.clone(),
        );
        registry.register_with_unit(
            "probe_duration",
            "Duration of one probe",
            Unit::Seconds,
            chain.probe_duration.clone(),
        );

        let backup = BackupMetrics::default();
        registry.register_with_unit(
            "backup_last_success_timestamp",
            "Completion time of the newest successful backup (Unix time)",
            Unit::Seconds,
            backup.last_success_timestamp.clone(),
        );
        registry.register_with_unit(
            "backup_last_size",
            "Size of the newest successful backup",
            Unit::Bytes,
            backup.last_size.clone(),
        );
        registry.register_with_unit(
            "backup_last_duration",
            "Duration of the newest successful backup",
            Unit::Seconds,
            backup.last_duration.clone(),
        );
        registry.register("backup_failures", "Failed backups", backup.failures.clone());
        registry.register_with_unit(
            "backup_verification_last_timestamp",
            "Time of the newest restore drill (Unix time)",
            Unit::Seconds,
            backup.verification_last_timestamp.clone(),
        );
        registry.register(
            "backup_verification_last_success",
            "1 when the newest restore drill verified the backup",
            backup.verification_last_success.clone(),
        );
        registry.register_with_unit(
            "backup_verification_last_duration",
            "Duration of the newest restore drill",
            Unit::Seconds,
            backup.verification_last_duration.clone(),
        );

        let snapshots = SnapshotMetrics::default();
        registry.register_with_unit(
            "volume_snapshot_last_ready_timestamp",
            "When the newest ready VolumeSnapshot of a component's volume was cut (Unix time)",
            Unit::Seconds,
            snapshots.last_ready_timestamp.clone(),
        );

        Self {
            registry,
            leader,
            reconcile,
            chain,
            backup,
            snapshots,
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Count a reconciliation and time it until the guard drops.
    pub fn reconcile_timer(self: &Arc<Self>) -> ReconcileTimer {
        self.reconcile.reconciliations.inc();
        ReconcileTimer {
            started: Instant::now(),
            metrics: self.clone(),
        }
    }

    pub fn record_failure(&self, category: &str) {
        self.reconcile
            .failures
            .get_or_create(&CategoryLabels {
                category: category.to_owned(),
            })
            .inc();
    }

    /// Publish a BlockSight's phase and component replica counts.
    pub fn record_instance(
        &self,
        namespace: &str,
        name: &str,
        phase: Phase,
        components: &[(String, i32, i32)],
    ) {
        for p in Phase::ALL {
            let labels = PhaseLabels {
                namespace: namespace.to_owned(),
                blocksight: name.to_owned(),
                phase: p.as_str().to_owned(),
            };
            self.reconcile
                .instance_phase
                .get_or_create(&labels)
                .set(i64::from(p == phase));
        }
        // Counters exist from the start at 0, so increase() sees the first failure.
        let instance = InstanceLabels {
            namespace: namespace.to_owned(),
            blocksight: name.to_owned(),
        };
        self.backup.failures.get_or_create(&instance).inc_by(0);
        for service in PROBED_SERVICES {
            let labels = ServiceLabels {
                namespace: namespace.to_owned(),
                blocksight: name.to_owned(),
                service: service.to_owned(),
            };
            self.chain.probe_errors.get_or_create(&labels).inc_by(0);
        }
        for (component, desired, ready) in components {
            let labels = ComponentLabels {
                namespace: namespace.to_owned(),
                blocksight: name.to_owned(),
                component: component.clone(),
            };
            self.reconcile
                .component_desired_replicas
                .get_or_create(&labels)
                .set(i64::from(*desired));
            self.reconcile
                .component_ready_replicas
                .get_or_create(&labels)
                .set(i64::from(*ready));
        }
    }

    /// Publish when the newest ready snapshot of a component was cut; no series until one is.
    pub fn record_snapshot_ready(
        &self,
        namespace: &str,
        name: &str,
        component: &str,
        last_ready_unix: Option<i64>,
    ) {
        let labels = ComponentLabels {
            namespace: namespace.to_owned(),
            blocksight: name.to_owned(),
            component: component.to_owned(),
        };
        match last_ready_unix {
            Some(seconds) => {
                self.snapshots
                    .last_ready_timestamp
                    .get_or_create(&labels)
                    .set(seconds);
            }
            None => {
                self.snapshots.last_ready_timestamp.remove(&labels);
            }
        }
    }

    /// Drop the snapshot series of a BlockSight (snapshots disabled, or it is deleted).
    pub fn forget_snapshots(&self, namespace: &str, name: &str) {
        for component in SNAPSHOT_COMPONENTS {
            self.snapshots
                .last_ready_timestamp
                .remove(&ComponentLabels {
                    namespace: namespace.to_owned(),
                    blocksight: name.to_owned(),
                    component: component.to_owned(),
                });
        }
    }

    /// Drop the chain series of a BlockSight whose poll loop stopped.
    pub fn forget_chain(&self, namespace: &str, name: &str, network: &str) {
        let chain = ChainLabels {
            namespace: namespace.to_owned(),
            blocksight: name.to_owned(),
            network: network.to_owned(),
        };
        for family in [
            &self.chain.blocks,
            &self.chain.headers,
            &self.chain.initial_block_download,
            &self.chain.peers,
            &self.chain.size_on_disk,
            &self.chain.tip_timestamp,
            &self.chain.mempool_transactions,
        ] {
            family.remove(&chain);
        }
        self.chain.verification_progress.remove(&chain);
        let instance = InstanceLabels {
            namespace: namespace.to_owned(),
            blocksight: name.to_owned(),
        };
        for family in [
            &self.chain.electrs_indexed_height,
            &self.chain.electrs_lag,
            &self.chain.database_size,
        ] {
            family.remove(&instance);
        }
        for service in PROBED_SERVICES {
            let labels = ServiceLabels {
                namespace: namespace.to_owned(),
                blocksight: name.to_owned(),
                service: service.to_owned(),
            };
            self.chain.probe_up.remove(&labels);
            self.chain.probe_duration.remove(&labels);
        }
    }

    /// Drop every series of a deleted BlockSight.
    pub fn forget_instance(&self, namespace: &str, name: &str) {
        let instance = InstanceLabels {
            namespace: namespace.to_owned(),
            blocksight: name.to_owned(),
        };
        for family in [
            &self.chain.electrs_indexed_height,
            &self.chain.electrs_lag,
            &self.chain.database_size,
        ] {
            family.remove(&instance);
        }
        self.backup.failures.remove(&instance);
        self.forget_snapshots(namespace, name);
        self.backup.last_success_timestamp.remove(&instance);
        self.backup.last_size.remove(&instance);
        self.backup.last_duration.remove(&instance);
        self.backup.verification_last_timestamp.remove(&instance);
        self.backup.verification_last_success.remove(&instance);
        self.backup.verification_last_duration.remove(&instance);
        for service in PROBED_SERVICES {
            let labels = ServiceLabels {
                namespace: namespace.to_owned(),
                blocksight: name.to_owned(),
                service: service.to_owned(),
            };
            self.chain.probe_errors.remove(&labels);
            self.chain.probe_up.remove(&labels);
            self.chain.probe_duration.remove(&labels);
        }
        for p in Phase::ALL {
            self.reconcile.instance_phase.remove(&PhaseLabels {
                namespace: namespace.to_owned(),
                blocksight: name.to_owned(),
                phase: p.as_str().to_owned(),
            });
        }
        for c in crate::desired::Component::ALL {
            let labels = ComponentLabels {
                namespace: namespace.to_owned(),
                blocksight: name.to_owned(),
                component: c.as_str().to_owned(),
            };
            self.reconcile.component_desired_replicas.remove(&labels);
            self.reconcile.component_ready_replicas.remove(&labels);
        }
    }
}

/// Records the reconcile duration when dropped, whichever way reconcile returns.
pub struct ReconcileTimer {
    started: Instant,
    metrics: Arc<Metrics>,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.metrics
            .reconcile
            .duration
            .observe(self.started.elapsed().as_secs_f64());
    }
}
