//! Playing the StatefulSet and Deployment controllers and the kubelet: shortly after a
//! workload changes, its status reports the new generation observed and every replica
//! updated and ready. Written through the status subresource as kube-controller-manager,
//! so watches see it; never counted as a client request.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::Shared;
use crate::store::{ChangeKind, Subresource};

const MANAGER: &str = "kube-controller-manager";

/// The status a settled workload reports.
fn settled_status(kind: &str, object: &Value) -> Value {
    let replicas = object["spec"]["replicas"].as_i64().unwrap_or(1);
    let generation = object["metadata"]["generation"].as_i64().unwrap_or(1);
    match kind {
        "StatefulSet" => {
            let revision = format!(
                "{}-{generation}",
                object["metadata"]["name"].as_str().unwrap_or_default()
            );
            json!({
                "observedGeneration": generation,
                "replicas": replicas,
                "readyReplicas": replicas,
                "currentReplicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": replicas,
                "currentRevision": revision,
                "updateRevision": revision,
                "collisionCount": 0,
            })
        }
        _ => json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "readyReplicas": replicas,
            "updatedReplicas": replicas,
            "availableReplicas": replicas,
        }),
    }
}

pub(crate) fn spawn(shared: Arc<Shared>, delay: Duration) {
    let workloads: Vec<usize> = shared
        .resources
        .iter()
        .enumerate()
        .filter(|(_, r)| r.group == "apps" && matches!(r.kind, "StatefulSet" | "Deployment"))
        .map(|(i, _)| i)
        .collect();
    let mut changes = shared.store().subscribe(workloads);
    tokio::spawn(async move {
        while let Some(change) = changes.recv().await {
            if change.kind == ChangeKind::Deleted {
                continue;
            }
            let kind = shared.resources[change.resource].kind;
            if change.object.get("status") == Some(&settled_status(kind, &change.object)) {
                continue;
            }
            let shared = shared.clone();
            let resource = change.resource;
            let meta = &change.object["metadata"];
            let ns = meta["namespace"].as_str().unwrap_or_default().to_owned();
            let name = meta["name"].as_str().unwrap_or_default().to_owned();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let mut store = shared.store();
                // Settle the workload as it is now (it may have changed again meanwhile).
                let Ok(current) = store.get(resource, &ns, &name) else {
                    return;
                };
                let status = settled_status(kind, &current);
                if current.get("status") != Some(&status) {
                    let _ = store.merge_patch(
                        resource,
                        &ns,
                        &name,
                        &json!({"status": status}),
                        MANAGER,
                        Subresource::Status,
                    );
                }
            });
        }
    });
}
