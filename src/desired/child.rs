//! THE table of child kinds: every kind of object the operator applies for a BlockSight, in
//! apply order, with its API coordinates and how the operator caches it. The child enums
//! ([`ChildKind`], [`Child`]), the watches (`runtime::watches`), the caches
//! (`controller::shared::context::Caches`), the RBAC rules (`rbac`) and the test servers'
//! paths are all derived from it: a new kind is one row here plus its builder.

use std::borrow::Borrow;
use std::fmt;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Resource;
use kube::api::{ApiResource, DynamicObject, ObjectMeta};
use serde_json::Value;

use super::{meta, write_yaml};
use crate::names::SPEC_HASH_ANNOTATION;

/// How the operator watches and caches a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cache {
    /// A metadata-only watch into a compact `ChildCache` (the operator only has to recognise
    /// these: resourceVersion, spec hash, owner, other managers' fields).
    Compact,
    /// A whole-object watch into a `WorkloadMeta` cache: status reads their replicas.
    Workload,
    /// A custom resource without Rust types (a `DynamicObject`), watched whole, and only
    /// where the cluster serves its API.
    Custom,
}

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindInfo {
    pub kind: &'static str,
    /// "" for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub cache: Cache,
}

impl KindInfo {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.to_owned(),
            version: self.version.to_owned(),
            api_version: self.api_version(),
            kind: self.kind.to_owned(),
            plural: self.plural.to_owned(),
        }
    }

    /// The collection's path in the API, in `namespace` (e.g. `/apis/apps/v1/namespaces/ns/statefulsets`).
    pub fn path(&self, namespace: &str) -> String {
        let prefix = if self.group.is_empty() {
            "/api"
        } else {
            "/apis"
        };
        format!(
            "{prefix}/{}/namespaces/{namespace}/{}",
            self.api_version(),
            self.plural
        )
    }
}

/// The typed children k8s-openapi knows (everything but the `Custom` rows).
pub trait TypedChild:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + serde::Serialize
    + serde::de::DeserializeOwned
    + fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> TypedChild for K where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// An operation on a child that needs its Rust type (an apply through a typed `Api`):
/// [`Child::visit`] calls `typed` or `custom` as the child's row says.
pub trait ChildVisitor<'o> {
    type Output;
    fn typed<K: TypedChild>(self, obj: &'o K) -> Self::Output;
    fn custom(self, obj: &'o DynamicObject, resource: ApiResource) -> Self::Output;
}

macro_rules! child_kinds {
    ($(
        $(#[$doc:meta])*
        $kind:ident($ty:ty $(, $boxed:ident)?): $group:literal, $version:literal, $plural:literal, $cache:ident;
    )*) => {
        /// Kinds of applied children, in apply order: configuration and Services before the
        /// workloads that read them, so pods never start on half-written config.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ChildKind {
            $($(#[$doc])* $kind,)*
        }

        impl ChildKind {
            pub const ALL: &'static [ChildKind] = &[$(ChildKind::$kind),*];

            /// This kind's row of the table.
            pub const fn info(self) -> KindInfo {
                match self {
                    $(ChildKind::$kind => KindInfo {
                        kind: stringify!($kind),
                        group: $group,
                        version: $version,
                        plural: $plural,
                        cache: Cache::$cache,
                    },)*
                }
            }
        }

        /// One child applied with server-side apply.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Child {
            $($kind(child_kinds!(@type $ty $(, $boxed)?)),)*
        }

        impl Child {
            pub fn kind(&self) -> ChildKind {
                match self {
                    $(Child::$kind(_) => ChildKind::$kind,)*
                }
            }

            pub fn meta(&self) -> &ObjectMeta {
                match self {
                    $(Child::$kind(o) => o.meta(),)*
                }
            }

            fn meta_mut(&mut self) -> &mut ObjectMeta {
                match self {
                    $(Child::$kind(o) => o.meta_mut(),)*
                }
            }

            fn to_json(&self) -> Vec<u8> {
                match self {
                    $(Child::$kind(o) => serde_json::to_vec(o),)*
                }
                .expect("Kubernetes objects serialize")
            }

            /// The object as sent to the API server, with apiVersion and kind.
            pub fn to_value(&self) -> Value {
                match self {
                    $(Child::$kind(o) => serde_json::to_value(o),)*
                }
                .expect("Kubernetes objects serialize")
            }

            /// [`Child::to_yaml`], appended to `out` (no intermediate string per child).
            pub fn write_yaml(&self, out: &mut String) {
                match self {
                    $(Child::$kind(o) => write_yaml(out, o),)*
                }
            }

            /// Run `visitor` on the object with its Rust type (`custom` for `Custom` rows).
            pub fn visit<'o, V: ChildVisitor<'o>>(&'o self, visitor: V) -> V::Output {
                match self {
                    $(Child::$kind(o) => child_kinds!(@visit $cache, visitor, o, $ty, ChildKind::$kind),)*
                }
            }
        }
    };
    (@type $ty:ty, boxed) => { Box<$ty> };
    (@type $ty:ty) => { $ty };
    (@visit Custom, $visitor:ident, $o:ident, $ty:ty, $kind:expr) => {
        $visitor.custom($o, $kind.info().api_resource())
    };
    (@visit $cache:ident, $visitor:ident, $o:ident, $ty:ty, $kind:expr) => {
        $visitor.typed::<$ty>(Borrow::<$ty>::borrow($o))
    };
}

child_kinds! {
    // Kind(Rust type): group, version, plural, cache;
    ConfigMap(ConfigMap): "", "v1", "configmaps", Compact;
    Service(Service): "", "v1", "services", Compact;
    /// Before the workloads, so pods start isolated.
    NetworkPolicy(NetworkPolicy): "networking.k8s.io", "v1", "networkpolicies", Compact;
    /// Before the pods that run as it.
    ServiceAccount(ServiceAccount): "", "v1", "serviceaccounts", Compact;
    /// Before the pods that mount it.
    PersistentVolumeClaim(PersistentVolumeClaim): "", "v1", "persistentvolumeclaims", Compact;
    StatefulSet(StatefulSet): "apps", "v1", "statefulsets", Workload;
    Deployment(Deployment): "apps", "v1", "deployments", Workload;
    /// Boxed: its spec is not optional, which makes it the largest variant by far.
    CronJob(CronJob, boxed): "batch", "v1", "cronjobs", Compact;
    HorizontalPodAutoscaler(HorizontalPodAutoscaler): "autoscaling", "v2", "horizontalpodautoscalers", Compact;
    PodDisruptionBudget(PodDisruptionBudget): "policy", "v1", "poddisruptionbudgets", Compact;
    Ingress(Ingress): "networking.k8s.io", "v1", "ingresses", Compact;
    /// prometheus-operator's (no Rust types upstream: a typed-by-construction dynamic object).
    ServiceMonitor(DynamicObject): "monitoring.coreos.com", "v1", "servicemonitors", Custom;
    PodMonitor(DynamicObject): "monitoring.coreos.com", "v1", "podmonitors", Custom;
}

impl ChildKind {
    pub fn as_str(self) -> &'static str {
        self.info().kind
    }

    /// The kinds cached as `cache`, in apply order.
    pub fn cached_as(cache: Cache) -> impl Iterator<Item = ChildKind> {
        ChildKind::ALL
            .iter()
            .copied()
            .filter(move |k| k.info().cache == cache)
    }
}

impl fmt::Display for ChildKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Child {
    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or_default()
    }

    /// The hash of the object, stored in [`SPEC_HASH_ANNOTATION`] when applied.
    pub fn spec_hash(&self) -> &str {
        self.meta()
            .annotations
            .as_ref()
            .and_then(|a| a.get(SPEC_HASH_ANNOTATION))
            .map(String::as_str)
            .unwrap_or_default()
    }

    /// The object as YAML, with apiVersion and kind, fields in the API's order.
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        self.write_yaml(&mut out);
        out
    }

    /// Stamp the object with the hash of its content (computed without the stamp), from its
    /// JSON straight from the typed object: deterministic (struct order, sorted maps) and
    /// without an intermediate Value.
    pub(super) fn stamp(mut self) -> Self {
        let hash = meta::digest(&self.to_json());
        self.meta_mut()
            .annotations
            .get_or_insert_with(Default::default)
            .insert(SPEC_HASH_ANNOTATION.to_owned(), hash);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_names_the_kind_its_rust_type_serializes_as() {
        for kind in ChildKind::ALL {
            let info = kind.info();
            assert!(info.plural.ends_with('s'), "{info:?}");
            assert_eq!(info.plural, info.plural.to_lowercase(), "{info:?}");
        }
        assert_eq!(
            <StatefulSet as Resource>::api_version(&()),
            ChildKind::StatefulSet.info().api_version()
        );
        assert_eq!(
            <HorizontalPodAutoscaler as Resource>::api_version(&()),
            ChildKind::HorizontalPodAutoscaler.info().api_version()
        );
        assert_eq!(
            ChildKind::ConfigMap.info().path("ns"),
            "/api/v1/namespaces/ns/configmaps"
        );
        assert_eq!(
            ChildKind::Ingress.info().path("ns"),
            "/apis/networking.k8s.io/v1/namespaces/ns/ingresses"
        );
    }
}
