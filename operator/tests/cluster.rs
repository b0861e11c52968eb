//! Cluster tests: apply real manifests and wait for the operator to act on them. They need
//! a cluster with the chart installed (CRDs, operator, trainer image) and run only when
//! `KUBECONFIG` is set; otherwise each test says so and passes without checking anything.
//!
//!     KUBECONFIG=~/.kube/config cargo test -p ocellus-operator --test cluster -- --nocapture

use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use ocellus_crds::condition::types;
use ocellus_crds::{Dataset, Experiment, Manifest, find_condition, parse_manifests};

/// Where the objects go: a namespace the chart set up for trainers (the dev cluster's demo
/// namespace when its `dev.env` is exported), else `default`.
fn namespace() -> String {
    std::env::var("OCELLUS_DEMO_NAMESPACE").unwrap_or_else(|_| "default".into())
}

async fn cluster() -> Option<Client> {
    if std::env::var_os("KUBECONFIG").is_none() {
        eprintln!(
            "SKIPPED: KUBECONFIG is not set; cluster tests need a cluster with the Ocellus chart installed"
        );
        return None;
    }
    // kube's TLS needs a process-wide rustls provider; the workspace enables two.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Some(Client::try_default().await.expect("KUBECONFIG is set but no client could be built from it"))
}

const MANIFEST: &str = r#"
apiVersion: ocellus.dev/v1alpha1
kind: Dataset
metadata: {name: e2e-missing-source}
spec:
  source: {http: {url: "http://127.0.0.1:9/nothing.zip"}}
---
apiVersion: ocellus.dev/v1alpha1
kind: Experiment
metadata: {name: e2e-waits}
spec:
  datasetRef: {name: e2e-never-created}
  target: label
"#;

async fn apply_all(client: &Client) {
    let params = PatchParams::apply("ocellus-e2e").force();
    for manifest in parse_manifests(MANIFEST).unwrap() {
        match manifest {
            Manifest::Dataset(d) => {
                let api: Api<Dataset> = Api::namespaced(client.clone(), &namespace());
                api.patch(d.metadata.name.as_deref().unwrap(), &params, &Patch::Apply(&*d)).await.unwrap();
            }
            Manifest::Experiment(e) => {
                let api: Api<Experiment> = Api::namespaced(client.clone(), &namespace());
                api.patch(e.metadata.name.as_deref().unwrap(), &params, &Patch::Apply(&*e)).await.unwrap();
            }
        }
    }
}

/// Polls until `check` sees the condition it wants, or fails after `limit`.
async fn wait_for<K, F>(api: &Api<K>, name: &str, limit: Duration, check: F)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    F: Fn(&K) -> bool,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        let object = api.get(name).await.unwrap();
        if check(&object) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} did not reach the expected condition: {object:?}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test]
async fn an_experiment_names_the_dataset_it_waits_for_and_an_unreachable_source_fails() {
    let Some(client) = cluster().await else { return };
    apply_all(&client).await;
    let experiments: Api<Experiment> = Api::namespaced(client.clone(), &namespace());
    wait_for(&experiments, "e2e-waits", Duration::from_secs(60), |e| {
        let conditions = e.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
        find_condition(conditions, types::RUNNING)
            .is_some_and(|c| c.reason == "WaitingForDataset" && c.message.contains("e2e-never-created"))
    })
    .await;
    let datasets: Api<Dataset> = Api::namespaced(client.clone(), &namespace());
    wait_for(&datasets, "e2e-missing-source", Duration::from_secs(600), |d| {
        let conditions = d.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
        find_condition(conditions, types::READY)
            .is_some_and(|c| c.status == "False" && c.reason == "SourceUnreachable")
    })
    .await;
    experiments.delete("e2e-waits", &DeleteParams::default()).await.unwrap();
    datasets.delete("e2e-missing-source", &DeleteParams::default()).await.unwrap();
}
