//! What both pipelines do once their model is chosen: install the scoring bundle, score the
//! test Dataset through it into `predictions.csv`, and describe the run in `Experiment.status`.

use std::path::{Path, PathBuf};

use ocellus_crds::ExperimentStatus;
use ocellus_crds::common::MetricValue;
use ocellus_crds::experiment::{ArtifactLocations, Scorer, TrialSummary, TrialsSummary};
use ocellus_dataset::normalized::NormalizedDataset;
use ocellus_report::RunRecord;
use ocellus_tabular::metrics::{Predictions, compare, evaluate};
use ocellus_tabular::task::Target;
use serde_json::{Map, Value};

use crate::bundle::{ScoringBundle, write_predictions};
use crate::embed::EmbedOptions;
use crate::image_cells::ImageCells;
use crate::{Error, Result};

/// What a pipeline produced, in the shape of `Experiment.status`.
pub struct Outcome {
    pub status: ExperimentStatus,
    /// What the report needs beyond the status (written as `DIR/run.json`).
    pub record: RunRecord,
}

/// How many trials `status.trials.top` lists (the schema's limit).
const TOP_TRIALS: usize = 10;

/// `status.trials`: the counts, and the scored trials best first (ties by id), at most
/// [`TOP_TRIALS`] of them.
pub(crate) fn trials_summary(
    scorer: Scorer,
    (total, completed, pruned): (usize, usize, usize),
    trials: impl IntoIterator<Item = TrialSummary>,
) -> TrialsSummary {
    let mut scored: Vec<TrialSummary> = trials.into_iter().filter(|t| t.score.is_some()).collect();
    scored.sort_by(|a, b| {
        compare(scorer, a.score.unwrap_or(f64::NAN), b.score.unwrap_or(f64::NAN)).then(a.id.cmp(&b.id))
    });
    scored.truncate(TOP_TRIALS);
    TrialsSummary {
        total: total as i32,
        completed: completed as i32,
        pruned: pruned as i32,
        failed: 0,
        top: scored,
    }
}

/// A folder beside `out/scoring` to write the new bundle (and what it is built from) into.
pub(crate) fn bundle_staging(out: &Path) -> Result<tempfile::TempDir> {
    tempfile::Builder::new().prefix(".scoring.partial-").tempdir_in(out).map_err(Error::io(out))
}

/// Moves a bundle written in full at `staged` to `out/scoring`, replacing an earlier one.
pub(crate) fn install_bundle(staged: &Path, out: &Path) -> Result<PathBuf> {
    let installed = out.join("scoring");
    if installed.exists() {
        std::fs::remove_dir_all(&installed).map_err(Error::io(&installed))?;
    }
    std::fs::rename(staged, &installed).map_err(Error::io(&installed))?;
    Ok(installed)
}

/// How the scoring bundle reads images on this machine.
pub(crate) struct Scoring<'a> {
    pub cache_dir: &'a Path,
    pub embed: &'a EmbedOptions,
}

/// Scores every row of `test` through the bundle into `out/predictions.csv`, and the labelled
/// rows' metrics.
pub(crate) fn score_test(
    bundle: &ScoringBundle,
    test: &NormalizedDataset,
    target: &Target,
    target_column: &str,
    scoring: &Scoring,
    out: &Path,
) -> Result<(Vec<MetricValue>, PathBuf)> {
    let test_rows = test.rows()?;
    let test_cells = ImageCells::new(&test.dir, scoring.cache_dir);
    let progress = crate::progress::bar(test_rows.len(), "scoring the test rows");
    let predictions = bundle.predict(&test_rows, &test_cells, scoring.embed, &progress)?;
    progress.finish_and_clear();
    let path = out.join("predictions.csv");
    write_predictions(&path, target, &predictions)?;
    Ok((test_metrics(target, target_column, &test_rows, &predictions)?, path))
}

/// Where the run's outputs are, before an artifact store moves them.
pub(crate) fn artifact_locations(
    out: &Path,
    bundle: &Path,
    predictions: Option<PathBuf>,
) -> ArtifactLocations {
    ArtifactLocations {
        location: Some(out.display().to_string()),
        scoring_bundle: Some(bundle.display().to_string()),
        predictions: predictions.map(|p| p.display().to_string()),
        report: None,
    }
}

fn test_metrics(
    target: &Target,
    target_column: &str,
    rows: &[Map<String, Value>],
    predictions: &Predictions,
) -> Result<Vec<MetricValue>> {
    let labelled: Vec<usize> =
        (0..rows.len()).filter(|&i| rows[i].get(target_column).is_some_and(|v| !v.is_null())).collect();
    if labelled.is_empty() {
        return Ok(Vec::new());
    }
    let mut y = Vec::with_capacity(labelled.len());
    for &i in &labelled {
        let value = &rows[i][target_column];
        y.push(target.encode(value).ok_or_else(|| {
            Error::bad_input(format!(
                "test row {i}: target {value} is not a value the training data has ({}); \
                 the test dataset must come from the same source",
                if target.classes.is_empty() { "a number".to_owned() } else { target.classes.join(", ") }
            ))
        })?);
    }
    Ok(evaluate(target, &y, &select_predictions(predictions, &labelled)))
}

fn select_predictions(predictions: &Predictions, rows: &[usize]) -> Predictions {
    match predictions {
        Predictions::Regression(values) => Predictions::Regression(rows.iter().map(|&i| values[i]).collect()),
        Predictions::Probabilities { classes, .. } => Predictions::Probabilities {
            classes: *classes,
            data: rows.iter().flat_map(|&i| predictions.probabilities(i).iter().copied()).collect(),
        },
    }
}
