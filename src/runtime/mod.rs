//! The process: `blocksight run`. [`run`] orchestrates; each concern has its module:
//! - [`http`]: /metrics, /livez, /readyz;
//! - [`shutdown`]: SIGTERM and Ctrl-C;
//! - [`leader`]: leader election through a Lease;
//! - [`discovery`] and [`cluster_version`]: what the cluster serves, checked at start;
//! - [`watches`]: every watch, its cache and trigger stream (from the child table);
//! - [`controllers`]: the three controllers wired to their triggers.

pub mod cluster_version;
pub mod controllers;
pub mod discovery;
pub mod http;
pub mod leader;
pub mod shutdown;
pub mod watches;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use discovery::check_crd;
pub use leader::lease_field_manager;

use crate::chain::poller::{PollSettings, Poller};
use crate::controller::shared::context::system_clock;
use crate::controller::{Context, RecentWrites, blocksight};
use crate::desired::BuildSettings;
use crate::metrics::Metrics;
use crate::names::FIELD_MANAGER;

/// Settings of `blocksight run`.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Watch only this namespace (Role-only RBAC); all namespaces when None.
    pub namespace: Option<String>,
    pub metrics_addr: SocketAddr,
    pub leader_election: bool,
    pub lease_name: String,
    pub lease_namespace: String,
    pub identity: String,
    pub settings: BuildSettings,
    /// How often each BlockSight's services are probed.
    pub probe_interval: Duration,
    /// How often a converged BlockSight is reconciled again.
    pub resync_interval: Duration,
    /// How long each reconcile step may wait on the API server (see
    /// [`crate::controller::RECONCILE_TIMEOUT`]).
    pub reconcile_timeout: Duration,
    /// Run the chain probes (off only in benchmarks against a fake API server).
    pub probes: bool,
}

/// Why the process stopped abnormally; each has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "the BlockSight CRDs (blocksight.live/v1alpha1: BlockSight, BlockSightBackup, \
         BlockSightRestore) are not installed in this cluster: install them with `blocksight crd | kubectl apply --server-side -f -` (or the Helm chart)"
    )]
    CrdMissing,
    #[error("lost the leader Lease; exiting so that a restart re-joins the election")]
    LostLeadership,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl RunError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::CrdMissing => 3,
            RunError::LostLeadership => 4,
            RunError::Other(_) => 1,
        }
    }
}

/// Run the controller until SIGTERM (or until leadership is lost).
pub async fn run(config: RunConfig) -> Result<(), RunError> {
    let client = Client::try_default()
        .await
        .context("loading the Kubernetes client configuration")?;
    cluster_version::ensure_supported(&client).await?;
    check_crd(&client).await?;

    let metrics = Arc::new(Metrics::new());
    let health = http::Health::new(metrics.clone());
    let shutdown = CancellationToken::new();
    shutdown::cancel_on_signal(shutdown.clone());
    let server = tokio::spawn(http::serve(
        config.metrics_addr,
        health.clone(),
        shutdown.clone(),
    ));

    let lost_leadership = Arc::new(AtomicBool::new(false));
    let leadership = if config.leader_election {
        let lost = lost_leadership.clone();
        match leader::lead(&client, &config, &shutdown, &health, &metrics, lost).await? {
            Some(leadership) => Some(leadership),
            None => {
                info!("shut down");
                return Ok(());
            }
        }
    } else {
        // The only replica: it leads.
        metrics.leader.set(1);
        None
    };

    let apis = discovery::OptionalApis::discover(&client).await;
    let mut watches = watches::start(&client, config.namespace.as_deref(), apis);
    let caches = watches.caches.clone();
    let (request_reconcile, reconcile_requests) =
        futures::channel::mpsc::unbounded::<(String, String)>();
    let poller = if !config.probes {
        Arc::new(Poller::manual(metrics.clone()))
    } else {
        let primary = watches.primary.clone();
        Arc::new(Poller::new(
            PollSettings {
                interval: config.probe_interval,
                ..Default::default()
            },
            watches::secret_reader(client.clone(), caches.secrets.clone()),
            Arc::new(move |(namespace, name): &(String, String)| {
                primary
                    .get(&ObjectRef::new(name).within(namespace))
                    .is_some()
            }),
            Arc::new(move |key: &(String, String)| {
                let _ = request_reconcile.unbounded_send(key.clone());
            }),
            metrics.clone(),
        ))
    };
    let reporter = Reporter {
        controller: FIELD_MANAGER.to_owned(),
        instance: Some(config.identity.clone()),
    };
    let ctx = Arc::new(Context {
        client: client.clone(),
        caches: caches.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        metrics: metrics.clone(),
        settings: BuildSettings {
            prometheus_operator_crds: apis.monitoring,
            ..config.settings.clone()
        },
        recent_writes: RecentWrites::default(),
        own_fields: Default::default(),
        recent_status: Default::default(),
        pruned: Default::default(),
        validated: Default::default(),
        failures: Default::default(),
        poller,
        resync: config.resync_interval,
        reconcile_timeout: config.reconcile_timeout,
        volume_snapshot_api: apis.volume_snapshots,
        clock: system_clock(),
        warned_snapshots: Default::default(),
    });
    {
        // Ends when the BlockSight watch (the sender) is dropped at shutdown.
        let ctx = Arc::downgrade(&ctx);
        let mut deleted = std::mem::replace(
            &mut watches.deleted,
            tokio::sync::mpsc::unbounded_channel().1,
        );
        tokio::spawn(async move {
            while let Some((namespace, name, uid)) = deleted.recv().await {
                let Some(ctx) = ctx.upgrade() else { return };
                blocksight::forget(&ctx, &namespace, &name, &uid);
            }
        });
    }
    {
        let mut primary_listed = watches.primary_listed.clone();
        let health = health.clone();
        tokio::spawn(async move {
            if primary_listed.wait_for(|listed| *listed).await.is_ok()
                && caches.wait_until_ready().await.is_ok()
            {
                info!("every watch has delivered its first list: ready");
                health.set_ready(true);
            }
        });
    }
    let requests = reconcile_requests
        .map(|(namespace, name): (String, String)| ObjectRef::new(&name).within(&namespace))
        .boxed();
    controllers::run(
        watches,
        ctx,
        requests,
        &shutdown,
        config.namespace.as_deref(),
    )
    .await;
    info!("controller stopped");
    shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => error!(error = %e, "HTTP server failed"),
        Err(_) => warn!("HTTP server did not stop within 5 s"),
        _ => {}
    }
    // Only now that no reconcile is running: the next leader must never overlap with us.
    if let Some(leadership) = leadership {
        leadership.release().await;
    }
    if lost_leadership.load(Ordering::Relaxed) {
        return Err(RunError::LostLeadership);
    }
    info!("shut down");
    Ok(())
}
