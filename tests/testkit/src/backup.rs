//! Helpers of tests/services/backup_programs.rs: the real PostgreSQL and S3 server (moto) that
//! tests/run.sh starts, the two kinds of destination, source databases with real data, and
//! runs of the `blocksight backup` binary.
//!
//! Without the services the tests fail, so CI can never skip them silently; a developer
//! without them opts out with BLOCKSIGHT_ALLOW_NO_SERVICES=1 (as in [`crate::fakes::services`]).

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::str::FromStr as _;
use std::sync::Arc;

use futures::TryStreamExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

pub use crate::fakes::services::{POSTGRES_URL, unique_name};
pub const S3_ENDPOINT: &str = "BLOCKSIGHT_TEST_S3_ENDPOINT";
/// The prefix the tests pass to every command (the default is `blocksight/`).
pub const PREFIX: &str = "backups/test";
/// moto accepts any key; the programs read these from the environment like real ones.
const AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "blocksight-test"),
    ("AWS_SECRET_ACCESS_KEY", "blocksight-test-secret"),
    ("AWS_REGION", "us-east-1"),
];

/// The services of tests/run.sh, or `None` (after printing SKIPPED) when the developer
/// opted out.
pub struct Services {
    pub pg: Pg,
    pub s3_endpoint: String,
}

impl Services {
    pub async fn get() -> Option<Self> {
        let postgres_url = service_var(POSTGRES_URL)?;
        let s3_endpoint = service_var(S3_ENDPOINT)?;
        Some(Self {
            pg: Pg::new(&postgres_url).await,
            s3_endpoint,
        })
    }
}

fn service_var(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if std::env::var("BLOCKSIGHT_ALLOW_NO_SERVICES").as_deref() == Ok("1") => {
            println!("SKIPPED: {var} is not set and BLOCKSIGHT_ALLOW_NO_SERVICES=1");
            None
        }
        _ => panic!(
            "{var} is not set: run `bash tests/run.sh`, which starts PostgreSQL and an S3 \
             server (moto) and sets it (or set BLOCKSIGHT_ALLOW_NO_SERVICES=1 to skip the \
             tests that need them)"
        ),
    }
}

/// The test PostgreSQL (superuser) and the client tools of its major version.
pub struct Pg {
    options: PgConnectOptions,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// `/usr/lib/postgresql/<major>/bin`, where Debian keeps pg_dump and pg_restore.
    pub bin_dir: PathBuf,
    pub major: String,
}

impl Pg {
    async fn new(url: &str) -> Self {
        let options = PgConnectOptions::from_str(url).expect("a PostgreSQL URL");
        let options = options.disable_statement_logging();
        // postgres://user:password@host:port/db; tests/run.sh's password is hex, so no
        // percent-decoding is needed.
        let password = url
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('@'))
            .and_then(|(credentials, _)| credentials.split_once(':'))
            .map(|(_, password)| password.to_owned())
            .unwrap_or_default();
        let mut conn = options
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connecting to {POSTGRES_URL}: {e}"));
        let version_num: i32 =
            sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
                .fetch_one(&mut conn)
                .await
                .expect("server version");
        let major = (version_num / 10_000).to_string();
        let bin_dir = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
        assert!(
            bin_dir.join("pg_dump").is_file(),
            "the client tools of PostgreSQL {major} are not in {}",
            bin_dir.display()
        );
        Self {
            host: options.get_host().to_owned(),
            port: options.get_port(),
            user: options.get_username().to_owned(),
            password,
            options,
            bin_dir,
            major,
        }
    }

    /// PATH with the client tools of the server's major version first.
    pub fn path(&self) -> String {
        format!(
            "{}:{}",
            self.bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// The environment of a `blocksight backup` run: libpq's variables, PATH, dummy AWS keys.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), self.path()),
            ("PGHOST".into(), self.host.clone()),
            ("PGPORT".into(), self.port.to_string()),
            ("PGUSER".into(), self.user.clone()),
            ("PGPASSWORD".into(), self.password.clone()),
        ];
        env.extend(AWS_ENV.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        env
    }

    pub async fn connect(&self, database: &str) -> PgConnection {
        self.options
            .clone()
            .database(database)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connecting to {database}: {e}"))
    }

    pub async fn execute(&self, database: &str, sql: &str) {
        let mut conn = self.connect(database).await;
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let _ = conn.close().await;
    }

    pub async fn create_database(&self, name: &str) {
        self.execute("postgres", &format!("CREATE DATABASE \"{name}\""))
            .await;
    }

    pub async fn drop_database(&self, name: &str) {
        self.execute(
            "postgres",
            &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        )
        .await;
    }

    /// Names of the databases that start with `prefix`.
    pub async fn databases_starting_with(&self, prefix: &str) -> Vec<String> {
        let mut conn = self.connect("postgres").await;
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT datname::text FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1",
        )
        .bind(prefix)
        .fetch_all(&mut conn)
        .await
        .expect("listing databases");
        let _ = conn.close().await;
        names
    }

    pub async fn exists(&self, database: &str) -> bool {
        self.databases_starting_with(database)
            .await
            .iter()
            .any(|name| name == database)
    }

    /// A database with a few tables, thousands of rows, Unicode text, bytea, NULLs, a
    /// second schema and a table name that needs quoting.
    pub async fn create_source(&self, name: &str) {
        self.create_database(name).await;
        self.execute(name, SOURCE_DATA).await;
    }

    /// A small database: one table of 10 rows.
    pub async fn create_small_source(&self, name: &str) {
        self.create_database(name).await;
        self.execute(
            name,
            "CREATE TABLE t (id integer PRIMARY KEY, note text);
             INSERT INTO t SELECT i, 'row ' || i FROM generate_series(1, 10) i;",
        )
        .await;
    }

    /// Every user table's full contents as an MD5 of its rows in a stable order, keyed
    /// `schema.table`: two databases with equal fingerprints hold the same data.
    pub async fn fingerprint(&self, database: &str) -> BTreeMap<String, String> {
        let mut conn = self.connect(database).await;
        let tables: Vec<(String, String)> = sqlx::query_as(
            "SELECT n.nspname || '.' || c.relname, \
                    format('SELECT coalesce(md5(string_agg(t::text, E''\\n'' ORDER BY t::text)), ''empty'') \
                            || '' '' || count(*) FROM %I.%I t', n.nspname, c.relname) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await
        .expect("listing tables");
        let mut fingerprint = BTreeMap::new();
        for (table, statement) in tables {
            let digest: String = sqlx::query_scalar(AssertSqlSafe(statement))
                .fetch_one(&mut conn)
                .await
                .expect("table digest");
            fingerprint.insert(table, digest);
        }
        let _ = conn.close().await;
        fingerprint
    }
}

/// The source data: 3,000 blocks, 5,000 transactions with multilingual text and binary
/// columns, 366 rows in a quoted table of another schema, and an empty table.
const SOURCE_DATA: &str = "
CREATE TABLE blocks (
    height integer PRIMARY KEY,
    hash bytea NOT NULL,
    mined_at timestamptz NOT NULL,
    size_bytes integer NOT NULL
);
INSERT INTO blocks
SELECT h, sha256(h::text::bytea), timestamptz '2009-01-03 18:15:05+00' + h * interval '10 minutes',
       200 + h % 1000
FROM generate_series(0, 2999) h;

CREATE TABLE transactions (
    txid bytea PRIMARY KEY,
    height integer NOT NULL REFERENCES blocks,
    memo text NOT NULL,
    raw bytea
);
INSERT INTO transactions
SELECT sha256(('tx' || i)::bytea), i % 3000,
       'Zahlung für ☕ — ₿ ' || i || ' 日本語のテキスト 🚀 ' || repeat('ü', i % 7) || E'\\ttab',
       CASE WHEN i % 10 = 0 THEN NULL ELSE decode(repeat('00ff7f', i % 50), 'hex') END
FROM generate_series(1, 5000) i;

CREATE SCHEMA analytics;
CREATE TABLE analytics.\"Daily Stats\" (\"Day\" date PRIMARY KEY, fee_rate numeric(12, 4), note text);
INSERT INTO analytics.\"Daily Stats\"
SELECT date '2024-01-01' + d, d * 1.2345, CASE WHEN d % 2 = 0 THEN 'Ελληνικά ' || d END
FROM generate_series(0, 365) d;

CREATE TABLE empty_table (id integer);
";

/// Row counts of [`SOURCE_DATA`], as the manifest must record them.
pub fn source_row_counts() -> BTreeMap<String, u64> {
    BTreeMap::from([
        ("analytics.Daily Stats".to_owned(), 366),
        ("public.blocks".to_owned(), 3000),
        ("public.empty_table".to_owned(), 0),
        ("public.transactions".to_owned(), 5000),
    ])
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Local,
    S3,
}

/// A fresh destination: a temporary folder, or a new bucket on the S3 server. Tests reach
/// its objects directly through `object_store` to inspect, corrupt and backdate them.
pub struct Destination {
    pub kind: Kind,
    pub store: Arc<dyn ObjectStore>,
    args: Vec<String>,
    /// The local folder (kept alive), if any.
    pub dir: Option<tempfile::TempDir>,
}

impl Destination {
    pub async fn new(kind: Kind, services: &Services) -> Self {
        match kind {
            Kind::Local => {
                let dir = tempfile::tempdir().expect("temporary folder");
                let store = LocalFileSystem::new_with_prefix(dir.path()).expect("local store");
                Self {
                    kind,
                    store: Arc::new(store),
                    args: vec![
                        "--local-dir".into(),
                        dir.path().display().to_string(),
                        "--prefix".into(),
                        PREFIX.into(),
                    ],
                    dir: Some(dir),
                }
            }
            Kind::S3 => {
                let bucket = unique_name("bsb").replace('_', "-");
                create_bucket(&services.s3_endpoint, &bucket).await;
                // The programs use rustls with ring; so does this test client.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let store = AmazonS3Builder::new()
                    .with_endpoint(&services.s3_endpoint)
                    .with_allow_http(true)
                    .with_bucket_name(&bucket)
                    .with_region(AWS_ENV[2].1)
                    .with_access_key_id(AWS_ENV[0].1)
                    .with_secret_access_key(AWS_ENV[1].1)
                    .build()
                    .expect("S3 store");
                Self {
                    kind,
                    store: Arc::new(store),
                    args: vec![
                        "--s3-bucket".into(),
                        bucket,
                        "--s3-endpoint".into(),
                        services.s3_endpoint.clone(),
                        "--s3-force-path-style".into(),
                        "--prefix".into(),
                        PREFIX.into(),
                    ],
                    dir: None,
                }
            }
        }
    }

    /// The destination flags of every command.
    pub fn args(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }

    /// `<PREFIX>/<backup>/<file>`.
    pub fn key(backup: &str, file: &str) -> Path {
        Path::from(format!("{PREFIX}/{backup}/{file}"))
    }

    /// Every object key, sorted.
    pub async fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .store
            .list(None)
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .expect("listing objects");
        keys.sort();
        keys
    }

    pub async fn get(&self, key: &Path) -> Vec<u8> {
        let found = self
            .store
            .get(key)
            .await
            .unwrap_or_else(|e| panic!("get {key}: {e}"));
        found.bytes().await.expect("object bytes").to_vec()
    }

    pub async fn put(&self, key: &Path, bytes: Vec<u8>) {
        self.store
            .put(key, PutPayload::from(bytes))
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
    }

    /// Rewrite a backup's manifest with its time `days` before now.
    pub async fn backdate_manifest(&self, backup: &str, days: i64) {
        let key = Self::key(backup, "manifest.json");
        let mut manifest: Value = serde_json::from_slice(&self.get(&key).await).expect("JSON");
        let time = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * days);
        manifest["time"] = Value::String(
            jiff::Timestamp::from_second(time.as_second())
                .unwrap()
                .to_string(),
        );
        self.put(&key, serde_json::to_vec_pretty(&manifest).unwrap())
            .await;
    }

    /// Set a local object's modification time `hours` into the past.
    pub fn backdate_local_file(&self, key: &Path, hours: u64) {
        let dir = self.dir.as_ref().expect("a local destination");
        let file = std::fs::File::options()
            .write(true)
            .open(dir.path().join(key.as_ref()))
            .expect("open the object's file");
        let then = std::time::SystemTime::now() - std::time::Duration::from_secs(hours * 3600);
        file.set_modified(then).expect("set mtime");
    }
}

/// Create a bucket with the bare S3 REST API (moto accepts unsigned requests).
async fn create_bucket(endpoint: &str, bucket: &str) {
    let authority = endpoint
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("{S3_ENDPOINT} must be an http:// URL, not {endpoint}"))
        .trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .unwrap_or_else(|e| panic!("connecting to the S3 server at {endpoint}: {e}"));
    let request = format!(
        "PUT /{bucket} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("receive");
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "creating bucket {bucket}: {response}"
    );
}

/// One run of `blocksight backup ...`.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }

    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code: {self}");
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Run `<exe> backup <args>` with exactly `env` (plus HOME and TMPDIR). `exe` is the
/// operator's `blocksight` binary: `env!("CARGO_BIN_EXE_blocksight")` in the operator's own
/// tests (Cargo sets it for them, not for this library).
pub async fn blocksight(exe: &str, args: &[&str], env: &[(String, String)]) -> Run {
    let output = tokio::process::Command::new(exe)
        .arg("backup")
        .args(args)
        .env_clear()
        .env("HOME", std::env::temp_dir())
        .env("TMPDIR", std::env::temp_dir())
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .await
        .expect("run blocksight");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `env` with `key` set to `value`.
pub fn with_env(env: &[(String, String)], key: &str, value: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = env.iter().filter(|(k, _)| k != key).cloned().collect();
    env.push((key.to_owned(), value.to_owned()));
    env
}

/// A 127.0.0.1 port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// A folder with a fake `pg_dump` that reports `version`, to put first on PATH.
pub fn fake_pg_dump(version: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("temporary folder");
    let script = dir.path().join("pg_dump");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'pg_dump (PostgreSQL) {version}'; exit 0; fi\n\
             echo 'this fake pg_dump only reports its version' >&2\nexit 1\n"
        ),
    )
    .expect("write the fake pg_dump");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

pub fn read_json(path: &FsPath) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("JSON")
}
