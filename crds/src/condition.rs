//! Conditions are the truth about a resource (there is no `phase`).
//!
//! Types and reasons are named constants; [`set_condition`] moves `lastTransitionTime`
//! only when a condition's status flips, so writing the same state twice changes nothing
//! and a controller that writes status never re-triggers itself.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition types.
pub mod types {
    /// Dataset: the import finished and the normalized copy and profile are usable.
    pub const READY: &str = "Ready";
    /// Experiment: a trainer is working on it now.
    pub const RUNNING: &str = "Running";
    /// Experiment: finished, with a best model, metrics and artifacts in status.
    pub const SUCCEEDED: &str = "Succeeded";
    /// Experiment: finished without a model; the reason says why and what to do.
    pub const FAILED: &str = "Failed";
    /// Experiment: `spec.suspend` is set, or a queue holds the Job.
    pub const SUSPENDED: &str = "Suspended";
    /// Experiment: no progress report arrived for longer than the operator allows.
    pub const PROGRESS_STALLED: &str = "ProgressStalled";
}

/// Condition reasons: CamelCase, stable, safe to alert on.
pub mod reasons {
    /// The import Job is running.
    pub const IMPORTING: &str = "Importing";
    /// The import finished and the profile is in status.
    pub const IMPORTED: &str = "Imported";
    /// The data or the spec is wrong; retrying cannot help. The message says what to fix.
    pub const BAD_INPUT: &str = "BadInput";
    /// The source (S3, HTTP, volume) could not be reached or read.
    pub const SOURCE_UNREACHABLE: &str = "SourceUnreachable";
    /// A Dataset this object needs is not Ready yet; the message names it.
    pub const WAITING_FOR_DATASET: &str = "WaitingForDataset";
    /// The spec contradicts the dataset's profile (missing target, pipeline does not fit).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The trainer Job exists and its pod is starting or working.
    pub const TRAINING: &str = "Training";
    /// No node can take the pod (often: no node with the requested GPUs).
    pub const UNSCHEDULABLE: &str = "Unschedulable";
    /// The trainer image cannot be pulled.
    pub const IMAGE_PULL_BACK_OFF: &str = "ImagePullBackOff";
    /// The Job controller may not create the pod (a missing ServiceAccount, a ResourceQuota,
    /// Pod Security admission); the message has the API server's answer and what to do.
    pub const POD_CREATION_REFUSED: &str = "PodCreationRefused";
    /// The pod exists but its container cannot start (a Secret or ConfigMap it names is missing).
    pub const POD_CONFIG_ERROR: &str = "PodConfigError";
    /// The trainer ran out of memory.
    pub const OOM_KILLED: &str = "OOMKilled";
    /// The pod was evicted or disrupted; the Job retries it.
    pub const EVICTED: &str = "Evicted";
    /// The Job ran past `activeDeadlineSeconds`.
    pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
    /// `spec.suspend` is true.
    pub const SUSPENDED_BY_USER: &str = "SuspendedByUser";
    /// The work finished successfully.
    pub const SUCCEEDED: &str = "Succeeded";
    /// The work failed for a reason not listed above; the message has the trainer's error.
    pub const FAILED: &str = "Failed";
    /// The Job waits for a queue (Kueue) to admit it.
    pub const QUEUED: &str = "Queued";
    /// The trainer sent no progress report for longer than the operator allows.
    pub const NO_PROGRESS_REPORT: &str = "NoProgressReport";
    /// Progress reports arrive again.
    pub const REPORTING: &str = "Reporting";
    /// A Dataset names a Secret that is not labelled for Ocellus (see [`crate::dataset::CREDENTIALS_LABEL`]).
    pub const CREDENTIALS_NOT_ALLOWED: &str = "CredentialsNotAllowed";
}

/// The longest message the API server accepts in a condition.
pub const MAX_MESSAGE_LEN: usize = 32_768;

/// Status of a condition, as the three strings the API allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// What a controller wants a condition to say.
#[derive(Clone, Debug)]
pub struct NewCondition<'a> {
    pub type_: &'a str,
    pub status: ConditionStatus,
    pub reason: &'a str,
    pub message: &'a str,
    pub observed_generation: Option<i64>,
}

/// Sets a condition and reports whether anything changed.
///
/// `lastTransitionTime` becomes `now` only when the condition is new or its status flips;
/// a flipped condition also moves to the end of the list, so the last entry (what the
/// printer column shows) is always the most recent transition.
pub fn set_condition(conditions: &mut Vec<Condition>, new: NewCondition<'_>, now: Time) -> bool {
    debug_assert!(is_valid_reason(new.reason), "reason {:?} is not CamelCase", new.reason);
    let message = truncate(new.message, MAX_MESSAGE_LEN);
    let status = new.status.as_str();
    match conditions.iter().position(|c| c.type_ == new.type_) {
        Some(index) if conditions[index].status == status => {
            let existing = &mut conditions[index];
            let changed = existing.reason != new.reason
                || existing.message != *message
                || existing.observed_generation != new.observed_generation;
            existing.reason = new.reason.to_owned();
            existing.message = message.into_owned();
            existing.observed_generation = new.observed_generation;
            changed
        }
        found => {
            if let Some(index) = found {
                conditions.remove(index);
            }
            conditions.push(Condition {
                type_: new.type_.to_owned(),
                status: status.to_owned(),
                reason: new.reason.to_owned(),
                message: message.into_owned(),
                observed_generation: new.observed_generation,
                last_transition_time: now,
            });
            true
        }
    }
}

/// The condition of this type, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the condition of this type is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find_condition(conditions, type_).is_some_and(|c| c.status == "True")
}

/// The API server's rule for reasons: `^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`.
fn is_valid_reason(reason: &str) -> bool {
    let mut chars = reason.chars();
    let Some(first) = chars.next() else { return false };
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | ',' | ':');
    first.is_ascii_alphabetic()
        && reason.chars().all(allowed)
        && reason.chars().last().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && reason.len() <= 1024
}

/// Cuts a string to at most `max` bytes on a character boundary, marking the cut.
fn truncate(message: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if message.len() <= max {
        return message.into();
    }
    const MARK: &str = "…(truncated)";
    let mut end = max - MARK.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MARK}", &message[..end]).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    fn running(status: ConditionStatus, reason: &str, message: &str) -> NewCondition<'static> {
        NewCondition {
            type_: types::RUNNING,
            status,
            reason: Box::leak(reason.to_owned().into_boxed_str()),
            message: Box::leak(message.to_owned().into_boxed_str()),
            observed_generation: Some(1),
        }
    }

    #[test]
    fn new_condition_is_added_with_the_current_time() {
        let mut conditions = vec![];
        assert!(set_condition(
            &mut conditions,
            running(ConditionStatus::True, "Training", "epoch 1"),
            at(10)
        ));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].status, "True");
        assert_eq!(conditions[0].last_transition_time, at(10));
    }

    #[test]
    fn same_status_keeps_the_transition_time_but_takes_the_new_message() {
        let mut conditions = vec![];
        set_condition(&mut conditions, running(ConditionStatus::True, "Training", "epoch 1"), at(10));
        assert!(set_condition(
            &mut conditions,
            running(ConditionStatus::True, "Training", "epoch 2"),
            at(20)
        ));
        assert_eq!(conditions[0].last_transition_time, at(10));
        assert_eq!(conditions[0].message, "epoch 2");
    }

    #[test]
    fn writing_the_same_condition_twice_changes_nothing() {
        let mut conditions = vec![];
        set_condition(&mut conditions, running(ConditionStatus::True, "Training", "epoch 1"), at(10));
        let before = conditions.clone();
        assert!(!set_condition(
            &mut conditions,
            running(ConditionStatus::True, "Training", "epoch 1"),
            at(99)
        ));
        assert_eq!(conditions, before);
    }

    #[test]
    fn a_flip_moves_the_transition_time_and_the_condition_to_the_end() {
        let mut conditions = vec![];
        set_condition(&mut conditions, running(ConditionStatus::True, "Training", ""), at(10));
        set_condition(
            &mut conditions,
            NewCondition {
                type_: types::SUSPENDED,
                status: ConditionStatus::False,
                reason: "Running",
                message: "",
                observed_generation: Some(1),
            },
            at(11),
        );
        assert!(set_condition(&mut conditions, running(ConditionStatus::False, "Succeeded", "done"), at(30)));
        assert_eq!(conditions.len(), 2);
        let last = conditions.last().unwrap();
        assert_eq!((last.type_.as_str(), last.status.as_str()), ("Running", "False"));
        assert_eq!(last.last_transition_time, at(30));
        assert_eq!(conditions[0].last_transition_time, at(11));
    }

    #[test]
    fn queries_find_conditions_by_type() {
        let mut conditions = vec![];
        assert!(!is_true(&conditions, types::RUNNING));
        set_condition(&mut conditions, running(ConditionStatus::True, "Training", ""), at(1));
        assert!(is_true(&conditions, types::RUNNING));
        assert!(find_condition(&conditions, types::FAILED).is_none());
        set_condition(&mut conditions, running(ConditionStatus::Unknown, "Evicted", ""), at(2));
        assert!(!is_true(&conditions, types::RUNNING));
    }

    #[test]
    fn long_messages_are_truncated_on_a_character_boundary() {
        let mut conditions = vec![];
        let long = "é".repeat(MAX_MESSAGE_LEN);
        set_condition(&mut conditions, running(ConditionStatus::False, "Failed", &long), at(1));
        let message = &conditions[0].message;
        assert!(message.len() <= MAX_MESSAGE_LEN);
        assert!(message.ends_with("(truncated)"));
    }

    #[test]
    fn every_declared_reason_is_valid_for_the_api_server() {
        use reasons::*;
        for reason in [
            IMPORTING,
            IMPORTED,
            BAD_INPUT,
            SOURCE_UNREACHABLE,
            WAITING_FOR_DATASET,
            INVALID_SPEC,
            TRAINING,
            UNSCHEDULABLE,
            IMAGE_PULL_BACK_OFF,
            OOM_KILLED,
            EVICTED,
            DEADLINE_EXCEEDED,
            SUSPENDED_BY_USER,
            SUCCEEDED,
            FAILED,
            QUEUED,
            NO_PROGRESS_REPORT,
            REPORTING,
        ] {
            assert!(is_valid_reason(reason), "{reason}");
        }
        assert!(!is_valid_reason("has space"));
        assert!(!is_valid_reason(""));
        assert!(!is_valid_reason("9Lives"));
    }
}
