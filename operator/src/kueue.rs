//! Stopping and resuming a Job that Kueue manages, the way Kueue expects: through its
//! Workload's `spec.active` (false evicts a running Workload and keeps it from being admitted
//! again; true queues it again). Kueue owns such a Job's `spec.suspend`, so the operator never
//! writes it: both would fight over the field.

use k8s_openapi::api::batch::v1::Job;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::context::Context;
use crate::error::Result;

/// The label Kueue puts on a Workload naming the UID of the Job it stands for.
pub const JOB_UID_LABEL: &str = "kueue.x-k8s.io/job-uid";

fn workloads(context: &Context, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "kueue.x-k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "kueue.x-k8s.io/v1beta1".into(),
        kind: "Workload".into(),
        plural: "workloads".into(),
    };
    Api::namespaced_with(context.client.clone(), namespace, &resource)
}

/// Sets `spec.active` of the Job's Workload to `active`. Nothing happens before Kueue made the
/// Workload: the Job's next change (Kueue admitting it) brings the next reconcile.
pub async fn set_active(context: &Context, namespace: &str, job: &Job, active: bool) -> Result<()> {
    let Some(uid) = job.uid() else { return Ok(()) };
    let api = workloads(context, namespace);
    let list = api.list(&ListParams::default().labels(&format!("{JOB_UID_LABEL}={uid}"))).await?;
    for workload in list.items {
        if workload.data["spec"]["active"].as_bool().unwrap_or(true) == active {
            continue;
        }
        let patch = json!({"spec": {"active": active}});
        api.patch(&workload.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        tracing::info!(job = %job.name_any(), workload = %workload.name_any(), active, "set the Kueue Workload's spec.active");
    }
    Ok(())
}
