//! PostgreSQL (skipped for an external database): a StatefulSet with a postgres_exporter
//! sidecar, its Service, and a first-boot script that creates the application and
//! read-only roles from the generated credentials.

use k8s_openapi::api::core::v1::{Container, ExecAction, Probe};

use super::meta::{self, Component};
use super::secrets::{self, key};
use super::workload::*;
use super::{Child, config_map};
use crate::crd::defaults::{self, image};
use crate::validate::{Postgres, ValidBlockSight};

pub const PORT: i32 = 5432;
pub const EXPORTER_PORT: i32 = 9187;
/// The official image's `postgres` user.
const UID: i64 = 999;

/// Runs once, when the data directory is initialised (docker-entrypoint-initdb.d). Reads
/// passwords from the environment with \getenv, so they never appear in a command line.
const INIT_SCRIPT: &str = r#"#!/bin/bash
# Managed by blocksight-operator. Runs once, on an empty data directory.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
\getenv app_user APP_USER
\getenv app_password APP_PASSWORD
\getenv ro_user READONLY_USER
\getenv ro_password READONLY_PASSWORD
\getenv db POSTGRES_DB
CREATE ROLE :"app_user" LOGIN PASSWORD :'app_password';
ALTER DATABASE :"db" OWNER TO :"app_user";
ALTER SCHEMA public OWNER TO :"app_user";
CREATE ROLE :"ro_user" LOGIN PASSWORD :'ro_password';
GRANT CONNECT ON DATABASE :"db" TO :"ro_user";
GRANT pg_monitor TO :"ro_user";
GRANT USAGE ON SCHEMA public TO :"ro_user";
ALTER DEFAULT PRIVILEGES FOR ROLE :"app_user" IN SCHEMA public GRANT SELECT ON TABLES TO :"ro_user";
SQL
"#;

fn init_config_name(bs: &ValidBlockSight) -> String {
    format!("{}-postgres-init", bs.name)
}

fn pg_isready() -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(
                ["pg_isready", "--host=127.0.0.1", "--username=postgres"]
                    .map(String::from)
                    .to_vec(),
            ),
        }),
        period_seconds: Some(10),
        timeout_seconds: Some(5),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

pub fn build(bs: &ValidBlockSight) -> Vec<Child> {
    let Postgres::InCluster {
        image,
        database,
        storage,
        resources,
        placement,
    } = &bs.postgres
    else {
        return vec![];
    };
    let credentials = secrets::postgres_secret_name(bs);
    let postgres = Container {
        env: Some(vec![
            env("POSTGRES_USER", "postgres"),
            env_from_secret("POSTGRES_PASSWORD", &credentials, key::SUPERUSER_PASSWORD),
            env("POSTGRES_DB", database.clone()),
            env("PGDATA", "/var/lib/postgresql/data/pgdata"),
            env_from_secret("APP_USER", &credentials, key::APP_USER),
            env_from_secret("APP_PASSWORD", &credentials, key::APP_PASSWORD),
            env_from_secret("READONLY_USER", &credentials, key::READONLY_USER),
            env_from_secret("READONLY_PASSWORD", &credentials, key::READONLY_PASSWORD),
        ]),
        ports: Some(vec![container_port("postgres", PORT)]),
        startup_probe: Some(Probe {
            failure_threshold: Some(60),
            ..pg_isready()
        }),
        liveness_probe: Some(tcp_probe("postgres", 30, 6)),
        readiness_probe: Some(pg_isready()),
        volume_mounts: Some(vec![
            mount("data", "/var/lib/postgresql/data", false),
            mount("init", "/docker-entrypoint-initdb.d", true),
            mount("run", "/var/run/postgresql", false),
            mount("tmp", "/tmp", false),
        ]),
        ..container("postgres", image, resources)
    };
    // The exporter logs in as the read-only role, which holds pg_monitor and nothing more.
    let exporter = Container {
        env: Some(vec![
            env(
                "DATA_SOURCE_URI",
                format!("127.0.0.1:{PORT}/{database}?sslmode=disable"),
            ),
            env_from_secret("DATA_SOURCE_USER", &credentials, key::READONLY_USER),
            env_from_secret("DATA_SOURCE_PASS", &credentials, key::READONLY_PASSWORD),
        ]),
        ports: Some(vec![container_port("metrics", EXPORTER_PORT)]),
        readiness_probe: Some(http_probe("/", "metrics", 30, 3)),
        ..container(
            "postgres-exporter",
            image::POSTGRES_EXPORTER,
            &defaults::resources("exporter", bs.network, 0),
        )
    };
    let template = pod_template(
        bs,
        PodParts {
            component: Component::Postgres,
            uid: UID,
            config_hash: Some(meta::digest(INIT_SCRIPT.as_bytes())),
            containers: vec![postgres, exporter],
            volumes: vec![
                config_map_volume("init", &init_config_name(bs)),
                empty_dir("run"),
                empty_dir("tmp"),
            ],
            placement: Some(placement),
            // A clean shutdown checkpoints; a killed one replays WAL at the next start.
            termination_grace_seconds: Some(120),
        },
    );
    vec![
        Child::ConfigMap(config_map(
            meta::owned(bs, Component::Postgres, init_config_name(bs)),
            &[("10-blocksight-roles.sh", INIT_SCRIPT.to_owned())],
        )),
        Child::Service(service(
            bs,
            Component::Postgres,
            vec![
                service_port("postgres", PORT),
                service_port("metrics", EXPORTER_PORT),
            ],
        )),
        Child::StatefulSet(stateful_set(
            bs,
            Component::Postgres,
            1,
            &[("data", storage)],
            template,
        )),
    ]
}
