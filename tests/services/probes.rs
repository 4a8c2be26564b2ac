//! The probe clients (src/probe) against fake bitcoind and Electrum servers and the real
//! PostgreSQL and Redis that tests/run.sh starts, and `blocksight probe` end to end.

use std::str::FromStr as _;
use std::time::{Duration, Instant};

use blocksight_operator::crd::ChainStatus;
use blocksight_operator::probe::{
    self, BitcoindReport, BitcoindTarget, Bootstrap, ElectrsTarget, ProbeError,
};
use blocksight_testkit::fakes::bitcoind::{Chain, FakeBitcoind, State};
use blocksight_testkit::fakes::electrum::{FakeElectrum, Tip};
use blocksight_testkit::fakes::services::{self, unique_name};
use blocksight_testkit::fakes::{self, SilentServer, closed_port};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _};

const TIMEOUT: Duration = Duration::from_secs(3);
/// How long past its timeout a probe may take to give up (scheduling, thread start).
const SLACK: Duration = Duration::from_secs(2);

fn target(fake: &FakeBitcoind) -> BitcoindTarget {
    BitcoindTarget {
        url: fake.url.clone(),
        user: fake.user.clone(),
        password: fake.password.clone(),
        timeout: TIMEOUT,
    }
}

const PROBE_METHODS: [&str; 4] = [
    "getblockchaininfo",
    "getnetworkinfo",
    "getindexinfo",
    "getmempoolinfo",
];

// ---------------------------------------------------------------------------------------
// bitcoind

#[tokio::test]
async fn bitcoind_reports_initial_download_then_synced() {
    let fake = FakeBitcoind::start(vec![
        State::Chain(Chain::ibd(120_000, 850_000, 0.08)),
        State::Chain(Chain::ibd(700_000, 850_010, 0.71)),
        State::Chain(Chain::synced(850_010)),
    ])
    .await;

    let first = probe::bitcoind(&target(&fake)).await.expect("first probe");
    assert_eq!(
        first,
        BitcoindReport {
            blocks: 120_000,
            headers: 850_000,
            verification_progress: 0.08,
            initial_block_download: true,
            size_on_disk_bytes: 120_000_000_000,
            pruned: false,
            tip_time: 1_231_006_505 + 120_000 * 600,
            version: "/Satoshi:28.1.0/".into(),
            peers: 8,
            txindex_synced: Some(false),
            mempool_transactions: 0,
        }
    );

    let second = probe::bitcoind(&target(&fake)).await.expect("second probe");
    assert_eq!(
        (second.blocks, second.headers, second.verification_progress),
        (700_000, 850_010, 0.71)
    );
    assert!(second.initial_block_download);

    let synced = probe::bitcoind(&target(&fake)).await.expect("third probe");
    assert_eq!((synced.blocks, synced.headers), (850_010, 850_010));
    assert!(!synced.initial_block_download);
    assert_eq!(synced.verification_progress, 0.999_999_8);
    assert_eq!(synced.txindex_synced, Some(true));
    assert_eq!((synced.peers, synced.mempool_transactions), (10, 42_000));
    assert_eq!(
        synced.chain_status(),
        ChainStatus {
            blocks: 850_010,
            headers: 850_010,
            verification_progress: 0.999_999_8,
            initial_block_download: false,
            peers: 10,
            size_on_disk_bytes: 850_010_000_000,
            version: Some("/Satoshi:28.1.0/".into()),
            txindex_synced: Some(true),
        }
    );

    // The last state stays.
    assert_eq!(probe::bitcoind(&target(&fake)).await.unwrap(), synced);

    let received = fake.received();
    assert!(received.iter().all(|r| r.authorized), "{received:?}");
    assert!(received.iter().all(|r| r.params == serde_json::json!([])));
    assert_eq!(fake.methods(), PROBE_METHODS.repeat(4));
}

#[tokio::test]
async fn bitcoind_before_28_reports_median_time_and_no_index_info() {
    let old = Chain {
        time: None,
        has_getindexinfo: false,
        subversion: "/Satoshi:0.20.1/",
        ..Chain::synced(640_000)
    };
    let median_time = old.median_time;
    let fake = FakeBitcoind::start_with(vec![State::Chain(old)], true).await;

    let report = probe::bitcoind(&target(&fake)).await.expect("probe");
    assert_eq!(report.tip_time, median_time);
    assert_eq!(report.txindex_synced, None);
    assert_eq!(report.version, "/Satoshi:0.20.1/");
    assert_eq!(report.mempool_transactions, 42_000);
}

#[tokio::test]
async fn bitcoind_without_txindex_reports_none() {
    let no_index = Chain {
        txindex_synced: None,
        ..Chain::synced(850_000)
    };
    let fake = FakeBitcoind::start(vec![State::Chain(no_index)]).await;
    let report = probe::bitcoind(&target(&fake)).await.expect("probe");
    assert_eq!(report.txindex_synced, None);
    assert_eq!(report.blocks, 850_000);
}

#[tokio::test]
async fn bitcoind_warming_up_is_a_server_error_then_recovers() {
    for legacy_errors in [false, true] {
        let fake = FakeBitcoind::start_with(
            vec![
                State::RpcError {
                    code: -28,
                    message: "Loading block index…",
                },
                State::RpcError {
                    code: -28,
                    message: "Verifying blocks…",
                },
                State::Chain(Chain::ibd(10, 850_000, 0.0)),
            ],
            legacy_errors,
        )
        .await;

        let error = probe::bitcoind(&target(&fake)).await.unwrap_err();
        assert_eq!(
            error,
            ProbeError::Server {
                code: "-28".into(),
                message: "Loading block index…".into()
            },
            "legacy_errors={legacy_errors}"
        );
        assert_eq!(error.category(), "server");
        assert!(error.is_starting());
        assert!(error.to_string().contains("Loading block index"));

        let error = probe::bitcoind(&target(&fake)).await.unwrap_err();
        assert!(error.to_string().contains("Verifying blocks"), "{error}");

        let report = probe::bitcoind(&target(&fake))
            .await
            .expect("after warm-up");
        assert_eq!(report.blocks, 10);
    }
}

#[tokio::test]
async fn bitcoind_other_rpc_errors_are_not_starting_and_never_echo_the_password() {
    let fake = FakeBitcoind::start(vec![State::RpcError {
        code: -1,
        // A server that quotes the password back must not get it into our error text.
        message: "internal bug near rpc-Secret-4242",
    }])
    .await;
    assert_eq!(fake.password, fakes::bitcoind::RPC_PASSWORD);
    let error = probe::bitcoind(&target(&fake)).await.unwrap_err();
    assert_eq!(
        error,
        ProbeError::Server {
            code: "-1".into(),
            message: "internal bug near ***".into()
        }
    );
    assert!(!error.is_starting());
}

#[tokio::test]
async fn bitcoind_wrong_password_is_an_auth_error_without_the_password() {
    let fake = FakeBitcoind::start(vec![State::Chain(Chain::synced(1))]).await;
    let wrong = BitcoindTarget {
        password: "Wr0ng-Pa55word".into(),
        ..target(&fake)
    };
    let error = probe::bitcoind(&wrong).await.unwrap_err();
    assert_eq!(error.category(), "auth", "{error}");
    let text = format!("{error} {error:?} {wrong:?}");
    assert!(!text.contains("Wr0ng-Pa55word"), "{text}");
    assert!(!text.contains(&fake.password), "{text}");
    assert!(text.contains("401"), "{text}");
    assert_eq!(fake.received().len(), 1);
    assert!(!fake.received()[0].authorized);
}

#[tokio::test]
async fn bitcoind_silent_server_times_out_within_the_timeout() {
    let fake = FakeBitcoind::start(vec![State::Silent]).await;
    let timeout = Duration::from_secs(1);
    let started = Instant::now();
    let error = probe::bitcoind(&BitcoindTarget {
        timeout,
        ..target(&fake)
    })
    .await
    .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(error, ProbeError::Timeout);
    assert_eq!(error.category(), "timeout");
    assert!(elapsed < timeout + SLACK, "took {elapsed:?}");
    assert!(elapsed >= timeout / 2, "gave up early: {elapsed:?}");
}

#[tokio::test]
async fn bitcoind_unreachable_and_bad_urls() {
    let port = closed_port().await;
    let error = probe::bitcoind(&BitcoindTarget {
        url: format!("http://127.0.0.1:{port}"),
        user: "u".into(),
        password: "p4ss".into(),
        timeout: TIMEOUT,
    })
    .await
    .unwrap_err();
    assert_eq!(error.category(), "unreachable", "{error}");
    assert!(error.to_string().contains(&port.to_string()), "{error}");

    let error = probe::bitcoind(&BitcoindTarget {
        url: "https://u:inline-secret@127.0.0.1:8332".into(),
        user: "u".into(),
        password: "p4ss".into(),
        timeout: TIMEOUT,
    })
    .await
    .unwrap_err();
    assert_eq!(error.category(), "config", "{error}");
    assert!(!error.to_string().contains("inline-secret"), "{error}");
}

// ---------------------------------------------------------------------------------------
// electrs

#[tokio::test]
async fn electrs_reports_its_height_and_lag_behind_bitcoind() {
    let bitcoind = FakeBitcoind::start(vec![State::Chain(Chain::synced(850_010))]).await;
    let electrum = FakeElectrum::start(Tip::Height(849_997)).await;

    let chain = probe::bitcoind(&target(&bitcoind)).await.expect("bitcoind");
    let index = probe::electrs(&ElectrsTarget {
        addr: electrum.addr.clone(),
        timeout: TIMEOUT,
    })
    .await
    .expect("electrs");
    assert_eq!(index.indexed_height, 849_997);
    assert_eq!(probe::electrs_lag(chain.blocks, index.indexed_height), 13);
    assert_eq!(
        electrum.methods(),
        ["server.version", "blockchain.headers.subscribe"]
    );
}

#[tokio::test]
async fn electrs_failures_are_classified() {
    let electrum = FakeElectrum::start(Tip::Error {
        code: -32603,
        message: "index not ready",
    })
    .await;
    let error = probe::electrs(&ElectrsTarget {
        addr: electrum.addr.clone(),
        timeout: TIMEOUT,
    })
    .await
    .unwrap_err();
    assert_eq!(
        error,
        ProbeError::Server {
            code: "-32603".into(),
            message: "index not ready".into()
        }
    );

    let port = closed_port().await;
    let error = probe::electrs(&ElectrsTarget {
        addr: format!("127.0.0.1:{port}"),
        timeout: TIMEOUT,
    })
    .await
    .unwrap_err();
    assert_eq!(error.category(), "unreachable", "{error}");

    let silent = SilentServer::start().await;
    let timeout = Duration::from_secs(1);
    let started = Instant::now();
    let error = probe::electrs(&ElectrsTarget {
        addr: silent.addr.to_string(),
        timeout,
    })
    .await
    .unwrap_err();
    assert_eq!(error, ProbeError::Timeout);
    assert!(
        started.elapsed() < timeout + SLACK,
        "{:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

/// Connection options for `role` (password `password`) to `database` on the server of
/// `admin_url`.
fn pg_options(admin_url: &str, role: &str, password: &str, database: &str) -> PgConnectOptions {
    PgConnectOptions::from_str(admin_url)
        .expect("test URL")
        .username(role)
        .password(password)
        .database(database)
        .disable_statement_logging()
}

async fn pg_connect(options: &PgConnectOptions) -> Result<PgConnection, sqlx::Error> {
    PgConnection::connect_with(options).await
}

async fn pg_exec(conn: &mut PgConnection, sql: &str) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(conn)
        .await
        .map(|_| ())
}

fn sqlstate(result: Result<(), sqlx::Error>) -> String {
    match result {
        Err(sqlx::Error::Database(e)) => e.code().unwrap_or_default().into_owned(),
        other => panic!("expected a database error, got {other:?}"),
    }
}

#[tokio::test]
async fn postgres_reports_version_and_database_size() {
    let Some(url) = services::postgres_url() else {
        return;
    };
    let report = probe::postgres(&url, "postgres", TIMEOUT)
        .await
        .expect("probe");

    let mut conn = pg_connect(&PgConnectOptions::from_str(&url).unwrap())
        .await
        .unwrap();
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let size: i64 = sqlx::query_scalar("SELECT pg_database_size('postgres')")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(report.version, version);
    assert!(report.database_size_bytes > 1_000_000, "{report:?}");
    assert!(
        report.database_size_bytes.abs_diff(size as u64) < 16 * 1024 * 1024,
        "{report:?} vs {size}"
    );
}

#[tokio::test]
async fn postgres_failures_are_classified_without_passwords() {
    let Some(url) = services::postgres_url() else {
        return;
    };
    let options = PgConnectOptions::from_str(&url).unwrap();
    let wrong_url = options
        .clone()
        .password("Wr0ng-Pa55word")
        .to_url_lossy()
        .to_string();
    let error = probe::postgres(&wrong_url, "postgres", TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(error.category(), "auth", "{error}");
    assert!(!error.to_string().contains("Wr0ng-Pa55word"), "{error}");

    let error = probe::postgres(&url, &unique_name("no_such_db"), TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ProbeError::Server { code, .. } if code == "3D000"),
        "{error:?}"
    );

    let port = closed_port().await;
    let closed = format!("postgres://postgres:Closed-Secret@127.0.0.1:{port}/postgres");
    let error = probe::postgres(&closed, "postgres", TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(error.category(), "unreachable", "{error}");
    assert!(!error.to_string().contains("Closed-Secret"), "{error}");

    let silent = SilentServer::start().await;
    let started = Instant::now();
    let error = probe::postgres(
        &format!("postgres://postgres:x@{}/postgres", silent.addr),
        "postgres",
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert_eq!(error, ProbeError::Timeout);
    assert!(started.elapsed() < Duration::from_secs(1) + SLACK);

    let error = probe::postgres("mysql://root:Not-Shown@db/x", "x", TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(error.category(), "config", "{error}");
    assert!(!error.to_string().contains("Not-Shown"), "{error}");
}

struct Names {
    database: String,
    app: String,
    readonly: String,
}

impl Names {
    fn new() -> Self {
        Self {
            database: unique_name("bs_probe_db"),
            app: unique_name("bs_probe_app"),
            readonly: unique_name("bs_probe_ro"),
        }
    }

    fn bootstrap<'a>(&'a self, admin_url: &'a str, app: &'a str, ro: &'a str) -> Bootstrap<'a> {
        Bootstrap {
            admin_url,
            database: &self.database,
            app_user: &self.app,
            app_password: app,
            readonly_user: &self.readonly,
            readonly_password: ro,
        }
    }

    async fn drop_all(&self, admin: &mut PgConnection) {
        let _ = pg_exec(
            admin,
            &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.database),
        )
        .await;
        for role in [&self.readonly, &self.app] {
            let _ = pg_exec(admin, &format!("DROP ROLE IF EXISTS \"{role}\"")).await;
        }
    }
}

async fn stored_password(admin: &mut PgConnection, role: &str) -> String {
    sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
        .bind(role)
        .fetch_one(admin)
        .await
        .unwrap()
}

#[tokio::test]
async fn bootstrap_creates_the_database_and_least_privilege_roles() {
    let Some(url) = services::postgres_url() else {
        return;
    };
    let names = Names::new();
    let (app_password, ro_password) = ("App-Pa55-1", "Ro-Pa55-1");
    let mut admin = pg_connect(&PgConnectOptions::from_str(&url).unwrap())
        .await
        .unwrap();

    let spec = names.bootstrap(&url, app_password, ro_password);
    probe::bootstrap_database(&spec, TIMEOUT)
        .await
        .expect("first bootstrap");
    let verifier = stored_password(&mut admin, &names.app).await;
    assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{verifier}");
    probe::bootstrap_database(&spec, TIMEOUT)
        .await
        .expect("second bootstrap");
    // Nothing changed, so nothing was rewritten.
    assert_eq!(stored_password(&mut admin, &names.app).await, verifier);

    let owner: String = sqlx::query_scalar(
        "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
    )
    .bind(&names.database)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(owner, names.app);
    for role in [&names.app, &names.readonly] {
        let (superuser, createrole, createdb): (bool, bool, bool) = sqlx::query_as(
            "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = $1",
        )
        .bind(role)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!(
            (superuser, createrole, createdb),
            (false, false, false),
            "{role}"
        );
    }
    let monitors: bool = sqlx::query_scalar("SELECT pg_has_role($1, 'pg_monitor', 'MEMBER')")
        .bind(&names.readonly)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(monitors);

    // The application role creates and writes tables.
    let app_options = pg_options(&url, &names.app, app_password, &names.database);
    let mut app = pg_connect(&app_options).await.expect("app login");
    pg_exec(
        &mut app,
        "CREATE TABLE blocks (height bigint PRIMARY KEY); INSERT INTO blocks VALUES (850000);",
    )
    .await
    .expect("app creates a table");

    // The read-only role reads it (default privileges), and can do nothing else.
    let ro_options = pg_options(&url, &names.readonly, ro_password, &names.database);
    let mut ro = pg_connect(&ro_options).await.expect("read-only login");
    let height: i64 = sqlx::query_scalar("SELECT max(height) FROM blocks")
        .fetch_one(&mut ro)
        .await
        .expect("read-only SELECT");
    assert_eq!(height, 850_000);
    assert_eq!(
        sqlstate(pg_exec(&mut ro, "INSERT INTO blocks VALUES (1)").await),
        "42501"
    );
    assert_eq!(
        sqlstate(pg_exec(&mut ro, "CREATE TABLE mine (x int)").await),
        "42501"
    );
    assert_eq!(
        sqlstate(pg_exec(&mut ro, "DROP TABLE blocks").await),
        "42501"
    );
    // pg_monitor: the read-only role sees what other roles' sessions run (others see
    // "<insufficient privilege>").
    let sessions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity \
         WHERE usename = $1 AND query <> '<insufficient privilege>'",
    )
    .bind(&names.app)
    .fetch_one(&mut ro)
    .await
    .unwrap();
    assert!(sessions >= 1);

    // Wrong passwords fail, also through the probe, which names the failure "auth".
    let wrong = pg_connect(&pg_options(&url, &names.app, "nope", &names.database)).await;
    assert!(
        matches!(&wrong, Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("28P01")),
        "{wrong:?}"
    );
    let wrong_ro_url = pg_options(&url, &names.readonly, "nope", &names.database)
        .to_url_lossy()
        .to_string();
    let error = probe::postgres(&wrong_ro_url, &names.database, TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(error.category(), "auth");

    let _ = app.close().await;
    let _ = ro.close().await;
    names.drop_all(&mut admin).await;
}

#[tokio::test]
async fn bootstrap_repairs_roles_and_rotates_passwords() {
    let Some(url) = services::postgres_url() else {
        return;
    };
    let names = Names::new();
    let mut admin = pg_connect(&PgConnectOptions::from_str(&url).unwrap())
        .await
        .unwrap();
    probe::bootstrap_database(&names.bootstrap(&url, "App-Old-1", "Ro-Pa55-1"), TIMEOUT)
        .await
        .expect("bootstrap");

    // Someone made the read-only role powerful and took the database away.
    pg_exec(
        &mut admin,
        &format!(
            "ALTER ROLE \"{}\" SUPERUSER CREATEDB; ALTER DATABASE \"{}\" OWNER TO postgres",
            names.readonly, names.database
        ),
    )
    .await
    .unwrap();

    probe::bootstrap_database(&names.bootstrap(&url, "App-New-2", "Ro-Pa55-1"), TIMEOUT)
        .await
        .expect("bootstrap with a new application password");

    let (superuser, createdb): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = $1")
            .bind(&names.readonly)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert_eq!((superuser, createdb), (false, false));
    let owner: String = sqlx::query_scalar(
        "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
    )
    .bind(&names.database)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(owner, names.app);

    pg_connect(&pg_options(&url, &names.app, "App-New-2", &names.database))
        .await
        .expect("new password works");
    assert!(
        pg_connect(&pg_options(&url, &names.app, "App-Old-1", &names.database))
            .await
            .is_err(),
        "the old password still works"
    );

    names.drop_all(&mut admin).await;
}

#[tokio::test]
async fn bootstrap_rejects_bad_input_and_hides_passwords() {
    let Some(url) = services::postgres_url() else {
        return;
    };
    let names = Names::new();
    let same = Bootstrap {
        readonly_user: &names.app,
        ..names.bootstrap(&url, "App-Pa55", "Ro-Pa55")
    };
    let error = probe::bootstrap_database(&same, TIMEOUT).await.unwrap_err();
    assert_eq!(error.category(), "config", "{error}");

    let error = probe::bootstrap_database(&names.bootstrap(&url, "", "Ro-Pa55"), TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(error.category(), "config", "{error}");

    let error = probe::bootstrap_database(&names.bootstrap(&url, "pässwort", "Ro-Pa55"), TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(error.category(), "config", "{error}");

    let admin = PgConnectOptions::from_str(&url).unwrap();
    let as_admin = Bootstrap {
        app_user: admin.get_username(),
        ..names.bootstrap(&url, "App-Pa55", "Ro-Pa55")
    };
    let error = probe::bootstrap_database(&as_admin, TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(error.category(), "config", "{error}");

    let wrong_admin = admin.password("Admin-Wr0ng").to_url_lossy().to_string();
    let error = probe::bootstrap_database(
        &names.bootstrap(&wrong_admin, "App-Pa55", "Ro-Pa55"),
        TIMEOUT,
    )
    .await
    .unwrap_err();
    assert_eq!(error.category(), "auth", "{error}");
    let text = format!("{error} {error:?}");
    for secret in ["Admin-Wr0ng", "App-Pa55", "Ro-Pa55"] {
        assert!(!text.contains(secret), "{text}");
    }
}

// ---------------------------------------------------------------------------------------
// Redis

/// `url` with its password replaced (`None`: without one).
fn redis_url_with_password(url: &str, password: Option<&str>) -> String {
    let rest = url.split_once("://").expect("redis URL").1;
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    match password {
        Some(password) => format!("redis://:{password}@{host}"),
        None => format!("redis://{host}"),
    }
}

#[tokio::test]
async fn redis_reports_memory_use() {
    let Some(url) = services::redis_url() else {
        return;
    };
    let report = probe::redis(&url, TIMEOUT).await.expect("probe");

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .unwrap();
    let used: u64 = info
        .lines()
        .find_map(|l| l.trim_end().strip_prefix("used_memory:"))
        .and_then(|v| v.parse().ok())
        .expect("used_memory");
    assert!(report.used_memory_bytes > 100_000, "{report:?}");
    assert!(
        report.used_memory_bytes.abs_diff(used) < 8 * 1024 * 1024,
        "{report:?} vs {used}"
    );
}

#[tokio::test]
async fn redis_failures_are_classified_without_passwords() {
    let Some(url) = services::redis_url() else {
        return;
    };
    let error = probe::redis(
        &redis_url_with_password(&url, Some("Wr0ng-Pa55word")),
        TIMEOUT,
    )
    .await
    .unwrap_err();
    assert_eq!(error.category(), "auth", "{error}");
    assert!(!format!("{error} {error:?}").contains("Wr0ng-Pa55word"));

    if url.contains('@') {
        // The server requires a password (tests/run.sh sets one): NOAUTH without it.
        let error = probe::redis(&redis_url_with_password(&url, None), TIMEOUT)
            .await
            .unwrap_err();
        assert_eq!(error.category(), "auth", "{error}");
    } else {
        println!("SKIPPED (partly): {} has no password", services::REDIS_URL);
    }

    let port = closed_port().await;
    let error = probe::redis(
        &format!("redis://:Closed-Secret@127.0.0.1:{port}/0"),
        TIMEOUT,
    )
    .await
    .unwrap_err();
    assert_eq!(error.category(), "unreachable", "{error}");
    assert!(!error.to_string().contains("Closed-Secret"), "{error}");

    let silent = SilentServer::start().await;
    let started = Instant::now();
    let error = probe::redis(
        &format!("redis://{}/0", silent.addr),
        Duration::from_secs(1),
    )
    .await
    .unwrap_err();
    assert_eq!(error, ProbeError::Timeout);
    assert!(started.elapsed() < Duration::from_secs(1) + SLACK);

    let error = probe::redis("http://:Not-Shown@127.0.0.1/", TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(error.category(), "config", "{error}");
    assert!(!error.to_string().contains("Not-Shown"), "{error}");
}

// ---------------------------------------------------------------------------------------
// blocksight probe

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn blocksight(args: &[&str], env: &[(&str, &str)]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_blocksight"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run blocksight");
    Run {
        code: output.status.code().expect("exit code"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

#[tokio::test]
async fn cli_probes_bitcoind_and_prints_json() {
    let fake = FakeBitcoind::start(vec![State::Chain(Chain::synced(850_123))]).await;
    let run = blocksight(
        &[
            "probe",
            "bitcoind",
            "--url",
            &fake.url,
            "--user",
            &fake.user,
            "--password-env",
            "BS_TEST_RPC_PASSWORD",
            "--timeout",
            "2s",
        ],
        &[("BS_TEST_RPC_PASSWORD", &fake.password)],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let printed: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(printed["blocks"], 850_123);
    assert_eq!(printed["initialBlockDownload"], false);
    assert_eq!(printed["txindexSynced"], true);
    let report: BitcoindReport = serde_json::from_value(printed).unwrap();
    assert_eq!(report, probe::bitcoind(&target(&fake)).await.unwrap());

    // The same from a password file with a trailing newline (a Secret written by echo).
    let dir = std::env::temp_dir().join(unique_name("bs-probe-cli"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rpc-password");
    std::fs::write(&file, format!("{}\n", fake.password)).unwrap();
    let run = blocksight(
        &[
            "probe",
            "bitcoind",
            "--url",
            &fake.url,
            "--password-file",
            file.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(fake.received().iter().all(|r| r.authorized));
}

#[tokio::test]
async fn cli_reports_failures_on_stderr_with_exit_2() {
    let fake = FakeBitcoind::start(vec![State::Chain(Chain::synced(1))]).await;
    let run = blocksight(
        &[
            "probe",
            "bitcoind",
            "--url",
            &fake.url,
            "--password-env",
            "BS_TEST_RPC_PASSWORD",
        ],
        &[("BS_TEST_RPC_PASSWORD", "Wr0ng-Pa55word")],
    )
    .await;
    assert_eq!(run.code, 2);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(run.stderr.starts_with("error: auth: "), "{}", run.stderr);
    assert!(!run.stderr.contains("Wr0ng-Pa55word"), "{}", run.stderr);

    let port = closed_port().await;
    let run = blocksight(
        &[
            "probe",
            "bitcoind",
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--password-env",
            "BS_TEST_RPC_PASSWORD",
        ],
        &[("BS_TEST_RPC_PASSWORD", "whatever")],
    )
    .await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.starts_with("error: unreachable: "),
        "{}",
        run.stderr
    );

    let silent = SilentServer::start().await;
    let started = Instant::now();
    let run = blocksight(
        &[
            "probe",
            "electrs",
            "--addr",
            &silent.addr.to_string(),
            "--timeout",
            "1s",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 2);
    assert_eq!(
        run.stderr.trim_end(),
        "error: timeout: no answer within the timeout"
    );
    assert!(started.elapsed() < Duration::from_secs(1) + SLACK + SLACK);

    let run = blocksight(
        &[
            "probe",
            "bitcoind",
            "--url",
            &fake.url,
            "--password-env",
            "BS_TEST_UNSET_VAR",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.starts_with("error: config: "), "{}", run.stderr);
}

#[tokio::test]
async fn cli_refuses_passwords_as_flag_values_and_bad_flags() {
    // No password source: clap's usage error.
    let run = blocksight(&["probe", "bitcoind", "--url", "http://127.0.0.1:1"], &[]).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--password-env"), "{}", run.stderr);
    // A password as a flag value would show in `ps`: there is no such flag.
    let run = blocksight(
        &[
            "probe",
            "bitcoind",
            "--url",
            "http://127.0.0.1:1",
            "--password",
            "p",
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("unexpected argument '--password'"),
        "{}",
        run.stderr
    );
    let run = blocksight(
        &["probe", "electrs", "--addr", "h:1", "--timeout", "soon"],
        &[],
    )
    .await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--timeout"), "{}", run.stderr);
}

#[tokio::test]
async fn cli_probes_electrs_postgres_and_redis() {
    let electrum = FakeElectrum::start(Tip::Height(777)).await;
    let run = blocksight(&["probe", "electrs", "--addr", &electrum.addr], &[]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let printed: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(printed, serde_json::json!({"indexedHeight": 777}));

    let (Some(postgres), Some(redis)) = (services::postgres_url(), services::redis_url()) else {
        return;
    };
    let run = blocksight(
        &[
            "probe",
            "postgres",
            "--url-env",
            "BS_TEST_PG",
            "--database",
            "postgres",
        ],
        &[("BS_TEST_PG", &postgres)],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let printed: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(printed["version"].as_str().is_some_and(|v| !v.is_empty()));
    assert!(printed["databaseSizeBytes"].as_u64().is_some_and(|s| s > 0));

    let run = blocksight(
        &["probe", "redis", "--url-env", "BS_TEST_REDIS"],
        &[("BS_TEST_REDIS", &redis)],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let printed: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(printed["usedMemoryBytes"].as_u64().is_some_and(|m| m > 0));
}
