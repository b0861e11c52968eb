//! The numeric half of the embeddings pipeline: everything after the image embeddings, without
//! libtorch.
//!
//! The pipeline's orchestration uses it in this order:
//!
//! 1. [`task::Target::detect`] resolves the task (regression / binary / multiclass) from the
//!    target column's values and the requested `Task`; [`task::Target::encode`] turns each target
//!    cell into the number the model learns (the value, or the class index) and
//!    [`task::Target::decode`] turns it back.
//! 2. [`columns::TabularEncoder::fit`] on the training rows (JSON objects keyed by column name)
//!    and the non-image columns; [`columns::TabularEncoder::transform`] makes a [`Matrix`] of any
//!    rows: numeric as-is (missing -> NaN), categorical as codes (unseen/missing -> NaN; their
//!    indices in [`columns::TabularEncoder::categorical_features`]), text as hashed TF-IDF + SVD
//!    components. [`columns::TabularEncoder::feature_names`] and
//!    [`columns::TabularEncoder::feature_groups`] name each output feature and its source column.
//! 3. [`pca::Pca::fit`] on the training rows of each architecture's embeddings, for each candidate
//!    dimension; [`pca::Pca::transform`] for every split.
//! 4. [`Matrix::hstack`] of the projected embeddings and the encoded columns.
//! 5. [`gbm::Gbm::fit`] with a [`gbm::GbmConfig`] (time budget, seed, scorer, threads): a seeded
//!    search over LightGBM's main hyperparameters with early stopping on validation (k-fold
//!    choice of rounds below [`gbm::SMALL_DATA_ROWS`] training rows). The
//!    [`gbm::FittedGbm`] predicts [`metrics::Predictions`], reports gain importances and every
//!    trial, and saves to / loads from a directory. [`linear::fit`] fits the other candidate
//!    learner, an L2-regularised logistic / ridge regression on standardised features;
//!    [`learner::FittedModel`] is either, behind one predict / save / load.
//! 6. [`metrics::evaluate`] gives every metric that applies (RMSE, MAE, R2; AUC, LogLoss,
//!    Accuracy, F1) as `MetricValue`s; [`metrics::resolve_scorer`] resolves `Scorer::Auto` as
//!    Driverless AI does (RMSE, AUC for binary, LogLoss for multiclass).
//!
//! Every fitted piece (`Target`, `TabularEncoder`, `Pca`, `GbmInfo`) is serde-serialisable for
//! the scoring bundle. Errors are [`Error::BadInput`] when the user can fix them (the message
//! says how) and other variants otherwise.

pub mod columns;
pub mod error;
pub mod gbm;
pub mod learner;
mod linalg;
pub mod linear;
pub mod matrix;
pub mod metrics;
pub mod pca;
pub mod task;
#[cfg(test)]
mod test_data;
mod text;

pub use error::{Error, Result};
pub use matrix::Matrix;
pub use text::MAX_TEXT_COMPONENTS;
