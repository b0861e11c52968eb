//! The chart's alerts and dashboard against a real Prometheus (Debian's `prometheus` and
//! `promtool`): `promtool check rules` and `promtool test rules` on the rendered PrometheusRule
//! with series written here, and, on the dev cluster, a Prometheus that scrapes the running
//! operator, against which every dashboard query must evaluate and the core panels return
//! series. Without the binaries or the cluster the tests say SKIPPED, unless
//! `OCELLUS_REQUIRE_CLUSTER=1` makes that a failure.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ocellus_tests::{dev_cluster_env, repo_root};
use serde_json::Value;

fn required() -> bool {
    std::env::var("OCELLUS_REQUIRE_CLUSTER").as_deref() == Ok("1")
}

fn skip(why: String) {
    assert!(!required(), "{why}");
    println!("SKIPPED: {why}");
}

fn binary(path: PathBuf, install: &str) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path);
    }
    skip(format!("{} is missing; {install}", path.display()));
    None
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// The `spec` of the chart's PrometheusRule (its `groups`), as a Prometheus rule file.
fn rendered_rules(helm: &Path) -> String {
    let output = Command::new(helm)
        .args(["template", "ocellus", repo_root().join("charts/ocellus").to_str().unwrap()])
        .args([
            "--set",
            "artifacts.location=s3://bucket/runs",
            "--set",
            "monitoring.prometheusRule.enabled=true",
        ])
        .args(["--set", "monitoring.prometheusRule.reconcileErrorsFor=10m"])
        .args(["--show-only", "templates/prometheusrule.yaml"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let rule: serde_yaml::Value = serde_yaml::from_slice(&output.stdout).unwrap();
    serde_yaml::to_string(&rule["spec"]).unwrap()
}

/// Each alert fires on the series that should fire it, and not before its `for:`.
const RULE_TESTS: &str = r#"
rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'ocellus_objects{kind="Experiment",condition="Failed"}'
        values: '0 0 1 1'
      - series: 'ocellus_objects{kind="Experiment",condition="ProgressStalled"}'
        values: '1x10'
      - series: 'ocellus_objects{kind="Experiment",condition="Succeeded"}'
        values: '3x10'
      - series: 'ocellus_reconcile_errors_total{controller="experiment",kind="kube"}'
        values: '0+1x20'
    alert_rule_test:
      - eval_time: 1m
        alertname: OcellusExperimentFailed
        exp_alerts: []
      - eval_time: 3m
        alertname: OcellusExperimentFailed
        exp_alerts:
          - exp_labels: {severity: warning}
            exp_annotations:
              summary: An Ocellus Experiment failed.
              description: "At least one Experiment has the condition Failed. `kubectl get experiments -A` shows which; the condition's reason and message say what to fix (see the operator guide)."
      - eval_time: 3m
        alertname: OcellusExperimentProgressStalled
        exp_alerts: []
      - eval_time: 6m
        alertname: OcellusExperimentProgressStalled
        exp_alerts:
          - exp_labels: {severity: warning}
            exp_annotations:
              summary: An Ocellus trainer stopped reporting progress.
              description: "At least one running Experiment sent no progress report for longer than operator.progressTimeoutSeconds. Check its trainer pod's logs and the node's GPU."
      - eval_time: 8m
        alertname: OcellusReconcileErrors
        exp_alerts: []
      - eval_time: 16m
        alertname: OcellusReconcileErrors
        exp_alerts:
          - exp_labels: {severity: warning}
            exp_annotations:
              summary: The Ocellus operator keeps failing to reconcile.
              description: "Reconcile errors have not stopped for 10m. The operator's logs (`kubectl logs deploy/ocellus-operator`) name the object and the error."
"#;

#[test]
fn promtool_checks_and_tests_the_charts_alerts() {
    let Some(helm) = binary(repo_root().join(".tools/bin/helm"), "run `make cluster-tools`") else { return };
    let Some(promtool) = binary(PathBuf::from("/usr/bin/promtool"), "apt-get install prometheus") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), rendered_rules(&helm)).unwrap();
    std::fs::write(dir.path().join("tests.yaml"), RULE_TESTS).unwrap();
    let check = Command::new(&promtool)
        .args(["check", "rules", "rules.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(check.status.success(), "promtool check rules: {}", text(&check));
    let test = Command::new(&promtool)
        .args(["test", "rules", "tests.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(test.status.success(), "promtool test rules: {}", text(&test));
}

/// A Prometheus server scraping the operator every second; killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(binary: &Path, target: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n  - job_name: ocellus-operator\n    static_configs: [{{targets: ['{target}']}}]\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self { child, url: format!("http://127.0.0.1:{port}"), _dir: dir }
    }

    fn query(&self, expr: &str) -> Value {
        let output = Command::new("curl")
            .args(["-s", "--get", "--data-urlencode", &format!("query={expr}")])
            .arg(format!("{}/api/v1/query", self.url))
            .output()
            .unwrap();
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
    }

    fn result(&self, expr: &str) -> Vec<Value> {
        let answer = self.query(expr);
        assert_eq!(answer["status"], "success", "{expr}: {answer}");
        answer["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

/// Every `expr` of the Grafana dashboard, with its panel's title.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = repo_root().join("charts/ocellus/dashboards/ocellus.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                queries.push((panel["title"].as_str().unwrap_or_default().to_owned(), expr.to_owned()));
            }
        }
    }
    queries
}

#[test]
fn the_dashboard_queries_evaluate_against_a_prometheus_scraping_the_live_operator() {
    let Some(prometheus) = binary(PathBuf::from("/usr/bin/prometheus"), "apt-get install prometheus") else {
        return;
    };
    let Some(env) = dev_cluster_env() else { return };
    let (kubeconfig, namespace) = (env["KUBECONFIG"].clone(), env["OCELLUS_DEMO_NAMESPACE"].clone());
    // An object for the operator to reconcile, so its metrics have series whatever ran before.
    let kubectl = repo_root().join(".tools/bin/kubectl");
    let manifest = "apiVersion: ocellus.dev/v1alpha1\nkind: Experiment\nmetadata: {name: metrics-probe}\nspec:\n  \
                    datasetRef: {name: not-there}\n  target: label\n";
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), manifest).unwrap();
    let apply = Command::new(&kubectl)
        .args(["-n", &namespace, "apply", "-f", file.path().to_str().unwrap()])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    assert!(apply.status.success(), "{}", text(&apply));

    // The operator's metrics port on the process node (its pod listens on the host's 8080).
    let server = Prometheus::start(&prometheus, "127.0.0.1:8080");
    let started = Instant::now();
    loop {
        let up = server.query("up{job=\"ocellus-operator\"}");
        let series = server.query("ocellus_objects{kind=\"Experiment\"}");
        let ready = up["data"]["result"][0]["value"][1] == "1"
            && series["data"]["result"].as_array().is_some_and(|r| !r.is_empty());
        // rate() over [5m] needs two samples: a few scrapes past the first.
        if ready && started.elapsed() > Duration::from_secs(8) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "Prometheus never scraped the operator: {up}");
        std::thread::sleep(Duration::from_millis(500));
    }
    for (title, expr) in dashboard_queries() {
        let result = server.result(&expr);
        let core = ["Experiments by condition", "Reconciliations and errors", "Reconcile latency"];
        if core.contains(&title.as_str()) && !expr.contains("errors") {
            assert!(
                !result.is_empty(),
                "panel {title:?} has no series after the operator reconciled: {expr}"
            );
        }
    }
    let _ = Command::new(&kubectl)
        .args(["-n", &namespace, "delete", "experiment", "metrics-probe", "--wait=false"])
        .env("KUBECONFIG", &kubeconfig)
        .output();
}
