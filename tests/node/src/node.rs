//! Node registration and heartbeat: the Node object with its capacity, its Ready condition
//! and the Lease in `kube-node-lease` the node lifecycle controller watches.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::Ctx;

/// How often the Lease is renewed and the Ready condition re-stated.
const HEARTBEAT: Duration = Duration::from_secs(10);
const MANAGER: &str = "ocellus-node";

pub struct Capacity {
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    pub gpus: u32,
    pub gpu_resource: String,
}

/// Creates the Node (or keeps the one there) and states its status.
pub async fn register(ctx: &Ctx, capacity: &Capacity) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(ctx.client.clone());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": ctx.node_name,
            "labels": {
                "kubernetes.io/hostname": ctx.node_name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
                "ocellus.dev/process-node": "true",
            },
        },
    }))?;
    match api.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => return Err(error.into()),
    }
    patch_status(ctx, capacity).await
}

/// Renews the Lease and the Ready condition until the agent stops.
pub async fn heartbeat(ctx: Arc<Ctx>, capacity: Capacity) -> anyhow::Result<()> {
    let mut interval = tokio::time::interval(HEARTBEAT);
    loop {
        interval.tick().await;
        if let Err(error) = renew_lease(&ctx).await {
            tracing::warn!("renewing the node lease: {error}");
        }
        if let Err(error) = patch_status(&ctx, &capacity).await {
            tracing::warn!("updating the node status: {error}");
        }
    }
}

async fn renew_lease(ctx: &Ctx) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let uid = nodes.get(&ctx.node_name).await?.metadata.uid;
    let api: Api<Lease> = Api::namespaced(ctx.client.clone(), "kube-node-lease");
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": ctx.node_name,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": ctx.node_name, "uid": uid}],
        },
        "spec": {
            "holderIdentity": ctx.node_name,
            "leaseDurationSeconds": 40,
            "renewTime": MicroTime(Timestamp::now()),
        },
    });
    api.patch(&ctx.node_name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(lease)).await?;
    Ok(())
}

fn condition(kind: &str, status: &str, reason: &str, message: &str, now: &Time) -> Value {
    json!({"type": kind, "status": status, "reason": reason, "message": message,
           "lastHeartbeatTime": now, "lastTransitionTime": now})
}

async fn patch_status(ctx: &Ctx, capacity: &Capacity) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(ctx.client.clone());
    let now = Time(Timestamp::now());
    // Transition times stay those of the condition already there while its status holds.
    let previous: BTreeMap<String, (String, Value)> = api
        .get_status(&ctx.node_name)
        .await?
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.type_, (c.status, json!(c.last_transition_time))))
        .collect();
    let mut conditions = vec![
        condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "process node", &now),
        condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "process node", &now),
        condition("PIDPressure", "False", "KubeletHasSufficientPID", "process node", &now),
        condition("Ready", "True", "KubeletReady", "ocellus-node is posting ready status", &now),
    ];
    for c in &mut conditions {
        if let Some((status, since)) = previous.get(c["type"].as_str().unwrap_or_default())
            && c["status"] == status.as_str()
            && !since.is_null()
        {
            c["lastTransitionTime"] = since.clone();
        }
    }
    let resources = json!({
        "cpu": capacity.cpu,
        "memory": capacity.memory,
        "pods": capacity.pods.to_string(),
        "ephemeral-storage": "100Gi",
        capacity.gpu_resource.clone(): capacity.gpus.to_string(),
    });
    let status = json!({"status": {
        "capacity": resources,
        "allocatable": resources,
        "conditions": conditions,
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": ctx.node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "architecture": std::env::consts::ARCH,
            "bootID": "",
            "containerRuntimeVersion": "process://ocellus-node",
            "kernelVersion": "",
            "kubeProxyVersion": "",
            "kubeletVersion": "v1.33.0-ocellus-node",
            "machineID": "",
            "operatingSystem": "linux",
            "osImage": "ocellus process node",
            "systemUUID": "",
        },
    }});
    api.patch_status(&ctx.node_name, &PatchParams::default(), &Patch::Merge(status)).await?;
    Ok(())
}
