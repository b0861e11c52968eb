//! All four layouts imported end to end from a real HTTP server and a real S3-compatible
//! server (s3s-fs), through the `ocellus-dataset` binary as an import Job runs it.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

use ocellus_crds::dataset::DatasetStatus;
use support::fixtures::{self, tar_gz, zip};
use support::http_server::{Content, TestServer};
use support::s3s::{ACCESS_KEY, REGION, S3sFs, SECRET_KEY};

fn png(shade: u8) -> Vec<u8> {
    fixtures::image_bytes([shade, 255 - shade, 7], 5, 5, image::ImageFormat::Png)
}

fn class_folders_zip() -> Vec<u8> {
    let images: Vec<Vec<u8>> = (0..3).map(|i| png(i * 40)).collect();
    zip(&[("a/1.png", &images[0]), ("a/2.png", &images[1]), ("b/1.png", &images[2])])
}

fn archive_with_csv() -> Vec<u8> {
    let (x, y) = (png(1), png(2));
    tar_gz(&[
        ("set/img/x.png", &x),
        ("set/img/y.png", &y),
        ("set/meta.csv", b"picture,price\nimg/x.png,3.5\nimg/y.png,4\n"),
    ])
}

/// The four sources, by file name in the served folder / bucket.
struct Fixtures {
    files: HashMap<String, Vec<u8>>,
}

fn fixtures(local_images: &Path, image_urls: [String; 2]) -> Fixtures {
    std::fs::write(local_images.join("p.png"), png(9)).unwrap();
    std::fs::write(local_images.join("q.png"), png(10)).unwrap();
    let paths = format!(
        "path,label\n{},yes\n{},no\n",
        local_images.join("p.png").display(),
        local_images.join("q.png").display()
    );
    let urls = format!("url,label\n{},yes\n{},no\n", image_urls[0], image_urls[1]);
    let files = HashMap::from([
        ("pets.zip".to_owned(), class_folders_zip()),
        ("cars.tar.gz".to_owned(), archive_with_csv()),
        ("paths.csv".to_owned(), paths.into_bytes()),
        ("urls.csv".to_owned(), urls.into_bytes()),
    ]);
    Fixtures { files }
}

/// (file, expected rows, expected image column)
const CASES: [(&str, i64, &str); 4] = [
    ("pets.zip", 3, "image"),
    ("cars.tar.gz", 2, "picture"),
    ("paths.csv", 2, "path"),
    ("urls.csv", 2, "url"),
];

fn import(dir: &Path, name: &str, source: &str) -> (Output, Option<DatasetStatus>) {
    let manifest = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &manifest,
        format!("apiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {{name: {name}}}\nspec:\n  source: {source}\n"),
    )
    .unwrap();
    let out = dir.join("out");
    let output = Command::new(env!("CARGO_BIN_EXE_ocellus-dataset"))
        .args(["import", manifest.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let profile = std::fs::read_to_string(out.join(name).join("profile.json"))
        .ok()
        .map(|text| serde_json::from_str(&text).unwrap());
    (output, profile)
}

fn assert_imported(output: &Output, profile: Option<DatasetStatus>, rows: i64, column: &str) {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let profile = profile.expect("profile.json written");
    assert_eq!(profile.rows, Some(rows));
    assert_eq!(profile.image_columns, [column]);
    assert_eq!(profile.bad_images, Some(0));
}

#[test]
fn every_layout_imports_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let images = TestServer::start(Content {
        files: HashMap::from([("u1.png".to_owned(), png(20)), ("u2.png".to_owned(), png(30))]),
        ..Content::default()
    });
    let fixtures = fixtures(dir.path(), [images.url("/files/u1.png"), images.url("/files/u2.png")]);
    let server = TestServer::start(Content { files: fixtures.files, ..Content::default() });
    for (index, (file, rows, column)) in CASES.into_iter().enumerate() {
        let source = format!("{{http: {{url: '{}'}}}}", server.url(&format!("/files/{file}")));
        let (output, profile) = import(dir.path(), &format!("http-{index}"), &source);
        assert_imported(&output, profile, rows, column);
    }
    assert_eq!(images.requests("/files/u1.png"), 1);
    let (output, _) =
        import(dir.path(), "http-again", &format!("{{http: {{url: '{}'}}}}", server.url("/files/urls.csv")));
    assert!(output.status.success());
    assert_eq!(images.requests("/files/u1.png"), 1, "a re-import downloads no image twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_layout_imports_from_an_s3_compatible_store() {
    let dir = tempfile::tempdir().unwrap();
    let images = TestServer::start(Content {
        files: HashMap::from([("u1.png".to_owned(), png(20)), ("u2.png".to_owned(), png(30))]),
        ..Content::default()
    });
    let fixtures = fixtures(dir.path(), [images.url("/files/u1.png"), images.url("/files/u2.png")]);
    let s3 = S3sFs::start();
    s3.create_bucket("datasets");
    for (file, bytes) in fixtures.files {
        s3.put_object("datasets", &format!("in/{file}"), bytes).await;
    }
    for (index, (file, rows, column)) in CASES.into_iter().enumerate() {
        let source = format!("{{s3: {{uri: 's3://datasets/in/{file}', endpoint: '{}'}}}}", s3.endpoint);
        let (output, profile) =
            tokio::task::block_in_place(|| import(dir.path(), &format!("s3-{index}"), &source));
        assert_imported(&output, profile, rows, column);
    }

    let missing = format!("{{s3: {{uri: 's3://datasets/in/nope.zip', endpoint: '{}'}}}}", s3.endpoint);
    let (output, profile) = tokio::task::block_in_place(|| import(dir.path(), "s3-missing", &missing));
    assert_eq!(output.status.code(), Some(65), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not exist"));
    assert!(profile.is_none());
}
