//! Metadata, labels and security settings every child shares.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::crd::DeletionPolicy;
pub use crate::digest::digest;
use crate::names::MANAGED_BY;
use crate::validate::ValidBlockSight;

/// The components of a BlockSight, as named in labels and child names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    Bitcoind,
    Electrs,
    Postgres,
    Redis,
    Api,
    Prometheus,
    Grafana,
}

impl Component {
    pub const ALL: [Component; 7] = [
        Self::Bitcoind,
        Self::Electrs,
        Self::Postgres,
        Self::Redis,
        Self::Api,
        Self::Prometheus,
        Self::Grafana,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bitcoind => "bitcoind",
            Self::Electrs => "electrs",
            Self::Postgres => "postgres",
            Self::Redis => "redis",
            Self::Api => "api",
            Self::Prometheus => "prometheus",
            Self::Grafana => "grafana",
        }
    }

    /// Name of this component's main children (`<blocksight>-<component>`).
    pub fn child_name(self, bs: &ValidBlockSight) -> String {
        format!("{}-{}", bs.name, self.as_str())
    }
}

/// Labels that select a component's pods (stable for the object's lifetime).
pub fn selector_labels(bs: &ValidBlockSight, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_owned(),
            component.as_str().to_owned(),
        ),
        ("app.kubernetes.io/instance".to_owned(), bs.name.clone()),
        (
            "app.kubernetes.io/component".to_owned(),
            component.as_str().to_owned(),
        ),
    ])
}

/// Every label of a component's objects.
pub fn labels(bs: &ValidBlockSight, component: Component) -> BTreeMap<String, String> {
    let mut labels = selector_labels(bs, component);
    labels.insert(
        "app.kubernetes.io/part-of".to_owned(),
        "blocksight".to_owned(),
    );
    labels.insert(
        "app.kubernetes.io/managed-by".to_owned(),
        MANAGED_BY.to_owned(),
    );
    labels
}

pub fn selector(bs: &ValidBlockSight, component: Component) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector_labels(bs, component)),
        ..Default::default()
    }
}

/// Metadata of a child owned (controller reference) by the BlockSight.
pub fn owned(bs: &ValidBlockSight, component: Component, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(bs.namespace.clone()),
        labels: Some(labels(bs, component)),
        owner_references: bs.owner.clone().map(|o| vec![o]),
        ..Default::default()
    }
}

/// Metadata of data the user may want to outlive the BlockSight (generated credentials):
/// owned only under `deletionPolicy: Delete`, so Retain keeps them for the next BlockSight
/// of the same name, whose retained volumes were initialised with them.
pub fn retained(bs: &ValidBlockSight, component: Component, name: String) -> ObjectMeta {
    let mut meta = owned(bs, component, name);
    if bs.deletion_policy == DeletionPolicy::Retain {
        meta.owner_references = None;
    }
    meta
}

/// Pod-level security for the Pod Security Standard "restricted".
pub fn pod_security(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        fs_group_change_policy: Some("OnRootMismatch".to_owned()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Container-level security for the Pod Security Standard "restricted".
pub fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Default::default()
        }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}
