//! Writing status: by server-side apply under one field manager, only when it changed, and
//! one Event per change of the summary condition.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use ocellus_crds::condition::reasons;
use ocellus_crds::{ConditionStatus, NewCondition, set_condition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::{Context, MANAGER};
use crate::error::Result;

/// Sets one condition (see [`set_condition`]).
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    let new = NewCondition {
        type_,
        status: ConditionStatus::from(status),
        reason,
        message,
        observed_generation: generation,
    };
    set_condition(conditions, new, now.clone());
}

/// Sets a condition to False only if it is there (a condition nobody asked about stays absent).
pub fn clear(
    conditions: &mut Vec<Condition>,
    type_: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    if conditions.iter().any(|c| c.type_ == type_) {
        set(conditions, type_, false, reason, message, generation, now);
    }
}

/// The condition that says what is happening: the most recent one that is True, else the
/// most recent one.
pub fn summary(conditions: &[Condition]) -> Option<&Condition> {
    conditions.iter().rev().find(|c| c.status == "True").or(conditions.last())
}

/// Server-side applies `status` when it differs from `old`; returns whether it wrote.
pub async fn apply_status<K, S>(resource: &K, old: &S, status: &S, context: &Context) -> Result<bool>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if old == status {
        return Ok(false);
    }
    let api: Api<K> = Api::namespaced(context.client.clone(), &resource.namespace().unwrap_or_default());
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(&resource.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(body)).await?;
    Ok(true)
}

/// Publishes an Event when the summary condition's reason changed. Failing to publish an
/// Event is logged, not fatal: status already says the same.
pub async fn publish_change<K>(resource: &K, old: &[Condition], new: &[Condition], context: &Context)
where
    K: Resource<DynamicType = ()>,
{
    let key = |c: Option<&Condition>| c.map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()));
    let after = summary(new);
    if key(summary(old)) == key(after) {
        return;
    }
    let Some(after) = after else { return };
    let warning = after.status == "True" && matches!(after.type_.as_str(), "Failed" | "ProgressStalled")
        || matches!(
            after.reason.as_str(),
            reasons::UNSCHEDULABLE
                | reasons::IMAGE_PULL_BACK_OFF
                | reasons::POD_CREATION_REFUSED
                | reasons::POD_CONFIG_ERROR
                | reasons::OOM_KILLED
                | reasons::EVICTED
        );
    let mut note = after.message.clone();
    if note.len() > 1000 {
        let mut end = 1000;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
    }
    let event = Event {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: after.reason.clone(),
        note: Some(note),
        action: after.type_.clone(),
        secondary: None,
    };
    if let Err(error) = context.recorder.publish(&event, &resource.object_ref(&())).await {
        tracing::warn!(%error, "could not publish an event");
    }
}
