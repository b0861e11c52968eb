//! The fetch layer against real servers on 127.0.0.1: tiny_http for HTTP, s3s-fs for S3.

mod support;

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use ocellus_crds::dataset::{DatasetSource, HttpSource, ImportLimits, S3Source};
use ocellus_dataset::Error;
use ocellus_dataset::error::{EXIT_BAD_INPUT, EXIT_SOURCE_UNREACHABLE};
use ocellus_dataset::fetch::http::{self, DownloadFailure, ImageDownloader};
use ocellus_dataset::fetch::s3::{self, S3Credentials};
use ocellus_dataset::fetch::{FetchOptions, fetch_source};
use sha2::{Digest, Sha256};
use support::http_server::{Content, FLAKY_FAILURES, TRICKLE_PAUSE, TRICKLE_PIECE, TestServer};
use support::s3s::{self as s3s_support, S3sFs};

const KIB: usize = 1024;

/// Fast retries, so the tests that exercise them stay quick.
fn options(max_bytes: u64) -> FetchOptions {
    FetchOptions {
        timeout: Duration::from_secs(5),
        max_bytes,
        retries: 3,
        initial_backoff: Duration::from_millis(10),
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime").block_on(future)
}

/// A real PNG whose pixels depend on `seed`, so every image differs.
fn png(seed: u8) -> Vec<u8> {
    let image = image::RgbImage::from_fn(24, 16, |x, y| image::Rgb([seed, (x * 10) as u8, (y * 15) as u8]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png).expect("encode a PNG");
    bytes.into_inner()
}

/// Bytes without short repeats, so a truncated or shifted copy never compares equal.
fn noise(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

fn server_with(files: &[(&str, Vec<u8>)]) -> TestServer {
    let mut content = Content { big: noise(256 * KIB), ..Content::default() };
    content.files.extend(files.iter().map(|(name, bytes)| (name.to_string(), bytes.clone())));
    content.files.insert("flaky.png".into(), png(99));
    TestServer::start(content)
}

fn download(url: &str, dest: &Path, options: &FetchOptions) -> ocellus_dataset::Result<u64> {
    let client = http::client().expect("an HTTP client");
    block_on(http::download(&client, url, dest, options))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The directory's entries: a failed download must leave neither `dest` nor a temp file.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read the directory")
        .map(|entry| entry.expect("an entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[track_caller]
fn assert_bad_input(error: &Error, needles: &[&str]) {
    assert!(matches!(error, Error::BadInput(_)), "expected bad input, got {error:?}");
    assert_eq!(error.exit_code(), EXIT_BAD_INPUT);
    assert_message(error, needles);
}

#[track_caller]
fn assert_unreachable(error: &Error, needles: &[&str]) {
    assert!(matches!(error, Error::SourceUnreachable(_)), "expected unreachable, got {error:?}");
    assert_eq!(error.exit_code(), EXIT_SOURCE_UNREACHABLE);
    assert_message(error, needles);
}

#[track_caller]
fn assert_message(error: &Error, needles: &[&str]) {
    let message = error.to_string();
    assert!(!message.contains('\n'), "message is not one line: {message:?}");
    for needle in needles {
        assert!(message.contains(needle), "{message:?} does not mention {needle:?}");
    }
}

// ---- HTTP ----------------------------------------------------------------------------------

#[test]
fn http_download_is_byte_identical_and_leaves_no_temp_file() {
    let cat = png(1);
    let server = server_with(&[("cat.png", cat.clone())]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("cat.png");

    let size = download(&server.url("/files/cat.png"), &dest, &options(1024 * KIB as u64)).unwrap();

    assert_eq!(size, cat.len() as u64);
    assert_eq!(std::fs::read(&dest).unwrap(), cat);
    assert_eq!(entries(dir.path()), ["cat.png"]);
    assert_eq!(server.requests("/files/cat.png"), 1);
}

#[test]
fn fetch_source_downloads_http_sources_by_file_name_and_skips_local_ones() {
    let archive = noise(100 * KIB);
    let server = server_with(&[("cars.tar.gz", archive.clone())]);
    let dir = tempfile::tempdir().unwrap();
    // The image cap is smaller than the archive: it must not apply to the source itself.
    let limits =
        ImportLimits { max_image_bytes: 1024, download_timeout_seconds: 5, ..ImportLimits::default() };
    let options = FetchOptions::from_limits(&limits);
    assert_eq!((options.timeout, options.max_bytes, options.retries), (Duration::from_secs(5), 1024, 3));
    assert_eq!(options.initial_backoff, Duration::from_millis(200));

    let http_source = DatasetSource {
        http: Some(HttpSource { url: server.url("/files/cars.tar.gz?token=abc") }),
        ..DatasetSource::default()
    };
    let path = fetch_source(&http_source, dir.path(), &options).unwrap().expect("a downloaded file");

    assert_eq!(path, dir.path().join("cars.tar.gz"));
    assert_eq!(std::fs::read(&path).unwrap(), archive);
    let local = DatasetSource { path: Some("/data/cars.zip".into()), ..DatasetSource::default() };
    assert_eq!(fetch_source(&local, dir.path(), &options).unwrap(), None);
}

#[test]
fn source_downloads_limit_each_wait_for_bytes_not_the_whole_download() {
    let server = server_with(&[]);
    let dir = tempfile::tempdir().unwrap();
    let options = FetchOptions { timeout: Duration::from_secs(1), retries: 0, ..options(1024 * KIB as u64) };
    let source = |path: &str| DatasetSource {
        http: Some(HttpSource { url: server.url(path) }),
        ..DatasetSource::default()
    };
    let expected_duration = TRICKLE_PAUSE * (256 * KIB / TRICKLE_PIECE) as u32;
    assert!(expected_duration > options.timeout * 3 / 2);

    // Longer than the timeout in all, but never idle for long: fine for a source...
    let path = fetch_source(&source("/trickle"), dir.path(), &options).unwrap().unwrap();
    assert_eq!(std::fs::read(path).unwrap(), noise(256 * KIB));
    // ...too slow for one image...
    let error = download(&server.url("/trickle"), &dir.path().join("img"), &options).unwrap_err();
    assert_unreachable(&error, &["timed out after 1 s"]);
    // ...and a source that sends nothing still fails.
    let error = fetch_source(&source("/slow"), dir.path(), &options).unwrap_err();
    assert_unreachable(&error, &[&server.url("/slow"), "stalled: nothing received for 1 s"]);
    assert_eq!(entries(dir.path()), ["trickle"]);
}

#[test]
fn http_404_is_bad_input_after_exactly_one_request() {
    let server = server_with(&[]);
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("/missing");

    let error = download(&url, &dir.path().join("x.png"), &options(1024)).unwrap_err();

    assert_bad_input(&error, &[&url, "HTTP 404 Not Found"]);
    assert_eq!(server.requests("/missing"), 1, "a 404 must not be retried");
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn http_timeout_is_unreachable_names_the_time_and_is_retried() {
    let server = server_with(&[]);
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("/slow");
    let options = FetchOptions { timeout: Duration::from_secs(1), retries: 1, ..options(1024) };

    let started = Instant::now();
    let error = download(&url, &dir.path().join("x.png"), &options).unwrap_err();

    assert_unreachable(&error, &[&url, "timed out after 1 s", "2 attempts", "downloadTimeoutSeconds"]);
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    assert_eq!(server.requests("/slow"), 2);
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn oversized_bodies_are_bad_input_with_or_without_content_length_and_leave_no_file() {
    let server = server_with(&[]);
    for path in ["/big", "/big-chunked"] {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("big.bin");
        let url = server.url(path);

        let error = download(&url, &dest, &options(64 * KIB as u64)).unwrap_err();

        assert_bad_input(&error, &[&url, "larger than the 65536-byte limit", "maxImageBytes"]);
        assert_eq!(server.requests(path), 1, "{path}: an oversized body must not be retried");
        assert!(entries(dir.path()).is_empty(), "{path} left {:?}", entries(dir.path()));

        // Exactly at the cap is allowed.
        let size = download(&url, &dest, &options(256 * KIB as u64)).unwrap();
        assert_eq!(size, 256 * KIB as u64, "{path}");
    }
}

#[test]
fn flaky_server_succeeds_after_retries() {
    let server = server_with(&[]);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("flaky.png");

    download(&server.url("/flaky"), &dest, &options(1024 * KIB as u64)).unwrap();

    assert_eq!(std::fs::read(&dest).unwrap(), png(99));
    assert_eq!(server.requests("/flaky"), FLAKY_FAILURES + 1);
}

#[test]
fn server_errors_are_unreachable_once_retries_are_spent() {
    let server = server_with(&[]);
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("/down");
    let options = FetchOptions { retries: 2, ..options(1024) };

    let error = download(&url, &dir.path().join("x.png"), &options).unwrap_err();

    assert_unreachable(&error, &[&url, "HTTP 503 Service Unavailable", "3 attempts"]);
    assert_eq!(server.requests("/down"), 3);
}

#[test]
fn image_downloader_keeps_order_reports_failures_and_caches_by_content() {
    let images: Vec<Vec<u8>> = (0..6).map(png).collect();
    let mut content =
        Content { big: noise(256 * KIB), file_delay: Duration::from_millis(150), ..Content::default() };
    for (i, bytes) in images.iter().enumerate() {
        content.files.insert(format!("{i}.png"), bytes.clone());
    }
    let server = TestServer::start(content);
    let image_url = |i: usize| server.url(&format!("/files/{i}.png"));
    let good: Vec<String> = (0..6).map(image_url).collect();
    // Failures in the middle, and image 0 twice: it is fetched once.
    let mut urls = good.clone();
    urls.insert(1, server.url("/missing"));
    urls.insert(4, server.url("/big-chunked"));
    urls.push(image_url(0));
    let cache = tempfile::tempdir().unwrap();
    let concurrency = 3;

    let downloader = ImageDownloader::new(cache.path(), options(64 * KIB as u64), concurrency).unwrap();
    let results = downloader.download_all(&urls);

    assert_eq!(results.len(), urls.len());
    let expected_image = [Some(0), None, Some(1), Some(2), None, Some(3), Some(4), Some(5), Some(0)];
    for ((result, expected), url) in results.iter().zip(expected_image).zip(&urls) {
        match (result, expected) {
            (Ok(path), Some(i)) => {
                assert_eq!(std::fs::read(path).unwrap(), images[i], "{url}");
                assert_eq!(*path, cache.path().join("blobs").join(sha256_hex(&images[i])));
                let index = cache.path().join("urls").join(sha256_hex(url.as_bytes()));
                assert_eq!(std::fs::read_to_string(index).unwrap(), sha256_hex(&images[i]));
            }
            (Err(_), None) => {}
            _ => panic!("{url}: unexpected {result:?}"),
        }
    }
    let failure = |url: String, reason: &str| Err(DownloadFailure { url, reason: reason.into() });
    assert_eq!(results[1], failure(server.url("/missing"), "HTTP 404 Not Found"));
    assert_eq!(results[4], failure(server.url("/big-chunked"), "larger than the 65536-byte limit"));
    assert_eq!(server.requests("/files/0.png"), 1, "a URL listed twice is fetched once");
    let in_flight = server.max_in_flight();
    assert!((2..=concurrency).contains(&in_flight), "{in_flight} requests in flight at most");

    // A fresh downloader over the same cache: no request at all for what is cached.
    let before = server.total_requests();
    let again = ImageDownloader::new(cache.path(), options(64 * KIB as u64), concurrency).unwrap();
    let cached = again.download_all(&good);
    assert_eq!(server.total_requests(), before, "a re-run must not request cached URLs");
    assert_eq!(cached, results.iter().filter(|r| r.is_ok()).take(6).cloned().collect::<Vec<_>>());
    // Failures are not cached: a re-run asks for them (and only them) again.
    again.download_all(&urls);
    assert_eq!(server.total_requests(), before + 2);
}

#[test]
fn image_downloader_reasons_for_timeouts_and_refused_connections() {
    let server = server_with(&[]);
    let closed = format!("http://127.0.0.1:{}/x.png", s3s_support::free_port());
    let urls = vec![server.url("/slow"), closed.clone(), "not a url".to_owned()];
    let cache = tempfile::tempdir().unwrap();
    let options = FetchOptions { timeout: Duration::from_millis(500), retries: 0, ..options(1024) };

    let results = ImageDownloader::new(cache.path(), options, 4).unwrap().download_all(&urls);

    let reasons: Vec<String> = results.into_iter().map(|r| r.expect_err("a failure").reason).collect();
    assert_eq!(reasons[0], "timed out after 500 ms");
    assert_eq!(reasons[1], "connection refused");
    assert!(reasons[2].starts_with("not a valid http(s) URL"), "{}", reasons[2]);
}

#[test]
fn credentials_in_urls_stay_out_of_messages() {
    let server = server_with(&[]);
    let url = server.url("/missing?X-Amz-Signature=s3cr3t").replace("http://", "http://user:pa55@");
    let dir = tempfile::tempdir().unwrap();

    let error = download(&url, &dir.path().join("x"), &options(1024)).unwrap_err();

    assert_bad_input(&error, &[&server.url("/missing?…")]);
    assert!(!error.to_string().contains("s3cr3t") && !error.to_string().contains("pa55"), "{error}");
}

// ---- S3 ------------------------------------------------------------------------------------

fn s3_source(server_endpoint: &str, uri: &str) -> S3Source {
    S3Source {
        uri: uri.into(),
        region: Some(s3s_support::REGION.into()),
        endpoint: Some(server_endpoint.into()),
        // Unset: path-style must follow from `endpoint`.
        force_path_style: None,
        credentials_secret_ref: None,
    }
}

fn test_credentials(secret: &str) -> S3Credentials {
    S3Credentials { access_key_id: s3s_support::ACCESS_KEY.into(), secret_access_key: secret.into() }
}

#[test]
fn s3_download_through_a_path_style_endpoint_is_byte_identical() {
    let server = S3sFs::start();
    server.create_bucket("datasets");
    // Large enough to arrive in many chunks.
    let archive = noise(3 * 1024 * KIB);
    block_on(server.put_object("datasets", "cars/train.tar.gz", archive.clone()));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("train.tar.gz");
    // A host name, not an IP: the SDK always uses path-style for IPs, so only a name shows
    // that path-style is the default with an endpoint (`datasets.localhost` does not resolve).
    let endpoint = server.endpoint.replace("127.0.0.1", "localhost");
    let source = s3_source(&endpoint, "s3://datasets/cars/train.tar.gz");

    let size =
        block_on(s3::download_object(&source, Some(&test_credentials(s3s_support::SECRET_KEY)), &dest))
            .unwrap();

    assert_eq!(size, archive.len() as u64);
    assert!(std::fs::read(&dest).unwrap() == archive, "the download differs from the object");
    assert_eq!(entries(dir.path()), ["train.tar.gz"]);
}

#[test]
fn s3_missing_object_or_bucket_is_bad_input() {
    let server = S3sFs::start();
    server.create_bucket("datasets");
    let credentials = test_credentials(s3s_support::SECRET_KEY);
    let dir = tempfile::tempdir().unwrap();

    for uri in ["s3://datasets/nothing-here.zip", "s3://no-such-bucket/x.zip"] {
        let source = s3_source(&server.endpoint, uri);
        let error = block_on(s3::download_object(&source, Some(&credentials), &dir.path().join("x.zip")))
            .unwrap_err();
        assert_bad_input(&error, &[&format!("{uri} does not exist; check spec.source.s3.uri")]);
    }
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn s3_wrong_secret_key_is_bad_input_about_credentials() {
    let server = S3sFs::start();
    server.create_bucket("datasets");
    block_on(server.put_object("datasets", "x.zip", noise(KIB)));
    let wrong_secret = "definitely-not-the-secret";
    let source = s3_source(&server.endpoint, "s3://datasets/x.zip");
    let dir = tempfile::tempdir().unwrap();

    let error = block_on(s3::download_object(
        &source,
        Some(&test_credentials(wrong_secret)),
        &dir.path().join("x.zip"),
    ))
    .unwrap_err();

    assert_bad_input(&error, &["credentials were rejected for s3://datasets/x.zip", "credentialsSecretRef"]);
    assert!(!error.to_string().contains(wrong_secret), "{error}");
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn s3_endpoint_with_nothing_listening_is_unreachable() {
    let endpoint = format!("http://127.0.0.1:{}", s3s_support::free_port());
    let source = s3_source(&endpoint, "s3://datasets/x.zip");
    let dir = tempfile::tempdir().unwrap();

    let error = block_on(s3::download_object(
        &source,
        Some(&test_credentials(s3s_support::SECRET_KEY)),
        &dir.path().join("x.zip"),
    ))
    .unwrap_err();

    assert_unreachable(&error, &["s3://datasets/x.zip", &endpoint]);
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn s3_uri_without_a_key_is_bad_input() {
    for uri in ["s3://datasets", "s3://datasets/", "https://datasets/x.zip", "s3:///x.zip"] {
        let error = s3::S3Location::parse(uri).unwrap_err();
        assert_bad_input(&error, &["is not of the form s3://bucket/key"]);
    }
    let location = s3::S3Location::parse("s3://datasets/cars/train.zip").unwrap();
    assert_eq!((location.bucket.as_str(), location.key.as_str()), ("datasets", "cars/train.zip"));
}
