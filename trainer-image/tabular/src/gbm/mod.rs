//! Gradient boosting with LightGBM: a small seeded hyperparameter search within a time budget,
//! early stopping on the validation split (or k-fold choice of the number of rounds when the
//! training split is small), and a model that saves, loads and predicts.

mod lgbm;
mod search;

use std::path::Path;
use std::time::Duration;

use lightgbm3::{Booster, ImportanceType};
use ocellus_crds::experiment::Scorer;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::learner::TrainingData;
use crate::matrix::Matrix;
use crate::metrics::Predictions;
use crate::task::{Target, TaskKind};

pub use search::SMALL_DATA_ROWS;

/// The main hyperparameters the search varies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub num_leaves: u32,
    pub learning_rate: f64,
    pub min_data_in_leaf: u32,
    pub feature_fraction: f64,
    pub lambda_l2: f64,
}

impl Default for Params {
    /// LightGBM's defaults, with a smaller learning rate since early stopping bounds the rounds.
    fn default() -> Self {
        Params {
            num_leaves: 31,
            learning_rate: 0.05,
            min_data_in_leaf: 20,
            feature_fraction: 1.0,
            lambda_l2: 0.0,
        }
    }
}

/// One configuration tried by the search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub params: Params,
    /// The scorer's value on the validation split (or out of fold, when cross-validated).
    pub score: f64,
    /// Boosting rounds kept: the best validation round (mean over folds when cross-validated).
    pub best_iteration: usize,
    pub seconds: f64,
    /// LightGBM's validation metric ([`curve_metric`]) after each boosting round (mean over
    /// folds when cross-validated).
    #[serde(default)]
    pub validation_curve: Vec<f64>,
}

/// The metric of [`Trial::validation_curve`]: what LightGBM minimises for the task.
pub fn curve_metric(task: TaskKind) -> &'static str {
    match task {
        TaskKind::Regression => "l2",
        TaskKind::Binary => "binary log loss",
        TaskKind::Multiclass => "multiclass log loss",
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct GbmConfig {
    /// Wall-clock budget of the search. The first trial always runs to completion; later ones
    /// start only within the budget, and one that overruns it is abandoned.
    pub budget: Duration,
    pub seed: u64,
    /// The scorer that picks the best trial (`Auto` resolves by task).
    pub scorer: Scorer,
    /// LightGBM threads. Fixed, with `deterministic=true`, so a fit repeats exactly for a seed.
    pub num_threads: usize,
    /// At most this many trials, whatever the budget.
    pub max_trials: usize,
    pub max_rounds: usize,
    /// Stop a trial after this many rounds without improvement on validation.
    pub early_stopping_rounds: usize,
}

impl Default for GbmConfig {
    fn default() -> Self {
        GbmConfig {
            budget: Duration::from_secs(60),
            seed: 0,
            scorer: Scorer::Auto,
            num_threads: 2,
            max_trials: 16,
            max_rounds: 2000,
            early_stopping_rounds: 50,
        }
    }
}

/// What a fitted model knows besides its trees; saved as `gbm.json` next to `model.txt`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GbmInfo {
    pub target: Target,
    /// The resolved scorer the search optimised.
    pub scorer: Scorer,
    pub params: Params,
    pub best_iteration: usize,
    pub num_features: usize,
    pub categorical_features: Vec<usize>,
    /// The scorer on the validation split, for the chosen model.
    pub validation_score: f64,
    /// True when the number of rounds was chosen by k-fold cross-validation on the training split.
    pub cross_validated: bool,
    pub trials: Vec<Trial>,
    pub num_threads: usize,
    /// The full LightGBM parameter string of the chosen model.
    pub lightgbm_parameters: String,
    /// Set when the trees were trained again on this many rows (fit and validation) after the
    /// search; `validation_score` is still that of the model trained on the fit rows alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refit_rows: Option<usize>,
}

pub struct FittedGbm {
    booster: Booster,
    pub info: GbmInfo,
}

pub const MODEL_FILE: &str = "model.txt";
pub const INFO_FILE: &str = "gbm.json";

pub struct Gbm;

impl Gbm {
    /// Fits on the training rows, choosing among trials by the scorer on the validation rows;
    /// LightGBM treats the `categorical` features as categories.
    pub fn fit(data: &TrainingData, config: &GbmConfig) -> Result<FittedGbm> {
        search::fit(data, config)
    }
}

impl FittedGbm {
    /// The same parameters and rounds trained on `x, y`; see [`search::refit`].
    pub fn refit(&self, x: &Matrix, y: &[f64], seed: u64) -> Result<FittedGbm> {
        search::refit(self, x, y, seed)
    }

    fn from_model_text(text: &str, info: GbmInfo) -> Result<FittedGbm> {
        Ok(FittedGbm { booster: Booster::from_string(text)?, info })
    }

    pub fn predict(&self, x: &Matrix) -> Result<Predictions> {
        if x.cols != self.info.num_features {
            return Err(Error::bad_input(format!(
                "the model was trained on {} features but these rows have {}",
                self.info.num_features, x.cols
            )));
        }
        if x.rows == 0 {
            return Ok(raw_to_predictions(&self.info.target, Vec::new()));
        }
        let parameters = format!("num_threads={}", self.info.num_threads);
        let raw = self.booster.predict_with_params(&x.data, x.cols as i32, true, &parameters)?;
        Ok(raw_to_predictions(&self.info.target, raw))
    }

    /// Total gain of the splits on each feature.
    pub fn feature_importance(&self) -> Result<Vec<f64>> {
        Ok(self.booster.feature_importance(ImportanceType::Gain)?)
    }

    /// Writes `model.txt` (LightGBM's own text format) and `gbm.json` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let io = |context: String| move |source| Error::Io { context, source };
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let model = dir.join(MODEL_FILE);
        self.booster.save_file(&model.to_string_lossy())?;
        let info = serde_json::to_string_pretty(&self.info)
            .map_err(|source| Error::Json { context: "serialising the model info".into(), source })?;
        let path = dir.join(INFO_FILE);
        std::fs::write(&path, info).map_err(io(format!("writing {}", path.display())))
    }

    pub fn load(dir: &Path) -> Result<FittedGbm> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| Error::Io {
                context: format!("reading {} (is {} a saved model?)", path.display(), dir.display()),
                source,
            })
        };
        let info: GbmInfo = serde_json::from_str(&read(INFO_FILE)?).map_err(|source| Error::Json {
            context: format!("parsing {}", dir.join(INFO_FILE).display()),
            source,
        })?;
        FittedGbm::from_model_text(&read(MODEL_FILE)?, info)
    }
}

/// LightGBM's output as predictions: binary models give P(class 1) per row.
fn raw_to_predictions(target: &Target, raw: Vec<f64>) -> Predictions {
    match target.task {
        TaskKind::Regression => Predictions::Regression(raw),
        TaskKind::Binary => {
            Predictions::Probabilities { classes: 2, data: raw.iter().flat_map(|p| [1.0 - p, *p]).collect() }
        }
        TaskKind::Multiclass => Predictions::Probabilities { classes: target.classes.len(), data: raw },
    }
}

#[cfg(test)]
mod tests;
