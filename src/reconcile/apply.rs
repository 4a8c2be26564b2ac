//! Apply step: create missing credentials, server-side apply the children that differ from
//! the cluster, and delete children that are no longer desired. Every decision is made from
//! the watch caches, so a cluster that already matches costs no request at all.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, info};

use super::context::{Context, Versions};
use super::drift;
use super::error::{ApplyError, CredentialsError};
use crate::build::monitors::{pod_monitor_resource, service_monitor_resource};
use crate::build::secrets::{ROTATION_ANNOTATION, key};
use crate::build::{Child, ChildKind, Desired, FIELD_MANAGER};
use k8s_openapi::ByteString;

/// Marks a recent delete in [`super::context::RecentWrites`].
const DELETED: &str = "<deleted>";

/// What the apply step did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub created_secrets: Vec<String>,
    pub applied: Vec<(ChildKind, String)>,
    pub pruned: Vec<(ChildKind, String)>,
}

/// Create each generated Secret that does not exist yet. Existing ones are never touched
/// (their values are what the running services were initialised with) unless `rotation`
/// asks for new ones: then they are rewritten, keeping the PostgreSQL superuser password
/// (the operator needs it to move the roles to their new passwords).
pub async fn ensure_credentials(
    ctx: &Context,
    namespace: &str,
    rotation: Option<&str>,
    generate: impl FnOnce() -> Vec<Secret>,
    names: &[String],
) -> Result<Vec<String>, CredentialsError> {
    let cached_version = |name: &String| {
        ctx.caches
            .secret(namespace, name)
            .and_then(|s| s.resource_version())
    };
    let missing = |name: &String| {
        !ctx.caches.secret_exists(namespace, name)
            && !ctx
                .recent_writes
                .contains("Secret", namespace, name, "", None)
    };
    let stale = |name: &String| {
        let Some(rotation) = rotation else {
            return false;
        };
        let carried = ctx
            .caches
            .secret(namespace, name)
            .and_then(|s| s.annotations().get(ROTATION_ANNOTATION).cloned());
        ctx.caches.secret_exists(namespace, name)
            && carried.as_deref() != Some(rotation)
            && !ctx.recent_writes.contains(
                "Secret",
                namespace,
                name,
                rotation,
                cached_version(name).as_deref(),
            )
    };
    if !names.iter().any(|n| missing(n) || stale(n)) {
        return Ok(vec![]);
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let mut written = Vec::new();
    for mut secret in generate() {
        let name = secret.name_any();
        if missing(&name) {
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..Default::default()
            };
            let after = match api.create(&params, &secret).await {
                Ok(created) => {
                    written.push(name.clone());
                    created.resource_version()
                }
                // Another replica or an earlier attempt created it: keep what is there.
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    debug!(secret = %name, "credentials already exist");
                    None
                }
                Err(source) => return Err(CredentialsError { name, source }),
            };
            let versions = Versions {
                before: None,
                after,
            };
            ctx.recent_writes
                .record("Secret", namespace, &name, "", versions);
        } else if stale(&name) {
            let rotation = rotation.unwrap_or_default();
            if let Some(current) = ctx.caches.secret(namespace, &name)
                && let Some(superuser) = current
                    .data
                    .as_ref()
                    .and_then(|d| d.get(key::SUPERUSER_PASSWORD))
            {
                secret
                    .string_data
                    .get_or_insert_with(Default::default)
                    .insert(
                        key::SUPERUSER_PASSWORD.to_owned(),
                        String::from_utf8_lossy(&superuser.0).into_owned(),
                    );
            }
            // stringData is write-only: apply the values as data, which we then own.
            secret.data = secret.string_data.take().map(|d| {
                d.into_iter()
                    .map(|(k, v)| (k, ByteString(v.into_bytes())))
                    .collect()
            });
            let before = cached_version(&name);
            let rotated = api
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&secret),
                )
                .await
                .map_err(|source| CredentialsError {
                    name: name.clone(),
                    source,
                })?;
            info!(secret = %name, "credentials rotated");
            ctx.recent_writes.record(
                "Secret",
                namespace,
                &name,
                rotation,
                Versions {
                    before,
                    after: rotated.resource_version(),
                },
            );
            written.push(name);
        }
    }
    Ok(written)
}

/// Whether `child` must be applied: it is missing, differs from what we last applied, or
/// someone else changed a field we own.
pub fn needs_apply(ctx: &Context, namespace: &str, child: &Child) -> bool {
    let hash = child.spec_hash();
    let cached_version = ctx
        .caches
        .with_meta(child.kind(), namespace, child.name(), |meta| {
            meta.resource_version().map(str::to_owned)
        })
        .flatten();
    if ctx.recent_writes.contains(
        child.kind().as_str(),
        namespace,
        child.name(),
        hash,
        cached_version.as_deref(),
    ) {
        return false;
    }
    let current = ctx
        .caches
        .with_meta(child.kind(), namespace, child.name(), |meta| {
            // Serialize the child only when someone else edited the object at all: the
            // common steady state (only our own entries) costs a hash comparison.
            let fields = meta.foreign_fields();
            let drifted =
                !fields.is_empty() && drift::is_drifted(fields, FIELD_MANAGER, &child.to_value());
            meta.spec_hash() == Some(hash) && !drifted
        });
    current != Some(true)
}

/// The resourceVersion the API server answered a write with.
type Answered = Option<String>;

async fn apply_typed<K>(client: &Client, namespace: &str, obj: &K) -> Result<Answered, kube::Error>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.patch(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .map(|o| o.resource_version())
}

async fn delete_typed<K>(client: &Client, namespace: &str, name: &str) -> Result<(), kube::Error>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn apply_dynamic(
    client: &Client,
    namespace: &str,
    obj: &DynamicObject,
    resource: &ApiResource,
) -> Result<Answered, kube::Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    api.patch(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
    .map(|o| o.resource_version())
}

async fn delete_dynamic(
    client: &Client,
    namespace: &str,
    name: &str,
    resource: &ApiResource,
) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

async fn apply_child(
    client: &Client,
    namespace: &str,
    child: &Child,
) -> Result<Answered, kube::Error> {
    match child {
        Child::ConfigMap(o) => apply_typed(client, namespace, o).await,
        Child::Service(o) => apply_typed(client, namespace, o).await,
        Child::NetworkPolicy(o) => apply_typed(client, namespace, o).await,
        Child::ServiceAccount(o) => apply_typed(client, namespace, o).await,
        Child::PersistentVolumeClaim(o) => apply_typed(client, namespace, o).await,
        Child::CronJob(o) => apply_typed(client, namespace, o.as_ref()).await,
        Child::StatefulSet(o) => apply_typed(client, namespace, o).await,
        Child::Deployment(o) => apply_typed(client, namespace, o).await,
        Child::HorizontalPodAutoscaler(o) => apply_typed(client, namespace, o).await,
        Child::PodDisruptionBudget(o) => apply_typed(client, namespace, o).await,
        Child::Ingress(o) => apply_typed(client, namespace, o).await,
        Child::ServiceMonitor(o) => {
            apply_dynamic(client, namespace, o, &service_monitor_resource()).await
        }
        Child::PodMonitor(o) => apply_dynamic(client, namespace, o, &pod_monitor_resource()).await,
    }
}

async fn delete_child(
    client: &Client,
    kind: ChildKind,
    namespace: &str,
    name: &str,
) -> Result<(), kube::Error> {
    match kind {
        ChildKind::ConfigMap => delete_typed::<ConfigMap>(client, namespace, name).await,
        ChildKind::Service => delete_typed::<Service>(client, namespace, name).await,
        ChildKind::NetworkPolicy => delete_typed::<NetworkPolicy>(client, namespace, name).await,
        ChildKind::ServiceAccount => delete_typed::<ServiceAccount>(client, namespace, name).await,
        ChildKind::PersistentVolumeClaim => {
            delete_typed::<PersistentVolumeClaim>(client, namespace, name).await
        }
        ChildKind::CronJob => delete_typed::<CronJob>(client, namespace, name).await,
        ChildKind::StatefulSet => delete_typed::<StatefulSet>(client, namespace, name).await,
        ChildKind::Deployment => delete_typed::<Deployment>(client, namespace, name).await,
        ChildKind::HorizontalPodAutoscaler => {
            delete_typed::<HorizontalPodAutoscaler>(client, namespace, name).await
        }
        ChildKind::PodDisruptionBudget => {
            delete_typed::<PodDisruptionBudget>(client, namespace, name).await
        }
        ChildKind::Ingress => delete_typed::<Ingress>(client, namespace, name).await,
        ChildKind::ServiceMonitor => {
            delete_dynamic(client, namespace, name, &service_monitor_resource()).await
        }
        ChildKind::PodMonitor => {
            delete_dynamic(client, namespace, name, &pod_monitor_resource()).await
        }
    }
}

/// Apply what differs, in order (config and Services before workloads), then prune the
/// children of `owner_uid` that are no longer desired (a disabled component). Pruning a
/// StatefulSet leaves its PVCs to their retention policy, i.e. to deletionPolicy.
pub async fn apply_children(
    ctx: &Context,
    namespace: &str,
    owner_uid: &str,
    desired: &Desired,
) -> Result<Applied, ApplyError> {
    let mut applied = Applied::default();
    for child in &desired.children {
        if !needs_apply(ctx, namespace, child) {
            continue;
        }
        let (kind, name) = (child.kind(), child.name().to_owned());
        let before = ctx
            .caches
            .with_meta(kind, namespace, &name, |meta| {
                meta.resource_version().map(str::to_owned)
            })
            .flatten();
        let after = apply_child(&ctx.client, namespace, child)
            .await
            .map_err(|source| ApplyError::Apply {
                kind,
                name: name.clone(),
                source,
            })?;
        ctx.recent_writes.record(
            kind.as_str(),
            namespace,
            &name,
            child.spec_hash(),
            Versions { before, after },
        );
        info!(%kind, %name, "applied");
        applied.applied.push((kind, name));
    }
    let desired_set = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for child in &desired.children {
            (child.kind().as_str(), child.name()).hash(&mut hasher);
        }
        hasher.finish()
    };
    if ctx.pruned.is_settled(owner_uid, desired_set) {
        return Ok(applied);
    }
    for (kind, ns, name) in ctx.caches.children_of(owner_uid) {
        let wanted = desired
            .children
            .iter()
            .any(|c| c.kind() == kind && c.name() == name);
        if wanted || ns != namespace {
            continue;
        }
        let cached_version = ctx
            .caches
            .with_meta(kind, namespace, &name, |meta| {
                meta.resource_version().map(str::to_owned)
            })
            .flatten();
        if ctx.recent_writes.contains(
            kind.as_str(),
            namespace,
            &name,
            DELETED,
            cached_version.as_deref(),
        ) {
            continue;
        }
        delete_child(&ctx.client, kind, namespace, &name)
            .await
            .map_err(|source| ApplyError::Prune {
                kind,
                name: name.clone(),
                source,
            })?;
        ctx.recent_writes.record(
            kind.as_str(),
            namespace,
            &name,
            DELETED,
            Versions {
                before: cached_version,
                after: None,
            },
        );
        info!(%kind, %name, "deleted: no longer desired");
        applied.pruned.push((kind, name));
    }
    ctx.pruned.settle(owner_uid, desired_set);
    Ok(applied)
}
