//! The rendered NetworkPolicies allow exactly the documented flows: checked with a model of
//! Kubernetes' NetworkPolicy semantics over every pair of endpoints and every port in use.

use std::collections::{BTreeMap, BTreeSet};

use blocksight_operator::crd::BlockSight;
use blocksight_operator::desired::network_policy::{Flow, Peer, flows, present};
use blocksight_operator::desired::{self, BuildSettings, Child, Component, meta};
use blocksight_operator::validate::{self, ValidBlockSight};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A connection end in the model.
#[derive(Clone, Debug, PartialEq)]
enum Endpoint {
    Pod {
        namespace: String,
        labels: BTreeMap<String, String>,
    },
    /// An address outside the cluster.
    External,
}

fn pod(namespace: &str, labels: &[(&str, &str)]) -> Endpoint {
    Endpoint::Pod {
        namespace: namespace.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => panic!("operator {other}"),
        }
    });
    by_labels && by_expressions
}

fn namespace_labels(namespace: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(
        "kubernetes.io/metadata.name".to_owned(),
        namespace.to_owned(),
    )])
}

fn peer_matches(peer: &NetworkPolicyPeer, policy_namespace: &str, other: &Endpoint) -> bool {
    match other {
        Endpoint::External => peer
            .ip_block
            .as_ref()
            .is_some_and(|b| b.cidr == "0.0.0.0/0" || b.cidr == "::/0"),
        Endpoint::Pod { namespace, labels } => {
            if peer.ip_block.is_some() {
                // ipBlock is meant for addresses outside the cluster (pod IPs are ephemeral).
                return false;
            }
            let namespace_ok = match &peer.namespace_selector {
                Some(selector) => selects(selector, &namespace_labels(namespace)),
                None => namespace == policy_namespace,
            };
            let pod_ok = peer
                .pod_selector
                .as_ref()
                .is_none_or(|s| selects(s, labels));
            namespace_ok && pod_ok
        }
    }
}

fn port_matches(ports: &Option<Vec<NetworkPolicyPort>>, port: i32, protocol: &str) -> bool {
    match ports {
        None => true,
        Some(ports) if ports.is_empty() => true,
        Some(ports) => ports.iter().any(|p| {
            p.protocol.as_deref().unwrap_or("TCP") == protocol
                && p.port.as_ref().is_none_or(|v| *v == IntOrString::Int(port))
        }),
    }
}

/// Whether `direction` policies in the model let `subject` talk to/from `other` on `port`.
fn allowed_at(
    policies: &[NetworkPolicy],
    subject: &Endpoint,
    other: &Endpoint,
    port: i32,
    protocol: &str,
    ingress: bool,
) -> bool {
    let Endpoint::Pod { namespace, labels } = subject else {
        return true;
    };
    let kind = if ingress { "Ingress" } else { "Egress" };
    let applicable: Vec<&NetworkPolicy> = policies
        .iter()
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace))
        .filter(|p| {
            let spec = p.spec.as_ref().unwrap();
            spec.policy_types.iter().flatten().any(|t| t == kind)
                && selects(spec.pod_selector.as_ref().unwrap(), labels)
        })
        .collect();
    if applicable.is_empty() {
        return true;
    }
    applicable.iter().any(|p| {
        let spec = p.spec.as_ref().unwrap();
        if ingress {
            spec.ingress.iter().flatten().any(|rule| {
                rule.from
                    .as_ref()
                    .is_none_or(|from| from.iter().any(|peer| peer_matches(peer, namespace, other)))
                    && port_matches(&rule.ports, port, protocol)
            })
        } else {
            spec.egress.iter().flatten().any(|rule| {
                rule.to
                    .as_ref()
                    .is_none_or(|to| to.iter().any(|peer| peer_matches(peer, namespace, other)))
                    && port_matches(&rule.ports, port, protocol)
            })
        }
    })
}

fn allowed(
    policies: &[NetworkPolicy],
    from: &Endpoint,
    to: &Endpoint,
    port: i32,
    protocol: &str,
) -> bool {
    allowed_at(policies, from, to, port, protocol, false)
        && allowed_at(policies, to, from, port, protocol, true)
}

fn policies(bs: &ValidBlockSight) -> Vec<NetworkPolicy> {
    desired::build(bs, &BuildSettings::default())
        .children
        .into_iter()
        .filter_map(|c| match c {
            Child::NetworkPolicy(p) => Some(p),
            _ => None,
        })
        .collect()
}

fn valid(yaml: &str) -> ValidBlockSight {
    let bs: BlockSight = serde_yaml::from_str(yaml).unwrap();
    validate::validate(&bs).unwrap()
}

/// A concrete endpoint standing for each peer of the model.
fn endpoint(bs: &ValidBlockSight, peer: Peer) -> Endpoint {
    match peer {
        Peer::Component(c) => Endpoint::Pod {
            namespace: bs.namespace.clone(),
            labels: meta::labels(bs, c),
        },
        Peer::Operator => pod(
            "blocksight-system",
            &[("app.kubernetes.io/name", "blocksight-operator")],
        ),
        Peer::IngressController => pod(
            "ingress-nginx",
            &[("app.kubernetes.io/name", "ingress-nginx")],
        ),
        Peer::ClusterPrometheus => pod("monitoring", &[("app.kubernetes.io/name", "prometheus")]),
        Peer::Internet | Peer::ExternalDatabase | Peer::ObjectStore => Endpoint::External,
        Peer::Backup => Endpoint::Pod {
            namespace: bs.namespace.clone(),
            labels: blocksight_operator::desired::backup::labels(
                bs,
                Some(blocksight_operator::desired::backup::Purpose::Backup),
            ),
        },
        Peer::Dns => pod("kube-system", &[("k8s-app", "kube-dns")]),
        Peer::ExtraApiPeers => pod("partners", &[("role", "client")]),
    }
}

const MAINNET: &str = include_str!("../../examples/mainnet.yaml");
/// Backups to an S3-compatible server on another port, with keys in a Secret.
const MINIO: &str = "apiVersion: blocksight.live/v1alpha1\nkind: BlockSight\nmetadata: {name: lab, namespace: lab}\nspec:\n  network: regtest\n  backup:\n    enabled: true\n    destination:\n      s3: {bucket: lab-backups, endpoint: 'http://minio.storage:9000', forcePathStyle: true, credentialsSecretRef: {secretName: minio-keys}}\n";
const EXTERNAL_DB: &str = "apiVersion: blocksight.live/v1alpha1\nkind: BlockSight\nmetadata: {name: ext, namespace: apps}\nspec:\n  network: signet\n  electrs: {enabled: false}\n  postgres: {external: {secretRef: {name: db, key: uri}}}\n  monitoring: {grafana: {enabled: false}}\n  networkPolicy:\n    extraApiPeers: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: partners}}}]\n";

#[test]
fn exactly_the_documented_flows_are_allowed() {
    for yaml in [MAINNET, EXTERNAL_DB, MINIO] {
        let bs = valid(yaml);
        let policies = policies(&bs);
        let flows = flows(&bs);
        let mut peers: Vec<Peer> = present(&bs).into_iter().map(Peer::Component).collect();
        peers.extend([
            Peer::Operator,
            Peer::IngressController,
            Peer::ClusterPrometheus,
            Peer::Internet,
            Peer::Dns,
            Peer::ExtraApiPeers,
            Peer::Backup,
            Peer::ObjectStore,
        ]);
        let ports: BTreeSet<i32> = flows
            .iter()
            .map(|f| f.port)
            .chain([22, 443, 9999])
            .collect();
        let mut checked = 0;
        for from in &peers {
            for to in &peers {
                let (a, b) = (endpoint(&bs, *from), endpoint(&bs, *to));
                if a == b && matches!(a, Endpoint::External) {
                    continue;
                }
                for port in &ports {
                    let expected = flows.iter().any(|f| {
                        let same =
                            |x: Peer, y: Peer| x == y || (endpoint(&bs, x) == endpoint(&bs, y));
                        same(f.from, *from) && same(f.to, *to) && f.port == *port
                    });
                    // Connections between two foreign endpoints are not ours to police.
                    let ours = |p: &Peer| matches!(p, Peer::Component(_) | Peer::Backup);
                    if !ours(from) && !ours(to) {
                        continue;
                    }
                    let got = allowed(&policies, &a, &b, *port, "TCP");
                    assert_eq!(
                        got,
                        expected,
                        "{} -> {}:{port} in {}",
                        from.describe(),
                        to.describe(),
                        bs.name
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 300, "{checked}");
        // DNS also over UDP, from every component and the backup pods.
        let mut resolvers: Vec<Peer> = present(&bs).into_iter().map(Peer::Component).collect();
        if bs.backup.is_some() {
            resolvers.push(Peer::Backup);
        }
        for peer in resolvers {
            assert!(allowed(
                &policies,
                &endpoint(&bs, peer),
                &endpoint(&bs, Peer::Dns),
                53,
                "UDP"
            ));
        }
    }
}

#[test]
fn strangers_in_other_namespaces_reach_nothing() {
    let bs = valid(MAINNET);
    let policies = policies(&bs);
    let stranger = pod("other", &[("app.kubernetes.io/component", "api")]);
    for c in present(&bs) {
        for flow in flows(&bs).iter().filter(|f| f.to == Peer::Component(c)) {
            if matches!(flow.from, Peer::Internet) {
                continue;
            }
            assert!(
                !allowed(
                    &policies,
                    &stranger,
                    &endpoint(&bs, Peer::Component(c)),
                    flow.port,
                    "TCP"
                ),
                "{c:?}:{}",
                flow.port
            );
        }
    }
    // The RPC port, which holds the node's credentials' worth, is closed to the internet.
    assert!(!allowed(
        &policies,
        &Endpoint::External,
        &endpoint(&bs, Peer::Component(Component::Bitcoind)),
        8332,
        "TCP"
    ));
}

#[test]
fn policies_can_be_disabled() {
    let yaml = MAINNET.replace(
        "spec:\n  network: mainnet",
        "spec:\n  network: mainnet\n  networkPolicy: {enabled: false}",
    );
    assert!(policies(&valid(&yaml)).is_empty());
    let flows_of: Vec<Flow> = flows(&valid(MAINNET));
    assert!(
        flows_of
            .iter()
            .any(|f| f.from == Peer::Component(Component::Api)
                && f.to == Peer::Component(Component::Bitcoind))
    );
}

/// docs/security.md tabulates the same flows.
#[test]
fn the_security_doc_lists_every_flow() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/security.md"))
        .expect("docs/security.md");
    for bs in [valid(MAINNET), valid(EXTERNAL_DB), valid(MINIO)] {
        for flow in flows(&bs) {
            // bitcoind's ports depend on the network: the doc names them.
            let port = if flow.from == Peer::Internet
                || flow.to == Peer::Internet
                || flow.purpose.contains("(P2P)")
            {
                "P2P".to_owned()
            } else if flow.purpose.contains("(RPC)") {
                "RPC".to_owned()
            } else if flow.purpose.contains("(S3)") {
                "S3".to_owned()
            } else {
                flow.port.to_string()
            };
            let row = format!(
                "| {} | {} | {} |",
                flow.from.describe(),
                flow.to.describe(),
                port
            );
            assert!(
                doc.contains(&row),
                "docs/security.md lacks the row starting {row}"
            );
        }
    }
}
