//! The process node against a real control plane (`tests/cluster/up.sh`): set `KUBECONFIG`.
//! Without it the test prints SKIPPED and passes, unless `OCELLUS_REQUIRE_CLUSTER=1`.
//!
//! One agent serves every scenario (a second node would let the scheduler place a Job's pod
//! on an agent that is not watching it); the scenarios run concurrently, each in its own
//! namespaces, and everything is removed at the end.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const SHELL_IMAGE: &str = "ocellus.test/shell";

/// One check, run concurrently with the others.
type Scenario<'a> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>>;

struct Cluster {
    client: Client,
    node: String,
    state_dir: PathBuf,
    prefix: String,
}

/// The agent process; killed (SIGTERM, then SIGKILL) when dropped, even after a panic.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: kill has no memory effects.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        for _ in 0..100 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn process_node_runs_pods_against_a_real_control_plane() {
    let Some(kubeconfig) = std::env::var_os("KUBECONFIG") else {
        assert!(
            std::env::var("OCELLUS_REQUIRE_CLUSTER").as_deref() != Ok("1"),
            "OCELLUS_REQUIRE_CLUSTER=1 but KUBECONFIG is not set: start tests/cluster/up.sh and source its env.sh"
        );
        println!(
            "SKIPPED: KUBECONFIG is not set (start tests/cluster/up.sh and source .tools/cluster/env.sh)"
        );
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_default().await.expect("a client from KUBECONFIG");
    let id = std::process::id();
    let node = format!("ocellus-node-test-{id}");
    let state_dir = std::env::temp_dir().join(format!("ocellus-node-test-{id}"));
    std::fs::create_dir_all(&state_dir).unwrap();
    let log_path = state_dir.join("agent.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let agent = Agent(
        Command::new(env!("CARGO_BIN_EXE_ocellus-node"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["--node-name", &node, "--image", &format!("{SHELL_IMAGE}=/bin/sh"), "--state-dir"])
            .arg(&state_dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("starting ocellus-node"),
    );
    println!("agent log: {}", log_path.display());
    let cluster = Cluster { client, node, state_dir: state_dir.clone(), prefix: format!("node-t{id}") };

    let scenarios: Vec<(&str, Scenario<'_>)> = vec![
        ("node is ready", Box::pin(node_is_ready(&cluster))),
        ("failing pod", Box::pin(failing_pod_reports_exit_code_and_token_passes_review(&cluster))),
        ("succeeding pod", Box::pin(succeeding_pod_resolves_services(&cluster))),
        ("unknown image", Box::pin(unknown_image_waits_for_a_pull(&cluster))),
        ("jobs", Box::pin(jobs_run_through_scheduler_and_job_controller(&cluster))),
        ("deletion", Box::pin(deleted_pod_gets_sigterm_and_goes(&cluster))),
        ("restricted", Box::pin(restricted_pod_is_admitted_and_runs(&cluster))),
    ];
    let (names, futures): (Vec<_>, Vec<_>) = scenarios.into_iter().unzip();
    let results = tokio::time::timeout(Duration::from_secs(240), futures::future::join_all(futures)).await;
    let failures: Vec<String> = match results {
        Ok(results) => names
            .iter()
            .zip(results)
            .filter_map(|(name, r)| r.err().map(|e| format!("{name}: {e:#}")))
            .collect(),
        Err(_) => vec!["the scenarios did not finish in 240 s".into()],
    };
    cleanup(&cluster).await;
    drop(agent);
    let _ = Api::<Node>::all(cluster.client.clone()).delete(&cluster.node, &DeleteParams::default()).await;
    if !failures.is_empty() {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        eprintln!("agent log tail:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        panic!("failed scenarios:\n{}", failures.join("\n"));
    }
    let _ = std::fs::remove_dir_all(&state_dir);
}

impl Cluster {
    /// A fresh namespace, with `labels`, and a ServiceAccount `runner` in it.
    async fn namespace(&self, suffix: &str, labels: Value) -> anyhow::Result<String> {
        let name = format!("{}-{suffix}", self.prefix);
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))?;
        Api::<Namespace>::all(self.client.clone()).create(&PostParams::default(), &ns).await?;
        let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "runner"}}))?;
        Api::<ServiceAccount>::namespaced(self.client.clone(), &name)
            .create(&PostParams::default(), &sa)
            .await?;
        Ok(name)
    }

    async fn create<K>(&self, namespace: &str, object: Value) -> anyhow::Result<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
    {
        let object: K = serde_json::from_value(object)?;
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        // Admission refuses pods until the namespace's ServiceAccount exists: retry a while.
        for attempt in 0.. {
            match api.create(&PostParams::default(), &object).await {
                Ok(created) => return Ok(created),
                Err(kube::Error::Api(e)) if attempt < 30 && e.message.contains("serviceaccount") => {
                    tokio::time::sleep(Duration::from_secs(1)).await
                }
                Err(e) => return Err(e.into()),
            }
        }
        unreachable!()
    }

    /// A pod of the shell image running `script`, bound to the agent's node.
    fn shell_pod(&self, name: &str, script: &str) -> Value {
        json!({
            "metadata": {"name": name},
            "spec": {
                "nodeName": self.node,
                "restartPolicy": "Never",
                "serviceAccountName": "runner",
                "terminationGracePeriodSeconds": 20,
                "containers": [{
                    "name": "main",
                    "image": format!("{SHELL_IMAGE}:latest"),
                    "command": ["sh", "-c", script],
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                }],
            },
        })
    }

    /// The host folder of a pod (the agent's state dir is known to the test).
    fn pod_dir(&self, pod: &Pod) -> PathBuf {
        let folder = format!("{}_{}_{}", pod.namespace().unwrap(), pod.name_any(), pod.uid().unwrap());
        self.state_dir.join("pods").join(folder)
    }

    fn volume_dir(&self, pod: &Pod, volume: &str) -> PathBuf {
        self.pod_dir(pod).join("volumes").join(volume)
    }
}

/// Polls `get` until `done` holds for what it returns (at most `seconds`).
async fn until<T, F, Fut>(
    what: &str,
    seconds: u64,
    mut get: F,
    done: impl Fn(&T) -> bool,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
    T: std::fmt::Debug,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        let value = get().await;
        match value {
            Ok(v) if done(&v) => return Ok(v),
            Ok(v) if tokio::time::Instant::now() > deadline => {
                bail!("timed out waiting for {what}; last: {v:?}")
            }
            Err(e) if tokio::time::Instant::now() > deadline => bail!("timed out waiting for {what}: {e:#}"),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

async fn pod_until(
    api: &Api<Pod>,
    name: &str,
    what: &str,
    done: impl Fn(&Pod) -> bool,
) -> anyhow::Result<Pod> {
    until(what, 90, || async { Ok(api.get(name).await?) }, done).await
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn terminated(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStateTerminated> {
    pod.status.as_ref()?.container_statuses.as_ref()?.first()?.state.as_ref()?.terminated.as_ref()
}

async fn node_is_ready(cluster: &Cluster) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let node = until(
        "the node to be Ready",
        60,
        || async { Ok(nodes.get(&cluster.node).await?) },
        |n: &Node| {
            n.status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .any(|c| c.type_ == "Ready" && c.status == "True")
        },
    )
    .await?;
    let allocatable = node.status.and_then(|s| s.allocatable).unwrap_or_default();
    ensure!(
        allocatable.get("nvidia.com/gpu").map(|q| q.0.as_str()) == Some("2"),
        "allocatable: {allocatable:?}"
    );
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), "kube-node-lease");
    let lease =
        until("the node lease", 30, || async { Ok(leases.get_opt(&cluster.node).await?) }, Option::is_some)
            .await?;
    ensure!(lease.and_then(|l| l.spec).and_then(|s| s.renew_time).is_some(), "the lease has no renewTime");
    Ok(())
}

async fn failing_pod_reports_exit_code_and_token_passes_review(cluster: &Cluster) -> anyhow::Result<()> {
    let ns = cluster.namespace("fail", json!({})).await?;
    let audience = format!("ocellus-test-{}", cluster.prefix);
    cluster
        .create::<Secret>(&ns, json!({"metadata": {"name": "creds"}, "stringData": {"password": "s3cret"}}))
        .await?;
    let script = r#"
        test "$PASSWORD" = s3cret || { echo "bad secret: $PASSWORD"; exit 9; }
        test "$(cat /etc/podinfo/note)" = "hello note" || { echo "bad note"; exit 10; }
        grep -q 'app="fails"' /etc/podinfo/labels || { echo "bad labels"; exit 11; }
        test -s /var/run/secrets/tokens/token || { echo "no token"; exit 12; }
        echo "all inputs present in $(cat /etc/podinfo/name)"
        exit 3"#;
    let mut pod = cluster.shell_pod("fails", script);
    pod["metadata"]["labels"] = json!({"app": "fails"});
    pod["metadata"]["annotations"] = json!({"ocellus.dev/note": "hello note"});
    pod["spec"]["containers"][0]["env"] = json!([
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
    ]);
    pod["spec"]["containers"][0]["volumeMounts"] = json!([
        {"name": "podinfo", "mountPath": "/etc/podinfo", "readOnly": true},
        {"name": "tokens", "mountPath": "/var/run/secrets/tokens", "readOnly": true},
    ]);
    pod["spec"]["volumes"] = json!([
        {"name": "podinfo", "downwardAPI": {"items": [
            {"path": "note", "fieldRef": {"fieldPath": "metadata.annotations['ocellus.dev/note']"}},
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        ]}},
        {"name": "tokens", "projected": {"sources": [
            {"serviceAccountToken": {"audience": audience, "expirationSeconds": 600, "path": "token"}},
        ]}},
    ]);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
    cluster.create::<Pod>(&ns, pod).await?;
    let pod = pod_until(&pods, "fails", "phase Failed", |p| phase(p) == "Failed").await?;
    let state = terminated(&pod).context("no terminated state")?;
    ensure!(state.exit_code == 3, "exit code {} (message {:?})", state.exit_code, state.message);
    ensure!(state.reason.as_deref() == Some("Error"), "reason {:?}", state.reason);
    let message = state.message.as_deref().unwrap_or_default();
    ensure!(message.contains("all inputs present in fails"), "message {message:?}");
    ensure!(state.started_at.is_some() && state.finished_at.is_some(), "times missing: {state:?}");

    let token = std::fs::read_to_string(cluster.volume_dir(&pod, "tokens").join("token"))?;
    let review: TokenReview =
        serde_json::from_value(json!({"spec": {"token": token, "audiences": [audience]}}))?;
    let review =
        Api::<TokenReview>::all(cluster.client.clone()).create(&PostParams::default(), &review).await?;
    let status = review.status.context("no review status")?;
    ensure!(status.authenticated == Some(true), "token not authenticated: {:?}", status.error);
    let user = status.user.context("no user")?;
    let expected = format!("system:serviceaccount:{ns}:runner");
    ensure!(user.username.as_deref() == Some(expected.as_str()), "user {user:?}");
    let pod_name = user.extra.unwrap_or_default().get("authentication.kubernetes.io/pod-name").cloned();
    ensure!(pod_name == Some(vec!["fails".to_owned()]), "the token is not bound to the pod: {pod_name:?}");
    Ok(())
}

async fn succeeding_pod_resolves_services(cluster: &Cluster) -> anyhow::Result<()> {
    let ns = cluster.namespace("ok", json!({})).await?;
    cluster
        .create::<Service>(&ns, json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 8080}]}}))
        .await?;
    let script = r#"
        echo "looking up $URL"
        for i in $(seq 1 40); do
            getent hosts "web.$NS.svc.cluster.local" | grep -q 127.0.0.1 && getent hosts web | grep -q 127.0.0.1 && exit 0
            sleep 0.5
        done
        exit 1"#;
    let mut pod = cluster.shell_pod("succeeds", script);
    pod["spec"]["containers"][0]["env"] = json!([
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "URL", "value": "http://web.$(NS).svc:8080"},
    ]);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
    cluster.create::<Pod>(&ns, pod).await?;
    let pod =
        pod_until(&pods, "succeeds", "a terminal phase", |p| matches!(phase(p), "Succeeded" | "Failed"))
            .await?;
    let state = terminated(&pod).context("no terminated state")?;
    ensure!(phase(&pod) == "Succeeded" && state.exit_code == 0, "phase {} state {state:?}", phase(&pod));
    ensure!(state.reason.as_deref() == Some("Completed"), "reason {:?}", state.reason);
    let log = std::fs::read_to_string(cluster.pod_dir(&pod).join("main.log"))?;
    ensure!(log.contains(&format!("looking up http://web.{ns}.svc:8080")), "log {log:?}");
    Ok(())
}

async fn unknown_image_waits_for_a_pull(cluster: &Cluster) -> anyhow::Result<()> {
    let ns = cluster.namespace("pull", json!({})).await?;
    let mut pod = cluster.shell_pod("nothing", "exit 0");
    pod["spec"]["containers"][0]["image"] = json!("ocellus.test/not-in-the-table:1");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
    cluster.create::<Pod>(&ns, pod).await?;
    pod_until(&pods, "nothing", "an image pull error", |p| {
        let waiting = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first()?.state.clone());
        let reason = waiting.and_then(|s| s.waiting).and_then(|w| w.reason).unwrap_or_default();
        matches!(reason.as_str(), "ErrImagePull" | "ImagePullBackOff") && phase(p) == "Pending"
    })
    .await?;
    Ok(())
}

async fn jobs_run_through_scheduler_and_job_controller(cluster: &Cluster) -> anyhow::Result<()> {
    let ns = cluster.namespace("job", json!({})).await?;
    let job = |name: &str, code: i32| {
        json!({
            "metadata": {"name": name},
            "spec": {
                "backoffLimit": 3,
                "podFailurePolicy": {"rules": [
                    {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [65]}},
                ]},
                "template": {"spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": "runner",
                    "nodeSelector": {"kubernetes.io/hostname": cluster.node},
                    "containers": [{
                        "name": "main",
                        "image": SHELL_IMAGE,
                        "command": ["sh", "-c", format!("echo job {name}; exit {code}")],
                        "resources": {"limits": {"nvidia.com/gpu": 1}},
                    }],
                }},
            },
        })
    };
    cluster.create::<Job>(&ns, job("good", 0)).await?;
    cluster.create::<Job>(&ns, job("bad-input", 65)).await?;
    let jobs: Api<Job> = Api::namespaced(cluster.client.clone(), &ns);
    let condition = |j: &Job, kind: &str| {
        j.status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .find(|c| c.type_ == kind && c.status == "True")
            .cloned()
    };
    until(
        "Job good to complete",
        120,
        || async { Ok(jobs.get("good").await?) },
        |j| condition(j, "Complete").is_some(),
    )
    .await?;
    let bad = until(
        "Job bad-input to fail",
        120,
        || async { Ok(jobs.get("bad-input").await?) },
        |j| condition(j, "Failed").is_some(),
    )
    .await?;
    let failed = condition(&bad, "Failed").unwrap();
    ensure!(failed.reason.as_deref() == Some("PodFailurePolicy"), "Failed condition {failed:?}");
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
    let bad_pods = pods.list(&ListParams::default().labels("job-name=bad-input")).await?;
    ensure!(bad_pods.items.len() == 1, "exit code 65 retried: {} pods", bad_pods.items.len());
    let good_pods = pods.list(&ListParams::default().labels("job-name=good")).await?;
    let pod = good_pods.items.first().context("no pod of Job good")?;
    ensure!(pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&cluster.node), "not on our node");
    Ok(())
}

async fn deleted_pod_gets_sigterm_and_goes(cluster: &Cluster) -> anyhow::Result<()> {
    let ns = cluster.namespace("delete", json!({})).await?;
    let script =
        "trap 'echo term > /scratch/got-term; exit 0' TERM; echo started; while true; do sleep 0.2; done";
    let mut pod = cluster.shell_pod("sleeper", script);
    pod["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "scratch", "mountPath": "/scratch"}]);
    pod["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
    cluster.create::<Pod>(&ns, pod).await?;
    let pod = pod_until(&pods, "sleeper", "Running and Ready", |p| {
        phase(p) == "Running"
            && p.status
                .iter()
                .flat_map(|s| s.conditions.iter().flatten())
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
    .await?;
    pods.delete("sleeper", &DeleteParams::default()).await?;
    until("the pod to disappear", 30, || async { Ok(pods.get_opt("sleeper").await?) }, Option::is_none)
        .await?;
    let marker = cluster.volume_dir(&pod, "scratch").join("got-term");
    ensure!(marker.exists(), "no SIGTERM marker at {}", marker.display());
    Ok(())
}

async fn restricted_pod_is_admitted_and_runs(cluster: &Cluster) -> anyhow::Result<()> {
    let ns =
        cluster.namespace("restricted", json!({"pod-security.kubernetes.io/enforce": "restricted"})).await?;
    // The automounted kube-api-access volume: token, CA and namespace, as kube-rs reads them.
    let script = r#"
        d=/var/run/secrets/kubernetes.io/serviceaccount
        test -s $d/token && test -s $d/ca.crt && test "$(cat $d/namespace)" = "$NS" || exit 1
        test -n "$KUBERNETES_SERVICE_HOST" && test -n "$KUBERNETES_SERVICE_PORT""#;
    let mut pod = cluster.shell_pod("restricted", script);
    pod["spec"]["securityContext"] = json!({
        "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    });
    let container = &mut pod["spec"]["containers"][0];
    container["securityContext"] = json!({
        "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]},
    });
    container["env"] =
        json!([{"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]);
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &ns);
    cluster.create::<Pod>(&ns, pod).await?;
    let pod =
        pod_until(&pods, "restricted", "a terminal phase", |p| matches!(phase(p), "Succeeded" | "Failed"))
            .await?;
    ensure!(phase(&pod) == "Succeeded", "phase {}: {:?}", phase(&pod), terminated(&pod));
    Ok(())
}

/// Deletes the test namespaces and waits (a while) until no pod is left on the node.
async fn cleanup(cluster: &Cluster) {
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    if let Ok(list) = namespaces.list(&ListParams::default()).await {
        for ns in list.items.iter().filter(|n| n.name_any().starts_with(&cluster.prefix)) {
            let _ = namespaces.delete(&ns.name_any(), &DeleteParams::default()).await;
        }
    }
    let pods: Api<Pod> = Api::all(cluster.client.clone());
    let on_node = ListParams::default().fields(&format!("spec.nodeName={}", cluster.node));
    let _ = until(
        "the node's pods to go",
        60,
        || async { Ok(pods.list(&on_node).await?.items.len()) },
        |n| *n == 0,
    )
    .await;
}
