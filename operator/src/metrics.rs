//! Prometheus metrics, all prefixed `ocellus_`, with bounded labels (no object names).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: &'static str,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    pub kind: &'static str,
    pub condition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// One Experiment's best score. Object names in labels are bounded here: the series is
/// removed when its Experiment is deleted.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScoreLabels {
    pub namespace: String,
    pub experiment: String,
    pub scorer: String,
}

/// Every metric the operator exports, and the registry that renders them.
pub struct Metrics {
    pub registry: Registry,
    reconciliations: Family<ControllerLabel, Counter>,
    failures: Family<ErrorLabels, Counter>,
    duration: Family<ControllerLabel, Histogram>,
    by_condition: Family<ConditionLabels, Gauge>,
    trials: Family<OutcomeLabel, Counter>,
    reports: Counter,
    best_score: Family<ScoreLabels, Gauge<f64, AtomicU64>>,
    /// What each object last contributed, so gauges count objects (not reconciles), trial
    /// counters grow by what is new, and series go away with their object.
    state: Mutex<HashMap<(&'static str, String, String), ObjectState>>,
}

/// What a reconcile saw of one object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectState {
    /// Summary condition, for example `Running` or `Ready`.
    pub condition: String,
    /// Scorer and best validation score.
    pub best: Option<(String, f64)>,
    /// Trials completed, pruned and failed so far.
    pub trials: [i32; 3],
}

const OUTCOMES: [&str; 3] = ["completed", "pruned", "failed"];

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ocellus");
        let reconciliations = Family::<ControllerLabel, Counter>::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<ControllerLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0])
        });
        let by_condition = Family::<ConditionLabels, Gauge>::default();
        let trials = Family::<OutcomeLabel, Counter>::default();
        let reports = Counter::default();
        let best_score = Family::default();
        registry.register("reconciliations", "Reconciliations started", reconciliations.clone());
        registry.register("reconcile_errors", "Reconciliations that failed, by error kind", failures.clone());
        registry.register("reconcile_duration_seconds", "Time one reconciliation took", duration.clone());
        registry.register("objects", "Datasets and Experiments by summary condition", by_condition.clone());
        registry.register("trials", "Trials reported by trainers, by outcome", trials.clone());
        registry.register("trainer_reports", "Status reports accepted from trainer pods", reports.clone());
        registry.register(
            "best_score",
            "Best validation score of an Experiment under its scorer",
            best_score.clone(),
        );
        Self {
            registry,
            reconciliations,
            failures,
            duration,
            by_condition,
            trials,
            reports,
            best_score,
            state: Mutex::default(),
        }
    }
}

/// Times one reconciliation; the duration is observed when it is dropped.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    controller: &'static str,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        let label = ControllerLabel { controller: self.controller };
        self.metrics.duration.get_or_create(&label).observe(self.start.elapsed().as_secs_f64());
    }
}

impl Metrics {
    pub fn reconcile(&self, controller: &'static str) -> ReconcileTimer<'_> {
        self.reconciliations.get_or_create(&ControllerLabel { controller }).inc();
        ReconcileTimer { metrics: self, controller, start: Instant::now() }
    }

    pub fn error(&self, controller: &'static str, kind: &'static str) {
        self.failures.get_or_create(&ErrorLabels { controller, kind }).inc();
    }

    pub fn report_accepted(&self) {
        self.reports.inc();
    }

    /// Records what a reconcile saw of an object; `None` forgets it (the object is gone).
    pub fn observe(&self, kind: &'static str, namespace: &str, name: &str, new: Option<ObjectState>) {
        let key = (kind, namespace.to_owned(), name.to_owned());
        let mut state = self.state.lock().expect("metrics lock is never poisoned");
        let old = match &new {
            Some(new) => state.insert(key, new.clone()),
            None => state.remove(&key),
        };
        drop(state);
        if old.as_ref().map(|o| &o.condition) != new.as_ref().map(|n| &n.condition) {
            if let Some(old) = &old {
                self.by_condition
                    .get_or_create(&ConditionLabels { kind, condition: old.condition.clone() })
                    .dec();
            }
            if let Some(new) = &new {
                self.by_condition
                    .get_or_create(&ConditionLabels { kind, condition: new.condition.clone() })
                    .inc();
            }
        }
        let before = old.as_ref().map_or([0; 3], |o| o.trials);
        if let Some(new) = &new {
            for (index, outcome) in OUTCOMES.into_iter().enumerate() {
                let grown = new.trials[index] - before[index];
                if grown > 0 {
                    self.trials.get_or_create(&OutcomeLabel { outcome }).inc_by(grown as u64);
                }
            }
        }
        let labels = |(scorer, _): &(String, f64)| ScoreLabels {
            namespace: namespace.to_owned(),
            experiment: name.to_owned(),
            scorer: scorer.clone(),
        };
        if let Some(old_best) = old.as_ref().and_then(|o| o.best.as_ref())
            && new.as_ref().and_then(|n| n.best.as_ref()).is_none_or(|b| b.0 != old_best.0)
        {
            self.best_score.remove(&labels(old_best));
        }
        if let Some(best) = new.as_ref().and_then(|n| n.best.as_ref()) {
            self.best_score.get_or_create(&labels(best)).set(best.1);
        }
    }

    /// Forgets objects of `kind` that no longer exist (their best-score series go away).
    /// Returns the namespace and name of each object forgotten.
    pub fn forget_missing(
        &self,
        kind: &'static str,
        exists: impl Fn(&str, &str) -> bool,
    ) -> Vec<(String, String)> {
        let gone: Vec<_> = self
            .state
            .lock()
            .expect("metrics lock is never poisoned")
            .keys()
            .filter(|(k, namespace, name)| *k == kind && !exists(namespace, name))
            .cloned()
            .collect();
        gone.into_iter()
            .map(|(kind, namespace, name)| {
                self.observe(kind, &namespace, &name, None);
                (namespace, name)
            })
            .collect()
    }

    /// The text exposition format Prometheus scrapes.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn gauges_count_objects_and_forget_deleted_ones() {
        let metrics = Metrics::default();
        let running =
            |trials| ObjectState { condition: "Running".into(), best: Some(("RMSE".into(), 2.5)), trials };
        metrics.observe("Experiment", "ml", "a", Some(running([1, 0, 0])));
        metrics.observe("Experiment", "ml", "a", Some(running([3, 1, 0])));
        metrics.observe(
            "Experiment",
            "ml",
            "b",
            Some(ObjectState { condition: "Running".into(), ..Default::default() }),
        );
        let text = metrics.render();
        assert_eq!(
            line(&text, "ocellus_objects{kind=\"Experiment\",condition=\"Running\"}"),
            Some("ocellus_objects{kind=\"Experiment\",condition=\"Running\"} 2")
        );
        assert_eq!(
            line(&text, "ocellus_trials_total{outcome=\"completed\"}"),
            Some("ocellus_trials_total{outcome=\"completed\"} 3")
        );
        assert_eq!(
            line(&text, "ocellus_trials_total{outcome=\"pruned\"}"),
            Some("ocellus_trials_total{outcome=\"pruned\"} 1")
        );
        assert!(
            text.contains("ocellus_best_score{namespace=\"ml\",experiment=\"a\",scorer=\"RMSE\"} 2.5"),
            "{text}"
        );

        metrics.forget_missing("Experiment", |_, name| name != "a");
        let text = metrics.render();
        assert!(!text.contains("experiment=\"a\""), "best score removed with its Experiment: {text}");
        assert!(text.contains("ocellus_objects{kind=\"Experiment\",condition=\"Running\"} 1"), "{text}");
    }

    #[test]
    fn errors_are_counted_by_kind_and_durations_observed() {
        let metrics = Metrics::default();
        drop(metrics.reconcile("experiment"));
        metrics.error("experiment", "conflict");
        let text = metrics.render();
        assert!(text.contains("ocellus_reconciliations_total{controller=\"experiment\"} 1"), "{text}");
        assert!(
            text.contains("ocellus_reconcile_errors_total{controller=\"experiment\",kind=\"conflict\"} 1")
        );
        assert!(text.contains("ocellus_reconcile_duration_seconds_count{controller=\"experiment\"} 1"));
    }
}
