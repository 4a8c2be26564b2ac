//! The destination: an S3 bucket or a local folder, under a prefix, through `object_store`.
//! Knows the layout (`<prefix>/<backup>/manifest.json` and the archive beside it), uploads
//! and downloads archives while checking them, and lists what is complete and what is not.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    ClientOptions, ObjectMeta, ObjectStore, ObjectStoreExt as _, PutPayload, RetryConfig,
};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::error::{BackupError, Result, local_io};
use super::manifest::{Listed, MANIFEST_FILE, Manifest, validate_backup_name};

/// Smallest multipart part. S3 allows at most 10,000 parts, so bigger archives get bigger
/// parts (see [`part_size`]).
const MIN_PART_BYTES: u64 = 16 * 1024 * 1024;
const MAX_PARTS: u64 = 9_000;
/// How many manifests are fetched at once when listing.
const LIST_CONCURRENCY: usize = 8;
const IO_CHUNK: usize = 256 * 1024;

/// An S3 bucket (or an S3-compatible service). Credentials come from the environment only:
/// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (from a Secret through secretKeyRef), else
/// web identity (IRSA: `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE`), EKS Pod Identity,
/// ECS task credentials, then the instance metadata service.
#[derive(Clone, Debug, Default)]
pub struct S3Settings {
    pub bucket: String,
    /// Defaults to `AWS_REGION`/`AWS_DEFAULT_REGION`, then us-east-1.
    pub region: Option<String>,
    /// e.g. `https://minio.storage:9000`; defaults to AWS' regional endpoint.
    pub endpoint: Option<String>,
    /// `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key` (most
    /// S3-compatible services need it).
    pub force_path_style: bool,
}

#[derive(Clone, Debug)]
pub enum DestinationConfig {
    S3(S3Settings),
    /// A folder, e.g. a mounted volume; created if missing.
    Local(PathBuf),
}

/// An opened destination.
pub struct Destination {
    store: Arc<dyn ObjectStore>,
    /// The prefix; backups are its direct sub-folders.
    root: Path,
    /// `s3://bucket` or the local folder, for locations and messages.
    base: String,
}

/// Everything under the prefix, sorted out.
pub(crate) struct Inventory {
    /// Complete backups, newest first.
    pub backups: Vec<Listed>,
    /// Folders whose manifest cannot be read: (name, why). Never pruned automatically.
    pub broken: Vec<(String, String)>,
    /// Objects of folders without a manifest: interrupted uploads and half-pruned backups.
    pub orphans: Vec<ObjectMeta>,
    /// Every object of every backup folder, by folder name.
    pub folders: BTreeMap<String, Vec<ObjectMeta>>,
}

impl Destination {
    /// Open the destination under `prefix` (`a/b` or `a/b/`; empty for the top level). Local
    /// folders are created; S3 is not contacted until the first request.
    pub fn open(config: &DestinationConfig, prefix: &str) -> Result<Self> {
        let root = parse_prefix(prefix)?;
        match config {
            DestinationConfig::S3(s3) => Ok(Self {
                store: Arc::new(open_s3(s3)?),
                root,
                base: format!("s3://{}", s3.bucket),
            }),
            DestinationConfig::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    BackupError::Unreachable(format!("destination folder {}: {e}", dir.display()))
                })?;
                let store = LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| {
                        BackupError::Unreachable(format!(
                            "destination folder {}: {e}",
                            dir.display()
                        ))
                    })?
                    // Empty backup folders disappear with their last object.
                    .with_automatic_cleanup(true)
                    // The manifest must not reach the disk before the archive does.
                    .with_fsync(true);
                Ok(Self {
                    store: Arc::new(store),
                    root,
                    base: dir.display().to_string().trim_end_matches('/').to_owned(),
                })
            }
        }
    }

    /// The store itself, for tests and tools that inspect objects.
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// Where the backups are, e.g. `s3://bucket/blocksight`.
    pub fn url(&self) -> String {
        if self.root.is_root() {
            self.base.clone()
        } else {
            format!("{}/{}", self.base, self.root)
        }
    }

    /// Where a backup's folder is, e.g. `s3://bucket/blocksight/nightly-1/`.
    pub fn location(&self, name: &str) -> String {
        format!("{}/{}/", self.base, self.folder(name))
    }

    /// The object path of a backup's folder.
    pub fn folder(&self, name: &str) -> Path {
        self.root.clone().join(name)
    }

    pub fn manifest_path(&self, name: &str) -> Path {
        self.folder(name).join(MANIFEST_FILE)
    }

    pub fn data_path(&self, name: &str, data_object: &str) -> Path {
        self.folder(name).join(data_object)
    }

    pub(crate) async fn manifest_exists(&self, name: &str) -> Result<bool> {
        let path = self.manifest_path(name);
        match self.store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error(&format!("looking for {path}"), &e)),
        }
    }

    /// The manifest of backup `name`: a usage error when there is none (the backup does not
    /// exist, or its upload never completed), corrupt when it cannot be read.
    pub async fn read_manifest(&self, name: &str) -> Result<Manifest> {
        validate_backup_name(name).map_err(BackupError::Usage)?;
        let path = self.manifest_path(name);
        let bytes = match self.store.get(&path).await {
            Ok(found) => found.bytes().await,
            Err(e) => Err(e),
        };
        match bytes {
            Ok(bytes) => Manifest::parse(&bytes, name).map_err(|reason| {
                BackupError::Corrupt(format!("manifest {}: {reason}", self.object_url(&path)))
            }),
            Err(object_store::Error::NotFound { .. }) => Err(BackupError::Usage(format!(
                "backup {name:?} not found: no {} at {}",
                MANIFEST_FILE,
                self.location(name)
            ))),
            Err(e) => Err(self.error(&format!("reading {path}"), &e)),
        }
    }

    /// Complete backups (newest first), broken ones and orphans.
    pub(crate) async fn inventory(&self) -> Result<Inventory> {
        let listing = if self.root.is_root() {
            self.store.list(None)
        } else {
            self.store.list(Some(&self.root))
        };
        let objects: Vec<ObjectMeta> = listing
            .try_collect()
            .await
            .map_err(|e| self.error("listing", &e))?;
        let mut folders: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
        for meta in objects {
            let Some(parts) = meta.location.prefix_match(&self.root) else {
                continue;
            };
            let parts: Vec<String> = parts.map(|p| p.as_ref().to_owned()).collect();
            // Only `<prefix>/<backup>/<file>` is ours; anything else sharing the prefix is
            // left alone.
            if let [folder, _file] = parts.as_slice()
                && validate_backup_name(folder).is_ok()
            {
                folders.entry(folder.clone()).or_default().push(meta);
            }
        }

        let with_manifest: Vec<String> = folders
            .iter()
            .filter(|(_, objects)| objects.iter().any(is_manifest))
            .map(|(name, _)| name.clone())
            .collect();
        let read: Vec<(String, Result<Manifest>)> = futures::stream::iter(with_manifest)
            .map(|name| async move {
                let manifest = self.read_manifest(&name).await;
                (name, manifest)
            })
            .buffer_unordered(LIST_CONCURRENCY)
            .collect()
            .await;

        let mut inventory = Inventory {
            backups: Vec::new(),
            broken: Vec::new(),
            orphans: Vec::new(),
            folders: BTreeMap::new(),
        };
        for (name, manifest) in read {
            match manifest {
                Ok(manifest) => inventory.backups.push(Listed {
                    location: self.location(&name),
                    manifest,
                }),
                Err(BackupError::Corrupt(reason)) => inventory.broken.push((name, reason)),
                // Deleted since the listing: no longer a backup.
                Err(BackupError::Usage(_)) => {}
                Err(e) => return Err(e),
            }
        }
        // Parse errors were ruled out by Manifest::parse; ties break on the name.
        inventory.backups.sort_by(|a, b| {
            let time = |l: &Listed| l.manifest.timestamp().ok();
            time(b)
                .cmp(&time(a))
                .then_with(|| b.manifest.name.cmp(&a.manifest.name))
        });
        inventory.broken.sort();
        for objects in folders.values() {
            if !objects.iter().any(is_manifest) {
                inventory.orphans.extend(objects.iter().cloned());
            }
        }
        inventory.folders = folders;
        Ok(inventory)
    }

    /// Upload a local file to `to`: one request when small, a multipart upload otherwise,
    /// which S3 makes visible only once complete (and which is aborted on error).
    pub(crate) async fn upload_file(&self, file: &std::path::Path, to: &Path) -> Result<()> {
        let mut reader = tokio::fs::File::open(file)
            .await
            .map_err(|e| local_io("opening", file, e))?;
        let size = reader
            .metadata()
            .await
            .map_err(|e| local_io("reading", file, e))?
            .len();
        let mut writer = BufWriter::with_capacity(
            Arc::clone(&self.store),
            to.clone(),
            usize::try_from(part_size(size)).unwrap_or(usize::MAX),
        );
        let mut buffer = vec![0; IO_CHUNK];
        let written: Result<()> = async {
            loop {
                let read = reader
                    .read(&mut buffer)
                    .await
                    .map_err(|e| local_io("reading", file, e))?;
                if read == 0 {
                    return Ok(());
                }
                writer
                    .write_all(&buffer[..read])
                    .await
                    .map_err(|e| self.error(&format!("uploading {to}"), &e))?;
            }
        }
        .await;
        if let Err(e) = written {
            // Best effort: an abandoned multipart upload is invisible but billed.
            let _ = writer.abort().await;
            return Err(e);
        }
        // A completion that fails aborts the multipart upload itself.
        writer
            .shutdown()
            .await
            .map_err(|e| self.error(&format!("completing the upload of {to}"), &e))?;

        // What the store holds is what was written, before a manifest vouches for it.
        let stored = self
            .store
            .head(to)
            .await
            .map_err(|e| self.error(&format!("checking {to}"), &e))?;
        if stored.size != size {
            return Err(BackupError::Failed(format!(
                "{} holds {} bytes after uploading {size}",
                self.object_url(to),
                stored.size
            )));
        }
        Ok(())
    }

    /// Write a backup's manifest: the step that makes the backup exist.
    pub(crate) async fn put_manifest(&self, manifest: &Manifest) -> Result<()> {
        let path = self.manifest_path(&manifest.name);
        self.store
            .put(&path, PutPayload::from(manifest.to_json().into_bytes()))
            .await
            .map_err(|e| self.error(&format!("writing {path}"), &e))?;
        Ok(())
    }

    /// Download a backup's archive into `into`, checking its size and SHA-256 against the
    /// manifest while it streams. A mismatch is [`BackupError::Corrupt`].
    pub(crate) async fn download_verified(
        &self,
        manifest: &Manifest,
        into: &std::path::Path,
    ) -> Result<()> {
        let path = self.data_path(&manifest.name, &manifest.data_object);
        let url = self.object_url(&path);
        let found = match self.store.get(&path).await {
            Ok(found) => found,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(BackupError::Corrupt(format!(
                    "archive {url} is missing although the manifest lists it"
                )));
            }
            Err(e) => return Err(self.error(&format!("downloading {path}"), &e)),
        };
        if found.meta.size != manifest.size_bytes {
            return Err(size_mismatch(&url, found.meta.size, manifest.size_bytes));
        }
        let mut file = tokio::fs::File::create(into)
            .await
            .map_err(|e| local_io("creating", into, e))?;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut stream = found.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.error(&format!("downloading {path}"), &e))?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk)
                .await
                .map_err(|e| local_io("writing", into, e))?;
        }
        file.flush()
            .await
            .map_err(|e| local_io("writing", into, e))?;
        if size != manifest.size_bytes {
            return Err(size_mismatch(&url, size, manifest.size_bytes));
        }
        let sha256 = hex::encode(hasher.finalize());
        if sha256 != manifest.sha256 {
            return Err(BackupError::Corrupt(format!(
                "archive {url} has SHA-256 {sha256}, the manifest says {}: the object is corrupt",
                manifest.sha256
            )));
        }
        Ok(())
    }

    /// Delete one object; one that is already gone is fine.
    pub(crate) async fn delete(&self, path: &Path) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(&format!("deleting {path}"), &e)),
        }
    }

    /// `s3://bucket/key` or the local file, for messages.
    pub fn object_url(&self, path: &Path) -> String {
        format!("{}/{path}", self.base)
    }

    /// A failed request: the destination is unreachable, or refused us.
    fn error(&self, what: &str, e: &dyn std::error::Error) -> BackupError {
        BackupError::Unreachable(format!("{}: {what}: {}", self.base, error_chain(e)))
    }
}

fn is_manifest(meta: &ObjectMeta) -> bool {
    meta.location.filename() == Some(MANIFEST_FILE)
}

fn size_mismatch(url: &str, actual: u64, expected: u64) -> BackupError {
    BackupError::Corrupt(format!(
        "archive {url} is {actual} bytes, the manifest says {expected}: the object is \
         truncated or was replaced"
    ))
}

/// Multipart part size for an archive of `size` bytes: at least 16 MiB, and few enough
/// parts for S3's limit of 10,000.
fn part_size(size: u64) -> u64 {
    let needed = size.div_ceil(MAX_PARTS);
    let mib = 1024 * 1024;
    needed.div_ceil(mib).saturating_mul(mib).max(MIN_PART_BYTES)
}

fn parse_prefix(prefix: &str) -> Result<Path> {
    let mut root = Path::default();
    for segment in prefix.split('/').filter(|s| !s.is_empty()) {
        if segment == "." || segment == ".." {
            return Err(BackupError::Usage(format!(
                "prefix {prefix:?} may not contain {segment:?}"
            )));
        }
        root = root.join(segment);
    }
    Ok(root)
}

fn open_s3(s3: &S3Settings) -> Result<impl ObjectStore + use<>> {
    install_crypto_provider();
    if s3.bucket.is_empty() {
        return Err(BackupError::Usage("the S3 bucket name is empty".into()));
    }
    let mut client = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(10))
        // A whole request, i.e. one multipart part.
        .with_timeout(Duration::from_secs(15 * 60));
    // Environment first (AWS_* credentials, region, ...), flags over it.
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&s3.bucket)
        .with_virtual_hosted_style_request(!s3.force_path_style)
        .with_retry(RetryConfig {
            // About 3 s of back-off before an unreachable endpoint is reported.
            max_retries: 5,
            retry_timeout: Duration::from_secs(3 * 60),
            ..RetryConfig::default()
        });
    if let Some(region) = &s3.region {
        builder = builder.with_region(region);
    }
    if let Some(endpoint) = &s3.endpoint {
        let Some((scheme, rest)) = endpoint.split_once("://") else {
            return Err(BackupError::Usage(format!(
                "S3 endpoint {endpoint:?} must start with https:// or http://"
            )));
        };
        if !matches!(scheme, "https" | "http") || rest.is_empty() {
            return Err(BackupError::Usage(format!(
                "S3 endpoint {endpoint:?} must start with https:// or http://"
            )));
        }
        client = client.with_allow_http(scheme == "http");
        // object_store expects a virtual-hosted endpoint to name the bucket already.
        builder = builder.with_endpoint(if s3.force_path_style {
            endpoint.clone()
        } else {
            format!("{scheme}://{}.{rest}", s3.bucket)
        });
    }
    builder
        .with_client_options(client)
        .build()
        .map_err(|e| BackupError::Usage(format!("S3 destination: {}", error_chain(&e))))
}

/// object_store's HTTP client uses rustls with the process-wide provider; the operator
/// builds ring only (like kube and sqlx).
pub(crate) fn install_crypto_provider() {
    // Fails only when a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An error and its sources, `outer: inner: innermost`, without repeats.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_stay_within_s3_limits() {
        let mib = 1024 * 1024;
        assert_eq!(part_size(0), 16 * mib);
        assert_eq!(part_size(100 * mib), 16 * mib);
        let huge = 1024 * 1024 * mib; // 1 TiB
        assert!(huge.div_ceil(part_size(huge)) <= 10_000);
        assert_eq!(part_size(huge) % mib, 0);
    }

    #[test]
    fn prefixes_become_object_paths() {
        assert_eq!(parse_prefix("blocksight/").unwrap().as_ref(), "blocksight");
        assert_eq!(parse_prefix("/a//b/").unwrap().as_ref(), "a/b");
        assert!(parse_prefix("").unwrap().is_root());
        assert!(parse_prefix("a/../b").is_err());
    }

    #[test]
    fn local_destinations_locate_backups_in_their_folder() {
        let dir = tempfile::tempdir().unwrap();
        let config = DestinationConfig::Local(dir.path().join("backups"));
        let destination = Destination::open(&config, "blocksight/").unwrap();
        assert!(dir.path().join("backups").is_dir());
        assert_eq!(
            destination.location("nightly-1"),
            format!("{}/backups/blocksight/nightly-1/", dir.path().display())
        );
        assert_eq!(
            destination
                .data_path("nightly-1", "blocksight.dump")
                .as_ref(),
            "blocksight/nightly-1/blocksight.dump"
        );
    }

    #[test]
    fn s3_endpoints_are_checked() {
        let settings = |endpoint: &str| S3Settings {
            bucket: "b".into(),
            endpoint: Some(endpoint.into()),
            ..S3Settings::default()
        };
        assert!(open_s3(&settings("minio:9000")).is_err());
        assert!(open_s3(&settings("ftp://minio:9000")).is_err());
        assert!(open_s3(&settings("http://minio:9000")).is_ok());
        assert!(open_s3(&S3Settings::default()).is_err());
    }
}
