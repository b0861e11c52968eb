//! Small real data sets that ship with scikit-learn (testdata/*.csv, the target in the last
//! column), split the same way for every learner's tests.

use ocellus_crds::experiment::Task;
use serde_json::json;

use crate::learner::TrainingData;
use crate::matrix::Matrix;
use crate::task::Target;

pub struct Split {
    pub x: Matrix,
    pub y: Vec<f64>,
}

/// Rows i % 5 == 0 validate, i % 5 == 1 test, the rest train.
pub fn load(csv: &str) -> (Split, Split, Split) {
    let mut splits: [(Vec<Vec<f32>>, Vec<f64>); 3] = Default::default();
    for (i, line) in csv.lines().enumerate() {
        let values: Vec<f64> = line.split(',').map(|v| v.parse().unwrap()).collect();
        let (features, target) = values.split_at(values.len() - 1);
        let split = match i % 5 {
            0 => 1,
            1 => 2,
            _ => 0,
        };
        splits[split].0.push(features.iter().map(|v| *v as f32).collect());
        splits[split].1.push(target[0]);
    }
    let [train, valid, test] = splits.map(|(rows, y)| Split { x: Matrix::from_rows(&rows).unwrap(), y });
    (train, valid, test)
}

pub fn target_of(y: &[f64], task: Task) -> Target {
    Target::detect(&y.iter().map(|v| json!(v)).collect::<Vec<_>>(), task).unwrap()
}

/// Fit on `train`, validate on `valid`.
pub fn data<'a>(
    train: &'a Split,
    valid: &'a Split,
    target: &'a Target,
    categorical: &'a [usize],
) -> TrainingData<'a> {
    TrainingData { train: &train.x, y: &train.y, valid: &valid.x, y_valid: &valid.y, target, categorical }
}

/// The rows of `a` then those of `b`: the fit and validation rows a refit trains on.
pub fn joined(a: &Split, b: &Split) -> Split {
    let rows: Vec<&[f32]> =
        (0..a.x.rows).map(|i| a.x.row(i)).chain((0..b.x.rows).map(|i| b.x.row(i))).collect();
    Split { x: Matrix::from_rows(&rows).unwrap(), y: a.y.iter().chain(&b.y).copied().collect() }
}
