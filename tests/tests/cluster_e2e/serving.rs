//! `examples/serving/deployment.yaml` on the real control plane: a bundle trained by
//! `ocellus run --out s3://…` into the dev store, the example's Deployment and Service applied
//! with only the cluster's names put in (store endpoint and Secret, bundle URI, a free port,
//! small requests), its pod run by the process node until its readiness probe passes, then the
//! v2 protocol on the pod's port answering the stored test rows as the run's predictions.csv,
//! and a `kubectl delete` whose SIGTERM the server answers with a clean stop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use super::faults::wait_for;
use super::{Cluster, text, walk};
use ocellus_tests::{ocellus_binary, repo_root};

const NAME: &str = "photo-prices";

/// POST `body` to `127.0.0.1:port` `path`; the status code and the body.
fn post(port: u16, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.split(' ').nth(1).unwrap().parse().unwrap(), body.to_owned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The example's Deployment and Service, with the dev cluster's store and a port of its own.
fn manifests(cluster: &Cluster, bundle: &str, port: u16) -> String {
    let text = std::fs::read_to_string(repo_root().join("examples/serving/deployment.yaml")).unwrap();
    let mut objects: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).unwrap())
        .collect();
    let deployment = objects.iter_mut().find(|o| o["kind"] == "Deployment").unwrap();
    deployment["spec"]["replicas"] = json!(1);
    let container = &mut deployment["spec"]["template"]["spec"]["containers"][0];
    // Every pod of the process node shares the host's loopback: the port must be free.
    for arg in container["args"].as_array_mut().unwrap() {
        if arg == "0.0.0.0:8080" {
            *arg = json!(format!("0.0.0.0:{port}"));
        }
    }
    container["ports"][0]["containerPort"] = json!(port);
    // Two cores are shared with the tutorial's trainer pods.
    container["resources"] = json!({"requests": {"cpu": "100m", "memory": "256Mi"}});
    for variable in container["env"].as_array_mut().unwrap() {
        match variable["name"].as_str().unwrap() {
            "OCELLUS_BUNDLE" => variable["value"] = json!(bundle),
            "OCELLUS_S3_ENDPOINT" => variable["value"] = json!(cluster.var("OCELLUS_S3_ENDPOINT")),
            "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => {
                variable["valueFrom"]["secretKeyRef"]["name"] = json!("ocellus-store");
            }
            _ => {}
        }
    }
    objects.iter().map(|o| serde_json::to_string(o).unwrap()).collect::<Vec<_>>().join("\n---\n")
}

/// The first rows of the stored test set as a v2 request, images as base64 of their files.
fn request(dataset: &Path, rows: usize) -> Value {
    let table = std::fs::read_to_string(dataset.join("table.jsonl")).unwrap();
    let rows: Vec<Value> = table.lines().take(rows).map(|l| serde_json::from_str(l).unwrap()).collect();
    let column = |name: &str, datatype: &str, image: bool| {
        let data: Vec<Value> = rows
            .iter()
            .map(|row| match &row[name] {
                Value::String(path) if image => json!(
                    base64::engine::general_purpose::STANDARD
                        .encode(std::fs::read(dataset.join(path)).unwrap())
                ),
                other => other.clone(),
            })
            .collect();
        json!({"name": name, "datatype": datatype, "shape": [data.len()], "data": data})
    };
    json!({"inputs": [
        column("photo", "BYTES", true),
        column("mileage", "FP64", false),
        column("color", "BYTES", false),
        column("description", "BYTES", false),
    ]})
}

pub fn the_deployment_example_serves_a_stored_bundle(cluster: &Cluster) {
    let home = tempfile::tempdir().unwrap();
    let location = format!("s3://ocellus/serving-e2e/{NAME}");
    let run = Command::new(ocellus_binary())
        .args(["run", "examples/local/photo-prices.yaml", "--out", &location, "--gbm-seconds", "5", "--cpu"])
        .current_dir(repo_root())
        .envs(cluster.env.iter().filter(|(k, _)| k.starts_with("AWS_") || k.starts_with("OCELLUS_S3")))
        .env("OCELLUS_BACKBONES", repo_root().join("backbones"))
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text(&run));

    let port = free_port();
    cluster.apply(&manifests(cluster, &format!("{location}/scoring"), port));
    let deployment = wait_for(Duration::from_secs(240), "the serving Deployment to be available", || {
        let deployment = cluster.get("deployment", NAME);
        (deployment["status"]["availableReplicas"] == 1).then_some(deployment)
    });
    assert_eq!(deployment["status"]["readyReplicas"], 1);

    let stored = cluster.store_path(&location);
    let written: Vec<f64> = std::fs::read_to_string(stored.join("predictions.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.parse().unwrap())
        .collect();
    let rows = 5;
    let (code, body) = post(
        port,
        &format!("/v2/models/{NAME}/infer"),
        &request(&stored.join("datasets/photo-prices-test"), rows).to_string(),
    );
    assert_eq!(code, 200, "{body}");
    let response: Value = serde_json::from_str(&body).unwrap();
    let served = response["outputs"][0]["data"].as_array().unwrap();
    assert_eq!(served.len(), rows);
    for (row, (served, written)) in served.iter().zip(&written).enumerate() {
        let served = served.as_f64().unwrap();
        assert!(
            (served - written).abs() <= 1e-6 * written.abs().max(1.0),
            "row {row}: {served} vs {written}"
        );
    }

    // Deleting the Deployment stops the pod with SIGTERM; the server's log (the process node
    // keeps it in the pod's folder) says it loaded the bundle and stopped cleanly.
    let pod = cluster.ok(&["get", "pods", "-l", "app.kubernetes.io/instance=photo-prices", "-o", "name"]);
    let pod = pod.trim().strip_prefix("pod/").unwrap().to_owned();
    cluster.ok(&["delete", "deployment", NAME, "--wait=false"]);
    wait_for(Duration::from_secs(90), "the serving pod to go", || {
        let left =
            cluster.ok(&["get", "pods", "-l", "app.kubernetes.io/instance=photo-prices", "-o", "name"]);
        left.trim().is_empty().then_some(())
    });
    let folder = format!("{}_{pod}_", cluster.namespace);
    let log = walk(&Path::new(cluster.var("OCELLUS_NODE_STATE_DIR")).join("pods"))
        .into_iter()
        .find(|p| p.ends_with("serve.log") && p.to_string_lossy().contains(&folder))
        .unwrap_or_else(|| panic!("no serve.log of {pod}"));
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains(&format!("model \"{NAME}\" ready")), "{log}");
    assert!(log.trim_end().ends_with("stopped"), "no graceful stop on SIGTERM: {log}");
    cluster.ok(&["delete", "service", NAME]);
}
