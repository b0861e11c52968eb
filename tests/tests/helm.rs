//! The chart through the real `helm` (built into .tools/bin by `make cluster-tools`):
//! `helm lint --strict`, `helm template` of the default values and of a GPU + Kueue + S3 +
//! monitoring value set, and, when the dev cluster is up, the rendered objects accepted by the
//! real API server (`kubectl apply --dry-run=server`). Without helm the tests say SKIPPED, unless
//! `OCELLUS_REQUIRE_CLUSTER=1` makes a missing binary a failure.

use std::path::PathBuf;
use std::process::{Command, Output};

use ocellus_tests::{dev_cluster_env, repo_root};
use serde_json::Value;

fn tool(name: &str) -> Option<PathBuf> {
    let path = repo_root().join(".tools/bin").join(name);
    if path.is_file() {
        return Some(path);
    }
    let why = format!("{} is missing; run `make cluster-tools`", path.display());
    assert!(std::env::var("OCELLUS_REQUIRE_CLUSTER").as_deref() != Ok("1"), "{why}");
    println!("SKIPPED: {why}");
    None
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// A value set with everything optional turned on.
const FULL_VALUES: &[&str] = &[
    "artifacts.location=s3://ocellus-artifacts/runs",
    "artifacts.s3Endpoint=http://minio.storage:9000",
    "artifacts.credentialsSecret=ocellus-store",
    "backbones.location=s3://ocellus-artifacts/backbones",
    "trainer.gpuResource=amd.com/gpu",
    "trainer.namespaces={ml,vision}",
    "trainer.imagePullSecrets={regcred}",
    "monitoring.serviceMonitor.enabled=true",
    "monitoring.prometheusRule.enabled=true",
];

fn render(helm: &PathBuf, values: &[&str]) -> Vec<Value> {
    let mut command = Command::new(helm);
    command.args(["template", "ocellus", repo_root().join("charts/ocellus").to_str().unwrap()]);
    command.args(["--namespace", "ocellus-system"]);
    for value in values {
        command.args(["--set", value]);
    }
    let output = command.output().unwrap();
    assert!(output.status.success(), "helm template {values:?}: {}", text(&output));
    let rendered = String::from_utf8(output.stdout).unwrap();
    rendered
        .split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<Value>(doc).ok())
        .filter(|doc| !doc.is_null())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects.iter().find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn env(deployment: &Value, name: &str) -> Option<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .map(|e| e["value"].as_str().unwrap_or_default().to_owned())
}

#[test]
fn helm_lint_strict_passes_for_the_default_and_the_full_value_sets() {
    let Some(helm) = tool("helm") else { return };
    let chart = repo_root().join("charts/ocellus");
    for values in [&["artifacts.location=s3://bucket/runs"][..], FULL_VALUES] {
        let mut command = Command::new(&helm);
        command.args(["lint", "--strict", chart.to_str().unwrap()]);
        for value in values {
            command.args(["--set", value]);
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "helm lint --strict {values:?}: {}", text(&output));
    }
}

#[test]
fn helm_template_renders_what_each_value_set_asks_for() {
    let Some(helm) = tool("helm") else { return };
    let plain = render(&helm, &["artifacts.location=s3://bucket/runs"]);
    let deployment = find(&plain, "Deployment", "ocellus-operator").expect("the operator Deployment");
    assert_eq!(env(deployment, "OCELLUS_ARTIFACTS").as_deref(), Some("s3://bucket/runs"));
    assert!(find(&plain, "ServiceMonitor", "ocellus-operator").is_none(), "off by default");
    for crd in ["datasets.ocellus.dev", "experiments.ocellus.dev"] {
        let crd = find(&plain, "CustomResourceDefinition", crd).expect("the CRDs are rendered");
        assert_eq!(crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep");
    }

    let full = render(&helm, FULL_VALUES);
    let deployment = find(&full, "Deployment", "ocellus-operator").unwrap();
    assert_eq!(env(deployment, "OCELLUS_GPU_RESOURCE").as_deref(), Some("amd.com/gpu"));
    assert_eq!(env(deployment, "OCELLUS_S3_ENDPOINT").as_deref(), Some("http://minio.storage:9000"));
    assert_eq!(env(deployment, "OCELLUS_BACKBONES").as_deref(), Some("s3://ocellus-artifacts/backbones"));
    assert_eq!(env(deployment, "OCELLUS_TRAINER_PULL_SECRETS").as_deref(), Some("regcred"));
    let env_from = &deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"];
    assert_eq!(
        env_from[0]["secretRef"]["name"], "ocellus-store",
        "the operator reads result.json with the store's keys"
    );
    for namespace in ["ml", "vision", "ocellus-system"] {
        assert!(
            full.iter().any(|o| o["kind"] == "ServiceAccount"
                && o["metadata"]["name"] == "ocellus-trainer"
                && o["metadata"]["namespace"] == namespace),
            "a trainer ServiceAccount in {namespace}"
        );
    }
    assert!(find(&full, "ServiceMonitor", "ocellus-operator").is_some());
    assert!(full.iter().any(|o| o["kind"] == "PrometheusRule"));
}

/// The rendered chart is what the real API server accepts (server-side dry run: schema, defaults,
/// admission), for both value sets. The monitoring.coreos.com kinds need prometheus-operator's
/// CRDs, which the dev cluster does not install, so they are left out of the dry run.
#[test]
fn the_api_server_accepts_every_rendered_object() {
    let Some(helm) = tool("helm") else { return };
    let Some(env) = dev_cluster_env() else { return };
    let kubeconfig = env["KUBECONFIG"].clone();
    let kubectl = repo_root().join(".tools/bin/kubectl");
    for values in [&["artifacts.location=s3://bucket/runs"][..], FULL_VALUES] {
        let objects: Vec<Value> = render(&helm, values)
            .into_iter()
            .filter(|o| !o["apiVersion"].as_str().unwrap_or_default().starts_with("monitoring.coreos.com"))
            .collect();
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects});
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), serde_json::to_string(&list).unwrap()).unwrap();
        let output = Command::new(&kubectl)
            .args(["apply", "--dry-run=server", "--validate=strict", "-f", file.path().to_str().unwrap()])
            .env("KUBECONFIG", &kubeconfig)
            .output()
            .unwrap();
        // Namespaces ml and vision do not exist on the dev cluster: objects there are refused
        // for that reason alone, which the dry run reports as NotFound.
        let refused: Vec<String> = text(&output)
            .lines()
            .filter(|l| {
                l.contains("Error")
                    && !l.contains("namespaces \"ml\" not found")
                    && !l.contains("namespaces \"vision\" not found")
            })
            .map(str::to_owned)
            .collect();
        assert!(refused.is_empty(), "the API server refused {values:?}:\n{}", refused.join("\n"));
    }
}
