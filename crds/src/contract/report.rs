//! What a trainer pod tells the operator's status server, and how it becomes status.
//!
//! An Experiment's trainer posts [`TrainerReport`] to
//! `POST {OCELLUS_STATUS_URL}/v1/namespaces/<ns>/experiments/<name>/report`, a Dataset's import
//! posts [`DatasetReport`] to `.../datasets/<name>/report`, each with
//! `Authorization: Bearer <projected token>`. A report is the status shape itself: the trainer
//! fills the fields it owns (progress, metrics, best model, trials, artifacts; a Dataset's
//! profile and location) and [`merge_experiment_report`] / [`merge_dataset_report`] copy exactly
//! those into the status the operator writes. Conditions, generations and times stay the
//! operator's: a report cannot set them. Pods never write Ocellus resources themselves.
//!
//! `ocellus run` writes the same [`ExperimentStatus`] as `result.json`, which the operator reads
//! when a final report never arrived.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::experiment::ExperimentStatus;
use crate::manifest::openapi_schema;
use crate::{Dataset, DatasetStatus, Experiment};

/// The largest report body the status server reads.
pub const MAX_REPORT_BYTES: usize = 64 * 1024;

/// Metric names a report may carry: the scorers' names (`ocellus-tabular`'s `scorer_name`).
pub const METRIC_NAMES: [&str; 7] = ["RMSE", "MAE", "R2", "AUC", "LogLoss", "Accuracy", "F1"];

/// Progress and results of an Experiment's trainer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrainerReport {
    /// The trainer-owned fields of `Experiment.status`; the rest is ignored.
    #[serde(default)]
    pub status: ExperimentStatus,
    /// The last report: the trainer is about to exit successfully and `result.json` is written.
    #[serde(default, rename = "final")]
    pub final_: bool,
}

/// The profile and location a Dataset import found: the trainer-owned fields of `Dataset.status`.
pub type DatasetReport = DatasetStatus;

/// Copies what the trainer owns from `report` into `status`: each field the report sets replaces
/// the status's; a field it leaves out stays as it was.
pub fn merge_experiment_report(status: &mut ExperimentStatus, report: &ExperimentStatus) {
    replace(&mut status.progress, &report.progress);
    replace(&mut status.metrics, &report.metrics);
    replace(&mut status.best_model, &report.best_model);
    replace(&mut status.trials, &report.trials);
    replace(&mut status.artifacts, &report.artifacts);
}

/// Copies a Dataset import's profile and location into `status`, as [`merge_experiment_report`].
pub fn merge_dataset_report(status: &mut DatasetStatus, report: &DatasetReport) {
    replace(&mut status.rows, &report.rows);
    replace_list(&mut status.columns, &report.columns);
    replace_list(&mut status.image_columns, &report.image_columns);
    replace(&mut status.bad_images, &report.bad_images);
    replace_list(&mut status.classes, &report.classes);
    replace(&mut status.location, &report.location);
    replace(&mut status.digest, &report.digest);
}

fn replace<T: Clone>(into: &mut Option<T>, from: &Option<T>) {
    if from.is_some() {
        into.clone_from(from);
    }
}

fn replace_list<T: Clone>(into: &mut Vec<T>, from: &[T]) {
    if !from.is_empty() {
        *into = from.to_vec();
    }
}

/// Why a report cannot become status. Each message names the field.
pub fn check_experiment_report(report: &ExperimentStatus) -> Result<(), String> {
    let mut problems = schema_problems(experiment_status_validator(), report);
    if report.observed_generation.is_some() || !report.conditions.is_empty() {
        problems.push("conditions and observedGeneration are the operator's; leave them out".into());
    }
    if let Some(metrics) = &report.metrics {
        for metric in metrics.validation.iter().chain(&metrics.test) {
            if !METRIC_NAMES.contains(&metric.name.as_str()) {
                problems.push(format!(
                    "metrics: unknown metric {:?}; known: {}",
                    metric.name,
                    METRIC_NAMES.join(", ")
                ));
            }
        }
    }
    if let Some(progress) = &report.progress {
        let negative = [progress.trial.map(i64::from), progress.epoch.map(i64::from), progress.eta_seconds];
        if negative.into_iter().flatten().any(|v| v < 0) {
            problems.push("progress: trial, epoch and etaSeconds cannot be negative".into());
        }
    }
    if let Some(trials) = &report.trials {
        let counts = [trials.total, trials.completed, trials.pruned, trials.failed];
        if counts.iter().any(|c| *c < 0) || trials.completed + trials.pruned + trials.failed > trials.total {
            problems.push("trials: counts must be non-negative and add up to at most total".into());
        }
    }
    verdict(problems)
}

/// Why a Dataset report cannot become status.
pub fn check_dataset_report(report: &DatasetReport) -> Result<(), String> {
    let mut problems = schema_problems(dataset_status_validator(), report);
    if report.observed_generation.is_some() || !report.conditions.is_empty() {
        problems.push("conditions and observedGeneration are the operator's; leave them out".into());
    }
    if report.rows.is_some_and(|r| r < 0) || report.bad_images.is_some_and(|b| b < 0) {
        problems.push("rows and badImages cannot be negative".into());
    }
    verdict(problems)
}

fn verdict(problems: Vec<String>) -> Result<(), String> {
    if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) }
}

/// The report checked against the CRD's own status schema, so a report that passes can always
/// be written: the API server checks the same bounds.
fn schema_problems(validator: &jsonschema::Validator, report: &impl Serialize) -> Vec<String> {
    let value = serde_json::to_value(report).expect("status types serialise");
    let mut problems: Vec<String> = validator
        .iter_errors(&value)
        .map(|error| format!("status{}: {error}", error.instance_path().to_string().replace('/', ".")))
        .collect();
    if has_non_finite(&value) {
        problems.push("numbers must be finite".into());
    }
    problems
}

/// serde_json writes NaN and infinities as null; a float field that came back null from a
/// `Some(f64)` is caught by the typed checks, but check the tree too.
fn has_non_finite(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.as_f64().is_some_and(|f| !f.is_finite()),
        Value::Array(items) => items.iter().any(has_non_finite),
        Value::Object(map) => map.values().any(has_non_finite),
        _ => false,
    }
}

fn status_validator<K: kube::CustomResourceExt>() -> jsonschema::Validator {
    let schema = openapi_schema::<K>();
    let status = schema.pointer("/properties/status").cloned().expect("the CRDs have a status schema");
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(false)
        .build(&status)
        .expect("the generated status schema is a valid JSON schema")
}

fn experiment_status_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(status_validator::<Experiment>)
}

fn dataset_status_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(status_validator::<Dataset>)
}

/// Audience of the projected token of an Experiment's trainer pod.
pub fn experiment_audience(namespace: &str, name: &str) -> String {
    format!("ocellus.dev/experiments/{namespace}/{name}")
}

/// Audience of the projected token of a Dataset's import pod.
pub fn dataset_audience(namespace: &str, name: &str) -> String {
    format!("ocellus.dev/datasets/{namespace}/{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::MetricValue;
    use crate::experiment::{BestModel, Metrics, Progress, TrialsSummary};

    fn progress(stage: &str, percent: i32) -> ExperimentStatus {
        ExperimentStatus {
            progress: Some(Progress { stage: stage.into(), percent, ..Default::default() }),
            ..Default::default()
        }
    }

    #[test]
    fn a_report_is_the_status_shape_and_final_is_spelled_as_in_the_contract() {
        let report: TrainerReport = serde_json::from_str(
            r#"{"status": {"progress": {"stage": "Trial", "percent": 40}}, "final": true}"#,
        )
        .unwrap();
        assert!(report.final_);
        assert_eq!(report.status.progress.unwrap().percent, 40);
        let json = serde_json::to_value(TrainerReport::default()).unwrap();
        assert_eq!(json, serde_json::json!({"status": {}, "final": false}));
    }

    #[test]
    fn merging_replaces_what_the_report_sets_and_keeps_the_rest() {
        let mut status = progress("Embedding", 10);
        status.best_model = Some(BestModel { score: Some(0.5), ..Default::default() });
        status.pipeline = Some(crate::experiment::Pipeline::Embeddings);
        let mut report = progress("Fitting", 60);
        report.pipeline = Some(crate::experiment::Pipeline::AutoImage);
        merge_experiment_report(&mut status, &report);
        assert_eq!(status.progress.as_ref().unwrap().stage, "Fitting");
        assert_eq!(status.best_model.as_ref().unwrap().score, Some(0.5), "kept");
        assert_eq!(status.pipeline, Some(crate::experiment::Pipeline::Embeddings), "not the trainer's field");
    }

    #[test]
    fn dataset_reports_merge_their_profile() {
        let mut status = DatasetStatus { rows: Some(3), ..Default::default() };
        let report = DatasetReport { location: Some("s3://b/datasets/ns/x".into()), ..Default::default() };
        merge_dataset_report(&mut status, &report);
        assert_eq!((status.rows, status.location.as_deref()), (Some(3), Some("s3://b/datasets/ns/x")));
    }

    #[test]
    fn reports_outside_the_schema_are_refused_with_the_field() {
        assert_eq!(check_experiment_report(&progress("Trial", 50)), Ok(()));
        let error = check_experiment_report(&progress("Trial", 250)).unwrap_err();
        assert!(error.contains("percent"), "{error}");
        let error = check_experiment_report(&progress(&"x".repeat(100), 5)).unwrap_err();
        assert!(error.contains("stage"), "{error}");
        let metrics = ExperimentStatus {
            metrics: Some(Metrics {
                validation: vec![MetricValue { name: "bogus".into(), value: 1.0 }],
                test: vec![],
            }),
            ..Default::default()
        };
        assert!(check_experiment_report(&metrics).unwrap_err().contains("unknown metric \"bogus\""));
        let trials = ExperimentStatus {
            trials: Some(TrialsSummary { total: 1, completed: 3, ..Default::default() }),
            ..Default::default()
        };
        assert!(check_experiment_report(&trials).unwrap_err().contains("add up"));
        let mut conditions = progress("Trial", 1);
        conditions.observed_generation = Some(4);
        assert!(check_experiment_report(&conditions).unwrap_err().contains("operator's"));
    }

    #[test]
    fn non_finite_scores_never_reach_status() {
        let report = ExperimentStatus {
            best_model: Some(BestModel { score: Some(f64::NAN), ..Default::default() }),
            ..Default::default()
        };
        // serde_json writes NaN as null, which the schema refuses for a number.
        assert!(check_experiment_report(&report).is_err());
        let bad_rows = DatasetReport { rows: Some(-1), ..Default::default() };
        assert!(check_dataset_report(&bad_rows).unwrap_err().contains("negative"));
    }
}
