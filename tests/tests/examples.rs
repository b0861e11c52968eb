//! Every Ocellus manifest under examples/ is one the API server would accept, as generated from
//! the types; the serving examples run `ocellus serve` with flags it accepts and hang together.

use std::path::{Path, PathBuf};
use std::process::Command;

use ocellus_tests::{ocellus_binary, repo_root};
use serde_json::Value;

/// The Kubernetes and KServe objects around `ocellus serve`, not Ocellus manifests; checked
/// below, and the Deployment is deployed on the dev cluster by tests/tests/cluster_e2e.rs.
const SERVING: &str = "serving";

fn example_files() -> Vec<PathBuf> {
    let root = repo_root().join("examples");
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().unwrap() != SERVING {
                    dirs.push(path);
                }
            } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_example_validates_against_the_generated_crds() {
    let files = example_files();
    assert!(files.len() >= 2, "examples/ lost its manifests: {files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        if let Err(error) = ocellus_crds::parse_manifests(&text) {
            panic!("{}: {error}", file.display());
        }
    }
}

#[test]
fn every_experiment_refers_to_datasets_that_the_examples_define() {
    use ocellus_crds::Manifest;
    let manifests: Vec<Manifest> = example_files()
        .iter()
        .flat_map(|file| ocellus_crds::parse_manifests(&std::fs::read_to_string(file).unwrap()).unwrap())
        .collect();
    let datasets: Vec<&str> =
        manifests.iter().filter(|m| matches!(m, Manifest::Dataset(_))).map(Manifest::name).collect();
    for manifest in &manifests {
        let referenced = match manifest {
            Manifest::Experiment(e) => {
                let mut refs = vec![e.spec.dataset_ref.name.as_str()];
                refs.extend(e.spec.test_dataset_ref.as_ref().map(|r| r.name.as_str()));
                refs
            }
            Manifest::Dataset(d) => d.spec.source.split.iter().map(|s| s.dataset_ref.name.as_str()).collect(),
        };
        for name in referenced {
            assert!(
                datasets.contains(&name),
                "{} {} refers to undefined Dataset {name}",
                manifest.kind(),
                manifest.name()
            );
        }
    }
}

/// Every document of the serving examples, by kind.
fn serving_objects() -> Vec<Value> {
    let mut objects = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("examples").join(SERVING)).unwrap() {
        let path = entry.unwrap().path();
        // The folder also holds the client script; only the manifests are Kubernetes objects.
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            objects.push(<Value as serde::Deserialize>::deserialize(document).unwrap());
        }
    }
    objects
}

fn one<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind} in examples/serving");
    found[0]
}

/// The container's `ocellus serve` arguments as a local run takes them: a bundle folder that is
/// not one, a free loopback port. Exiting with the missing-bundle message proves that every flag
/// parsed (an unknown one stops clap before anything is loaded).
fn serve_accepts(container: &Value, model_name: &str, missing_bundle: &Path) {
    assert_eq!(container["command"], serde_json::json!(["ocellus"]), "{container}");
    let mut args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().replace("{{.Name}}", model_name))
        .collect();
    assert_eq!(args[0], "serve", "{args:?}");
    for (flag, value) in
        [("--address", "127.0.0.1:0".to_owned()), ("--bundle", missing_bundle.display().to_string())]
    {
        if let Some(at) = args.iter().position(|a| a == flag) {
            args[at + 1] = value;
        }
    }
    let output =
        Command::new(ocellus_binary()).args(&args).env("OCELLUS_BUNDLE", missing_bundle).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("is not a scoring bundle"),
        "ocellus {args:?}: {stderr}"
    );
}

#[test]
fn the_serving_examples_run_ocellus_serve_with_flags_it_accepts() {
    let objects = serving_objects();
    let missing = tempfile::tempdir().unwrap();

    // Without KServe: the Deployment's probes and Service point at the container's port.
    let deployment = one(&objects, "Deployment");
    let pod = &deployment["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    let port_name = container["ports"][0]["name"].as_str().unwrap();
    assert_eq!(
        container["readinessProbe"]["httpGet"],
        serde_json::json!({"path": "/v2/health/ready", "port": port_name})
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"],
        serde_json::json!({"path": "/v2/health/live", "port": port_name})
    );
    let env: Vec<&str> =
        container["env"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    for name in ["OCELLUS_BUNDLE", "OCELLUS_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert!(env.contains(&name), "the Deployment sets no {name}");
    }
    let service = one(&objects, "Service");
    assert_eq!(service["spec"]["selector"], pod["metadata"]["labels"]);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], port_name);
    serve_accepts(container, "unused", missing.path());

    // KServe: the InferenceService selects the runtime by its model format and protocol.
    let runtime = one(&objects, "ServingRuntime");
    let service = one(&objects, "InferenceService");
    let model = &service["spec"]["predictor"]["model"];
    assert_eq!(model["runtime"], runtime["metadata"]["name"]);
    let formats = runtime["spec"]["supportedModelFormats"].as_array().unwrap();
    assert!(formats.iter().any(|f| f["name"] == model["modelFormat"]["name"]), "{formats:?}");
    assert!(runtime["spec"]["protocolVersions"].as_array().unwrap().contains(&model["protocolVersion"]));
    assert!(model["storageUri"].as_str().unwrap().starts_with("s3://"));
    let account = one(&objects, "ServiceAccount");
    assert_eq!(service["spec"]["predictor"]["serviceAccountName"], account["metadata"]["name"]);
    let secret = one(&objects, "Secret");
    assert_eq!(account["secrets"][0]["name"], secret["metadata"]["name"]);
    let container = &runtime["spec"]["containers"][0];
    assert_eq!(container["name"], "kserve-container", "KServe injects the model into this container");
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(
        args.windows(2).any(|w| w == ["--bundle", "/mnt/models"]),
        "KServe downloads the model to /mnt/models"
    );
    serve_accepts(container, service["metadata"]["name"].as_str().unwrap(), missing.path());
}
