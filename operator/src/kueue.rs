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

/// Workload versions, newest first: v1beta2 is the storage version of current Kueues (0.17 in
/// the dev cluster; v1beta1 is deprecated there and converted by their webhook); older Kueues
/// serve only v1beta1.
const WORKLOAD_VERSIONS: [&str; 2] = ["v1beta2", "v1beta1"];

fn workloads(context: &Context, namespace: &str, version: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "kueue.x-k8s.io".into(),
        version: version.into(),
        api_version: format!("kueue.x-k8s.io/{version}"),
        kind: "Workload".into(),
        plural: "workloads".into(),
    };
    Api::namespaced_with(context.client.clone(), namespace, &resource)
}

/// The Workloads standing for the Job, through the newest version the cluster serves.
async fn workloads_of(
    context: &Context,
    namespace: &str,
    job_uid: &str,
) -> Result<Option<(Api<DynamicObject>, Vec<DynamicObject>)>> {
    let selector = ListParams::default().labels(&format!("{JOB_UID_LABEL}={job_uid}"));
    for version in WORKLOAD_VERSIONS {
        let api = workloads(context, namespace, version);
        match api.list(&selector).await {
            Ok(list) => return Ok(Some((api, list.items))),
            Err(kube::Error::Api(response)) if response.code == 404 => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Ok(None)
}

/// Sets `spec.active` of the Job's Workload to `active`. Nothing happens before Kueue made the
/// Workload: the Job's next change (Kueue admitting it) brings the next reconcile.
pub async fn set_active(context: &Context, namespace: &str, job: &Job, active: bool) -> Result<()> {
    let Some(uid) = job.uid() else { return Ok(()) };
    let Some((api, items)) = workloads_of(context, namespace, &uid).await? else {
        tracing::warn!(job = %job.name_any(), "the Job is queued for Kueue, but the cluster serves no Kueue Workloads");
        return Ok(());
    };
    for workload in items {
        if workload.data["spec"]["active"].as_bool().unwrap_or(true) == active {
            continue;
        }
        let patch = json!({"spec": {"active": active}});
        api.patch(&workload.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        tracing::info!(job = %job.name_any(), workload = %workload.name_any(), active, "set the Kueue Workload's spec.active");
    }
    Ok(())
}

/// Why Kueue has not admitted the Job yet, in its own words (the `QuotaReserved=False` message
/// of its Workload, such as "insufficient unused quota for nvidia.com/gpu"), when it says.
/// A failure to read it is logged, not returned: it only adds words to the status.
pub async fn waiting_reason(context: &Context, namespace: &str, job: &Job) -> Option<String> {
    let uid = job.uid()?;
    let items = match workloads_of(context, namespace, &uid).await {
        Ok(found) => found?.1,
        Err(error) => {
            tracing::warn!(job = %job.name_any(), %error, "could not read the Job's Kueue Workload");
            return None;
        }
    };
    items.iter().find_map(|workload| {
        let conditions = workload.data["status"]["conditions"].as_array()?;
        let pending = conditions.iter().find(|c| c["type"] == "QuotaReserved" && c["status"] == "False")?;
        pending["message"].as_str().filter(|m| !m.is_empty()).map(str::to_owned)
    })
}
