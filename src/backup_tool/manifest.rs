//! The manifest: what a backup holds, written after its archive so that its presence means
//! the backup is complete.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Name of the manifest object inside a backup's folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Version of the manifest's shape; a reader refuses newer ones rather than misread them.
pub const FORMAT_VERSION: u32 = 1;
/// Longest backup name: folder names must stay well inside S3's 1024-byte keys.
const MAX_NAME_LEN: usize = 200;

/// What a backup holds. Serialised as camelCase JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format_version: u32,
    /// The backup's name, also its folder at the destination.
    pub name: String,
    /// When the dump's snapshot was taken, RFC 3339 UTC. Retention ages backups by this.
    pub time: String,
    pub database: String,
    /// The database's encoding; a restore creates its database with the same one.
    pub encoding: String,
    /// The server's `server_version`, e.g. `15.8 (Debian 15.8-1.pgdg120+1)`.
    pub server_version: String,
    /// The server's `server_version_num`, e.g. 150008.
    pub server_version_num: u32,
    /// The version of the pg_dump that wrote the archive, e.g. `15.8`.
    pub pg_dump_version: String,
    /// The archive's name inside the backup's folder.
    pub data_object: String,
    pub size_bytes: u64,
    /// SHA-256 of the archive, lowercase hex.
    pub sha256: String,
    /// Exact row count of every table (`schema.table`) in the dump's snapshot.
    pub tables: BTreeMap<String, u64>,
    /// How long the dump and upload took.
    pub duration_seconds: f64,
}

/// A backup as `dump` and `list` print it: its manifest and where it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listed {
    #[serde(flatten)]
    pub manifest: Manifest,
    /// The backup's folder, e.g. `s3://bucket/blocksight/nightly-1/`.
    pub location: String,
}

impl Manifest {
    /// Parse and check a stored manifest; `folder` is the name of the folder it was found in.
    pub fn parse(bytes: &[u8], folder: &str) -> Result<Self, String> {
        let manifest: Self =
            serde_json::from_slice(bytes).map_err(|e| format!("not a manifest: {e}"))?;
        if manifest.format_version > FORMAT_VERSION {
            return Err(format!(
                "format version {} is newer than this program's {FORMAT_VERSION}",
                manifest.format_version
            ));
        }
        if manifest.name != folder {
            return Err(format!(
                "names backup {:?} but is stored in folder {folder:?}",
                manifest.name
            ));
        }
        manifest.timestamp()?;
        if manifest.sha256.len() != 64 || !manifest.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("sha256 {:?} is not 64 hex digits", manifest.sha256));
        }
        if manifest.data_object.is_empty()
            || manifest.data_object.contains('/')
            || manifest.data_object == MANIFEST_FILE
        {
            return Err(format!(
                "dataObject {:?} is not a file name",
                manifest.data_object
            ));
        }
        Ok(manifest)
    }

    /// [`time`](Self::time) as a timestamp.
    pub fn timestamp(&self) -> Result<jiff::Timestamp, String> {
        self.time
            .parse()
            .map_err(|e| format!("time {:?} is not RFC 3339: {e}", self.time))
    }

    /// Pretty JSON, as stored and printed.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("manifests serialize")
    }
}

/// A backup name is a folder name at the destination and usually a Kubernetes object name:
/// 1 to 200 characters of ASCII letters, digits, `-`, `_` and `.`, starting with a letter or
/// digit.
pub fn validate_backup_name(name: &str) -> Result<(), String> {
    let first_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !first_ok || !rest_ok || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "backup name {name:?} must be 1 to {MAX_NAME_LEN} characters of letters, digits, \
             '-', '_' and '.', starting with a letter or digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            name: "nightly-1".into(),
            time: "2025-03-01T02:00:00Z".into(),
            database: "blocksight".into(),
            encoding: "UTF8".into(),
            server_version: "15.8".into(),
            server_version_num: 150008,
            pg_dump_version: "15.8".into(),
            data_object: "blocksight.dump".into(),
            size_bytes: 42,
            sha256: "ab".repeat(32),
            tables: BTreeMap::from([("public.blocks".into(), 3)]),
            duration_seconds: 1.5,
        }
    }

    #[test]
    fn a_manifest_reads_back_as_written() {
        let manifest = sample();
        let json = manifest.to_json();
        assert!(json.contains("\"sizeBytes\": 42"), "{json}");
        assert_eq!(Manifest::parse(json.as_bytes(), "nightly-1"), Ok(manifest));
    }

    #[test]
    fn stored_manifests_are_checked() {
        let check = |edit: fn(&mut Manifest), folder: &str| {
            let mut manifest = sample();
            edit(&mut manifest);
            Manifest::parse(manifest.to_json().as_bytes(), folder).unwrap_err()
        };
        assert!(check(|_| {}, "other").contains("folder \"other\""));
        assert!(check(|m| m.format_version = 2, "nightly-1").contains("newer"));
        assert!(check(|m| m.time = "yesterday".into(), "nightly-1").contains("RFC 3339"));
        assert!(check(|m| m.sha256 = "xyz".into(), "nightly-1").contains("64 hex"));
        assert!(check(|m| m.data_object = "../x".into(), "nightly-1").contains("file name"));
        assert!(
            Manifest::parse(b"{}", "nightly-1")
                .unwrap_err()
                .contains("not a manifest")
        );
    }

    #[test]
    fn backup_names_are_safe_folder_names() {
        for good in ["nightly-1", "bs.2025-03-01T020000Z", "a", "db_backup"] {
            assert_eq!(validate_backup_name(good), Ok(()), "{good}");
        }
        let too_long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in [
            "",
            "-x",
            ".hidden",
            "a/b",
            "..",
            "a b",
            "ä",
            too_long.as_str(),
        ] {
            assert!(validate_backup_name(bad).is_err(), "{bad:?}");
        }
    }
}
