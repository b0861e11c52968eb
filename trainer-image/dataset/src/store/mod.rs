//! The artifact store in S3: run folders, normalized datasets, scoring bundles and backbones
//! as objects under a prefix (`s3://bucket/prefix/<relative path>`).
//!
//! - **Markers.** A folder is complete when its marker object exists: `result.json` for a run
//!   folder, `dataset.json` for a normalized dataset, `bundle.json` for a scoring bundle.
//!   [`Store::upload_folder`] removes a stale marker before it changes anything and uploads
//!   the marker last (nested markers such as `scoring/bundle.json` after every other file),
//!   so a pod killed mid-upload never leaves a folder that looks whole.
//! - **Integrity.** Every object Ocellus writes carries its sha256 as user metadata
//!   (`x-amz-meta-sha256`); downloads check it whenever an object has it, and a folder's
//!   `SHA256SUMS` file (the output of `sha256sum`) when it has one.
//! - **Cheap re-publishing.** An object already there with the same size and sha256 is not
//!   uploaded again.
//! - **Cache.** [`Store::download_folder`] downloads into `<cache>/<digest of the prefix and
//!   the marker's ETag>`, renamed into place when complete: a second open downloads nothing,
//!   and a re-published folder (new marker, new ETag) is downloaded afresh.

pub mod client;
pub mod trainer;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures_util::{StreamExt, TryStreamExt, stream};
use ocellus_crds::contract::location::S3Prefix;
use ocellus_crds::contract::run_folder;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

pub use self::client::{Auth, ClientConfig};
use crate::{Error, Result};

/// The user-metadata key holding an object's sha256 (lower-case hex).
pub const SHA256_METADATA: &str = "sha256";
/// The user-metadata key of a marker object: unique per publish.
pub const PUBLISHED_METADATA: &str = "ocellus-published";
/// A folder's optional checksum file, in `sha256sum` format.
pub const SHA256SUMS_FILE: &str = "SHA256SUMS";
/// A scoring bundle's marker (written last by the bundle writer).
pub const BUNDLE_MARKER: &str = "bundle.json";
/// Files above this size are uploaded in parts of this size.
pub const MULTIPART_PART_SIZE: u64 = 16 << 20;
/// Transfers in flight at once.
const PARALLEL: usize = 4;
/// Markers of folders nested in another folder, and files naming others (a trial's state names
/// its checkpoint): uploaded after the other files.
const NESTED_MARKERS: [&str; 3] =
    [BUNDLE_MARKER, run_folder::DATASET_META_FILE, run_folder::TRIAL_STATE_FILE];

/// What an upload did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    pub uploaded: usize,
    /// Already in the store with the same size and sha256.
    pub unchanged: usize,
    /// Stale Ocellus objects removed (no longer in the local folder).
    pub deleted: usize,
}

/// A connection to the store. Blocking: it runs its own tokio runtime, so call it from
/// ordinary threads (several at once is fine), never from async code.
pub struct Store {
    client: Client,
    runtime: tokio::runtime::Runtime,
}

/// A local file to upload.
struct LocalFile {
    relative: String,
    path: PathBuf,
    size: u64,
}

/// An object of a listing, keyed by its path relative to the listed prefix.
#[derive(Clone, Debug)]
struct RemoteObject {
    key: String,
    size: u64,
    /// ETag and modification time, as far as the listing has them.
    version: (Option<String>, Option<i64>),
}

impl Store {
    pub fn connect(config: &ClientConfig) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::Io { path: PathBuf::from("tokio runtime"), source: e })?;
        let client = runtime.block_on(client::build_client(config));
        Ok(Self { client, runtime })
    }

    /// The store as a pod configures it ([`ClientConfig::store_from_env`]).
    pub fn from_env() -> Result<Self> {
        Self::connect(&ClientConfig::store_from_env())
    }

    /// Uploads every file of `local` to `dest` (see the module's notes on markers and
    /// skipping). `marker`, relative to `local`, must exist and goes last. Objects under
    /// `dest` that are no longer in `local` are removed when their first path component is
    /// an Ocellus entry or one of `local`'s own entries; anything else is left alone.
    /// Scratch entries (`.cache/`, `.work/`, partial writes) are not uploaded.
    pub fn upload_folder(&self, local: &Path, dest: &S3Prefix, marker: Option<&str>) -> Result<Transfer> {
        self.runtime.block_on(self.upload_folder_async(local, dest, marker))
    }

    /// One pass of the mirror of a folder that changes while it is copied (the auto image
    /// search's `trials/`): a hard-linked snapshot in `snapshot`, each trial's state taken
    /// before the other files (a state is written after the checkpoint it names, so that
    /// checkpoint is in the snapshot), uploaded as [`Self::upload_folder`] does, the states
    /// last. A pod killed at any moment leaves the store a trial it can resume.
    pub fn mirror_folder(&self, local: &Path, dest: &S3Prefix, snapshot: &Path) -> Result<Transfer> {
        let is_state =
            |file: &LocalFile| file.relative.rsplit('/').next() == Some(run_folder::TRIAL_STATE_FILE);
        let _ = std::fs::remove_dir_all(snapshot);
        for file in local_files(local)?.iter().filter(|f| is_state(f)) {
            link_into(snapshot, file)?;
        }
        for file in local_files(local)?.iter().filter(|f| !is_state(f)) {
            link_into(snapshot, file)?;
        }
        std::fs::create_dir_all(snapshot).map_err(Error::io(snapshot))?;
        let transfer = self.upload_folder(snapshot, dest, None);
        let _ = std::fs::remove_dir_all(snapshot);
        transfer
    }

    /// Downloads a complete folder (its `marker` exists) into the cache under `cache_root`
    /// and returns the local folder; a second call for the same folder downloads nothing.
    /// Without a marker the cache key is the listing's ETags (one listing per call).
    pub fn download_folder(
        &self,
        src: &S3Prefix,
        marker: Option<&str>,
        cache_root: &Path,
    ) -> Result<PathBuf> {
        self.runtime.block_on(async {
            let objects = self.list(src).await?;
            let mut key = Sha256::new();
            key.update(src.to_string().as_bytes());
            match marker {
                Some(marker) => {
                    if !objects.iter().any(|o| o.key == marker) {
                        return Err(incomplete(src, marker));
                    }
                    // Listings of some S3-compatible servers carry no ETag: ask the marker itself.
                    key.update(self.version_of(src, marker).await?.as_bytes());
                }
                None if objects.is_empty() => {
                    return Err(Error::bad_input(format!("{src} is empty; check the location")));
                }
                None => {
                    for object in &objects {
                        key.update(format!("\n{} {} {:?}", object.key, object.size, object.version));
                    }
                }
            }
            let dir = cache_root.join(&hex::encode(key.finalize())[..24]);
            if dir.is_dir() {
                return Ok(dir);
            }
            self.fetch_into(src, &objects, &dir, false).await?;
            Ok(dir)
        })
    }

    /// Downloads a complete folder (its `marker` exists) to `dest`, replacing what is there
    /// once the download is complete.
    pub fn download_folder_to(&self, src: &S3Prefix, marker: &str, dest: &Path) -> Result<()> {
        self.runtime.block_on(async {
            let objects = self.list(src).await?;
            if !objects.iter().any(|o| o.key == marker) {
                return Err(incomplete(src, marker));
            }
            self.fetch_into(src, &objects, dest, true).await
        })
    }

    /// Downloads every object under `src` into `dest` (merging with what is there, replacing
    /// files of the same name), without any marker check: for state that is resumed from,
    /// such as an interrupted search's trials. Returns how many files it wrote.
    pub fn download_into(&self, src: &S3Prefix, dest: &Path) -> Result<usize> {
        self.runtime.block_on(async {
            let objects = self.list(src).await?;
            stream::iter(objects.iter().map(|o| self.get_file(src, o, dest)))
                .buffer_unordered(PARALLEL)
                .try_collect::<Vec<()>>()
                .await
                .map(|done| done.len())
        })
    }

    /// The objects under `src` without sha256 metadata (relative keys).
    pub fn files_without_sha256(&self, src: &S3Prefix) -> Result<Vec<String>> {
        self.runtime.block_on(async {
            let objects = self.list(src).await?;
            let checked = stream::iter(objects.iter().map(|o| async move {
                Ok::<_, Error>((o.key.clone(), self.remote_sha256(src, &o.key).await?.is_some()))
            }))
            .buffer_unordered(PARALLEL * 2)
            .try_collect::<Vec<_>>()
            .await?;
            Ok(checked.into_iter().filter(|(_, has)| !has).map(|(key, _)| key).collect())
        })
    }

    /// Whether `src/relative` exists.
    pub fn exists(&self, src: &S3Prefix, relative: &str) -> Result<bool> {
        self.runtime.block_on(async {
            match self.client.head_object().bucket(&src.bucket).key(src.key(relative)).send().await {
                Ok(_) => Ok(true),
                Err(error) if is_not_found(&error) => Ok(false),
                Err(error) => Err(s3_error("reading", &format!("{src}/{relative}"), error)),
            }
        })
    }

    /// Removes exactly the objects under `prefix` that an Ocellus run wrote (first path
    /// component an Ocellus entry). Refuses, deleting nothing, when anything else is under
    /// the prefix or the prefix is a bucket's root. An empty prefix is already deleted.
    /// Returns how many objects it removed.
    pub fn delete_ocellus_folder(&self, prefix: &S3Prefix) -> Result<usize> {
        if prefix.prefix.is_empty() {
            return Err(Error::bad_input(format!(
                "{prefix}: refusing to delete: give the folder of one experiment's artifacts, not a bucket"
            )));
        }
        self.runtime.block_on(async {
            let objects = self.list(prefix).await?;
            if let Some(foreign) =
                objects.iter().find(|o| !run_folder::is_ocellus_entry(first_component(&o.key)))
            {
                return Err(Error::bad_input(format!(
                    "{prefix}: refusing to delete: {:?} was not written by ocellus, so this is not (only) \
                     an experiment's artifacts folder; nothing was deleted",
                    foreign.key
                )));
            }
            let count = objects.len();
            stream::iter(objects.iter().map(|o| self.delete_object(prefix, &o.key)))
                .buffer_unordered(PARALLEL * 2)
                .try_collect::<Vec<()>>()
                .await?;
            Ok(count)
        })
    }

    async fn upload_folder_async(
        &self,
        local: &Path,
        dest: &S3Prefix,
        marker: Option<&str>,
    ) -> Result<Transfer> {
        let files = local_files(local)?;
        if let Some(marker) = marker
            && !files.iter().any(|f| f.relative == marker)
        {
            return Err(Error::bad_input(format!(
                "{}: no {marker}, so it is not a complete folder to publish",
                local.display()
            )));
        }
        let remote: BTreeMap<String, RemoteObject> =
            self.list(dest).await?.into_iter().map(|o| (o.key.clone(), o)).collect();

        // Which files differ from what the store has.
        let remote_objects = &remote;
        let plans = stream::iter(files.iter().map(|file| async move {
            let same = match remote_objects.get(&file.relative) {
                Some(object) if object.size == file.size => {
                    let (path, ours) = (file.path.clone(), self.remote_sha256(dest, &file.relative));
                    let local_sha = tokio::task::spawn_blocking(move || sha256_or_gone(&path));
                    let (ours, local_sha) = (ours.await?, local_sha.await.expect("hashing never panics")?);
                    ours.is_some() && ours == local_sha
                }
                _ => false,
            };
            Ok::<_, Error>((file, same))
        }))
        .buffer_unordered(PARALLEL * 2)
        .try_collect::<Vec<_>>()
        .await?;
        let local_names: BTreeSet<&str> = files.iter().map(|f| f.relative.as_str()).collect();
        let local_tops: BTreeSet<&str> = files.iter().map(|f| first_component(&f.relative)).collect();
        let stale: Vec<&String> = remote
            .keys()
            .filter(|key| !local_names.contains(key.as_str()))
            .filter(|key| {
                let top = first_component(key);
                local_tops.contains(top)
                    || run_folder::is_ocellus_entry(top)
                    || run_folder::DATASET_ENTRIES.contains(&top)
            })
            .collect();
        let changes = plans.iter().any(|(file, same)| !same && Some(file.relative.as_str()) != marker);
        let mut transfer = Transfer::default();

        // A stale marker goes first: from here until the new one is up, the folder is incomplete.
        if let Some(marker) = marker
            && remote.contains_key(marker)
            && (changes || !stale.is_empty())
        {
            self.delete_object(dest, marker).await?;
        }
        let wave = |file: &LocalFile| {
            let name = file.relative.rsplit('/').next().unwrap_or_default();
            if Some(file.relative.as_str()) == marker {
                2
            } else if NESTED_MARKERS.contains(&name) {
                1
            } else {
                0
            }
        };
        for current in 0..2 {
            let todo = plans.iter().filter(|(file, same)| !same && wave(file) == current);
            let done = stream::iter(todo.map(|(file, _)| self.put_file(dest, file, false)))
                .buffer_unordered(PARALLEL)
                .try_collect::<Vec<bool>>()
                .await?;
            transfer.uploaded += done.iter().filter(|&&uploaded| uploaded).count();
        }
        stream::iter(stale.iter().map(|key| self.delete_object(dest, key)))
            .buffer_unordered(PARALLEL * 2)
            .try_collect::<Vec<()>>()
            .await?;
        transfer.deleted = stale.len();
        if let Some((file, same)) = plans.iter().find(|(file, _)| wave(file) == 2) {
            let replaced = !same || changes || !stale.is_empty();
            if replaced && self.put_file(dest, file, true).await? {
                transfer.uploaded += 1;
            }
        }
        transfer.unchanged = files.len() - transfer.uploaded;
        Ok(transfer)
    }

    /// Every object under `prefix`, all pages.
    async fn list(&self, prefix: &S3Prefix) -> Result<Vec<RemoteObject>> {
        let list_prefix = prefix.list_prefix();
        let mut pages =
            self.client.list_objects_v2().bucket(&prefix.bucket).prefix(&list_prefix).into_paginator().send();
        let mut objects = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| s3_error("listing", &prefix.to_string(), e))?;
            for object in page.contents() {
                let Some(key) = object.key().and_then(|k| k.strip_prefix(&list_prefix)) else { continue };
                if key.is_empty() || key.ends_with('/') {
                    continue;
                }
                objects.push(RemoteObject {
                    key: key.to_owned(),
                    size: object.size().and_then(|s| u64::try_from(s).ok()).unwrap_or_default(),
                    version: (object.e_tag().map(str::to_owned), object.last_modified().map(|t| t.secs())),
                });
            }
        }
        Ok(objects)
    }

    /// What changes when an object is written again: ETag, size and modification time.
    async fn version_of(&self, src: &S3Prefix, relative: &str) -> Result<String> {
        let head = self
            .client
            .head_object()
            .bucket(&src.bucket)
            .key(src.key(relative))
            .send()
            .await
            .map_err(|e| s3_error("reading", &format!("{src}/{relative}"), e))?;
        Ok(format!(
            "{} {:?} {:?} {:?}",
            head.e_tag().unwrap_or_default(),
            head.metadata().and_then(|m| m.get(PUBLISHED_METADATA)),
            head.content_length(),
            head.last_modified().map(|t| (t.secs(), t.subsec_nanos()))
        ))
    }

    async fn remote_sha256(&self, dest: &S3Prefix, relative: &str) -> Result<Option<String>> {
        match self.client.head_object().bucket(&dest.bucket).key(dest.key(relative)).send().await {
            Ok(head) => Ok(head.metadata().and_then(|m| m.get(SHA256_METADATA)).cloned()),
            Err(error) if is_not_found(&error) => Ok(None),
            Err(error) => Err(s3_error("reading", &format!("{dest}/{relative}"), error)),
        }
    }

    /// Uploads one file with its sha256; `false` when it vanished meanwhile (a checkpoint
    /// rotated away while a mirror ran: the next upload catches up).
    async fn put_file(&self, dest: &S3Prefix, file: &LocalFile, marker: bool) -> Result<bool> {
        let path = file.path.clone();
        let Some(sha) = tokio::task::spawn_blocking(move || sha256_or_gone(&path))
            .await
            .expect("hashing never panics")?
        else {
            return Ok(false);
        };
        let key = dest.key(&file.relative);
        let uri = format!("{dest}/{}", file.relative);
        let mut metadata = HashMap::from([(SHA256_METADATA.to_owned(), sha)]);
        if marker {
            // Unique per publish, so caches keyed by the marker see a re-published folder
            // even when the marker's bytes (hence its ETag) did not change.
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            metadata
                .insert(PUBLISHED_METADATA.to_owned(), format!("{}-{}", now.as_nanos(), std::process::id()));
        }
        let size = std::fs::metadata(&file.path).map(|m| m.len()).unwrap_or(file.size);
        if size > MULTIPART_PART_SIZE {
            return self.put_multipart(dest, &key, &uri, &file.path, metadata).await.map(|()| true);
        }
        let body = match ByteStream::from_path(&file.path).await {
            Ok(body) => body,
            Err(_) if !file.path.exists() => return Ok(false),
            Err(error) => {
                return Err(Error::Io { path: file.path.clone(), source: std::io::Error::other(error) });
            }
        };
        self.client
            .put_object()
            .bucket(&dest.bucket)
            .key(&key)
            .set_metadata(Some(metadata))
            .body(body)
            .send()
            .await
            .map_err(|e| s3_error("writing", &uri, e))?;
        Ok(true)
    }

    async fn put_multipart(
        &self,
        dest: &S3Prefix,
        key: &str,
        uri: &str,
        path: &Path,
        metadata: HashMap<String, String>,
    ) -> Result<()> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&dest.bucket)
            .key(key)
            .set_metadata(Some(metadata))
            .send()
            .await
            .map_err(|e| s3_error("writing", uri, e))?;
        let upload_id = created.upload_id().unwrap_or_default().to_owned();
        let parts = async {
            let mut file = std::fs::File::open(path).map_err(Error::io(path))?;
            let mut parts = Vec::new();
            for number in 1.. {
                let mut chunk = Vec::with_capacity(MULTIPART_PART_SIZE as usize);
                (&mut file).take(MULTIPART_PART_SIZE).read_to_end(&mut chunk).map_err(Error::io(path))?;
                if chunk.is_empty() && number > 1 {
                    break;
                }
                let part = self
                    .client
                    .upload_part()
                    .bucket(&dest.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(ByteStream::from(chunk))
                    .send()
                    .await
                    .map_err(|e| s3_error("writing", uri, e))?;
                parts.push(
                    CompletedPart::builder()
                        .set_e_tag(part.e_tag().map(str::to_owned))
                        .part_number(number)
                        .build(),
                );
            }
            Ok::<_, Error>(parts)
        }
        .await;
        let completed = match parts {
            Ok(parts) => self
                .client
                .complete_multipart_upload()
                .bucket(&dest.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map_err(|e| s3_error("writing", uri, e))
                .map(drop),
            Err(error) => Err(error),
        };
        if completed.is_err() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&dest.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        completed
    }

    /// Downloads `objects` into a staging folder beside `dir`, checks `SHA256SUMS` when there
    /// is one, and renames it to `dir`.
    async fn fetch_into(
        &self,
        src: &S3Prefix,
        objects: &[RemoteObject],
        dir: &Path,
        replace: bool,
    ) -> Result<()> {
        let parent = dir.parent().expect("a cache folder has a parent");
        std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
        let staging =
            tempfile::Builder::new().prefix(".partial-").tempdir_in(parent).map_err(Error::io(parent))?;
        stream::iter(objects.iter().map(|o| self.get_file(src, o, staging.path())))
            .buffer_unordered(PARALLEL)
            .try_collect::<Vec<()>>()
            .await?;
        check_sha256sums(staging.path(), src)?;
        let staging = staging.keep();
        if replace && dir.exists() {
            std::fs::remove_dir_all(dir).map_err(Error::io(dir))?;
        }
        if let Err(error) = std::fs::rename(&staging, dir) {
            let _ = std::fs::remove_dir_all(&staging);
            // Another process finished the same download first.
            if !dir.is_dir() {
                return Err(Error::io(dir)(error));
            }
        }
        Ok(())
    }

    /// Downloads one object to `dest_root/<key>` (temporary file, renamed), checking its
    /// sha256 metadata when it has one.
    async fn get_file(&self, src: &S3Prefix, object: &RemoteObject, dest_root: &Path) -> Result<()> {
        let uri = format!("{src}/{}", object.key);
        if object.key.split('/').any(|part| part == ".." || part == ".") {
            return Err(Error::bad_input(format!("{uri}: refusing a key with `.` or `..`")));
        }
        let dest = dest_root.join(&object.key);
        let folder = dest.parent().expect("a file has a folder");
        tokio::fs::create_dir_all(folder).await.map_err(Error::io(folder))?;
        let output = self
            .client
            .get_object()
            .bucket(&src.bucket)
            .key(src.key(&object.key))
            .send()
            .await
            .map_err(|e| s3_error("reading", &uri, e))?;
        let expected = output.metadata().and_then(|m| m.get(SHA256_METADATA)).cloned();
        let partial = tempfile::Builder::new()
            .prefix(".tmp-download-")
            .tempfile_in(folder)
            .map_err(Error::io(folder))?;
        let (std_file, partial_path) = partial.into_parts();
        let mut file = tokio::fs::File::from_std(std_file);
        let mut hasher = Sha256::new();
        let mut body = output.body;
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| Error::unreachable(format!("reading {uri} broke off: {e}; retry later")))?
        {
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(Error::io(&dest))?;
        }
        file.flush().await.map_err(Error::io(&dest))?;
        drop(file);
        let actual = hex::encode(hasher.finalize());
        if let Some(expected) = expected
            && !expected.eq_ignore_ascii_case(&actual)
        {
            return Err(Error::bad_input(format!(
                "{uri}: its content has sha256 {actual}, but the store says {expected}; the object is damaged"
            )));
        }
        partial_path.persist(&dest).map_err(|e| Error::io(&dest)(e.error))?;
        Ok(())
    }

    async fn delete_object(&self, prefix: &S3Prefix, relative: &str) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&prefix.bucket)
            .key(prefix.key(relative))
            .send()
            .await
            .map_err(|e| s3_error("deleting", &format!("{prefix}/{relative}"), e))?;
        Ok(())
    }
}

/// The error for a folder without its marker.
fn incomplete(src: &S3Prefix, marker: &str) -> Error {
    let writer = if marker == run_folder::DATASET_META_FILE { "import" } else { "run" };
    Error::bad_input(format!(
        "{src} is not a complete Ocellus folder (no {marker}); the {writer} that wrote it did not finish, \
         or the location is wrong"
    ))
}

fn first_component(relative: &str) -> &str {
    relative.split('/').next().unwrap_or_default()
}

/// Scratch space and partial writes, which are never uploaded.
fn is_scratch(relative: &str) -> bool {
    let top = first_component(relative);
    top == run_folder::CACHE_DIR
        || top == run_folder::WORK_DIR
        || run_folder::is_temporary(top)
        || relative.split('/').any(|part| part.ends_with(".partial") || part.contains(".partial-"))
}

/// The files below `root`, sorted, with `/`-separated relative paths; scratch left out.
fn local_files(root: &Path) -> Result<Vec<LocalFile>> {
    let mut files = Vec::new();
    let mut folders = vec![root.to_owned()];
    while let Some(folder) = folders.pop() {
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && folder != root => continue,
            Err(error) => return Err(Error::io(&folder)(error)),
        };
        for entry in entries {
            let entry = entry.map_err(Error::io(&folder))?;
            let path = entry.path();
            let relative =
                path.strip_prefix(root).expect("below the root").to_string_lossy().replace('\\', "/");
            if is_scratch(&relative) {
                continue;
            }
            let Ok(metadata) = std::fs::metadata(&path) else { continue };
            if metadata.is_dir() {
                folders.push(path);
            } else if metadata.is_file() {
                files.push(LocalFile { relative, path, size: metadata.len() });
            }
        }
    }
    files.sort_by(|a, b| a.relative.cmp(&b.relative));
    Ok(files)
}

/// A hard link to `file` at `<snapshot>/<its relative path>`; nothing when it is already gone.
fn link_into(snapshot: &Path, file: &LocalFile) -> Result<()> {
    let target = snapshot.join(&file.relative);
    let folder = target.parent().expect("a file has a folder");
    std::fs::create_dir_all(folder).map_err(Error::io(folder))?;
    match std::fs::hard_link(&file.path, &target) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&target)(error)),
        _ => Ok(()),
    }
}

/// sha256 of a file, `None` when it no longer exists.
fn sha256_or_gone(path: &Path) -> Result<Option<String>> {
    match crate::digest::sha256_file(path) {
        Ok(sha) => Ok(Some(sha)),
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Checks every line of `dir/SHA256SUMS` (`<hex>  <relative path>`), when there is one.
/// Returns the paths it covers.
pub fn check_sha256sums(dir: &Path, src: &S3Prefix) -> Result<BTreeSet<String>> {
    let path = dir.join(SHA256SUMS_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(BTreeSet::new()) };
    let mut covered = BTreeSet::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (expected, name) = line.split_once(char::is_whitespace).ok_or_else(|| {
            Error::bad_input(format!("{src}/{SHA256SUMS_FILE}: {line:?} is not `<sha256>  <path>`"))
        })?;
        let name = name.trim_start().trim_start_matches('*').trim_start_matches("./");
        if name.split('/').any(|p| p == "..") {
            return Err(Error::bad_input(format!("{src}/{SHA256SUMS_FILE}: {name:?} leaves the folder")));
        }
        let actual = crate::digest::sha256_file(&dir.join(name)).map_err(|_| {
            Error::bad_input(format!("{src}/{SHA256SUMS_FILE} lists {name}, which the store does not have"))
        })?;
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(Error::bad_input(format!(
                "{src}/{name}: its content has sha256 {actual}, but {SHA256SUMS_FILE} says {expected}"
            )));
        }
        covered.insert(name.to_owned());
    }
    Ok(covered)
}

fn is_not_found<E: ProvideErrorMetadata>(
    error: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    match error {
        SdkError::ServiceError(context) => {
            context.raw().status().as_u16() == 404
                || matches!(context.err().code(), Some("NoSuchKey" | "NotFound"))
        }
        _ => false,
    }
}

/// An S3 failure as an error: bad input for what a retry cannot fix (no such bucket, access
/// denied), unreachable for the rest.
fn s3_error<E>(doing: &str, uri: &str, error: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = error.raw_response().map(|r| r.status().as_u16());
    let code = error.code().map(str::to_owned);
    let detail = DisplayErrorContext(&error).to_string().replace(['\r', '\n'], " ");
    match (code.as_deref(), status) {
        (Some("NoSuchBucket"), _) => Error::bad_input(format!("{doing} {uri}: the bucket does not exist")),
        (Some("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch"), _) | (_, Some(401 | 403)) => {
            Error::bad_input(format!(
                "{doing} {uri}: the store refused the credentials ({}); check the AWS_* environment \
                 or the service account's role",
                code.as_deref().unwrap_or("HTTP 403")
            ))
        }
        _ => Error::unreachable(format!("{doing} {uri} failed: {detail}; retry later")),
    }
}

/// How often a running experiment's trials are mirrored to the store.
pub const MIRROR_INTERVAL: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_and_partial_writes_are_never_uploaded() {
        for scratch in [".cache/images/ab/x.png", ".work/a", ".tmpXyz", ".scoring.partial-1/bundle.json"] {
            assert!(is_scratch(scratch), "{scratch}");
        }
        assert!(is_scratch("trials/3/.epoch-0002.partial/model.pt"));
        for kept in ["result.json", "scoring/bundle.json", "trials/3/epoch-0002/model.pt", "images/ab/c.png"]
        {
            assert!(!is_scratch(kept), "{kept}");
        }
    }

    #[test]
    fn sha256sums_are_checked_and_report_what_they_cover() {
        let dir = tempfile::tempdir().unwrap();
        let src = S3Prefix::parse("s3://b/backbones").unwrap();
        std::fs::create_dir(dir.path().join("lite0")).unwrap();
        std::fs::write(dir.path().join("lite0/model.pt"), b"weights").unwrap();
        let sha = crate::digest::sha256_file(&dir.path().join("lite0/model.pt")).unwrap();
        std::fs::write(dir.path().join(SHA256SUMS_FILE), format!("{sha}  lite0/model.pt\n")).unwrap();
        assert_eq!(
            check_sha256sums(dir.path(), &src).unwrap(),
            BTreeSet::from(["lite0/model.pt".to_owned()])
        );
        std::fs::write(dir.path().join("lite0/model.pt"), b"tampered").unwrap();
        let error = check_sha256sums(dir.path(), &src).unwrap_err().to_string();
        assert!(
            error.contains("s3://b/backbones/lite0/model.pt") && error.contains("SHA256SUMS says"),
            "{error}"
        );
    }
}
