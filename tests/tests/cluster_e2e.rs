//! The tutorial from `kubectl apply` to status, on the real control plane that
//! `tests/cluster/dev-cluster.sh up` starts (`make dev-cluster`; `make test` starts it first):
//! kube-apiserver, etcd, controller-manager and scheduler built from Go modules, the chart
//! installed by Helm, the operator and every trainer pod run by the process node, an s3s-fs
//! store. Without that cluster the tests say SKIPPED, unless `OCELLUS_REQUIRE_CLUSTER=1` (as
//! `make test` sets) makes a missing cluster a failure.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ocellus_tests::{dev_cluster_env, ocellus_binary, repo_root};
use serde_json::Value;

#[path = "cluster_e2e/faults.rs"]
mod faults;
#[path = "cluster_e2e/queue.rs"]
mod queue;
#[path = "cluster_e2e/serving.rs"]
mod serving;

/// The dev cluster as its `dev.env` describes it.
struct Cluster {
    env: HashMap<String, String>,
    kubectl: PathBuf,
    namespace: String,
}

impl Cluster {
    fn find() -> Option<Self> {
        let env = dev_cluster_env()?;
        let namespace = env["OCELLUS_DEMO_NAMESPACE"].clone();
        Some(Self { env, kubectl: repo_root().join(".tools/bin/kubectl"), namespace })
    }

    fn var(&self, name: &str) -> &str {
        &self.env[name]
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(&self.kubectl)
            .args(args)
            .env("KUBECONFIG", self.var("KUBECONFIG"))
            .output()
            .expect("kubectl runs")
    }

    /// kubectl in the demo namespace; panics with its output when it fails.
    fn ok(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.namespace.as_str()];
        all.extend_from_slice(args);
        let output = self.kubectl(&all);
        assert!(output.status.success(), "kubectl {}: {}", all.join(" "), text(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn apply(&self, yaml: &str) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), yaml).unwrap();
        self.ok(&["apply", "--validate=strict", "-f", file.path().to_str().unwrap()]);
    }

    fn get(&self, kind: &str, name: &str) -> Value {
        serde_json::from_str(&self.ok(&["get", kind, name, "-o", "json"])).unwrap()
    }

    /// The local folder holding the store's object `s3://bucket/key`.
    fn store_path(&self, uri: &str) -> PathBuf {
        Path::new(self.var("OCELLUS_S3_DATA_DIR")).join(uri.strip_prefix("s3://").expect("an s3:// URI"))
    }

    /// Waits until every Experiment named is Succeeded or Failed; returns them.
    fn wait_finished(&self, names: &[&str], limit: Duration) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let experiments: Vec<Value> = names.iter().map(|n| self.get("experiment", n)).collect();
            if experiments.iter().all(finished) {
                return experiments;
            }
            if started.elapsed() > limit {
                let states: Vec<String> = experiments
                    .iter()
                    .map(|e| format!("{}: {}", e["metadata"]["name"], e["status"]))
                    .collect();
                panic!(
                    "not finished within {limit:?}:\n{}\npods:\n{}",
                    states.join("\n"),
                    self.ok(&["get", "pods", "-o", "wide"])
                );
            }
            std::thread::sleep(Duration::from_secs(3));
        }
    }
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)
}

fn is_true(object: &Value, type_: &str) -> bool {
    condition(object, type_).is_some_and(|c| c["status"] == "True")
}

fn finished(experiment: &Value) -> bool {
    is_true(experiment, "Succeeded") || is_true(experiment, "Failed")
}

/// A zip of a folder's files, as a user would upload it.
fn zip_folder(folder: &Path, archive: &Path) {
    let mut entries: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    let output = Command::new("python3")
        .args(["-m", "zipfile", "-c", archive.to_str().unwrap()])
        .args(&entries)
        .current_dir(folder)
        .output()
        .unwrap();
    assert!(output.status.success(), "zip: {}", text(&output));
}

/// The tutorial in miniature. One test function: the runs are slow, and every assertion below
/// reads the same runs (the cluster's scheduling of four trainer pods on two cores is the cost).
#[test]
fn the_tutorial_from_kubectl_apply_to_status() {
    let Some(cluster) = Cluster::find() else { return };
    let ns = cluster.namespace.clone();
    let sets = repo_root().join("testdata/sets");
    assert!(sets.join("photo-prices/table.csv").is_file(), "run `make testdata` first");

    // The user's data: archives uploaded to the data bucket.
    let data = cluster.store_path(&format!("s3://data/{ns}"));
    std::fs::create_dir_all(&data).unwrap();
    zip_folder(&sets.join("photo-prices"), &data.join("car-deals.zip"));
    zip_folder(&sets.join("digits"), &data.join("digits.zip"));
    // Keys for the data bucket, opted in for Ocellus by the label.
    let keys = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: data-keys\n  labels: {{ocellus.dev/credentials: \"true\"}}\n\
         stringData:\n  AWS_ACCESS_KEY_ID: {}\n  AWS_SECRET_ACCESS_KEY: {}\n",
        cluster.var("AWS_ACCESS_KEY_ID"),
        cluster.var("AWS_SECRET_ACCESS_KEY")
    );
    cluster.apply(&keys);
    let endpoint = cluster.var("OCELLUS_S3_ENDPOINT");
    let s3_source = |key: &str| {
        format!(
            "    s3: {{uri: \"s3://data/{ns}/{key}\", region: us-east-1, endpoint: \"{endpoint}\", \
             credentialsSecretRef: {{name: data-keys}}}}"
        )
    };
    let manifest = format!(
        r#"apiVersion: ocellus.dev/v1alpha1
kind: Dataset
metadata: {{name: car-deals}}
spec:
  source:
{car_deals}
  format: Auto
---
apiVersion: ocellus.dev/v1alpha1
kind: Dataset
metadata: {{name: car-deals-train}}
spec:
  source: {{split: {{datasetRef: {{name: car-deals}}, percent: 75, part: First, seed: 1234}}}}
---
apiVersion: ocellus.dev/v1alpha1
kind: Dataset
metadata: {{name: car-deals-test}}
spec:
  source: {{split: {{datasetRef: {{name: car-deals}}, percent: 75, part: Rest, seed: 1234}}}}
---
apiVersion: ocellus.dev/v1alpha1
kind: Dataset
metadata: {{name: digits}}
spec:
  source:
{digits}
  format: ClassFolders
---
apiVersion: ocellus.dev/v1alpha1
kind: Experiment
metadata: {{name: car-price-embeddings}}
spec:
  datasetRef: {{name: car-deals-train}}
  testDatasetRef: {{name: car-deals-test}}
  target: price
  task: Regression
  scorer: RMSE
  pipeline: Embeddings
  embeddings: {{architectures: [efficientnet_lite0], dimensions: [10]}}
  resources: {{gpus: 0}}
---
apiVersion: ocellus.dev/v1alpha1
kind: Experiment
metadata: {{name: car-price-fine-tuned}}
spec:
  datasetRef: {{name: car-deals-train}}
  testDatasetRef: {{name: car-deals-test}}
  target: price
  task: Regression
  scorer: RMSE
  pipeline: Embeddings
  embeddings:
    architectures: [efficientnet_lite0]
    dimensions: [10]
    fineTune: {{enabled: true, epochs: 1}}
  resources: {{gpus: 0}}
  artifacts: {{deletionPolicy: Delete}}
---
apiVersion: ocellus.dev/v1alpha1
kind: Experiment
metadata: {{name: digits-auto-image}}
spec:
  datasetRef: {{name: digits}}
  target: label
  task: Classification
  pipeline: AutoImage
  autoImage: {{timeBudgetSeconds: 150, maxTrials: 2, architectures: [efficientnet_lite0]}}
  resources: {{gpus: 1}}
"#,
        car_deals = s3_source("car-deals.zip"),
        digits = s3_source("digits.zip"),
    );
    cluster.apply(&manifest);
    let disrupted = faults::disrupt_the_runs(&cluster);
    queue::a_second_gpu_experiment_waits_in_the_kueue_queue_until_the_first_is_done(&cluster);
    let names = ["car-price-embeddings", "car-price-fine-tuned", "digits-auto-image"];
    let experiments = cluster.wait_finished(&names, Duration::from_secs(25 * 60));
    faults::check_after_the_faults(&cluster, &disrupted, &experiments);
    // After the runs, not beside them: its own `ocellus run` would slow the searches the faults
    // time themselves against.
    serving::the_deployment_example_serves_a_stored_bundle(&cluster);

    // Every Dataset is Ready with its profile, at a location in the store.
    for name in ["car-deals", "car-deals-train", "car-deals-test", "digits"] {
        let dataset = cluster.get("dataset", name);
        assert!(is_true(&dataset, "Ready"), "{name}: {}", dataset["status"]);
        let status = &dataset["status"];
        assert!(status["rows"].as_i64().unwrap() > 0 && !status["columns"].as_array().unwrap().is_empty());
        let location = status["location"].as_str().unwrap();
        assert_eq!(location, format!("s3://ocellus/store/datasets/{ns}/{name}"));
    }
    let train = cluster.get("dataset", "car-deals-train")["status"]["rows"].as_i64().unwrap();
    let test = cluster.get("dataset", "car-deals-test")["status"]["rows"].as_i64().unwrap();
    assert_eq!(train + test, 160, "the two parts of the split partition the parent");

    for experiment in &experiments {
        let name = experiment["metadata"]["name"].as_str().unwrap();
        let status = &experiment["status"];
        assert!(is_true(experiment, "Succeeded"), "{name}: {status}");
        assert!(!is_true(experiment, "ProgressStalled"), "{name} stalled in a healthy run: {status}");
        assert!(status["bestModel"]["score"].is_number(), "{name}: {status}");
        assert!(!status["metrics"]["validation"].as_array().unwrap().is_empty(), "{name}: {status}");
        assert!(status["trials"]["total"].as_i64().unwrap() >= 1, "{name}: {status}");
        assert_eq!(status["progress"]["stage"], "Done", "{name}: the final report arrived: {status}");
        let artifacts = &status["artifacts"];
        let location = artifacts["location"].as_str().unwrap();
        assert!(location.starts_with(&format!("s3://ocellus/store/experiments/{ns}/{name}-")), "{artifacts}");
        let report = artifacts["report"].as_str().unwrap();
        assert!(cluster.store_path(report).is_file(), "the report {report} is in the store");
        assert!(cluster.store_path(&format!("{location}/result.json")).is_file());
        // Events tell the story once per state change.
        let events: Value = serde_json::from_str(&cluster.ok(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={name}"),
            "-o",
            "json",
        ]))
        .unwrap();
        let reasons: Vec<&str> = events["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["involvedObject"]["name"] == name || e["regarding"]["name"] == name)
            .filter_map(|e| e["reason"].as_str())
            .collect();
        assert_eq!(reasons.iter().filter(|r| **r == "Succeeded").count(), 1, "{name}: {reasons:?}");
    }
    let embeddings = &experiments[0]["status"];
    assert!(!embeddings["metrics"]["test"].as_array().unwrap().is_empty(), "{embeddings}");
    assert_eq!(embeddings["bestModel"]["embeddingDimension"], 10);
    assert_eq!(experiments[1]["status"]["bestModel"]["epochs"], 1, "fine-tuned for the one epoch asked");
    assert_eq!(experiments[2]["status"]["pipeline"], "AutoImage");

    // Argo CD's view of the live objects: the health scripts, run as Argo CD runs them.
    for experiment in &experiments {
        assert_eq!(
            argocd_health("health-experiment.lua", experiment).0,
            "Healthy",
            "{}",
            experiment["status"]
        );
    }
    for name in ["car-deals", "car-deals-train", "car-deals-test", "digits"] {
        assert_eq!(argocd_health("health-dataset.lua", &cluster.get("dataset", name)).0, "Healthy", "{name}");
    }

    // The printer columns.
    let table = cluster.ok(&["get", "datasets,experiments"]);
    assert!(table.contains("car-price-embeddings") && table.contains("digits"), "{table}");
    assert!(table.contains("Succeeded"), "the last condition shows: {table}");

    // The stored bundle reproduces the stored predictions, read straight from the store.
    let location = embeddings["artifacts"]["location"].as_str().unwrap();
    let stored = std::fs::read_to_string(cluster.store_path(&format!("{location}/predictions.csv"))).unwrap();
    let test_copy = cluster.store_path(&format!("s3://ocellus/store/datasets/{ns}/car-deals-test"));
    let rows = tempfile::tempdir().unwrap();
    let input = rows.path().join("rows.csv");
    write_rows_csv(&test_copy, &input, "price");
    let output_csv = rows.path().join("again.csv");
    let predict = Command::new(ocellus_binary())
        .args(["predict", "--bundle", embeddings["artifacts"]["scoringBundle"].as_str().unwrap()])
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output_csv)
        .envs(cluster.env.iter().filter(|(k, _)| k.starts_with("AWS_") || k.starts_with("OCELLUS_S3")))
        .env("HOME", rows.path())
        .output()
        .unwrap();
    assert!(predict.status.success(), "{}", text(&predict));
    assert_eq!(std::fs::read_to_string(&output_csv).unwrap(), stored, "predict reproduces the run");
    the_store_credentials_appear_nowhere(&cluster);

    // deletionPolicy Delete: the Experiment goes only after its artifacts left the store.
    let fine_tuned = experiments[1]["status"]["artifacts"]["location"].as_str().unwrap().to_owned();
    let folder = cluster.store_path(&fine_tuned);
    assert!(folder.join("result.json").is_file());
    cluster.ok(&["delete", "experiment", "car-price-fine-tuned", "--timeout=180s"]);
    let left: Vec<_> = walk(&folder);
    assert!(left.is_empty(), "the cleanup left {left:?} in {}", folder.display());
    // Retain (the default): the other runs' folders stay after their Experiments go.
    cluster.ok(&["delete", "experiment", "car-price-embeddings", "--timeout=60s"]);
    assert!(cluster.store_path(&format!("{location}/result.json")).is_file(), "Retain keeps the artifacts");

    let embeddings_manifest =
        manifest.split("---\n").find(|doc| doc.contains("name: car-price-embeddings}")).unwrap().to_owned();
    faults::a_recreated_experiment_runs_afresh(&cluster, &embeddings_manifest, location);
    faults::a_namespace_deleted_with_a_running_experiment_goes(&cluster);

    helm_upgrade_rolls_the_operator_and_uninstall_keeps_the_crds(&cluster);
}

/// The store's keys, given to the chart in a Secret, are in no status, Event, Job, Pod or
/// ConfigMap, and in no pod's log (the operator's and every trainer's).
fn the_store_credentials_appear_nowhere(cluster: &Cluster) {
    let secrets = [cluster.var("AWS_ACCESS_KEY_ID"), cluster.var("AWS_SECRET_ACCESS_KEY")];
    let kinds = "datasets,experiments,jobs,pods,events,configmaps,services,deployments";
    let objects = cluster.kubectl(&["get", kinds, "-A", "-o", "json"]);
    assert!(objects.status.success(), "{}", text(&objects));
    let mut places =
        vec![("the API objects".to_owned(), String::from_utf8_lossy(&objects.stdout).into_owned())];
    let pods = Path::new(cluster.var("OCELLUS_NODE_STATE_DIR")).join("pods");
    let logs: Vec<PathBuf> =
        walk(&pods).into_iter().filter(|p| p.extension().is_some_and(|e| e == "log")).collect();
    assert!(logs.iter().any(|p| p.ends_with("operator.log")), "the operator's log is among {logs:?}");
    places.extend(
        logs.iter().map(|p| (p.display().to_string(), std::fs::read_to_string(p).unwrap_or_default())),
    );
    for secret in secrets {
        for (place, content) in &places {
            assert!(!content.contains(secret), "a store key is in {place}");
        }
    }
}

/// `helm upgrade` of one value rolls the operator; `helm uninstall` leaves the CRDs and the
/// objects, as the operator guide says; the chart is then installed again for the tests after.
fn helm_upgrade_rolls_the_operator_and_uninstall_keeps_the_crds(cluster: &Cluster) {
    let release_ns = cluster.var("OCELLUS_RELEASE_NAMESPACE").to_owned();
    let helm = |args: &[&str]| {
        let output = Command::new(repo_root().join(".tools/bin/helm"))
            .args(args)
            .args(["--namespace", &release_ns])
            .env("KUBECONFIG", cluster.var("KUBECONFIG"))
            .output()
            .unwrap();
        assert!(output.status.success(), "helm {args:?}: {}", text(&output));
    };
    let operator_pods = || {
        let output = cluster.kubectl(&[
            "-n",
            &release_ns,
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=ocellus",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.phase}{\"\\n\"}{end}",
        ]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let before = operator_pods();
    helm(&[
        "upgrade",
        "ocellus",
        repo_root().join("charts/ocellus").to_str().unwrap(),
        "--reuse-values",
        "--set",
        "operator.progressTimeoutSeconds=301",
        "--wait",
        "--timeout",
        "3m",
    ]);
    let deployment: Value = serde_json::from_slice(
        &cluster.kubectl(&["-n", &release_ns, "get", "deployment", "ocellus-operator", "-o", "json"]).stdout,
    )
    .unwrap();
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap();
    assert!(
        env.iter().any(|e| e["name"] == "OCELLUS_PROGRESS_TIMEOUT_SECONDS" && e["value"] == "301"),
        "the upgrade changed the value"
    );
    let started = Instant::now();
    loop {
        let after = operator_pods();
        let running: Vec<&str> =
            after.lines().filter(|l| l.ends_with(" Running")).map(|l| l.split(' ').next().unwrap()).collect();
        if running.len() == 1 && !before.contains(running[0]) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the operator did not roll: before {before}, now {after}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    helm(&["uninstall", "ocellus", "--wait", "--timeout", "2m"]);
    for crd in ["datasets.ocellus.dev", "experiments.ocellus.dev"] {
        let output = cluster.kubectl(&["get", "crd", crd]);
        assert!(output.status.success(), "helm uninstall removed {crd}: {}", text(&output));
    }
    cluster.ok(&["get", "experiment", "digits-auto-image"]);
    let output = Command::new("bash")
        .arg(repo_root().join("tests/cluster/dev-cluster.sh"))
        .arg("up")
        .output()
        .unwrap();
    assert!(output.status.success(), "installing the chart again: {}", text(&output));
}

/// Every file under `folder` (none when it does not exist).
fn walk(folder: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![folder.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() { pending.push(path) } else { files.push(path) }
        }
    }
    files
}

/// The rows of a normalized copy (`table.jsonl`, images relative to it) as a CSV with absolute
/// image paths and without the target.
fn write_rows_csv(dataset: &Path, csv: &Path, target: &str) {
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dataset.join("dataset.json")).unwrap()).unwrap();
    let columns: Vec<(String, String)> = meta["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_owned(), c["type"].as_str().unwrap().to_owned()))
        .filter(|(name, _)| name != target)
        .collect();
    let mut out = csv::Writer::from_path(csv).unwrap();
    out.write_record(columns.iter().map(|(n, _)| n)).unwrap();
    for line in std::fs::read_to_string(dataset.join("table.jsonl")).unwrap().lines() {
        let row: Value = serde_json::from_str(line).unwrap();
        let cells: Vec<String> = columns
            .iter()
            .map(|(name, type_)| match (&row[name], type_.as_str()) {
                (Value::Null, _) => String::new(),
                (Value::String(path), "Image") => dataset.join(path).display().to_string(),
                (Value::String(s), _) => s.clone(),
                (other, _) => other.to_string(),
            })
            .collect();
        out.write_record(&cells).unwrap();
    }
    out.flush().unwrap();
}

/// The status server's CA, from the Secret the operator made in its namespace.
fn status_ca(cluster: &Cluster, into: &Path) {
    let release = cluster.var("OCELLUS_RELEASE_NAMESPACE");
    let template = r#"go-template={{index .data "ca.crt" | base64decode}}"#;
    let output = cluster.kubectl(&["-n", release, "get", "secret", "ocellus-status-tls", "-o", template]);
    assert!(output.status.success(), "{}", text(&output));
    let pem = output.stdout;
    assert!(pem.starts_with(b"-----BEGIN CERTIFICATE-----"), "{}", String::from_utf8_lossy(&pem));
    std::fs::write(into, pem).unwrap();
}

/// `curl` POST of a report to the operator's status server over TLS, by the Service's name as
/// pods dial it (the process node serves it on 127.0.0.1:8081); returns the HTTP status code.
fn post_report(cluster: &Cluster, ca: &Path, path: &str, token: Option<&str>, body: &str) -> u16 {
    let host = format!("ocellus-operator.{}.svc", cluster.var("OCELLUS_RELEASE_NAMESPACE"));
    let mut command = Command::new("curl");
    command.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"]);
    command.arg("--cacert").arg(ca).args(["--resolve", &format!("{host}:8081:127.0.0.1")]);
    command.args(["-H", "Content-Type: application/json", "--data-binary", "@-"]);
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let mut child = command
        .arg(format!("https://{host}:8081{path}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("curl runs");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or(0)
}

/// What the trainer may do against the real API server (nothing), and the status server's
/// answers to forged reports: no token, a real ServiceAccount token of the namespace minted for
/// the Experiment's audience but bound to no pod of its Job, a token for another audience, an
/// oversized and a malformed body.
#[test]
fn trainers_get_no_api_rights_and_forged_reports_are_refused() {
    let Some(cluster) = Cluster::find() else { return };
    let ns = cluster.namespace.clone();
    let trainer = format!("system:serviceaccount:{ns}:ocellus-trainer");
    let rights = cluster.ok(&["auth", "can-i", "--list", "--as", &trainer]);
    assert!(
        !rights.contains("ocellus.dev"),
        "the trainer's ServiceAccount has rights on ocellus.dev:\n{rights}"
    );
    for (verb, resource) in
        [("get", "experiments.ocellus.dev"), ("patch", "experiments.ocellus.dev/status"), ("list", "secrets")]
    {
        let output = cluster.kubectl(&["-n", &ns, "auth", "can-i", verb, resource, "--as", &trainer]);
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "no", "{verb} {resource}");
    }

    let name = "forged-report-target";
    cluster.apply(&format!(
        "apiVersion: ocellus.dev/v1alpha1\nkind: Experiment\nmetadata: {{name: {name}}}\nspec:\n  \
         datasetRef: {{name: no-such-dataset}}\n  target: label\n  task: Classification\n"
    ));
    let path = format!("/v1/namespaces/{ns}/experiments/{name}/report");
    let ca = tempfile::NamedTempFile::new().unwrap();
    status_ca(&cluster, ca.path());
    // Plain HTTP gets nothing: the server speaks only TLS.
    let plain = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://127.0.0.1:8081{path}")])
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout).trim(), "401", "plain HTTP reached the handler");
    let progress = r#"{"status": {"progress": {"stage": "Trial", "percent": 99}}}"#;
    let mint = |audience: &str| {
        cluster
            .ok(&["create", "token", "ocellus-trainer", "--audience", audience, "--duration", "10m"])
            .trim()
            .to_owned()
    };
    let for_this = mint(&format!("ocellus.dev/experiments/{ns}/{name}"));
    let for_another = mint(&format!("ocellus.dev/experiments/{ns}/some-other"));
    assert_eq!(post_report(&cluster, ca.path(), &path, None, progress), 401, "no token");
    assert_eq!(post_report(&cluster, ca.path(), &path, Some("not-a-token"), progress), 401, "garbage token");
    assert_eq!(
        post_report(&cluster, ca.path(), &path, Some(&for_another), progress),
        403,
        "another audience"
    );
    assert_eq!(
        post_report(&cluster, ca.path(), &path, Some(&for_this), progress),
        403,
        "a token bound to no pod of the Job"
    );
    let oversized =
        format!(r#"{{"status": {{"progress": {{"stage": "{}", "percent": 1}}}}}}"#, "x".repeat(80_000));
    assert_eq!(post_report(&cluster, ca.path(), &path, Some(&for_this), &oversized), 413, "oversized");
    assert_eq!(post_report(&cluster, ca.path(), &path, Some(&for_this), "{not json"), 400, "malformed");
    let experiment = cluster.get("experiment", name);
    assert!(
        experiment["status"]["progress"].is_null(),
        "a refused report reached status: {}",
        experiment["status"]
    );
    // Status stays writable by the operator: it still says what the Experiment waits for.
    let running = condition(&experiment, "Running").cloned().unwrap_or_default();
    assert_eq!(running["reason"], "WaitingForDataset", "{}", experiment["status"]);
    cluster.ok(&["delete", "experiment", name, "--wait=false"]);
}

/// A namespace the chart was not told about has no `ocellus-trainer` ServiceAccount: the Job
/// controller cannot create the pod, and the Dataset says so with the API server's words and the
/// fix, instead of "starting" for a day.
#[test]
fn a_namespace_without_the_trainer_service_account_is_named_in_status() {
    let Some(cluster) = Cluster::find() else { return };
    let ns = "ocellus-not-set-up";
    let output = cluster.kubectl(&["create", "namespace", ns]);
    assert!(output.status.success() || text(&output).contains("AlreadyExists"), "{}", text(&output));
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        "apiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {name: lonely}\nspec:\n  \
         source: {http: {url: \"http://127.0.0.1:9/nothing.zip\"}}\n",
    )
    .unwrap();
    let output = cluster.kubectl(&["-n", ns, "apply", "-f", file.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", text(&output));
    let started = Instant::now();
    let ready = loop {
        let output = cluster.kubectl(&["-n", ns, "get", "dataset", "lonely", "-o", "json"]);
        let dataset: Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        let ready = condition(&dataset, "Ready").cloned().unwrap_or_default();
        if ready["reason"] == "PodCreationRefused" {
            break ready;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "never PodCreationRefused: {}",
            dataset["status"]
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    let message = ready["message"].as_str().unwrap();
    assert!(message.contains("ocellus-trainer") && message.contains("trainer.namespaces"), "{message}");
    let _ = cluster.kubectl(&["delete", "namespace", ns, "--wait=false"]);
}

/// (status, message) of an Argo CD health script (gitops/argocd/) for a live object, run in Lua
/// 5.1 as Argo CD's gopher-lua runs it: the object as the global `obj`.
fn argocd_health(script: &str, object: &Value) -> (String, String) {
    use mlua::LuaSerdeExt;
    let source = std::fs::read_to_string(repo_root().join("gitops/argocd").join(script)).unwrap();
    let lua = mlua::Lua::new();
    let obj = lua.to_value_with(object, mlua::SerializeOptions::new().serialize_none_to_null(false)).unwrap();
    lua.globals().set("obj", obj).unwrap();
    let result: mlua::Table = lua.load(source).set_name(script).eval().unwrap();
    let message: Option<String> = result.get("message").unwrap();
    (result.get("status").unwrap(), message.unwrap_or_default())
}

/// The real API server refuses what the schema and CEL promise to refuse, and `ocellus validate`
/// refuses the same manifests (an immutable field can only be checked against the stored object,
/// so that case is the API server's alone).
#[test]
fn the_api_server_and_ocellus_validate_refuse_the_same_manifests() {
    let Some(cluster) = Cluster::find() else { return };
    let experiment = |name: &str, extra: &str| {
        format!(
            "apiVersion: ocellus.dev/v1alpha1\nkind: Experiment\nmetadata: {{name: {name}}}\nspec:\n  \
             datasetRef: {{name: none-yet}}\n  target: label\n{extra}"
        )
    };
    let cases = [
        ("a bad enum", experiment("api-bad-enum", "  task: Clustering\n")),
        ("an unknown field", experiment("api-unknown-field", "  task: Classification\n  targt: label\n")),
        (
            "parallelTrials > maxTrials",
            experiment(
                "api-parallel",
                "  task: Classification\n  pipeline: AutoImage\n  autoImage: {maxTrials: 2, parallelTrials: 4}\n",
            ),
        ),
        ("a scorer of the other task", experiment("api-scorer", "  task: Regression\n  scorer: AUC\n")),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (what, yaml) in &cases {
        let file = dir.path().join("case.yaml");
        std::fs::write(&file, yaml).unwrap();
        let file = file.to_str().unwrap();
        let server = cluster.kubectl(&[
            "-n",
            &cluster.namespace,
            "apply",
            "--validate=strict",
            "--dry-run=server",
            "-f",
            file,
        ]);
        assert!(!server.status.success(), "the API server accepted {what}:\n{yaml}");
        let local = Command::new(ocellus_binary()).args(["validate", file]).output().unwrap();
        assert!(
            !local.status.success(),
            "ocellus validate accepted {what} (the API server said: {})",
            text(&server)
        );
    }
    let valid = experiment("api-valid", "  task: Classification\n");
    let file = dir.path().join("valid.yaml");
    std::fs::write(&file, &valid).unwrap();
    let local = Command::new(ocellus_binary()).args(["validate", file.to_str().unwrap()]).output().unwrap();
    assert!(local.status.success(), "{}", text(&local));
    cluster.apply(&valid);
    // An immutable field: the stored object decides.
    let changed = valid.replace("target: label", "target: price");
    std::fs::write(&file, &changed).unwrap();
    let output = cluster.kubectl(&["-n", &cluster.namespace, "apply", "-f", file.to_str().unwrap()]);
    assert!(!output.status.success(), "target changed in place");
    assert!(text(&output).contains("target is immutable"), "{}", text(&output));
    cluster.ok(&["delete", "experiment", "api-valid", "--wait=false"]);
}
