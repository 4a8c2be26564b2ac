//! The PostgreSQL side: connections, versions, exact row counts, databases, and the client
//! tools (pg_dump, pg_restore) run with the same connection settings.
//!
//! Statements that name a database are built by the server with `format('%I')`, as in the
//! probe's bootstrap, so no identifier is quoted by hand.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _};
use tokio::io::AsyncReadExt as _;
use tokio::process::Command;

use super::error::{BackupError, Result};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// PostgreSQL's longest identifier, in bytes.
const MAX_IDENTIFIER_BYTES: usize = 63;
/// How much of a client tool's standard error a message quotes.
const STDERR_TAIL_BYTES: usize = 4096;

/// How to reach the server, as libpq's PG* variables would say.
#[derive(Clone, Debug)]
pub struct PgSettings {
    /// Host name, or the folder of the Unix socket when it starts with `/`.
    pub host: String,
    pub port: u16,
    pub user: String,
    /// `None`: no password, or the one in ~/.pgpass.
    pub password: Option<String>,
    /// The database to connect to when creating, renaming and dropping databases.
    pub maintenance_database: String,
}

/// A PostgreSQL server, reached through sqlx and through the client tools on PATH.
#[derive(Clone, Debug)]
pub struct PgServer {
    settings: PgSettings,
}

/// The server's version and a database's encoding.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerInfo {
    pub version: String,
    pub version_num: u32,
    pub encoding: String,
}

/// A client tool's version: `15.8`, major `15` (`9.6` before PostgreSQL 10).
#[derive(Clone, Debug, PartialEq)]
pub struct ToolVersion {
    pub full: String,
    pub major: String,
}

impl PgServer {
    pub fn new(settings: PgSettings) -> Self {
        Self { settings }
    }

    pub fn maintenance_database(&self) -> &str {
        &self.settings.maintenance_database
    }

    /// `host:port/database`, for messages.
    pub fn shown(&self, database: &str) -> String {
        format!("{}:{}/{database}", self.settings.host, self.settings.port)
    }

    /// One connection to `database`, within 30 s.
    pub async fn connect(&self, database: &str) -> Result<PgConnection> {
        let s = &self.settings;
        // new() also honours PGSSLMODE, PGSSLROOTCERT, ... like the client tools do.
        let mut options = PgConnectOptions::new();
        options = if s.host.starts_with('/') {
            options.socket(&s.host)
        } else {
            options.host(&s.host)
        };
        options = options.port(s.port).username(&s.user).database(database);
        if let Some(password) = &s.password {
            options = options.password(password);
        }
        let options = options
            .application_name("blocksight-backup")
            .disable_statement_logging();
        let shown = self.shown(database);
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
            Ok(connected) => connected.map_err(|e| sql_error(e, &shown)),
            Err(_) => Err(BackupError::Unreachable(format!(
                "{shown}: no answer within {}s",
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }

    /// A client tool with this server's connection settings in its environment (never in
    /// its arguments, where `ps` would show a password).
    pub fn tool(&self, program: &str) -> Command {
        let s = &self.settings;
        let mut command = Command::new(program);
        command
            .env("PGHOST", &s.host)
            .env("PGPORT", s.port.to_string())
            .env("PGUSER", &s.user)
            .env("PGAPPNAME", "blocksight-backup")
            .stdin(Stdio::null())
            // A dropped future (error elsewhere, SIGTERM) must not leave the tool running.
            .kill_on_drop(true);
        if let Some(password) = &s.password {
            command.env("PGPASSWORD", password);
        }
        command
    }

    /// `<program> --version`, parsed.
    pub async fn tool_version(&self, program: &str) -> Result<ToolVersion> {
        let output = self
            .tool(program)
            .arg("--version")
            .output()
            .await
            .map_err(|e| spawn_error(program, e))?;
        let text = String::from_utf8_lossy(&output.stdout);
        match parse_tool_version(&text) {
            Some(version) if output.status.success() => Ok(version),
            _ => Err(BackupError::Usage(format!(
                "`{program} --version` printed {:?}: not a PostgreSQL client tool",
                text.trim()
            ))),
        }
    }

    /// Run a client tool to completion; fail with the end of its standard error.
    pub async fn run_tool(&self, mut command: Command, program: &str, what: &str) -> Result<()> {
        let output = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|e| spawn_error(program, e))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(BackupError::Failed(format!(
                "{program} {what} failed ({}): {}",
                output.status,
                tail(&String::from_utf8_lossy(&output.stderr))
            )))
        }
    }
}

/// The server's version and the current database's encoding.
pub async fn server_info(conn: &mut PgConnection, shown: &str) -> Result<ServerInfo> {
    let (version, version_num, encoding): (String, i32, String) = sqlx::query_as(
        "SELECT current_setting('server_version'), \
         current_setting('server_version_num')::int, \
         pg_encoding_to_char(encoding)::text \
         FROM pg_database WHERE datname = current_database()",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| sql_error(e, shown))?;
    Ok(ServerInfo {
        version,
        version_num: u32::try_from(version_num).unwrap_or(0),
        encoding,
    })
}

/// The major version of a `server_version_num`: 150008 → `15`, 90624 → `9.6`.
pub fn major_of_version_num(num: u32) -> String {
    if num >= 100_000 {
        (num / 10_000).to_string()
    } else {
        format!("{}.{}", num / 10_000, (num / 100) % 100)
    }
}

/// A major version as a comparable pair: `15` → (15, 0), `9.6` → (9, 6).
pub fn major_key(major: &str) -> (u32, u32) {
    let mut parts = major.split('.').map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// `pg_dump (PostgreSQL) 15.8 (Debian 15.8-1.pgdg120+1)` → 15.8, major 15.
pub fn parse_tool_version(text: &str) -> Option<ToolVersion> {
    let line = text.lines().next()?;
    if !line.contains("PostgreSQL") {
        return None;
    }
    let full = line
        .split_whitespace()
        .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))?;
    // `17beta1` and `18devel` count as 17 and 18.
    let numbers: Vec<u32> = full
        .split('.')
        .map_while(|part| {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect();
    let major = match numbers.as_slice() {
        [first, ..] if *first >= 10 => first.to_string(),
        [first, second, ..] => format!("{first}.{second}"),
        _ => return None,
    };
    Some(ToolVersion {
        full: full.to_owned(),
        major,
    })
}

/// Start a repeatable-read transaction and export its snapshot, so pg_dump
/// (`--snapshot`) and [`row_counts`] see the very same data.
pub async fn export_snapshot(conn: &mut PgConnection, shown: &str) -> Result<String> {
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *conn)
        .await
        .map_err(|e| sql_error(e, shown))?;
    sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| sql_error(e, shown))
}

/// End the transaction of [`export_snapshot`].
pub async fn release_snapshot(conn: &mut PgConnection, shown: &str) -> Result<()> {
    sqlx::raw_sql("COMMIT")
        .execute(&mut *conn)
        .await
        .map_err(|e| sql_error(e, shown))?;
    Ok(())
}

/// Exact row count (`count(*)`) of every ordinary table outside the system schemas, keyed
/// `schema.table`. Partitions are counted one by one, their parents not at all.
pub async fn row_counts(conn: &mut PgConnection, shown: &str) -> Result<BTreeMap<String, u64>> {
    let tables: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT n.nspname::text, c.relname::text, \
                format('SELECT count(*) FROM %I.%I', n.nspname, c.relname) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND c.relpersistence <> 't' \
           AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%' \
         ORDER BY 1, 2",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| sql_error(e, shown))?;
    let mut counts = BTreeMap::new();
    for (schema, table, statement) in tables {
        // The statement was built by the server's format('%I').
        let rows: i64 = sqlx::query_scalar(AssertSqlSafe(statement))
            .persistent(false)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| sql_error(e, shown))?;
        counts.insert(
            format!("{schema}.{table}"),
            u64::try_from(rows).unwrap_or(0),
        );
    }
    Ok(counts)
}

/// The owner of database `name`, or `None` when there is no such database.
pub async fn database_owner(
    conn: &mut PgConnection,
    shown: &str,
    name: &str,
) -> Result<Option<String>> {
    sqlx::query_scalar("SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| sql_error(e, shown))
}

/// `CREATE DATABASE` from template0 (nothing added to template1 leaks in) with the
/// encoding of the dumped database.
pub async fn create_database(
    conn: &mut PgConnection,
    shown: &str,
    name: &str,
    owner: Option<&str>,
    encoding: &str,
) -> Result<()> {
    match owner {
        Some(owner) => {
            formatted(
                conn,
                shown,
                "SELECT format('CREATE DATABASE %I OWNER %I TEMPLATE template0 ENCODING %L', \
                 $1::text, $2::text, $3::text)",
                &[name, owner, encoding],
            )
            .await
        }
        None => {
            formatted(
                conn,
                shown,
                "SELECT format('CREATE DATABASE %I TEMPLATE template0 ENCODING %L', \
                 $1::text, $2::text)",
                &[name, encoding],
            )
            .await
        }
    }
}

/// Drop database `name` if it exists, disconnecting its sessions (PostgreSQL 13+).
pub async fn drop_database(conn: &mut PgConnection, shown: &str, name: &str) -> Result<()> {
    formatted(
        conn,
        shown,
        "SELECT format('DROP DATABASE IF EXISTS %I WITH (FORCE)', $1::text)",
        &[name],
    )
    .await
}

pub async fn rename_database(
    conn: &mut PgConnection,
    shown: &str,
    from: &str,
    to: &str,
) -> Result<()> {
    formatted(
        conn,
        shown,
        "SELECT format('ALTER DATABASE %I RENAME TO %I', $1::text, $2::text)",
        &[from, to],
    )
    .await
}

/// Build a statement on the server with `format()` from `template` (a constant of this
/// module whose `%I` quote identifiers and `%L` literals), then run it with the simple
/// protocol (CREATE and DROP DATABASE may not run inside the extended protocol's implicit
/// transaction).
async fn formatted(
    conn: &mut PgConnection,
    shown: &str,
    template: &'static str,
    args: &[&str],
) -> Result<()> {
    let mut query = sqlx::query_scalar::<_, String>(template);
    for arg in args {
        query = query.bind(arg.to_string());
    }
    let statement = query
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| sql_error(e, shown))?;
    sqlx::raw_sql(AssertSqlSafe(statement))
        .execute(&mut *conn)
        .await
        .map_err(|e| sql_error(e, shown))?;
    Ok(())
}

/// The `--dbname` argument of a client tool for database `name`: a conninfo string, so a
/// name with `=` or spaces is never read as one.
pub fn conninfo(name: &str) -> String {
    format!(
        "dbname='{}'",
        name.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

/// A fresh database name `<base>_<purpose>_<8 hex digits>`, `base` shortened to fit
/// PostgreSQL's 63 bytes.
pub fn scratch_name(base: &str, purpose: &str) -> String {
    let suffix = format!("_{purpose}_{:08x}", rand::random::<u32>());
    let mut keep = MAX_IDENTIFIER_BYTES
        .saturating_sub(suffix.len())
        .min(base.len());
    while !base.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{suffix}", &base[..keep])
}

/// A database name PostgreSQL accepts as is: 1 to 63 bytes, no NUL.
pub fn check_database_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_IDENTIFIER_BYTES || name.contains('\0') {
        return Err(BackupError::Usage(format!(
            "database name {name:?} must be 1 to {MAX_IDENTIFIER_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Read a tool's standard error to the end (it must be drained while the tool runs).
pub async fn read_all(mut stream: impl tokio::io::AsyncRead + Unpin) -> String {
    let mut bytes = Vec::new();
    // A broken pipe leaves what was read; the exit status tells the rest.
    let _ = stream.read_to_end(&mut bytes).await;
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The last few KiB of a tool's output, trimmed, for an error message.
pub fn tail(text: &str) -> String {
    let text = text.trim();
    let mut start = text.len().saturating_sub(STDERR_TAIL_BYTES);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    if text.is_empty() {
        "(no output)".into()
    } else {
        text[start..].to_owned()
    }
}

pub fn spawn_error(program: &str, e: std::io::Error) -> BackupError {
    if e.kind() == std::io::ErrorKind::NotFound {
        BackupError::Usage(format!(
            "{program} not found on PATH: run this in the PostgreSQL server's image, whose \
             client tools match the server's major version"
        ))
    } else {
        BackupError::Failed(format!("starting {program}: {e}"))
    }
}

fn sql_error(error: sqlx::Error, shown: &str) -> BackupError {
    match error {
        sqlx::Error::Database(e) => {
            let code = e.code().map(|c| c.into_owned()).unwrap_or_default();
            let message = e.message();
            match code.as_str() {
                // invalid_catalog_name: the database does not exist.
                "3D000" => BackupError::Usage(format!("{shown}: {message}")),
                // Class 28: bad password, no pg_hba.conf entry; 57P03: still starting.
                c if c.starts_with("28") || c == "57P03" => {
                    BackupError::Unreachable(format!("{shown}: {message}"))
                }
                _ => BackupError::Failed(format!("{shown}: {message} (SQLSTATE {code})")),
            }
        }
        sqlx::Error::Io(e) => BackupError::Unreachable(format!("{shown}: {e}")),
        sqlx::Error::Tls(e) => BackupError::Unreachable(format!("{shown}: TLS: {e}")),
        sqlx::Error::Configuration(e) => BackupError::Usage(format!("{shown}: {e}")),
        other => BackupError::Failed(format!("{shown}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_versions_are_parsed() {
        let parse = |text: &str| parse_tool_version(text).map(|v| (v.full, v.major));
        assert_eq!(
            parse("pg_dump (PostgreSQL) 15.8 (Debian 15.8-1.pgdg120+1)\n"),
            Some(("15.8".into(), "15".into()))
        );
        assert_eq!(
            parse("pg_restore (PostgreSQL) 17beta1"),
            Some(("17beta1".into(), "17".into()))
        );
        assert_eq!(
            parse("pg_dump (PostgreSQL) 9.6.24"),
            Some(("9.6.24".into(), "9.6".into()))
        );
        assert_eq!(parse("mysqldump  Ver 10.19"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn server_majors_come_from_the_version_number() {
        assert_eq!(major_of_version_num(150008), "15");
        assert_eq!(major_of_version_num(170000), "17");
        assert_eq!(major_of_version_num(90624), "9.6");
        assert!(major_key("9.6") < major_key("10"));
        assert!(major_key("16") > major_key("15"));
    }

    #[test]
    fn scratch_names_fit_postgres_identifiers() {
        let name = scratch_name("blocksight", "verify");
        assert!(name.starts_with("blocksight_verify_"), "{name}");
        assert_eq!(name.len(), "blocksight_verify_".len() + 8);
        assert_ne!(scratch_name("db", "verify"), scratch_name("db", "verify"));
        let long = scratch_name(&"ü".repeat(40), "restore");
        assert!(long.len() <= MAX_IDENTIFIER_BYTES, "{long}");
        let hex = &long[long.len() - 8..];
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()), "{long}");
    }

    #[test]
    fn conninfo_quotes_database_names() {
        assert_eq!(conninfo("blocksight"), "dbname='blocksight'");
        assert_eq!(conninfo("a b=c"), "dbname='a b=c'");
        assert_eq!(conninfo(r"it's\x"), r"dbname='it\'s\\x'");
    }

    #[test]
    fn tails_keep_the_end_of_long_output() {
        assert_eq!(tail("  \n"), "(no output)");
        assert_eq!(tail("error: x\n"), "error: x");
        let long = format!("{}END", "é".repeat(STDERR_TAIL_BYTES));
        let kept = tail(&long);
        assert!(kept.ends_with("END") && kept.len() <= STDERR_TAIL_BYTES);
    }
}
