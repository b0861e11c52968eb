//! The Experiment controller: waits for Datasets, validates, runs one trainer Job and
//! mirrors its state and the trainer's reports into status.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event, finalizer};
use kube::{Api, ResourceExt};
use ocellus_crds::condition::{reasons, types};
use ocellus_crds::experiment::{DeletionPolicy, ExperimentStatus};
use ocellus_crds::report::merge_experiment_report;
use ocellus_crds::{Dataset, Experiment, is_true};

use crate::artifacts_cleanup::{self, Cleanup};
use crate::context::{Context, MANAGER};
use crate::error::{Error, Result, is_already_exists};
use crate::job_state::{Assessment, Phase, assess, creation_refused, lacks_pods};
use crate::jobs::{experiment_artifacts, queue_name, trainer_job};
use crate::kueue;
use crate::metrics::ObjectState;
use crate::names::job_name;
use crate::status::{apply_status, clear, publish_change, set, summary};
use crate::validate::validate;

pub use crate::artifacts_cleanup::FINALIZER;
pub const CONTROLLER: &str = "experiment";
/// How often a waiting or pending Experiment is looked at again (what it waits for does
/// not trigger a reconcile by itself: Dataset status, pod scheduling).
pub const POLL: Duration = Duration::from_secs(30);
/// How often a queued Experiment reads its Kueue Workload again: Kueue's reason for the wait
/// changes without any change to the Job, so nothing else would bring a reconcile.
const QUEUE_POLL: Duration = Duration::from_secs(10);

pub async fn reconcile(experiment: Arc<Experiment>, context: Arc<Context>) -> Result<Action> {
    let _timer = context.metrics.reconcile(CONTROLLER);
    let namespace = experiment.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
    let has_finalizer = experiment.finalizers().iter().any(|f| f == FINALIZER);
    if experiment.metadata.deletion_timestamp.is_some() {
        if !has_finalizer {
            return Ok(Action::await_change());
        }
        return match artifacts_cleanup::step(&experiment, &context).await? {
            Cleanup::Done => {
                artifacts_cleanup::remove_finalizer(&experiment, &context).await?;
                Ok(Action::await_change())
            }
            Cleanup::Waiting(after) => Ok(Action::requeue(after)),
        };
    }
    if experiment.spec.artifacts.deletion_policy == DeletionPolicy::Retain && !has_finalizer {
        return experiment.apply(&context).await;
    }
    // The helper adds the finalizer; its removal is the cleanup's own (above).
    let api: Api<Experiment> = Api::namespaced(context.client.clone(), &namespace);
    finalizer(&api, FINALIZER, experiment, |event| async {
        match event {
            Event::Apply(experiment) => experiment.apply(&context).await,
            // A deleted Experiment with the finalizer returned above: the helper never sees one.
            Event::Cleanup(_) => unreachable!("deletion is handled before the finalizer helper"),
        }
    })
    .await
    .map_err(|error| Error::Finalizer(Box::new(error)))
}

pub fn error_policy(experiment: Arc<Experiment>, error: &Error, context: Arc<Context>) -> Action {
    tracing::warn!(experiment = %experiment.name_any(), %error, "reconcile failed");
    context.metrics.error(CONTROLLER, error.kind());
    Action::requeue(Duration::from_secs(15))
}

/// What stands between an Experiment and its Job.
enum Readiness {
    Waiting(String),
    Invalid(String),
    Ready(Box<Experiment>, Vec<Arc<Dataset>>),
}

/// The work of the controller, as methods on the resource.
trait ExperimentReconciler {
    async fn apply(&self, context: &Context) -> Result<Action>;
    fn readiness(&self, context: &Context) -> Readiness;
    async fn sync_suspend(&self, context: &Context, namespace: &str, job: Arc<Job>) -> Result<Arc<Job>>;
    fn set_conditions(&self, status: &mut ExperimentStatus, assessment: &Assessment, now: &Time);
}

impl ExperimentReconciler for Experiment {
    async fn apply(&self, context: &Context) -> Result<Action> {
        let namespace = self.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
        let name = self.name_any();
        let generation = self.metadata.generation;
        let now = Time(context.now());
        let old = self.status.clone().unwrap_or_default();
        let mut status = old.clone();
        let conditions = &mut status.conditions;
        let finished = is_true(conditions, types::SUCCEEDED) || is_true(conditions, types::FAILED);
        let job_name = job_name(&name, "train");
        let mut phase = None;
        match context.job(&namespace, &job_name) {
            None if finished => {}
            None => match self.readiness(context) {
                Readiness::Waiting(message) => {
                    set(
                        conditions,
                        types::RUNNING,
                        false,
                        reasons::WAITING_FOR_DATASET,
                        &message,
                        generation,
                        &now,
                    );
                    phase = Some(Phase::Pending);
                }
                Readiness::Invalid(message) => {
                    set(conditions, types::FAILED, true, reasons::INVALID_SPEC, &message, generation, &now);
                    set(conditions, types::RUNNING, false, reasons::INVALID_SPEC, &message, generation, &now);
                }
                Readiness::Ready(resolved, datasets) => {
                    let job = trainer_job(
                        &resolved,
                        &datasets.iter().map(|d| &**d).collect::<Vec<_>>(),
                        &context.config,
                    );
                    create_job(context, &namespace, &job).await?;
                    status.pipeline = Some(resolved.spec.pipeline);
                    let created = Assessment {
                        phase: if job.spec.as_ref().and_then(|s| s.suspend) == Some(true) {
                            Phase::Suspended
                        } else {
                            Phase::Pending
                        },
                        reason: reasons::TRAINING,
                        message: "the trainer Job was created".into(),
                    };
                    phase = Some(created.phase);
                    self.set_conditions(&mut status, &created, &now);
                }
            },
            Some(job) if !owned_by(&job, self) => {
                // The Job of a deleted Experiment of the same name, not yet collected: never adopt it.
                let message =
                    format!("waiting for Job {job_name} of an earlier Experiment named {name} to be deleted");
                set(
                    conditions,
                    types::RUNNING,
                    false,
                    reasons::WAITING_FOR_DATASET,
                    &message,
                    generation,
                    &now,
                );
                phase = Some(Phase::Pending);
            }
            Some(job) => {
                let job = self.sync_suspend(context, &namespace, job).await?;
                let pods = if Assessment::needs_pods(&job) {
                    context.pods_of(&namespace, &job_name)
                } else {
                    vec![]
                };
                let mut assessment = assess(&job, &pods);
                if assessment.phase == Phase::Suspended
                    && !self.spec.suspend
                    && queue_name(self).is_some()
                    && let Some(why) = kueue::waiting_reason(context, &namespace, &job).await
                {
                    let message = format!("the Job waits for its queue to admit it: {why}");
                    assessment = Assessment { phase: Phase::Suspended, reason: reasons::QUEUED, message };
                }
                if lacks_pods(&assessment, &pods)
                    && let Some(refusal) = context.pod_creation_refusal(&job).await
                {
                    assessment = creation_refused(&refusal);
                }
                phase = Some(assessment.phase);
                self.set_conditions(&mut status, &assessment, &now);
                let job_status = job.status.as_ref();
                status.start_time = job_status.and_then(|s| s.start_time.clone()).or(status.start_time);
                status.completion_time =
                    job_status.and_then(|s| s.completion_time.clone()).or(status.completion_time);
            }
        }
        let uid = self.metadata.uid.clone().unwrap_or_default();
        let report = context.reports.experiment(&namespace, &name, &uid);
        if let Some(report) = &report {
            merge_experiment_report(&mut status, &report.status);
        }
        let final_reported = report.as_ref().is_some_and(|r| r.final_);
        if phase == Some(Phase::Succeeded) && !final_reported && status.best_model.is_none() {
            // The final report was lost: result.json in the store says the same.
            let location = experiment_artifacts(self, &context.config).location.unwrap_or_default();
            match (context.results)(location.clone()).await {
                Ok(Some(result)) => merge_experiment_report(&mut status, &result),
                Ok(None) => {
                    tracing::info!(experiment = %name, %location, "no final report and no result.json to read")
                }
                Err(error) => {
                    tracing::warn!(experiment = %name, %error, "no final report, and result.json could not be read")
                }
            }
        }
        if phase == Some(Phase::Succeeded) && status.artifacts.is_none() {
            status.artifacts = Some(experiment_artifacts(self, &context.config));
        }
        let mut requeue = match phase {
            Some(Phase::Pending) => Some(POLL),
            Some(Phase::Suspended) if !self.spec.suspend && queue_name(self).is_some() => Some(QUEUE_POLL),
            _ => None,
        };
        if phase == Some(Phase::Running) {
            // Silence is measured from the last report, or from the start of the trainer.
            let last_sign =
                report.map(|r| r.received).into_iter().chain(status.start_time.as_ref().map(|t| t.0)).max();
            let timeout = context.config.progress_timeout();
            let since =
                last_sign.map(|at| context.now().duration_since(at).unsigned_abs()).unwrap_or_default();
            let conditions = &mut status.conditions;
            if since >= timeout {
                let message = format!(
                    "no progress report from the trainer for {}s; check the trainer pod's logs and that it can reach {}",
                    since.as_secs(),
                    context.config.status_url()
                );
                set(
                    conditions,
                    types::PROGRESS_STALLED,
                    true,
                    reasons::NO_PROGRESS_REPORT,
                    &message,
                    generation,
                    &now,
                );
                requeue = Some(timeout);
            } else {
                clear(
                    conditions,
                    types::PROGRESS_STALLED,
                    reasons::REPORTING,
                    "the trainer reports progress",
                    generation,
                    &now,
                );
                requeue = Some(timeout - since);
            }
        }
        status.observed_generation = generation;
        apply_status(self, &old, &status, context).await?;
        publish_change(self, &old.conditions, &status.conditions, context).await;
        context.metrics.observe("Experiment", &namespace, &name, Some(metric_state(self, &status)));
        Ok(requeue.map_or_else(Action::await_change, Action::requeue))
    }

    /// The Datasets this Experiment needs, once they are Ready and fit the spec.
    fn readiness(&self, context: &Context) -> Readiness {
        let namespace = self.namespace().unwrap_or_default();
        let mut datasets = Vec::new();
        for reference in std::iter::once(&self.spec.dataset_ref).chain(&self.spec.test_dataset_ref) {
            let Some(dataset) = context.dataset(&namespace, &reference.name) else {
                return Readiness::Waiting(format!(
                    "waiting for Dataset {}, which does not exist yet",
                    reference.name
                ));
            };
            if !is_true(
                &dataset.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default(),
                types::READY,
            ) {
                let why = dataset
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.iter().find(|c| c.type_ == types::READY))
                    .map(|c| format!(" ({}: {})", c.reason, c.message))
                    .unwrap_or_default();
                return Readiness::Waiting(format!(
                    "waiting for Dataset {} to be Ready{why}",
                    reference.name
                ));
            }
            datasets.push(dataset);
        }
        let profile = |d: &Dataset| d.status.clone().unwrap_or_default();
        let test = datasets.get(1).map(|d| profile(d));
        match validate(&self.spec, &profile(&datasets[0]), test.as_ref()) {
            Ok(pipeline) => {
                let mut resolved = self.clone();
                resolved.spec.pipeline = pipeline;
                Readiness::Ready(Box::new(resolved), datasets)
            }
            Err(message) => Readiness::Invalid(message),
        }
    }

    /// Makes the Job's `suspend` follow `spec.suspend`. A queued Job's `suspend` is Kueue's:
    /// its Workload's `spec.active` follows `spec.suspend` instead.
    /// Returns the Job as it is after the patch.
    async fn sync_suspend(&self, context: &Context, namespace: &str, job: Arc<Job>) -> Result<Arc<Job>> {
        let suspended = job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
        let finished = !Assessment::needs_pods(&job) && !suspended;
        let wanted = self.spec.suspend;
        if queue_name(self).is_some() {
            // A running Job with `suspend: false` asked has an active Workload: nothing to ask.
            if !finished && (wanted || suspended) {
                kueue::set_active(context, namespace, &job, !wanted).await?;
            }
            return Ok(job);
        }
        if finished || wanted == suspended {
            return Ok(job);
        }
        let api: Api<Job> = Api::namespaced(context.client.clone(), namespace);
        let patch = serde_json::json!({"spec": {"suspend": wanted}});
        Ok(Arc::new(api.patch(&job.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?))
    }

    fn set_conditions(&self, status: &mut ExperimentStatus, assessment: &Assessment, now: &Time) {
        let generation = self.metadata.generation;
        let conditions = &mut status.conditions;
        let message = assessment.message.as_str();
        let reason = assessment.reason;
        match assessment.phase {
            Phase::Suspended => {
                let (reason, message) = if self.spec.suspend {
                    (
                        reasons::SUSPENDED_BY_USER,
                        "spec.suspend is true; the trainer is stopped and keeps its checkpoints",
                    )
                } else if reason == reasons::QUEUED {
                    (reasons::QUEUED, message)
                } else {
                    (reasons::QUEUED, "the Job waits for its queue to admit it")
                };
                set(conditions, types::SUSPENDED, true, reason, message, generation, now);
                set(conditions, types::RUNNING, false, reason, message, generation, now);
            }
            Phase::Pending | Phase::Running => {
                clear(
                    conditions,
                    types::SUSPENDED,
                    reasons::TRAINING,
                    "the Job is not suspended",
                    generation,
                    now,
                );
                set(
                    conditions,
                    types::RUNNING,
                    assessment.phase == Phase::Running,
                    reason,
                    message,
                    generation,
                    now,
                );
            }
            Phase::Succeeded => {
                set(conditions, types::RUNNING, false, reason, message, generation, now);
                set(conditions, types::SUCCEEDED, true, reason, message, generation, now);
            }
            Phase::Failed => {
                set(conditions, types::RUNNING, false, reason, message, generation, now);
                set(conditions, types::FAILED, true, reason, message, generation, now);
            }
        }
    }
}

/// Whether `job`'s controller is `owner` (the same object, by UID, not only by name).
pub fn owned_by<K: kube::Resource>(job: &Job, owner: &K) -> bool {
    let uid = owner.meta().uid.as_deref();
    job.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && Some(r.uid.as_str()) == uid)
}

/// Creates a Job; one that exists already (made by an earlier operator) is adopted as is.
pub async fn create_job(context: &Context, namespace: &str, job: &Job) -> Result<()> {
    let api: Api<Job> = Api::namespaced(context.client.clone(), namespace);
    match api.create(&PostParams { field_manager: Some(MANAGER.into()), ..Default::default() }, job).await {
        Ok(_) => Ok(()),
        Err(error) if is_already_exists(&error) => {
            tracing::info!(job = %job.name_any(), "Job exists already; adopting it");
            Ok(())
        }
        Err(error) => Err(error.into()),
    }
}

fn metric_state(experiment: &Experiment, status: &ExperimentStatus) -> ObjectState {
    let scorer = format!("{:?}", experiment.spec.scorer);
    let trials = status.trials.as_ref().map_or([0; 3], |t| [t.completed, t.pruned, t.failed]);
    ObjectState {
        condition: summary(&status.conditions)
            .filter(|c| c.status == "True")
            .map_or("Pending".into(), |c| c.type_.clone()),
        best: status.best_model.as_ref().and_then(|b| b.score).map(|score| (scorer, score)),
        trials,
    }
}
