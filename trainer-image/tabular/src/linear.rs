//! The linear candidate learner: L2-regularised multinomial logistic regression for
//! classification (L-BFGS, through `linfa-logistic`) and ridge regression for regression (closed
//! form on faer), on standardised features, with the regularisation strength chosen on the
//! validation split.
//!
//! Why it exists: on pretrained embeddings, classes are often close to linearly separable, and a
//! linear model on all embedding features beats gradient boosting's axis-aligned splits by a wide
//! margin (BENCHMARKS.md, digits). The pipeline fits both and keeps the better on validation.
//!
//! Features are standardised with the fit rows' mean and standard deviation; a missing value
//! becomes the mean (0 after standardising); a categorical feature is one-hot encoded over the
//! codes seen in the fit rows (an unseen or missing code is all zeros).

use std::time::{Duration, Instant};

use faer::Mat;
use linfa::traits::Fit;
use linfa_logistic::MultiLogisticRegression;
use ndarray::{Array1, Array2};
use ocellus_crds::experiment::Scorer;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::learner::TrainingData;
use crate::linalg::top_eigen;
use crate::matrix::Matrix;
use crate::metrics::{Predictions, is_better, resolve_scorer, score};
use crate::task::{Target, TaskKind};

/// Regularisation strengths tried, weakest first. With the summed (not averaged) loss of
/// `linfa-logistic`, `alpha` is scikit-learn's `1 / C`: `alpha = 1` is its default.
pub const ALPHAS: [f64; 6] = [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0];

#[derive(Clone, Debug, PartialEq)]
pub struct LinearConfig {
    /// The first strength always runs; later ones start only within the budget.
    pub budget: Duration,
    pub scorer: Scorer,
    pub alphas: Vec<f64>,
    /// L-BFGS iterations per logistic fit.
    pub max_iterations: u64,
}

impl Default for LinearConfig {
    fn default() -> Self {
        LinearConfig {
            budget: Duration::from_secs(60),
            scorer: Scorer::Auto,
            alphas: ALPHAS.to_vec(),
            max_iterations: 1000,
        }
    }
}

/// How one input feature becomes model inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum InputFeature {
    /// `(x - mean) / scale`; missing -> 0.
    Numeric { mean: f64, scale: f64 },
    /// One input per code seen in the fit rows.
    Categorical { codes: Vec<f64> },
}

impl InputFeature {
    fn width(&self) -> usize {
        match self {
            InputFeature::Numeric { .. } => 1,
            InputFeature::Categorical { codes } => codes.len(),
        }
    }
}

/// One regularisation strength tried.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearTrial {
    pub alpha: f64,
    /// The scorer on the validation split.
    pub score: f64,
    /// Classification: the log loss on the validation split, which chooses the strength.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_loss: Option<f64>,
    pub seconds: f64,
}

/// A fitted linear model; saved as `linear.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FittedLinear {
    pub target: Target,
    /// The run's resolved scorer. The strength is chosen by it for regression and by log loss
    /// for classification: a step-shaped scorer such as accuracy on a few hundred validation
    /// rows cannot tell strengths apart, and log loss keeps the probabilities calibrated.
    pub scorer: Scorer,
    pub alpha: f64,
    pub validation_score: f64,
    pub trials: Vec<LinearTrial>,
    pub inputs: Vec<InputFeature>,
    /// Row-major, one row per model input, one column per output (class, or the value).
    pub weights: Vec<f64>,
    pub intercepts: Vec<f64>,
    /// Classification: the class index of each output (a class absent from the fit rows has no
    /// output and gets probability 0).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_classes: Vec<usize>,
    /// Set when the model was fitted again on this many rows (fit and validation) with the
    /// chosen strength; `validation_score` is that of the model fitted on the fit rows alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refit_rows: Option<usize>,
}

pub const LINEAR_FILE: &str = "linear.json";

/// Fits on the training rows, choosing the regularisation strength on the validation rows (by
/// the scorer for regression, by log loss for classification; see [`FittedLinear::scorer`]).
pub fn fit(data: &TrainingData, config: &LinearConfig) -> Result<FittedLinear> {
    let started = Instant::now();
    data.check_shapes()?;
    let TrainingData { train, y, valid, y_valid, target, categorical } = *data;
    if train.rows < 2 || valid.rows == 0 {
        return Err(Error::bad_input(format!(
            "a linear model needs at least 2 training rows and one validation row; got {} and {}: \
             add rows to the dataset",
            train.rows, valid.rows
        )));
    }
    if let Some((i, _)) = y.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(Error::bad_input(format!(
            "training row {i} has no usable target value: drop rows whose target is missing"
        )));
    }
    let scorer = resolve_scorer(config.scorer, target.task)?;
    let chooser = if target.task == TaskKind::Regression { scorer } else { Scorer::LogLoss };
    let inputs = fit_inputs(train, categorical);
    let x = expand(&inputs, train);
    let x_valid = expand(&inputs, valid);
    let width = inputs.iter().map(InputFeature::width).sum::<usize>();

    let solver = match target.task {
        TaskKind::Regression => Solver::Ridge(RidgeSystem::new(&x, train.rows, width, y)?),
        _ => Solver::Logistic,
    };
    let mut trials = Vec::new();
    // (choosing score, scorer's score, alpha, weights, intercepts, output classes) of the best
    // strength so far.
    type Best = (f64, f64, f64, Vec<f64>, Vec<f64>, Vec<usize>);
    let mut best: Option<Best> = None;
    for (index, &alpha) in config.alphas.iter().enumerate() {
        if index > 0 && started.elapsed() > config.budget {
            break;
        }
        let trial_started = Instant::now();
        let (weights, intercepts, output_classes) = match &solver {
            Solver::Ridge(system) => {
                let (w, b) = system.solve(alpha);
                (w, vec![b], Vec::new())
            }
            Solver::Logistic => {
                match logistic(&x, train.rows, width, y, alpha, config.max_iterations) {
                    Ok(fitted) => fitted,
                    // A strength whose optimisation fails is skipped; the others still compete.
                    Err(_) if index > 0 || config.alphas.len() > 1 => continue,
                    Err(error) => return Err(error),
                }
            }
        };
        let model = FittedLinear {
            target: target.clone(),
            scorer,
            alpha,
            validation_score: f64::NAN,
            trials: Vec::new(),
            inputs: inputs.clone(),
            weights,
            intercepts,
            output_classes,
            refit_rows: None,
        };
        let predictions = model.predict_expanded(&x_valid, valid.rows);
        let trial_score = score(target, scorer, y_valid, &predictions)?;
        let choosing =
            if chooser == scorer { trial_score } else { score(target, chooser, y_valid, &predictions)? };
        trials.push(LinearTrial {
            alpha,
            score: trial_score,
            log_loss: (chooser == Scorer::LogLoss).then_some(choosing),
            seconds: trial_started.elapsed().as_secs_f64(),
        });
        if best.as_ref().is_none_or(|(c, ..)| is_better(chooser, choosing, *c)) {
            best =
                Some((choosing, trial_score, alpha, model.weights, model.intercepts, model.output_classes));
        }
    }
    let (_, validation_score, alpha, weights, intercepts, output_classes) = best.ok_or_else(|| {
        Error::LinearAlgebra("logistic regression failed for every regularisation strength".into())
    })?;
    Ok(FittedLinear {
        target: target.clone(),
        scorer,
        alpha,
        validation_score,
        trials,
        inputs,
        weights,
        intercepts,
        output_classes,
        refit_rows: None,
    })
}

enum Solver {
    Ridge(RidgeSystem),
    Logistic,
}

/// Mean and standard deviation of each numeric feature over its finite values; the codes of each
/// categorical feature.
fn fit_inputs(x: &Matrix, categorical: &[usize]) -> Vec<InputFeature> {
    (0..x.cols)
        .map(|j| {
            let values: Vec<f64> =
                (0..x.rows).map(|i| x.get(i, j) as f64).filter(|v| v.is_finite()).collect();
            if categorical.contains(&j) {
                let mut codes = values;
                codes.sort_by(f64::total_cmp);
                codes.dedup();
                return InputFeature::Categorical { codes };
            }
            let n = values.len().max(1) as f64;
            let mean = values.iter().sum::<f64>() / n;
            let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            let scale = if variance.sqrt() > 1e-12 { variance.sqrt() } else { 1.0 };
            InputFeature::Numeric { mean, scale }
        })
        .collect()
}

/// The model inputs of every row, row-major.
fn expand(inputs: &[InputFeature], x: &Matrix) -> Vec<f64> {
    let width = inputs.iter().map(InputFeature::width).sum::<usize>();
    let mut out = vec![0.0; x.rows * width];
    for (i, row) in out.chunks_exact_mut(width).enumerate() {
        let mut at = 0;
        for (j, input) in inputs.iter().enumerate() {
            let value = x.get(i, j) as f64;
            match input {
                InputFeature::Numeric { mean, scale } => {
                    row[at] = if value.is_finite() { (value - mean) / scale } else { 0.0 };
                }
                InputFeature::Categorical { codes } => {
                    if let Some(k) = codes.iter().position(|&c| c == value) {
                        row[at + k] = 1.0;
                    }
                }
            }
            at += input.width();
        }
    }
    out
}

/// Multinomial logistic regression (binary as two classes): weights, intercepts, and the class
/// of each output.
fn logistic(
    x: &[f64],
    rows: usize,
    width: usize,
    y: &[f64],
    alpha: f64,
    max_iterations: u64,
) -> Result<(Vec<f64>, Vec<f64>, Vec<usize>)> {
    let records = Array2::from_shape_vec((rows, width), x.to_vec())
        .map_err(|e| Error::Internal(format!("feature matrix shape: {e}")))?;
    let labels: Array1<usize> = y.iter().map(|&v| v as usize).collect();
    let dataset = linfa::Dataset::new(records, labels);
    let model = MultiLogisticRegression::default()
        .alpha(alpha)
        .max_iterations(max_iterations)
        .fit(&dataset)
        .map_err(|e| Error::LinearAlgebra(format!("logistic regression with alpha {alpha}: {e}")))?;
    let weights = model.params().iter().copied().collect();
    Ok((weights, model.intercept().to_vec(), model.classes().to_vec()))
}

/// Ridge regression on centred inputs, through one eigendecomposition of XᵀX so that every
/// strength costs a matrix-vector product.
struct RidgeSystem {
    eigenvalues: Vec<f64>,
    eigenvectors: Mat<f64>,
    /// Vᵀ Xcᵀ yc.
    projected: Vec<f64>,
    input_means: Vec<f64>,
    y_mean: f64,
}

impl RidgeSystem {
    fn new(x: &[f64], rows: usize, width: usize, y: &[f64]) -> Result<RidgeSystem> {
        let input_means: Vec<f64> =
            (0..width).map(|j| (0..rows).map(|i| x[i * width + j]).sum::<f64>() / rows as f64).collect();
        let y_mean = y.iter().sum::<f64>() / rows as f64;
        let centred = Mat::from_fn(rows, width, |i, j| x[i * width + j] - input_means[j]);
        let gram = centred.transpose() * &centred;
        let (eigenvalues, eigenvectors) = top_eigen(&gram, width)?;
        let xty: Vec<f64> =
            (0..width).map(|j| (0..rows).map(|i| centred[(i, j)] * (y[i] - y_mean)).sum()).collect();
        let projected =
            (0..eigenvalues.len()).map(|k| (0..width).map(|j| eigenvectors[(j, k)] * xty[j]).sum()).collect();
        Ok(RidgeSystem { eigenvalues, eigenvectors, projected, input_means, y_mean })
    }

    /// Weights (one column) and intercept for strength `alpha`.
    fn solve(&self, alpha: f64) -> (Vec<f64>, f64) {
        let width = self.input_means.len();
        let scaled: Vec<f64> =
            self.eigenvalues.iter().zip(&self.projected).map(|(l, p)| p / (l.max(0.0) + alpha)).collect();
        let weights: Vec<f64> = (0..width)
            .map(|j| scaled.iter().enumerate().map(|(k, s)| self.eigenvectors[(j, k)] * s).sum())
            .collect();
        let intercept = self.y_mean - weights.iter().zip(&self.input_means).map(|(w, m)| w * m).sum::<f64>();
        (weights, intercept)
    }
}

impl FittedLinear {
    fn width(&self) -> usize {
        self.inputs.iter().map(InputFeature::width).sum()
    }

    /// The same strength fitted on `x, y` (all labelled rows, once validation has chosen it):
    /// standardisation and one-hot codes are estimated again from those rows. The search's
    /// trials and validation score are kept.
    pub fn refit(&self, x: &Matrix, y: &[f64], categorical: &[usize]) -> Result<FittedLinear> {
        let data = TrainingData { train: x, y, valid: x, y_valid: y, target: &self.target, categorical };
        let config =
            LinearConfig { scorer: self.scorer, alphas: vec![self.alpha], ..LinearConfig::default() };
        let refitted = fit(&data, &config)?;
        Ok(FittedLinear {
            validation_score: self.validation_score,
            trials: self.trials.clone(),
            refit_rows: Some(x.rows),
            ..refitted
        })
    }

    pub fn num_features(&self) -> usize {
        self.inputs.len()
    }

    /// `LogisticRegression` or `Ridge`.
    pub fn name(&self) -> &'static str {
        match self.target.task {
            TaskKind::Regression => "Ridge",
            _ => "LogisticRegression",
        }
    }

    pub fn predict(&self, x: &Matrix) -> Result<Predictions> {
        if x.cols != self.num_features() {
            return Err(Error::bad_input(format!(
                "the model was trained on {} features but these rows have {}",
                self.num_features(),
                x.cols
            )));
        }
        Ok(self.predict_expanded(&expand(&self.inputs, x), x.rows))
    }

    fn predict_expanded(&self, x: &[f64], rows: usize) -> Predictions {
        let width = self.width();
        let outputs = self.intercepts.len();
        let linear = |i: usize, o: usize| {
            let row = &x[i * width..(i + 1) * width];
            self.intercepts[o]
                + row.iter().enumerate().map(|(j, v)| v * self.weights[j * outputs + o]).sum::<f64>()
        };
        match self.target.task {
            TaskKind::Regression => Predictions::Regression((0..rows).map(|i| linear(i, 0)).collect()),
            _ => {
                let classes = self.target.classes.len();
                let mut data = vec![0.0; rows * classes];
                for (i, probabilities) in data.chunks_exact_mut(classes).enumerate() {
                    let logits: Vec<f64> = (0..outputs).map(|o| linear(i, o)).collect();
                    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let total: f64 = logits.iter().map(|l| (l - max).exp()).sum();
                    for (o, l) in logits.iter().enumerate() {
                        probabilities[self.output_classes[o]] = (l - max).exp() / total;
                    }
                }
                Predictions::Probabilities { classes, data }
            }
        }
    }

    /// Per input feature: the absolute standardised coefficients summed over outputs (and over a
    /// categorical feature's codes).
    pub fn feature_importance(&self) -> Vec<f64> {
        let outputs = self.intercepts.len();
        let mut at = 0;
        self.inputs
            .iter()
            .map(|input| {
                let rows = at..at + input.width();
                at += input.width();
                rows.flat_map(|j| (0..outputs).map(move |o| j * outputs + o))
                    .map(|k| self.weights[k].abs())
                    .sum()
            })
            .collect()
    }

    /// Writes `linear.json` into `dir`.
    pub fn save(&self, dir: &std::path::Path) -> Result<()> {
        let io = |context: String| move |source| Error::Io { context, source };
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let text = serde_json::to_string(self)
            .map_err(|source| Error::Json { context: "serialising the linear model".into(), source })?;
        let path = dir.join(LINEAR_FILE);
        std::fs::write(&path, text).map_err(io(format!("writing {}", path.display())))
    }

    pub fn load(dir: &std::path::Path) -> Result<FittedLinear> {
        let path = dir.join(LINEAR_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            context: format!("reading {} (is {} a saved linear model?)", path.display(), dir.display()),
            source,
        })?;
        serde_json::from_str(&text)
            .map_err(|source| Error::Json { context: format!("parsing {}", path.display()), source })
    }
}

#[cfg(test)]
mod tests;
