//! `DIR/run.json`: what a run did that `result.json` (the shape of `Experiment.status`) has no
//! room for. The pipelines write it; the report reads it, so `ocellus report DIR` needs nothing
//! but the run's folder.

use std::path::PathBuf;

use ocellus_tabular::task::Target;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const RUN_RECORD_FILE: &str = "run.json";

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub experiment: String,
    pub pipeline: String,
    /// The target column and what was learned about it (task, classes in prediction order).
    pub target_column: String,
    pub target: Target,
    /// The metric the search optimised.
    pub scorer: String,
    pub greater_is_better: bool,
    pub train_dataset: PathBuf,
    pub test_dataset: Option<PathBuf>,
    pub image_columns: Vec<String>,
    /// Every trial, in the order it was tried.
    pub trials: Vec<TrialRecord>,
    /// Importance per source column (embeddings pipeline); empty otherwise.
    #[serde(default)]
    pub feature_importance: Vec<ImportanceGroup>,
    /// What [`ImportanceGroup::importance`] measures, e.g. LightGBM's total split gain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub importance_measure: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrialRecord {
    pub id: usize,
    /// The trial's choices, shown as the columns of the trial table.
    pub config: Map<String, Value>,
    pub score: Option<f64>,
    /// Finished, EarlyStopped, Pruned, ...
    pub status: String,
    pub curves: Vec<Curve>,
}

/// One learning curve: `values[i]` at step `i + 1` of `step` (epoch, boosting round).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Curve {
    /// What is measured, e.g. "validation Accuracy" or "training loss"; trials' curves with the
    /// same metric share a plot.
    pub metric: String,
    pub step: String,
    pub values: Vec<f64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImportanceGroup {
    /// A source column (an image column gathers all of its embedding features).
    pub column: String,
    pub kind: FeatureKind,
    /// The winning model's importance of the column's features, summed (see
    /// [`RunRecord::importance_measure`]).
    #[serde(alias = "gain")]
    pub importance: f64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureKind {
    ImageEmbedding,
    Tabular,
}
