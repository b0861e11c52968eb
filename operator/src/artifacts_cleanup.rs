//! `deletionPolicy: Delete`: an Experiment's artifacts leave the store before the Experiment
//! goes. The finalizer stays until the cleanup Job has succeeded (creating the Job is not
//! enough: the pod may fail). In a namespace that is being deleted no new Job can start, so the
//! operator deletes an S3 folder with its own keys, and a PVC folder, which only pods can reach,
//! is retained with a Warning Event rather than holding the namespace forever.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use ocellus_crds::Experiment;
use ocellus_crds::contract::location::S3Prefix;
use ocellus_crds::experiment::DeletionPolicy;
use serde_json::json;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::experiment_controller::create_job;
use crate::job_state::job_condition;
use crate::jobs::{OWNER_UID_ANNOTATION, cleanup_job, experiment_artifacts, queue_name};
use crate::kueue;
use crate::names::job_name;

/// Finalizer that removes an Experiment's artifacts (`deletionPolicy: Delete` only).
pub const FINALIZER: &str = "ocellus.dev/artifacts";
/// How often a running cleanup Job is looked at (it has no owner, so it triggers nothing).
const CLEANUP_POLL: Duration = Duration::from_secs(5);
/// How often a failed cleanup is looked at again, waiting for a person.
const FAILED_POLL: Duration = Duration::from_secs(60);

/// Where the cleanup of a deleted Experiment stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Cleanup {
    /// Nothing (more) to delete: the finalizer may go.
    Done,
    /// Look again after this long.
    Waiting(Duration),
}

/// One step of the cleanup of an Experiment that is being deleted and holds the finalizer.
pub async fn step(experiment: &Experiment, context: &Context) -> Result<Cleanup> {
    if experiment.spec.artifacts.deletion_policy != DeletionPolicy::Delete {
        return Ok(Cleanup::Done);
    }
    let namespace = experiment.namespace().unwrap_or_default();
    let uid = experiment.uid().unwrap_or_default();
    if stop_the_trainer(experiment, context, &namespace, &uid).await? {
        return Ok(Cleanup::Waiting(CLEANUP_POLL));
    }
    let name = job_name(&experiment.name_any(), "cleanup");
    let job = context.job(&namespace, &name);
    let ours = job.as_ref().is_some_and(|j| j.annotations().get(OWNER_UID_ANNOTATION) == Some(&uid));
    match job {
        Some(job) if ours && job_condition(&job, "Complete").is_some() => {
            publish(context, experiment, EventType::Normal, "ArtifactsDeleted", "the artifacts were deleted")
                .await;
            Ok(Cleanup::Done)
        }
        Some(job) if ours && job_condition(&job, "Failed").is_some() => {
            let note = format!(
                "the artifacts cleanup Job {name} failed (its pod's log says why); fix that and delete the Job to \
                 retry, or set spec.artifacts.deletionPolicy: Retain to keep the artifacts and let the Experiment go"
            );
            publish(context, experiment, EventType::Warning, "CleanupFailed", &note).await;
            Ok(Cleanup::Waiting(FAILED_POLL))
        }
        // Ours and running, or an earlier Experiment's of the same name still there.
        Some(_) => Ok(Cleanup::Waiting(CLEANUP_POLL)),
        None => match create_job(context, &namespace, &cleanup_job(experiment, &context.config)).await {
            Ok(()) => {
                tracing::info!(experiment = %experiment.name_any(), "artifacts cleanup Job created");
                Ok(Cleanup::Waiting(CLEANUP_POLL))
            }
            Err(Error::Kube(error)) if is_namespace_terminating(&error) => {
                without_a_pod(experiment, context).await
            }
            Err(error) => Err(error),
        },
    }
}

/// Whether the Experiment's trainer still has a pod that is not finished: it would write into
/// the folder being deleted (its trials mirror, its final publish). The Experiment's finalizer
/// keeps it, so garbage collection leaves its Job running: the operator suspends the Job (or,
/// under Kueue, deactivates its Workload), and the Job controller stops the pod.
async fn stop_the_trainer(
    experiment: &Experiment,
    context: &Context,
    namespace: &str,
    uid: &str,
) -> Result<bool> {
    let train = job_name(&experiment.name_any(), "train");
    let running = context.pods_of(namespace, &train).iter().any(|pod| {
        !matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
    });
    if !running {
        return Ok(false);
    }
    let job = context.job(namespace, &train);
    let ours = job.as_ref().is_some_and(|j| j.owner_references().iter().any(|o| o.uid == uid));
    let suspended = job.as_ref().and_then(|j| j.spec.as_ref()?.suspend).unwrap_or(false);
    if let Some(job) = job.as_ref().filter(|_| ours && queue_name(experiment).is_some()) {
        kueue::set_active(context, namespace, job, false).await?;
    } else if ours && !suspended {
        let api: Api<Job> = Api::namespaced(context.client.clone(), namespace);
        let patch = json!({"spec": {"suspend": true}});
        api.patch(&train, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        tracing::info!(experiment = %experiment.name_any(), "suspended the trainer Job before deleting its artifacts");
    }
    Ok(true)
}

/// The namespace is being deleted: no pod can run the cleanup there.
async fn without_a_pod(experiment: &Experiment, context: &Context) -> Result<Cleanup> {
    let location = experiment_artifacts(experiment, &context.config).location.unwrap_or_default();
    let Ok(prefix) = S3Prefix::parse(&location) else {
        let note = format!(
            "the namespace is being deleted, so no cleanup pod can run; the artifacts at {location} are retained \
             (delete them from the volume by hand)"
        );
        publish(context, experiment, EventType::Warning, "ArtifactsRetained", &note).await;
        return Ok(Cleanup::Done);
    };
    let deleted = tokio::task::spawn_blocking(move || {
        ocellus_dataset::store::Store::from_env().and_then(|store| store.delete_ocellus_folder(&prefix))
    })
    .await;
    match deleted {
        Ok(Ok(count)) => {
            let note =
                format!("the namespace is being deleted; the operator deleted {count} objects at {location}");
            publish(context, experiment, EventType::Normal, "ArtifactsDeleted", &note).await;
            Ok(Cleanup::Done)
        }
        Ok(Err(error)) => {
            tracing::warn!(experiment = %experiment.name_any(), %location, %error, "deleting the artifacts failed");
            Ok(Cleanup::Waiting(FAILED_POLL))
        }
        Err(error) => {
            tracing::warn!(experiment = %experiment.name_any(), %error, "the artifacts deletion task failed");
            Ok(Cleanup::Waiting(FAILED_POLL))
        }
    }
}

/// Removes the finalizer, as kube-rs's finalizer helper does: a JSON patch that tests the
/// entry first, so a concurrent change of the list makes it fail instead of removing another.
pub async fn remove_finalizer(experiment: &Experiment, context: &Context) -> Result<()> {
    let Some(index) = experiment.finalizers().iter().position(|f| f == FINALIZER) else { return Ok(()) };
    let api: Api<Experiment> =
        Api::namespaced(context.client.clone(), &experiment.namespace().unwrap_or_default());
    let path = format!("/metadata/finalizers/{index}");
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": path, "value": FINALIZER},
        {"op": "remove", "path": path},
    ]))
    .expect("a valid JSON patch");
    api.patch(&experiment.name_any(), &PatchParams::default(), &Patch::Json::<()>(patch)).await?;
    Ok(())
}

fn is_namespace_terminating(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 403 && status.message.contains("being terminated"))
}

async fn publish(context: &Context, experiment: &Experiment, type_: EventType, reason: &str, note: &str) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.into()),
        action: "Delete".into(),
        secondary: None,
    };
    if let Err(error) = context.recorder.publish(&event, &experiment.object_ref(&())).await {
        tracing::warn!(experiment = %experiment.name_any(), %error, "could not publish an event");
    }
}
