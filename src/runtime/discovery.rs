//! What the cluster serves, asked once at start through API discovery (which needs no RBAC):
//! the operator's CRDs (required), prometheus-operator's monitors and VolumeSnapshots
//! (optional: their children are skipped where the cluster lacks them).

use kube::Client;

use super::RunError;

/// Fail fast, with a clear message, when the CRD is not installed (API discovery needs no RBAC).
pub async fn check_crd(client: &Client) -> Result<(), RunError> {
    match client
        .list_api_group_resources("blocksight.live/v1alpha1")
        .await
    {
        Ok(list)
            if ["blocksights", "blocksightbackups", "blocksightrestores"]
                .iter()
                .all(|kind| list.resources.iter().any(|r| r.name == *kind)) =>
        {
            Ok(())
        }
        Ok(_) => Err(RunError::CrdMissing),
        Err(kube::Error::Api(e)) if e.code == 404 => Err(RunError::CrdMissing),
        Err(e) => Err(RunError::Other(
            anyhow::Error::new(e).context("API discovery of blocksight.live/v1alpha1"),
        )),
    }
}

/// The optional APIs the operator uses where the cluster serves them.
#[derive(Clone, Copy, Debug)]
pub struct OptionalApis {
    /// monitoring.coreos.com/v1 ServiceMonitors and PodMonitors.
    pub monitoring: bool,
    /// snapshot.storage.k8s.io/v1 VolumeSnapshots.
    pub volume_snapshots: bool,
}

impl OptionalApis {
    pub async fn discover(client: &Client) -> Self {
        let monitoring = prometheus_operator_installed(client).await;
        tracing::info!(
            installed = monitoring,
            "prometheus-operator CRDs (monitoring.coreos.com/v1)"
        );
        let volume_snapshots = volume_snapshots_served(client).await;
        tracing::info!(
            served = volume_snapshots,
            "VolumeSnapshot API (snapshot.storage.k8s.io/v1)"
        );
        OptionalApis {
            monitoring,
            volume_snapshots,
        }
    }
}

/// Whether the cluster serves the prometheus-operator kinds the operator creates.
async fn prometheus_operator_installed(client: &Client) -> bool {
    match client
        .list_api_group_resources("monitoring.coreos.com/v1")
        .await
    {
        Ok(list) => ["servicemonitors", "podmonitors"]
            .iter()
            .all(|k| list.resources.iter().any(|r| r.name == *k)),
        Err(_) => false,
    }
}

/// Whether the cluster serves snapshot.storage.k8s.io/v1 VolumeSnapshots (the
/// external-snapshotter CRDs).
async fn volume_snapshots_served(client: &Client) -> bool {
    match client
        .list_api_group_resources("snapshot.storage.k8s.io/v1")
        .await
    {
        Ok(list) => list.resources.iter().any(|r| r.name == "volumesnapshots"),
        Err(_) => false,
    }
}
