//! HTTP(S) downloads: streaming to a temporary file, size caps, timeouts, retries, and a
//! content-addressed cache for the images of a CSV of URLs.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use reqwest::{StatusCode, Url};
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use super::{
    FetchOptions, PartialFile, current_thread_runtime, human_duration, innermost_cause, parent_dir, persist,
};
use crate::{Error, Result};

/// A client for [`download`]: no client-wide timeout, since each request carries its own.
pub fn client() -> Result<reqwest::Client> {
    client_builder()
        .build()
        .map_err(|e| Error::unreachable(format!("cannot set up the HTTP client: {}", error_chain(&e))))
}

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().user_agent(concat!("ocellus/", env!("CARGO_PKG_VERSION")))
}

/// Downloads `url` to `dest` (temporary file in the same directory, then renamed) and returns
/// its size, retrying timeouts, connection errors, 429 and 5xx. A 404 or an oversized body
/// is bad input; what a retry might fix, once retries are spent, is unreachable.
pub async fn download(
    client: &reqwest::Client,
    url: &str,
    dest: &Path,
    options: &FetchOptions,
) -> Result<u64> {
    download_to(client, url, dest, options, TimeLimit::WholeRequest).await
}

/// [`download`] for a source archive or CSV, which may rightly take far longer than
/// `options.timeout`: the limit is on connecting and on each wait for more bytes.
pub(crate) async fn download_source(url: &str, dest: &Path, options: &FetchOptions) -> Result<u64> {
    let client = client_builder()
        .connect_timeout(options.timeout)
        .read_timeout(options.timeout)
        .build()
        .map_err(|e| Error::unreachable(format!("cannot set up the HTTP client: {}", error_chain(&e))))?;
    download_to(&client, url, dest, options, TimeLimit::BetweenBytes).await
}

async fn download_to(
    client: &reqwest::Client,
    url: &str,
    dest: &Path,
    options: &FetchOptions,
    limit: TimeLimit,
) -> Result<u64> {
    let dir = parent_dir(dest);
    let downloaded =
        download_with_retries(client, url, dir, options, limit).await.map_err(|f| f.into_error(url))?;
    persist(downloaded.file, dest)?;
    Ok(downloaded.bytes)
}

/// What `FetchOptions::timeout` limits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TimeLimit {
    /// The whole request, body included (the client must have no read timeout).
    WholeRequest,
    /// Connecting and each read (the client must have those timeouts set).
    BetweenBytes,
}

/// Why one URL could not be downloaded, for counting bad images by row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadFailure {
    /// The URL, without user info or query (they may hold credentials).
    pub url: String,
    /// What went wrong, e.g. `HTTP 404 Not Found` or `timed out after 2 s`.
    pub reason: String,
}

impl std::fmt::Display for DownloadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.url, self.reason)
    }
}

impl std::error::Error for DownloadFailure {}

/// Downloads many images concurrently into a content-addressed cache: `blobs/<sha256 of
/// content>` holds the bytes and `urls/<sha256 of URL>` the blob's digest, so a second run over
/// the same URLs makes no request, and identical images are stored once. Failures are not
/// cached: a re-run tries them again.
pub struct ImageDownloader {
    cache: Cache,
    client: reqwest::Client,
    options: FetchOptions,
    concurrency: usize,
    // The client's pooled connections belong to the runtime that opened them, so both live
    // as long as the downloader.
    runtime: tokio::runtime::Runtime,
}

impl ImageDownloader {
    /// A downloader caching under `cache_dir` with at most `concurrency` requests in flight.
    pub fn new(cache_dir: &Path, options: FetchOptions, concurrency: usize) -> Result<Self> {
        Ok(Self {
            cache: Cache::open(cache_dir)?,
            client: client()?,
            options,
            concurrency: concurrency.max(1),
            runtime: current_thread_runtime()?,
        })
    }

    /// One result per URL, in order: the cached file (named by its digest, no extension) or
    /// why it failed. A URL listed twice is fetched once. Blocking: call it from a thread
    /// outside any tokio runtime.
    pub fn download_all(&self, urls: &[String]) -> Vec<Result<PathBuf, DownloadFailure>> {
        let mut position: HashMap<&str, usize> = HashMap::new();
        let mut unique: Vec<&str> = Vec::new();
        for url in urls {
            position.entry(url.as_str()).or_insert_with(|| {
                unique.push(url);
                unique.len() - 1
            });
        }
        let results: Vec<_> = self.runtime.block_on(
            stream::iter(&unique).map(|url| self.fetch_cached(url)).buffered(self.concurrency).collect(),
        );
        urls.iter().map(|url| results[position[url.as_str()]].clone()).collect()
    }

    async fn fetch_cached(&self, url: &str) -> Result<PathBuf, DownloadFailure> {
        if let Some(blob) = self.cache.lookup(url).await {
            return Ok(blob);
        }
        let failure = |reason: String| DownloadFailure { url: redact(url), reason };
        let downloaded = download_with_retries(
            &self.client,
            url,
            &self.cache.blobs,
            &self.options,
            TimeLimit::WholeRequest,
        )
        .await
        .map_err(|f| failure(f.failure.reason()))?;
        self.cache.store(url, downloaded).map_err(|e| failure(format!("cannot write the image cache: {e}")))
    }
}

struct Cache {
    blobs: PathBuf,
    urls: PathBuf,
}

impl Cache {
    fn open(dir: &Path) -> Result<Self> {
        let cache = Self { blobs: dir.join("blobs"), urls: dir.join("urls") };
        for sub in [&cache.blobs, &cache.urls] {
            std::fs::create_dir_all(sub).map_err(Error::io(sub))?;
        }
        Ok(cache)
    }

    /// The blob `url` was stored as, when both its index entry and the blob are present.
    async fn lookup(&self, url: &str) -> Option<PathBuf> {
        let digest = tokio::fs::read_to_string(self.urls.join(sha256_hex(url.as_bytes()))).await.ok()?;
        let digest = digest.trim();
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let blob = self.blobs.join(digest);
        tokio::fs::try_exists(&blob).await.ok()?.then_some(blob)
    }

    /// Renames the download to its blob, then records it for `url`; the blob goes first so
    /// an index entry never points at nothing. Plain blocking I/O: a rename and a 64-byte file.
    fn store(&self, url: &str, downloaded: Downloaded) -> Result<PathBuf> {
        let digest = hex::encode(downloaded.sha256);
        let blob = self.blobs.join(&digest);
        persist(downloaded.file, &blob)?;
        let entry = self.urls.join(sha256_hex(url.as_bytes()));
        let mut temp = NamedTempFile::with_prefix_in(".entry-", &self.urls).map_err(Error::io(&self.urls))?;
        std::io::Write::write_all(&mut temp, digest.as_bytes()).map_err(Error::io(temp.path()))?;
        persist(temp, &entry)?;
        Ok(blob)
    }
}

/// A complete body in a temporary file that is deleted unless persisted.
struct Downloaded {
    file: NamedTempFile,
    bytes: u64,
    sha256: [u8; 32],
}

/// What ended the last attempt, and how many attempts were made.
struct Attempted {
    failure: Failure,
    attempts: u32,
}

impl Attempted {
    fn into_error(self, url: &str) -> Error {
        self.failure.into_error(url, self.attempts)
    }
}

async fn download_with_retries(
    client: &reqwest::Client,
    url: &str,
    dir: &Path,
    options: &FetchOptions,
    limit: TimeLimit,
) -> Result<Downloaded, Attempted> {
    let parsed = parse_http_url(url).map_err(|failure| Attempted { failure, attempts: 1 })?;
    let mut retry = 0;
    loop {
        match download_once(client, parsed.clone(), dir, options, limit).await {
            Err(failure) if failure.is_retryable() && retry < options.retries => {
                tokio::time::sleep(backoff(options.initial_backoff, retry)).await;
                retry += 1;
            }
            result => return result.map_err(|failure| Attempted { failure, attempts: retry + 1 }),
        }
    }
}

async fn download_once(
    client: &reqwest::Client,
    url: Url,
    dir: &Path,
    options: &FetchOptions,
    limit: TimeLimit,
) -> Result<Downloaded, Failure> {
    let mut request = client.get(url);
    let timed_out = || match limit {
        TimeLimit::WholeRequest => Failure::TimedOut(options.timeout),
        TimeLimit::BetweenBytes => Failure::Stalled(options.timeout),
    };
    if limit == TimeLimit::WholeRequest {
        request = request.timeout(options.timeout);
    }
    let mut response = request.send().await.map_err(|e| Failure::from_request(&e, timed_out))?;
    let status = response.status();
    if !status.is_success() {
        return Err(Failure::Status(status));
    }
    if response.content_length().is_some_and(|length| length > options.max_bytes) {
        return Err(Failure::TooLarge(options.max_bytes));
    }
    let mut partial = PartialFile::create_in(dir).map_err(Failure::Local)?;
    let mut hasher = Sha256::new();
    // Content-Length may lie or be absent (chunked), so the cap also counts what arrives.
    while let Some(chunk) = response.chunk().await.map_err(|e| Failure::from_body(&e, timed_out))? {
        if partial.bytes().saturating_add(chunk.len() as u64) > options.max_bytes {
            return Err(Failure::TooLarge(options.max_bytes));
        }
        hasher.update(&chunk);
        partial.write(&chunk).await.map_err(Failure::Local)?;
    }
    let (file, bytes) = partial.finish().await.map_err(Failure::Local)?;
    Ok(Downloaded { file, bytes, sha256: hasher.finalize().into() })
}

enum Failure {
    InvalidUrl(String),
    TimedOut(Duration),
    /// Connecting or waiting for more of the body took longer than this.
    Stalled(Duration),
    Connect(String),
    Status(StatusCode),
    TooLarge(u64),
    /// The connection broke while the body was arriving.
    Transfer(String),
    /// A request that no retry helps, like a redirect loop.
    Request(String),
    Local(Error),
}

impl Failure {
    fn from_request(error: &reqwest::Error, timed_out: impl Fn() -> Self) -> Self {
        if error.is_timeout() {
            timed_out()
        } else if error.is_connect() {
            Self::Connect(error_chain(error))
        } else if error.is_body() || error.is_decode() {
            Self::Transfer(error_chain(error))
        } else {
            Self::Request(error_chain(error))
        }
    }

    fn from_body(error: &reqwest::Error, timed_out: impl Fn() -> Self) -> Self {
        if error.is_timeout() { timed_out() } else { Self::Transfer(error_chain(error)) }
    }

    fn is_retryable(&self) -> bool {
        match self {
            Self::TimedOut(_) | Self::Stalled(_) | Self::Connect(_) | Self::Transfer(_) => true,
            Self::Status(status) => *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error(),
            Self::InvalidUrl(_) | Self::TooLarge(_) | Self::Request(_) | Self::Local(_) => false,
        }
    }

    /// A short phrase for one bad image.
    fn reason(&self) -> String {
        match self {
            Self::InvalidUrl(why) => format!("not a valid http(s) URL: {why}"),
            Self::TimedOut(after) => format!("timed out after {}", human_duration(*after)),
            Self::Stalled(after) => format!("stalled: nothing received for {}", human_duration(*after)),
            Self::Connect(why) | Self::Transfer(why) | Self::Request(why) => why.clone(),
            Self::Status(status) => status_text(*status),
            Self::TooLarge(limit) => format!("larger than the {limit}-byte limit"),
            Self::Local(error) => format!("cannot write the download: {error}"),
        }
    }

    fn into_error(self, url: &str, attempts: u32) -> Error {
        let url = redact(url);
        let tries = if attempts > 1 { format!(" ({attempts} attempts)") } else { String::new() };
        let reason = self.reason();
        match self {
            Self::InvalidUrl(_) => Error::bad_input(format!("{url} is {reason}; fix the URL")),
            Self::TimedOut(_) | Self::Stalled(_) => Error::unreachable(format!(
                "downloading {url} {reason}{tries}; check that the server is up, or raise spec.limits.downloadTimeoutSeconds"
            )),
            Self::Connect(_) => Error::unreachable(format!(
                "cannot connect to {url}: {reason}{tries}; check the host and port, or retry later"
            )),
            Self::Transfer(_) => {
                Error::unreachable(format!("downloading {url} broke off: {reason}{tries}; retry later"))
            }
            Self::Status(status) if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() => {
                Error::unreachable(format!("{url} answered {reason}{tries}; retry later"))
            }
            Self::Status(status) if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN => {
                Error::bad_input(format!(
                    "{url} answered {reason}; the URL must be readable without credentials"
                ))
            }
            Self::Status(_) => Error::bad_input(format!("{url} answered {reason}; check the URL")),
            Self::TooLarge(_) => Error::bad_input(format!(
                "{url} is {reason}; raise spec.limits.maxImageBytes or use a smaller file"
            )),
            Self::Request(_) => {
                Error::bad_input(format!("downloading {url} failed: {reason}; check the URL"))
            }
            Self::Local(error) => error,
        }
    }
}

fn parse_http_url(url: &str) -> Result<Url, Failure> {
    let parsed = Url::parse(url).map_err(|e| Failure::InvalidUrl(e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => Err(Failure::InvalidUrl(format!("the scheme is {other}"))),
    }
}

/// The path of an http(s) URL, for naming the downloaded file.
pub(crate) fn url_path(url: &str) -> Option<String> {
    Url::parse(url).ok().map(|u| u.path().to_owned())
}

/// `url` for messages: user info and query dropped, since either may carry credentials
/// (basic auth, presigned signatures).
pub(crate) fn redact(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            let had_query = parsed.query().is_some();
            // Only fails for URLs that cannot have user info at all.
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            if had_query { format!("{parsed}?…") } else { parsed.to_string() }
        }
        Err(_) => redact_unparsed(url),
    }
}

/// Not a URL at all, and possibly a whole CSV cell: one line, not too long, and nothing
/// before an `@` (the shape of `user:pass@host`).
fn redact_unparsed(text: &str) -> String {
    const SHOWN: usize = 200;
    let text = match text.rsplit_once('@') {
        Some((_, host)) => format!("…@{host}"),
        None => text.to_owned(),
    };
    let mut shown: String = text.chars().take(SHOWN).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().count() > SHOWN {
        shown.push('…');
    }
    shown
}

fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("HTTP {} {reason}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

/// Why a request failed, without reqwest's own message, which repeats the URL.
fn error_chain(error: &reqwest::Error) -> String {
    match std::error::Error::source(error) {
        Some(source) => innermost_cause(source),
        None if error.is_redirect() => "too many redirects".to_owned(),
        None => "the request failed".to_owned(),
    }
}

/// Exponential backoff with jitter: half of each wait is fixed, half random, so the pods
/// of one import that fail together do not retry together.
fn backoff(initial: Duration, retry: u32) -> Duration {
    let full = initial.saturating_mul(2u32.saturating_pow(retry));
    (full / 2).saturating_add(full.mul_f64(random_fraction() / 2.0))
}

/// A number in [0, 1] from std's randomly keyed hasher; good enough for jitter.
fn random_fraction() -> f64 {
    RandomState::new().build_hasher().finish() as f64 / u64::MAX as f64
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
