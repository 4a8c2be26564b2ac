//! Generated credentials. Random values are drawn once (from a CSPRNG the caller passes)
//! and stored in Secrets that the controller creates only when absent, so pod specs, which
//! reference them by name, stay identical across operator restarts.
//!
//! Each Secret also carries the derived configuration lines (bitcoind's `rpcauth`, Redis'
//! `requirepass`) so that no builder ever needs a secret value: config files in ConfigMaps
//! include these files instead.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use k8s_openapi::api::core::v1::Secret;
use rand::distr::{Alphanumeric, SampleString};
use rand::{CryptoRng, Rng};
use sha2::Sha256;

use super::meta::{self, Component};
use crate::names::ROTATION_ANNOTATION;
use crate::validate::{Postgres, ValidBlockSight};

/// The RPC user every BlockSight client (electrs, API, operator) authenticates as.
pub const RPC_USER: &str = "blocksight";
/// Application role of the BlockSight API in PostgreSQL.
pub const APP_DB_USER: &str = "blocksight";
/// Read-only role used by Grafana.
pub const READONLY_DB_USER: &str = "grafana_ro";

/// Keys of the generated Secrets (the API wiring refers to them by these names).
pub mod key {
    pub const RPC_USER: &str = "rpc-user";
    pub const RPC_PASSWORD: &str = "rpc-password";
    pub const RPCAUTH_CONF: &str = "rpcauth.conf";
    pub const ELECTRS_AUTH: &str = "electrs-auth";
    pub const SUPERUSER_PASSWORD: &str = "superuser-password";
    pub const APP_USER: &str = "app-user";
    pub const APP_PASSWORD: &str = "app-password";
    pub const READONLY_USER: &str = "readonly-user";
    pub const READONLY_PASSWORD: &str = "readonly-password";
    pub const DATABASE_URL: &str = "database-url";
    pub const REDIS_PASSWORD: &str = "password";
    pub const REDIS_AUTH_CONF: &str = "auth.conf";
    pub const REDIS_URL: &str = "redis-url";
    pub const ADMIN_USER: &str = "admin-user";
    pub const ADMIN_PASSWORD: &str = "admin-password";
}

/// Name of the Secret holding bitcoind's RPC credentials.
pub fn rpc_secret_name(bs: &ValidBlockSight) -> String {
    external(&bs.credentials.bitcoind_rpc).unwrap_or_else(|| format!("{}-bitcoind-rpc", bs.name))
}

/// Name of the Secret holding the in-cluster PostgreSQL credentials.
pub fn postgres_secret_name(bs: &ValidBlockSight) -> String {
    external(&bs.credentials.postgres)
        .unwrap_or_else(|| format!("{}-postgres-credentials", bs.name))
}

/// Name of the Secret holding the Redis password.
pub fn redis_secret_name(bs: &ValidBlockSight) -> String {
    external(&bs.credentials.redis).unwrap_or_else(|| format!("{}-redis-credentials", bs.name))
}

/// Name of the Secret holding Grafana's admin credentials.
pub fn grafana_secret_name(bs: &ValidBlockSight) -> String {
    external(&bs.credentials.grafana).unwrap_or_else(|| format!("{}-grafana-credentials", bs.name))
}

fn external(secret: &Option<crate::crd::ExistingSecret>) -> Option<String> {
    secret.as_ref().map(|s| s.secret_name.clone())
}

/// Names of the Secrets the operator generates for `bs` (those the user does not provide).
pub fn generated_names(bs: &ValidBlockSight) -> Vec<String> {
    let c = &bs.credentials;
    let mut names = Vec::new();
    if c.bitcoind_rpc.is_none() {
        names.push(rpc_secret_name(bs));
    }
    if c.postgres.is_none() && matches!(bs.postgres, Postgres::InCluster { .. }) {
        names.push(postgres_secret_name(bs));
    }
    if c.redis.is_none() {
        names.push(redis_secret_name(bs));
    }
    if c.grafana.is_none() && bs.grafana.is_some() {
        names.push(grafana_secret_name(bs));
    }
    names
}

/// Every generated Secret `bs` needs, with fresh random values from `rng`.
pub fn generate<R: Rng + CryptoRng>(bs: &ValidBlockSight, rng: &mut R) -> Vec<Secret> {
    let mut secrets = Vec::new();

    let rpc_password = password(rng);
    let salt = hex::encode(rng.random::<[u8; 16]>());
    secrets.push(secret(
        bs,
        Component::Bitcoind,
        rpc_secret_name(bs),
        [
            (key::RPC_USER, RPC_USER.to_owned()),
            (
                key::RPCAUTH_CONF,
                format!("rpcauth={}\n", rpcauth(RPC_USER, &rpc_password, &salt)),
            ),
            (key::ELECTRS_AUTH, format!("{RPC_USER}:{rpc_password}")),
            (key::RPC_PASSWORD, rpc_password),
        ],
    ));

    if let Postgres::InCluster { database, .. } = &bs.postgres {
        let app_password = password(rng);
        let url = format!(
            "postgres://{APP_DB_USER}:{app_password}@{}:5432/{database}",
            Component::Postgres.child_name(bs)
        );
        secrets.push(secret(
            bs,
            Component::Postgres,
            postgres_secret_name(bs),
            [
                (key::SUPERUSER_PASSWORD, password(rng)),
                (key::APP_USER, APP_DB_USER.to_owned()),
                (key::APP_PASSWORD, app_password),
                (key::READONLY_USER, READONLY_DB_USER.to_owned()),
                (key::READONLY_PASSWORD, password(rng)),
                (key::DATABASE_URL, url),
            ],
        ));
    }

    let redis_password = password(rng);
    secrets.push(secret(
        bs,
        Component::Redis,
        redis_secret_name(bs),
        [
            (
                key::REDIS_AUTH_CONF,
                format!("requirepass {redis_password}\n"),
            ),
            (
                key::REDIS_URL,
                format!(
                    "redis://:{redis_password}@{}:6379/0",
                    Component::Redis.child_name(bs)
                ),
            ),
            (key::REDIS_PASSWORD, redis_password),
        ],
    ));

    if bs.grafana.is_some() {
        secrets.push(secret(
            bs,
            Component::Grafana,
            grafana_secret_name(bs),
            [
                (key::ADMIN_USER, "admin".to_owned()),
                (key::ADMIN_PASSWORD, password(rng)),
            ],
        ));
    }
    // Secrets the user provides are theirs: never generated, never written.
    let generated = generated_names(bs);
    secrets.retain(|s| {
        s.metadata
            .name
            .as_ref()
            .is_some_and(|n| generated.contains(n))
    });
    secrets
}

/// bitcoind's `rpcauth` value: `user:salt$HMAC-SHA256(key=salt, password)` as share/rpcauth
/// computes it, so bitcoind never sees the password itself.
pub fn rpcauth(user: &str, password: &str, salt: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(salt.as_bytes()).expect("HMAC takes any key length");
    mac.update(password.as_bytes());
    format!("{user}:{salt}${}", hex::encode(mac.finalize().into_bytes()))
}

/// 32 alphanumeric characters (~190 bits): safe in URLs and config files without escaping.
fn password<R: Rng + CryptoRng>(rng: &mut R) -> String {
    Alphanumeric.sample_string(rng, 32)
}

fn secret<const N: usize>(
    bs: &ValidBlockSight,
    component: Component,
    name: String,
    data: [(&str, String); N],
) -> Secret {
    let mut metadata = meta::retained(bs, component, name);
    if let Some(rotation) = &bs.rotation {
        metadata.annotations = Some([(ROTATION_ANNOTATION.to_owned(), rotation.clone())].into());
    }
    Secret {
        metadata,
        type_: Some("Opaque".to_owned()),
        string_data: Some(
            data.into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vector from Bitcoin Core's share/rpcauth/rpcauth.py algorithm, computed independently
    /// with Python's hmac module.
    #[test]
    fn rpcauth_matches_bitcoin_core_algorithm() {
        assert_eq!(
            rpcauth("blocksight", "secret", "00112233445566778899aabbccddeeff"),
            "blocksight:00112233445566778899aabbccddeeff$74ef20277296f0f1f1a01f8915163d687de88b01b139720c60e410c0540a0937"
        );
    }
}
