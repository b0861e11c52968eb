//! What kind of problem the target column poses, and how its values become numbers.

use std::collections::BTreeMap;

use ocellus_crds::experiment::Task;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// A numeric target with more distinct values than this (or with any fractional value) is a
/// regression under `Task::Auto`; fewer distinct integers are class labels (digits 0-9, ratings).
pub const MAX_AUTO_CLASSES: usize = 20;

/// Rows a class needs so that both the training and the validation split can hold one.
pub const MIN_ROWS_PER_CLASS: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskKind {
    Regression,
    Binary,
    Multiclass,
}

/// The resolved task and, for classification, the label of each class index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub task: TaskKind,
    /// Class labels sorted (numerically when all are numbers); index = encoded value. Empty for
    /// regression.
    pub classes: Vec<String>,
}

/// A cell that counts as missing: null, or a blank string.
pub fn is_missing(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// A cell as a number: a JSON number, or a string that parses as one (CSV cells are strings).
pub fn as_number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        _ => None,
    }
}

/// A cell as a class label.
pub fn as_label(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) => Some(s.trim().to_string()),
        // Imported tables store every number as a float: the label 3 arrives as 3.0.
        Value::Number(n) => Some(match n.as_f64() {
            Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{}", x as i64),
            _ => n.to_string(),
        }),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

impl Target {
    pub fn detect(values: &[Value], requested: Task) -> Result<Target> {
        let present: Vec<&Value> = values.iter().filter(|v| !is_missing(v)).collect();
        if present.is_empty() {
            return Err(Error::bad_input(format!(
                "the target column has no values in any of its {} rows: check the target column name \
                 and that the dataset's labels were imported",
                values.len()
            )));
        }
        let numbers: Option<Vec<f64>> = present.iter().map(|v| as_number(v)).collect();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for v in &present {
            *counts.entry(as_label(v).expect("present values have labels")).or_default() += 1;
        }
        if counts.len() == 1 {
            let only = counts.keys().next().expect("one class");
            return Err(Error::bad_input(format!(
                "the target column is constant (every one of its {} values is {only:?}): there is \
                 nothing to learn; choose another target column",
                present.len()
            )));
        }
        let regression = match requested {
            Task::Regression => {
                if numbers.is_none() {
                    let bad = present.iter().find(|v| as_number(v).is_none()).expect("a non-number");
                    return Err(Error::bad_input(format!(
                        "task Regression needs a numeric target, but the target column holds {bad}: \
                         use task Classification or Auto, or fix the column"
                    )));
                }
                true
            }
            Task::Classification => false,
            Task::Auto => numbers
                .as_ref()
                .is_some_and(|xs| counts.len() > MAX_AUTO_CLASSES || xs.iter().any(|x| x.fract() != 0.0)),
        };
        if regression {
            return Ok(Target { task: TaskKind::Regression, classes: Vec::new() });
        }
        if let Some((class, n)) = counts.iter().find(|(_, n)| **n < MIN_ROWS_PER_CLASS) {
            return Err(Error::bad_input(format!(
                "class {class:?} of the target has only {n} row(s); every class needs at least \
                 {MIN_ROWS_PER_CLASS} so that it can appear in both training and validation: add rows \
                 of that class or remove it"
            )));
        }
        let mut classes: Vec<String> = counts.into_keys().collect();
        if classes.iter().all(|c| c.parse::<f64>().is_ok()) {
            classes.sort_by(|a, b| a.parse::<f64>().unwrap().total_cmp(&b.parse::<f64>().unwrap()));
        }
        let task = if classes.len() == 2 { TaskKind::Binary } else { TaskKind::Multiclass };
        Ok(Target { task, classes })
    }

    pub fn is_classification(&self) -> bool {
        self.task != TaskKind::Regression
    }

    /// The value the model learns: the number itself for regression, the class index for
    /// classification. `None` for a missing cell, a non-number (regression) or an unknown class.
    pub fn encode(&self, value: &Value) -> Option<f64> {
        if is_missing(value) {
            return None;
        }
        match self.task {
            TaskKind::Regression => as_number(value),
            _ => {
                let label = as_label(value)?;
                self.classes.iter().position(|c| *c == label).map(|i| i as f64)
            }
        }
    }

    /// The inverse of `encode`: a number for regression, the class label for a class index.
    pub fn decode(&self, encoded: f64) -> Value {
        match self.task {
            TaskKind::Regression => serde_json::Number::from_f64(encoded).map_or(Value::Null, Value::Number),
            _ => self.classes.get(encoded.round() as usize).map_or(Value::Null, |c| Value::String(c.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The disease progression target of scikit-learn's `load_diabetes`: 442 integers, 214 distinct.
    fn diabetes() -> Vec<Value> {
        let csv = include_str!("../testdata/diabetes.csv");
        csv.lines().map(|l| json!(l.rsplit(',').next().unwrap().parse::<i64>().unwrap())).collect()
    }

    #[test]
    fn auto_detects_regression_binary_and_multiclass() {
        let t = Target::detect(&diabetes(), Task::Auto).unwrap();
        assert_eq!(t.task, TaskKind::Regression);
        assert_eq!(t.encode(&json!("206")), Some(206.0));

        let fractional: Vec<Value> = [0.5, 1.0, 1.5, 0.5].iter().map(|x| json!(x)).collect();
        assert_eq!(Target::detect(&fractional, Task::Auto).unwrap().task, TaskKind::Regression);

        let binary: Vec<Value> =
            ["malignant", "benign", "benign", "malignant", ""].iter().map(|x| json!(x)).collect();
        let t = Target::detect(&binary, Task::Auto).unwrap();
        assert_eq!(t.task, TaskKind::Binary);
        assert_eq!(t.classes, vec!["benign", "malignant"]);
        assert_eq!(t.encode(&json!("malignant")), Some(1.0));
        assert_eq!(t.encode(&json!("")), None);
        assert_eq!(t.encode(&json!("unknown")), None);
        assert_eq!(t.decode(0.0), json!("benign"));

        // Digits: integer labels 0..10 are classes, sorted numerically rather than as text.
        let digits: Vec<Value> = (0..22).map(|i| json!(i % 11)).collect();
        let t = Target::detect(&digits, Task::Auto).unwrap();
        assert_eq!(t.task, TaskKind::Multiclass);
        assert_eq!(t.classes[..3], ["0", "1", "2"]);
        assert_eq!(t.classes[10], "10");
        assert_eq!(t.encode(&json!(10)), Some(10.0));
        assert_eq!(t.decode(10.0), json!("10"));
    }

    #[test]
    fn requested_task_overrides_detection() {
        let t = Target::detect(&diabetes(), Task::Classification);
        // Many diabetes values occur once: too few rows per class to validate.
        let message = t.unwrap_err().to_string();
        assert!(message.contains("only 1 row"), "{message}");

        let small: Vec<Value> = [1, 2, 1, 2, 3, 3].iter().map(|x| json!(x)).collect();
        assert_eq!(Target::detect(&small, Task::Regression).unwrap().task, TaskKind::Regression);
        assert_eq!(Target::detect(&small, Task::Auto).unwrap().task, TaskKind::Multiclass);
    }

    #[test]
    fn bad_targets_are_clear_errors() {
        let missing = vec![Value::Null, json!(""), json!("  ")];
        let e = Target::detect(&missing, Task::Auto).unwrap_err();
        assert!(e.is_bad_input() && e.to_string().contains("no values"), "{e}");

        let constant = vec![json!(3), json!(3), Value::Null];
        let e = Target::detect(&constant, Task::Auto).unwrap_err();
        assert!(e.is_bad_input() && e.to_string().contains("constant"), "{e}");

        let words = vec![json!("cat"), json!("dog"), json!("cat"), json!("dog")];
        let e = Target::detect(&words, Task::Regression).unwrap_err();
        assert!(e.is_bad_input() && e.to_string().contains("numeric target"), "{e}");

        let rare = vec![json!("cat"), json!("dog"), json!("cat"), json!("dog"), json!("emu")];
        let e = Target::detect(&rare, Task::Auto).unwrap_err();
        assert!(e.is_bad_input() && e.to_string().contains("\"emu\""), "{e}");
    }
}
