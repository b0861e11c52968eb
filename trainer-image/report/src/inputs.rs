//! Everything the report shows, read back from a run's folder.

use std::path::{Path, PathBuf};

use ocellus_crds::dataset::DatasetStatus;
use ocellus_crds::experiment::ExperimentStatus;
use ocellus_dataset::json_file;
use ocellus_dataset::normalized::{BadImage, NormalizedDataset};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::evaluation::Evaluation;
use crate::record::{RUN_RECORD_FILE, RunRecord};

/// At most this many refused images are listed per dataset.
const BAD_IMAGES_LISTED: usize = 20;

pub struct DatasetFacts {
    pub role: &'static str,
    pub dir: PathBuf,
    pub profile: DatasetStatus,
    pub bad_images: Vec<BadImage>,
}

pub struct RunFiles {
    pub dir: PathBuf,
    pub status: ExperimentStatus,
    pub record: RunRecord,
    pub datasets: Vec<DatasetFacts>,
    /// Labelled test rows with the experiment's predictions; `None` without a test dataset.
    pub evaluation: Option<Evaluation>,
}

impl RunFiles {
    pub fn load(dir: &Path) -> Result<RunFiles> {
        let result = dir.join("result.json");
        if !result.is_file() {
            return Err(Error::Missing(format!(
                "{} has no result.json: it is not the folder of a finished `ocellus run` (run the \
                 experiment first, or point at its --out folder)",
                dir.display()
            )));
        }
        let status: ExperimentStatus = read_json(&result)?;
        let record_path = dir.join(RUN_RECORD_FILE);
        if !record_path.is_file() {
            return Err(Error::Missing(format!(
                "{} has no {RUN_RECORD_FILE}: it was written by an Ocellus older than reports; run \
                 the experiment again",
                dir.display()
            )));
        }
        let record: RunRecord = read_json(&record_path)?;
        let train_dir = resolve(dir, &record.train_dataset);
        let test_dir = record.test_dataset.as_deref().map(|p| resolve(dir, p));
        let mut datasets = vec![dataset_facts("training", &train_dir)?];
        let mut evaluation = None;
        if let Some(test_dir) = &test_dir {
            datasets.push(dataset_facts("test", test_dir)?);
            let predictions = dir.join("predictions.csv");
            if !predictions.is_file() {
                return Err(Error::Missing(format!(
                    "{} has a test dataset but no predictions.csv: run the experiment again",
                    dir.display()
                )));
            }
            let rows = NormalizedDataset::open(test_dir)?.rows()?;
            evaluation = Some(Evaluation::join(
                &predictions,
                &rows,
                test_dir,
                &record.target_column,
                &record.target,
                record.image_columns.first().map(String::as_str),
            )?);
        }
        Ok(RunFiles { dir: dir.to_owned(), status, record, datasets, evaluation })
    }
}

/// Datasets inside the run's folder are recorded relative to it, so a copied folder still reports.
fn resolve(dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_owned() } else { dir.join(path) }
}

fn dataset_facts(role: &'static str, dir: &Path) -> Result<DatasetFacts> {
    let profile = read_json(&dir.join("profile.json"))?;
    let bad_path = dir.join("bad_images.jsonl");
    let bad_images = match std::fs::read_to_string(&bad_path) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(BAD_IMAGES_LISTED)
            .map(|l| serde_json::from_str(l).map_err(|source| Error::Json { path: bad_path.clone(), source }))
            .collect::<Result<_>>()?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(Error::io(&bad_path)(error)),
    };
    Ok(DatasetFacts { role, dir: dir.to_owned(), profile, bad_images })
}

/// A run's file, or [`Error::Missing`] when the folder lacks it (not a finished run).
fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    match json_file::read_if_present(path) {
        Ok(Some(value)) => Ok(value),
        Ok(None) => Err(Error::Missing(format!("{} is missing: run the experiment again", path.display()))),
        Err(ocellus_dataset::Error::Json { path, source }) => Err(Error::Json { path, source }),
        Err(ocellus_dataset::Error::Io { path, source }) => Err(Error::Io { path, source }),
        Err(other) => Err(other.into()),
    }
}
