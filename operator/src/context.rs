//! What every reconcile shares: the client, the configuration, the caches, the reports
//! received from trainers, metrics and the event recorder.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use ocellus_crds::report::{merge_dataset_report, merge_experiment_report};
use ocellus_crds::{Dataset, DatasetReport, ExperimentStatus, TrainerReport};

use crate::config::Config;
use crate::metrics::Metrics;

/// The current time; tests fix it.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Reads a finished run's `result.json` from the store ([`crate::results::read_result`]); tests
/// give their own.
pub type ResultReader = Arc<
    dyn Fn(String) -> futures::future::BoxFuture<'static, Result<Option<ExperimentStatus>, String>>
        + Send
        + Sync,
>;

/// How long a new Job may be without a pod before its Events are read for the reason.
const POD_CREATION_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

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
    pub results: ResultReader,
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
            results: Arc::new(|location| {
                Box::pin(async move { crate::results::read_result(&location).await })
            }),
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

    /// The Job controller's newest `FailedCreate` Event message for this Job: why the API server
    /// refuses its pod. Read only for a Job that has no pod yet; a failed read is logged and
    /// counts as no answer, since it must not stop the reconcile.
    pub async fn pod_creation_refusal(&self, job: &Job) -> Option<String> {
        // The Job controller makes the pod within moments; only a Job older than that is asked.
        let created = job.metadata.creation_timestamp.as_ref()?.0;
        if self.now().duration_since(created).unsigned_abs() < POD_CREATION_GRACE {
            return None;
        }
        let (namespace, uid) = (job.namespace()?, job.uid()?);
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let selector = format!("involvedObject.uid={uid},reason=FailedCreate");
        match api.list(&ListParams::default().fields(&selector)).await {
            Ok(events) => events
                .items
                .into_iter()
                .max_by_key(|e| e.last_timestamp.as_ref().map(|t| t.0))
                .and_then(|e| e.message),
            Err(error) => {
                tracing::warn!(job = %job.name_any(), %error, "could not read the Job's events");
                None
            }
        }
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

/// The reports of trainer pods, merged per object, with the UID of the object they are about
/// (a re-created object of the same name starts afresh) and when the last one came.
#[derive(Default)]
pub struct Reports {
    experiments: Mutex<HashMap<(String, String), ExperimentReports>>,
    datasets: Mutex<HashMap<(String, String), (String, DatasetReport)>>,
}

/// What an Experiment's trainer reported so far.
#[derive(Clone, Debug)]
pub struct ExperimentReports {
    pub uid: String,
    /// The trainer-owned fields of status, merged by [`merge_experiment_report`].
    pub status: ExperimentStatus,
    /// The trainer sent its final report.
    pub final_: bool,
    pub received: Timestamp,
}

impl Reports {
    /// Merges a report: fields it sets replace earlier ones, fields it omits stay.
    pub fn experiment_report(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        report: TrainerReport,
        at: Timestamp,
    ) {
        let mut map = self.experiments.lock().expect("reports lock is never poisoned");
        let fresh = || ExperimentReports {
            uid: uid.to_owned(),
            status: ExperimentStatus::default(),
            final_: false,
            received: at,
        };
        let entry = map.entry((namespace.into(), name.into())).or_insert_with(fresh);
        if entry.uid != uid {
            *entry = fresh();
        }
        merge_experiment_report(&mut entry.status, &report.status);
        entry.final_ |= report.final_;
        entry.received = at;
    }

    /// The reports about the Experiment with this UID.
    pub fn experiment(&self, namespace: &str, name: &str, uid: &str) -> Option<ExperimentReports> {
        let map = self.experiments.lock().expect("reports lock is never poisoned");
        map.get(&(namespace.into(), name.into())).filter(|r| r.uid == uid).cloned()
    }

    pub fn dataset_report(&self, namespace: &str, name: &str, uid: &str, report: DatasetReport) {
        let mut map = self.datasets.lock().expect("reports lock is never poisoned");
        let entry =
            map.entry((namespace.into(), name.into())).or_insert_with(|| (uid.to_owned(), report.clone()));
        if entry.0 != uid {
            *entry = (uid.to_owned(), DatasetReport::default());
        }
        merge_dataset_report(&mut entry.1, &report);
    }

    pub fn dataset(&self, namespace: &str, name: &str, uid: &str) -> Option<DatasetReport> {
        let map = self.datasets.lock().expect("reports lock is never poisoned");
        map.get(&(namespace.into(), name.into())).filter(|(u, _)| u == uid).map(|(_, r)| r.clone())
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
