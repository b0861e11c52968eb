//! The linear learner on scikit-learn's small real data sets; thresholds are what scikit-learn's
//! `StandardScaler` + `LogisticRegression` / `Ridge` reach on the same split (noted per test).

use ocellus_crds::experiment::{Scorer, Task};

use super::*;
use crate::metrics::{evaluate, score};
use crate::test_data::{Split, data, joined, load, target_of};

fn fit_on(train: &Split, valid: &Split, target: &Target, categorical: &[usize]) -> FittedLinear {
    fit(&data(train, valid, target, categorical), &LinearConfig::default()).unwrap()
}

fn metric(target: &Target, split: &Split, predictions: &Predictions, name: &str) -> f64 {
    evaluate(target, &split.y, predictions).into_iter().find(|m| m.name == name).unwrap().value
}

#[test]
fn multiclass_iris_chooses_the_strength_on_validation() {
    let (train, valid, test) = load(include_str!("../../testdata/iris.csv"));
    let target = target_of(&train.y, Task::Auto);
    let model = fit_on(&train, &valid, &target, &[]);
    assert_eq!(model.name(), "LogisticRegression");
    assert_eq!(model.scorer, Scorer::LogLoss);
    assert_eq!(model.trials.len(), ALPHAS.len());
    let best = model.trials.iter().map(|t| t.score).fold(f64::INFINITY, f64::min);
    assert_eq!(model.validation_score, best, "the lowest validation log loss wins");
    assert_eq!(model.trials.iter().find(|t| t.score == best).unwrap().alpha, model.alpha);
    let predictions = model.predict(&test.x).unwrap();
    for i in 0..test.x.rows {
        let sum: f64 = predictions.probabilities(i).iter().sum();
        assert!((sum - 1.0).abs() < 1e-9, "row {i} probabilities sum to {sum}");
    }
    // scikit-learn: 0.90 (C=1) to 0.97 (C=10) on this split.
    let accuracy = metric(&target, &test, &predictions, "Accuracy");
    assert!(accuracy >= 0.9, "test accuracy {accuracy}");
}

#[test]
fn binary_breast_cancer_ranks_like_scikit_learn_and_round_trips() {
    let (train, valid, test) = load(include_str!("../../testdata/breast_cancer.csv"));
    let target = target_of(&train.y, Task::Auto);
    let model = fit_on(&train, &valid, &target, &[]);
    assert_eq!(model.scorer, Scorer::AUC);
    let predictions = model.predict(&test.x).unwrap();
    // scikit-learn: AUC 0.992-0.998 on this split.
    let auc = score(&target, Scorer::AUC, &test.y, &predictions).unwrap();
    assert!(auc > 0.985, "test AUC {auc}");

    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let loaded = FittedLinear::load(dir.path()).unwrap();
    assert_eq!(loaded, model);
    assert_eq!(loaded.predict(&test.x).unwrap(), predictions, "the saved model predicts the same numbers");
}

#[test]
fn ridge_solves_its_normal_equations_and_fits_diabetes() {
    let (train, valid, test) = load(include_str!("../../testdata/diabetes.csv"));
    let target = target_of(&train.y, Task::Regression);
    let model = fit_on(&train, &valid, &target, &[]);
    assert_eq!(model.name(), "Ridge");
    // scikit-learn's Ridge: test R2 0.55-0.57 on this split.
    let r2 = metric(&target, &test, &model.predict(&test.x).unwrap(), "R2");
    assert!(r2 > 0.5, "test R2 {r2}");

    // At the chosen strength, (XcᵀXc + αI) w = Xcᵀ yc on the standardised training inputs.
    let width = model.inputs.len();
    let x = expand(&model.inputs, &train.x);
    let rows = train.x.rows;
    let means: Vec<f64> =
        (0..width).map(|j| (0..rows).map(|i| x[i * width + j]).sum::<f64>() / rows as f64).collect();
    let y_mean = train.y.iter().sum::<f64>() / rows as f64;
    for j in 0..width {
        let mut lhs = model.alpha * model.weights[j];
        let mut rhs = 0.0;
        for i in 0..rows {
            let xij = x[i * width + j] - means[j];
            let fitted: f64 = (0..width).map(|k| (x[i * width + k] - means[k]) * model.weights[k]).sum();
            lhs += xij * fitted;
            rhs += xij * (train.y[i] - y_mean);
        }
        assert!((lhs - rhs).abs() <= 1e-6 * rhs.abs().max(1.0), "feature {j}: {lhs} != {rhs}");
    }
}

#[test]
fn categorical_codes_are_one_hot_and_missing_values_take_the_mean() {
    // y = 10 * [code == 2] + x, with some x missing: only one-hot codes can fit the jump.
    let rows: Vec<[f32; 2]> =
        (0..120).map(|i| [(i % 3) as f32, if i % 7 == 0 { f32::NAN } else { (i % 11) as f32 }]).collect();
    let y: Vec<f64> = rows
        .iter()
        .map(|r| if r[0] == 2.0 { 10.0 } else { 0.0 } + if r[1].is_nan() { 5.0 } else { r[1] as f64 })
        .collect();
    let all = Split { x: Matrix::from_rows(&rows).unwrap(), y };
    let target = target_of(&all.y, Task::Regression);
    let model = fit_on(&all, &all, &target, &[0]);
    let (x, y) = (&all.x, &all.y);
    assert_eq!(model.inputs[0], InputFeature::Categorical { codes: vec![0.0, 1.0, 2.0] });
    let Predictions::Regression(predicted) = model.predict(x).unwrap() else { panic!("regression") };
    for (i, (p, t)) in predicted.iter().zip(y).enumerate() {
        assert!(p.is_finite());
        if !rows[i][1].is_nan() {
            assert!((p - t).abs() < 0.5, "row {i}: predicted {p}, actual {t}");
        }
    }
    // An unseen code gets no category effect: between the two levels.
    let unseen = Matrix::from_rows(&[[7.0f32, 3.0]]).unwrap();
    let Predictions::Regression(p) = model.predict(&unseen).unwrap() else { panic!("regression") };
    assert!(p[0] > 3.0 && p[0] < 13.0, "unseen code predicts {}", p[0]);
    let importance = model.feature_importance();
    assert_eq!(importance.len(), 2);
    assert!(importance[0] > importance[1], "the category matters more: {importance:?}");
}

#[test]
fn a_class_absent_from_the_fit_rows_gets_probability_zero() {
    let (train, valid, _) = load(include_str!("../../testdata/iris.csv"));
    let target = target_of(&train.y, Task::Auto);
    let keep: Vec<usize> = (0..train.x.rows).filter(|&i| train.y[i] != 2.0).collect();
    let without_2 = Split { x: train.x.select_rows(&keep), y: keep.iter().map(|&i| train.y[i]).collect() };
    let model = fit_on(&without_2, &valid, &target, &[]);
    assert_eq!(model.output_classes, vec![0, 1]);
    let predictions = model.predict(&valid.x).unwrap();
    for i in 0..valid.x.rows {
        let p = predictions.probabilities(i);
        assert_eq!(p.len(), 3);
        assert_eq!(p[2], 0.0);
        assert!((p[0] + p[1] - 1.0).abs() < 1e-9);
    }
}

#[test]
fn rows_with_another_width_are_refused() {
    let (train, valid, _) = load(include_str!("../../testdata/iris.csv"));
    let target = target_of(&train.y, Task::Auto);
    let model = fit_on(&train, &valid, &target, &[]);
    let error = model.predict(&train.x.columns(0..2)).unwrap_err();
    assert!(error.is_bad_input());
    assert!(error.to_string().contains("trained on 4 features but these rows have 2"), "{error}");
}

#[test]
fn an_accuracy_scored_classifier_chooses_its_strength_by_log_loss() {
    let (train, valid, _) = load(include_str!("../../testdata/iris.csv"));
    let target = target_of(&train.y, Task::Auto);
    let config = LinearConfig { scorer: Scorer::Accuracy, ..LinearConfig::default() };
    let model = fit(&data(&train, &valid, &target, &[]), &config).unwrap();
    assert_eq!(model.scorer, Scorer::Accuracy);
    let losses: Vec<f64> =
        model.trials.iter().map(|t| t.log_loss.expect("a log loss per strength")).collect();
    let lowest = losses.iter().copied().fold(f64::INFINITY, f64::min);
    let chosen = model.trials.iter().find(|t| t.log_loss == Some(lowest)).unwrap();
    assert_eq!(chosen.alpha, model.alpha, "the lowest validation log loss chooses");
    assert_eq!(model.validation_score, chosen.score, "the reported score is the scorer's (accuracy)");
}

#[test]
fn a_refit_keeps_the_strength_and_learns_from_every_row() {
    let (train, valid, test) = load(include_str!("../../testdata/iris.csv"));
    let target = target_of(&train.y, Task::Auto);
    let model = fit_on(&train, &valid, &target, &[]);
    let all = joined(&train, &valid);
    let refitted = model.refit(&all.x, &all.y, &[]).unwrap();
    assert_eq!((refitted.alpha, refitted.refit_rows), (model.alpha, Some(all.x.rows)));
    assert_eq!((&refitted.trials, refitted.validation_score), (&model.trials, model.validation_score));
    assert_ne!(refitted.inputs, model.inputs, "standardised with every row's mean and spread");
    // The same as a fit of that one strength on every row.
    let config = LinearConfig { alphas: vec![model.alpha], ..LinearConfig::default() };
    let direct = fit(&data(&all, &all, &target, &[]), &config).unwrap();
    assert_eq!(refitted.weights, direct.weights);
    let dir = tempfile::tempdir().unwrap();
    refitted.save(dir.path()).unwrap();
    let loaded = FittedLinear::load(dir.path()).unwrap();
    assert_eq!(loaded, refitted);
    assert_eq!(loaded.predict(&test.x).unwrap(), refitted.predict(&test.x).unwrap());
}
