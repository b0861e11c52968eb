//! The seeded hyperparameter search behind `Gbm::fit`.

use std::time::Instant;

use lightgbm3::Booster;
use ocellus_crds::experiment::Scorer;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::lgbm::{Dataset, Training};
use super::{FittedGbm, GbmConfig, GbmInfo, Params, Trial, raw_to_predictions};
use crate::error::{Error, Result};
use crate::learner::TrainingData;
use crate::matrix::Matrix;
use crate::metrics::{is_better, resolve_scorer, score};
use crate::task::{Target, TaskKind};

/// Below this many training rows, the number of rounds is chosen by k-fold cross-validation on
/// the training split: a validation split of a few dozen rows is too noisy to stop on.
pub const SMALL_DATA_ROWS: usize = 300;
const FOLDS: usize = 5;

const NUM_LEAVES: [u32; 5] = [7, 15, 31, 63, 127];
const LEARNING_RATE: [f64; 4] = [0.02, 0.05, 0.1, 0.2];
const MIN_DATA_IN_LEAF: [u32; 5] = [3, 5, 10, 20, 50];
const FEATURE_FRACTION: [f64; 4] = [0.5, 0.7, 0.9, 1.0];
const LAMBDA_L2: [f64; 4] = [0.0, 0.1, 1.0, 10.0];

struct Search<'a> {
    target: &'a Target,
    scorer: Scorer,
    config: &'a GbmConfig,
    dataset_parameters: String,
    started: Instant,
}

fn labels(y: &[f64], what: &str) -> Result<Vec<f32>> {
    y.iter()
        .enumerate()
        .map(|(i, v)| {
            if v.is_finite() {
                Ok(*v as f32)
            } else {
                Err(Error::bad_input(format!(
                    "{what} row {i} has no usable target value: drop rows whose target is missing"
                )))
            }
        })
        .collect()
}

/// At most a tenth of the training rows per leaf, so that small data can still split.
fn cap_leaf_size(mut params: Params, train_rows: usize) -> Params {
    params.min_data_in_leaf = params.min_data_in_leaf.min((train_rows / 10).max(2) as u32);
    params
}

fn sample_params(rng: &mut ChaCha8Rng) -> Params {
    Params {
        num_leaves: NUM_LEAVES[rng.gen_range(0..NUM_LEAVES.len())],
        learning_rate: LEARNING_RATE[rng.gen_range(0..LEARNING_RATE.len())],
        min_data_in_leaf: MIN_DATA_IN_LEAF[rng.gen_range(0..MIN_DATA_IN_LEAF.len())],
        feature_fraction: FEATURE_FRACTION[rng.gen_range(0..FEATURE_FRACTION.len())],
        lambda_l2: LAMBDA_L2[rng.gen_range(0..LAMBDA_L2.len())],
    }
}

impl Search<'_> {
    fn booster_parameters(&self, params: &Params) -> String {
        let task = match self.target.task {
            TaskKind::Regression => "objective=regression metric=l2".to_string(),
            TaskKind::Binary => "objective=binary metric=binary_logloss".to_string(),
            TaskKind::Multiclass => {
                format!("objective=multiclass metric=multi_logloss num_class={}", self.target.classes.len())
            }
        };
        format!(
            "{task} num_leaves={} learning_rate={} min_data_in_leaf={} min_data_per_group={} \
             feature_fraction={} lambda_l2={} seed={} deterministic=true force_row_wise=true \
             num_threads={} verbosity=-1",
            params.num_leaves,
            params.learning_rate,
            params.min_data_in_leaf,
            params.min_data_in_leaf.clamp(1, 100),
            params.feature_fraction,
            params.lambda_l2,
            self.config.seed,
            self.config.num_threads,
        )
    }

    fn past_deadline(&self) -> bool {
        self.started.elapsed() > self.config.budget
    }

    /// Rounds until `early_stopping_rounds` pass without a better validation metric (all of
    /// l2 and the log losses are lower-is-better). The model text of the best round, and that
    /// round; `None` when `abandon_at_deadline` and the budget ran out.
    fn train_early_stopped(
        &self,
        train: &Dataset,
        valid: &Dataset,
        parameters: &str,
        abandon_at_deadline: bool,
    ) -> Result<Option<(String, usize, Vec<f64>)>> {
        let mut training = Training::new(train, parameters)?;
        training.add_validation(valid)?;
        let (mut best, mut best_round) = (f64::INFINITY, 0);
        let mut curve = Vec::new();
        for round in 1..=self.config.max_rounds {
            if abandon_at_deadline && self.past_deadline() {
                return Ok(None);
            }
            if training.update()? {
                break;
            }
            let metric = training.validation_metric()?;
            curve.push(metric);
            if metric < best {
                (best, best_round) = (metric, round);
            } else if round - best_round >= self.config.early_stopping_rounds {
                break;
            }
        }
        // A model that never improved on its first round still keeps that round.
        let rounds = best_round.max(1);
        Ok(Some((training.model_text(rounds)?, rounds, curve)))
    }

    fn score_of(&self, model_text: &str, x: &Matrix, y: &[f64]) -> Result<f64> {
        let booster = Booster::from_string(model_text)?;
        let parameters = format!("num_threads={}", self.config.num_threads);
        let raw = booster.predict_with_params(&x.data, x.cols as i32, true, &parameters)?;
        score(self.target, self.scorer, y, &raw_to_predictions(self.target, raw))
    }

    /// Fold of every row: shuffled with the seed, then dealt out class by class (stratified).
    fn folds(&self, y: &[f64]) -> Vec<usize> {
        let mut order: Vec<usize> = (0..y.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(self.config.seed ^ 0x5eed_f01d));
        if self.target.is_classification() {
            order.sort_by(|&a, &b| y[a].total_cmp(&y[b]));
        }
        let mut fold = vec![0; y.len()];
        for (position, &row) in order.iter().enumerate() {
            fold[row] = position % FOLDS;
        }
        fold
    }
}

/// Mean over folds of the validation metric per round, for the rounds every fold reached.
/// `rounds` boosting rounds (fewer if LightGBM can split no further), as model text.
fn train_rounds(train: &Dataset, parameters: &str, rounds: usize) -> Result<String> {
    let mut training = Training::new(train, parameters)?;
    for _ in 0..rounds {
        if training.update()? {
            break;
        }
    }
    training.model_text(rounds)
}

/// How LightGBM bins the features (the same for every trial of a fit and for its refit).
fn dataset_parameters(seed: u64, num_threads: usize, categorical: &[usize]) -> String {
    let mut parameters = format!(
        "max_bin=255 feature_pre_filter=false seed={seed} deterministic=true num_threads={num_threads} verbosity=-1"
    );
    if !categorical.is_empty() {
        let list = categorical.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
        parameters.push_str(&format!(" categorical_feature={list}"));
    }
    parameters
}

/// The chosen model trained again on `x, y` (all labelled rows, once validation has chosen),
/// with its parameters and its number of rounds. Its info keeps the search and the validation
/// score of the model that was validated.
pub fn refit(model: &FittedGbm, x: &Matrix, y: &[f64], seed: u64) -> Result<FittedGbm> {
    let info = &model.info;
    if x.cols != info.num_features {
        return Err(Error::Internal(format!(
            "refit on {} features of a {}-feature model",
            x.cols, info.num_features
        )));
    }
    let parameters = dataset_parameters(seed, info.num_threads, &info.categorical_features);
    let set = Dataset::new(x, &labels(y, "training")?, &parameters, None)?;
    let text = train_rounds(&set, &info.lightgbm_parameters, info.best_iteration)?;
    let info = GbmInfo { refit_rows: Some(x.rows), ..info.clone() };
    FittedGbm::from_model_text(&text, info)
}

fn mean_curve(curves: &[Vec<f64>]) -> Vec<f64> {
    let rounds = curves.iter().map(Vec::len).min().unwrap_or(0);
    (0..rounds).map(|r| curves.iter().map(|c| c[r]).sum::<f64>() / curves.len() as f64).collect()
}

/// Out-of-fold score, mean best round and mean validation curve of one configuration.
fn cross_validate(
    search: &Search,
    x: &Matrix,
    y: &[f64],
    folds: &[usize],
    parameters: &str,
    abandonable: bool,
) -> Result<Option<(f64, usize, Vec<f64>)>> {
    let width = match search.target.task {
        TaskKind::Multiclass => search.target.classes.len(),
        _ => 1,
    };
    let mut out_of_fold = vec![0.0; x.rows * width];
    let mut rounds = Vec::with_capacity(FOLDS);
    let mut curves = Vec::with_capacity(FOLDS);
    for k in 0..FOLDS {
        let fit_rows: Vec<usize> = (0..x.rows).filter(|&i| folds[i] != k).collect();
        let held_rows: Vec<usize> = (0..x.rows).filter(|&i| folds[i] == k).collect();
        let (fit_x, held_x) = (x.select_rows(&fit_rows), x.select_rows(&held_rows));
        let fit_y: Vec<f64> = fit_rows.iter().map(|&i| y[i]).collect();
        let held_y: Vec<f64> = held_rows.iter().map(|&i| y[i]).collect();
        let fit = Dataset::new(&fit_x, &labels(&fit_y, "training")?, &search.dataset_parameters, None)?;
        let held =
            Dataset::new(&held_x, &labels(&held_y, "training")?, &search.dataset_parameters, Some(&fit))?;
        let Some((text, best, curve)) = search.train_early_stopped(&fit, &held, parameters, abandonable)?
        else {
            return Ok(None);
        };
        rounds.push(best);
        curves.push(curve);
        let booster = Booster::from_string(&text)?;
        let raw = booster.predict_with_params(&held_x.data, x.cols as i32, true, "num_threads=1")?;
        for (j, &row) in held_rows.iter().enumerate() {
            out_of_fold[row * width..(row + 1) * width].copy_from_slice(&raw[j * width..(j + 1) * width]);
        }
    }
    let predictions = raw_to_predictions(search.target, out_of_fold);
    let mean_rounds = (rounds.iter().sum::<usize>() as f64 / rounds.len() as f64).round() as usize;
    Ok(Some((score(search.target, search.scorer, y, &predictions)?, mean_rounds.max(1), mean_curve(&curves))))
}

pub fn fit(data: &TrainingData, config: &GbmConfig) -> Result<FittedGbm> {
    let started = Instant::now();
    data.check_shapes()?;
    let TrainingData { train, y, valid, y_valid, target, categorical } = *data;
    if train.rows < 2 * FOLDS || valid.rows == 0 {
        return Err(Error::bad_input(format!(
            "gradient boosting needs at least {} training rows and one validation row; got {} and {}: \
             add rows to the dataset",
            2 * FOLDS,
            train.rows,
            valid.rows
        )));
    }
    let dataset_parameters = dataset_parameters(config.seed, config.num_threads, categorical);
    let search = Search {
        target,
        scorer: resolve_scorer(config.scorer, target.task)?,
        config,
        dataset_parameters,
        started,
    };
    let train_labels = labels(y, "training")?;
    let train_set = Dataset::new(train, &train_labels, &search.dataset_parameters, None)?;
    let valid_set =
        Dataset::new(valid, &labels(y_valid, "validation")?, &search.dataset_parameters, Some(&train_set))?;
    let cross_validated = train.rows < SMALL_DATA_ROWS;
    let folds = search.folds(y);

    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut trials: Vec<Trial> = Vec::new();
    let mut best: Option<(usize, Option<String>)> = None;
    for index in 0..config.max_trials.max(1) {
        if index > 0 && search.past_deadline() {
            break;
        }
        let params =
            cap_leaf_size(if index == 0 { Params::default() } else { sample_params(&mut rng) }, train.rows);
        if trials.iter().any(|t| t.params == params) {
            continue;
        }
        let trial_started = Instant::now();
        let parameters = search.booster_parameters(&params);
        let outcome = if cross_validated {
            cross_validate(&search, train, y, &folds, &parameters, index > 0)?
                .map(|(s, rounds, curve)| (s, rounds, None, curve))
        } else {
            search
                .train_early_stopped(&train_set, &valid_set, &parameters, index > 0)?
                .map(|(text, rounds, curve)| -> Result<_> {
                    Ok((search.score_of(&text, valid, y_valid)?, rounds, Some(text), curve))
                })
                .transpose()?
        };
        let Some((trial_score, best_iteration, text, validation_curve)) = outcome else { break };
        trials.push(Trial {
            params,
            score: trial_score,
            best_iteration,
            seconds: trial_started.elapsed().as_secs_f64(),
            validation_curve,
        });
        if best.as_ref().is_none_or(|(b, _)| is_better(search.scorer, trial_score, trials[*b].score)) {
            best = Some((trials.len() - 1, text));
        }
    }
    let (best_index, text) = best.ok_or_else(|| Error::Internal("the search ran no trial".into()))?;
    let chosen = trials[best_index].clone();
    let parameters = search.booster_parameters(&chosen.params);
    let text = match text {
        Some(text) => text,
        None => train_rounds(&train_set, &parameters, chosen.best_iteration)?,
    };
    let validation_score = search.score_of(&text, valid, y_valid)?;
    let info = GbmInfo {
        target: target.clone(),
        scorer: search.scorer,
        params: chosen.params,
        best_iteration: chosen.best_iteration,
        num_features: train.cols,
        categorical_features: categorical.to_vec(),
        validation_score,
        cross_validated,
        trials,
        num_threads: config.num_threads,
        lightgbm_parameters: parameters,
        refit_rows: None,
    };
    FittedGbm::from_model_text(&text, info)
}
