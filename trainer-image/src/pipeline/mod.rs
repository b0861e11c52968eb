//! The two pipelines an Experiment can run.

pub mod auto_image;
pub mod embeddings;
mod labelled;
mod outcome;

pub use outcome::Outcome;

use ocellus_crds::experiment::{Experiment, Pipeline, Scorer};
use ocellus_dataset::normalized::NormalizedDataset;
use ocellus_report::RunRecord;
use ocellus_tabular::metrics::{greater_is_better, scorer_name};
use ocellus_tabular::task::Target;

/// The report's record of a run, without trials or importances (each pipeline adds its own).
pub(crate) fn run_record(
    experiment: &Experiment,
    pipeline: Pipeline,
    target: &Target,
    scorer: Scorer,
    (train, test): (&NormalizedDataset, Option<&NormalizedDataset>),
    image_columns: Vec<String>,
) -> RunRecord {
    RunRecord {
        experiment: experiment.metadata.name.clone().unwrap_or_else(|| "experiment".into()),
        pipeline: format!("{pipeline:?}"),
        target_column: experiment.spec.target.clone(),
        target: target.clone(),
        scorer: scorer_name(scorer).into(),
        greater_is_better: greater_is_better(scorer),
        train_dataset: train.dir.clone(),
        test_dataset: test.map(|t| t.dir.clone()),
        image_columns,
        trials: Vec::new(),
        feature_importance: Vec::new(),
        importance_measure: None,
    }
}
