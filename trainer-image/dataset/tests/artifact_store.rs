//! The S3 artifact store against a real S3-compatible server (s3s-fs): folders round-trip,
//! the marker goes last, unchanged objects are skipped, multipart uploads, exact deletes,
//! anonymous access, and `ocellus-dataset import --out s3://…`.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use ocellus_crds::contract::location::S3Prefix;
use ocellus_dataset::normalized::NormalizedDataset;
use ocellus_dataset::store::{Auth, ClientConfig, MULTIPART_PART_SIZE, Store, Transfer};
use support::s3s::{ACCESS_KEY, REGION, S3sFs, SECRET_KEY};

fn store(server: &S3sFs) -> Store {
    Store::connect(&ClientConfig {
        endpoint: Some(server.endpoint.clone()),
        force_path_style: None,
        region: Some(REGION.into()),
        auth: Auth::Static { access_key_id: ACCESS_KEY.into(), secret_access_key: SECRET_KEY.into() },
    })
    .unwrap()
}

fn prefix(uri: &str) -> S3Prefix {
    S3Prefix::parse(uri).unwrap()
}

/// Every file below `root` (relative path → content).
fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut folders = vec![root.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else {
                let relative = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                found.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    found
}

fn write(root: &Path, relative: &str, bytes: &[u8]) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A run folder as `ocellus run` leaves it, with scratch space that is never uploaded.
fn run_folder(root: &Path) {
    write(root, "run.json", b"{\"trials\": []}");
    write(root, "report.html", b"<html></html>");
    write(root, "predictions.csv", b"prediction\n1\n");
    write(root, "scoring/bundle.json", b"{\"files\": {}}");
    write(root, "scoring/tabular.json", b"{}");
    write(root, "trials/0/epoch-0001/model.pt", &[7; 1000]);
    write(root, ".cache/images/ab/x.png", b"cached");
    write(root, ".work/scratch", b"scratch");
    write(root, "result.json", b"{\"pipeline\": \"Embeddings\"}");
}

fn without_scratch(mut files: BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    files.retain(|name, _| !name.starts_with(".cache") && !name.starts_with(".work"));
    files
}

#[test]
fn a_folder_round_trips_with_its_marker_last_and_unchanged_objects_skipped() {
    let server = S3sFs::start();
    server.create_bucket("art");
    let store = store(&server);
    let local = tempfile::tempdir().unwrap();
    run_folder(local.path());
    let remote = prefix("s3://art/experiments/ns/exp");

    let first = store.upload_folder(local.path(), &remote, Some("result.json")).unwrap();
    assert_eq!(first, Transfer { uploaded: 7, unchanged: 0, deleted: 0 });
    // s3s-fs keeps one file per object: the marker's was written after every other one.
    let objects = files(&server.bucket_dir("art"));
    assert!(!objects.keys().any(|k| k.contains(".cache") || k.contains(".work")), "{objects:?}");
    let modified = |key: &str| {
        std::fs::metadata(server.bucket_dir("art").join("experiments/ns/exp").join(key))
            .unwrap()
            .modified()
            .unwrap()
    };
    let marker = modified("result.json");
    for key in
        ["run.json", "report.html", "predictions.csv", "scoring/bundle.json", "trials/0/epoch-0001/model.pt"]
    {
        assert!(modified(key) <= marker, "{key} was uploaded after the marker");
    }
    assert!(modified("scoring/tabular.json") <= modified("scoring/bundle.json"), "nested marker last");

    let cache = tempfile::tempdir().unwrap();
    let downloaded = store.download_folder(&remote, Some("result.json"), cache.path()).unwrap();
    assert_eq!(files(&downloaded), without_scratch(files(local.path())));
    // A second open downloads nothing: the same folder, untouched.
    let stamp = std::fs::metadata(downloaded.join("run.json")).unwrap().modified().unwrap();
    assert_eq!(store.download_folder(&remote, Some("result.json"), cache.path()).unwrap(), downloaded);
    assert_eq!(std::fs::metadata(downloaded.join("run.json")).unwrap().modified().unwrap(), stamp);

    // Publishing again uploads nothing; a changed file goes up with the marker after it.
    let again = store.upload_folder(local.path(), &remote, Some("result.json")).unwrap();
    assert_eq!(again, Transfer { uploaded: 0, unchanged: 7, deleted: 0 });
    write(local.path(), "report.html", b"<html>v2</html>");
    std::fs::remove_file(local.path().join("predictions.csv")).unwrap();
    let changed = store.upload_folder(local.path(), &remote, Some("result.json")).unwrap();
    assert_eq!(changed, Transfer { uploaded: 2, unchanged: 4, deleted: 1 });
    let fresh = store.download_folder(&remote, Some("result.json"), cache.path()).unwrap();
    assert_eq!(files(&fresh), without_scratch(files(local.path())));
}

#[test]
fn a_folder_without_its_marker_is_refused_and_state_downloads_without_one() {
    let server = S3sFs::start();
    server.create_bucket("art");
    let store = store(&server);
    let local = tempfile::tempdir().unwrap();
    run_folder(local.path());
    std::fs::remove_file(local.path().join("result.json")).unwrap();
    let remote = prefix("s3://art/experiments/ns/killed");
    // What a pod killed before the end leaves: everything but the marker.
    store.upload_folder(local.path(), &remote, None).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let error = store.download_folder(&remote, Some("result.json"), cache.path()).unwrap_err().to_string();
    assert!(
        error.contains("s3://art/experiments/ns/killed is not a complete Ocellus folder (no result.json)")
            && error.contains("did not finish"),
        "{error}"
    );
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0, "nothing left in the cache");
    let error = store.upload_folder(local.path(), &remote, Some("result.json")).unwrap_err().to_string();
    assert!(error.contains("no result.json"), "{error}");

    // The trials state a restarted pod resumes from needs no marker.
    let resumed = tempfile::tempdir().unwrap();
    assert_eq!(store.download_into(&remote.join("trials").unwrap(), resumed.path()).unwrap(), 1);
    assert_eq!(std::fs::read(resumed.path().join("0/epoch-0001/model.pt")).unwrap(), vec![7; 1000]);
}

/// The mirror of a search's `trials/` while it runs: each pass leaves the store a trial whose
/// state names a checkpoint it has, the state uploaded after it, superseded checkpoints gone.
#[test]
fn a_mirrored_trial_state_never_names_a_checkpoint_the_store_lacks() {
    let server = S3sFs::start();
    server.create_bucket("art");
    let store = store(&server);
    let stage = tempfile::tempdir().unwrap();
    let trials = stage.path().join("trials");
    let snapshot = stage.path().join(".work/trials-mirror");
    let remote = prefix("s3://art/experiments/ns/search/trials");
    let remote_dir = server.bucket_dir("art").join("experiments/ns/search/trials");
    let state = |epoch: u32| format!("{{\"checkpoint\": \"epoch-{epoch:04}\", \"epochsDone\": {epoch}}}");

    write(&trials, "search.json", b"{\"secondsSpent\": 3}");
    write(&trials, "0000/epoch-0001/model.pt", &[1; 500]);
    write(&trials, "0000/state.json", state(1).as_bytes());
    store.mirror_folder(&trials, &remote, &snapshot).unwrap();
    assert!(!snapshot.exists(), "the snapshot goes after each pass");
    assert_eq!(files(&remote_dir), files(&trials));

    // The next epoch: a new checkpoint, the state naming it, the old checkpoint removed.
    write(&trials, "0000/epoch-0002/model.pt", &[2; 500]);
    write(&trials, "0000/state.json", state(2).as_bytes());
    std::fs::remove_dir_all(trials.join("0000/epoch-0001")).unwrap();
    let transfer = store.mirror_folder(&trials, &remote, &snapshot).unwrap();
    assert_eq!(transfer, Transfer { uploaded: 2, unchanged: 1, deleted: 1 });
    assert_eq!(files(&remote_dir), files(&trials));
    let modified = |key: &str| std::fs::metadata(remote_dir.join(key)).unwrap().modified().unwrap();
    assert!(modified("0000/epoch-0002/model.pt") <= modified("0000/state.json"), "the state went up last");
    assert!(trials.join("0000/epoch-0002/model.pt").is_file(), "the mirror leaves the search's files alone");
}

#[test]
fn files_above_the_part_size_go_up_in_parts_and_come_back_whole() {
    let server = S3sFs::start();
    server.create_bucket("art");
    let store = store(&server);
    let local = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..MULTIPART_PART_SIZE as usize + 123_457).map(|i| (i * 31 % 251) as u8).collect();
    write(local.path(), "images/big.bin", &big);
    write(local.path(), "dataset.json", b"{}");
    let remote = prefix("s3://art/datasets/ns/big");
    store.upload_folder(local.path(), &remote, Some("dataset.json")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let downloaded = store.download_folder(&remote, Some("dataset.json"), cache.path()).unwrap();
    assert!(std::fs::read(downloaded.join("images/big.bin")).unwrap() == big, "multipart content differs");
    // Its sha256 travelled as metadata, so publishing again skips it.
    let again = store.upload_folder(local.path(), &remote, Some("dataset.json")).unwrap();
    assert_eq!(again.uploaded, 0);
}

#[test]
fn delete_removes_exactly_ocellus_entries_and_refuses_a_prefix_with_anything_else() {
    let server = S3sFs::start();
    server.create_bucket("art");
    let local = tempfile::tempdir().unwrap();
    run_folder(local.path());
    let store = store(&server);
    for name in ["exp", "exp-2", "mixed"] {
        let remote = prefix(&format!("s3://art/experiments/ns/{name}"));
        store.upload_folder(local.path(), &remote, Some("result.json")).unwrap();
    }
    // An object someone else put there (s3s-fs serves the files of its folders).
    std::fs::write(server.bucket_dir("art").join("experiments/ns/mixed/thesis.tex"), "mine").unwrap();
    let count = || files(&server.bucket_dir("art")).len();
    let before = count();

    let mixed = prefix("s3://art/experiments/ns/mixed");
    let error = store.delete_ocellus_folder(&mixed).unwrap_err().to_string();
    assert!(error.contains("thesis.tex") && error.contains("nothing was deleted"), "{error}");
    assert_eq!(count(), before, "a refused delete deletes nothing");

    let exp = prefix("s3://art/experiments/ns/exp");
    assert_eq!(store.delete_ocellus_folder(&exp).unwrap(), 7);
    assert_eq!(count(), before - 7);
    let left = files(&server.bucket_dir("art"));
    assert!(!left.keys().any(|k| k.starts_with("experiments/ns/exp/")), "{left:?}");
    assert!(left.contains_key("experiments/ns/exp-2/result.json"), "a sibling with a longer name stays");
    assert_eq!(store.delete_ocellus_folder(&exp).unwrap(), 0, "idempotent");
    let root = store.delete_ocellus_folder(&prefix("s3://art")).unwrap_err();
    assert!(root.to_string().contains("not a bucket"), "{root}");
}

#[test]
fn anonymous_requests_work_where_the_server_allows_them() {
    let server = S3sFs::start_anonymous();
    server.create_bucket("public");
    let store = Store::connect(&ClientConfig {
        endpoint: Some(server.endpoint.clone()),
        force_path_style: None,
        region: Some(REGION.into()),
        auth: Auth::Anonymous,
    })
    .unwrap();
    let local = tempfile::tempdir().unwrap();
    run_folder(local.path());
    let remote = prefix("s3://public/runs/a");
    store.upload_folder(local.path(), &remote, Some("result.json")).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let downloaded = store.download_folder(&remote, Some("result.json"), cache.path()).unwrap();
    assert_eq!(files(&downloaded), without_scratch(files(local.path())));
}

/// `ocellus-dataset import` as an import pod runs it: credentials and the store's endpoint
/// from the environment, with `AWS_ENDPOINT_URL_S3` pointing nowhere (the source client must
/// use only its spec's endpoint, the store only `OCELLUS_S3_ENDPOINT`).
fn import(server: &S3sFs, dir: &Path, manifest: &str, out: &str, credentials: bool) -> std::process::Output {
    let file = dir.join("datasets.yaml");
    std::fs::write(&file, manifest).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ocellus-dataset"));
    command
        .args(["import", file.to_str().unwrap(), "--out", out])
        .env("OCELLUS_S3_ENDPOINT", &server.endpoint)
        .env("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("no-aws-credentials"))
        .env("TMPDIR", dir)
        .env("HOME", dir)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("OCELLUS_CACHE_DIR");
    if credentials {
        command.env("AWS_ACCESS_KEY_ID", ACCESS_KEY).env("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    }
    command.output().unwrap()
}

fn dataset_manifest(images: &Path, endpoint: &str) -> String {
    for (name, shade) in [("a.png", 10u8), ("b.png", 200)] {
        let png = support::fixtures::image_bytes([shade, 3, 4], 5, 5, image::ImageFormat::Png);
        std::fs::write(images.join(name), png).unwrap();
    }
    let csv = format!("image,label\n{0}/a.png,dark\n{0}/b.png,light\n", images.display());
    std::fs::write(images.join("rows.csv"), csv).unwrap();
    format!(
        "apiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {{name: local, namespace: ns}}\n\
         spec:\n  source: {{path: '{}'}}\n---\n\
         apiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {{name: remote, namespace: ns}}\n\
         spec:\n  source: {{s3: {{uri: 's3://sources/rows.zip', endpoint: '{endpoint}'}}}}\n",
        images.join("rows.csv").display()
    )
}

fn rows_zip(images: &Path) -> Vec<u8> {
    let (a, b) = (std::fs::read(images.join("a.png")).unwrap(), std::fs::read(images.join("b.png")).unwrap());
    support::fixtures::zip(&[("dark/a.png", &a), ("light/b.png", &b)])
}

#[test]
fn an_import_to_s3_leaves_complete_normalized_copies_that_open_from_their_location() {
    let server = S3sFs::start();
    server.create_bucket("art");
    server.create_bucket("sources");
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset_manifest(dir.path(), &server.endpoint);
    std::fs::write(server.bucket_dir("sources").join("rows.zip"), rows_zip(dir.path())).unwrap();
    let output = import(&server, dir.path(), &manifest, "s3://art/datasets/ns", true);
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for name in ["local", "remote"] {
        let location = format!("s3://art/datasets/ns/{name}");
        assert!(stdout.contains(&format!("-> {location}\n")), "{stdout}");
        let cache = dir.path().join("cache");
        let opened =
            store(&server).download_folder(&prefix(&location), Some("dataset.json"), &cache).unwrap();
        let dataset = NormalizedDataset::open(&opened).unwrap();
        assert_eq!(dataset.meta.rows, 2);
        assert_eq!(dataset.profile().unwrap().location.as_deref(), Some(location.as_str()));
        assert_eq!(dataset.rows().unwrap().len(), 2);
    }
}

/// s3s-fs without credentials accepts unsigned requests, as a public bucket does: the source
/// client and the store client both fall back to them when no credentials are configured.
#[test]
fn without_credentials_both_clients_go_anonymous() {
    let server = S3sFs::start_anonymous();
    server.create_bucket("art");
    server.create_bucket("sources");
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset_manifest(dir.path(), &server.endpoint);
    std::fs::write(server.bucket_dir("sources").join("rows.zip"), rows_zip(dir.path())).unwrap();
    let output = import(&server, dir.path(), &manifest, "s3://art/datasets/ns", false);
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(server.bucket_dir("art").join("datasets/ns/remote/dataset.json").is_file());
}
