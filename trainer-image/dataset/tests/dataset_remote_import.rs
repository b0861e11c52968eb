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

/// Split folders with class folders inside: 3 training and 2 test images.
fn split_folders_zip() -> Vec<u8> {
    let images: Vec<Vec<u8>> = (0..5).map(|i| png(i * 30)).collect();
    zip(&[
        ("pets/train/cat/1.png", &images[0]),
        ("pets/train/dog/2.png", &images[1]),
        ("pets/train/dog/3.png", &images[2]),
        ("pets/test/cat/4.png", &images[3]),
        ("pets/test/dog/5.png", &images[4]),
    ])
}

/// One archive, two tables: the training CSV at the top, the test CSV (gzipped) in a subfolder
/// with paths relative to the top.
fn two_tables_zip() -> Vec<u8> {
    let images: Vec<Vec<u8>> = (0..3).map(|i| png(i * 70)).collect();
    let mut test_csv = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut test_csv, b"file,label\nimg/c.png,1\n").unwrap();
    let test_csv = test_csv.finish().unwrap();
    zip(&[
        ("img/a.png", &images[0]),
        ("img/b.png", &images[1]),
        ("img/c.png", &images[2]),
        ("train.csv", b"file,label\nimg/a.png,0\nimg/b.png,1\n"),
        ("labels/test.csv.gz", &test_csv),
    ])
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
        ("splits.zip".to_owned(), split_folders_zip()),
        ("two-tables.zip".to_owned(), two_tables_zip()),
        ("pets-bytes.parquet".to_owned(), parquet_fixture("pets-bytes.parquet")),
    ]);
    Fixtures { files }
}

/// (file, more of the spec, expected rows, expected image column)
const CASES: [(&str, &str, i64, &str); 9] = [
    ("pets.zip", "", 3, "image"),
    ("cars.tar.gz", "", 2, "picture"),
    ("paths.csv", "", 2, "path"),
    ("urls.csv", "", 2, "url"),
    ("splits.zip", "splitFolder: train", 3, "image"),
    ("splits.zip", "splitFolder: test", 2, "image"),
    ("two-tables.zip", "table: train.csv", 2, "file"),
    ("two-tables.zip", "table: labels/test.csv.gz", 1, "file"),
    ("pets-bytes.parquet", "", 9, "image"),
];

/// A Parquet fixture written by pyarrow (tests/parquet/make.py).
fn parquet_fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parquet").join(name)).unwrap()
}

fn import(dir: &Path, name: &str, source: &str, more: &str) -> (Output, Option<DatasetStatus>) {
    let manifest = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {{name: {name}}}\nspec:\n  source: {source}\n  {more}\n"
        ),
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
    for (index, (file, more, rows, column)) in CASES.into_iter().enumerate() {
        let source = format!("{{http: {{url: '{}'}}}}", server.url(&format!("/files/{file}")));
        let (output, profile) = import(dir.path(), &format!("http-{index}"), &source, more);
        assert_imported(&output, profile, rows, column);
    }
    assert_eq!(images.requests("/files/u1.png"), 1);
    let (output, _) = import(
        dir.path(),
        "http-again",
        &format!("{{http: {{url: '{}'}}}}", server.url("/files/urls.csv")),
        "",
    );
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
    for (index, (file, more, rows, column)) in CASES.into_iter().enumerate() {
        let source = format!("{{s3: {{uri: 's3://datasets/in/{file}', endpoint: '{}'}}}}", s3.endpoint);
        let (output, profile) =
            tokio::task::block_in_place(|| import(dir.path(), &format!("s3-{index}"), &source, more));
        assert_imported(&output, profile, rows, column);
    }

    let missing = format!("{{s3: {{uri: 's3://datasets/in/nope.zip', endpoint: '{}'}}}}", s3.endpoint);
    let (output, profile) = tokio::task::block_in_place(|| import(dir.path(), "s3-missing", &missing, ""));
    assert_eq!(output.status.code(), Some(65), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not exist"));
    assert!(profile.is_none());
}

/// A prefix of class folders, as images usually sit in a bucket: listed, fetched, labelled by
/// folder; a re-import fetches nothing, and a changed object is fetched again.
#[tokio::test(flavor = "multi_thread")]
async fn an_s3_prefix_of_class_folders_imports_and_reimports_without_a_download() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3sFs::start();
    s3.create_bucket("photos");
    for (key, shade) in [("pets/cat/1.png", 10), ("pets/cat/2.png", 20), ("pets/dog/3.png", 30)] {
        s3.put_object("photos", key, png(shade)).await;
    }
    s3.put_object("photos", "pets/dog/.DS_Store", b"junk".to_vec()).await;
    s3.put_object("photos", "pets/README.md", b"# pets".to_vec()).await;
    s3.put_object("photos", "elsewhere/cat/9.png", png(90)).await;
    let source = format!("{{s3: {{uri: 's3://photos/pets/', endpoint: '{}'}}}}", s3.endpoint);
    let stderr = |output: &Output| String::from_utf8_lossy(&output.stderr).into_owned();

    let (output, profile) = tokio::task::block_in_place(|| import(dir.path(), "pets", &source, ""));
    assert_imported(&output, profile.clone(), 3, "image");
    let classes: Vec<_> = profile.unwrap().classes.iter().map(|c| (c.name.clone(), c.count)).collect();
    assert_eq!(classes, [("cat".to_owned(), 2), ("dog".to_owned(), 1)]);
    assert!(stderr(&output).contains("3 of 3 objects fetched, 0 unchanged"), "{}", stderr(&output));

    let (output, profile) = tokio::task::block_in_place(|| import(dir.path(), "pets", &source, ""));
    assert_imported(&output, profile, 3, "image");
    assert!(stderr(&output).contains("0 of 3 objects fetched, 3 unchanged"), "{}", stderr(&output));

    // Larger, so it differs in size too (s3s-fs lists modification times, not ETags).
    let changed = fixtures::image_bytes([31, 224, 7], 9, 9, image::ImageFormat::Png);
    s3.put_object("photos", "pets/dog/3.png", changed).await;
    let (output, _) = tokio::task::block_in_place(|| import(dir.path(), "pets", &source, ""));
    assert!(stderr(&output).contains("1 of 3 objects fetched, 2 unchanged"), "{}", stderr(&output));

    // A prefix with a CSV beside its images reads as an archive with a CSV does.
    s3.put_object("photos", "table/img/a.png", png(40)).await;
    s3.put_object("photos", "table/img/b.png", png(50)).await;
    s3.put_object("photos", "table/prices.csv", b"photo,price\nimg/a.png,1.5\nimg/b.png,2\n".to_vec()).await;
    let table = format!("{{s3: {{uri: 's3://photos/table/', endpoint: '{}'}}}}", s3.endpoint);
    let (output, profile) = tokio::task::block_in_place(|| import(dir.path(), "prices", &table, ""));
    assert_imported(&output, profile, 2, "photo");
    // So does a Parquet table beside them.
    for i in 0..4u8 {
        s3.put_object("photos", &format!("cars/photos/car{i}.png"), png(100 + i)).await;
    }
    s3.put_object("photos", "cars/cars.parquet", parquet_fixture("photo-paths.parquet")).await;
    let cars = format!("{{s3: {{uri: 's3://photos/cars/', endpoint: '{}'}}}}", s3.endpoint);
    let (output, profile) = tokio::task::block_in_place(|| import(dir.path(), "cars", &cars, ""));
    assert_imported(&output, profile, 4, "photo");

    // Errors name the bucket's paths, and an empty prefix says what to check.
    s3.put_object("photos", "mixed/cat.png", png(60)).await;
    s3.put_object("photos", "mixed/dog/1.png", png(70)).await;
    let mixed = format!("{{s3: {{uri: 's3://photos/mixed/', endpoint: '{}'}}}}", s3.endpoint);
    let (output, _) = tokio::task::block_in_place(|| import(dir.path(), "mixed", &mixed, ""));
    assert_eq!(output.status.code(), Some(65), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("s3://photos/mixed: image `cat.png` sits at the top level"),
        "{}",
        stderr(&output)
    );
    let empty = format!("{{s3: {{uri: 's3://photos/nothing/', endpoint: '{}'}}}}", s3.endpoint);
    let (output, _) = tokio::task::block_in_place(|| import(dir.path(), "empty", &empty, ""));
    assert_eq!(output.status.code(), Some(65), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("s3://photos/nothing/ holds no images and no CSV or Parquet table"),
        "{}",
        stderr(&output)
    );
}

/// A real folder index: Python's `http.server`, as `python3 -m http.server` serves a folder.
struct PythonHttpServer {
    child: std::process::Child,
    port: u16,
}

impl PythonHttpServer {
    fn start(root: &Path) -> Self {
        let port = support::s3s::free_port();
        let mut child = Command::new("python3")
            .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"])
            .arg(root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs (make setup installs it)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Self { child, port };
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("python3 -m http.server did not listen on {port}");
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for PythonHttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP URL ending in `/` is a folder: its index pages are followed below it, class folders
/// or a table beside its images read as in an archive, junk skipped, and names decoded.
#[test]
fn an_http_folder_with_an_index_imports_like_an_archive() {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    for (path, bytes) in [
        ("pets/cat/1.png", png(10)),
        ("pets/cat/my photo 2.png", png(20)),
        ("pets/dog/3.png", png(30)),
        ("pets/dog/.hidden.png", png(40)),
        ("pets/README.md", b"# pets".to_vec()),
        ("outside/cat/9.png", png(90)),
        ("cars/img/a b.png", png(50)),
        ("cars/img/c.png", png(60)),
        ("cars/prices.csv", b"photo,price\nimg/a b.png,1.5\nimg/c.png,2\n".to_vec()),
        ("empty/README.md", b"nothing here".to_vec()),
    ] {
        let file = www.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, bytes).unwrap();
    }
    let server = PythonHttpServer::start(&www);
    let source = |path: &str| format!("{{http: {{url: '{}'}}}}", server.url(path));
    let stderr = |output: &Output| String::from_utf8_lossy(&output.stderr).into_owned();

    let (output, profile) = import(dir.path(), "pets", &source("/pets/"), "");
    assert_imported(&output, profile.clone(), 3, "image");
    let classes: Vec<_> = profile.unwrap().classes.iter().map(|c| (c.name.clone(), c.count)).collect();
    assert_eq!(classes, [("cat".to_owned(), 2), ("dog".to_owned(), 1)]);
    assert!(stderr(&output).contains("3 files fetched from 3 index pages"), "{}", stderr(&output));

    let (output, profile) = import(dir.path(), "cars", &source("/cars/"), "");
    assert_imported(&output, profile, 2, "photo");

    let (output, profile) = import(dir.path(), "empty", &source("/empty/"), "");
    assert_eq!(output.status.code(), Some(65), "{}", stderr(&output));
    assert!(stderr(&output).contains("/empty/: its index pages list no images and no CSV or Parquet table"));
    assert!(profile.is_none());
    let (output, _) = import(dir.path(), "gone", &source("/gone/"), "");
    assert_eq!(output.status.code(), Some(65), "{}", stderr(&output));
}
