//! Pod status as a kubelet writes it: phase, conditions, container states, IPs.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

/// The state of one container, as `containerStatuses[].state` says it.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    Waiting { reason: String, message: String },
    Running { started: Timestamp },
    Terminated { code: i32, message: String, started: Timestamp, finished: Timestamp },
}

impl State {
    pub fn waiting(reason: &str, message: impl Into<String>) -> Self {
        State::Waiting { reason: reason.into(), message: message.into() }
    }

    fn to_json(&self) -> Value {
        match self {
            State::Waiting { reason, message } => json!({"waiting": {"reason": reason, "message": message}}),
            State::Running { started } => json!({"running": {"startedAt": Time(*started)}}),
            State::Terminated { code, message, started, finished } => json!({"terminated": {
                "exitCode": code,
                "reason": if *code == 0 { "Completed" } else { "Error" },
                "message": message,
                "startedAt": Time(*started),
                "finishedAt": Time(*finished),
            }}),
        }
    }
}

/// What the agent knows of one container.
#[derive(Clone, Debug)]
pub struct ContainerStatus {
    pub name: String,
    pub image: String,
    pub state: State,
    pub last: Option<State>,
    pub restarts: i32,
    pub ready: bool,
    pub pid: i32,
}

/// The status the agent computes for a pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

pub struct PodStatus {
    pub phase: Phase,
    pub containers: Vec<ContainerStatus>,
    pub initialized: bool,
    started: Timestamp,
    /// Condition type → (status, last transition).
    transitions: BTreeMap<&'static str, (bool, Timestamp)>,
}

impl PodStatus {
    pub fn new(pod: &Pod) -> Self {
        let containers = pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .map(|c| ContainerStatus {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                state: State::waiting("ContainerCreating", ""),
                last: None,
                restarts: 0,
                ready: false,
                pid: 0,
            })
            .collect();
        PodStatus {
            phase: Phase::Pending,
            containers,
            initialized: false,
            started: Timestamp::now(),
            transitions: BTreeMap::new(),
        }
    }

    fn condition(&mut self, kind: &'static str, status: bool) -> Value {
        let entry = self.transitions.entry(kind).or_insert((status, Timestamp::now()));
        if entry.0 != status {
            *entry = (status, Timestamp::now());
        }
        json!({"type": kind, "status": if status { "True" } else { "False" }, "lastTransitionTime": Time(entry.1)})
    }

    /// The `status` object to patch.
    pub fn render(&mut self) -> Value {
        let all_ready = self.containers.iter().all(|c| c.ready);
        let terminal = matches!(self.phase, Phase::Succeeded | Phase::Failed);
        let ready = all_ready && !terminal;
        let initialized = self.initialized;
        let conditions = vec![
            self.condition("PodScheduled", true),
            self.condition("Initialized", initialized),
            self.condition("ContainersReady", ready),
            self.condition("Ready", ready),
        ];
        let containers: Vec<Value> = self
            .containers
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "image": c.image,
                    "imageID": "",
                    "containerID": (c.pid > 0).then(|| format!("process://{}", c.pid)),
                    "ready": c.ready && !terminal,
                    "started": matches!(c.state, State::Running { .. }),
                    "restartCount": c.restarts,
                    "state": c.state.to_json(),
                    "lastState": c.last.as_ref().map_or(json!({}), State::to_json),
                })
            })
            .collect();
        json!({
            "phase": format!("{:?}", self.phase),
            "conditions": conditions,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1",
            "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": Time(self.started),
            "containerStatuses": containers,
        })
    }
}

/// Writes `status` to the pod's status subresource.
pub async fn patch(api: &Api<Pod>, name: &str, status: &mut PodStatus) -> kube::Result<()> {
    let body = json!({"status": status.render()});
    api.patch_status(name, &PatchParams::default(), &Patch::Strategic(body)).await.map(drop)
}
