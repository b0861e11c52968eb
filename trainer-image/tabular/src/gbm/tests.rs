//! LightGBM on small real data sets that ship with scikit-learn (written to testdata/ as CSV,
//! the target in the last column).

use std::time::Duration;

use ocellus_crds::experiment::{Scorer, Task};

use super::*;
use crate::metrics::{evaluate, score};
use crate::test_data::{Split, data, joined, load, target_of};

fn quick(seed: u64) -> GbmConfig {
    GbmConfig { budget: Duration::from_secs(20), seed, max_trials: 3, ..GbmConfig::default() }
}

fn fit(train: &Split, valid: &Split, target: &Target, config: &GbmConfig) -> FittedGbm {
    Gbm::fit(&data(train, valid, target, &[]), config).unwrap()
}

#[test]
fn binary_breast_cancer_early_stops_on_validation_and_round_trips() {
    let (train, valid, test) = load(include_str!("../../testdata/breast_cancer.csv"));
    let target = target_of(&train.y, Task::Auto);
    assert_eq!(target.task, TaskKind::Binary);
    let model = fit(&train, &valid, &target, &quick(1));
    assert!(!model.info.cross_validated, "341 training rows use the validation split");
    assert_eq!(model.info.scorer, Scorer::AUC);
    assert_eq!(model.info.trials.len(), 3);
    assert!(model.info.trials.iter().all(|t| t.best_iteration >= 1 && t.seconds > 0.0));
    for trial in &model.info.trials {
        // Every round's validation log loss, through early stopping's patience past the best.
        let curve = &trial.validation_curve;
        assert!(
            curve.len() >= trial.best_iteration,
            "{} rounds for best {}",
            curve.len(),
            trial.best_iteration
        );
        let lowest = curve.iter().copied().fold(f64::INFINITY, f64::min);
        assert_eq!(curve[trial.best_iteration - 1], lowest, "the best round is the curve's minimum");
        assert!(curve[0] > lowest, "boosting lowers the validation loss");
    }
    let best = model.info.trials.iter().map(|t| t.score).fold(f64::MIN, f64::max);
    assert_eq!(model.info.validation_score, best);

    let predictions = model.predict(&test.x).unwrap();
    let auc = score(&target, Scorer::AUC, &test.y, &predictions).unwrap();
    assert!(auc > 0.95, "test AUC {auc}");
    assert_eq!(evaluate(&target, &test.y, &predictions).len(), 4);

    let importance = model.feature_importance().unwrap();
    assert_eq!(importance.len(), 30);
    assert!(importance.iter().all(|g| *g >= 0.0) && importance.iter().any(|g| *g > 0.0));

    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let loaded = FittedGbm::load(dir.path()).unwrap();
    assert_eq!(loaded.info, model.info);
    assert_eq!(loaded.predict(&test.x).unwrap(), predictions);
}

#[test]
fn a_fit_repeats_exactly_for_a_seed() {
    let (train, valid, test) = load(include_str!("../../testdata/breast_cancer.csv"));
    let target = target_of(&train.y, Task::Auto);
    let config = GbmConfig { max_trials: 2, ..quick(7) };
    let a = fit(&train, &valid, &target, &config);
    let b = fit(&train, &valid, &target, &config);
    assert_eq!(a.predict(&test.x).unwrap(), b.predict(&test.x).unwrap());
    assert_eq!(a.info.params, b.info.params);
}

#[test]
fn small_regression_chooses_rounds_by_cross_validation() {
    let (train, valid, test) = load(include_str!("../../testdata/diabetes.csv"));
    let target = target_of(&train.y, Task::Auto);
    assert_eq!(target.task, TaskKind::Regression);
    let model = fit(&train, &valid, &target, &quick(3));
    assert!(model.info.cross_validated, "{} training rows", train.x.rows);
    assert_eq!(model.info.scorer, Scorer::RMSE);
    // The folds' mean l2 per round, over the rounds every fold reached.
    let curve = &model.info.trials[0].validation_curve;
    assert!(!curve.is_empty() && curve.iter().all(|v| v.is_finite() && *v > 0.0));
    assert!(curve.iter().copied().fold(f64::INFINITY, f64::min) < curve[0]);
    let predictions = model.predict(&test.x).unwrap();
    // Predicting the training mean scores R2 ~ 0; boosting on diabetes reaches about 0.4.
    let r2 = score(&target, Scorer::R2, &test.y, &predictions).unwrap();
    assert!(r2 > 0.25, "test R2 {r2}");
}

#[test]
fn multiclass_iris_gives_probabilities() {
    let (train, valid, test) = load(include_str!("../../testdata/iris.csv"));
    let target = target_of(&train.y, Task::Auto);
    assert_eq!(target.task, TaskKind::Multiclass);
    let model = fit(&train, &valid, &target, &quick(5));
    assert_eq!(model.info.scorer, Scorer::LogLoss);
    let predictions = model.predict(&test.x).unwrap();
    for i in 0..predictions.len() {
        let p = predictions.probabilities(i);
        assert_eq!(p.len(), 3);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    }
    let accuracy = score(&target, Scorer::Accuracy, &test.y, &predictions).unwrap();
    assert!(accuracy > 0.85, "test accuracy {accuracy}");
}

#[test]
fn categorical_features_split_by_category() {
    // y depends on a category code in a way no single threshold on the code captures.
    let effect = [3.0, -2.0, 5.0, -4.0, 1.0, -1.0];
    let rows: Vec<Vec<f32>> = (0..600).map(|i| vec![(i * 7 % 6) as f32, (i % 13) as f32]).collect();
    let y: Vec<f64> = rows.iter().map(|r| effect[r[0] as usize] + 0.01 * r[1] as f64).collect();
    let x = Matrix::from_rows(&rows).unwrap();
    let train: Vec<usize> = (0..400).collect();
    let valid: Vec<usize> = (400..600).collect();
    let target = Target { task: TaskKind::Regression, classes: vec![] };
    let pick = |idx: &[usize]| idx.iter().map(|&i| y[i]).collect::<Vec<_>>();
    let config = GbmConfig { max_trials: 1, ..quick(0) };
    let (train_x, valid_x, y_train, y_valid) =
        (x.select_rows(&train), x.select_rows(&valid), pick(&train), pick(&valid));
    let data = TrainingData {
        train: &train_x,
        y: &y_train,
        valid: &valid_x,
        y_valid: &y_valid,
        target: &target,
        categorical: &[0],
    };
    let model = Gbm::fit(&data, &config).unwrap();
    assert_eq!(model.info.categorical_features, vec![0]);
    assert!(model.info.validation_score < 0.1, "RMSE {}", model.info.validation_score);
}

#[test]
fn the_first_trial_always_runs_even_without_budget() {
    let (train, valid, _) = load(include_str!("../../testdata/breast_cancer.csv"));
    let target = target_of(&train.y, Task::Auto);
    let config = GbmConfig { budget: Duration::ZERO, ..quick(0) };
    assert_eq!(fit(&train, &valid, &target, &config).info.trials.len(), 1);
}

#[test]
fn bad_input_is_a_clear_error() {
    let (train, valid, _) = load(include_str!("../../testdata/iris.csv"));
    let target = target_of(&train.y, Task::Auto);
    let few = Split { x: train.x.select_rows(&[0, 1, 2]), y: train.y[..3].to_vec() };
    let e = Gbm::fit(&data(&few, &valid, &target, &[]), &quick(0)).err().unwrap();
    assert!(e.is_bad_input() && e.to_string().contains("at least 10 training rows"), "{e}");

    let mut y = train.y.clone();
    y[4] = f64::NAN;
    let unlabelled = Split { x: train.x.clone(), y };
    let e = Gbm::fit(&data(&unlabelled, &valid, &target, &[]), &quick(0)).err().unwrap();
    assert!(e.is_bad_input() && e.to_string().contains("training row 4"), "{e}");

    let e = Gbm::fit(&data(&train, &valid, &target, &[]), &GbmConfig { scorer: Scorer::RMSE, ..quick(0) })
        .err()
        .unwrap();
    assert!(e.is_bad_input(), "{e}");

    let model = fit(&train, &valid, &target, &GbmConfig { max_trials: 1, ..quick(0) });
    let e = model.predict(&Matrix::zeros(2, 3)).unwrap_err();
    assert!(e.is_bad_input() && e.to_string().contains("trained on 4 features"), "{e}");

    let missing = tempfile::tempdir().unwrap();
    let e = FittedGbm::load(missing.path()).err().unwrap();
    assert!(e.to_string().contains("is") && e.to_string().contains("a saved model"), "{e}");
}

#[test]
fn a_refit_trains_the_chosen_rounds_on_every_row() {
    let (train, valid, test) = load(include_str!("../../testdata/breast_cancer.csv"));
    let target = target_of(&train.y, Task::Auto);
    let model = fit(&train, &valid, &target, &quick(1));
    let all = joined(&train, &valid);
    let refitted = model.refit(&all.x, &all.y, 1).unwrap();
    assert_eq!(refitted.info.refit_rows, Some(all.x.rows));
    assert_eq!(
        GbmInfo { refit_rows: None, ..refitted.info.clone() },
        model.info,
        "the search's record is kept"
    );
    let before = model.predict(&test.x).unwrap();
    let after = refitted.predict(&test.x).unwrap();
    assert_ne!(after, before, "new trees, from more rows");
    let auc = score(&target, Scorer::AUC, &test.y, &after).unwrap();
    assert!(auc > 0.95, "test AUC {auc}");
    assert_eq!(refitted.refit(&all.x, &all.y, 1).unwrap().predict(&test.x).unwrap(), after, "deterministic");
    let dir = tempfile::tempdir().unwrap();
    refitted.save(dir.path()).unwrap();
    let loaded = FittedGbm::load(dir.path()).unwrap();
    assert_eq!(loaded.info, refitted.info);
    assert_eq!(loaded.predict(&test.x).unwrap(), after);
    assert!(model.refit(&all.x.columns(0..3), &all.y, 1).is_err(), "a refit needs the model's features");
}
