//! The controllers against a mocked API server: the exact requests of each situation.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use ocellus_crds::TrainerReport;
use ocellus_crds::dataset::ColumnType;
use ocellus_crds::experiment::{BestModel, DeletionPolicy, Progress, TrialsSummary};
use ocellus_crds::{Dataset, Experiment, ExperimentStatus};
use serde_json::{Value, json};

use crate::config::Config;
use crate::context::{Context, Reports, Stores};
use crate::fixtures::*;
use crate::jobs::{KUEUE_QUEUE_LABEL, cleanup_job, trainer_job};
use crate::metrics::Metrics;
use crate::mock::{self, Expect, Seen};
use crate::{dataset_controller, experiment_controller};

const EXPERIMENTS: &str = "/apis/ocellus.dev/v1alpha1/namespaces/ml/experiments";
const DATASETS: &str = "/apis/ocellus.dev/v1alpha1/namespaces/ml/datasets";
const JOBS: &str = "/apis/batch/v1/namespaces/ml/jobs";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ml/events";
const NOW: i64 = 1000;

fn store<K>(objects: Vec<K>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let mut writer = Writer::default();
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(object));
    }
    writer.as_reader()
}

/// The world a reconcile sees: caches, reports, metrics; the client is a mock.
struct World {
    datasets: Vec<Dataset>,
    jobs: Vec<Job>,
    pods: Vec<Pod>,
    reports: Arc<Reports>,
    metrics: Arc<Metrics>,
    /// What the store's result.json holds.
    stored_result: Option<ExperimentStatus>,
    config: Config,
}

impl World {
    fn new() -> Self {
        Self {
            datasets: vec![],
            jobs: vec![],
            pods: vec![],
            reports: Arc::default(),
            metrics: Arc::default(),
            stored_result: None,
            config: Config::test(),
        }
    }

    fn with_config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    fn with_datasets(mut self, datasets: Vec<Dataset>) -> Self {
        self.datasets = datasets;
        self
    }

    fn with_job(mut self, job: Job) -> Self {
        self.jobs.push(job);
        self
    }

    fn with_pod(mut self, pod: Pod) -> Self {
        self.pods.push(pod);
        self
    }

    fn context(&self, client: kube::Client) -> Arc<Context> {
        let stores = Stores {
            datasets: store(self.datasets.clone()),
            jobs: store(self.jobs.clone()),
            pods: store(self.pods.clone()),
        };
        let mut context =
            Context::new(client, self.config.clone(), self.metrics.clone(), stores, self.reports.clone());
        context.clock = Arc::new(|| Timestamp::from_second(NOW).unwrap());
        let result = self.stored_result.clone();
        context.results = Arc::new(move |_| {
            let result = result.clone();
            Box::pin(async move { Ok(result) })
        });
        Arc::new(context)
    }

    async fn reconcile_experiment(
        &self,
        experiment: &Experiment,
        script: Vec<Expect>,
    ) -> (Action, Vec<Seen>) {
        let (client, handle) = mock::client();
        let server = mock::serve(handle, script);
        let context = self.context(client);
        let action = experiment_controller::reconcile(Arc::new(experiment.clone()), context.clone()).await;
        let action = action.unwrap_or_else(|error| {
            experiment_controller::error_policy(Arc::new(experiment.clone()), &error, context.clone());
            panic!("reconcile failed: {error}")
        });
        drop(context);
        (action, server.await.expect("the mock API server saw what it expected"))
    }

    async fn reconcile_dataset(&self, dataset: &Dataset, script: Vec<Expect>) -> (Action, Vec<Seen>) {
        let (client, handle) = mock::client();
        let server = mock::serve(handle, script);
        let context = self.context(client);
        let action = dataset_controller::reconcile(Arc::new(dataset.clone()), context.clone()).await.unwrap();
        drop(context);
        (action, server.await.expect("the mock API server saw what it expected"))
    }
}

fn ready_cats() -> Dataset {
    Dataset::test().ready_with(&[("image", ColumnType::Image), ("label", ColumnType::Categorical)])
}

/// A status apply of this resource, answered with the object carrying the new status.
fn status_patch(collection: &str, name: &str, _: Value) -> Expect {
    let object = if collection == DATASETS { json(Dataset::test()) } else { json(Experiment::test()) };
    Expect::new(
        Method::PATCH,
        &format!("{collection}/{name}/status?&force=true&fieldManager=ocellus-operator"),
        200,
        object,
    )
}

fn json(object: impl serde::Serialize) -> Value {
    serde_json::to_value(object).unwrap()
}

fn event(reason: &'static str, type_: &'static str) -> Expect {
    Expect::new(Method::POST, &format!("{EVENTS}?"), 201, Value::Null).body(move |body| {
        assert_eq!((body["reason"].as_str(), body["type"].as_str()), (Some(reason), Some(type_)), "{body}");
    })
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == type_).unwrap_or(&Value::Null)
}

fn with_status(mut experiment: Experiment, seen: &Seen) -> Experiment {
    experiment.status = Some(serde_json::from_value(seen.body["status"].clone()).unwrap());
    experiment
}

fn patched_status(seen: &[Seen]) -> Value {
    seen.iter().find(|s| s.path.contains("/status?")).expect("a status write").body["status"].clone()
}

/// The Job running for 100 s.
fn running_job(experiment: &Experiment) -> Job {
    started_job(experiment, NOW - 100)
}

fn started_job(experiment: &Experiment, start: i64) -> Job {
    let mut job = trainer_job(experiment, &[], &Config::test());
    let mut status = crate::fixtures::job(&[], 1, 0).status.unwrap();
    status.start_time = Some(at(start));
    job.status = Some(status);
    job
}

fn running_pod() -> Pod {
    let mut pod = waiting_pod("", "");
    let status = pod.status.as_mut().unwrap();
    status.phase = Some("Running".into());
    status.container_statuses = None;
    pod.metadata.namespace = Some(NAMESPACE.into());
    pod.metadata.name = Some("cats-exp-train-abcde".into());
    pod.metadata.labels =
        Some([("batch.kubernetes.io/job-name".to_owned(), "cats-exp-train".to_owned())].into());
    pod
}

#[tokio::test]
async fn waits_for_a_missing_dataset_and_says_which() {
    let experiment = Experiment::test();
    let script = vec![
        status_patch(EXPERIMENTS, "cats-exp", json!({})).body(|body| {
            assert_eq!(body["apiVersion"], "ocellus.dev/v1alpha1");
            assert_eq!(body["kind"], "Experiment");
            let running = condition(&body["status"], "Running");
            assert_eq!(running["status"], "False");
            assert_eq!(running["reason"], "WaitingForDataset");
            assert_eq!(running["message"], "waiting for Dataset cats, which does not exist yet");
            assert_eq!(running["lastTransitionTime"], "1970-01-01T00:16:40Z");
        }),
        event("WaitingForDataset", "Normal"),
    ];
    let (action, _) = World::new().reconcile_experiment(&experiment, script).await;
    assert_eq!(action, Action::requeue(experiment_controller::POLL));
}

#[tokio::test]
async fn waits_for_a_dataset_that_is_not_ready_and_names_it() {
    let experiment = Experiment::test();
    let mut importing = Dataset::test();
    importing.status = Some(Default::default());
    let world = World::new().with_datasets(vec![importing]);
    let script = vec![
        status_patch(EXPERIMENTS, "cats-exp", json!({})).body(|body| {
            let running = condition(&body["status"], "Running");
            assert_eq!(running["message"], "waiting for Dataset cats to be Ready");
        }),
        event("WaitingForDataset", "Normal"),
    ];
    world.reconcile_experiment(&experiment, script).await;
}

#[tokio::test]
async fn an_invalid_spec_fails_before_any_job() {
    let mut experiment = Experiment::test();
    experiment.spec.target = "price".into();
    let world = World::new().with_datasets(vec![ready_cats()]);
    let script = vec![
        status_patch(EXPERIMENTS, "cats-exp", json!({})).body(|body| {
            let failed = condition(&body["status"], "Failed");
            assert_eq!(
                (failed["status"].as_str(), failed["reason"].as_str()),
                (Some("True"), Some("InvalidSpec"))
            );
            assert_eq!(
                failed["message"],
                "target column \"price\" is not in Dataset cats; its columns are: image, label; fix spec.target"
            );
        }),
        event("InvalidSpec", "Warning"),
    ];
    let (action, seen) = world.reconcile_experiment(&experiment, script).await;
    assert_eq!(action, Action::await_change());
    assert!(seen.iter().all(|s| !s.path.starts_with(JOBS)), "no Job for an invalid spec");
}

#[tokio::test]
async fn ready_datasets_get_one_job_with_the_full_spec() {
    let experiment = Experiment::test();
    let world = World::new().with_datasets(vec![ready_cats()]);
    let mut resolved = experiment.clone();
    resolved.spec.pipeline = ocellus_crds::experiment::Pipeline::AutoImage;
    let expected = serde_json::to_value(trainer_job(&resolved, &[&ready_cats()], &Config::test())).unwrap();
    let script = vec![
        Expect::new(Method::POST, &format!("{JOBS}?&fieldManager=ocellus-operator"), 201, Value::Null)
            .body(move |body| assert_eq!(body, &expected)),
        status_patch(EXPERIMENTS, "cats-exp", json!({})).body(|body| {
            assert_eq!(body["status"]["pipeline"], "AutoImage");
            assert_eq!(condition(&body["status"], "Running")["reason"], "Training");
        }),
        event("Training", "Normal"),
    ];
    world.reconcile_experiment(&experiment, script).await;
}

#[tokio::test]
async fn a_job_made_before_a_restart_is_adopted_not_doubled() {
    // The cache has not seen the Job yet: the create answers AlreadyExists and that is fine.
    let world = World::new().with_datasets(vec![ready_cats()]);
    let script = vec![
        Expect::new(Method::POST, JOBS, 409, mock::already_exists("jobs", "cats-exp-train")),
        status_patch(EXPERIMENTS, "cats-exp", json!({})),
        event("Training", "Normal"),
    ];
    let (_, seen) = world.reconcile_experiment(&Experiment::test(), script).await;
    // Once the cache has it, the running Job is read, never created again.
    let experiment = with_status(Experiment::test(), &seen[1]);
    let world = World::new()
        .with_datasets(vec![ready_cats()])
        .with_job(running_job(&experiment))
        .with_pod(running_pod());
    let script = vec![status_patch(EXPERIMENTS, "cats-exp", json!({})), event("Training", "Normal")];
    let (_, seen) = world.reconcile_experiment(&experiment, script).await;
    assert!(seen.iter().all(|s| s.method != Method::POST || s.path.starts_with(EVENTS)));
    assert_eq!(condition(&patched_status(&seen), "Running")["status"], "True");
}

#[tokio::test]
async fn steady_state_reconcile_makes_no_calls() {
    let experiment = Experiment::test();
    let world = World::new()
        .with_datasets(vec![ready_cats()])
        .with_job(running_job(&experiment))
        .with_pod(running_pod());
    let script = vec![status_patch(EXPERIMENTS, "cats-exp", json!({})), event("Training", "Normal")];
    let (_, seen) = world.reconcile_experiment(&experiment, script).await;
    let settled = with_status(experiment, &seen[0]);
    let (action, seen) = world.reconcile_experiment(&settled, vec![]).await;
    assert!(seen.is_empty());
    // Requeued for the progress deadline: 900 s after the trainer started at t=900, now t=1000.
    assert_eq!(action, Action::requeue(Duration::from_secs(800)));
}

#[tokio::test]
async fn job_and_pod_state_reach_the_conditions() {
    let experiment = Experiment::test();
    let mut pod = pending_pod("Unschedulable", "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.");
    pod.metadata = running_pod().metadata;
    let world =
        World::new().with_datasets(vec![ready_cats()]).with_job(running_job(&experiment)).with_pod(pod);
    let script = vec![
        status_patch(EXPERIMENTS, "cats-exp", json!({})).body(|body| {
            let running = condition(&body["status"], "Running");
            assert_eq!(
                (running["status"].as_str(), running["reason"].as_str()),
                (Some("False"), Some("Unschedulable"))
            );
        }),
        event("Unschedulable", "Warning"),
    ];
    let (action, _) = world.reconcile_experiment(&experiment, script).await;
    assert_eq!(action, Action::requeue(experiment_controller::POLL), "pending pods are polled");

    let mut failed = running_job(&experiment);
    failed.status = crate::fixtures::job(&[("Failed", "PodFailurePolicy", "exit code 65")], 0, 1).status;
    let world = World::new().with_job(failed);
    let script = vec![
        status_patch(EXPERIMENTS, "cats-exp", json!({})).body(|body| {
            let failed = condition(&body["status"], "Failed");
            assert_eq!(
                (failed["status"].as_str(), failed["reason"].as_str()),
                (Some("True"), Some("BadInput"))
            );
        }),
        event("BadInput", "Warning"),
    ];
    let (action, _) = world.reconcile_experiment(&experiment, script).await;
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_job_whose_pod_is_refused_says_why_from_its_events() {
    pod_creation_refused_requests().await;
}

/// Requests of a Job that has had no pod for 100 s: its FailedCreate Events are read.
pub async fn pod_creation_refused_requests() -> Vec<Seen> {
    let experiment = Experiment::test();
    let mut job = trainer_job(&experiment, &[], &Config::test());
    job.metadata.creation_timestamp = Some(at(NOW - 100));
    job.metadata.uid = Some("uid-job-1".into());
    job.status = crate::fixtures::job(&[], 0, 0).status;
    let refusal = "Error creating: pods \"cats-exp-train-x\" is forbidden: error looking up service account \
                   ml/ocellus-trainer: serviceaccount \"ocellus-trainer\" not found";
    let events = json!({"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": [
        {"metadata": {"name": "e1", "namespace": "ml"}, "involvedObject": {"uid": "uid-job-1"},
         "reason": "FailedCreate", "message": "an older refusal", "lastTimestamp": "1970-01-01T00:10:00Z"},
        {"metadata": {"name": "e2", "namespace": "ml"}, "involvedObject": {"uid": "uid-job-1"},
         "reason": "FailedCreate", "message": refusal, "lastTimestamp": "1970-01-01T00:15:00Z"},
    ]});
    let world = World::new().with_datasets(vec![ready_cats()]).with_job(job);
    let script = vec![
        Expect::new(
            Method::GET,
            "/api/v1/namespaces/ml/events?&fieldSelector=involvedObject.uid%3Duid-job-1%2Creason%3DFailedCreate",
            200,
            events,
        ),
        status_patch(EXPERIMENTS, "cats-exp", json!({})).body(move |body| {
            let running = condition(&body["status"], "Running");
            assert_eq!(running["reason"], "PodCreationRefused");
            let message = running["message"].as_str().unwrap();
            assert!(message.contains(refusal) && message.contains("trainer.namespaces"), "{message}");
        }),
        event("PodCreationRefused", "Warning"),
    ];
    let (action, seen) = world.reconcile_experiment(&experiment, script).await;
    assert_eq!(action, Action::requeue(experiment_controller::POLL), "a refused pod is polled");
    seen
}

#[tokio::test]
async fn suspend_and_resume_patch_the_job() {
    suspend_and_resume().await;
}

async fn suspend_and_resume() -> Vec<Seen> {
    let mut all = Vec::new();
    let experiment = Experiment::test().suspended();
    let world = World::new().with_job(running_job(&experiment.clone())).with_pod(running_pod());
    let mut job = running_job(&experiment);
    job.spec.as_mut().unwrap().suspend = Some(false);
    let world = World { jobs: vec![job], ..world };
    let script = vec![
        Expect::new(
            Method::PATCH,
            &format!("{JOBS}/cats-exp-train?"),
            200,
            json(running_job(&Experiment::test())),
        )
        .body(|body| assert_eq!(body, &json!({"spec": {"suspend": true}}))),
        status_patch(EXPERIMENTS, "cats-exp", json!({})),
        event("Training", "Normal"),
    ];
    all.extend(world.reconcile_experiment(&experiment, script).await.1);

    // The Job is suspended now; the Experiment says so.
    let suspended_job = trainer_job(&experiment, &[], &Config::test());
    let world = World::new().with_job(suspended_job.clone());
    let script = vec![
        status_patch(EXPERIMENTS, "cats-exp", json!({})).body(|body| {
            let suspended = condition(&body["status"], "Suspended");
            assert_eq!(
                (suspended["status"].as_str(), suspended["reason"].as_str()),
                (Some("True"), Some("SuspendedByUser"))
            );
        }),
        event("SuspendedByUser", "Normal"),
    ];
    let (_, seen) = world.reconcile_experiment(&experiment, script).await;
    let status_write = seen[0].clone();
    all.extend(seen);

    // Resume: spec.suspend false un-suspends the Job, and the Experiment stops saying Suspended.
    let resumed = with_status(Experiment::test(), &status_write);
    let script = vec![
        Expect::new(
            Method::PATCH,
            &format!("{JOBS}/cats-exp-train?"),
            200,
            json(trainer_job(&resumed, &[], &Config::test())),
        )
        .body(|body| assert_eq!(body, &json!({"spec": {"suspend": false}}))),
        status_patch(EXPERIMENTS, "cats-exp", json!({})).body(|body| {
            assert_eq!(condition(&body["status"], "Suspended")["status"], "False");
        }),
        event("Training", "Normal"),
    ];
    all.extend(world.reconcile_experiment(&resumed, script).await.1);
    all
}

#[tokio::test]
async fn a_queued_job_is_left_to_kueue() {
    let mut experiment = Experiment::test();
    experiment.metadata.labels = Some([(KUEUE_QUEUE_LABEL.to_owned(), "gpu".to_owned())].into());
    let world = World::new().with_job(trainer_job(&experiment, &[], &Config::test()));
    let script = vec![
        status_patch(EXPERIMENTS, "cats-exp", json!({})).body(|body| {
            assert_eq!(condition(&body["status"], "Suspended")["reason"], "Queued");
        }),
        event("Queued", "Normal"),
    ];
    world.reconcile_experiment(&experiment, script).await;
}

#[tokio::test]
async fn a_queued_job_is_stopped_and_resumed_through_its_kueue_workload() {
    queued_suspend_and_resume().await;
}

/// Under Kueue, `spec.suspend` sets the Workload's `spec.active`; the Job's own `suspend` is
/// Kueue's and is never patched.
async fn queued_suspend_and_resume() -> Vec<Seen> {
    const WORKLOADS: &str = "/apis/kueue.x-k8s.io/v1beta2/namespaces/ml/workloads";
    let workloads = |active: bool| {
        json!({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "WorkloadList", "metadata": {}, "items": [
            {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload",
             "metadata": {"name": "job-cats-exp-train-3f2a1", "namespace": "ml"}, "spec": {"active": active}}]})
    };
    let mut queued = Experiment::test();
    queued.metadata.labels = Some([(KUEUE_QUEUE_LABEL.to_owned(), "gpu".to_owned())].into());
    let mut admitted = running_job(&queued);
    admitted.metadata.uid = Some("uid-job-cats".into());
    admitted.spec.as_mut().unwrap().suspend = Some(false); // Kueue admitted it.
    let mut stopped = queued.clone();
    stopped.spec.suspend = true;
    let list = format!("{WORKLOADS}?&labelSelector=kueue.x-k8s.io%2Fjob-uid%3Duid-job-cats");
    let script = vec![
        Expect::new(Method::GET, &list, 200, workloads(true)),
        Expect::new(Method::PATCH, &format!("{WORKLOADS}/job-cats-exp-train-3f2a1?"), 200, Value::Null)
            .body(|body| assert_eq!(body, &json!({"spec": {"active": false}}))),
        status_patch(EXPERIMENTS, "cats-exp", json!({})),
        event("Training", "Normal"),
    ];
    let world = World::new().with_job(admitted.clone()).with_pod(running_pod());
    let (_, mut seen) = world.reconcile_experiment(&stopped, script).await;
    assert!(!seen.iter().any(|s| s.path.starts_with(JOBS)), "the Job's suspend is Kueue's: {seen:?}");
    // Kueue suspended the Job; `suspend: false` activates the Workload again.
    let mut pending = workloads(true);
    pending["items"][0]["status"] = json!({"conditions": [{"type": "QuotaReserved", "status": "False",
        "reason": "Pending", "message": "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in flavor default-flavor, 1 more needed"}]});
    let mut evicted = admitted;
    evicted.spec.as_mut().unwrap().suspend = Some(true);
    let script = vec![
        Expect::new(Method::GET, &list, 200, workloads(false)),
        Expect::new(Method::PATCH, &format!("{WORKLOADS}/job-cats-exp-train-3f2a1?"), 200, Value::Null)
            .body(|body| assert_eq!(body, &json!({"spec": {"active": true}}))),
        // Kueue's reason for the wait reaches the status.
        Expect::new(Method::GET, &list, 200, pending),
        status_patch(EXPERIMENTS, "cats-exp", json!({})).body(|body| {
            let suspended = condition(&body["status"], "Suspended");
            assert_eq!(suspended["reason"], "Queued");
            let message = suspended["message"].as_str().unwrap();
            assert!(message.contains("insufficient unused quota for nvidia.com/gpu"), "{message}");
        }),
        event("Queued", "Normal"),
    ];
    let (_, resumed) = World::new().with_job(evicted).reconcile_experiment(&queued, script).await;
    assert!(!resumed.iter().any(|s| s.path.starts_with(JOBS)), "{resumed:?}");
    seen.extend(resumed);
    seen
}

/// An older Kueue serves Workloads as v1beta1 only.
#[tokio::test]
async fn a_kueue_without_v1beta2_is_reached_through_v1beta1() {
    const WORKLOADS: &str = "/apis/kueue.x-k8s.io/v1beta1/namespaces/ml/workloads";
    let selector = "?&labelSelector=kueue.x-k8s.io%2Fjob-uid%3Duid-job-cats";
    let not_found = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "the server could not find the requested resource", "reason": "NotFound", "code": 404});
    let list = json!({"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "WorkloadList", "metadata": {}, "items": [
        {"apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload",
         "metadata": {"name": "job-cats-exp-train-3f2a1", "namespace": "ml"}, "spec": {"active": true}}]});
    let mut stopped = Experiment::test();
    stopped.metadata.labels = Some([(KUEUE_QUEUE_LABEL.to_owned(), "gpu".to_owned())].into());
    let mut admitted = running_job(&stopped);
    admitted.metadata.uid = Some("uid-job-cats".into());
    admitted.spec.as_mut().unwrap().suspend = Some(false);
    stopped.spec.suspend = true;
    let script = vec![
        Expect::new(
            Method::GET,
            &format!("/apis/kueue.x-k8s.io/v1beta2/namespaces/ml/workloads{selector}"),
            404,
            not_found,
        ),
        Expect::new(Method::GET, &format!("{WORKLOADS}{selector}"), 200, list),
        Expect::new(Method::PATCH, &format!("{WORKLOADS}/job-cats-exp-train-3f2a1?"), 200, Value::Null)
            .body(|body| assert_eq!(body, &json!({"spec": {"active": false}}))),
        status_patch(EXPERIMENTS, "cats-exp", json!({})),
        event("Training", "Normal"),
    ];
    let world = World::new().with_job(admitted).with_pod(running_pod());
    world.reconcile_experiment(&stopped, script).await;
}

#[tokio::test]
async fn deleting_with_retain_touches_nothing() {
    let mut experiment = Experiment::test();
    experiment.metadata.deletion_timestamp = Some(at(500));
    let (action, seen) = World::new().reconcile_experiment(&experiment, vec![]).await;
    assert!(seen.is_empty());
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn delete_policy_adds_a_finalizer_first() {
    let mut experiment = Experiment::test();
    experiment.spec.artifacts.deletion_policy = DeletionPolicy::Delete;
    let script = vec![
        Expect::new(Method::PATCH, &format!("{EXPERIMENTS}/cats-exp?"), 200, json(Experiment::test())).body(
            |body| {
                assert_eq!(
                    body[1],
                    json!({"op": "add", "path": "/metadata/finalizers", "value": ["ocellus.dev/artifacts"]})
                );
            },
        ),
    ];
    World::new().reconcile_experiment(&experiment, script).await;
}

#[tokio::test]
async fn deleting_with_delete_policy_runs_the_cleanup_job_then_lets_go() {
    delete_with_cleanup().await;
}

async fn delete_with_cleanup() -> Vec<Seen> {
    let experiment = Experiment::test().deleting(DeletionPolicy::Delete);
    let job = cleanup_job(&experiment, &Config::test());
    let expected = serde_json::to_value(&job).unwrap();
    assert_eq!(job.metadata.annotations.as_ref().unwrap()["ocellus.dev/owner-uid"], "uid-experiment-cats");
    // The Job is created; the finalizer stays while it runs.
    let script =
        vec![Expect::new(Method::POST, JOBS, 201, Value::Null).body(move |body| assert_eq!(body, &expected))];
    let (action, mut seen) = World::new().reconcile_experiment(&experiment, script).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    let (action, running) =
        World::new().with_job(job.clone()).reconcile_experiment(&experiment, vec![]).await;
    assert!(running.is_empty());
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    // It succeeded: an Event, then the finalizer goes.
    let mut done = job;
    done.status = crate::fixtures::job(&[("Complete", "CompletionsReached", "")], 0, 0).status;
    let script = vec![
        event("ArtifactsDeleted", "Normal"),
        Expect::new(Method::PATCH, &format!("{EXPERIMENTS}/cats-exp?"), 200, json(Experiment::test())).body(
            |body| {
                assert_eq!(body[1], json!({"op": "remove", "path": "/metadata/finalizers/0"}));
            },
        ),
    ];
    let (action, finished) = World::new().with_job(done).reconcile_experiment(&experiment, script).await;
    assert_eq!(action, Action::await_change());
    seen.extend(finished);
    seen
}

#[tokio::test]
async fn deleting_with_delete_policy_stops_a_running_trainer_before_the_cleanup() {
    stop_the_trainer_first().await;
}

/// The finalizer keeps the Experiment, so garbage collection would leave its trainer writing into
/// the folder being deleted: the operator suspends the Job and waits for the pod to stop.
async fn stop_the_trainer_first() -> Vec<Seen> {
    let experiment = Experiment::test().deleting(DeletionPolicy::Delete);
    let train = started_job(&experiment, 0);
    let script = vec![
        Expect::new(Method::PATCH, &format!("{JOBS}/cats-exp-train?"), 200, json(train.clone()))
            .body(|body| assert_eq!(body, &json!({"spec": {"suspend": true}}))),
    ];
    let world = World::new().with_job(train.clone()).with_pod(running_pod());
    let (action, mut seen) = world.reconcile_experiment(&experiment, script).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(5)), "no cleanup Job while the trainer runs");
    // Suspended and its pod still stopping: wait, without patching again.
    let mut suspended = train;
    suspended.spec.as_mut().unwrap().suspend = Some(true);
    let world = World::new().with_job(suspended).with_pod(running_pod());
    let (action, waiting) = world.reconcile_experiment(&experiment, vec![]).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    seen.extend(waiting);
    seen
}

#[tokio::test]
async fn a_failed_cleanup_keeps_the_finalizer_and_says_how_to_let_go() {
    let experiment = Experiment::test().deleting(DeletionPolicy::Delete);
    let mut job = cleanup_job(&experiment, &Config::test());
    job.status = crate::fixtures::job(&[("Failed", "BackoffLimitExceeded", "")], 0, 4).status;
    let script = vec![event("CleanupFailed", "Warning").body(|body| {
        assert_eq!(
            (body["reason"].as_str(), body["type"].as_str()),
            (Some("CleanupFailed"), Some("Warning"))
        );
        assert!(body["note"].as_str().unwrap().contains("deletionPolicy: Retain"), "{body}");
    })];
    let (action, _) = World::new().with_job(job).reconcile_experiment(&experiment, script).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
}

#[tokio::test]
async fn an_earlier_experiments_cleanup_job_is_waited_for_not_taken_as_ours() {
    let experiment = Experiment::test().deleting(DeletionPolicy::Delete);
    let mut earlier = cleanup_job(&experiment, &Config::test());
    earlier.metadata.annotations =
        Some([("ocellus.dev/owner-uid".to_owned(), "uid-of-an-old-one".to_owned())].into());
    earlier.status = crate::fixtures::job(&[("Complete", "CompletionsReached", "")], 0, 0).status;
    let (action, seen) = World::new().with_job(earlier).reconcile_experiment(&experiment, vec![]).await;
    assert!(seen.is_empty(), "the finalizer stays: {seen:?}");
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
}

#[tokio::test]
async fn in_a_terminating_namespace_a_volume_store_is_retained_and_the_finalizer_goes() {
    let experiment = Experiment::test().deleting(DeletionPolicy::Delete);
    let mut config = Config::test();
    config.artifacts = "pvc://ocellus-artifacts/runs".parse().unwrap();
    let terminating = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
        "message": "jobs \"cats-exp-cleanup\" is forbidden: unable to create new content in namespace ml because it is being terminated"});
    let script = vec![
        Expect::new(Method::POST, JOBS, 403, terminating),
        event("ArtifactsRetained", "Warning").body(|body| {
            assert_eq!(
                (body["reason"].as_str(), body["type"].as_str()),
                (Some("ArtifactsRetained"), Some("Warning"))
            );
            assert!(body["note"].as_str().unwrap().contains("pvc://ocellus-artifacts/runs"), "{body}");
        }),
        Expect::new(Method::PATCH, &format!("{EXPERIMENTS}/cats-exp?"), 200, json(Experiment::test())),
    ];
    let (action, _) = World::new().with_config(config).reconcile_experiment(&experiment, script).await;
    assert_eq!(action, Action::await_change(), "nothing hangs");
}

/// Requests of suspending, resuming and deleting with `deletionPolicy: Delete`.
pub async fn job_suspend_and_cleanup_requests() -> Vec<Seen> {
    [
        suspend_and_resume().await,
        queued_suspend_and_resume().await,
        stop_the_trainer_first().await,
        delete_with_cleanup().await,
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[tokio::test]
async fn deleting_after_switching_to_retain_only_drops_the_finalizer() {
    let experiment = Experiment::test().deleting(DeletionPolicy::Retain);
    let script =
        vec![Expect::new(Method::PATCH, &format!("{EXPERIMENTS}/cats-exp?"), 200, json(Experiment::test()))];
    World::new().reconcile_experiment(&experiment, script).await;
}

#[tokio::test]
async fn silence_past_the_timeout_is_progress_stalled() {
    let experiment = Experiment::test();
    let world = World::new().with_job(started_job(&experiment, 0)).with_pod(running_pod());
    let script = vec![status_patch(EXPERIMENTS, "cats-exp", json!({})), event("NoProgressReport", "Warning")];
    let (_, seen) = world.reconcile_experiment(&experiment, script).await;
    let status = patched_status(&seen);
    // Started at t=0, now t=1000, timeout 900.
    let stalled = condition(&status, "ProgressStalled");
    assert_eq!(
        (stalled["status"].as_str(), stalled["reason"].as_str()),
        (Some("True"), Some("NoProgressReport"))
    );

    // A report at t=500 clears it and the next check is due at t=1400.
    let stalled_experiment = with_status(experiment, &seen[0]);
    let report = TrainerReport {
        status: ExperimentStatus {
            progress: Some(Progress { stage: "Trial".into(), percent: 40, ..Default::default() }),
            ..Default::default()
        },
        ..Default::default()
    };
    world.reports.experiment_report(
        "ml",
        "cats-exp",
        "uid-experiment-cats",
        report,
        Timestamp::from_second(500).unwrap(),
    );
    let script = vec![status_patch(EXPERIMENTS, "cats-exp", json!({})), event("Training", "Normal")];
    let (action, seen) = world.reconcile_experiment(&stalled_experiment, script).await;
    let status = patched_status(&seen);
    assert_eq!(condition(&status, "ProgressStalled")["status"], "False");
    assert_eq!(status["progress"], json!({"stage": "Trial", "percent": 40}));
    assert_eq!(action, Action::requeue(Duration::from_secs(400)));
}

#[tokio::test]
async fn reports_reach_status_and_metrics() {
    let experiment = Experiment::test();
    let world = World::new().with_job(running_job(&experiment)).with_pod(running_pod());
    let report = TrainerReport {
        status: ExperimentStatus {
            best_model: Some(BestModel {
                architecture: Some("efficientnet_lite0".into()),
                score: Some(0.91),
                ..Default::default()
            }),
            trials: Some(TrialsSummary { total: 4, completed: 3, pruned: 1, failed: 0, top: vec![] }),
            ..Default::default()
        },
        ..Default::default()
    };
    world.reports.experiment_report(
        "ml",
        "cats-exp",
        "uid-experiment-cats",
        report,
        Timestamp::from_second(990).unwrap(),
    );
    let script = vec![status_patch(EXPERIMENTS, "cats-exp", json!({})), event("Training", "Normal")];
    let (_, seen) = world.reconcile_experiment(&experiment, script).await;
    let status = patched_status(&seen);
    assert_eq!(status["bestModel"], json!({"architecture": "efficientnet_lite0", "score": 0.91}));
    assert_eq!(status["trials"]["completed"], 3);
    let text = world.metrics.render();
    assert!(
        text.contains("ocellus_best_score{namespace=\"ml\",experiment=\"cats-exp\",scorer=\"Auto\"} 0.91"),
        "{text}"
    );
    assert!(text.contains("ocellus_trials_total{outcome=\"completed\"} 3"), "{text}");
    assert!(text.contains("ocellus_objects{kind=\"Experiment\",condition=\"Running\"} 1"), "{text}");
}

#[tokio::test]
async fn a_lost_final_report_is_made_good_from_result_json() {
    let experiment = Experiment::test();
    let mut done = running_job(&experiment);
    done.status = crate::fixtures::job(&[("Complete", "CompletionsReached", "")], 0, 0).status;
    let mut world = World::new().with_job(done);
    world.stored_result = Some(ExperimentStatus {
        best_model: Some(BestModel { score: Some(0.75), ..Default::default() }),
        ..Default::default()
    });
    let script = vec![status_patch(EXPERIMENTS, "cats-exp", json!({})), event("Succeeded", "Normal")];
    let (_, seen) = world.reconcile_experiment(&experiment, script).await;
    assert_eq!(patched_status(&seen)["bestModel"], json!({"score": 0.75}));
}

#[tokio::test]
async fn api_errors_are_counted_by_kind() {
    let world = World::new().with_datasets(vec![ready_cats()]);
    let (client, handle) = mock::client();
    let forbidden = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
                           "message": "jobs.batch is forbidden", "metadata": {}});
    let server = mock::serve(handle, vec![Expect::new(Method::POST, JOBS, 403, forbidden)]);
    let context = world.context(client);
    let experiment = Arc::new(Experiment::test());
    let error = experiment_controller::reconcile(experiment.clone(), context.clone()).await.unwrap_err();
    let action = experiment_controller::error_policy(experiment, &error, context.clone());
    assert_eq!(action, Action::requeue(Duration::from_secs(15)));
    drop(context);
    server.await.unwrap();
    let text = world.metrics.render();
    assert!(
        text.contains("ocellus_reconcile_errors_total{controller=\"experiment\",kind=\"forbidden\"} 1"),
        "{text}"
    );
    assert!(text.contains("ocellus_reconciliations_total{controller=\"experiment\"} 1"), "{text}");
}

/// Every call of one Experiment's life, from waiting for its Dataset to success.
pub async fn experiment_lifecycle() -> Vec<Seen> {
    let mut all = Vec::new();
    let mut experiment = Experiment::test();
    let write = || vec![status_patch(EXPERIMENTS, "cats-exp", json!({}))];
    // 1. Dataset missing.
    let (_, seen) = World::new()
        .reconcile_experiment(
            &experiment,
            [write(), vec![event("WaitingForDataset", "Normal")]].into_iter().flatten().collect(),
        )
        .await;
    experiment = with_status(experiment, &seen[0]);
    all.extend(seen);
    // 2. Dataset ready: the Job is created.
    let world = World::new().with_datasets(vec![ready_cats()]);
    let script =
        [vec![Expect::new(Method::POST, JOBS, 201, Value::Null)], write(), vec![event("Training", "Normal")]]
            .into_iter()
            .flatten()
            .collect();
    let (_, seen) = world.reconcile_experiment(&experiment, script).await;
    experiment = with_status(experiment, &seen[1]);
    all.extend(seen);
    // 3. The pod runs.
    let world = world.with_job(running_job(&experiment)).with_pod(running_pod());
    world.reports.experiment_report(
        "ml",
        "cats-exp",
        "uid-experiment-cats",
        TrainerReport::default(),
        Timestamp::from_second(NOW).unwrap(),
    );
    let (_, seen) = world
        .reconcile_experiment(
            &experiment,
            [write(), vec![event("Training", "Normal")]].into_iter().flatten().collect(),
        )
        .await;
    experiment = with_status(experiment, &seen[0]);
    all.extend(seen);
    // 4. Ten progress reports, each one status write.
    for percent in (10..=100).step_by(10) {
        let progress = Progress { stage: "Trial".into(), percent, ..Default::default() };
        let status = ExperimentStatus { progress: Some(progress), ..Default::default() };
        let report = TrainerReport { status, ..Default::default() };
        world.reports.experiment_report(
            "ml",
            "cats-exp",
            "uid-experiment-cats",
            report,
            Timestamp::from_second(NOW).unwrap(),
        );
        let (_, seen) = world.reconcile_experiment(&experiment, write()).await;
        experiment = with_status(experiment, &seen[0]);
        all.extend(seen);
    }
    // 5. The Job completes.
    let mut done = running_job(&experiment);
    done.status = crate::fixtures::job(&[("Complete", "CompletionsReached", "")], 0, 0).status;
    let world = World { jobs: vec![done], ..world };
    let (_, seen) = world
        .reconcile_experiment(
            &experiment,
            [write(), vec![event("Succeeded", "Normal")]].into_iter().flatten().collect(),
        )
        .await;
    experiment = with_status(experiment, &seen[0]);
    // The trainer sent no artifacts: the status links where `ocellus run` wrote them.
    let artifacts = experiment.status.as_ref().and_then(|s| s.artifacts.clone()).unwrap_or_default();
    assert_eq!(
        artifacts.report.as_deref(),
        Some("s3://ocellus-artifacts/runs/experiments/ml/cats-exp-uidexper/report.html")
    );
    assert_eq!(
        artifacts.scoring_bundle.as_deref(),
        Some("s3://ocellus-artifacts/runs/experiments/ml/cats-exp-uidexper/scoring")
    );
    all.extend(seen);
    // 6. Steady state: nothing.
    let (action, seen) = world.reconcile_experiment(&experiment, vec![]).await;
    assert_eq!(action, Action::await_change());
    all.extend(seen);
    all
}

#[tokio::test]
async fn a_full_lifecycle_uses_a_bounded_number_of_calls() {
    let seen = experiment_lifecycle().await;
    let count = |verb: &str, resource: &str| {
        seen.iter().filter(|s| s.rbac().2 == verb && s.rbac().1 == resource).count()
    };
    assert_eq!(count("create", "jobs"), 1);
    assert_eq!(count("patch", "experiments/status"), 14, "one per state change and per report");
    assert_eq!(count("create", "events"), 4, "one per summary change");
    assert_eq!(seen.iter().filter(|s| !s.is_write()).count(), 0, "reads come from the caches");
    assert_eq!(seen.len(), 19);
}

#[tokio::test]
async fn a_split_waits_for_its_parent() {
    dataset_import_requests().await;
}

/// Requests of a split Dataset waiting for its parent, then starting its import.
pub async fn dataset_import_requests() -> Vec<Seen> {
    let split = Dataset::split_of("cats");
    let mut importing = Dataset::test();
    importing.status = Some(Default::default());
    let world = World::new().with_datasets(vec![importing]);
    let script = vec![
        status_patch(DATASETS, "cats-train", json!({})).body(|body| {
            let ready = condition(&body["status"], "Ready");
            assert_eq!(ready["reason"], "WaitingForDataset");
            assert_eq!(ready["message"], "waiting for Dataset cats to be Ready");
        }),
        event("WaitingForDataset", "Normal"),
    ];
    let (_, mut all) = world.reconcile_dataset(&split, script).await;

    let world = World::new().with_datasets(vec![ready_cats()]);
    let expected =
        serde_json::to_value(crate::jobs::import_job(&split, Some(&ready_cats()), &Config::test())).unwrap();
    let script = vec![
        Expect::new(Method::POST, JOBS, 201, Value::Null).body(move |body| assert_eq!(body, &expected)),
        status_patch(DATASETS, "cats-train", json!({})).body(|body| {
            assert_eq!(condition(&body["status"], "Ready")["reason"], "Importing");
        }),
        event("Importing", "Normal"),
    ];
    all.extend(world.reconcile_dataset(&split, script).await.1);
    all
}

#[tokio::test]
async fn a_finished_import_writes_the_reported_profile() {
    let dataset = Dataset::test();
    let mut job = crate::jobs::import_job(&dataset, None, &Config::test());
    job.status = crate::fixtures::job(&[("Complete", "CompletionsReached", "")], 0, 0).status;
    let world = World::new().with_job(job);
    let report = ocellus_crds::DatasetReport {
        rows: Some(40),
        columns: vec![ocellus_crds::dataset::ColumnProfile {
            name: "image".into(),
            type_: ColumnType::Image,
            missing: 0,
        }],
        location: Some("s3://ocellus-artifacts/runs/datasets/ml/cats".into()),
        ..Default::default()
    };
    world.reports.dataset_report("ml", "cats", "uid-dataset-cats", report);
    let script = vec![
        status_patch(DATASETS, "cats", json!({})).body(|body| {
            let ready = condition(&body["status"], "Ready");
            assert_eq!(
                (ready["status"].as_str(), ready["reason"].as_str()),
                (Some("True"), Some("Imported"))
            );
            assert_eq!(body["status"]["rows"], 40);
            assert_eq!(body["status"]["location"], "s3://ocellus-artifacts/runs/datasets/ml/cats");
        }),
        event("Imported", "Normal"),
    ];
    world.reconcile_dataset(&dataset, script).await;
}

#[tokio::test]
async fn a_failed_import_is_not_retried_by_the_operator() {
    let mut dataset = Dataset::test();
    let status = dataset.status.get_or_insert_default();
    crate::status::set(&mut status.conditions, "Ready", false, "BadInput", "bad archive", Some(1), &at(1));
    status.observed_generation = Some(1);
    let (_, seen) = World::new().reconcile_dataset(&dataset, vec![]).await;
    assert!(seen.is_empty(), "the Job is gone and the import is over: no new Job");
}
