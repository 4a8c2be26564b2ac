//! Apply step: create missing credentials, server-side apply the children that differ from
//! the cluster, and delete children that are no longer desired. Every decision is made from
//! the watch caches, so a cluster that already matches costs no request at all.

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use tracing::{debug, info};

use crate::controller::error::{ApplyError, CredentialsError};
use crate::controller::shared::child_cache::{ClaimTemplate, WorkloadMeta};
use crate::controller::shared::context::{Context, Versions};
use crate::controller::shared::drift;
use crate::desired::secrets::key;
use crate::desired::{Child, ChildKind, ChildVisitor, Desired, TypedChild};
use crate::names::{FIELD_MANAGER, REPLICAS_HANDOVER_MANAGER, ROTATION_ANNOTATION};
use crate::validate::parse_quantity;

/// Marks a recent delete in [`crate::controller::shared::context::RecentWrites`].
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
            let drifted = !fields.is_empty()
                && drift::is_drifted(fields, FIELD_MANAGER, &child.to_value())
                && ctx.own_fields.foreign_changed(
                    child.kind().as_str(),
                    namespace,
                    child.name(),
                    drift::foreign_digest(fields, FIELD_MANAGER),
                );
            let ours_changed = ctx.own_fields.changed(
                child.kind().as_str(),
                namespace,
                child.name(),
                meta.own_fields(),
            );
            meta.spec_hash() == Some(hash) && !drifted && !ours_changed
        });
    current != Some(true)
}

/// What the API server answered a write with: the resourceVersion, and the digest of the
/// fields our apply owns now.
#[derive(Debug, Default)]
struct Answered {
    resource_version: Option<String>,
    own_fields: u64,
    foreign_fields: u64,
}

fn answered(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Answered {
    Answered {
        resource_version: meta.resource_version.clone(),
        own_fields: drift::own_fields_digest(meta, FIELD_MANAGER),
        foreign_fields: drift::foreign_digest(meta.managed_fields.iter().flatten(), FIELD_MANAGER),
    }
}

/// Server-side apply of one child, through a typed `Api` (or a dynamic one for `Custom` rows).
struct ApplyChild<'a> {
    client: &'a Client,
    namespace: &'a str,
}

impl<'a> ChildVisitor<'a> for ApplyChild<'a> {
    type Output = futures::future::BoxFuture<'a, Result<Answered, kube::Error>>;

    fn typed<K: TypedChild>(self, obj: &'a K) -> Self::Output {
        let api: Api<K> = Api::namespaced(self.client.clone(), self.namespace);
        Box::pin(async move {
            api.patch(
                &obj.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(obj),
            )
            .await
            .map(|o| answered(o.meta()))
        })
    }

    fn custom(self, obj: &'a DynamicObject, resource: ApiResource) -> Self::Output {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), self.namespace, &resource);
        Box::pin(async move {
            api.patch(
                &obj.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(obj),
            )
            .await
            .map(|o| answered(&o.metadata))
        })
    }
}

async fn apply_child(
    client: &Client,
    namespace: &str,
    child: &Child,
) -> Result<Answered, kube::Error> {
    child.visit(ApplyChild { client, namespace }).await
}

/// Delete a child of `kind` (by its row of the table), a missing object counting as deleted.
async fn delete_child(
    client: &Client,
    kind: ChildKind,
    namespace: &str,
    name: &str,
) -> Result<(), kube::Error> {
    delete_with(
        client,
        &kind.info().api_resource(),
        namespace,
        name,
        &DeleteParams::background(),
    )
    .await
}

/// Delete, a missing object counting as deleted.
async fn delete_with(
    client: &Client,
    resource: &ApiResource,
    namespace: &str,
    name: &str,
    params: &DeleteParams,
) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, resource);
    match api.delete(name, params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// What to send for a StatefulSet, given the live one (see [`plan_stateful_set`]).
#[derive(Debug, PartialEq)]
pub enum StatefulSetPlan {
    /// Apply this (the desired object, its claim templates as the server holds them).
    Apply(Box<StatefulSet>),
    /// Its claim templates differ in more than size (a template added or removed, another
    /// storage class): delete it with orphan propagation (pods and PVCs stay), then create
    /// it anew once it is gone.
    Recreate,
}

/// The API server never lets a StatefulSet's `volumeClaimTemplates` change (422: "updates
/// to statefulset spec for fields other than ... are forbidden"), and an apply that fails
/// there would leave the rest of the spec stale. So an existing StatefulSet is applied with
/// the claim templates it has, sizes included; volumes grow by resizing their PVCs instead
/// ([`volumes_to_grow`]). Pure.
pub fn plan_stateful_set(live: Option<&WorkloadMeta>, desired: &StatefulSet) -> StatefulSetPlan {
    let templates = desired
        .spec
        .volume_claim_templates
        .as_deref()
        .unwrap_or_default();
    let Some(live) = live else {
        return StatefulSetPlan::Apply(Box::new(desired.clone()));
    };
    let same_shape = live.claims.len() == templates.len()
        && live.claims.iter().zip(templates).all(|(l, d)| {
            let d = ClaimTemplate::of(d);
            l.name == d.name && l.storage_class == d.storage_class
        });
    if !same_shape {
        return StatefulSetPlan::Recreate;
    }
    let mut kept = desired.clone();
    for (template, live) in kept
        .spec
        .volume_claim_templates
        .iter_mut()
        .flatten()
        .zip(live.claims.iter())
    {
        if let (Some(requests), Some(size)) = (
            template
                .spec
                .as_mut()
                .and_then(|s| s.resources.as_mut())
                .and_then(|r| r.requests.as_mut()),
            live.storage.as_deref(),
        ) {
            requests.insert("storage".to_owned(), Quantity(size.to_owned()));
        }
    }
    StatefulSetPlan::Apply(Box::new(kept))
}

/// The PVCs of `sts` (`<template>-<statefulset>-<ordinal>`, for every ordinal the
/// StatefulSet has or is asked for) that request less than their template asks for now,
/// with the size to request. Reads the caches only.
pub fn volumes_to_grow(ctx: &Context, namespace: &str, sts: &StatefulSet) -> Vec<(String, String)> {
    let name = sts.metadata.name.as_deref().unwrap_or_default();
    let live_replicas = ctx
        .caches
        .stateful_set(namespace, name)
        .and_then(|w| w.replicas)
        .unwrap_or(0);
    let replicas = sts.spec.replicas.unwrap_or(1).max(live_replicas).max(0);
    let mut grow = Vec::new();
    for template in sts.spec.volume_claim_templates.iter().flatten() {
        let wanted = ClaimTemplate::of(template);
        let Some(size) = wanted.storage.as_deref() else {
            continue;
        };
        let Some(want) = parse_quantity(size) else {
            continue;
        };
        for ordinal in 0..replicas {
            let pvc = format!("{}-{name}-{ordinal}", wanted.name);
            let Some(live) = ctx.caches.stateful_volume(namespace, &pvc) else {
                continue;
            };
            let has = live
                .request
                .as_deref()
                .and_then(parse_quantity)
                .unwrap_or(0.0);
            if has < want {
                grow.push((pvc, size.to_owned()));
            }
        }
    }
    grow
}

/// Ask for more space on an existing PVC: an apply of only its storage request (the field
/// the API server lets grow on a bound claim whose StorageClass allows expansion).
async fn grow_volume(
    client: &Client,
    namespace: &str,
    name: &str,
    size: &str,
) -> Result<Option<String>, kube::Error> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let patch = serde_json::json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"resources": {"requests": {"storage": size}}},
    });
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|o| o.resource_version())
}

/// Before the operator's apply drops `spec.replicas` from a Deployment (autoscaling turned
/// on), another field manager applies the live value, so the field keeps an owner and its
/// value: otherwise server-side apply resets it to the default (1) until the HPA reacts,
/// which scales a serving API down. The Kubernetes docs' "transferring ownership" recipe.
async fn hand_over_replicas(
    client: &Client,
    namespace: &str,
    name: &str,
    replicas: i32,
) -> Result<(), kube::Error> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let patch = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
    });
    api.patch(
        name,
        &PatchParams::apply(REPLICAS_HANDOVER_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
}

/// Apply what differs, in order (config and Services before workloads), grow the volumes
/// whose size went up, then prune the children of `owner_uid` that are no longer desired
/// (a disabled component). Pruning a StatefulSet leaves its PVCs to their retention
/// policy, i.e. to deletionPolicy.
///
/// One child's failure does not stop the others: every child is tried, and every failure
/// is reported together. The one exception keeps the order's promise: when configuration
/// (a ConfigMap, Service, NetworkPolicy, ServiceAccount or PVC) failed, no workload is
/// applied, so pods never roll onto configuration that is not there.
pub async fn apply_children(
    ctx: &Context,
    namespace: &str,
    owner_uid: &str,
    desired: &Desired,
) -> Result<Applied, ApplyError> {
    let mut applied = Applied::default();
    let mut failures = Vec::new();
    for child in &desired.children {
        if let Child::StatefulSet(sts) = child {
            grow_volumes(ctx, namespace, sts, &mut failures).await;
        }
        if !needs_apply(ctx, namespace, child) {
            continue;
        }
        let (kind, name) = (child.kind(), child.name().to_owned());
        let configuration_failed = failures.iter().any(|f| match f {
            ApplyError::Apply { kind, .. } => *kind < ChildKind::StatefulSet,
            _ => false,
        });
        if configuration_failed && kind >= ChildKind::StatefulSet {
            continue;
        }
        let before = ctx
            .caches
            .with_meta(kind, namespace, &name, |meta| {
                meta.resource_version().map(str::to_owned)
            })
            .flatten();
        match apply_one(ctx, namespace, child, before.as_deref()).await {
            Ok(Some(answer)) => {
                ctx.own_fields.record(
                    kind.as_str(),
                    namespace,
                    &name,
                    answer.own_fields,
                    answer.foreign_fields,
                );
                let after = answer.resource_version;
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
            // Recreated: deleted now, created once the watch shows it gone.
            Ok(None) => {}
            Err(source) => failures.push(ApplyError::Apply { kind, name, source }),
        }
    }
    prune(
        ctx,
        namespace,
        owner_uid,
        desired,
        &mut applied,
        &mut failures,
    )
    .await;
    match failures.len() {
        0 => Ok(applied),
        1 => Err(failures.remove(0)),
        _ => Err(ApplyError::Several(failures)),
    }
}

/// Apply one child that differs: a StatefulSet with the claim templates it has (or deleted
/// with orphans when they must change: None), a Deployment whose replicas autoscaling takes
/// over after their handover, anything else as built.
async fn apply_one(
    ctx: &Context,
    namespace: &str,
    child: &Child,
    cached_version: Option<&str>,
) -> Result<Option<Answered>, kube::Error> {
    let name = child.name();
    match child {
        Child::StatefulSet(sts) => {
            match plan_stateful_set(ctx.caches.stateful_set(namespace, name).as_ref(), sts) {
                StatefulSetPlan::Apply(kept) => ApplyChild {
                    client: &ctx.client,
                    namespace,
                }
                .typed(kept.as_ref())
                .await
                .map(Some),
                StatefulSetPlan::Recreate => {
                    let kind = ChildKind::StatefulSet.as_str();
                    if !ctx
                        .recent_writes
                        .contains(kind, namespace, name, DELETED, cached_version)
                    {
                        orphan(&ctx.client, namespace, name).await?;
                        info!(statefulset = %name, "claim templates changed: deleted with its pods and volumes orphaned, to be created anew");
                        ctx.recent_writes.record(
                            kind,
                            namespace,
                            name,
                            DELETED,
                            Versions {
                                before: cached_version.map(str::to_owned),
                                after: None,
                            },
                        );
                    }
                    Ok(None)
                }
            }
        }
        Child::Deployment(deployment) if deployment.spec.replicas.is_none() => {
            let live = ctx.caches.deployment(namespace, name);
            if let Some(replicas) = live.filter(|l| l.owns_replicas).and_then(|l| l.replicas) {
                hand_over_replicas(&ctx.client, namespace, name, replicas).await?;
                info!(deployment = %name, replicas, "spec.replicas handed over before autoscaling takes it");
            }
            apply_child(&ctx.client, namespace, child).await.map(Some)
        }
        _ => apply_child(&ctx.client, namespace, child).await.map(Some),
    }
}

/// Grow the PVCs of `sts` that ask for less than its templates now do.
async fn grow_volumes(
    ctx: &Context,
    namespace: &str,
    sts: &StatefulSet,
    failures: &mut Vec<ApplyError>,
) {
    for (pvc, size) in volumes_to_grow(ctx, namespace, sts) {
        let cached = ctx
            .caches
            .stateful_volume(namespace, &pvc)
            .and_then(|v| v.child.resource_version().map(str::to_owned));
        let kind = "PersistentVolumeClaim";
        if ctx
            .recent_writes
            .contains(kind, namespace, &pvc, &size, cached.as_deref())
        {
            continue;
        }
        match grow_volume(&ctx.client, namespace, &pvc, &size).await {
            Ok(after) => {
                let versions = Versions {
                    before: cached,
                    after,
                };
                ctx.recent_writes
                    .record(kind, namespace, &pvc, &size, versions);
                info!(pvc = %pvc, %size, "volume growth requested");
            }
            Err(source) => failures.push(ApplyError::Grow {
                name: pvc,
                size,
                source,
            }),
        }
    }
}

/// Delete the children of `owner_uid` that are no longer desired (a disabled component).
async fn prune(
    ctx: &Context,
    namespace: &str,
    owner_uid: &str,
    desired: &Desired,
    applied: &mut Applied,
    failures: &mut Vec<ApplyError>,
) {
    let desired_set = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for child in &desired.children {
            (child.kind().as_str(), child.name()).hash(&mut hasher);
        }
        hasher.finish()
    };
    if ctx.pruned.is_settled(owner_uid, desired_set) {
        return;
    }
    let mut pruned_all = true;
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
        if let Err(source) = delete_child(&ctx.client, kind, namespace, &name).await {
            pruned_all = false;
            failures.push(ApplyError::Prune { kind, name, source });
            continue;
        }
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
    if pruned_all {
        ctx.pruned.settle(owner_uid, desired_set);
    }
}

/// Delete a StatefulSet, leaving its pods and PVCs (orphan propagation): the new one adopts
/// the pods by their labels and the PVCs by their names.
async fn orphan(client: &Client, namespace: &str, name: &str) -> Result<(), kube::Error> {
    delete_with(
        client,
        &ChildKind::StatefulSet.info().api_resource(),
        namespace,
        name,
        &DeleteParams::orphan(),
    )
    .await
}

#[cfg(test)]
mod stateful_set_plan_tests {
    use k8s_openapi::api::core::v1::{
        PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn template(name: &str, size: &str, class: Option<&str>) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                storage_class_name: class.map(Into::into),
                resources: Some(VolumeResourceRequirements {
                    requests: Some([("storage".to_owned(), Quantity(size.into()))].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn sts(templates: Vec<PersistentVolumeClaim>) -> StatefulSet {
        let mut sts = StatefulSet::default();
        sts.spec.volume_claim_templates = Some(templates);
        sts
    }

    fn live(templates: &[PersistentVolumeClaim]) -> WorkloadMeta {
        WorkloadMeta {
            claims: templates.iter().map(ClaimTemplate::of).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_new_statefulset_is_applied_as_desired() {
        let desired = sts(vec![template("data", "10Gi", None)]);
        assert_eq!(
            plan_stateful_set(None, &desired),
            StatefulSetPlan::Apply(Box::new(desired.clone()))
        );
    }

    #[test]
    fn a_bigger_size_keeps_the_live_claim_template() {
        let desired = sts(vec![template("data", "20Gi", Some("gp3"))]);
        let was = [template("data", "10Gi", Some("gp3"))];
        let StatefulSetPlan::Apply(kept) = plan_stateful_set(Some(&live(&was)), &desired) else {
            panic!("applied, not recreated");
        };
        assert_eq!(kept.spec.volume_claim_templates.unwrap(), was.to_vec());
    }

    #[test]
    fn another_class_or_template_set_recreates_it_with_orphans() {
        let desired = sts(vec![template("data", "10Gi", Some("gp3"))]);
        let other_class = [template("data", "10Gi", Some("standard"))];
        assert_eq!(
            plan_stateful_set(Some(&live(&other_class)), &desired),
            StatefulSetPlan::Recreate
        );
        let more = [
            template("data", "10Gi", Some("gp3")),
            template("wal", "1Gi", Some("gp3")),
        ];
        assert_eq!(
            plan_stateful_set(Some(&live(&more)), &desired),
            StatefulSetPlan::Recreate
        );
    }
}
