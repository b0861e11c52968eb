//! What a Job and its pods say about the work, as one of a few phases with an actionable
//! reason. Pure: the controllers turn it into conditions.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use ocellus_crds::condition::reasons;
use ocellus_crds::contract::scrub::scrub_credentials;

use crate::jobs::{CONTAINER, EXIT_BAD_INPUT, EXIT_SOURCE_UNREACHABLE};

/// Where the work of a Job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The Job is suspended (by `spec.suspend` or a queue).
    Suspended,
    /// Created, but no trainer runs yet; the reason says what it waits for.
    Pending,
    /// A trainer pod runs (or is being retried after a disruption).
    Running,
    Succeeded,
    Failed,
}

/// Phase, condition reason and a message for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assessment {
    pub phase: Phase,
    pub reason: &'static str,
    pub message: String,
}

impl Assessment {
    /// The message is scrubbed of credentials: it goes to status and Events, which many can read.
    fn new(phase: Phase, reason: &'static str, message: impl Into<String>) -> Self {
        Self { phase, reason, message: scrub_credentials(&message.into()) }
    }

    /// Whether pod details can change this assessment, so pods are worth reading.
    pub fn needs_pods(job: &Job) -> bool {
        !(is_complete(job) || is_suspended(job))
    }
}

/// The Job's condition of this type when it is True.
pub fn job_condition<'a>(job: &'a Job, type_: &str) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    job.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_ && c.status == "True")
}

fn is_complete(job: &Job) -> bool {
    job_condition(job, "Complete").is_some() || job_condition(job, "SuccessCriteriaMet").is_some()
}

/// The Job's `Suspended` condition lags behind `spec.suspend`; the spec is what will be.
fn is_suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false)
}

/// Reads a Job and the pods it made (any order, finished ones included).
pub fn assess(job: &Job, pods: &[Pod]) -> Assessment {
    if is_complete(job) {
        return Assessment::new(Phase::Succeeded, reasons::SUCCEEDED, "the trainer finished");
    }
    if let Some(failed) = job_condition(job, "Failed").or_else(|| job_condition(job, "FailureTarget")) {
        return failure(failed.reason.as_deref().unwrap_or_default(), failed.message.as_deref(), pods);
    }
    if is_suspended(job) {
        return Assessment::new(Phase::Suspended, reasons::SUSPENDED_BY_USER, "the Job is suspended");
    }
    for pod in pods.iter().filter(|p| is_live(p)) {
        if let Some(waiting) = pending_problem(pod) {
            return waiting;
        }
    }
    let status = job.status.as_ref();
    let active = status.and_then(|s| s.active).unwrap_or(0);
    let failed = status.and_then(|s| s.failed).unwrap_or(0);
    if failed > 0
        && let Some(retry) = pods.iter().filter(|p| !is_live(p)).find_map(retried_failure)
    {
        return retry;
    }
    let running = pods.iter().any(|p| phase(p) == "Running");
    if active > 0 && running {
        Assessment::new(Phase::Running, reasons::TRAINING, "the trainer is running")
    } else {
        Assessment::new(Phase::Pending, reasons::TRAINING, "the trainer pod is starting")
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending")
}

fn is_live(pod: &Pod) -> bool {
    matches!(phase(pod), "Pending" | "Running")
}

/// Why a pod that should run does not: no node fits, or the image cannot be pulled.
fn pending_problem(pod: &Pod) -> Option<Assessment> {
    let status = pod.status.as_ref()?;
    let unschedulable = status.conditions.iter().flatten().find(|c| {
        c.type_ == "PodScheduled" && c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
    });
    if let Some(condition) = unschedulable {
        let detail = condition.message.as_deref().unwrap_or("no node fits the pod");
        return Some(Assessment::new(
            Phase::Pending,
            reasons::UNSCHEDULABLE,
            format!(
                "no node can run the trainer: {detail}. Check that nodes with the requested GPUs exist \
                 and match spec.resources (nodeSelector, tolerations), or lower spec.resources.gpus"
            ),
        ));
    }
    let waiting =
        status.container_statuses.iter().flatten().find_map(|c| c.state.as_ref()?.waiting.as_ref())?;
    let reason = waiting.reason.as_deref().unwrap_or_default();
    if matches!(reason, "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" | "ErrImageNeverPull") {
        let detail = waiting.message.as_deref().unwrap_or(reason);
        return Some(Assessment::new(
            Phase::Pending,
            reasons::IMAGE_PULL_BACK_OFF,
            format!(
                "the trainer image cannot be pulled: {detail}. Check the operator's trainerImage and its \
                 image pull secrets"
            ),
        ));
    }
    if matches!(reason, "CreateContainerConfigError" | "CreateContainerError") {
        let detail = waiting.message.as_deref().unwrap_or(reason);
        return Some(Assessment::new(
            Phase::Pending,
            reasons::POD_CONFIG_ERROR,
            format!(
                "the trainer container cannot start: {detail}. Create what it names in the pod's namespace \
                 (for the artifact store's keys: the Secret of the chart's artifacts.credentialsSecret)"
            ),
        ));
    }
    None
}

/// A Job whose pod the API server refuses to create, from the Job controller's newest
/// `FailedCreate` Event message: the hint depends on which admission said no.
pub fn creation_refused(message: &str) -> Assessment {
    let hint = if message.contains("serviceaccount") {
        "the namespace has no ocellus-trainer ServiceAccount: add it to the chart's trainer.namespaces \
         (helm upgrade --reuse-values --set trainer.namespaces=...)"
    } else if message.contains("exceeded quota") || message.contains("must specify") {
        "the namespace's ResourceQuota does not leave room for the trainer: raise the quota, or lower \
         spec.resources; the Job retries on its own"
    } else if message.contains("PodSecurity") {
        "the namespace's Pod Security admission refuses the pod: check the namespace's \
         pod-security.kubernetes.io labels (Ocellus pods meet `restricted`) and any policy webhook"
    } else {
        "fix what the API server names; the Job retries on its own"
    };
    Assessment::new(
        Phase::Pending,
        reasons::POD_CREATION_REFUSED,
        format!("Kubernetes refuses to create the trainer pod: {message}. {hint}"),
    )
}

/// Whether the Job should have a pod by now and has none (then its Events say why).
pub fn lacks_pods(assessment: &Assessment, pods: &[Pod]) -> bool {
    assessment.phase == Phase::Pending && assessment.reason == reasons::TRAINING && pods.is_empty()
}

fn trainer_termination(pod: &Pod) -> Option<&ContainerStateTerminated> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let container = statuses.iter().find(|c| c.name == CONTAINER)?;
    let last = container.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    container.state.as_ref().and_then(|s| s.terminated.as_ref()).or(last)
}

fn is_disrupted(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else { return false };
    status.reason.as_deref() == Some("Evicted")
        || status.conditions.iter().flatten().any(|c| c.type_ == "DisruptionTarget" && c.status == "True")
}

/// A failed pod of a Job that is still going: the Job retries it.
fn retried_failure(pod: &Pod) -> Option<Assessment> {
    if is_disrupted(pod) {
        let detail =
            pod.status.as_ref().and_then(|s| s.message.as_deref()).unwrap_or("the pod was disrupted");
        return Some(Assessment::new(
            Phase::Running,
            reasons::EVICTED,
            format!(
                "the trainer pod was evicted ({detail}); the Job retries it and training resumes from its checkpoint"
            ),
        ));
    }
    let terminated = trainer_termination(pod)?;
    (terminated.reason.as_deref() == Some("OOMKilled")).then(|| {
        Assessment::new(
            Phase::Running,
            reasons::OOM_KILLED,
            "the trainer ran out of memory; the Job retries it. Raise spec.resources.memory if this repeats",
        )
    })
}

fn failure(job_reason: &str, job_message: Option<&str>, pods: &[Pod]) -> Assessment {
    let terminations: Vec<&ContainerStateTerminated> = pods.iter().filter_map(trainer_termination).collect();
    let trainer_said = |code: i32| {
        terminations
            .iter()
            .find(|t| t.exit_code == code)
            .and_then(|t| t.message.as_deref())
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty())
    };
    if job_reason == "DeadlineExceeded" {
        return Assessment::new(
            Phase::Failed,
            reasons::DEADLINE_EXCEEDED,
            "the trainer ran past the Job's deadline; lower the search budget (autoImage.timeBudgetSeconds, \
             maxTrials) or the data size",
        );
    }
    if job_reason == "PodFailurePolicy" || terminations.iter().any(|t| t.exit_code == EXIT_BAD_INPUT) {
        let detail = trainer_said(EXIT_BAD_INPUT).or(job_message.map(str::to_owned)).unwrap_or_default();
        return Assessment::new(Phase::Failed, reasons::BAD_INPUT, format!("the input is invalid: {detail}"));
    }
    if terminations.iter().any(|t| t.reason.as_deref() == Some("OOMKilled")) {
        return Assessment::new(
            Phase::Failed,
            reasons::OOM_KILLED,
            "the trainer ran out of memory on every retry; raise spec.resources.memory",
        );
    }
    if let Some(detail) = terminations.iter().any(|t| t.exit_code == EXIT_SOURCE_UNREACHABLE).then(|| {
        trainer_said(EXIT_SOURCE_UNREACHABLE).unwrap_or_else(|| "the data source could not be reached".into())
    }) {
        return Assessment::new(Phase::Failed, reasons::SOURCE_UNREACHABLE, detail);
    }
    let last_words = terminations.iter().rev().find_map(|t| t.message.as_deref()).map(str::trim);
    let detail = last_words.filter(|m| !m.is_empty()).or(job_message).unwrap_or(job_reason);
    Assessment::new(Phase::Failed, reasons::FAILED, format!("the trainer failed: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{evicted_pod, job, pending_pod, terminated_pod, waiting_pod};

    fn running_pod() -> Pod {
        let mut pod = waiting_pod("", "");
        pod.status.as_mut().unwrap().phase = Some("Running".into());
        pod.status.as_mut().unwrap().container_statuses = None;
        pod
    }

    #[test]
    fn running() {
        let got = assess(&job(&[], 1, 0), &[running_pod()]);
        assert_eq!((got.phase, got.reason), (Phase::Running, reasons::TRAINING));
    }

    #[test]
    fn starting() {
        let got = assess(&job(&[], 1, 0), &[]);
        assert_eq!((got.phase, got.reason), (Phase::Pending, reasons::TRAINING));
    }

    #[test]
    fn unschedulable() {
        let pod = pending_pod("Unschedulable", "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.");
        let got = assess(&job(&[], 1, 0), &[pod]);
        assert_eq!((got.phase, got.reason), (Phase::Pending, reasons::UNSCHEDULABLE));
        assert!(got.message.contains("Insufficient nvidia.com/gpu"), "{}", got.message);
        assert!(got.message.contains("spec.resources"), "says what to do: {}", got.message);
    }

    #[test]
    fn image_pull_back_off() {
        for reason in ["ImagePullBackOff", "ErrImagePull"] {
            let pod = waiting_pod(reason, "pull access denied for ghcr.io/ocellus/trainer");
            let got = assess(&job(&[], 1, 0), &[pod]);
            assert_eq!((got.phase, got.reason), (Phase::Pending, reasons::IMAGE_PULL_BACK_OFF));
            assert!(got.message.contains("pull access denied"));
        }
    }

    #[test]
    fn a_missing_secret_says_which_and_what_to_create() {
        let pod = waiting_pod("CreateContainerConfigError", "secret \"ocellus-store\" not found");
        let got = assess(&job(&[], 1, 0), &[pod]);
        assert_eq!((got.phase, got.reason), (Phase::Pending, reasons::POD_CONFIG_ERROR));
        assert!(got.message.contains("secret \"ocellus-store\" not found"), "{}", got.message);
        assert!(got.message.contains("artifacts.credentialsSecret"), "{}", got.message);
    }

    #[test]
    fn a_refused_pod_creation_names_the_admission_and_the_fix() {
        for (message, hint) in [
            (
                "Error creating: pods \"x-train-\" is forbidden: error looking up service account ml/ocellus-trainer: serviceaccount \"ocellus-trainer\" not found",
                "trainer.namespaces",
            ),
            (
                "Error creating: pods \"x-train-\" is forbidden: exceeded quota: compute, requested: limits.memory=8Gi",
                "ResourceQuota",
            ),
            (
                "Error creating: pods \"x-train-\" is forbidden: violates PodSecurity \"restricted:latest\"",
                "pod-security.kubernetes.io",
            ),
            ("Error creating: something else", "the Job retries"),
        ] {
            let got = creation_refused(message);
            assert_eq!((got.phase, got.reason), (Phase::Pending, reasons::POD_CREATION_REFUSED));
            assert!(got.message.contains(message) && got.message.contains(hint), "{}", got.message);
        }
        let starting = assess(&job(&[], 1, 0), &[]);
        assert!(lacks_pods(&starting, &[]));
        assert!(!lacks_pods(&starting, &[running_pod()]));
    }

    #[test]
    fn oom_killed_and_retrying() {
        let got = assess(&job(&[], 1, 1), &[terminated_pod("OOMKilled", 137, ""), running_pod()]);
        assert_eq!((got.phase, got.reason), (Phase::Running, reasons::OOM_KILLED));
    }

    #[test]
    fn oom_killed_on_every_retry_fails() {
        let pods = [terminated_pod("OOMKilled", 137, ""), terminated_pod("OOMKilled", 137, "")];
        let got = assess(
            &job(&[("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")], 0, 4),
            &pods,
        );
        assert_eq!((got.phase, got.reason), (Phase::Failed, reasons::OOM_KILLED));
        assert!(got.message.contains("spec.resources.memory"));
    }

    #[test]
    fn evicted_and_retrying() {
        let got = assess(&job(&[], 1, 1), &[evicted_pod(), running_pod()]);
        assert_eq!((got.phase, got.reason), (Phase::Running, reasons::EVICTED));
        assert!(got.message.contains("low on resource"), "{}", got.message);
    }

    #[test]
    fn deadline_exceeded() {
        let got = assess(
            &job(&[("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")], 0, 1),
            &[],
        );
        assert_eq!((got.phase, got.reason), (Phase::Failed, reasons::DEADLINE_EXCEEDED));
    }

    #[test]
    fn bad_input_carries_the_trainers_message() {
        let pod = terminated_pod("Error", 65, "target column \"price\" not in dataset cats\n");
        let job = job(
            &[("Failed", "PodFailurePolicy", "Container trainer for pod ml/x failed with exit code 65")],
            0,
            1,
        );
        let got = assess(&job, &[pod]);
        assert_eq!((got.phase, got.reason), (Phase::Failed, reasons::BAD_INPUT));
        assert_eq!(got.message, "the input is invalid: target column \"price\" not in dataset cats");
    }

    #[test]
    fn failure_target_counts_as_failed() {
        let got = assess(&job(&[("FailureTarget", "PodFailurePolicy", "exit code 65")], 0, 1), &[]);
        assert_eq!((got.phase, got.reason), (Phase::Failed, reasons::BAD_INPUT));
        assert!(got.message.contains("exit code 65"));
    }

    #[test]
    fn source_unreachable() {
        let pod = terminated_pod("Error", 69, "s3://photos/cats.zip: connection refused");
        let got = assess(&job(&[("Failed", "BackoffLimitExceeded", "")], 0, 4), &[pod]);
        assert_eq!((got.phase, got.reason), (Phase::Failed, reasons::SOURCE_UNREACHABLE));
        assert!(got.message.contains("connection refused"));
    }

    #[test]
    fn succeeded() {
        let got = assess(&job(&[("Complete", "CompletionsReached", "")], 0, 0), &[]);
        assert_eq!((got.phase, got.reason), (Phase::Succeeded, reasons::SUCCEEDED));
        assert!(!Assessment::needs_pods(&job(&[("Complete", "", "")], 0, 0)));
    }

    #[test]
    fn failed_otherwise_with_the_last_words() {
        let pod = terminated_pod("Error", 1, "panicked at trainer/src/run.rs");
        let got = assess(&job(&[("Failed", "BackoffLimitExceeded", "backoff limit")], 0, 4), &[pod]);
        assert_eq!((got.phase, got.reason), (Phase::Failed, reasons::FAILED));
        assert!(got.message.contains("panicked"));
    }

    #[test]
    fn suspended() {
        let mut suspended = job(&[], 0, 0);
        suspended.spec.as_mut().unwrap().suspend = Some(true);
        let got = assess(&suspended, &[]);
        assert_eq!((got.phase, got.reason), (Phase::Suspended, reasons::SUSPENDED_BY_USER));
        assert!(!Assessment::needs_pods(&suspended));
    }
}
