//! The test set, scored: the experiment's own predictions (`predictions.csv`) beside the test
//! rows' true values, and what the report computes from them.

use std::path::{Path, PathBuf};

use ocellus_tabular::task::{Target, TaskKind};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Labelled test rows with their predictions.
pub enum Evaluation {
    Classification {
        classes: Vec<String>,
        /// Encoded true class per row.
        actual: Vec<usize>,
        /// Class probabilities per row, in `classes` order.
        probabilities: Vec<Vec<f64>>,
        images: Vec<Option<PathBuf>>,
    },
    Regression {
        actual: Vec<f64>,
        predicted: Vec<f64>,
        images: Vec<Option<PathBuf>>,
    },
}

impl Evaluation {
    /// Joins `predictions.csv` (one line per test row, in the test table's order) with the test
    /// rows; rows without a target value are left out. `image_column` names the column whose
    /// images the gallery shows.
    pub fn join(
        predictions_csv: &Path,
        test_rows: &[Map<String, Value>],
        test_dir: &Path,
        target_column: &str,
        target: &Target,
        image_column: Option<&str>,
    ) -> Result<Evaluation> {
        let predictions = read_predictions(predictions_csv)?;
        if predictions.len() != test_rows.len() {
            return Err(Error::Inconsistent(format!(
                "{} has {} predictions but the test dataset {} has {} rows: run the experiment again",
                predictions_csv.display(),
                predictions.len(),
                test_dir.display(),
                test_rows.len()
            )));
        }
        let image_of = |row: &Map<String, Value>| {
            image_column
                .and_then(|c| row.get(c))
                .and_then(Value::as_str)
                .map(|cell| test_dir.join(cell))
                .filter(|p| p.is_file())
        };
        let labelled = test_rows.iter().zip(predictions).filter_map(|(row, p)| {
            let value = row.get(target_column).filter(|v| !v.is_null())?;
            Some((target.encode(value)?, p, image_of(row)))
        });
        Ok(match target.task {
            TaskKind::Regression => {
                let (mut actual, mut predicted, mut images) = (Vec::new(), Vec::new(), Vec::new());
                for (y, p, image) in labelled {
                    actual.push(y);
                    predicted.push(*p.first().unwrap_or(&f64::NAN));
                    images.push(image);
                }
                Evaluation::Regression { actual, predicted, images }
            }
            TaskKind::Binary | TaskKind::Multiclass => {
                let classes = target.classes.clone();
                let (mut actual, mut probabilities, mut images) = (Vec::new(), Vec::new(), Vec::new());
                for (y, p, image) in labelled {
                    if p.len() != classes.len() {
                        return Err(Error::Inconsistent(format!(
                            "{}: {} probabilities per row for {} classes: run the experiment again",
                            predictions_csv.display(),
                            p.len(),
                            classes.len()
                        )));
                    }
                    actual.push(y as usize);
                    probabilities.push(p);
                    images.push(image);
                }
                Evaluation::Classification { classes, actual, probabilities, images }
            }
        })
    }

    pub fn len(&self) -> usize {
        match self {
            Evaluation::Classification { actual, .. } => actual.len(),
            Evaluation::Regression { actual, .. } => actual.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per row: the probability columns (`p_<class>`) of a classification, or the one prediction of
/// a regression.
fn read_predictions(path: &Path) -> Result<Vec<Vec<f64>>> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| Error::csv(path, e))?;
    let headers = reader.headers().map_err(|e| Error::csv(path, e))?.clone();
    let probability_columns: Vec<usize> =
        headers.iter().enumerate().filter(|(_, h)| h.starts_with("p_")).map(|(i, _)| i).collect();
    let columns = if probability_columns.is_empty() {
        vec![
            headers
                .iter()
                .position(|h| h == "prediction")
                .ok_or_else(|| Error::Inconsistent(format!("{} has no prediction column", path.display())))?,
        ]
    } else {
        probability_columns
    };
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| Error::csv(path, e))?;
        rows.push(
            columns.iter().map(|&i| record.get(i).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)).collect(),
        );
    }
    Ok(rows)
}

pub fn argmax(values: &[f64]) -> usize {
    (0..values.len()).fold(0, |best, i| if values[i] > values[best] { i } else { best })
}

/// `counts[actual][predicted]`.
pub fn confusion_matrix(classes: usize, actual: &[usize], predicted: &[usize]) -> Vec<Vec<usize>> {
    let mut counts = vec![vec![0; classes]; classes];
    for (&a, &p) in actual.iter().zip(predicted) {
        counts[a][p] += 1;
    }
    counts
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

/// Precision, recall and F1 of every class (0 where undefined, as scikit-learn's `zero_division=0`).
pub fn per_class_scores(counts: &[Vec<usize>]) -> Vec<ClassScores> {
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    (0..counts.len())
        .map(|k| {
            let correct = counts[k][k];
            let support: usize = counts[k].iter().sum();
            let predicted: usize = counts.iter().map(|row| row[k]).sum();
            let (precision, recall) = (ratio(correct, predicted), ratio(correct, support));
            let f1 =
                if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
            ClassScores { precision, recall, f1, support }
        })
        .collect()
}

/// ROC curve of a positive-class score: (false positive rate, true positive rate) at every
/// distinct threshold, from (0, 0) to (1, 1), and the area under it (ties count half).
pub fn roc_curve(positive: &[bool], score: &[f64]) -> (Vec<(f64, f64)>, f64) {
    let mut order: Vec<usize> = (0..score.len()).collect();
    order.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
    let positives = positive.iter().filter(|&&p| p).count() as f64;
    let negatives = positive.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return (Vec::new(), f64::NAN);
    }
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut points = vec![(0.0, 0.0)];
    let mut area = 0.0;
    let mut i = 0;
    while i < order.len() {
        let threshold = score[order[i]];
        while i < order.len() && score[order[i]] == threshold {
            if positive[order[i]] {
                tp += 1.0
            } else {
                fp += 1.0
            }
            i += 1;
        }
        let (x0, y0) = *points.last().expect("starts with (0, 0)");
        let point = (fp / negatives, tp / positives);
        area += (point.0 - x0) * (point.1 + y0) / 2.0;
        points.push(point);
    }
    (points, area)
}

/// The `k` rows with the largest error, largest first: one minus the probability given to the
/// true class, or the absolute residual.
pub fn largest_errors(evaluation: &Evaluation, k: usize) -> Vec<usize> {
    let errors: Vec<f64> = match evaluation {
        Evaluation::Classification { actual, probabilities, .. } => {
            actual.iter().zip(probabilities).map(|(&a, p)| 1.0 - p[a]).collect()
        }
        Evaluation::Regression { actual, predicted, .. } => {
            actual.iter().zip(predicted).map(|(a, p)| (p - a).abs()).collect()
        }
    };
    let mut order: Vec<usize> = (0..errors.len()).filter(|&i| errors[i].is_finite()).collect();
    order.sort_by(|&a, &b| errors[b].total_cmp(&errors[a]));
    order.truncate(k);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_confusion_matrix_counts_actual_rows_by_predicted_columns() {
        let counts = confusion_matrix(3, &[0, 0, 1, 2, 2, 2], &[0, 1, 1, 2, 2, 0]);
        assert_eq!(counts, vec![vec![1, 1, 0], vec![0, 1, 0], vec![1, 0, 2]]);
        let scores = per_class_scores(&counts);
        // class 0: 1 of 2 predictions right, 1 of 2 rows found
        assert_eq!((scores[0].precision, scores[0].recall, scores[0].support), (0.5, 0.5, 2));
        assert_eq!(scores[1].precision, 0.5);
        assert_eq!(scores[1].recall, 1.0);
        assert!((scores[1].f1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!((scores[2].precision, scores[2].recall), (1.0, 2.0 / 3.0));
    }

    #[test]
    fn a_class_never_predicted_scores_zero_not_nan() {
        let scores = per_class_scores(&confusion_matrix(2, &[0, 1], &[0, 0]));
        assert_eq!(scores[1], ClassScores { precision: 0.0, recall: 0.0, f1: 0.0, support: 1 });
    }

    #[test]
    fn the_roc_area_matches_the_rank_statistic() {
        // scikit-learn: roc_auc_score([1,0,1,1,0,0], [0.9,0.8,0.7,0.4,0.4,0.1]) == 0.7222 (6.5 of 9 pairs)
        let (points, area) =
            roc_curve(&[true, false, true, true, false, false], &[0.9, 0.8, 0.7, 0.4, 0.4, 0.1]);
        assert!((area - 13.0 / 18.0).abs() < 1e-12, "{area}");
        assert_eq!(points.first(), Some(&(0.0, 0.0)));
        assert_eq!(points.last(), Some(&(1.0, 1.0)));
        // tied scores move both rates in one step
        assert!(points.contains(&(1.0 / 3.0, 2.0 / 3.0)) && points.contains(&(2.0 / 3.0, 1.0)));
    }

    #[test]
    fn largest_errors_rank_by_the_probability_missing_from_the_true_class() {
        let evaluation = Evaluation::Classification {
            classes: vec!["a".into(), "b".into()],
            actual: vec![0, 1, 1],
            probabilities: vec![vec![0.9, 0.1], vec![0.8, 0.2], vec![0.4, 0.6]],
            images: vec![None; 3],
        };
        assert_eq!(largest_errors(&evaluation, 2), vec![1, 2]);
        let regression = Evaluation::Regression {
            actual: vec![1.0, 5.0, 2.0],
            predicted: vec![1.5, 1.0, 2.0],
            images: vec![None; 3],
        };
        assert_eq!(largest_errors(&regression, 5), vec![1, 0, 2]);
    }
}
