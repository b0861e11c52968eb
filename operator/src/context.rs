//! What every reconcile shares: the client, the configuration, the caches, the reports
//! received from trainers, metrics and the event recorder.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use ocellus_crds::{Dataset, DatasetReport, TrainerReport};

use crate::config::Config;
use crate::metrics::Metrics;

/// The current time; tests fix it.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Field manager of every write, and the events' reporting controller.
pub const MANAGER: &str = "ocellus-operator";

pub struct Context {
    pub client: Client,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    /// Datasets, read by Experiments waiting for them.
    pub datasets: Store<Dataset>,
    /// Jobs the operator made (label `app.kubernetes.io/managed-by`).
    pub jobs: Store<Job>,
    /// Pods of those Jobs, read for the reasons a Job does not say.
    pub pods: Store<Pod>,
    pub reports: Arc<Reports>,
    pub recorder: Recorder,
    pub clock: Clock,
}

impl Context {
    pub fn new(
        client: Client,
        config: Config,
        metrics: Arc<Metrics>,
        stores: Stores,
        reports: Arc<Reports>,
    ) -> Self {
        let reporter = Reporter { controller: MANAGER.into(), instance: config.pod_name.clone() };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            metrics,
            datasets: stores.datasets,
            jobs: stores.jobs,
            pods: stores.pods,
            reports,
            clock: Arc::new(Timestamp::now),
        }
    }

    pub fn now(&self) -> Timestamp {
        (self.clock)()
    }

    pub fn job(&self, namespace: &str, name: &str) -> Option<Arc<Job>> {
        self.jobs.get(&ObjectRef::new(name).within(namespace))
    }

    pub fn dataset(&self, namespace: &str, name: &str) -> Option<Arc<Dataset>> {
        self.datasets.get(&ObjectRef::new(name).within(namespace))
    }

    /// Pods the Job controller made for this Job.
    pub fn pods_of(&self, namespace: &str, job: &str) -> Vec<Pod> {
        self.pods
            .state()
            .into_iter()
            .filter(|pod| {
                pod.metadata.namespace.as_deref() == Some(namespace)
                    && pod
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("batch.kubernetes.io/job-name"))
                        .map(String::as_str)
                        == Some(job)
            })
            .map(|pod| (*pod).clone())
            .collect()
    }
}

/// The caches the controllers read instead of the API server.
pub struct Stores {
    pub datasets: Store<Dataset>,
    pub jobs: Store<Job>,
    pub pods: Store<Pod>,
}

/// The last reports of trainer pods, merged, with when the last one came.
#[derive(Default)]
pub struct Reports {
    experiments: Mutex<HashMap<(String, String), (TrainerReport, Timestamp)>>,
    datasets: Mutex<HashMap<(String, String), DatasetReport>>,
}

impl Reports {
    /// Merges a report: fields it sets replace earlier ones, fields it omits stay.
    pub fn experiment_report(&self, namespace: &str, name: &str, report: TrainerReport, at: Timestamp) {
        let mut map = self.experiments.lock().expect("reports lock is never poisoned");
        let (merged, received) =
            map.entry((namespace.into(), name.into())).or_insert((TrainerReport::default(), at));
        merge(&mut merged.progress, report.progress);
        merge(&mut merged.metrics, report.metrics);
        merge(&mut merged.best_model, report.best_model);
        merge(&mut merged.trials, report.trials);
        merge(&mut merged.artifacts, report.artifacts);
        merged.final_ |= report.final_;
        *received = at;
    }

    pub fn experiment(&self, namespace: &str, name: &str) -> Option<(TrainerReport, Timestamp)> {
        self.experiments
            .lock()
            .expect("reports lock is never poisoned")
            .get(&(namespace.into(), name.into()))
            .cloned()
    }

    pub fn dataset_report(&self, namespace: &str, name: &str, report: DatasetReport) {
        self.datasets
            .lock()
            .expect("reports lock is never poisoned")
            .insert((namespace.into(), name.into()), report);
    }

    pub fn dataset(&self, namespace: &str, name: &str) -> Option<DatasetReport> {
        self.datasets
            .lock()
            .expect("reports lock is never poisoned")
            .get(&(namespace.into(), name.into()))
            .cloned()
    }

    /// Forgets a deleted object's reports.
    pub fn forget(&self, kind: &str, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        match kind {
            "Experiment" => {
                drop(self.experiments.lock().expect("reports lock is never poisoned").remove(&key))
            }
            _ => drop(self.datasets.lock().expect("reports lock is never poisoned").remove(&key)),
        }
    }
}

fn merge<T>(into: &mut Option<T>, from: Option<T>) {
    if from.is_some() {
        *into = from;
    }
}
