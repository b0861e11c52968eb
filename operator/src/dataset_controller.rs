//! The Dataset controller: one import Job per Dataset (a split waits for its parent), and
//! the profile the import reports, in status.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use ocellus_crds::condition::{reasons, types};
use ocellus_crds::dataset::CREDENTIALS_LABEL;
use ocellus_crds::report::merge_dataset_report;
use ocellus_crds::{Dataset, find_condition, is_true};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::experiment_controller::{POLL, create_job, owned_by};
use crate::job_state::{Assessment, Phase, assess, creation_refused, lacks_pods};
use crate::jobs::{dataset_location, import_job};
use crate::metrics::ObjectState;
use crate::names::job_name;
use crate::status::{apply_status, publish_change, set};

pub const CONTROLLER: &str = "dataset";

/// Reasons after which the import is over: the Job is not made again.
const FINAL_REASONS: [&str; 6] = [
    reasons::IMPORTED,
    reasons::BAD_INPUT,
    reasons::SOURCE_UNREACHABLE,
    reasons::DEADLINE_EXCEEDED,
    reasons::OOM_KILLED,
    reasons::FAILED,
];

pub async fn reconcile(dataset: Arc<Dataset>, context: Arc<Context>) -> Result<Action> {
    let _timer = context.metrics.reconcile(CONTROLLER);
    if dataset.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    dataset.apply(&context).await
}

pub fn error_policy(dataset: Arc<Dataset>, error: &Error, context: Arc<Context>) -> Action {
    tracing::warn!(dataset = %dataset.name_any(), %error, "reconcile failed");
    context.metrics.error(CONTROLLER, error.kind());
    Action::requeue(Duration::from_secs(15))
}

/// The work of the controller, as methods on the resource.
trait DatasetReconciler {
    async fn apply(&self, context: &Context) -> Result<Action>;
    fn parent(&self, context: &Context) -> Result<Option<Arc<Dataset>>, String>;
    async fn credentials_refusal(&self, context: &Context, namespace: &str) -> Result<Option<String>>;
}

impl DatasetReconciler for Dataset {
    async fn apply(&self, context: &Context) -> Result<Action> {
        let namespace = self.namespace().ok_or(Error::MissingField("metadata.namespace"))?;
        let name = self.name_any();
        let generation = self.metadata.generation;
        let now = Time(context.now());
        let old = self.status.clone().unwrap_or_default();
        let mut status = old.clone();
        let finished = find_condition(&old.conditions, types::READY)
            .is_some_and(|c| c.status == "True" || FINAL_REASONS.contains(&c.reason.as_str()));
        let job_name = job_name(&name, "import");
        let mut requeue = None;
        let job = context.job(&namespace, &job_name);
        let credentials_refusal = match (&job, finished) {
            (None, false) => self.credentials_refusal(context, &namespace).await?,
            _ => None,
        };
        match job {
            None if finished => {}
            None => match self.parent(context) {
                Err(message) => {
                    set(
                        &mut status.conditions,
                        types::READY,
                        false,
                        reasons::WAITING_FOR_DATASET,
                        &message,
                        generation,
                        &now,
                    );
                    requeue = Some(POLL);
                }
                Ok(_) if credentials_refusal.is_some() => {
                    let refusal = credentials_refusal.as_deref().unwrap_or_default();
                    set(
                        &mut status.conditions,
                        types::READY,
                        false,
                        reasons::CREDENTIALS_NOT_ALLOWED,
                        refusal,
                        generation,
                        &now,
                    );
                    requeue = Some(POLL);
                }
                Ok(parent) => {
                    create_job(context, &namespace, &import_job(self, parent.as_deref(), &context.config))
                        .await?;
                    let message = "the import Job was created";
                    set(
                        &mut status.conditions,
                        types::READY,
                        false,
                        reasons::IMPORTING,
                        message,
                        generation,
                        &now,
                    );
                    requeue = Some(POLL);
                }
            },
            Some(job) if !owned_by(&job, self) => {
                let message =
                    format!("waiting for Job {job_name} of an earlier Dataset named {name} to be deleted");
                set(
                    &mut status.conditions,
                    types::READY,
                    false,
                    reasons::IMPORTING,
                    &message,
                    generation,
                    &now,
                );
                requeue = Some(POLL);
            }
            Some(job) => {
                let pods = if Assessment::needs_pods(&job) {
                    context.pods_of(&namespace, &job_name)
                } else {
                    vec![]
                };
                let mut assessment = assess(&job, &pods);
                if lacks_pods(&assessment, &pods)
                    && let Some(refusal) = context.pod_creation_refusal(&job).await
                {
                    assessment = creation_refused(&refusal);
                }
                let (ready, reason) = match assessment.phase {
                    Phase::Succeeded => (true, reasons::IMPORTED),
                    Phase::Running if assessment.reason == reasons::TRAINING => (false, reasons::IMPORTING),
                    Phase::Pending if assessment.reason == reasons::TRAINING => (false, reasons::IMPORTING),
                    _ => (false, assessment.reason),
                };
                let message = match assessment.phase {
                    Phase::Succeeded => "imported; the profile is in status",
                    Phase::Running | Phase::Pending if reason == reasons::IMPORTING => {
                        "the import is running"
                    }
                    _ => &assessment.message,
                };
                if assessment.phase == Phase::Pending {
                    requeue = Some(POLL);
                }
                set(&mut status.conditions, types::READY, ready, reason, message, generation, &now);
            }
        }
        let uid = self.metadata.uid.clone().unwrap_or_default();
        if let Some(report) = context.reports.dataset(&namespace, &name, &uid) {
            merge_dataset_report(&mut status, &report);
        }
        if is_true(&status.conditions, types::READY) {
            // The store's address, not the import pod's view of it (a PVC's mount path): the
            // trainer Job maps it back to its own mount.
            status.location = Some(dataset_location(self, &context.config));
        }
        status.observed_generation = generation;
        apply_status(self, &old, &status, context).await?;
        publish_change(self, &old.conditions, &status.conditions, context).await;
        let condition = if is_true(&status.conditions, types::READY) { "Ready" } else { "NotReady" };
        let state = ObjectState { condition: condition.into(), ..Default::default() };
        context.metrics.observe("Dataset", &namespace, &name, Some(state));
        Ok(requeue.map_or_else(Action::await_change, Action::requeue))
    }

    /// Why the Secret of `spec.source.s3.credentialsSecretRef` may not be used, if it may not: it
    /// must exist and carry [`CREDENTIALS_LABEL`]` = "true"`. Only its metadata is read.
    async fn credentials_refusal(&self, context: &Context, namespace: &str) -> Result<Option<String>> {
        let Some(secret) = self.spec.source.s3.as_ref().and_then(|s| s.credentials_secret_ref.as_ref())
        else {
            return Ok(None);
        };
        let api: Api<Secret> = Api::namespaced(context.client.clone(), namespace);
        let refusal = match api.get_metadata_opt(&secret.name).await? {
            None => format!(
                "Secret {} named in spec.source.s3.credentialsSecretRef does not exist in namespace {namespace}; \
                 create it, labelled {CREDENTIALS_LABEL}=true",
                secret.name
            ),
            Some(found) if found.labels().get(CREDENTIALS_LABEL).map(String::as_str) != Some("true") => {
                format!(
                    "Secret {} is not labelled {CREDENTIALS_LABEL}=true, so Ocellus may not send its keys anywhere; \
                 whoever manages the Secret can allow it with `kubectl label secret {} {CREDENTIALS_LABEL}=true`",
                    secret.name, secret.name
                )
            }
            Some(_) => return Ok(None),
        };
        Ok(Some(refusal))
    }

    /// The parent of a split, once it is Ready; `Ok(None)` for a Dataset that is no split.
    fn parent(&self, context: &Context) -> Result<Option<Arc<Dataset>>, String> {
        let Some(split) = &self.spec.source.split else { return Ok(None) };
        let namespace = self.namespace().unwrap_or_default();
        let parent_name = &split.dataset_ref.name;
        let Some(parent) = context.dataset(&namespace, parent_name) else {
            return Err(format!("waiting for Dataset {parent_name}, which does not exist yet"));
        };
        let conditions = parent.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
        if !is_true(conditions, types::READY) {
            return Err(format!("waiting for Dataset {parent_name} to be Ready"));
        }
        Ok(Some(parent))
    }
}
