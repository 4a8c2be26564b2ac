//! Redis: a single-replica StatefulSet (append-only file on a volume when persistence is
//! on) with a redis_exporter sidecar, and its Service. The password comes from the generated
//! Secret through `include`, so redis.conf holds no secret.

use k8s_openapi::api::core::v1::Container;

use super::meta::{self, Component};
use super::secrets::{self, key};
use super::workload::*;
use super::{Child, config_map};
use crate::crd::defaults::{self, image};
use crate::validate::{ValidBlockSight, parse_quantity};

pub const PORT: i32 = 6379;
pub const EXPORTER_PORT: i32 = 9121;
/// The official image's `redis` user.
const UID: i64 = 999;

fn config_name(bs: &ValidBlockSight) -> String {
    format!("{}-redis-config", bs.name)
}

/// redis.conf. maxmemory is 75% of the container's memory limit, leaving room for
/// fork-based rewrites of the append-only file; the cache evicts instead of being OOM-killed.
pub fn redis_conf(bs: &ValidBlockSight) -> String {
    let persistent = bs.redis.persistence.is_some();
    let maxmemory = bs
        .redis
        .resources
        .limits
        .as_ref()
        .and_then(|l| l.get("memory"))
        .and_then(|q| parse_quantity(&q.0))
        .map(|bytes| format!("maxmemory {}\n", (bytes * 0.75) as u64))
        .unwrap_or_default();
    format!(
        "# Managed by blocksight-operator; edits are overwritten.\n\
         bind 0.0.0.0\n\
         port {PORT}\n\
         dir /data\n\
         appendonly {aof}\n\
         save \"\"\n\
         {maxmemory}\
         maxmemory-policy allkeys-lru\n\
         include /etc/redis-secret/{auth}\n",
        aof = if persistent { "yes" } else { "no" },
        auth = key::REDIS_AUTH_CONF,
    )
}

pub fn build(bs: &ValidBlockSight) -> Vec<Child> {
    let redis = &bs.redis;
    let conf = redis_conf(bs);
    let credentials = secrets::redis_secret_name(bs);
    let server = Container {
        command: Some(vec![
            "redis-server".to_owned(),
            "/etc/redis/redis.conf".to_owned(),
        ]),
        ports: Some(vec![container_port("redis", PORT)]),
        startup_probe: Some(tcp_probe("redis", 5, 60)),
        liveness_probe: Some(tcp_probe("redis", 30, 6)),
        readiness_probe: Some(tcp_probe("redis", 10, 3)),
        volume_mounts: Some(vec![
            mount("data", "/data", false),
            mount("config", "/etc/redis", true),
            mount("auth", "/etc/redis-secret", true),
        ]),
        ..container("redis", &redis.image, &redis.resources)
    };
    let exporter = Container {
        env: Some(vec![
            env("REDIS_ADDR", format!("redis://127.0.0.1:{PORT}")),
            env_from_secret("REDIS_PASSWORD", &credentials, key::REDIS_PASSWORD),
        ]),
        ports: Some(vec![container_port("metrics", EXPORTER_PORT)]),
        readiness_probe: Some(http_probe("/health", "metrics", 30, 3)),
        ..container(
            "redis-exporter",
            image::REDIS_EXPORTER,
            &defaults::resources("exporter", bs.network, 0),
        )
    };
    let mut volumes = vec![
        config_map_volume("config", &config_name(bs)),
        secret_volume("auth", &credentials, &[key::REDIS_AUTH_CONF]),
    ];
    let claims = match &redis.persistence {
        Some(volume) => vec![("data", volume)],
        None => {
            volumes.push(empty_dir("data"));
            vec![]
        }
    };
    let template = pod_template(
        bs,
        PodParts {
            component: Component::Redis,
            uid: UID,
            config_hash: Some(meta::digest(conf.as_bytes())),
            containers: vec![server, exporter],
            volumes,
            placement: Some(&redis.placement),
            termination_grace_seconds: Some(60),
        },
    );
    vec![
        Child::ConfigMap(config_map(
            meta::owned(bs, Component::Redis, config_name(bs)),
            &[("redis.conf", conf)],
        )),
        Child::Service(service(
            bs,
            Component::Redis,
            vec![
                service_port("redis", PORT),
                service_port("metrics", EXPORTER_PORT),
            ],
        )),
        Child::StatefulSet(stateful_set(bs, Component::Redis, 1, &claims, template)),
    ]
}
