//! electrs: a StatefulSet (one index volume per replica) wired to bitcoind's RPC and P2P,
//! and a Service for the Electrum protocol and its Prometheus endpoint.

use k8s_openapi::api::core::v1::Container;

use super::Child;
use super::bitcoind::{p2p_port, rpc_port};
use super::meta::Component;
use super::secrets::{self, key};
use super::workload::*;
use crate::crd::Network;
use crate::validate::{Electrs, ValidBlockSight};

pub const ELECTRUM_PORT: i32 = 50001;
pub const MONITORING_PORT: i32 = 4224;
const UID: i64 = 1000;

/// electrs' name for the network (`--network`).
fn network_name(network: Network) -> &'static str {
    match network {
        Network::Mainnet => "bitcoin",
        Network::Testnet => "testnet",
        Network::Testnet4 => "testnet4",
        Network::Signet => "signet",
        Network::Regtest => "regtest",
    }
}

pub fn build(bs: &ValidBlockSight, electrs: &Electrs) -> Vec<Child> {
    let bitcoind = Component::Bitcoind.child_name(bs);
    let container = Container {
        command: Some(vec!["electrs".to_owned()]),
        // Configured through ELECTRS_* variables: the RPC credentials stay out of args.
        env: Some(vec![
            env("ELECTRS_NETWORK", network_name(bs.network)),
            env("ELECTRS_DB_DIR", "/data"),
            env(
                "ELECTRS_DAEMON_RPC_ADDR",
                format!("{bitcoind}:{}", rpc_port(bs.network)),
            ),
            env(
                "ELECTRS_DAEMON_P2P_ADDR",
                format!("{bitcoind}:{}", p2p_port(bs.network)),
            ),
            env_from_secret(
                "ELECTRS_AUTH",
                &secrets::rpc_secret_name(bs),
                key::ELECTRS_AUTH,
            ),
            env(
                "ELECTRS_ELECTRUM_RPC_ADDR",
                format!("0.0.0.0:{ELECTRUM_PORT}"),
            ),
            env(
                "ELECTRS_MONITORING_ADDR",
                format!("0.0.0.0:{MONITORING_PORT}"),
            ),
            env("ELECTRS_LOG_FILTERS", "INFO"),
        ]),
        ports: Some(vec![
            container_port("electrum", ELECTRUM_PORT),
            container_port("monitoring", MONITORING_PORT),
        ]),
        // The monitoring endpoint comes up at once; the Electrum port opens before indexing
        // ends, so readiness means "serving", and sync is judged from the index height.
        startup_probe: Some(tcp_probe("monitoring", 10, 60)),
        liveness_probe: Some(tcp_probe("monitoring", 30, 6)),
        readiness_probe: Some(tcp_probe("electrum", 10, 3)),
        volume_mounts: Some(vec![
            mount("data", "/data", false),
            mount("tmp", "/tmp", false),
        ]),
        ..container("electrs", &electrs.image, &electrs.resources)
    };
    let template = pod_template(
        bs,
        PodParts {
            component: Component::Electrs,
            uid: UID,
            config_hash: None,
            containers: vec![container],
            volumes: vec![empty_dir("tmp")],
            placement: Some(&electrs.placement),
            // RocksDB flushes its memtables on shutdown.
            termination_grace_seconds: Some(120),
        },
    );
    vec![
        Child::Service(service(
            bs,
            Component::Electrs,
            vec![
                service_port("electrum", ELECTRUM_PORT),
                service_port("monitoring", MONITORING_PORT),
            ],
        )),
        Child::StatefulSet(stateful_set(
            bs,
            Component::Electrs,
            electrs.replicas,
            &[("data", &electrs.storage)],
            template,
        )),
    ]
}
