//! The learners the embeddings pipeline compares on validation for each feature set: LightGBM
//! ([`crate::gbm`]) and a regularised linear model ([`crate::linear`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gbm::FittedGbm;
use crate::linear::FittedLinear;
use crate::matrix::Matrix;
use crate::metrics::Predictions;
use crate::task::Target;

/// What every learner fits on: training rows and labels (encoded by `target`), and the
/// validation rows that choose among its settings. `categorical` lists the feature indices
/// that hold category codes.
#[derive(Clone, Copy)]
pub struct TrainingData<'a> {
    pub train: &'a Matrix,
    pub y: &'a [f64],
    pub valid: &'a Matrix,
    pub y_valid: &'a [f64],
    pub target: &'a Target,
    pub categorical: &'a [usize],
}

impl TrainingData<'_> {
    /// Shapes that only a bug in the caller can get wrong.
    pub fn check_shapes(&self) -> Result<()> {
        if self.train.rows != self.y.len()
            || self.valid.rows != self.y_valid.len()
            || self.train.cols != self.valid.cols
        {
            return Err(Error::Internal(format!(
                "{} x {} training rows with {} labels, {} x {} validation rows with {} labels",
                self.train.rows,
                self.train.cols,
                self.y.len(),
                self.valid.rows,
                self.valid.cols,
                self.y_valid.len()
            )));
        }
        if let Some(&c) = self.categorical.iter().find(|&&c| c >= self.train.cols) {
            return Err(Error::Internal(format!("categorical feature {c} of {} features", self.train.cols)));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LearnerKind {
    #[default]
    LightGbm,
    Linear,
}

impl LearnerKind {
    /// The folder a saved model of this kind lives in, inside a scoring bundle.
    pub fn folder(self) -> &'static str {
        match self {
            LearnerKind::LightGbm => "gbm",
            LearnerKind::Linear => "linear",
        }
    }
}

pub enum FittedModel {
    LightGbm(FittedGbm),
    Linear(FittedLinear),
}

impl FittedModel {
    pub fn kind(&self) -> LearnerKind {
        match self {
            FittedModel::LightGbm(_) => LearnerKind::LightGbm,
            FittedModel::Linear(_) => LearnerKind::Linear,
        }
    }

    /// What the status and the report call it: `LightGBM`, `LogisticRegression` or `Ridge`.
    pub fn name(&self) -> &'static str {
        match self {
            FittedModel::LightGbm(_) => "LightGBM",
            FittedModel::Linear(linear) => linear.name(),
        }
    }

    /// What [`FittedModel::feature_importance`] measures, for the report.
    pub fn importance_measure(&self) -> &'static str {
        match self {
            FittedModel::LightGbm(_) => "LightGBM total split gain",
            FittedModel::Linear(_) => "absolute standardised coefficients",
        }
    }

    /// The chosen model fitted again on `x, y` with the settings validation chose; see
    /// [`FittedGbm::refit`] and [`FittedLinear::refit`].
    pub fn refit(&self, x: &Matrix, y: &[f64], categorical: &[usize], seed: u64) -> Result<FittedModel> {
        Ok(match self {
            FittedModel::LightGbm(gbm) => FittedModel::LightGbm(gbm.refit(x, y, seed)?),
            FittedModel::Linear(linear) => FittedModel::Linear(linear.refit(x, y, categorical)?),
        })
    }

    /// Rows of the final fit when it was refitted after validation.
    pub fn refit_rows(&self) -> Option<usize> {
        match self {
            FittedModel::LightGbm(gbm) => gbm.info.refit_rows,
            FittedModel::Linear(linear) => linear.refit_rows,
        }
    }

    pub fn predict(&self, x: &Matrix) -> Result<Predictions> {
        match self {
            FittedModel::LightGbm(gbm) => gbm.predict(x),
            FittedModel::Linear(linear) => linear.predict(x),
        }
    }

    /// How much each input feature counts: LightGBM's total split gain, or the linear model's
    /// absolute standardised coefficients. Comparable between features of one model only.
    pub fn feature_importance(&self) -> Result<Vec<f64>> {
        match self {
            FittedModel::LightGbm(gbm) => gbm.feature_importance(),
            FittedModel::Linear(linear) => Ok(linear.feature_importance()),
        }
    }

    /// Saves into `dir` (created).
    pub fn save(&self, dir: &Path) -> Result<()> {
        match self {
            FittedModel::LightGbm(gbm) => gbm.save(dir),
            FittedModel::Linear(linear) => linear.save(dir),
        }
    }

    pub fn load(kind: LearnerKind, dir: &Path) -> Result<FittedModel> {
        Ok(match kind {
            LearnerKind::LightGbm => FittedModel::LightGbm(FittedGbm::load(dir)?),
            LearnerKind::Linear => FittedModel::Linear(FittedLinear::load(dir)?),
        })
    }
}
