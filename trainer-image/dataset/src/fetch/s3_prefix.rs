//! An S3 source that ends in `/`: every object under the prefix, fetched into a folder that the
//! layouts then read as they read an extracted archive (class folders, or a CSV or Parquet table beside its
//! images).
//!
//! The listing is read one page (1,000 keys) at a time and each page's objects are fetched
//! before the next page is asked for, so millions of keys never sit in memory together. Objects
//! land in a cache keyed by store, bucket, key, ETag (or, where a store lists none, the
//! modification time) and size: a re-import of an unchanged
//! prefix lists it and fetches nothing. Only images and tables (CSV, Parquet) are fetched; hidden and macOS
//! junk names are skipped as in an archive.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Error;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use ocellus_crds::dataset::S3Source;

use super::s3::{S3Credentials, S3Location, client_for, get_object, store_name};
use super::{FetchOptions, human_duration, persist};
use crate::archive::ArchiveLimits;
use crate::layout::{has_image_extension, is_ignored_name, is_table_name};
use crate::{Error, Result};

/// Objects fetched at once.
const CONCURRENCY: usize = 16;

/// Whether an S3 URI names a prefix (`s3://bucket/pets/`, `s3://bucket/`) rather than one object.
pub fn is_prefix(uri: &str) -> bool {
    uri.strip_prefix("s3://").is_some_and(|rest| rest.ends_with('/') || !rest.contains('/'))
}

/// What one prefix import did, for the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixSummary {
    pub fetched: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub bytes: u64,
}

/// Fetches the objects under `source.uri` (a prefix) into `dest`, which must not exist, with
/// the object cache in `cache_dir`. Per-object limits are `options`' (timeout, retries, size
/// cap for images); the entry count and total size are an archive's.
pub async fn fetch_prefix(
    source: &S3Source,
    credentials: Option<&S3Credentials>,
    dest: &Path,
    cache_dir: &Path,
    options: &FetchOptions,
) -> Result<PrefixSummary> {
    let (bucket, prefix) = split_prefix(&source.uri)?;
    let blobs = cache_dir.join("s3-objects");
    std::fs::create_dir_all(&blobs).map_err(Error::io(&blobs))?;
    std::fs::create_dir_all(dest).map_err(Error::io(dest))?;
    let client = client_for(source, credentials).await;
    let limits = ArchiveLimits::default();
    let started = std::time::Instant::now();
    let mut summary = PrefixSummary::default();
    let mut listed = 0u64;
    let mut pages = client.list_objects_v2().bucket(&bucket).prefix(&prefix).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| list_error(source, e))?;
        let mut wanted = Vec::new();
        for object in page.contents() {
            let (Some(key), Some(relative)) =
                (object.key(), object.key().and_then(|k| k.strip_prefix(&prefix)))
            else {
                continue;
            };
            listed += 1;
            if listed > limits.max_entries {
                return Err(Error::bad_input(format!(
                    "{} lists more than {} objects, the most one import reads; import a narrower prefix",
                    source.uri, limits.max_entries
                )));
            }
            let size = object.size().and_then(|s| u64::try_from(s).ok()).unwrap_or_default();
            match wanted_path(source, key, relative, size, options)? {
                Some(path) => wanted.push(Wanted {
                    location: S3Location { bucket: bucket.clone(), key: key.to_owned() },
                    path,
                    // S3 lists ETags; some compatible stores list only modification times.
                    version: object.e_tag().map(str::to_owned).or_else(|| {
                        object
                            .last_modified()
                            .map(|t| format!("modified {}.{:09}", t.secs(), t.subsec_nanos()))
                    }),
                    size,
                }),
                None => summary.skipped += 1,
            }
        }
        let fetched: Vec<(bool, u64)> = stream::iter(wanted.iter())
            .map(|object| fetch_one(&client, source, object, dest, &blobs, options))
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        for (was_cached, bytes) in fetched {
            *(if was_cached { &mut summary.unchanged } else { &mut summary.fetched }) += 1;
            summary.bytes += bytes;
        }
        if summary.bytes > limits.max_total_bytes {
            return Err(Error::bad_input(format!(
                "{} holds more than {} bytes of images and tables, the most one import reads; import a \
                 narrower prefix",
                source.uri, limits.max_total_bytes
            )));
        }
    }
    if summary.fetched + summary.unchanged == 0 {
        return Err(Error::bad_input(format!(
            "{} holds no images and no CSV or Parquet table ({listed} objects listed); check spec.source.s3.uri (a prefix \
             ends with `/`)",
            source.uri
        )));
    }
    eprintln!(
        "{}: {} of {} objects fetched, {} unchanged since the last import, {} skipped (not an \
         image or table) in {}",
        source.uri,
        summary.fetched,
        summary.fetched + summary.unchanged,
        summary.unchanged,
        summary.skipped,
        human_duration(started.elapsed())
    );
    Ok(summary)
}

/// One object to fetch, and where it goes under the destination folder.
struct Wanted {
    location: S3Location,
    path: PathBuf,
    /// The ETag, or the modification time where the store lists no ETag.
    version: Option<String>,
    size: u64,
}

/// Bucket and list prefix (`""` or ending in `/`) of a prefix URI.
fn split_prefix(uri: &str) -> Result<(String, String)> {
    let rest = uri.strip_prefix("s3://").unwrap_or_default();
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::bad_input(format!("spec.source.s3.uri {uri:?} names no bucket; fix the URI")));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

/// Where an object goes under the destination, or `None` when it is not fetched (a folder
/// marker, a hidden or junk name, neither an image nor a CSV).
fn wanted_path(
    source: &S3Source,
    key: &str,
    relative: &str,
    size: u64,
    options: &FetchOptions,
) -> Result<Option<PathBuf>> {
    if relative.is_empty() || relative.ends_with('/') {
        return Ok(None);
    }
    let path = PathBuf::from(relative);
    let plain = path.components().all(|part| matches!(part, Component::Normal(_)));
    if !plain || relative.contains("//") {
        return Err(Error::bad_input(format!(
            "s3://{}/{key}: the key has an empty, `.` or `..` segment, which is no file path inside \
             the import; rename the object",
            bucket_of(source)
        )));
    }
    if relative.split('/').any(is_ignored_name) {
        return Ok(None);
    }
    if is_table_name(relative) {
        return Ok(Some(path));
    }
    if !has_image_extension(relative) {
        return Ok(None);
    }
    if size > options.max_bytes {
        return Err(Error::bad_input(format!(
            "s3://{}/{key} is {size} bytes, over spec.limits.maxImageBytes ({}); remove it from the \
             prefix or raise the limit",
            bucket_of(source),
            options.max_bytes
        )));
    }
    Ok(Some(path))
}

fn bucket_of(source: &S3Source) -> &str {
    let rest = source.uri.strip_prefix("s3://").unwrap_or_default();
    rest.split_once('/').map_or(rest, |(bucket, _)| bucket)
}

/// Fetches one object into the cache unless an object of the same version and size is there, then
/// links it into the destination. Returns whether it was cached, and its size.
async fn fetch_one(
    client: &aws_sdk_s3::Client,
    source: &S3Source,
    object: &Wanted,
    dest: &Path,
    blobs: &Path,
    options: &FetchOptions,
) -> Result<(bool, u64)> {
    let target = dest.join(&object.path);
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(Error::io(parent))?;
    }
    let blob = object.version.as_ref().map(|version| {
        let identity = format!(
            "{}\n{}\n{}\n{version}\n{}",
            store_name(source),
            object.location.bucket,
            object.location.key,
            object.size
        );
        blobs.join(super::http::sha256_hex(identity.as_bytes()))
    });
    if let Some(blob) = &blob
        && tokio::fs::try_exists(blob).await.unwrap_or(false)
    {
        link_or_copy(blob, &target).await?;
        return Ok((true, object.size));
    }
    let staging = match (&blob, target.parent()) {
        (None, Some(parent)) => parent,
        _ => blobs,
    };
    let (file, bytes) = get_with_retries(client, source, object, staging, options).await?;
    match &blob {
        Some(blob) => {
            persist(file, blob)?;
            link_or_copy(blob, &target).await?;
        }
        None => persist(file, &target)?,
    }
    Ok((false, bytes))
}

/// The object in a temporary file, with the URL layout's per-request timeout and retries.
async fn get_with_retries(
    client: &aws_sdk_s3::Client,
    source: &S3Source,
    object: &Wanted,
    dir: &Path,
    options: &FetchOptions,
) -> Result<(tempfile::NamedTempFile, u64)> {
    let uri = object.location.uri();
    let mut retry = 0;
    loop {
        let attempt =
            tokio::time::timeout(options.timeout, get_object(client, source, &object.location, dir));
        let failure = match attempt.await {
            Ok(Err(error @ Error::SourceUnreachable(_))) => error,
            Ok(result) => return result,
            Err(_) => Error::unreachable(format!(
                "reading {uri} took longer than spec.limits.downloadTimeoutSeconds ({}); retry later \
                 or raise the limit",
                human_duration(options.timeout)
            )),
        };
        if retry >= options.retries {
            return Err(failure);
        }
        tokio::time::sleep(backoff(options.initial_backoff, retry)).await;
        retry += 1;
    }
}

fn backoff(initial: Duration, retry: u32) -> Duration {
    initial.saturating_mul(2u32.saturating_pow(retry))
}

/// A hard link to the cached object (no second copy on disk), or a copy across file systems.
async fn link_or_copy(blob: &Path, target: &Path) -> Result<()> {
    if tokio::fs::hard_link(blob, target).await.is_ok() {
        return Ok(());
    }
    tokio::fs::copy(blob, target).await.map(drop).map_err(Error::io(target))
}

fn list_error(source: &S3Source, error: SdkError<ListObjectsV2Error>) -> Error {
    let uri = &source.uri;
    match &error {
        SdkError::ServiceError(context) => {
            super::s3::service_error(uri, context.err().code(), context.raw().status().as_u16())
        }
        SdkError::DispatchFailure(failure) => match failure.as_connector_error() {
            Some(connector) => super::s3::connector_error(source, uri, connector),
            None => {
                Error::unreachable(format!("cannot reach {} to list {uri}; retry later", store_name(source)))
            }
        },
        SdkError::TimeoutError(_) => {
            Error::unreachable(format!("listing {uri} at {} timed out; retry later", store_name(source)))
        }
        _ => Error::unreachable(format!(
            "listing {uri} failed: {}; retry later",
            super::innermost_cause(&error)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_end_with_a_slash_or_name_only_a_bucket() {
        assert!(is_prefix("s3://b/pets/"));
        assert!(is_prefix("s3://b/"));
        assert!(is_prefix("s3://b"));
        assert!(!is_prefix("s3://b/pets.zip"));
        assert_eq!(split_prefix("s3://b/pets/").unwrap(), ("b".to_owned(), "pets/".to_owned()));
        assert_eq!(split_prefix("s3://b/").unwrap(), ("b".to_owned(), String::new()));
    }

    #[test]
    fn only_images_and_tables_under_plain_keys_are_fetched() {
        let source = S3Source {
            uri: "s3://b/pets/".into(),
            region: None,
            endpoint: None,
            force_path_style: None,
            credentials_secret_ref: None,
        };
        let options = FetchOptions::from_limits(&Default::default());
        let path = |relative: &str, size| {
            wanted_path(&source, &format!("pets/{relative}"), relative, size, &options)
        };
        assert_eq!(path("cat/1.png", 10).unwrap(), Some(PathBuf::from("cat/1.png")));
        assert_eq!(path("labels.csv.gz", 10).unwrap(), Some(PathBuf::from("labels.csv.gz")));
        assert_eq!(path("cat/", 0).unwrap(), None);
        assert_eq!(path("README.md", 10).unwrap(), None);
        assert_eq!(path("cat/.DS_Store", 10).unwrap(), None);
        assert_eq!(path("__MACOSX/cat/1.png", 10).unwrap(), None);
        let dotdot = path("../secret.png", 10).unwrap_err().to_string();
        assert!(
            dotdot.contains("s3://b/pets/../secret.png: the key has an empty, `.` or `..` segment"),
            "{dotdot}"
        );
        let huge = path("cat/huge.png", u64::MAX).unwrap_err().to_string();
        assert!(huge.contains("over spec.limits.maxImageBytes"), "{huge}");
    }
}
