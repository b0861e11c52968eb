//! Scores of predictions against the truth, computed as scikit-learn computes them.

use ocellus_crds::common::MetricValue;
use ocellus_crds::experiment::Scorer;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::task::{Target, TaskKind};

/// What a model predicts for n rows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Predictions {
    Regression(Vec<f64>),
    /// Row-major n x `classes` probabilities; binary tasks have `classes == 2`.
    Probabilities {
        classes: usize,
        data: Vec<f64>,
    },
}

impl Predictions {
    pub fn len(&self) -> usize {
        match self {
            Predictions::Regression(v) => v.len(),
            Predictions::Probabilities { classes, data } => data.len() / (*classes).max(1),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The probabilities of row `i` (empty for regression).
    pub fn probabilities(&self, i: usize) -> &[f64] {
        match self {
            Predictions::Regression(_) => &[],
            Predictions::Probabilities { classes, data } => &data[i * classes..(i + 1) * classes],
        }
    }

    /// The predicted value (regression) or class index (first of equal maxima) of every row.
    pub fn point(&self) -> Vec<f64> {
        match self {
            Predictions::Regression(v) => v.clone(),
            Predictions::Probabilities { .. } => (0..self.len())
                .map(|i| {
                    let p = self.probabilities(i);
                    (0..p.len()).fold(0, |best, k| if p[k] > p[best] { k } else { best }) as f64
                })
                .collect(),
        }
    }
}

/// The scorer `Auto` stands for, as Driverless AI chooses it: RMSE for regression, AUC for
/// binary, LogLoss for multiclass. A classification scorer on a regression is a bad input.
pub fn resolve_scorer(scorer: Scorer, task: TaskKind) -> Result<Scorer> {
    let regression = task == TaskKind::Regression;
    match scorer {
        Scorer::Auto => Ok(match task {
            TaskKind::Regression => Scorer::RMSE,
            TaskKind::Binary => Scorer::AUC,
            TaskKind::Multiclass => Scorer::LogLoss,
        }),
        Scorer::RMSE | Scorer::MAE | Scorer::R2 if !regression => Err(Error::bad_input(format!(
            "scorer {scorer:?} is for regression, but the target is a {task:?} classification: use \
             AUC, LogLoss, Accuracy or F1 (or Auto)"
        ))),
        Scorer::AUC | Scorer::LogLoss | Scorer::Accuracy | Scorer::F1 if regression => {
            Err(Error::bad_input(format!(
                "scorer {scorer:?} is for classification, but the target is numeric: use RMSE, MAE or R2 (or Auto)"
            )))
        }
        other => Ok(other),
    }
}

/// How score `a` ranks against score `b` under `scorer`: `Less` when `a` is better. A total
/// order, so every sort and every "best of" agrees: NaN ranks after every number (and equal to
/// another NaN), equal scores are `Equal` (a stable sort keeps their order; `min_by` keeps the
/// first), and `-0.0` equals `0.0`.
pub fn compare(scorer: Scorer, a: f64, b: f64) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => {
            let ascending = a.partial_cmp(&b).expect("numbers compare");
            if greater_is_better(scorer) { ascending.reverse() } else { ascending }
        }
    }
}

/// Whether `a` is a strictly better score than `b` (NaN never is).
pub fn is_better(scorer: Scorer, a: f64, b: f64) -> bool {
    compare(scorer, a, b) == std::cmp::Ordering::Less
}

pub fn greater_is_better(scorer: Scorer) -> bool {
    matches!(scorer, Scorer::R2 | Scorer::AUC | Scorer::Accuracy | Scorer::F1)
}

pub fn scorer_name(scorer: Scorer) -> &'static str {
    match scorer {
        Scorer::Auto => "Auto",
        Scorer::RMSE => "RMSE",
        Scorer::MAE => "MAE",
        Scorer::R2 => "R2",
        Scorer::AUC => "AUC",
        Scorer::LogLoss => "LogLoss",
        Scorer::Accuracy => "Accuracy",
        Scorer::F1 => "F1",
    }
}

/// Every metric that applies to the task. AUC is left out when y_true holds a single class
/// (it is undefined there, as in scikit-learn).
pub fn evaluate(target: &Target, y_true: &[f64], predictions: &Predictions) -> Vec<MetricValue> {
    let scorers: &[Scorer] = match target.task {
        TaskKind::Regression => &[Scorer::RMSE, Scorer::MAE, Scorer::R2],
        _ => &[Scorer::AUC, Scorer::LogLoss, Scorer::Accuracy, Scorer::F1],
    };
    scorers
        .iter()
        .filter_map(|&s| {
            score(target, s, y_true, predictions)
                .ok()
                .filter(|v| v.is_finite())
                .map(|value| MetricValue { name: scorer_name(s).to_string(), value })
        })
        .collect()
}

/// One scorer's value. `scorer` must be resolved (not `Auto`).
pub fn score(target: &Target, scorer: Scorer, y_true: &[f64], predictions: &Predictions) -> Result<f64> {
    if y_true.len() != predictions.len() {
        return Err(Error::Internal(format!(
            "{} true values but {} predictions",
            y_true.len(),
            predictions.len()
        )));
    }
    if y_true.is_empty() {
        return Err(Error::Internal("scoring zero rows".into()));
    }
    let classes = target.classes.len();
    let n = y_true.len() as f64;
    let value = match (scorer, predictions) {
        (Scorer::RMSE, Predictions::Regression(p)) => {
            (y_true.iter().zip(p).map(|(y, p)| (y - p).powi(2)).sum::<f64>() / n).sqrt()
        }
        (Scorer::MAE, Predictions::Regression(p)) => {
            y_true.iter().zip(p).map(|(y, p)| (y - p).abs()).sum::<f64>() / n
        }
        (Scorer::R2, Predictions::Regression(p)) => {
            let mean = y_true.iter().sum::<f64>() / n;
            let residual: f64 = y_true.iter().zip(p).map(|(y, p)| (y - p).powi(2)).sum();
            let total: f64 = y_true.iter().map(|y| (y - mean).powi(2)).sum();
            if total == 0.0 { f64::NAN } else { 1.0 - residual / total }
        }
        (Scorer::AUC, Predictions::Probabilities { .. }) => {
            let per_class: Vec<f64> = (if classes == 2 { 1..2 } else { 0..classes })
                .map(|k| {
                    let positive: Vec<bool> = y_true.iter().map(|&y| y as usize == k).collect();
                    let scores: Vec<f64> =
                        (0..y_true.len()).map(|i| predictions.probabilities(i)[k]).collect();
                    binary_auc(&positive, &scores)
                })
                .collect();
            per_class.iter().sum::<f64>() / per_class.len() as f64
        }
        (Scorer::LogLoss, Predictions::Probabilities { .. }) => {
            let eps = f64::EPSILON;
            y_true
                .iter()
                .enumerate()
                .map(|(i, &y)| {
                    let p = predictions.probabilities(i);
                    let total: f64 = p.iter().map(|q| q.clamp(eps, 1.0 - eps)).sum();
                    -(p[y as usize].clamp(eps, 1.0 - eps) / total).ln()
                })
                .sum::<f64>()
                / n
        }
        (Scorer::Accuracy, Predictions::Probabilities { .. }) => {
            let point = predictions.point();
            y_true.iter().zip(&point).filter(|(y, p)| y == p).count() as f64 / n
        }
        (Scorer::F1, Predictions::Probabilities { .. }) => {
            let point = predictions.point();
            if classes == 2 {
                f1_of_class(y_true, &point, 1.0)
            } else {
                // Macro average over the labels present in the truth or the predictions.
                let mut labels: Vec<f64> = y_true.iter().chain(&point).copied().collect();
                labels.sort_by(f64::total_cmp);
                labels.dedup();
                labels.iter().map(|&k| f1_of_class(y_true, &point, k)).sum::<f64>() / labels.len() as f64
            }
        }
        (Scorer::Auto, _) => return Err(Error::Internal("score() needs a resolved scorer".into())),
        (scorer, _) => {
            return Err(Error::Internal(format!("scorer {scorer:?} does not apply to {:?}", target.task)));
        }
    };
    Ok(value)
}

/// Area under the ROC curve by the rank-sum (Mann-Whitney) formula, ties sharing their mean rank.
/// NaN when only one class is present.
fn binary_auc(positive: &[bool], scores: &[f64]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += order[i..=j].iter().filter(|&&k| positive[k]).count() as f64 * mean_rank;
        i = j + 1;
    }
    let p = positive.iter().filter(|&&b| b).count() as f64;
    let q = positive.len() as f64 - p;
    if p == 0.0 || q == 0.0 {
        return f64::NAN;
    }
    (rank_sum - p * (p + 1.0) / 2.0) / (p * q)
}

/// F1 of one class; 0 when it is neither predicted nor present (scikit-learn's zero_division=0).
fn f1_of_class(y_true: &[f64], predicted: &[f64], class: f64) -> f64 {
    let tp = y_true.iter().zip(predicted).filter(|(y, p)| **y == class && **p == class).count() as f64;
    let predicted_n = predicted.iter().filter(|p| **p == class).count() as f64;
    let true_n = y_true.iter().filter(|y| **y == class).count() as f64;
    if predicted_n + true_n == 0.0 { 0.0 } else { 2.0 * tp / (predicted_n + true_n) }
}

#[cfg(test)]
mod tests {
    //! Expected values were computed once with scikit-learn 1.7.2 (`sklearn.metrics`:
    //! root_mean_squared_error, mean_absolute_error, r2_score, roc_auc_score (multi_class="ovr",
    //! average="macro"), log_loss, accuracy_score, f1_score (average="macro" for multiclass)).
    use super::*;

    /// The operator's status server accepts only the contract's metric names: a report of
    /// metrics named otherwise is refused with 400 (it was, when the contract said "rmse").
    #[test]
    fn every_scorer_name_is_a_metric_name_the_contract_accepts() {
        use ocellus_crds::contract::report::METRIC_NAMES;
        let scorers = [
            Scorer::RMSE,
            Scorer::MAE,
            Scorer::R2,
            Scorer::AUC,
            Scorer::LogLoss,
            Scorer::Accuracy,
            Scorer::F1,
        ];
        let names: Vec<&str> = scorers.into_iter().map(scorer_name).collect();
        assert_eq!(names, METRIC_NAMES);
    }

    fn metric(metrics: &[MetricValue], name: &str) -> f64 {
        metrics.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("no {name}")).value
    }

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn regression_metrics_match_scikit_learn() {
        let target = Target { task: TaskKind::Regression, classes: vec![] };
        let m = evaluate(
            &target,
            &[3.0, -0.5, 2.0, 7.0, 4.2],
            &Predictions::Regression(vec![2.5, 0.0, 2.0, 8.0, 3.9]),
        );
        close(metric(&m, "RMSE"), 0.5639148871948674);
        close(metric(&m, "MAE"), 0.4600000000000001);
        close(metric(&m, "R2"), 0.9480256276150627);
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn binary_metrics_match_scikit_learn() {
        let target = Target { task: TaskKind::Binary, classes: vec!["no".into(), "yes".into()] };
        let p1 = [0.1, 0.4, 0.35, 0.8, 0.4, 0.2, 0.9, 0.65];
        let data = p1.iter().flat_map(|p| [1.0 - p, *p]).collect();
        let predictions = Predictions::Probabilities { classes: 2, data };
        let m = evaluate(&target, &[0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0], &predictions);
        close(metric(&m, "AUC"), 0.78125);
        close(metric(&m, "LogLoss"), 0.5229710923226967);
        close(metric(&m, "Accuracy"), 0.625);
        close(metric(&m, "F1"), 0.5714285714285714);
    }

    #[test]
    fn multiclass_metrics_match_scikit_learn() {
        let target = Target { task: TaskKind::Multiclass, classes: vec!["a".into(), "b".into(), "c".into()] };
        let data = vec![
            0.7, 0.2, 0.1, 0.2, 0.5, 0.3, 0.1, 0.3, 0.6, 0.3, 0.4, 0.3, 0.1, 0.8, 0.1, 0.4, 0.4, 0.2, 0.2,
            0.2, 0.6,
        ];
        let predictions = Predictions::Probabilities { classes: 3, data };
        let y = [0.0, 1.0, 2.0, 2.0, 1.0, 0.0, 2.0];
        assert_eq!(predictions.point(), vec![0.0, 1.0, 2.0, 1.0, 1.0, 0.0, 2.0]);
        let m = evaluate(&target, &y, &predictions);
        close(metric(&m, "AUC"), 0.986111111111111);
        close(metric(&m, "LogLoss"), 0.630697208506423);
        close(metric(&m, "Accuracy"), 0.8571428571428571);
        close(metric(&m, "F1"), 0.8666666666666667);
    }

    #[test]
    fn auc_is_left_out_when_one_class_is_present() {
        let target = Target { task: TaskKind::Binary, classes: vec!["no".into(), "yes".into()] };
        let predictions = Predictions::Probabilities { classes: 2, data: vec![0.4, 0.6, 0.9, 0.1] };
        let m = evaluate(&target, &[1.0, 1.0], &predictions);
        assert!(m.iter().all(|m| m.name != "AUC"));
        close(metric(&m, "Accuracy"), 0.5);
    }

    /// The properties of a total order, over every triple of special values (NaN, infinities,
    /// both zeros, ties) and seeded random ones, for a scorer of each direction; and sorting
    /// with it never panics and puts NaN last.
    #[test]
    fn compare_is_a_total_order_with_nan_last() {
        use rand::{Rng, SeedableRng};
        use std::cmp::Ordering::{Equal, Greater, Less};
        let mut values =
            vec![f64::NAN, -f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0, 1.0, 1.0, -2.5, 1e-300];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
        values.extend((0..14).map(|_| rng.gen_range(-3.0..3.0)));
        for scorer in [Scorer::RMSE, Scorer::AUC] {
            let cmp = |a: f64, b: f64| compare(scorer, a, b);
            for &a in &values {
                assert_eq!(cmp(a, a), Equal, "reflexive at {a}");
                for &b in &values {
                    assert_eq!(cmp(a, b), cmp(b, a).reverse(), "antisymmetric at {a}, {b}");
                    assert_eq!(cmp(a, b) == Less, is_better(scorer, a, b));
                    for &c in &values {
                        if cmp(a, b) != Greater && cmp(b, c) != Greater {
                            assert_ne!(cmp(a, c), Greater, "transitive at {a}, {b}, {c}");
                        }
                    }
                }
            }
            let mut sorted = values.clone();
            sorted.sort_by(|a, b| cmp(*a, *b));
            assert!(sorted[sorted.len() - 2..].iter().all(|v| v.is_nan()), "NaN last: {sorted:?}");
            let best = if greater_is_better(scorer) { f64::INFINITY } else { f64::NEG_INFINITY };
            assert_eq!(sorted[0], best, "{scorer:?}: {sorted:?}");
        }
        assert!(is_better(Scorer::RMSE, 1.0, f64::NAN) && !is_better(Scorer::RMSE, f64::NAN, 1.0));
        assert_eq!(compare(Scorer::RMSE, 0.0, -0.0), Equal, "a tie, not an order by sign");
    }

    #[test]
    fn scorers_resolve_like_driverless_ai() {
        assert_eq!(resolve_scorer(Scorer::Auto, TaskKind::Regression).unwrap(), Scorer::RMSE);
        assert_eq!(resolve_scorer(Scorer::Auto, TaskKind::Binary).unwrap(), Scorer::AUC);
        assert_eq!(resolve_scorer(Scorer::Auto, TaskKind::Multiclass).unwrap(), Scorer::LogLoss);
        assert_eq!(resolve_scorer(Scorer::F1, TaskKind::Multiclass).unwrap(), Scorer::F1);
        assert!(resolve_scorer(Scorer::AUC, TaskKind::Regression).unwrap_err().is_bad_input());
        assert!(resolve_scorer(Scorer::R2, TaskKind::Binary).unwrap_err().is_bad_input());
        assert!(greater_is_better(Scorer::AUC) && greater_is_better(Scorer::R2));
        assert!(!greater_is_better(Scorer::RMSE) && !greater_is_better(Scorer::LogLoss));
    }
}
