//! `dump`: one database, `pg_dump -Fc`, into a work file hashed as it is written; then the
//! archive to the destination, then the manifest.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::error::{BackupError, Result, local_io};
use super::manifest::{FORMAT_VERSION, Listed, Manifest, validate_backup_name};
use super::pg::{self, PgServer};
use super::store::Destination;

const IO_CHUNK: usize = 256 * 1024;

#[derive(Clone, Debug)]
pub struct DumpRequest {
    pub database: String,
    /// The backup's name; default `<database>-<UTC time>`, e.g. `blocksight-20250301T020000Z`.
    pub name: Option<String>,
    /// Where the archive is written before upload (needs room for the whole archive).
    pub work_dir: PathBuf,
}

/// Dump `request.database` and store it at `destination` as a new backup. Refuses a name
/// that is taken, and a pg_dump whose major version differs from the server's.
pub async fn dump(
    server: &PgServer,
    destination: &Destination,
    request: &DumpRequest,
) -> Result<Listed> {
    let started = Instant::now();
    pg::check_database_name(&request.database)?;
    // Whole seconds: the time names the backup and is compared, never summed.
    let time = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .expect("now is a valid timestamp");
    let name = match &request.name {
        Some(name) => name.clone(),
        None => default_name(&request.database, time),
    };
    validate_backup_name(&name).map_err(BackupError::Usage)?;
    if destination.manifest_exists(&name).await? {
        return Err(BackupError::Usage(format!(
            "backup {name:?} exists already at {}; backups are never overwritten",
            destination.location(&name)
        )));
    }

    let shown = server.shown(&request.database);
    let tool = server.tool_version("pg_dump").await?;
    let mut conn = server.connect(&request.database).await?;
    let info = pg::server_info(&mut conn, &shown).await?;
    let server_major = pg::major_of_version_num(info.version_num);
    if tool.major != server_major {
        return Err(BackupError::Usage(format!(
            "pg_dump {} (major {}) refuses to back up {shown}, which runs PostgreSQL {} \
             (major {server_major}): run the backup in the server's own image so that \
             client and server majors match",
            tool.full, tool.major, info.version
        )));
    }

    let work = tempfile::Builder::new()
        .prefix("blocksight-dump-")
        .tempdir_in(&request.work_dir)
        .map_err(|e| local_io("creating a work folder in", &request.work_dir, e))?;
    let archive = work.path().join("archive.dump");
    tracing::info!(database = %request.database, backup = %name, "dumping");
    let snapshot = pg::export_snapshot(&mut conn, &shown).await?;
    let (tables, (size_bytes, sha256)) = tokio::try_join!(
        pg::row_counts(&mut conn, &shown),
        run_pg_dump(server, &request.database, &snapshot, &archive),
    )?;
    pg::release_snapshot(&mut conn, &shown).await?;
    drop(conn);

    let data_object = format!("{}.dump", request.database.replace('/', "_"));
    let data_path = destination.data_path(&name, &data_object);
    tracing::info!(bytes = size_bytes, to = %destination.object_url(&data_path), "uploading");
    destination.upload_file(&archive, &data_path).await?;

    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        name: name.clone(),
        time: time.to_string(),
        database: request.database.clone(),
        encoding: info.encoding,
        server_version: info.version,
        server_version_num: info.version_num,
        pg_dump_version: tool.full,
        data_object,
        size_bytes,
        sha256,
        tables,
        duration_seconds: started.elapsed().as_secs_f64(),
    };
    destination.put_manifest(&manifest).await?;
    tracing::info!(backup = %name, "complete");
    Ok(Listed {
        location: destination.location(&name),
        manifest,
    })
}

/// Run pg_dump in the exported snapshot, streaming its archive into `archive` while
/// hashing it. Returns the archive's size and SHA-256.
async fn run_pg_dump(
    server: &PgServer,
    database: &str,
    snapshot: &str,
    archive: &Path,
) -> Result<(u64, String)> {
    let mut child = server
        .tool("pg_dump")
        .arg("--format=custom")
        .arg("--no-password")
        .arg(format!("--snapshot={snapshot}"))
        .arg(format!("--dbname={}", pg::conninfo(database)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| pg::spawn_error("pg_dump", e))?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let stderr = tokio::spawn(pg::read_all(child.stderr.take().expect("stderr is piped")));

    let mut file = tokio::fs::File::create(archive)
        .await
        .map_err(|e| local_io("creating", archive, e))?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut buffer = vec![0; IO_CHUNK];
    loop {
        let read = stdout
            .read(&mut buffer)
            .await
            .map_err(|e| BackupError::Failed(format!("reading pg_dump's output: {e}")))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
        file.write_all(&buffer[..read])
            .await
            .map_err(|e| local_io("writing", archive, e))?;
    }
    file.sync_all()
        .await
        .map_err(|e| local_io("writing", archive, e))?;
    let status = child
        .wait()
        .await
        .map_err(|e| BackupError::Failed(format!("waiting for pg_dump: {e}")))?;
    let stderr = stderr.await.unwrap_or_default();
    if !status.success() {
        return Err(BackupError::Failed(format!(
            "pg_dump of {} failed ({status}): {}",
            server.shown(database),
            pg::tail(&stderr)
        )));
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// `<database>-<YYYYMMDDTHHMMSSZ>`, the database part reduced to name characters.
fn default_name(database: &str, time: jiff::Timestamp) -> String {
    let mut base: String = database
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(150)
        .collect();
    if !base.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        base.insert_str(0, "db");
    }
    format!("{base}-{}", time.strftime("%Y%m%dT%H%M%SZ"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_valid_and_sortable() {
        let time: jiff::Timestamp = "2025-03-01T02:00:09Z".parse().unwrap();
        assert_eq!(
            default_name("blocksight", time),
            "blocksight-20250301T020009Z"
        );
        for database in ["my db", "_private", "日本", &"x".repeat(63)] {
            let name = default_name(database, time);
            assert_eq!(validate_backup_name(&name), Ok(()), "{name}");
        }
    }
}
