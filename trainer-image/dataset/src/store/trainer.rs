//! What `ocellus` and `ocellus-dataset` do with `s3://` locations, called from a few lines
//! in the commands:
//!
//! - `run --out s3://…`: the run works in a local stage folder
//!   (`$TMPDIR/ocellus-stage/run/<digest of the URI>`, so a restarted pod finds it again),
//!   resumes from the `trials/` state already in the store, mirrors `trials/` to the store
//!   every [`MIRROR_INTERVAL`](super::MIRROR_INTERVAL), and publishes the whole folder at the
//!   end with `result.json` last ([`StagedRun`]).
//! - `dataset import --out s3://…`: imports into a stage folder, then uploads each Dataset's
//!   normalized copy to `<out>/<name>/` with `dataset.json` last ([`StagedImport`]).
//! - a Dataset `status.location`, a `--bundle` or `--backbones` in S3: downloaded once into
//!   the cache ([`cache_base`]) and opened there.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;

use ocellus_crds::ExperimentStatus;
use ocellus_crds::contract::location::{S3Prefix, StoreUri};
use ocellus_crds::contract::run_folder;
use sha2::{Digest, Sha256};

use super::{BUNDLE_MARKER, MIRROR_INTERVAL, SHA256SUMS_FILE, Store};
use crate::{Error, Result};

/// Where downloads from the store are cached: `$OCELLUS_CACHE_DIR`, else
/// `$HOME/.cache/ocellus`, else a folder under the temporary directory.
pub fn cache_base() -> PathBuf {
    if let Some(dir) = std::env::var_os("OCELLUS_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("ocellus"),
        None => std::env::temp_dir().join("ocellus-cache"),
    }
}

/// A local stage folder for work that ends up at `uri`; the same URI always gets the same folder.
pub fn stage_dir(kind: &str, uri: &S3Prefix) -> PathBuf {
    let digest = hex::encode(Sha256::digest(uri.to_string().as_bytes()));
    std::env::temp_dir().join("ocellus-stage").join(kind).join(&digest[..24])
}

fn parse(location: &str) -> Result<StoreUri> {
    StoreUri::parse(location).map_err(Error::bad_input)
}

/// A complete folder as a local path: the path itself when local, else downloaded into the
/// cache (once) after checking its `marker` exists.
pub fn open_folder(location: &str, marker: &str) -> Result<PathBuf> {
    match parse(location)? {
        StoreUri::Local(path) => Ok(path),
        StoreUri::S3(prefix) => {
            Store::from_env()?.download_folder(&prefix, Some(marker), &cache_base().join("store"))
        }
    }
}

/// A Dataset's `status.location` as a local folder: an imported copy in S3 is downloaded
/// (once) into the cache; the import is never repeated.
pub fn dataset_dir(location: &str) -> Result<PathBuf> {
    open_folder(location, run_folder::DATASET_META_FILE)
}

/// `predict --bundle`: a local scoring bundle, or one in S3 downloaded (once) into the cache.
pub fn bundle_dir(bundle: &Path) -> Result<PathBuf> {
    open_folder(&bundle.to_string_lossy(), BUNDLE_MARKER)
}

/// `--backbones`/`OCELLUS_BACKBONES`: a local folder, or one in S3 downloaded once into
/// `<cache>/backbones/`. Every file in S3 must have a sha256 the download can check: its
/// `x-amz-meta-sha256` metadata (what Ocellus uploads carry) or a line in the folder's
/// `SHA256SUMS` (`sha256sum */* > SHA256SUMS`); a file with neither is refused.
pub fn backbones_dir(backbones: &Path) -> Result<PathBuf> {
    let StoreUri::S3(prefix) = parse(&backbones.to_string_lossy())? else { return Ok(backbones.to_owned()) };
    let store = Store::from_env()?;
    let unverified = store.files_without_sha256(&prefix)?;
    let dir = store.download_folder(&prefix, None, &cache_base().join("backbones"))?;
    let covered = super::check_sha256sums(&dir, &prefix)?;
    if let Some(file) = unverified.iter().find(|f| !covered.contains(*f) && f.as_str() != SHA256SUMS_FILE) {
        return Err(Error::bad_input(format!(
            "{prefix}/{file} has no sha256 to check it against: add a {SHA256SUMS_FILE} file to {prefix} \
             (`sha256sum */* > {SHA256SUMS_FILE}` in the backbone directory) or upload it with \
             x-amz-meta-sha256 metadata"
        )));
    }
    Ok(dir)
}

/// `ocellus artifacts delete s3://…`: removes exactly what Ocellus wrote there.
pub fn delete_s3(prefix: &S3Prefix) -> Result<()> {
    if prefix.prefix.is_empty() {
        return Err(Error::bad_input(format!(
            "{prefix}: refusing to delete: give the folder of one experiment's artifacts, not a bucket"
        )));
    }
    let deleted = Store::from_env()?.delete_ocellus_folder(prefix)?;
    if deleted == 0 {
        println!("{prefix}: already gone");
    } else {
        println!("{prefix}: deleted ({deleted} objects)");
    }
    Ok(())
}

/// A run whose `--out` is in S3, worked in a local stage folder.
pub struct StagedRun {
    pub local: PathBuf,
    pub remote: S3Prefix,
    store: Arc<Store>,
    mirror: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

/// For `--out s3://…`: the stage folder, with the trials state already in the store
/// downloaded into it (a preempted search resumes), and a mirror of `trials/` running.
/// `None` for a local `--out`.
pub fn stage_run(out: &Path) -> Result<Option<StagedRun>> {
    let StoreUri::S3(remote) = parse(&out.to_string_lossy())? else { return Ok(None) };
    let local = stage_dir("run", &remote);
    std::fs::create_dir_all(&local).map_err(Error::io(&local))?;
    let store = Arc::new(Store::from_env()?);
    let trials = remote.join(run_folder::TRIALS_DIR).map_err(Error::bad_input)?;
    let resumed = store.download_into(&trials, &local.join(run_folder::TRIALS_DIR))?;
    if resumed > 0 {
        println!("resuming from {trials} ({resumed} files)");
    }
    let mut run = StagedRun { local, remote, store, mirror: None };
    run.start_mirror(trials);
    Ok(Some(run))
}

impl StagedRun {
    fn start_mirror(&mut self, trials: S3Prefix) {
        let (stop, stopped) = mpsc::channel::<()>();
        let (store, folder) = (Arc::clone(&self.store), self.local.join(run_folder::TRIALS_DIR));
        let snapshot = self.local.join(run_folder::WORK_DIR).join("trials-mirror");
        let thread = std::thread::spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(MIRROR_INTERVAL) {
                if folder.is_dir()
                    && let Err(error) = store.mirror_folder(&folder, &trials, &snapshot)
                {
                    eprintln!("warning: mirroring the trials to {trials} failed ({error}); retrying later");
                }
            }
        });
        self.mirror = Some((stop, thread));
    }

    fn stop_mirror(&mut self) {
        if let Some((stop, thread)) = self.mirror.take() {
            drop(stop);
            let _ = thread.join();
        }
    }

    /// Rewrites the artifact locations of `status` from stage paths to `s3://` URIs, writes
    /// result.json again with them, and uploads the folder, result.json last. The stage
    /// folder is removed once the store has it all.
    pub fn publish(mut self, mut status: ExperimentStatus) -> Result<ExperimentStatus> {
        self.stop_mirror();
        if let Some(artifacts) = status.artifacts.as_mut() {
            for value in [
                &mut artifacts.location,
                &mut artifacts.scoring_bundle,
                &mut artifacts.predictions,
                &mut artifacts.report,
            ] {
                if let Some(path) = value.as_mut() {
                    *path = self.to_remote(path);
                }
            }
        }
        let result = self.local.join(run_folder::RESULT_FILE);
        crate::json_file::write(&result, &status)?;
        let transfer = self.store.upload_folder(&self.local, &self.remote, Some(run_folder::RESULT_FILE))?;
        println!(
            "published {} ({} files uploaded, {} unchanged)",
            self.remote, transfer.uploaded, transfer.unchanged
        );
        let _ = std::fs::remove_dir_all(&self.local);
        Ok(status)
    }

    /// A stage path as its URI in the store; other values unchanged.
    fn to_remote(&self, path: &str) -> String {
        let stage = [Some(self.local.clone()), self.local.canonicalize().ok()];
        for root in stage.into_iter().flatten() {
            if let Ok(rest) = Path::new(path).strip_prefix(&root) {
                let rest = rest.to_string_lossy().replace('\\', "/");
                return self.remote.join(&rest).map_or_else(|_| path.to_owned(), |uri| uri.to_string());
            }
        }
        path.to_owned()
    }
}

impl Drop for StagedRun {
    fn drop(&mut self) {
        self.stop_mirror();
    }
}

/// An import whose `--out` is in S3, worked in a local stage folder.
pub struct StagedImport {
    pub local: PathBuf,
    pub remote: S3Prefix,
    store: Store,
}

/// For `dataset import --out s3://…`: the stage folder; `None` for a local `--out`.
pub fn stage_import(out: &Path) -> Result<Option<StagedImport>> {
    let StoreUri::S3(remote) = parse(&out.to_string_lossy())? else { return Ok(None) };
    let local = stage_dir("datasets", &remote);
    std::fs::create_dir_all(&local).map_err(Error::io(&local))?;
    Ok(Some(StagedImport { local, remote, store: Store::from_env()? }))
}

impl StagedImport {
    /// Uploads the Dataset `name`'s normalized copy to `<out>/<name>/`, `dataset.json` last,
    /// and returns its `s3://` location (also written into the copy's profile.json).
    pub fn publish_dataset(&self, name: &str) -> Result<String> {
        let remote = self.remote.join(name).map_err(Error::bad_input)?;
        let folder = self.local.join(name);
        let profile_path = folder.join(run_folder::DATASET_PROFILE_FILE);
        let text = std::fs::read_to_string(&profile_path).map_err(Error::io(&profile_path))?;
        let mut profile: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::bad_input(format!("{}: unreadable: {e}", profile_path.display())))?;
        profile["location"] = remote.to_string().into();
        crate::json_file::write(&profile_path, &profile)?;
        self.store.upload_folder(&folder, &remote, Some(run_folder::DATASET_META_FILE))?;
        Ok(remote.to_string())
    }

    /// Makes the parent `name` of a split, imported earlier to `<out>/<name>/`, available
    /// in the stage folder.
    pub fn fetch_dataset(&self, name: &str) -> Result<()> {
        let remote = self.remote.join(name).map_err(Error::bad_input)?;
        self.store.download_folder_to(&remote, run_folder::DATASET_META_FILE, &self.local.join(name))
    }
}
