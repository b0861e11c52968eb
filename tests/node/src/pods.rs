//! The pod loop: watches the pods bound to this node and gives each a worker that prepares its
//! volumes, runs its containers, restarts them by its restart policy, probes readiness, writes
//! its status and honours its deletion.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::process::{self, Launch, Mount};
use crate::status::{ContainerStatus, Phase, PodStatus, State};
use crate::volumes::{self, PodVolumes};
use crate::{Ctx, env, hosts};

const TICK: Duration = Duration::from_secs(2);

/// Watches the pods with `spec.nodeName` = this node until the watch fails for good.
pub async fn run(ctx: Arc<Ctx>) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.node_name));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut workers: HashMap<String, watch::Sender<Pod>> = HashMap::new();
    // Pods whose worker is done (they reached a terminal phase): never run twice.
    let mut finished: HashSet<String> = HashSet::new();
    let mut listed: HashSet<String> = HashSet::new();
    while let Some(event) = events.try_next().await? {
        workers.retain(|uid, tx| {
            let open = !tx.is_closed();
            if !open {
                finished.insert(uid.clone());
            }
            open
        });
        match event {
            Event::Init => listed.clear(),
            Event::InitApply(pod) => {
                listed.insert(pod.uid().unwrap_or_default());
                dispatch(&ctx, pod, &mut workers, &finished);
            }
            // Pods gone while the watch was down: dropping the sender kills their processes.
            Event::InitDone => {
                workers.retain(|uid, _| listed.contains(uid));
                finished.retain(|uid| listed.contains(uid));
            }
            Event::Apply(pod) => dispatch(&ctx, pod, &mut workers, &finished),
            Event::Delete(pod) => {
                let uid = pod.uid().unwrap_or_default();
                workers.remove(&uid);
                finished.remove(&uid);
            }
        }
    }
    Ok(())
}

fn dispatch(
    ctx: &Arc<Ctx>,
    pod: Pod,
    workers: &mut HashMap<String, watch::Sender<Pod>>,
    finished: &HashSet<String>,
) {
    let uid = pod.uid().unwrap_or_default();
    if let Some(tx) = workers.get(&uid) {
        tx.send_replace(pod);
        return;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if finished.contains(&uid) || matches!(phase, Some("Succeeded" | "Failed")) {
        // A finished pod being deleted: nothing runs, so it goes at once, as the kubelet does it.
        if pod.metadata.deletion_timestamp.is_some() && pod.metadata.deletion_grace_period_seconds != Some(0)
        {
            let api = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
            tokio::spawn(async move { delete_now(&api, &pod).await });
        }
        return;
    }
    let (tx, rx) = watch::channel(pod);
    tokio::spawn(Worker::run(ctx.clone(), rx));
    workers.insert(uid, tx);
}

async fn delete_now(api: &Api<Pod>, pod: &Pod) {
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: pod.uid(), resource_version: None }),
        ..Default::default()
    };
    if let Err(error) = api.delete(&pod.name_any(), &params).await {
        tracing::debug!("deleting pod {}: {error}", pod.name_any());
    }
}

/// One container's process and probe bookkeeping.
#[derive(Default)]
struct Run {
    log_offset: u64,
    started_at: Option<Instant>,
    restart_at: Option<Instant>,
    next_probe: Option<Instant>,
    probe_failures: i32,
}

struct Worker {
    ctx: Arc<Ctx>,
    api: Api<Pod>,
    pod: Pod,
    dir: PathBuf,
    status: PodStatus,
    volumes: Option<PodVolumes>,
    runs: Vec<Run>,
    exits: mpsc::UnboundedSender<(usize, i32)>,
    deleting: bool,
}

impl Worker {
    async fn run(ctx: Arc<Ctx>, mut rx: watch::Receiver<Pod>) {
        let pod = rx.borrow_and_update().clone();
        let (namespace, name, uid) =
            (pod.namespace().unwrap_or_default(), pod.name_any(), pod.uid().unwrap_or_default());
        let dir = ctx.state_dir.join("pods").join(format!("{namespace}_{name}_{uid}"));
        if let Err(error) = std::fs::create_dir_all(&dir) {
            tracing::error!("pod {namespace}/{name}: {error}");
            return;
        }
        tracing::info!("pod {namespace}/{name}: starting; logs in {}", dir.display());
        let (exits, mut exit_rx) = mpsc::unbounded_channel();
        let mut worker = Worker {
            api: Api::namespaced(ctx.client.clone(), &namespace),
            status: PodStatus::new(&pod),
            runs: pod.spec.iter().flat_map(|s| &s.containers).map(|_| Run::default()).collect(),
            dir,
            volumes: None,
            ctx: ctx.clone(),
            pod,
            exits,
            deleting: false,
        };
        if pod_has_init_containers(&worker.pod) {
            tracing::warn!("pod {namespace}/{name}: init containers are not supported and are skipped");
        }
        worker.publish().await;
        let mut hosts = ctx.hosts.clone();
        let mut tick = tokio::time::interval(TICK);
        loop {
            let mut changed = false;
            tokio::select! {
                update = rx.changed() => match update {
                    Err(_) => {
                        tracing::info!("pod {namespace}/{name}: gone; killing its processes");
                        worker.stop(Duration::ZERO, &mut exit_rx).await;
                        return;
                    }
                    Ok(()) => {
                        worker.pod = rx.borrow_and_update().clone();
                        if worker.pod.metadata.deletion_timestamp.is_some() {
                            worker.delete(&mut exit_rx).await;
                            return;
                        }
                    }
                },
                Some((index, code)) = exit_rx.recv() => {
                    worker.exited(index, code);
                    changed = true;
                }
                Ok(()) = hosts.changed() => worker.write_hosts(),
                _ = tick.tick() => changed = worker.step().await,
            }
            if changed {
                worker.update_phase();
                worker.publish().await;
                if matches!(worker.status.phase, Phase::Succeeded | Phase::Failed) {
                    tracing::info!("pod {namespace}/{name}: {:?}", worker.status.phase);
                    return;
                }
            }
        }
    }

    fn containers(&self) -> &[Container] {
        self.pod.spec.as_ref().map_or(&[], |s| &s.containers)
    }

    fn restart_policy(&self) -> &str {
        self.pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always")
    }

    async fn publish(&mut self) {
        if let Err(error) = crate::status::patch(&self.api, &self.pod.name_any(), &mut self.status).await {
            tracing::warn!("pod {}: writing status: {error}", self.pod.name_any());
        }
    }

    fn set_state(&mut self, index: usize, state: State) -> bool {
        let status = &mut self.status.containers[index];
        let changed = status.state != state;
        status.state = state;
        changed
    }

    fn write_hosts(&self) {
        let hostname =
            self.pod.spec.as_ref().and_then(|s| s.hostname.clone()).unwrap_or_else(|| self.pod.name_any());
        let contents = hosts::pod_hosts(&hostname, &self.ctx.hosts.borrow());
        // In place: the file is bind-mounted over /etc/hosts, a rename would not show.
        if let Err(error) = std::fs::write(self.dir.join("hosts"), contents) {
            tracing::warn!("writing {}: {error}", self.dir.join("hosts").display());
        }
    }

    /// Prepares the pod, starts containers that are due, probes readiness. True when the
    /// status changed.
    async fn step(&mut self) -> bool {
        let mut changed = false;
        if self.volumes.is_none() {
            let unknown: Vec<(usize, String)> = (self.containers().iter().enumerate())
                .filter_map(|(i, c)| {
                    let image = c.image.clone().unwrap_or_default();
                    self.ctx.executable(&image).is_none().then_some((i, image))
                })
                .collect();
            if !unknown.is_empty() {
                for (i, image) in unknown {
                    let state = match &self.status.containers[i].state {
                        State::Waiting { reason, .. }
                            if reason == "ErrImagePull" || reason == "ImagePullBackOff" =>
                        {
                            State::waiting("ImagePullBackOff", format!("Back-off pulling image {image:?}"))
                        }
                        _ => State::waiting(
                            "ErrImagePull",
                            format!(
                                "image {image:?} is not in this process node's image table (--image REPOSITORY=EXECUTABLE)"
                            ),
                        ),
                    };
                    changed |= self.set_state(i, state);
                }
                return changed;
            }
            match volumes::prepare(&self.ctx, &self.pod, &self.dir).await {
                Ok(prepared) => {
                    self.volumes = Some(prepared);
                    self.status.initialized = true;
                    self.write_hosts();
                    changed = true;
                }
                Err(message) => {
                    tracing::info!("pod {}: volumes not ready: {message}", self.pod.name_any());
                    for i in 0..self.runs.len() {
                        changed |= self.set_state(i, State::waiting("ContainerCreating", message.clone()));
                    }
                    return changed;
                }
            }
        }
        let now = Instant::now();
        for i in 0..self.runs.len() {
            let run = &self.runs[i];
            let due = match &self.status.containers[i].state {
                State::Waiting { .. } => run.restart_at.is_none_or(|at| at <= now),
                _ => false,
            };
            if due {
                changed |= self.start(i).await;
            }
            if matches!(self.status.containers[i].state, State::Running { .. }) {
                changed |= self.probe(i).await;
            }
        }
        changed
    }

    /// Starts container `index`; a configuration error leaves it waiting, a failed start
    /// counts as an exit with code 128, as container runtimes report it.
    async fn start(&mut self, index: usize) -> bool {
        let container = self.containers()[index].clone();
        let env = match env::container_env(&self.ctx, &self.pod, &container).await {
            Ok(env) => env,
            Err(message) => {
                return self.set_state(index, State::waiting("CreateContainerConfigError", message));
            }
        };
        let launch = match self.launch(&container, env) {
            Ok(launch) => launch,
            Err(message) => {
                return self.set_state(index, State::waiting("CreateContainerConfigError", message));
            }
        };
        let _ = std::fs::write(self.termination_file(&container), b"");
        let name = format!("{}/{}", self.pod.name_any(), container.name);
        match process::spawn(&launch) {
            Ok(started) => {
                tracing::info!(
                    "container {name}: pid {} runs {} {:?}; log {}",
                    started.pid,
                    launch.program,
                    launch.args,
                    launch.log.display()
                );
                let run = &mut self.runs[index];
                run.log_offset = started.log_offset;
                run.started_at = Some(Instant::now());
                run.restart_at = None;
                run.next_probe = None;
                run.probe_failures = 0;
                let status = &mut self.status.containers[index];
                status.pid = started.pid;
                status.ready = container.readiness_probe.is_none();
                status.state = State::Running { started: Timestamp::now() };
                let exits = self.exits.clone();
                tokio::spawn(async move {
                    let code = process::wait(started.pid, started.child).await;
                    let _ = exits.send((index, code));
                });
            }
            Err(error) => {
                tracing::warn!("container {name}: cannot start {}: {error}", launch.program);
                let now = Timestamp::now();
                self.status.containers[index].state =
                    State::Waiting { reason: "StartError".into(), message: error.to_string() };
                self.finish(index, 128, format!("failed to start {}: {error}", launch.program), now);
            }
        }
        true
    }

    /// The command, environment and mounts of `container`.
    fn launch(&self, container: &Container, env: Vec<(String, String)>) -> Result<Launch, String> {
        let image = container.image.as_deref().unwrap_or_default();
        let executable = self.ctx.executable(image).ok_or("image not in the image table")?;
        let expand = |list: &Option<Vec<String>>| -> Vec<String> {
            list.iter().flatten().map(|s| env::expand(s, &env)).collect()
        };
        let (command, args) = (expand(&container.command), expand(&container.args));
        let (program, mut argv) = match command.split_first() {
            None => (executable.display().to_string(), vec![]),
            Some((first, rest)) if names(first, executable) => {
                (executable.display().to_string(), rest.to_vec())
            }
            Some((first, rest)) => (first.clone(), rest.to_vec()),
        };
        argv.extend(args);
        let volumes = self.volumes.as_ref().ok_or("volumes not prepared")?;
        let spec_volumes = self.pod.spec.as_ref().and_then(|s| s.volumes.clone()).unwrap_or_default();
        let mut mounts = vec![];
        for mount in container.volume_mounts.iter().flatten() {
            let mut source =
                volumes.paths.get(&mount.name).cloned().ok_or(format!("no volume {:?}", mount.name))?;
            let sub_path = match (&mount.sub_path, &mount.sub_path_expr) {
                (Some(p), _) if !p.is_empty() => Some(p.clone()),
                (_, Some(e)) if !e.is_empty() => Some(env::expand(e, &env)),
                _ => None,
            };
            if let Some(sub_path) = sub_path {
                if sub_path.split('/').any(|p| p == "..") {
                    return Err(format!("subPath {sub_path:?} may not contain '..'"));
                }
                source = source.join(sub_path);
                if !source.exists() {
                    std::fs::create_dir_all(&source).map_err(|e| e.to_string())?;
                }
            }
            let volume = spec_volumes.iter().find(|v| v.name == mount.name);
            let always_read_only = volume.is_some_and(|v| {
                v.secret.is_some()
                    || v.config_map.is_some()
                    || v.downward_api.is_some()
                    || v.projected.is_some()
            });
            let claim_read_only = volume
                .and_then(|v| v.persistent_volume_claim.as_ref())
                .and_then(|c| c.read_only)
                .unwrap_or(false);
            mounts.push(Mount {
                source,
                target: PathBuf::from(&mount.mount_path),
                read_only: mount.read_only.unwrap_or(false) || always_read_only || claim_read_only,
            });
        }
        mounts.push(Mount { source: self.dir.join("hosts"), target: "/etc/hosts".into(), read_only: false });
        let message_path = container.termination_message_path.as_deref().unwrap_or("/dev/termination-log");
        mounts.push(Mount {
            source: self.termination_file(container),
            target: message_path.into(),
            read_only: false,
        });
        Ok(Launch {
            program,
            args: argv,
            env,
            working_dir: container
                .working_dir
                .clone()
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| "/".into()),
            hostname: self
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.hostname.clone())
                .unwrap_or_else(|| self.pod.name_any()),
            mounts,
            log: self.dir.join(format!("{}.log", container.name)),
        })
    }

    fn termination_file(&self, container: &Container) -> PathBuf {
        self.dir.join(format!("{}.termination-log", container.name))
    }

    /// Container `index` exited with `code`.
    fn exited(&mut self, index: usize, code: i32) {
        let container = self.containers()[index].clone();
        let name = format!("{}/{}", self.pod.name_any(), container.name);
        tracing::info!("container {name}: exited with code {code}");
        let file = std::fs::read(self.termination_file(&container)).unwrap_or_default();
        let mut message = String::from_utf8_lossy(&file[..file.len().min(4096)]).into_owned();
        let policy = container.termination_message_policy.as_deref().unwrap_or("File");
        if message.is_empty() && code != 0 && policy == "FallbackToLogsOnError" {
            message = process::log_tail(
                &self.dir.join(format!("{}.log", container.name)),
                self.runs[index].log_offset,
            );
        }
        self.finish(index, code, message, Timestamp::now());
    }

    /// Records a terminated run and schedules a restart when the restart policy asks for one.
    fn finish(&mut self, index: usize, code: i32, message: String, finished: Timestamp) {
        let started = match self.status.containers[index].state {
            State::Running { started } => started,
            _ => finished,
        };
        let terminated = State::Terminated { code, message, started, finished };
        let restart = !self.deleting
            && match self.restart_policy() {
                "Never" => false,
                "OnFailure" => code != 0,
                _ => true,
            };
        let status: &mut ContainerStatus = &mut self.status.containers[index];
        status.ready = false;
        if restart {
            status.restarts += 1;
            // 1 s, then 10 s doubling up to 5 minutes; a run of 10 minutes resets it in a kubelet.
            let backoff = match status.restarts {
                1 => Duration::from_secs(1),
                n => Duration::from_secs((10u64 << (n - 2).min(5)).min(300)),
            };
            status.state = State::waiting(
                "CrashLoopBackOff",
                format!("back-off {}s restarting failed container={}", backoff.as_secs(), status.name),
            );
            status.last = Some(terminated);
            self.runs[index].restart_at = Some(Instant::now() + backoff);
        } else {
            status.state = terminated;
        }
    }

    /// The pod's phase from its containers' states.
    fn update_phase(&mut self) {
        let containers = &self.status.containers;
        let all_terminated = containers.iter().all(|c| matches!(c.state, State::Terminated { .. }));
        let all_zero = containers.iter().all(|c| matches!(c.state, State::Terminated { code: 0, .. }));
        let ever_ran =
            containers.iter().any(|c| !matches!(c.state, State::Waiting { .. }) || c.last.is_some());
        self.status.phase = if all_terminated && all_zero {
            Phase::Succeeded
        } else if all_terminated {
            Phase::Failed
        } else if ever_ran {
            Phase::Running
        } else {
            Phase::Pending
        };
    }

    /// Runs the readiness probe of container `index` when it is due. True when readiness changed.
    async fn probe(&mut self, index: usize) -> bool {
        let Some(probe) = self.containers()[index].readiness_probe.clone() else {
            return false;
        };
        let container = self.containers()[index].clone();
        let now = Instant::now();
        let run = &mut self.runs[index];
        let initial = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        if run.started_at.is_some_and(|s| s + initial > now) || run.next_probe.is_some_and(|n| n > now) {
            return false;
        }
        let ok = check_probe(&container, &probe).await;
        let ready = self.status.containers[index].ready;
        let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).clamp(1, 10) as u64);
        // Poll a few seconds apart until ready, then at the probe's period.
        run.next_probe = Some(now + if ready { period } else { period.min(TICK) });
        run.probe_failures = if ok { 0 } else { run.probe_failures + 1 };
        let new_ready = ok || (ready && run.probe_failures < probe.failure_threshold.unwrap_or(3));
        self.status.containers[index].ready = new_ready;
        new_ready != ready
    }

    /// SIGTERM to every running container, SIGKILL after `grace`; waits for their exits.
    async fn stop(&mut self, grace: Duration, exit_rx: &mut mpsc::UnboundedReceiver<(usize, i32)>) {
        self.deleting = true;
        let running = |w: &Worker| {
            w.status.containers.iter().filter(|c| matches!(c.state, State::Running { .. })).count()
        };
        let pids: Vec<i32> = (self.status.containers.iter())
            .filter(|c| matches!(c.state, State::Running { .. }))
            .map(|c| c.pid)
            .collect();
        pids.iter()
            .for_each(|&p| process::signal(p, if grace.is_zero() { libc::SIGKILL } else { libc::SIGTERM }));
        let deadline = Instant::now() + grace;
        while running(self) > 0 {
            match tokio::time::timeout_at(deadline, exit_rx.recv()).await {
                Ok(Some((index, code))) => self.exited(index, code),
                Ok(None) => break,
                Err(_) => {
                    pids.iter().for_each(|&p| process::signal(p, libc::SIGKILL));
                    while running(self) > 0 {
                        match tokio::time::timeout(Duration::from_secs(5), exit_rx.recv()).await {
                            Ok(Some((index, code))) => self.exited(index, code),
                            _ => return,
                        }
                    }
                }
            }
        }
    }

    /// The pod is being deleted: stop its containers within its grace period, write the final
    /// status and delete it for good.
    async fn delete(&mut self, exit_rx: &mut mpsc::UnboundedReceiver<(usize, i32)>) {
        let seconds = (self.pod.metadata.deletion_grace_period_seconds)
            .or_else(|| self.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(30);
        tracing::info!("pod {}: deleted; stopping within {seconds}s", self.pod.name_any());
        self.stop(Duration::from_secs(seconds.max(0) as u64), exit_rx).await;
        self.update_phase();
        if self.status.phase != Phase::Succeeded {
            self.status.phase = Phase::Failed;
        }
        self.publish().await;
        delete_now(&self.api, &self.pod).await;
    }
}

fn pod_has_init_containers(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.init_containers.as_ref()).is_some_and(|c| !c.is_empty())
}

/// Whether a container's `command[0]` names the image's program (`ocellus` for `.../ocellus`).
fn names(first: &str, executable: &Path) -> bool {
    Path::new(first) == executable || Path::new(first).file_name() == executable.file_name()
}

/// An httpGet or tcpSocket probe against 127.0.0.1; other kinds pass.
async fn check_probe(container: &Container, probe: &Probe) -> bool {
    let port_of = |port: &IntOrString| match port {
        IntOrString::Int(p) => Some(*p as u16),
        IntOrString::String(name) => (container.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port as u16),
    };
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    let attempt = async {
        if let Some(http) = &probe.http_get {
            let port = port_of(&http.port)?;
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
            let path = http.path.as_deref().unwrap_or("/");
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: kube-probe/ocellus-node\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await.ok()?;
            let mut head = [0u8; 12];
            stream.read_exact(&mut head).await.ok()?;
            let code: u16 = std::str::from_utf8(&head[9..12]).ok()?.parse().ok()?;
            Some((200..400).contains(&code))
        } else if let Some(tcp) = &probe.tcp_socket {
            let port = port_of(&tcp.port)?;
            Some(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok())
        } else {
            Some(true)
        }
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}
