//! PostgreSQL: the health probe, and the idempotent bootstrap of the BlockSight database and
//! its roles.

use std::str::FromStr as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _};

use super::error::{ProbeError, from_io, redact_urls, url_secrets};
use super::scram;

/// What PostgreSQL says about itself and the BlockSight database.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostgresReport {
    /// `server_version`, e.g. `15.18 (Debian 15.18-0+deb12u1)`.
    pub version: String,
    pub database_size_bytes: u64,
}

/// Connect to `database` with the credentials in `url`; read the server version and the
/// database's size.
pub async fn postgres(
    url: &str,
    database: &str,
    timeout: Duration,
) -> Result<PostgresReport, ProbeError> {
    let probe = async {
        let (mut conn, shown) = connect(url, Some(database)).await?;
        let version: String = sqlx::query_scalar("SELECT current_setting('server_version')")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| sql_error(e, &shown))?;
        let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| sql_error(e, &shown))?;
        // Best effort: the server cleans up a dropped connection anyway.
        let _ = conn.close().await;
        Ok(PostgresReport {
            version,
            database_size_bytes: u64::try_from(size).unwrap_or(0),
        })
    };
    super::within(timeout, probe)
        .await
        .map_err(|e| e.redacted(&url_secrets(url)))
}

/// The BlockSight database, its application role (owner; the API) and its read-only role
/// (Grafana).
pub struct Bootstrap<'a> {
    /// Superuser URL (or a role with CREATEROLE and CREATEDB) to a database that exists,
    /// usually `postgres`.
    pub admin_url: &'a str,
    pub database: &'a str,
    pub app_user: &'a str,
    pub app_password: &'a str,
    pub readonly_user: &'a str,
    pub readonly_password: &'a str,
}

/// Create or repair the database and roles so that: both roles exist, can log in with the
/// given passwords and hold no administrative attribute; the application role owns the
/// database and its `public` schema; the read-only role may connect, read every table of
/// `public` (existing ones, and through default privileges the ones the application role
/// creates later) and read monitoring views (`pg_monitor`), and nothing else; `PUBLIC` may
/// not create in `public`.
///
/// Idempotent: roles and database are compared first and changed only when they differ
/// (a password is compared with its stored SCRAM verifier when the admin may read
/// pg_authid); the GRANTs are repeated. Run it when PostgreSQL becomes ready or the
/// credentials change, not on every poll.
///
/// Identifiers are quoted by the server (`format('%I')`); passwords travel as SCRAM
/// verifiers quoted by the server (`format('%L')`), never as plain text in a statement.
pub async fn bootstrap_database(b: &Bootstrap<'_>, timeout: Duration) -> Result<(), ProbeError> {
    let mut secrets = url_secrets(b.admin_url);
    secrets.extend([b.app_password.to_owned(), b.readonly_password.to_owned()]);
    super::within(timeout, bootstrap(b))
        .await
        .map_err(|e| e.redacted(&secrets))
}

async fn bootstrap(b: &Bootstrap<'_>) -> Result<(), ProbeError> {
    check_inputs(b)?;
    let (mut admin, shown) = connect(b.admin_url, None).await?;
    let run = Runner { target: &shown };

    let current_user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut admin)
        .await
        .map_err(|e| sql_error(e, &shown))?;
    for role in [b.app_user, b.readonly_user] {
        if role == current_user {
            return Err(ProbeError::InvalidTarget(format!(
                "role {role} is the admin role of {shown}; BlockSight's roles must be separate"
            )));
        }
    }

    run.ensure_role(&mut admin, b.app_user, b.app_password)
        .await?;
    run.ensure_role(&mut admin, b.readonly_user, b.readonly_password)
        .await?;
    run.ensure_database(&mut admin, b.database, b.app_user)
        .await?;
    run.formatted(
        &mut admin,
        "SELECT format('GRANT CONNECT ON DATABASE %I TO %I', $1::text, $2::text)",
        &[b.database, b.readonly_user],
    )
    .await?;
    let monitors: bool = sqlx::query_scalar("SELECT pg_has_role($1, 'pg_monitor', 'MEMBER')")
        .bind(b.readonly_user)
        .fetch_one(&mut admin)
        .await
        .map_err(|e| sql_error(e, &shown))?;
    if !monitors {
        run.formatted(
            &mut admin,
            "SELECT format('GRANT pg_monitor TO %I', $1::text)",
            &[b.readonly_user],
        )
        .await?;
    }
    let _ = admin.close().await;

    // Schema privileges live in the database itself.
    let (mut db, shown_db) = connect(b.admin_url, Some(b.database)).await?;
    let run = Runner { target: &shown_db };
    let schema_owner: Option<String> = sqlx::query_scalar(
        "SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = 'public'",
    )
    .fetch_optional(&mut db)
    .await
    .map_err(|e| sql_error(e, &shown_db))?;
    match schema_owner.as_deref() {
        None => {
            run.formatted(
                &mut db,
                "SELECT format('CREATE SCHEMA public AUTHORIZATION %I', $1::text)",
                &[b.app_user],
            )
            .await?
        }
        // PostgreSQL 15+ gives `public` to pg_database_owner, i.e. the application role.
        Some(owner) if owner == b.app_user || owner == "pg_database_owner" => {}
        Some(_) => {
            run.formatted(
                &mut db,
                "SELECT format('ALTER SCHEMA public OWNER TO %I', $1::text)",
                &[b.app_user],
            )
            .await?
        }
    }
    // $1 is the application role, $2 the read-only role; each template names both, in the
    // order its placeholders use them (format() ignores the extra argument).
    for template in [
        // Before PostgreSQL 15 every role may create objects in `public`.
        "SELECT format('REVOKE CREATE ON SCHEMA public FROM PUBLIC', $1::text, $2::text)",
        "SELECT format('GRANT USAGE ON SCHEMA public TO %I', $2::text, $1::text)",
        "SELECT format('GRANT SELECT ON ALL TABLES IN SCHEMA public TO %I', $2::text, $1::text)",
        "SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public \
         GRANT SELECT ON TABLES TO %I', $1::text, $2::text)",
    ] {
        run.formatted(&mut db, template, &[b.app_user, b.readonly_user])
            .await?;
    }
    let _ = db.close().await;
    Ok(())
}

fn check_inputs(b: &Bootstrap<'_>) -> Result<(), ProbeError> {
    if b.app_user == b.readonly_user {
        return Err(ProbeError::InvalidTarget(format!(
            "the application and read-only roles must differ (both are {})",
            b.app_user
        )));
    }
    for (what, value) in [
        ("database", b.database),
        ("application role", b.app_user),
        ("read-only role", b.readonly_user),
    ] {
        if value.is_empty() {
            return Err(ProbeError::InvalidTarget(format!(
                "the {what} name is empty"
            )));
        }
    }
    for (role, password) in [
        (b.app_user, b.app_password),
        (b.readonly_user, b.readonly_password),
    ] {
        // SCRAM verifiers are computed here; PostgreSQL would SASLprep other characters.
        if password.is_empty() || !password.bytes().all(|c| c.is_ascii_graphic() || c == b' ') {
            return Err(ProbeError::InvalidTarget(format!(
                "the password of role {role} must be non-empty printable ASCII"
            )));
        }
    }
    Ok(())
}

/// Runs statements against one server, naming it in errors.
struct Runner<'a> {
    target: &'a str,
}

impl Runner<'_> {
    /// Build a statement on the server with `format()` from `template` (a constant SELECT
    /// whose `%I` quotes identifiers and `%L` literals) and `args` ($1, $2...; the template
    /// must reference each), then run it.
    async fn formatted(
        &self,
        conn: &mut PgConnection,
        template: &str,
        args: &[&str],
    ) -> Result<(), ProbeError> {
        // Templates are constants of this module or built from constant keywords only.
        let mut query = sqlx::query_scalar::<_, String>(AssertSqlSafe(template.to_owned()));
        for arg in args {
            query = query.bind(arg.to_string());
        }
        let statement = query
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| sql_error(e, self.target))?;
        // Simple query protocol: CREATE DATABASE may not run in the extended protocol's
        // implicit transaction on every server.
        sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&mut *conn)
            .await
            .map_err(|e| sql_error(e, self.target))?;
        Ok(())
    }

    async fn ensure_role(
        &self,
        conn: &mut PgConnection,
        role: &str,
        password: &str,
    ) -> Result<(), ProbeError> {
        let salt: [u8; 16] = rand::random();
        let verifier = scram::verifier(password, &salt, scram::ITERATIONS);
        let attributes: Option<(bool, bool, bool, bool, bool, bool)> = sqlx::query_as(
            "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication, \
             rolbypassrls FROM pg_roles WHERE rolname = $1",
        )
        .bind(role)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| sql_error(e, self.target))?;
        let Some((login, superuser, createrole, createdb, replication, bypassrls)) = attributes
        else {
            return self
                .formatted(
                    conn,
                    "SELECT format('CREATE ROLE %I WITH LOGIN NOSUPERUSER NOCREATEROLE \
                     NOCREATEDB NOREPLICATION NOBYPASSRLS PASSWORD %L', $1::text, $2::text)",
                    &[role, &verifier],
                )
                .await;
        };
        // Only what differs: changing SUPERUSER or REPLICATION needs a superuser even as a
        // no-op, and the admin of a managed database often is not one.
        let mut changes: Vec<&str> = [
            (!login, "LOGIN"),
            (superuser, "NOSUPERUSER"),
            (createrole, "NOCREATEROLE"),
            (createdb, "NOCREATEDB"),
            (replication, "NOREPLICATION"),
            (bypassrls, "NOBYPASSRLS"),
        ]
        .into_iter()
        .filter_map(|(wrong, fix)| wrong.then_some(fix))
        .collect();
        if !self.password_matches(conn, role, password).await? {
            changes.push("PASSWORD %L");
        }
        if changes.is_empty() {
            return Ok(());
        }
        let template = format!(
            "SELECT format('ALTER ROLE %I WITH {}', $1::text, $2::text)",
            changes.join(" ")
        );
        self.formatted(conn, &template, &[role, &verifier]).await
    }

    /// Whether the stored verifier of `role` is one of `password`; false when the admin may
    /// not read pg_authid (then the password is set anyway).
    async fn password_matches(
        &self,
        conn: &mut PgConnection,
        role: &str,
        password: &str,
    ) -> Result<bool, ProbeError> {
        let stored: Result<Option<Option<String>>, _> =
            sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
                .bind(role)
                .fetch_optional(&mut *conn)
                .await;
        match stored {
            Ok(stored) => Ok(stored
                .flatten()
                .is_some_and(|stored| scram::matches(&stored, password))),
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some(INSUFFICIENT_PRIVILEGE) =>
            {
                Ok(false)
            }
            Err(e) => Err(sql_error(e, self.target)),
        }
    }

    async fn ensure_database(
        &self,
        conn: &mut PgConnection,
        database: &str,
        owner: &str,
    ) -> Result<(), ProbeError> {
        let current_owner: Option<String> = sqlx::query_scalar(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
        )
        .bind(database)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| sql_error(e, self.target))?;
        let template = match current_owner {
            None => "SELECT format('CREATE DATABASE %I OWNER %I', $1::text, $2::text)",
            Some(current) if current != owner => {
                "SELECT format('ALTER DATABASE %I OWNER TO %I', $1::text, $2::text)"
            }
            Some(_) => return Ok(()),
        };
        self.formatted(conn, template, &[database, owner]).await
    }
}

const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// Open one connection with the credentials of `url`, to `database` or the URL's own.
/// Returns it with `host:port/database` for messages.
async fn connect(url: &str, database: Option<&str>) -> Result<(PgConnection, String), ProbeError> {
    let invalid = |reason: String| {
        ProbeError::InvalidTarget(format!("PostgreSQL URL {}: {reason}", redact_urls(url)))
    };
    // sqlx would take any scheme.
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(invalid(
            "must start with postgres:// or postgresql://".into(),
        ));
    }
    let mut options = PgConnectOptions::from_str(url).map_err(|e| invalid(e.to_string()))?;
    if let Some(database) = database {
        options = options.database(database);
    }
    // Statements are logged at debug level otherwise; ours are administrative.
    let options = options
        .application_name("blocksight-operator")
        .disable_statement_logging();
    let shown = format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or(options.get_username())
    );
    let conn = PgConnection::connect_with(&options)
        .await
        .map_err(|e| sql_error(e, &shown))?;
    Ok((conn, shown))
}

fn sql_error(error: sqlx::Error, target: &str) -> ProbeError {
    match error {
        sqlx::Error::Database(e) => {
            let code = e.code().map(|c| c.into_owned()).unwrap_or_default();
            // Class 28: invalid authorization specification (bad password, no pg_hba entry).
            if code.starts_with("28") {
                ProbeError::Auth(format!("{target}: {}", e.message()))
            } else {
                ProbeError::Server {
                    code,
                    message: e.message().to_owned(),
                }
            }
        }
        sqlx::Error::Io(io) => from_io(&io, target),
        sqlx::Error::Tls(e) => ProbeError::Protocol(format!("{target}: TLS: {e}")),
        sqlx::Error::Configuration(e) => ProbeError::InvalidTarget(format!("{target}: {e}")),
        sqlx::Error::PoolTimedOut => ProbeError::Timeout,
        other => ProbeError::Protocol(format!("{target}: {other}")),
    }
}
