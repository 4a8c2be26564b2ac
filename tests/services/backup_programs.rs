//! The programs the backup Jobs run (`blocksight backup dump|list|prune|restore|verify`),
//! run as the Jobs run them: the real binary, the real PostgreSQL of tests/run.sh with its
//! own pg_dump and pg_restore, and both kinds of destination, a local folder and an S3
//! server (moto).

use blocksight_testkit::backup::{
    self, Destination, Kind, Run, Services, closed_port, fake_pg_dump, source_row_counts,
    unique_name, with_env,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// Each scenario, once per kind of destination: `local::<scenario>` and `s3::<scenario>`.
macro_rules! on_both_destinations {
    ($($scenario:ident),* $(,)?) => {
        mod local {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(super::Kind::Local).await;
            })*
        }
        mod s3 {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(super::Kind::S3).await;
            })*
        }
    };
}

on_both_destinations!(
    round_trip,
    corrupted_archive_is_refused,
    truncated_archive_is_refused,
    retention_prunes_by_age_and_count_and_keeps_the_newest,
    interrupted_upload_is_not_a_backup_and_is_pruned_later,
    delete_removes_one_backup_and_is_idempotent,
);

/// `blocksight backup <args>` of this package's binary, which only its own tests can name.
async fn blocksight(args: &[&str], env: &[(String, String)]) -> Run {
    backup::blocksight(env!("CARGO_BIN_EXE_blocksight"), args, env).await
}

/// `backup <command> <destination flags> <extra>`.
async fn run(services: &Services, dest: &Destination, command: &str, extra: &[&str]) -> Run {
    let mut args = vec![command];
    args.extend(dest.args());
    args.extend(extra);
    blocksight(&args, &services.pg.env()).await
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .expect("a JSON array")
        .iter()
        .map(|b| b["name"].as_str().expect("a name"))
        .collect()
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|v| v.as_str().expect("a string"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// backup → list → restore → verify

async fn round_trip(kind: Kind) {
    let Some(services) = Services::get().await else {
        return;
    };
    let pg = &services.pg;
    let dest = Destination::new(kind, &services).await;
    let source = unique_name("bsb_src");
    pg.create_source(&source).await;
    let work = tempfile::tempdir().unwrap();
    let result_file = work.path().join("result.json");

    // Dump: the manifest on stdout describes the archive at the destination exactly.
    let dumped = run(
        &services,
        &dest,
        "dump",
        &[
            "--database",
            &source,
            "--name",
            "nightly-1",
            "--result-file",
            result_file.to_str().unwrap(),
        ],
    )
    .await;
    dumped.expect_code(0);
    let manifest = dumped.json();
    assert_eq!(manifest["name"], "nightly-1");
    assert_eq!(manifest["database"], source.as_str());
    assert_eq!(manifest["encoding"], "UTF8");
    assert_eq!(
        manifest["tables"],
        serde_json::to_value(source_row_counts()).unwrap()
    );
    let version = manifest["pgDumpVersion"].as_str().unwrap();
    assert!(version.starts_with(&format!("{}.", pg.major)), "{version}");
    assert!(
        manifest["location"]
            .as_str()
            .unwrap()
            .ends_with("/backups/test/nightly-1/"),
        "{manifest}"
    );
    let scheme = match kind {
        Kind::Local => "/",
        Kind::S3 => "s3://bsb-",
    };
    assert!(
        manifest["location"].as_str().unwrap().starts_with(scheme),
        "{manifest}"
    );
    let time: jiff::Timestamp = manifest["time"].as_str().unwrap().parse().unwrap();
    assert!(jiff::Timestamp::now().duration_since(time).as_secs() < 120);

    let data_file = format!("{source}.dump");
    assert_eq!(
        dest.keys().await,
        [
            Destination::key("nightly-1", &data_file).to_string(),
            Destination::key("nightly-1", "manifest.json").to_string(),
        ]
    );
    let archive = dest.get(&Destination::key("nightly-1", &data_file)).await;
    assert!(
        archive.starts_with(b"PGDMP"),
        "a pg_dump custom-format archive"
    );
    assert_eq!(manifest["sizeBytes"], archive.len() as u64);
    assert_eq!(manifest["sha256"], hex::encode(Sha256::digest(&archive)));
    // The stored manifest is the printed one, without the location.
    let mut stored: Value = serde_json::from_slice(
        &dest
            .get(&Destination::key("nightly-1", "manifest.json"))
            .await,
    )
    .unwrap();
    stored["location"] = manifest["location"].clone();
    assert_eq!(stored, manifest);
    // The compact result for the controller (a Pod's termination message).
    let result = backup::read_json(&result_file);
    assert_eq!(result["sha256"], manifest["sha256"]);
    assert_eq!(result["sizeBytes"], manifest["sizeBytes"]);
    assert!(std::fs::metadata(&result_file).unwrap().len() <= 4096);

    // A name is never reused.
    let again = run(
        &services,
        &dest,
        "dump",
        &["--database", &source, "--name", "nightly-1"],
    )
    .await;
    again.expect_code(2);
    assert!(again.stderr.contains("exists already"), "{again}");

    let listed = run(&services, &dest, "list", &[]).await;
    listed.expect_code(0);
    assert_eq!(names(&listed.json()), ["nightly-1"]);
    assert_eq!(listed.json()[0]["sha256"], manifest["sha256"]);

    // Restore into a new database: the same data, row for row.
    let copy = format!("{source}_copy");
    let restored = run(
        &services,
        &dest,
        "restore",
        &["--backup", "nightly-1", "--target-database", &copy],
    )
    .await;
    restored.expect_code(0);
    assert_eq!(restored.json()["replaced"], false);
    assert_eq!(restored.json()["tables"], 4);
    let original = pg.fingerprint(&source).await;
    assert_eq!(original.len(), 4);
    assert_eq!(pg.fingerprint(&copy).await, original);

    // An existing target is refused without --drop-existing, and left as it was...
    pg.execute(
        &copy,
        "INSERT INTO blocks VALUES (1000000, '\\x00', now(), 1)",
    )
    .await;
    let changed = pg.fingerprint(&copy).await;
    assert_ne!(changed, original);
    let refused = run(
        &services,
        &dest,
        "restore",
        &["--backup", "nightly-1", "--target-database", &copy],
    )
    .await;
    refused.expect_code(2);
    assert!(refused.stderr.contains("--drop-existing"), "{refused}");
    assert_eq!(pg.fingerprint(&copy).await, changed);
    // restoreFrom's restore (--only-if-empty) refuses a target that holds tables, and
    // leaves it as it was...
    let guarded = run(
        &services,
        &dest,
        "restore",
        &[
            "--backup",
            "nightly-1",
            "--target-database",
            &copy,
            "--drop-existing",
            "--only-if-empty",
        ],
    )
    .await;
    guarded.expect_code(2);
    assert!(guarded.stderr.contains("already holds"), "{guarded}");
    assert_eq!(pg.fingerprint(&copy).await, changed);
    // ...and replaced with it.
    let replaced = run(
        &services,
        &dest,
        "restore",
        &["--latest", "--target-database", &copy, "--drop-existing"],
    )
    .await;
    replaced.expect_code(0);
    assert_eq!(replaced.json()["replaced"], true);
    assert_eq!(pg.fingerprint(&copy).await, original);
    assert_eq!(
        pg.databases_starting_with(&format!("{copy}_restore_"))
            .await,
        Vec::<String>::new(),
        "no staging database is left behind"
    );

    // The restore drill passes, and drops its scratch database.
    let verified = run(&services, &dest, "verify", &["--backup", "nightly-1"]).await;
    verified.expect_code(0);
    let report = verified.json();
    assert_eq!(report["backup"], "nightly-1");
    assert_eq!(report["ok"], true);
    assert_eq!(report["tables"], 4);
    assert_eq!(report["mismatches"], json!([]));
    assert_eq!(report["error"], Value::Null);
    assert!(report["durationSeconds"].as_f64().unwrap() > 0.0);
    assert_eq!(
        pg.databases_starting_with(&format!("{source}_verify_"))
            .await,
        Vec::<String>::new()
    );
    let latest = run(&services, &dest, "verify", &["--latest"]).await;
    latest.expect_code(0);
    assert_eq!(latest.json()["backup"], "nightly-1");

    pg.drop_database(&copy).await;
    pg.drop_database(&source).await;
}

// ---------------------------------------------------------------------------------------
// Damaged archives: nothing is restored from them

async fn corrupted_archive_is_refused(kind: Kind) {
    damaged_archive_is_refused(kind, Damage::FlipByte).await;
}

async fn truncated_archive_is_refused(kind: Kind) {
    damaged_archive_is_refused(kind, Damage::Truncate).await;
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    FlipByte,
    Truncate,
}

async fn damaged_archive_is_refused(kind: Kind, damage: Damage) {
    let Some(services) = Services::get().await else {
        return;
    };
    let pg = &services.pg;
    let dest = Destination::new(kind, &services).await;
    let source = unique_name("bsb_dmg");
    pg.create_source(&source).await;
    run(
        &services,
        &dest,
        "dump",
        &["--database", &source, "--name", "b1"],
    )
    .await
    .expect_code(0);

    let key = Destination::key("b1", &format!("{source}.dump"));
    let mut archive = dest.get(&key).await;
    let expected_error = match damage {
        Damage::FlipByte => {
            let middle = archive.len() / 2;
            archive[middle] ^= 0x01;
            "SHA-256"
        }
        Damage::Truncate => {
            archive.truncate(archive.len() / 2);
            "truncated"
        }
    };
    dest.put(&key, archive).await;

    let verified = run(&services, &dest, "verify", &["--backup", "b1"]).await;
    verified.expect_code(1);
    let report = verified.json();
    assert_eq!(report["ok"], false, "{verified}");
    let error = report["error"].as_str().expect("an error");
    assert!(error.contains(expected_error), "{damage:?}: {error}");
    assert_eq!(
        pg.databases_starting_with(&format!("{source}_verify_"))
            .await,
        Vec::<String>::new()
    );

    let target = format!("{source}_restored");
    let restored = run(
        &services,
        &dest,
        "restore",
        &["--backup", "b1", "--target-database", &target],
    )
    .await;
    restored.expect_code(1);
    assert!(restored.stderr.contains(expected_error), "{restored}");
    assert_eq!(
        pg.databases_starting_with(&target).await,
        Vec::<String>::new(),
        "nothing is restored from a damaged archive"
    );

    pg.drop_database(&source).await;
}

/// The drill compares every table's row count with the manifest: a manifest that claims
/// other counts fails it, and a restore with it changes nothing.
#[tokio::test]
async fn row_counts_differing_from_the_manifest_fail() {
    let Some(services) = Services::get().await else {
        return;
    };
    let pg = &services.pg;
    let dest = Destination::new(Kind::Local, &services).await;
    let source = unique_name("bsb_rows");
    pg.create_small_source(&source).await;
    run(
        &services,
        &dest,
        "dump",
        &["--database", &source, "--name", "b1"],
    )
    .await
    .expect_code(0);
    let key = Destination::key("b1", "manifest.json");
    let mut manifest: Value = serde_json::from_slice(&dest.get(&key).await).unwrap();
    assert_eq!(manifest["tables"], json!({"public.t": 10}));
    manifest["tables"] = json!({"public.t": 11, "public.gone": 5});
    dest.put(&key, serde_json::to_vec(&manifest).unwrap()).await;

    let verified = run(&services, &dest, "verify", &["--backup", "b1"]).await;
    verified.expect_code(1);
    let report = verified.json();
    assert_eq!(report["ok"], false);
    assert_eq!(
        report["mismatches"],
        json!([
            {"table": "public.gone", "expected": 5, "actual": null},
            {"table": "public.t", "expected": 11, "actual": 10},
        ])
    );
    assert!(
        report["error"].as_str().unwrap().contains("2 of 2 tables"),
        "{verified}"
    );
    assert_eq!(
        pg.databases_starting_with(&format!("{source}_verify_"))
            .await,
        Vec::<String>::new()
    );

    let target = format!("{source}_target");
    let restored = run(
        &services,
        &dest,
        "restore",
        &["--backup", "b1", "--target-database", &target],
    )
    .await;
    restored.expect_code(1);
    assert!(
        restored.stderr.contains("public.t: 10 rows, manifest 11"),
        "{restored}"
    );
    assert_eq!(
        pg.databases_starting_with(&target).await,
        Vec::<String>::new()
    );
    pg.drop_database(&source).await;
}

/// An archive that matches its manifest but that pg_restore cannot read: the restore
/// fails and its half-made database is dropped.
#[tokio::test]
async fn an_archive_pg_restore_rejects_restores_nothing() {
    let Some(services) = Services::get().await else {
        return;
    };
    let pg = &services.pg;
    let dest = Destination::new(Kind::Local, &services).await;
    let source = unique_name("bsb_bad");
    pg.create_small_source(&source).await;
    run(
        &services,
        &dest,
        "dump",
        &["--database", &source, "--name", "b1"],
    )
    .await
    .expect_code(0);
    let garbage = b"PGDMP but not really an archive".to_vec();
    let key = Destination::key("b1", "manifest.json");
    let mut manifest: Value = serde_json::from_slice(&dest.get(&key).await).unwrap();
    manifest["sizeBytes"] = json!(garbage.len());
    manifest["sha256"] = json!(hex::encode(Sha256::digest(&garbage)));
    dest.put(&Destination::key("b1", &format!("{source}.dump")), garbage)
        .await;
    dest.put(&key, serde_json::to_vec(&manifest).unwrap()).await;

    let target = format!("{source}_target");
    let restored = run(
        &services,
        &dest,
        "restore",
        &["--backup", "b1", "--target-database", &target],
    )
    .await;
    restored.expect_code(1);
    assert!(restored.stderr.contains("pg_restore"), "{restored}");
    assert_eq!(
        pg.databases_starting_with(&target).await,
        Vec::<String>::new()
    );
    let verified = run(&services, &dest, "verify", &["--backup", "b1"]).await;
    verified.expect_code(1);
    assert!(
        verified.json()["error"]
            .as_str()
            .unwrap()
            .contains("pg_restore")
    );
    assert_eq!(
        pg.databases_starting_with(&format!("{source}_verify_"))
            .await,
        Vec::<String>::new()
    );
    pg.drop_database(&source).await;
}

/// When the archive cannot be stored, no manifest is written: the attempt never looks like
/// a backup.
#[tokio::test]
async fn a_failed_upload_writes_no_manifest() {
    let Some(services) = Services::get().await else {
        return;
    };
    let pg = &services.pg;
    let dest = Destination::new(Kind::Local, &services).await;
    let source = unique_name("bsb_upl");
    pg.create_small_source(&source).await;
    // A folder where the archive should go makes its upload fail.
    let archive = Destination::key("b1", &format!("{source}.dump"));
    dest.put(&archive.clone().join("blocker"), b"x".to_vec())
        .await;

    let dumped = run(
        &services,
        &dest,
        "dump",
        &["--database", &source, "--name", "b1"],
    )
    .await;
    dumped.expect_code(3);
    let keys = dest.keys().await;
    assert!(
        !keys.contains(&Destination::key("b1", "manifest.json").to_string()),
        "{keys:?}"
    );
    let listed = run(&services, &dest, "list", &[]).await;
    assert_eq!(listed.json(), json!([]));
    pg.drop_database(&source).await;
}

// ---------------------------------------------------------------------------------------
// Retention

async fn retention_prunes_by_age_and_count_and_keeps_the_newest(kind: Kind) {
    let Some(services) = Services::get().await else {
        return;
    };
    let pg = &services.pg;
    let dest = Destination::new(kind, &services).await;
    let source = unique_name("bsb_ret");
    pg.create_small_source(&source).await;
    for name in ["b40", "b35", "b10", "b1"] {
        run(
            &services,
            &dest,
            "dump",
            &["--database", &source, "--name", name],
        )
        .await
        .expect_code(0);
    }
    for (name, days) in [("b40", 40), ("b35", 35), ("b10", 10), ("b1", 1)] {
        dest.backdate_manifest(name, days).await;
    }
    let listed = run(&services, &dest, "list", &[]).await;
    assert_eq!(names(&listed.json()), ["b1", "b10", "b35", "b40"]);

    // A dry run reports and deletes nothing.
    let keys_before = dest.keys().await;
    let dry = run(
        &services,
        &dest,
        "prune",
        &["--retention", "30d", "--dry-run"],
    )
    .await;
    dry.expect_code(0);
    assert_eq!(names(&dry.json()["deleted"]), ["b35", "b40"]);
    assert_eq!(dest.keys().await, keys_before);

    // By age: older than 30 days goes, manifest and archive.
    let by_age = run(&services, &dest, "prune", &["--retention", "30d"]).await;
    by_age.expect_code(0);
    let report = by_age.json();
    assert_eq!(names(&report["deleted"]), ["b35", "b40"]);
    assert_eq!(strings(&report["kept"]), ["b1", "b10"]);
    let keys = dest.keys().await;
    assert!(
        keys.iter()
            .all(|k| !k.contains("/b35/") && !k.contains("/b40/")),
        "{keys:?}"
    );
    assert_eq!(keys.len(), 4, "b1 and b10 keep both objects: {keys:?}");

    // By count.
    let by_count = run(&services, &dest, "prune", &["--keep-last", "1"]).await;
    by_count.expect_code(0);
    assert_eq!(names(&by_count.json()["deleted"]), ["b10"]);
    assert_eq!(
        names(&run(&services, &dest, "list", &[]).await.json()),
        ["b1"]
    );

    // The newest survives even when it is past the retention.
    dest.backdate_manifest("b1", 100).await;
    let newest = run(
        &services,
        &dest,
        "prune",
        &["--retention", "30d", "--keep-last", "1"],
    )
    .await;
    newest.expect_code(0);
    assert_eq!(newest.json()["deleted"], json!([]));
    assert_eq!(strings(&newest.json()["kept"]), ["b1"]);
    let survivor = run(&services, &dest, "verify", &["--backup", "b1"]).await;
    survivor.expect_code(0);

    pg.drop_database(&source).await;
}

/// `delete --name`: what the operator's delete Job runs when a BlockSightBackup is deleted.
async fn delete_removes_one_backup_and_is_idempotent(kind: Kind) {
    let Some(services) = Services::get().await else {
        return;
    };
    let pg = &services.pg;
    let dest = Destination::new(kind, &services).await;
    let source = unique_name("bsb_del");
    pg.create_small_source(&source).await;
    for name in ["keep-me", "drop-me"] {
        run(
            &services,
            &dest,
            "dump",
            &["--database", &source, "--name", name],
        )
        .await
        .expect_code(0);
    }
    let deleted = run(&services, &dest, "delete", &["--name", "drop-me"]).await;
    deleted.expect_code(0);
    let report = deleted.json();
    assert_eq!(report["existed"], true);
    assert_eq!(
        report["objectsDeleted"], 2,
        "manifest and archive: {report}"
    );
    let keys = dest.keys().await;
    assert!(keys.iter().all(|k| !k.contains("/drop-me/")), "{keys:?}");
    assert!(keys.iter().any(|k| k.contains("/keep-me/")), "{keys:?}");
    assert_eq!(
        names(&run(&services, &dest, "list", &[]).await.json()),
        ["keep-me"]
    );

    // Again (a retried Job): nothing there, still a success.
    let again = run(&services, &dest, "delete", &["--name", "drop-me"]).await;
    again.expect_code(0);
    assert_eq!(again.json()["existed"], false);
    // A name that could escape the prefix is a usage error.
    run(&services, &dest, "delete", &["--name", "../keep-me"])
        .await
        .expect_code(2);
    run(&services, &dest, "verify", &["--backup", "keep-me"])
        .await
        .expect_code(0);
    pg.drop_database(&source).await;
}

// ---------------------------------------------------------------------------------------
// An upload cut short

async fn interrupted_upload_is_not_a_backup_and_is_pruned_later(kind: Kind) {
    let Some(services) = Services::get().await else {
        return;
    };
    let pg = &services.pg;
    let dest = Destination::new(kind, &services).await;
    let source = unique_name("bsb_int");
    pg.create_small_source(&source).await;
    run(
        &services,
        &dest,
        "dump",
        &["--database", &source, "--name", "complete"],
    )
    .await
    .expect_code(0);

    // The archive arrived, the manifest never did (the pod died in between).
    let orphan = Destination::key("cut-short", &format!("{source}.dump"));
    dest.put(&orphan, b"PGDMP and then nothing".to_vec()).await;

    let listed = run(&services, &dest, "list", &[]).await;
    listed.expect_code(0);
    assert_eq!(names(&listed.json()), ["complete"]);
    let latest = run(&services, &dest, "verify", &["--latest"]).await;
    latest.expect_code(0);
    assert_eq!(latest.json()["backup"], "complete");
    let missing = run(&services, &dest, "verify", &["--backup", "cut-short"]).await;
    missing.expect_code(2);
    assert!(
        missing.json()["error"]
            .as_str()
            .unwrap()
            .contains("not found"),
        "{missing}"
    );

    // Within the grace period it may be an upload in progress: kept.
    let early = run(&services, &dest, "prune", &["--keep-last", "5"]).await;
    early.expect_code(0);
    assert_eq!(early.json()["orphansDeleted"], json!([]));
    assert!(dest.keys().await.contains(&orphan.to_string()));

    // Past it, it goes; the complete backup stays.
    let late_flags: &[&str] = match kind {
        Kind::Local => {
            dest.backdate_local_file(&orphan, 2);
            &["--keep-last", "5"]
        }
        // S3 cannot backdate an object: shorten the grace instead.
        Kind::S3 => &["--keep-last", "5", "--orphan-grace", "0s"],
    };
    let late = run(&services, &dest, "prune", late_flags).await;
    late.expect_code(0);
    let deleted = strings(&late.json()["orphansDeleted"])
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    assert_eq!(deleted.len(), 1, "{late}");
    assert!(deleted[0].ends_with(orphan.as_ref()), "{deleted:?}");
    assert_eq!(late.json()["deleted"], json!([]));
    let keys = dest.keys().await;
    assert!(!keys.contains(&orphan.to_string()), "{keys:?}");
    assert_eq!(
        keys.len(),
        2,
        "the complete backup keeps both objects: {keys:?}"
    );

    pg.drop_database(&source).await;
}

// ---------------------------------------------------------------------------------------
// Client version and exit codes

#[tokio::test]
async fn pg_dump_of_another_major_is_refused() {
    let Some(services) = Services::get().await else {
        return;
    };
    let pg = &services.pg;
    let dest = Destination::new(Kind::Local, &services).await;
    let source = unique_name("bsb_ver");
    pg.create_small_source(&source).await;
    let other_major = if pg.major == "14" { "16.4" } else { "14.13" };
    let fake = fake_pg_dump(other_major);
    let env = with_env(
        &pg.env(),
        "PATH",
        &format!("{}:{}", fake.path().display(), pg.path()),
    );

    let mut args = vec!["dump", "--database", &source];
    args.extend(dest.args());
    let refused = blocksight(&args, &env).await;
    refused.expect_code(2);
    assert!(refused.stderr.contains(other_major), "{refused}");
    assert!(
        refused.stderr.contains(&format!("major {}", pg.major)),
        "{refused}"
    );
    assert_eq!(
        dest.keys().await,
        Vec::<String>::new(),
        "nothing is uploaded"
    );

    // The same command with the server's own pg_dump works.
    blocksight(&args, &pg.env()).await.expect_code(0);
    pg.drop_database(&source).await;
}

#[tokio::test]
async fn exit_codes_tell_usage_from_unreachable() {
    let Some(services) = Services::get().await else {
        return;
    };
    let pg = &services.pg;
    let dest = Destination::new(Kind::Local, &services).await;
    let env = pg.env();
    let source = unique_name("bsb_exit");
    pg.create_small_source(&source).await;
    let with_dest = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        all.extend(dest.args().iter().map(|a| (*a).to_owned()));
        all
    };
    async fn run_owned(args: Vec<String>, env: &[(String, String)]) -> Run {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        blocksight(&args, env).await
    }

    // 2: usage and configuration.
    blocksight(&["list"], &env).await.expect_code(2);
    blocksight(&["prune", "--local-dir", "/tmp", "--keep-last", "0"], &env)
        .await
        .expect_code(2);
    let no_policy = run_owned(with_dest(&["prune"]), &env).await;
    no_policy.expect_code(2);
    assert!(no_policy.stderr.contains("--retention"), "{no_policy}");
    let bad_name = with_dest(&["dump", "--name", "../escape", "--database", &source]);
    run_owned(bad_name, &env).await.expect_code(2);
    let missing_db = format!("{source}_missing");
    let no_such_db = run_owned(with_dest(&["dump", "--database", &missing_db]), &env).await;
    no_such_db.expect_code(2);
    assert!(no_such_db.stderr.contains("does not exist"), "{no_such_db}");
    let target = format!("{source}_target");
    let no_such_backup = with_dest(&["restore", "--backup", "nope", "--target-database", &target]);
    let missing = run_owned(no_such_backup, &env).await;
    missing.expect_code(2);
    assert!(missing.stderr.contains("not found"), "{missing}");
    assert!(!pg.exists(&target).await, "nothing is created");
    let password_file = with_dest(&[
        "verify",
        "--latest",
        "--pg-password-file",
        "/nonexistent/password",
    ]);
    run_owned(password_file, &env).await.expect_code(2);
    assert_eq!(
        dest.keys().await,
        Vec::<String>::new(),
        "nothing is uploaded"
    );

    // 3: the database is unreachable or refuses the login.
    let dump = with_dest(&["dump", "--database", &source]);
    let closed = with_env(&env, "PGPORT", &closed_port().to_string());
    run_owned(dump.clone(), &closed).await.expect_code(3);
    let wrong_password = with_env(&env, "PGPASSWORD", "not-the-password");
    run_owned(dump.clone(), &wrong_password)
        .await
        .expect_code(3);
    // ... also for the drill, which still prints its report.
    run_owned(dump, &env).await.expect_code(0);
    let drill = run_owned(with_dest(&["verify", "--latest"]), &closed).await;
    drill.expect_code(3);
    assert_eq!(drill.json()["ok"], false);

    // 3: the destination is unreachable.
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let unreachable_s3 = [
        "--s3-bucket",
        "b",
        "--s3-endpoint",
        endpoint.as_str(),
        "--s3-force-path-style",
    ];
    blocksight(&[&["list"][..], &unreachable_s3].concat(), &env)
        .await
        .expect_code(3);
    let drill = blocksight(
        &[&["verify", "--latest"][..], &unreachable_s3].concat(),
        &env,
    )
    .await;
    drill.expect_code(3);
    assert_eq!(drill.json()["ok"], false);
    assert!(
        drill.json()["error"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1"),
        "{drill}"
    );

    pg.drop_database(&source).await;
}
