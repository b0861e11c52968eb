//! Kueue for real: the dev cluster's ClusterQueue holds one GPU; two GPU Experiments labelled for
//! its LocalQueue run one after the other, the second waiting `Suspended` (reason `Queued`,
//! with Kueue's own words) until the first has finished.

use std::time::Duration;

use serde_json::Value;

use super::faults::wait_for;
use super::{Cluster, condition, is_true, zip_folder};
use ocellus_tests::repo_root;

const FIRST: &str = "queued-first";
const SECOND: &str = "queued-second";

fn experiment(name: &str, queue: &str) -> String {
    format!(
        r#"apiVersion: ocellus.dev/v1alpha1
kind: Experiment
metadata:
  name: {name}
  labels: {{kueue.x-k8s.io/queue-name: {queue}}}
spec:
  datasetRef: {{name: queued-digits}}
  target: label
  task: Classification
  pipeline: Embeddings
  embeddings: {{architectures: [efficientnet_lite0], dimensions: [10]}}
  resources: {{gpus: 1}}
"#
    )
}

/// The trainer Job of Experiment `name`, once there is one.
fn job_of(cluster: &Cluster, name: &str) -> Option<Value> {
    let experiment = cluster.get("experiment", name);
    cluster.jobs_of(&cluster.namespace, &experiment).into_iter().next()
}

/// Run by the tutorial once its faults are injected: beside the SIGKILL step it would slow the
/// auto image search so much that the search could end before the kill found it.
pub fn a_second_gpu_experiment_waits_in_the_kueue_queue_until_the_first_is_done(cluster: &Cluster) {
    let queue = cluster.var("OCELLUS_KUEUE_QUEUE").to_owned();
    let ns = cluster.namespace.clone();
    let data = cluster.store_path(&format!("s3://data/{ns}"));
    std::fs::create_dir_all(&data).unwrap();
    zip_folder(&repo_root().join("testdata/sets/digits"), &data.join("queued-digits.zip"));
    cluster.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: queue-data-keys\n  labels: {{ocellus.dev/credentials: \"true\"}}\n\
         stringData:\n  AWS_ACCESS_KEY_ID: {}\n  AWS_SECRET_ACCESS_KEY: {}\n---\n\
         apiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {{name: queued-digits}}\nspec:\n  source:\n    \
         s3: {{uri: \"s3://data/{ns}/queued-digits.zip\", region: us-east-1, endpoint: \"{}\", \
         credentialsSecretRef: {{name: queue-data-keys}}}}\n  format: ClassFolders\n",
        cluster.var("AWS_ACCESS_KEY_ID"),
        cluster.var("AWS_SECRET_ACCESS_KEY"),
        cluster.var("OCELLUS_S3_ENDPOINT"),
    ));

    // The first is admitted: Kueue un-suspends its Job.
    cluster.apply(&experiment(FIRST, &queue));
    let admitted = wait_for(Duration::from_secs(300), "Kueue to admit the first Job", || {
        job_of(cluster, FIRST).filter(|job| job["spec"]["suspend"] == false)
    });
    let workloads = cluster.ok(&["get", "workloads.v1beta2.kueue.x-k8s.io", "-o", "json"]);
    assert!(
        workloads.contains(admitted["metadata"]["uid"].as_str().unwrap()),
        "a Workload stands for the Job"
    );

    // The second waits: its Job stays suspended, the Experiment says so, with Kueue's reason.
    cluster.apply(&experiment(SECOND, &queue));
    let what = "the second Experiment to wait in the queue, saying which quota is short";
    wait_for(Duration::from_secs(120), what, || {
        let second = cluster.get("experiment", SECOND);
        let job = job_of(cluster, SECOND)?;
        let suspended = condition(&second, "Suspended")?;
        let message = suspended["message"].as_str()?;
        (job["spec"]["suspend"] == true
            && suspended["reason"] == "Queued"
            && message.contains("insufficient unused quota for nvidia.com/gpu"))
        .then_some(())
    });
    let first = cluster.get("experiment", FIRST);
    assert!(
        !is_true(&first, "Succeeded"),
        "the first was still running while the second waited: {}",
        first["status"]
    );

    let finished = cluster.wait_finished(&[FIRST, SECOND], Duration::from_secs(15 * 60));
    for experiment in &finished {
        assert!(
            is_true(experiment, "Succeeded"),
            "{}: {}",
            experiment["metadata"]["name"],
            experiment["status"]
        );
        assert!(experiment["status"]["bestModel"].is_object(), "{}", experiment["status"]);
    }
    // Kueue admitted the second only once the first's Job had completed and freed the GPU.
    let first_done = job_of(cluster, FIRST).unwrap()["status"]["completionTime"].as_str().unwrap().to_owned();
    let second_started = job_of(cluster, SECOND).unwrap()["status"]["startTime"].as_str().unwrap().to_owned();
    assert!(second_started >= first_done, "second started {second_started}, first completed {first_done}");
    for name in [FIRST, SECOND] {
        cluster.ok(&["delete", "experiment", name, "--timeout=60s"]);
    }
}
