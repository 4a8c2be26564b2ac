//! Bitcoin Core: a single-replica StatefulSet with its chain data volume, a Service for
//! P2P, RPC and ZMQ, and its configuration.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Container;

use super::meta::{self, Component};
use super::secrets::{self, key};
use super::workload::*;
use super::{Child, config_map};
use crate::crd::Network;
use crate::validate::ValidBlockSight;

/// ZMQ publishers the API's real-time feed subscribes to.
pub const ZMQ_RAWBLOCK_PORT: i32 = 28332;
pub const ZMQ_RAWTX_PORT: i32 = 28333;
pub const ZMQ_HASHBLOCK_PORT: i32 = 28334;
/// Room for electrs, the API and the operator's probes calling RPC at once
/// (the default 16 gives "work queue depth exceeded").
const RPC_WORK_QUEUE: u32 = 64;
/// bitcoind flushes its UTXO cache on SIGTERM; killing it mid-flush costs a long replay.
const TERMINATION_GRACE_SECONDS: i64 = 600;
/// bitcoind's uid/gid in the pod (the image's data dir is a volume, so any non-root uid works).
const UID: i64 = 1000;
const DATA_DIR: &str = "/data";
const CONF_DIR: &str = "/etc/bitcoin";
// Not under CONF_DIR: a mount point inside a read-only ConfigMap volume cannot be created.
const SECRET_DIR: &str = "/etc/bitcoin-secret";

pub fn rpc_port(network: Network) -> i32 {
    match network {
        Network::Mainnet => 8332,
        Network::Testnet => 18332,
        Network::Testnet4 => 48332,
        Network::Signet => 38332,
        Network::Regtest => 18443,
    }
}

pub fn p2p_port(network: Network) -> i32 {
    match network {
        Network::Mainnet => 8333,
        Network::Testnet => 18333,
        Network::Testnet4 => 48333,
        Network::Signet => 38333,
        Network::Regtest => 18444,
    }
}

/// Value of bitcoind's `chain=` option, which is also its config section name.
fn chain_name(network: Network) -> &'static str {
    match network {
        Network::Mainnet => "main",
        Network::Testnet => "test",
        Network::Testnet4 => "testnet4",
        Network::Signet => "signet",
        Network::Regtest => "regtest",
    }
}

fn config_name(bs: &ValidBlockSight) -> String {
    format!("{}-bitcoind-config", bs.name)
}

/// bitcoin.conf. Holds no secret: the rpcauth line comes from the generated Secret through
/// `includeconf`. Network-only options (ports, binds) go in the network's section, where
/// bitcoind reads them for non-mainnet chains.
pub fn bitcoin_conf(bs: &ValidBlockSight) -> String {
    let b = &bs.bitcoind;
    let network = bs.network;
    let chain = chain_name(network);
    let mut conf = format!(
        "# Managed by blocksight-operator; edits are overwritten.\n\
         chain={chain}\n\
         server=1\n\
         # BlockSight reads the chain; no wallet means no keys to steal.\n\
         disablewallet=1\n\
         printtoconsole=1\n\
         txindex={txindex}\n\
         prune={prune}\n\
         dbcache={dbcache}\n\
         rpcworkqueue={RPC_WORK_QUEUE}\n\
         rpcthreads=16\n\
         zmqpubrawblock=tcp://0.0.0.0:{ZMQ_RAWBLOCK_PORT}\n\
         zmqpubrawtx=tcp://0.0.0.0:{ZMQ_RAWTX_PORT}\n\
         zmqpubhashblock=tcp://0.0.0.0:{ZMQ_HASHBLOCK_PORT}\n\
         includeconf={SECRET_DIR}/{rpcauth}\n",
        txindex = u8::from(b.txindex),
        prune = b.prune_mib,
        dbcache = b.dbcache_mib,
        rpcauth = key::RPCAUTH_CONF,
    );
    if network == Network::Regtest {
        // Regtest has no peers to learn fees from; let the API's test transactions through.
        conf.push_str("fallbackfee=0.0002\n");
    }
    conf.push_str(&format!(
        "\n[{chain}]\n\
         bind=0.0.0.0:{p2p}\n\
         rpcbind=0.0.0.0:{rpc}\n\
         rpcport={rpc}\n\
         # Reachable only inside the pod network; NetworkPolicies limit who gets here.\n\
         rpcallowip=0.0.0.0/0\n",
        p2p = p2p_port(network),
        rpc = rpc_port(network),
    ));
    conf
}

pub fn build(bs: &ValidBlockSight) -> Vec<Child> {
    let conf = bitcoin_conf(bs);
    let config = config_map(
        meta::owned(bs, Component::Bitcoind, config_name(bs)),
        &[("bitcoin.conf", conf.clone())],
    );
    let service_ports = ports(bs).iter().map(|(n, p)| service_port(n, *p)).collect();
    vec![
        Child::ConfigMap(config),
        Child::Service(service(bs, Component::Bitcoind, service_ports)),
        Child::StatefulSet(bitcoind_stateful_set(bs, &conf)),
    ]
}

fn ports(bs: &ValidBlockSight) -> [(&'static str, i32); 5] {
    [
        ("p2p", p2p_port(bs.network)),
        ("rpc", rpc_port(bs.network)),
        ("zmq-rawblock", ZMQ_RAWBLOCK_PORT),
        ("zmq-rawtx", ZMQ_RAWTX_PORT),
        ("zmq-hashblock", ZMQ_HASHBLOCK_PORT),
    ]
}

fn bitcoind_stateful_set(bs: &ValidBlockSight, conf: &str) -> StatefulSet {
    let b = &bs.bitcoind;
    let mut args = vec![
        format!("-conf={CONF_DIR}/bitcoin.conf"),
        format!("-datadir={DATA_DIR}"),
    ];
    args.extend(b.extra_args.iter().cloned());
    let container = Container {
        command: Some(vec!["bitcoind".to_owned()]),
        args: Some(args),
        ports: Some(
            ports(bs)
                .iter()
                .map(|(n, p)| container_port(n, *p))
                .collect(),
        ),
        // RPC binds early, before the block index is loaded, and answers during IBD without
        // taking cs_main: a TCP check never kills a node that is busy but progressing.
        // Loading the index or replaying blocks after a crash can take hours on mainnet.
        startup_probe: Some(tcp_probe("rpc", 10, 1080)),
        liveness_probe: Some(tcp_probe("rpc", 30, 6)),
        readiness_probe: Some(tcp_probe("rpc", 10, 3)),
        volume_mounts: Some(vec![
            mount("data", DATA_DIR, false),
            mount("config", CONF_DIR, true),
            mount("rpcauth", SECRET_DIR, true),
            mount("tmp", "/tmp", false),
        ]),
        ..container("bitcoind", &b.image, &b.resources)
    };
    let template = pod_template(
        bs,
        PodParts {
            component: Component::Bitcoind,
            uid: UID,
            config_hash: Some(meta::digest(conf.as_bytes())),
            containers: vec![container],
            volumes: vec![
                config_map_volume("config", &config_name(bs)),
                secret_volume(
                    "rpcauth",
                    &secrets::rpc_secret_name(bs),
                    &[key::RPCAUTH_CONF],
                ),
                empty_dir("tmp"),
            ],
            placement: Some(&b.placement),
            termination_grace_seconds: Some(TERMINATION_GRACE_SECONDS),
        },
    );
    stateful_set(
        bs,
        Component::Bitcoind,
        1,
        &[("data", &b.storage)],
        template,
    )
}
