//! `ocellus` against a real S3-compatible server (s3s-fs, from `make tools`), as pods run it
//! with `OCELLUS_ARTIFACTS=s3://…`: an import to S3, a run that opens the Datasets from their
//! `s3://` locations and publishes its folder there, backbones read from S3 and checked,
//! `predict --bundle s3://…`, and `artifacts delete s3://…`.

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ocellus_crds::ExperimentStatus;
use ocellus_trainer::error::EXIT_BAD_INPUT;

const ACCESS_KEY: &str = "ocellus-test-access";
const SECRET_KEY: &str = "ocellus-test-secret-0123456789";

/// s3s-fs on a free loopback port, storing bucket `b`'s object `k` as the file `<data>/b/k`.
struct S3sFs {
    child: Child,
    endpoint: String,
    dir: tempfile::TempDir,
}

impl S3sFs {
    fn start() -> Self {
        let binary = std::env::var_os("OCELLUS_S3S_FS")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo().join(".tools/bin/s3s-fs"));
        assert!(binary.is_file(), "s3s-fs is not installed at {}; run `make tools`", binary.display());
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
        let child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen on {address}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, endpoint: format!("http://{address}"), dir }
    }

    fn bucket(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join("data").join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ocellus` as a trainer pod runs it against the store.
fn ocellus_s3(server: &S3sFs, home: &Path, backbones: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ocellus"))
        .args(args)
        .current_dir(repo())
        .env("OCELLUS_BACKBONES", backbones)
        .env("OCELLUS_S3_ENDPOINT", &server.endpoint)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("TMPDIR", home)
        .env("HOME", home)
        .env_remove("OCELLUS_CACHE_DIR")
        .output()
        .unwrap()
}

/// Every file below `root`, relative.
fn files(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut folders = vec![root.to_owned()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else {
                found.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    found.sort();
    found
}

/// Copies the test backbone into the store with a `SHA256SUMS` file (`bad`: one wrong line).
fn upload_backbones(bucket: &Path, prefix: &str, bad: bool) {
    let source = repo().join("backbones/efficientnet_lite0");
    let target = bucket.join(prefix).join("efficientnet_lite0");
    std::fs::create_dir_all(&target).unwrap();
    let mut sums = String::new();
    // Every file `make backbones` wrote beside the manifest (model.pt, inference.pt): the
    // manifest names them, so a store missing one is an incomplete backbone. (`reference/` holds
    // the conversion's check data, which trainers do not read.)
    let mut names: Vec<String> = std::fs::read_dir(&source)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in &names {
        let name = name.as_str();
        std::fs::copy(source.join(name), target.join(name)).unwrap();
        let sha = ocellus_dataset::digest::sha256_file(&target.join(name)).unwrap();
        let sha = if bad && name == "model.pt" { "0".repeat(64) } else { sha };
        sums.push_str(&format!("{sha}  efficientnet_lite0/{name}\n"));
    }
    std::fs::write(bucket.join(prefix).join("SHA256SUMS"), sums).unwrap();
}

#[test]
fn a_run_reads_and_writes_an_s3_store_and_artifacts_delete_empties_it() {
    let server = S3sFs::start();
    let bucket = server.bucket("art");
    upload_backbones(&bucket, "backbones", false);
    upload_backbones(&bucket, "bad-backbones", true);
    let home = tempfile::tempdir().unwrap();

    // A tampered backbone is refused before anything runs.
    let output = ocellus_s3(&server, home.path(), "s3://art/bad-backbones", &["backbone", "list"]);
    assert_eq!(output.status.code(), Some(EXIT_BAD_INPUT), "{}", text(&output));
    assert!(text(&output).contains("SHA256SUMS says"), "{}", text(&output));

    // The import pod: Datasets into s3://art/datasets/ns/<name>.
    let price = |i: usize| if i.is_multiple_of(2) { 1000 + (i * 37) % 200 } else { 5000 + (i * 53) % 200 };
    let tiny = Tiny::new(24, |i| format!("{},{}", Tiny::photo(i), price(i)), "photo,price");
    let datasets = "apiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {name: tiny, namespace: ns}\nspec:\n  source: {path: table.csv}\n  format: CsvPaths\n---\n\
         apiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {name: tiny-train, namespace: ns}\nspec:\n  source:\n    split: {datasetRef: {name: tiny}, percent: 75, part: First, seed: 3}\n---\n\
         apiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {name: tiny-test, namespace: ns}\nspec:\n  source:\n    split: {datasetRef: {name: tiny}, percent: 75, part: Rest, seed: 3}\n";
    let import_file = tiny.dir.path().join("datasets.yaml");
    std::fs::write(&import_file, datasets).unwrap();
    let output = ocellus_s3(
        &server,
        home.path(),
        "s3://art/backbones",
        &["dataset", "import", import_file.to_str().unwrap(), "--out", "s3://art/datasets/ns"],
    );
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("-> s3://art/datasets/ns/tiny-test\n"), "{}", text(&output));

    // The training pod: the Datasets with their status, as the operator hands them over.
    let with_status = |name: &str| format!("status: {{location: 's3://art/datasets/ns/{name}'}}\n");
    let manifest = format!(
        "{}---\napiVersion: ocellus.dev/v1alpha1\nkind: Experiment\nmetadata: {{name: tiny, namespace: ns}}\nspec:\n  datasetRef: {{name: tiny-train}}\n  testDatasetRef: {{name: tiny-test}}\n  target: price\n  task: Regression\n  pipeline: Embeddings\n  embeddings:\n    architectures: [efficientnet_lite0]\n    dimensions: [10]\n",
        datasets
            .split("---\n")
            .skip(1)
            .zip(["tiny-train", "tiny-test"])
            .map(|(document, name)| format!("{document}{}", with_status(name)))
            .collect::<Vec<_>>()
            .join("---\n")
    );
    let run_file = tiny.dir.path().join("experiment.yaml");
    std::fs::write(&run_file, manifest).unwrap();
    // The source table is gone: the run must read the imported copies, not import again.
    std::fs::remove_file(tiny.dir.path().join("table.csv")).unwrap();
    let out = "s3://art/experiments/ns/tiny";
    let output = ocellus_s3(
        &server,
        home.path(),
        "s3://art/backbones",
        &["run", run_file.to_str().unwrap(), "--out", out, "--gbm-seconds", "2", "--cpu"],
    );
    assert!(output.status.success(), "{}", text(&output));

    let folder = bucket.join("experiments/ns/tiny");
    let written = files(&folder);
    for name in ["result.json", "run.json", "report.html", "predictions.csv", "scoring/bundle.json"] {
        assert!(written.iter().any(|f| f == name), "no {name} in {written:?}");
    }
    assert!(!written.iter().any(|f| f.starts_with("datasets/") || f.starts_with(".cache")), "{written:?}");
    let status: ExperimentStatus =
        serde_json::from_str(&std::fs::read_to_string(folder.join("result.json")).unwrap()).unwrap();
    let artifacts = status.artifacts.unwrap();
    assert_eq!(artifacts.location.as_deref(), Some(out));
    assert_eq!(artifacts.scoring_bundle, Some(format!("{out}/scoring")));
    assert_eq!(artifacts.predictions, Some(format!("{out}/predictions.csv")));
    assert_eq!(artifacts.report, Some(format!("{out}/report.html")));
    assert!(
        !home.path().join("ocellus-stage/run").read_dir().unwrap().any(|_| true),
        "the stage is cleaned up"
    );

    // `predict --bundle s3://…` reproduces the run's test predictions.
    let rows = tiny.dir.path().join("test-rows.csv");
    rows_as_csv(&bucket.join("datasets/ns/tiny-test"), &rows, false);
    let again = tiny.dir.path().join("again.csv");
    let bundle = format!("{out}/scoring");
    let args: [&str; 8] = [
        "predict",
        "--bundle",
        &bundle,
        "--input",
        rows.to_str().unwrap(),
        "--output",
        again.to_str().unwrap(),
        "--cpu",
    ];
    let output = ocellus_s3(&server, home.path(), "s3://art/backbones", &args);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        std::fs::read_to_string(&again).unwrap(),
        std::fs::read_to_string(folder.join("predictions.csv")).unwrap()
    );

    // The cleanup Job.
    let output = ocellus_s3(&server, home.path(), "s3://art/backbones", &["artifacts", "delete", out]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(files(&folder), Vec::<String>::new());
    assert!(!files(&bucket.join("datasets/ns")).is_empty(), "only the experiment's folder is deleted");
    let output = ocellus_s3(&server, home.path(), "s3://art/backbones", &["artifacts", "delete", out]);
    assert!(output.status.success() && text(&output).contains("already gone"), "{}", text(&output));
}
