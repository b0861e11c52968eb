//! What a trainer pod tells the operator's status server.
//!
//! An Experiment's trainer posts [`TrainerReport`] to
//! `POST {OCELLUS_STATUS_URL}/v1/namespaces/<ns>/experiments/<name>/report`, a Dataset's import
//! posts [`DatasetReport`] to `.../datasets/<name>/report`, each with
//! `Authorization: Bearer <projected token>`. The operator checks the token and copies the
//! report into status; pods never write Ocellus resources themselves.

use serde::{Deserialize, Serialize};

use crate::dataset::{ClassCount, ColumnProfile};
use crate::experiment::{ArtifactLocations, BestModel, Metrics, Progress, TrialsSummary};

/// Progress and results of an Experiment's trainer; each report replaces the previous one's
/// fields that it sets.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrainerReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_model: Option<BestModel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trials: Option<TrialsSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<ArtifactLocations>,
    /// The last report: the trainer is about to exit successfully.
    #[serde(default, rename = "final")]
    pub final_: bool,
}

/// The profile a Dataset import found, as in `DatasetStatus`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DatasetReport {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<ColumnProfile>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_columns: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad_images: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<ClassCount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
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

    #[test]
    fn final_is_spelled_as_in_the_contract() {
        let report: TrainerReport =
            serde_json::from_str(r#"{"progress": {"stage": "Trial", "percent": 40}, "final": true}"#)
                .unwrap();
        assert!(report.final_);
        assert_eq!(report.progress.unwrap().percent, 40);
        let json = serde_json::to_value(TrainerReport::default()).unwrap();
        assert_eq!(json, serde_json::json!({"final": false}));
    }
}
