//! Memory of the operator's caches with 1,000 Experiments, their Jobs and pods, measured as
//! the growth of this process's resident set (VmRSS) while the caches are filled. It is its
//! own test binary so no other test shares the process. As in `ocellus-operator run`: the
//! Experiment controller's store holds Experiments whole; the Job and pod caches hold them
//! slimmed (`run::slim`); the owned-Job watch of the controller keeps no objects.
//!
//!     cargo test -p ocellus-operator --test memory -- --nocapture

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use ocellus_crds::{Dataset, Experiment};
use ocellus_operator::config::Config;
use ocellus_operator::jobs::trainer_job;
use ocellus_operator::run::{slim, slim_job};

const OBJECTS: usize = 1000;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

fn config() -> Config {
    Config {
        trainer_image: "ghcr.io/ocellus/trainer:0.1.0".into(),
        trainer_pull_secrets: vec!["regcred".into()],
        gpu_resource: "nvidia.com/gpu".into(),
        artifacts: "s3://ocellus-artifacts/runs".parse().unwrap(),
        artifacts_secret: Some("ocellus-artifacts".into()),
        s3_endpoint: None,
        backbones: Some("pvc://backbones/v1".parse().unwrap()),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        status_addr: "127.0.0.1:0".parse().unwrap(),
        status_url: None,
        status_tls_secret: None,
        status_ca: None,
        progress_timeout_seconds: 900,
        pod_name: None,
        pod_namespace: "ocellus-system".into(),
    }
}

fn experiment(index: usize) -> Experiment {
    let spec = serde_json::from_value(serde_json::json!({
        "datasetRef": {"name": "cats"}, "target": "label",
        "resources": {"gpus": 1, "cpu": "4", "memory": "16Gi", "nodeSelector": {"gpu": "a100"}},
    }))
    .unwrap();
    let mut experiment = Experiment::new(&format!("experiment-{index:04}"), spec);
    experiment.metadata.namespace = Some("ml".into());
    experiment.metadata.uid = Some(format!("uid-{index}"));
    experiment
}

#[test]
fn caches_of_1000_experiments_and_their_jobs_stay_under_100_mb() {
    let dataset: Dataset = serde_json::from_value(serde_json::json!({
        "apiVersion": "ocellus.dev/v1alpha1", "kind": "Dataset",
        "metadata": {"name": "cats", "namespace": "ml"},
        "spec": {"source": {"path": "/data/cats.zip"}},
    }))
    .unwrap();
    let config = config();
    let before = rss_bytes();
    let mut experiments = Writer::<Experiment>::default();
    let mut jobs = Writer::<Job>::default();
    let mut pods = Writer::<Pod>::default();
    for index in 0..OBJECTS {
        let experiment = experiment(index);
        let mut job = trainer_job(&experiment, &[&dataset], &config);
        let mut pod = Pod {
            metadata: ObjectMeta {
                name: Some(format!("experiment-{index:04}-train-abcde")),
                namespace: Some("ml".into()),
                labels: job.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().labels.clone(),
                annotations: job
                    .spec
                    .as_ref()
                    .unwrap()
                    .template
                    .metadata
                    .as_ref()
                    .unwrap()
                    .annotations
                    .clone(),
                ..Default::default()
            },
            spec: job.spec.as_ref().unwrap().template.spec.clone(),
            status: Some(PodStatus { phase: Some("Running".into()), ..Default::default() }),
        };
        slim_job(&mut job);
        slim(&mut pod);
        experiments.apply_watcher_event(&watcher::Event::Apply(experiment));
        jobs.apply_watcher_event(&watcher::Event::Apply(job));
        pods.apply_watcher_event(&watcher::Event::Apply(pod));
    }
    let grown = rss_bytes().saturating_sub(before);
    let readers = (experiments.as_reader(), jobs.as_reader(), pods.as_reader());
    assert_eq!(readers.0.state().len() + readers.1.state().len() + readers.2.state().len(), 3 * OBJECTS);
    println!(
        "caches of {OBJECTS} Experiments, Jobs and pods: RSS grew {:.1} MB (process before: {:.1} MB)",
        grown as f64 / 1e6,
        before as f64 / 1e6
    );
    assert!(grown < 100_000_000, "caches grew RSS by {grown} bytes");
}
