//! Faults injected while the tutorial's runs are in flight, and what must hold afterwards: the
//! fine-tuned run suspended and resumed, the auto image trainer SIGKILLed mid-search (the Job
//! retries and the search resumes from its checkpoint in the store), the operator and its status
//! server down for half a minute; then a namespace deleted with a running Experiment and a
//! deleted Experiment created again under its name.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Cluster, condition, is_true, text};

const SUSPENDED_RUN: &str = "car-price-fine-tuned";
const KILLED_RUN: &str = "digits-auto-image";

/// Polls `probe` every 2 s until it gives a value; panics after `limit` naming `what`.
pub fn wait_for<T>(limit: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(started.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_secs(2));
    }
}

impl Cluster {
    /// The Jobs an object owns (by UID), in `namespace`.
    pub fn jobs_of(&self, namespace: &str, owner: &Value) -> Vec<Value> {
        let output = self.kubectl(&["-n", namespace, "get", "jobs", "-o", "json"]);
        assert!(output.status.success(), "{}", text(&output));
        let jobs: Value = serde_json::from_slice(&output.stdout).unwrap();
        let uid = &owner["metadata"]["uid"];
        let owned = |job: &&Value| {
            job["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == *uid))
        };
        jobs["items"].as_array().unwrap().iter().filter(owned).cloned().collect()
    }

    /// The running trainer Job of Experiment `name` in `namespace`, once it has an active pod.
    fn running_job(&self, namespace: &str, name: &str, limit: Duration) -> Value {
        wait_for(limit, &format!("{namespace}/{name}'s trainer pod to run"), || {
            let output = self.kubectl(&["-n", namespace, "get", "experiment", name, "-o", "json"]);
            let experiment: Value = serde_json::from_slice(&output.stdout).ok()?;
            self.jobs_of(namespace, &experiment)
                .into_iter()
                .find(|job| job["status"]["active"].as_i64() >= Some(1))
        })
    }

    fn patch_suspend(&self, name: &str, suspend: bool) {
        self.ok(&[
            "patch",
            "experiment",
            name,
            "--type=merge",
            "-p",
            &format!("{{\"spec\":{{\"suspend\":{suspend}}}}}"),
        ]);
    }

    fn scale_operator(&self, replicas: u32) {
        let release = self.var("OCELLUS_RELEASE_NAMESPACE");
        let output = self.kubectl(&[
            "-n",
            release,
            "scale",
            "deployment/ocellus-operator",
            &format!("--replicas={replicas}"),
        ]);
        assert!(output.status.success(), "{}", text(&output));
    }

    fn operator_pods(&self) -> usize {
        let release = self.var("OCELLUS_RELEASE_NAMESPACE");
        let output = self.kubectl(&[
            "-n",
            release,
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=ocellus",
            "-o",
            "name",
        ]);
        String::from_utf8_lossy(&output.stdout).lines().count()
    }
}

/// The `--out` folder of a trainer Job's container.
fn out_folder(job: &Value) -> String {
    let args: Vec<&str> = job["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let at = args.iter().position(|a| *a == "--out").expect("a trainer Job has --out");
    args[at + 1].to_owned()
}

/// The trial states of a search's `trials/` folder in the store (`epochsDone`, `history` epochs).
fn trial_states(trials: &std::path::Path) -> Vec<(std::path::PathBuf, Value)> {
    let Ok(entries) = std::fs::read_dir(trials) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| {
            let path = entry.path().join("state.json");
            let state = serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
            Some((path, state))
        })
        .collect()
}

/// What the faults did, for the checks once the runs finished.
pub struct Disrupted {
    killed_out: String,
}

/// Injects the faults while the runs go, in the order the runs start (the auto image search
/// first: its Dataset needs no split); returns once the suspended run was resumed.
pub fn disrupt_the_runs(cluster: &Cluster) -> Disrupted {
    let ns = cluster.namespace.clone();

    // SIGKILL of the auto image trainer, once a checkpoint of its search is in the store.
    let job = cluster.running_job(&ns, KILLED_RUN, Duration::from_secs(600));
    let out = out_folder(&job);
    let trials = cluster.store_path(&out).join("trials");
    wait_for(Duration::from_secs(600), "a trial checkpoint of the search in the store", || {
        trial_states(&trials).iter().any(|(_, state)| state["epochsDone"].as_u64() >= Some(1)).then_some(())
    });
    let pattern = format!("--out {out}$");
    let killed = std::process::Command::new("pkill").args(["-KILL", "-f", "--", &pattern]).output().unwrap();
    assert!(killed.status.success(), "no trainer process matched {pattern}: {}", text(&killed));

    // The operator, and with it the status server the trainers report to, down for 30 s.
    cluster.scale_operator(0);
    wait_for(Duration::from_secs(120), "the operator pod to go", || {
        (cluster.operator_pods() == 0).then_some(())
    });
    std::thread::sleep(Duration::from_secs(30));
    cluster.scale_operator(1);
    let release = cluster.var("OCELLUS_RELEASE_NAMESPACE");
    let output = cluster.kubectl(&[
        "-n",
        release,
        "rollout",
        "status",
        "deployment/ocellus-operator",
        "--timeout=180s",
    ]);
    assert!(output.status.success(), "the operator did not come back: {}", text(&output));

    // suspend: true stops the trainer (the Job controller deletes its pod); false starts it again.
    let job = cluster.running_job(&ns, SUSPENDED_RUN, Duration::from_secs(600));
    let job_name = job["metadata"]["name"].as_str().unwrap().to_owned();
    cluster.patch_suspend(SUSPENDED_RUN, true);
    wait_for(Duration::from_secs(180), "the suspended run to stop", || {
        let experiment = cluster.get("experiment", SUSPENDED_RUN);
        let job = cluster.get("job", &job_name);
        (is_true(&experiment, "Suspended") && job["status"]["active"].as_i64().unwrap_or(0) == 0)
            .then_some(())
    });
    cluster.patch_suspend(SUSPENDED_RUN, false);
    Disrupted { killed_out: out }
}

/// After the runs finished: one trainer Job each (no duplicate after the operator's restart), the
/// killed search retried and resumed, every trial's epochs trained once, the suspended run done.
pub fn check_after_the_faults(cluster: &Cluster, disrupted: &Disrupted, experiments: &[Value]) {
    let ns = cluster.namespace.clone();
    for experiment in experiments {
        let jobs = cluster.jobs_of(&ns, experiment);
        assert_eq!(jobs.len(), 1, "{}: one trainer Job, not {}", experiment["metadata"]["name"], jobs.len());
    }
    let killed = experiments.iter().find(|e| e["metadata"]["name"] == KILLED_RUN).unwrap();
    let job = &cluster.jobs_of(&ns, killed)[0];
    assert!(
        job["status"]["failed"].as_i64() >= Some(1),
        "the SIGKILLed pod counts as failed: {}",
        job["status"]
    );
    assert_eq!(job["status"]["succeeded"], 1, "{}", job["status"]);
    // The pod after the kill resumed from the store (the process node keeps each pod's log).
    let job_name = job["metadata"]["name"].as_str().unwrap();
    let pods = std::path::Path::new(cluster.var("OCELLUS_NODE_STATE_DIR")).join("pods");
    let logs: Vec<String> = std::fs::read_dir(&pods)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{ns}_{job_name}-")))
        .filter_map(|e| std::fs::read_to_string(e.path().join("trainer.log")).ok())
        .collect();
    assert!(logs.len() >= 2, "two trainer pods ran for {job_name}, found logs of {}", logs.len());
    let resumed = format!("resuming from {}/trials", disrupted.killed_out);
    assert!(
        logs.iter().any(|log| log.contains(&resumed)),
        "no pod logged {resumed:?}:\n{}",
        logs.join("\n----\n")
    );
    // Each trial's history is one record per epoch, in order: nothing trained twice or lost.
    let states = trial_states(&cluster.store_path(&disrupted.killed_out).join("trials"));
    assert!(!states.is_empty(), "the search's trials are in the store");
    for (path, state) in &states {
        let epochs: Vec<u64> =
            state["history"].as_array().unwrap().iter().map(|r| r["epoch"].as_u64().unwrap()).collect();
        assert_eq!(epochs, (1..=epochs.len() as u64).collect::<Vec<_>>(), "{}", path.display());
        assert_eq!(state["epochsDone"].as_u64(), Some(epochs.len() as u64), "{}", path.display());
    }
    let suspended = experiments.iter().find(|e| e["metadata"]["name"] == SUSPENDED_RUN).unwrap();
    assert!(!is_true(suspended, "Suspended"), "resumed: {}", suspended["status"]);
}

/// A namespace deleted while its Experiment trains: the namespace goes within minutes (the
/// finalizer does not hold it), and with `deletionPolicy: Delete` the run's folder leaves the
/// store even though no cleanup pod can start there any more.
pub fn a_namespace_deleted_with_a_running_experiment_goes(cluster: &Cluster) {
    let ns = "ocellus-doomed";
    let output = cluster.kubectl(&["create", "namespace", ns]);
    assert!(output.status.success() || text(&output).contains("AlreadyExists"), "{}", text(&output));
    let setup = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: ocellus-trainer}}\nautomountServiceAccountToken: false\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata: {{name: ocellus-store}}\nstringData:\n  AWS_ACCESS_KEY_ID: {key}\n  AWS_SECRET_ACCESS_KEY: {secret}\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: data-keys\n  labels: {{ocellus.dev/credentials: \"true\"}}\nstringData:\n  AWS_ACCESS_KEY_ID: {key}\n  AWS_SECRET_ACCESS_KEY: {secret}\n---\n\
         apiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {{name: digits}}\nspec:\n  source:\n    s3: {{uri: \"s3://data/{demo}/digits.zip\", region: us-east-1, endpoint: \"{endpoint}\", credentialsSecretRef: {{name: data-keys}}}}\n  format: ClassFolders\n---\n\
         apiVersion: ocellus.dev/v1alpha1\nkind: Experiment\nmetadata: {{name: doomed}}\nspec:\n  datasetRef: {{name: digits}}\n  target: label\n  task: Classification\n  pipeline: AutoImage\n  autoImage: {{timeBudgetSeconds: 600, maxTrials: 1, architectures: [efficientnet_lite0]}}\n  resources: {{gpus: 0}}\n  artifacts: {{deletionPolicy: Delete}}\n",
        key = cluster.var("AWS_ACCESS_KEY_ID"),
        secret = cluster.var("AWS_SECRET_ACCESS_KEY"),
        demo = cluster.namespace,
        endpoint = cluster.var("OCELLUS_S3_ENDPOINT"),
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), setup).unwrap();
    let output = cluster.kubectl(&["-n", ns, "apply", "-f", file.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    let job = cluster.running_job(ns, "doomed", Duration::from_secs(300));
    let folder = cluster.store_path(&out_folder(&job));
    wait_for(Duration::from_secs(300), "the doomed run to write to the store", || {
        folder.is_dir().then_some(())
    });

    let started = Instant::now();
    let output = cluster.kubectl(&["delete", "namespace", ns, "--timeout=240s"]);
    assert!(output.status.success(), "deleting the namespace hung: {}", text(&output));
    let gone = cluster.kubectl(&["get", "namespace", ns]);
    assert!(!gone.status.success(), "the namespace is still there after {:?}", started.elapsed());
    let left = super::walk(&folder);
    assert!(left.is_empty(), "deletionPolicy Delete left {left:?} after the namespace went");
}

/// An Experiment deleted and applied again under the same name runs afresh: a new Job, a new
/// artifact folder, the old (retained) folder untouched.
pub fn a_recreated_experiment_runs_afresh(cluster: &Cluster, manifest: &str, old_location: &str) {
    cluster.apply(manifest);
    let experiment = cluster.wait_finished(&["car-price-embeddings"], Duration::from_secs(600)).remove(0);
    assert!(is_true(&experiment, "Succeeded"), "{}", experiment["status"]);
    let location = experiment["status"]["artifacts"]["location"].as_str().unwrap();
    assert_ne!(location, old_location, "the new Experiment wrote into the old one's folder");
    assert!(
        cluster.store_path(&format!("{old_location}/result.json")).is_file(),
        "the retained folder stays"
    );
    let jobs = cluster.jobs_of(&cluster.namespace, &experiment);
    assert_eq!(jobs.len(), 1, "one Job of its own");
    let running = condition(&experiment, "Running").cloned().unwrap_or_default();
    assert_ne!(running["status"], "True", "{}", experiment["status"]);
}
