//! NetworkPolicies of a BlockSight: deny everything to and from its pods, then allow exactly
//! the [`flows`] the design needs. The flow list is data: the policies are built from it,
//! docs/security.md tabulates it, and tests/offline/network_policy.rs checks both against a model of
//! Kubernetes' NetworkPolicy semantics.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec as PolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::meta::{self, Component};
use super::{Child, api, bitcoind, electrs, grafana, postgres, prometheus, redis};
use crate::crd::NetworkPolicySpec;
use crate::validate::{Postgres, ValidBlockSight};

/// One end of an allowed connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Peer {
    /// The pods of one of this BlockSight's components.
    Component(Component),
    /// Every pod in the operator's namespace (its probes, its metrics endpoint).
    Operator,
    /// Pods in the ingress controllers' namespaces.
    IngressController,
    /// Pods in the cluster monitoring namespaces (a kube-prometheus Prometheus).
    ClusterPrometheus,
    /// Any address: Bitcoin peers.
    Internet,
    /// Any address: a database the user runs outside the cluster.
    ExternalDatabase,
    /// The cluster DNS (kube-dns/CoreDNS pods in kube-system).
    Dns,
    /// `spec.networkPolicy.extraApiPeers`.
    ExtraApiPeers,
    /// The pods of this BlockSight's backup, drill, restore and delete Jobs.
    Backup,
    /// Any address: the S3 bucket (and the STS endpoint of the pods' cloud identity).
    ObjectStore,
}

impl Peer {
    pub fn describe(self) -> String {
        match self {
            Peer::Component(c) => c.as_str().to_owned(),
            Peer::Operator => "operator namespace".to_owned(),
            Peer::IngressController => "ingress controller namespaces".to_owned(),
            Peer::ClusterPrometheus => "cluster monitoring namespaces".to_owned(),
            Peer::Internet => "internet (Bitcoin peers)".to_owned(),
            Peer::ExternalDatabase => "external PostgreSQL (any address)".to_owned(),
            Peer::Dns => "cluster DNS".to_owned(),
            Peer::ExtraApiPeers => "spec.networkPolicy.extraApiPeers".to_owned(),
            Peer::Backup => "backup jobs".to_owned(),
            Peer::ObjectStore => "object store (any address)".to_owned(),
        }
    }
}

/// An allowed connection: `from` may open TCP (and for DNS, UDP) connections to `to`:`port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    pub from: Peer,
    pub to: Peer,
    pub port: i32,
    pub purpose: &'static str,
}

/// Every flow `bs` needs, for the components it runs.
pub fn flows(bs: &ValidBlockSight) -> Vec<Flow> {
    use Component::*;
    use Peer::Component as C;
    let rpc = bitcoind::rpc_port(bs.network);
    let p2p = bitcoind::p2p_port(bs.network);
    let mut flows = Vec::new();
    let mut allow = |from: Peer, to: Peer, port: i32, purpose: &'static str| {
        flows.push(Flow {
            from,
            to,
            port,
            purpose,
        })
    };

    allow(Peer::Internet, C(Bitcoind), p2p, "inbound Bitcoin peers");
    allow(C(Bitcoind), Peer::Internet, p2p, "outbound Bitcoin peers");
    allow(Peer::Operator, C(Bitcoind), rpc, "chain probes (RPC)");
    allow(C(Api), C(Bitcoind), rpc, "API queries bitcoind (RPC)");
    for port in [
        bitcoind::ZMQ_RAWBLOCK_PORT,
        bitcoind::ZMQ_RAWTX_PORT,
        bitcoind::ZMQ_HASHBLOCK_PORT,
    ] {
        allow(C(Api), C(Bitcoind), port, "API real-time feed (ZMQ)");
    }
    if bs.electrs.is_some() {
        allow(C(Electrs), C(Bitcoind), rpc, "electrs reads blocks (RPC)");
        allow(C(Electrs), C(Bitcoind), p2p, "electrs reads blocks (P2P)");
        allow(
            C(Api),
            C(Electrs),
            electrs::ELECTRUM_PORT,
            "API queries the index (Electrum)",
        );
        allow(
            Peer::Operator,
            C(Electrs),
            electrs::ELECTRUM_PORT,
            "index probe (Electrum)",
        );
    }
    match bs.postgres {
        crate::validate::Postgres::InCluster { .. } => {
            allow(C(Api), C(Postgres), postgres::PORT, "API database");
            allow(
                Peer::Operator,
                C(Postgres),
                postgres::PORT,
                "database probe and role bootstrap",
            );
        }
        crate::validate::Postgres::External { .. } => allow(
            C(Api),
            Peer::ExternalDatabase,
            postgres::PORT,
            "API database (external)",
        ),
    }
    allow(C(Api), C(Redis), redis::PORT, "API cache");
    allow(Peer::Operator, C(Redis), redis::PORT, "cache probe");
    allow(
        Peer::IngressController,
        C(Api),
        api::HTTP_PORT,
        "clients through the Ingress",
    );
    if bs
        .network_policy
        .as_ref()
        .is_some_and(|n| !n.extra_api_peers.is_empty())
    {
        allow(
            Peer::ExtraApiPeers,
            C(Api),
            api::HTTP_PORT,
            "extra API clients",
        );
    }

    // Metrics: the BlockSight's own Prometheus, and a cluster Prometheus.
    let mut metrics = vec![(C(Redis), redis::EXPORTER_PORT), (C(Api), api::HTTP_PORT)];
    if bs.electrs.is_some() {
        metrics.push((C(Electrs), electrs::MONITORING_PORT));
    }
    if matches!(bs.postgres, crate::validate::Postgres::InCluster { .. }) {
        metrics.push((C(Postgres), postgres::EXPORTER_PORT));
    }
    if bs.grafana.is_some() {
        metrics.push((C(Grafana), grafana::PORT));
    }
    if bs.prometheus.is_some() {
        for (target, port) in &metrics {
            allow(C(Prometheus), *target, *port, "metrics scrape");
        }
        allow(
            C(Prometheus),
            Peer::Operator,
            8080,
            "operator metrics scrape",
        );
    }
    for (target, port) in metrics {
        allow(
            Peer::ClusterPrometheus,
            target,
            port,
            "metrics scrape (cluster Prometheus)",
        );
    }
    if bs.grafana.is_some() {
        allow(
            Peer::IngressController,
            C(Grafana),
            grafana::PORT,
            "dashboards through an Ingress",
        );
        if bs.prometheus.is_some() {
            allow(
                C(Grafana),
                C(Prometheus),
                prometheus::PORT,
                "dashboard queries",
            );
        }
    }
    for component in present(bs) {
        allow(C(component), Peer::Dns, 53, "name resolution");
    }
    if let Some(backup) = &bs.backup {
        if matches!(bs.postgres, crate::validate::Postgres::InCluster { .. }) {
            allow(
                Peer::Backup,
                C(Postgres),
                postgres::PORT,
                "pg_dump, pg_restore, drills",
            );
        }
        if let crate::validate::BackupTarget::S3 { endpoint, .. } = &backup.target {
            let port = object_store_port(endpoint.as_deref());
            allow(Peer::Backup, Peer::ObjectStore, port, "backup storage (S3)");
            if port != 443 {
                // Web identity (IRSA) still asks AWS STS over HTTPS.
                allow(Peer::Backup, Peer::ObjectStore, 443, "cloud identity (STS)");
            }
        }
        allow(Peer::Backup, Peer::Dns, 53, "name resolution");
    }
    flows
}

/// The port of an S3 endpoint URL: explicit, else 80 for http and 443 for https or AWS.
pub fn object_store_port(endpoint: Option<&str>) -> i32 {
    let Some(url) = endpoint else { return 443 };
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let authority = rest.split('/').next().unwrap_or_default();
    let explicit = authority
        .rsplit_once(':')
        .filter(|(host, _)| !host.ends_with(']') || authority.starts_with('['))
        .and_then(|(_, port)| port.parse::<i32>().ok());
    explicit.unwrap_or(if scheme == "http" { 80 } else { 443 })
}

/// The components `bs` runs.
pub fn present(bs: &ValidBlockSight) -> Vec<Component> {
    Component::ALL
        .into_iter()
        .filter(|c| match c {
            Component::Electrs => bs.electrs.is_some(),
            Component::Postgres => matches!(bs.postgres, Postgres::InCluster { .. }),
            Component::Prometheus => bs.prometheus.is_some(),
            Component::Grafana => bs.grafana.is_some(),
            _ => true,
        })
        .collect()
}

fn namespaces(names: &[String]) -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "kubernetes.io/metadata.name".to_owned(),
            operator: "In".to_owned(),
            values: Some(names.to_vec()),
        }]),
        ..Default::default()
    }
}

fn anywhere() -> Vec<NetworkPolicyPeer> {
    ["0.0.0.0/0", "::/0"]
        .map(|cidr| NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: cidr.to_owned(),
                except: None,
            }),
            ..Default::default()
        })
        .to_vec()
}

fn peers(bs: &ValidBlockSight, settings: &NetworkPolicySpec, peer: Peer) -> Vec<NetworkPolicyPeer> {
    match peer {
        Peer::Component(c) => vec![NetworkPolicyPeer {
            pod_selector: Some(meta::selector(bs, c)),
            ..Default::default()
        }],
        Peer::Operator => vec![NetworkPolicyPeer {
            namespace_selector: Some(namespaces(std::slice::from_ref(
                &settings.operator_namespace,
            ))),
            ..Default::default()
        }],
        Peer::IngressController => {
            vec![NetworkPolicyPeer {
                namespace_selector: Some(namespaces(&settings.ingress_namespaces)),
                ..Default::default()
            }]
        }
        Peer::ClusterPrometheus => {
            vec![NetworkPolicyPeer {
                namespace_selector: Some(namespaces(&settings.monitoring_namespaces)),
                ..Default::default()
            }]
        }
        Peer::Internet | Peer::ExternalDatabase | Peer::ObjectStore => anywhere(),
        Peer::Backup => vec![NetworkPolicyPeer {
            pod_selector: Some(backup_selector(bs)),
            ..Default::default()
        }],
        // The cluster DNS as kubeadm, EKS, GKE and kind label it. (NodeLocal DNSCache listens on
        // a link-local address instead: allow it with an extra policy.)
        Peer::Dns => vec![NetworkPolicyPeer {
            namespace_selector: Some(namespaces(&["kube-system".to_owned()])),
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "k8s-app".to_owned(),
                    "kube-dns".to_owned(),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }],
        Peer::ExtraApiPeers => settings.extra_api_peers.clone(),
    }
}

fn ports(peer: Peer, port: i32) -> Vec<NetworkPolicyPort> {
    let protocols: &[&str] = if peer == Peer::Dns {
        &["UDP", "TCP"]
    } else {
        &["TCP"]
    };
    protocols
        .iter()
        .map(|p| NetworkPolicyPort {
            port: Some(IntOrString::Int(port)),
            protocol: Some((*p).to_owned()),
            ..Default::default()
        })
        .collect()
}

/// The pods of the backup Jobs of `bs`.
fn backup_selector(bs: &ValidBlockSight) -> LabelSelector {
    let mut labels = super::backup::labels(bs, None);
    labels.remove("app.kubernetes.io/part-of");
    labels.remove("app.kubernetes.io/managed-by");
    LabelSelector {
        match_labels: Some(labels),
        ..Default::default()
    }
}

/// The NetworkPolicies of `bs` (none when `spec.networkPolicy.enabled` is false).
pub fn build(bs: &ValidBlockSight) -> Vec<Child> {
    let Some(settings) = &bs.network_policy else {
        return vec![];
    };
    let flows = flows(bs);
    let mut children = Vec::new();
    // Everything of this BlockSight not allowed below is denied, both ways.
    let instance = BTreeMap::from([
        ("app.kubernetes.io/instance".to_owned(), bs.name.clone()),
        (
            "app.kubernetes.io/part-of".to_owned(),
            "blocksight".to_owned(),
        ),
    ]);
    let mut deny = meta::owned(bs, Component::Api, format!("{}-default-deny", bs.name));
    if let Some(labels) = deny.labels.as_mut() {
        labels.remove("app.kubernetes.io/component");
        labels.insert("app.kubernetes.io/name".to_owned(), "blocksight".to_owned());
    }
    children.push(Child::NetworkPolicy(NetworkPolicy {
        metadata: deny,
        spec: Some(PolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(instance),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            ..Default::default()
        }),
    }));
    for component in present(bs) {
        let here = Peer::Component(component);
        let ingress: Vec<NetworkPolicyIngressRule> = flows
            .iter()
            .filter(|f| f.to == here)
            .map(|f| NetworkPolicyIngressRule {
                from: Some(peers(bs, settings, f.from)),
                ports: Some(ports(f.from, f.port)),
            })
            .collect();
        let egress: Vec<NetworkPolicyEgressRule> = flows
            .iter()
            .filter(|f| f.from == here)
            .map(|f| NetworkPolicyEgressRule {
                to: Some(peers(bs, settings, f.to)),
                ports: Some(ports(f.to, f.port)),
            })
            .collect();
        children.push(Child::NetworkPolicy(NetworkPolicy {
            metadata: meta::owned(bs, component, component.child_name(bs)),
            spec: Some(PolicySpec {
                pod_selector: Some(meta::selector(bs, component)),
                policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
                ingress: Some(ingress),
                egress: Some(egress),
            }),
        }));
    }
    if bs.backup.is_some() {
        // Backup pods accept nothing; they reach PostgreSQL, DNS and the object store.
        let egress: Vec<NetworkPolicyEgressRule> = flows
            .iter()
            .filter(|f| f.from == Peer::Backup)
            .map(|f| NetworkPolicyEgressRule {
                to: Some(peers(bs, settings, f.to)),
                ports: Some(ports(f.to, f.port)),
            })
            .collect();
        let mut metadata = meta::owned(bs, Component::Postgres, format!("{}-backup", bs.name));
        metadata.labels = Some(super::backup::labels(bs, None));
        children.push(Child::NetworkPolicy(NetworkPolicy {
            metadata,
            spec: Some(PolicySpec {
                pod_selector: Some(backup_selector(bs)),
                policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
                ingress: Some(vec![]),
                egress: Some(egress),
            }),
        }));
    }
    children
}

#[cfg(test)]
mod tests {
    use super::object_store_port;

    #[test]
    fn object_store_ports_follow_the_endpoint() {
        assert_eq!(object_store_port(None), 443);
        assert_eq!(
            object_store_port(Some("https://s3.eu-west-1.amazonaws.com")),
            443
        );
        assert_eq!(object_store_port(Some("http://minio.storage:9000")), 9000);
        assert_eq!(object_store_port(Some("http://minio.storage/")), 80);
        assert_eq!(object_store_port(Some("https://[::1]:9443/x")), 9443);
    }
}
