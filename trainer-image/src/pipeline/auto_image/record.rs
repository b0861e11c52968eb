//! The auto image model's trials as the report's run record.

use ocellus_report::{Curve, TrialRecord};
use serde_json::Value;

use super::search::TrialView;

/// A trial with its choices, its outcome and its per-epoch curves.
pub fn trial_record(trial: &TrialView, scorer_name: &str) -> TrialRecord {
    let mut config = match serde_json::to_value(&trial.config) {
        Ok(Value::Object(map)) => map,
        _ => Default::default(),
    };
    // The id is the table's first column already; the seed is derived from the Experiment's.
    config.remove("id");
    config.remove("seed");
    let status = match &trial.state.stopped {
        Some(reason) => format!("{reason:?}"),
        None if trial.state.epochs_done >= trial.config.max_epochs => "Finished".into(),
        // Successive halving did not promote it to the next rung.
        None => "Pruned".into(),
    };
    let history = &trial.state.history;
    let curve = |metric: String, values: Vec<f64>| Curve { metric, step: "epoch".into(), values };
    TrialRecord {
        id: trial.config.id,
        config,
        score: trial.state.best_score,
        status,
        curves: vec![
            curve(format!("validation {scorer_name}"), history.iter().map(|r| r.score).collect()),
            curve("training loss".into(), history.iter().map(|r| r.loss).collect()),
        ],
    }
}
