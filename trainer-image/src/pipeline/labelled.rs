//! The labelled training rows both pipelines learn from: the rows whose target is set, the
//! target (task, classes), its encoded values, the scorer, and the fit/validation split.

use ocellus_crds::experiment::{ExperimentSpec, Scorer};
use ocellus_dataset::normalized::NormalizedDataset;
use ocellus_dataset::split::split_indices;
use ocellus_tabular::metrics::resolve_scorer;
use ocellus_tabular::task::{Target, TaskKind};
use serde_json::{Map, Value};

use crate::Result;
use crate::bundle::tabular_error;

/// Share of the labelled training rows used to fit; the rest validates.
const FIT_PERCENT: i32 = 80;

pub(crate) struct LabelledRows {
    pub rows: Vec<Map<String, Value>>,
    pub target: Target,
    /// The encoded target of every row.
    pub y: Vec<f64>,
    pub scorer: Scorer,
    /// Indices into `rows`.
    pub fit: Vec<usize>,
    pub valid: Vec<usize>,
}

impl LabelledRows {
    /// The labelled rows of `train`; the target's values decide the task and the classes.
    pub(crate) fn load(train: &NormalizedDataset, spec: &ExperimentSpec) -> Result<Self> {
        let rows: Vec<Map<String, Value>> = train
            .rows()?
            .into_iter()
            .filter(|row| row.get(&spec.target).is_some_and(|v| !v.is_null()))
            .collect();
        let target_values: Vec<Value> = rows.iter().map(|row| row[&spec.target].clone()).collect();
        let target = Target::detect(&target_values, spec.task).map_err(tabular_error)?;
        let y: Vec<f64> =
            target_values.iter().map(|v| target.encode(v).expect("detected from these values")).collect();
        let scorer = resolve_scorer(spec.scorer, target.task).map_err(tabular_error)?;
        let (fit, valid) = fit_and_validation_rows(&target, &y, spec.seed);
        Ok(Self { rows, target, y, scorer, fit, valid })
    }

    pub(crate) fn valid_rows(&self) -> Vec<Map<String, Value>> {
        self.valid.iter().map(|&i| self.rows[i].clone()).collect()
    }
}

/// Splits labelled rows 80/20 into fit and validation rows, stratified by class for
/// classification (class labels may be JSON numbers or strings: the encoded class is the stratum).
fn fit_and_validation_rows(target: &Target, y: &[f64], seed: i64) -> (Vec<usize>, Vec<usize>) {
    let keys: Vec<String> = y.iter().map(|v| v.to_string()).collect();
    let strata: Vec<Option<&str>> = match target.task {
        TaskKind::Regression => vec![None; y.len()],
        _ => keys.iter().map(|k| Some(k.as_str())).collect(),
    };
    split_indices(&strata, FIT_PERCENT, seed)
}
