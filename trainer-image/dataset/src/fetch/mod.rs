//! Fetching sources and images: HTTP(S) and S3.
//!
//! Every download streams into a temporary file next to its destination and is renamed into
//! place only when complete, so a failed, timed-out or capped download never leaves a file
//! where the importer would look for one.

pub mod http;
pub mod http_folder;
pub mod s3;
pub mod s3_prefix;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ocellus_crds::dataset::{DatasetSource, ImportLimits, S3Source};
use tempfile::NamedTempFile;
use tokio::io::AsyncWriteExt;

use crate::{Error, Result};

/// How downloads behave: per-request timeout, size cap and retries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchOptions {
    /// Limit of one request, from connecting until the last byte of the body.
    pub timeout: Duration,
    /// Largest body accepted, in bytes.
    pub max_bytes: u64,
    /// Further attempts after a timeout, a connection error, 429 or 5xx (never after other 4xx).
    pub retries: u32,
    /// Wait before the first retry; it doubles for each further one (with jitter).
    pub initial_backoff: Duration,
}

impl FetchOptions {
    const RETRIES: u32 = 3;
    const INITIAL_BACKOFF: Duration = Duration::from_millis(200);

    /// Options for per-image downloads: the Dataset's timeout and image size cap.
    pub fn from_limits(limits: &ImportLimits) -> Self {
        Self {
            timeout: Duration::from_secs(u64::try_from(limits.download_timeout_seconds).unwrap_or(0).max(1)),
            max_bytes: u64::try_from(limits.max_image_bytes).unwrap_or(0).max(1),
            retries: Self::RETRIES,
            initial_backoff: Self::INITIAL_BACKOFF,
        }
    }

    /// The same options for a source archive or CSV: `maxImageBytes` caps single images
    /// only, and the API has no limit for the source itself yet, so it is uncapped.
    pub fn for_source(&self) -> Self {
        Self { max_bytes: u64::MAX, ..self.clone() }
    }
}

/// Downloads a Dataset's `http` or `s3` source to a file under `dest_dir`, atomically, and
/// returns its path; the file keeps the URL's or key's file name (so the archive layer can
/// tell `.zip` from `.tar.gz`). `None` for sources that are not remote (path, volume, split).
///
/// For HTTP, `options` gives the retries and the timeout, which limits connecting and each
/// wait for more bytes rather than the whole download (an archive may take an hour), and not
/// the size cap (see [`FetchOptions::for_source`]). S3 uses the SDK's retries and fixed
/// timeouts, and the AWS default credential chain, so a `credentialsSecretRef` Secret must
/// reach the pod as `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`.
///
/// Blocking: builds its own tokio runtime, so it must not be called from async code.
pub fn fetch_source(
    source: &DatasetSource,
    dest_dir: &Path,
    options: &FetchOptions,
) -> Result<Option<PathBuf>> {
    if let Some(http_source) = &source.http {
        return fetch_http_source(&http_source.url, dest_dir, options).map(Some);
    }
    if let Some(s3_source) = &source.s3 {
        return fetch_s3_source(s3_source, dest_dir).map(Some);
    }
    Ok(None)
}

fn fetch_http_source(url: &str, dest_dir: &Path, options: &FetchOptions) -> Result<PathBuf> {
    let dest = dest_dir.join(file_name_for(url, http::url_path(url).as_deref()));
    current_thread_runtime()?.block_on(http::download_source(url, &dest, &options.for_source()))?;
    Ok(dest)
}

fn fetch_s3_source(source: &S3Source, dest_dir: &Path) -> Result<PathBuf> {
    let location = s3::S3Location::parse(&source.uri)?;
    let dest = dest_dir.join(file_name_for(&source.uri, Some(&location.key)));
    let credentials = s3::S3Credentials::source_from_env();
    current_thread_runtime()?.block_on(s3::download_object(source, credentials.as_ref(), &dest))?;
    Ok(dest)
}

/// An S3 source that names a prefix (see [`s3_prefix::is_prefix`]): its images and CSV files
/// fetched into a folder under `dest_dir`, through the object cache in `cache_dir`, and that
/// folder's path. Blocking, like [`fetch_source`].
pub fn fetch_s3_prefix(
    source: &S3Source,
    dest_dir: &Path,
    cache_dir: &Path,
    options: &FetchOptions,
) -> Result<PathBuf> {
    let prefix = source.uri.strip_prefix("s3://").and_then(|rest| rest.split_once('/')).map(|(_, p)| p);
    let dest = dest_dir.join(file_name_for(&source.uri, prefix.map(|p| p.trim_end_matches('/'))));
    let credentials = s3::S3Credentials::source_from_env();
    current_thread_runtime()?.block_on(s3_prefix::fetch_prefix(
        source,
        credentials.as_ref(),
        &dest,
        cache_dir,
        options,
    ))?;
    Ok(dest)
}

/// An HTTP source that names a folder (see [`http_folder::is_folder`]): its images and tables
/// fetched into a folder under `dest_dir`, and that folder's path. Blocking, like
/// [`fetch_source`].
pub fn fetch_http_folder(url: &str, dest_dir: &Path, options: &FetchOptions) -> Result<PathBuf> {
    let path = reqwest::Url::parse(url).ok().map(|parsed| parsed.path().trim_end_matches('/').to_owned());
    let dest = dest_dir.join(file_name_for(url, path.as_deref()));
    let summary = current_thread_runtime()?.block_on(http_folder::fetch_folder(url, &dest, options))?;
    eprintln!(
        "{url}: {} files fetched from {} index pages, {} links skipped (not an image or table)",
        summary.fetched, summary.pages, summary.skipped
    );
    Ok(dest)
}

pub(crate) fn current_thread_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::unreachable(format!("cannot start the download runtime: {e}")))
}

/// The last segment of a URL path or S3 key, reduced to characters safe in a file name.
fn file_name_for(display: &str, path: Option<&str>) -> String {
    let last = path.and_then(|p| p.rsplit('/').next()).unwrap_or_default();
    let safe: String =
        last.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    if safe.trim_matches('.').is_empty() {
        // A URL like `https://host/` or `s3://b/dir/` names no file; the digest keeps two such
        // sources in one directory apart.
        format!("source-{}", &http::sha256_hex(display.as_bytes())[..16])
    } else {
        safe
    }
}

/// `1 s`, `2.5 s` or `300 ms`: how long a timeout was, for messages.
pub(crate) fn human_duration(duration: Duration) -> String {
    if duration.as_millis() < 1000 {
        format!("{} ms", duration.as_millis())
    } else if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

/// A download in progress: a temporary file next to its destination, deleted on drop unless
/// [`PartialFile::finish`]ed and persisted.
pub(crate) struct PartialFile {
    file: NamedTempFile,
    writer: tokio::fs::File,
    bytes: u64,
}

impl PartialFile {
    pub(crate) fn create_in(dir: &Path) -> Result<Self> {
        let file = NamedTempFile::with_prefix_in(".download-", dir).map_err(Error::io(dir))?;
        let writer = file.as_file().try_clone().map_err(Error::io(file.path()))?;
        Ok(Self { writer: tokio::fs::File::from_std(writer), file, bytes: 0 })
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.writer.write_all(chunk).await.map_err(Error::io(self.file.path()))?;
        self.bytes = self.bytes.saturating_add(chunk.len() as u64);
        Ok(())
    }

    /// Flushed and on disk, ready to be renamed into place.
    pub(crate) async fn finish(mut self) -> Result<(NamedTempFile, u64)> {
        self.writer.flush().await.map_err(Error::io(self.file.path()))?;
        // Durable before the rename, so a crash cannot leave a complete-looking file.
        self.writer.sync_data().await.map_err(Error::io(self.file.path()))?;
        Ok((self.file, self.bytes))
    }
}

/// Renames a finished download to `dest`, replacing what was there.
pub(crate) fn persist(file: NamedTempFile, dest: &Path) -> Result<()> {
    file.persist(dest).map(drop).map_err(|e| Error::io(dest)(e.error))
}

/// The directory a download to `dest` is staged in: the same one, so the rename is atomic.
pub(crate) fn parent_dir(dest: &Path) -> &Path {
    match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// The innermost cause of an error, e.g. `connection refused`: the outer layers of reqwest
/// and the AWS SDK either repeat the URL (query included) or add nothing.
pub(crate) fn innermost_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    match innermost.downcast_ref::<std::io::Error>() {
        Some(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        _ => innermost.to_string().replace(['\r', '\n'], " "),
    }
}
