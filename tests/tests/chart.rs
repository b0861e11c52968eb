//! The Helm chart, checked without a helm binary (none can be installed here): CRD templates in
//! sync with crds/, values against their schema, every value documented and used, every template
//! well-formed YAML once its `{{ }}` actions are blanked, RBAC equal to operator/rbac-rules.yaml,
//! the Deployment setting exactly the environment the operator reads, and the dashboard and alerts
//! using exactly the metrics the operator exports.

use std::collections::BTreeSet;
use std::path::PathBuf;

use ocellus_tests::{chart_crds, repo_root};
use serde_json::Value;

fn chart_dir() -> PathBuf {
    repo_root().join("charts/ocellus")
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn values() -> Value {
    yaml(&read(chart_dir().join("values.yaml")))
}

fn schema() -> Value {
    serde_json::from_str(&read(chart_dir().join("values.schema.json"))).unwrap()
}

fn templates() -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut dirs = vec![chart_dir().join("templates")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let name = path.strip_prefix(chart_dir()).unwrap().display().to_string();
                found.push((name, read(path)));
            }
        }
    }
    found.sort();
    assert!(
        found.len() >= 10,
        "the chart lost templates: {:?}",
        found.iter().map(|t| &t.0).collect::<Vec<_>>()
    );
    found
}

fn yaml_templates() -> Vec<(String, String)> {
    templates().into_iter().filter(|(name, _)| name.ends_with(".yaml")).collect()
}

/// The template with its actions blanked: a line that holds only actions is dropped (control flow,
/// `include ... | nindent`), an action inside a line becomes `TEMPLATED`. What remains is the
/// YAML skeleton every rendering shares; it must parse.
fn skeleton(template: &str) -> String {
    let mut out = String::new();
    let mut in_multiline_action = false;
    for line in template.lines() {
        if in_multiline_action {
            in_multiline_action = !line.contains("}}");
            continue;
        }
        let trimmed = line.trim();
        if trimmed.starts_with("{{") && !trimmed.contains("}}") {
            in_multiline_action = true;
            continue;
        }
        let mut rest = line;
        let mut kept = String::new();
        let mut literal = String::new();
        while let Some(start) = rest.find("{{") {
            let end = start + rest[start..].find("}}").expect("an action closes on its line") + 2;
            kept.push_str(&rest[..start]);
            literal.push_str(&rest[..start]);
            kept.push_str("TEMPLATED");
            rest = &rest[end..];
        }
        kept.push_str(rest);
        literal.push_str(rest);
        if literal.trim().is_empty() && !line.trim().is_empty() {
            continue;
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// The documents of a template's skeleton, without empty ones.
fn documents(template: &str) -> Vec<Value> {
    let skeleton = skeleton(template);
    serde_yaml::Deserializer::from_str(&skeleton)
        .map(|doc| {
            <Value as serde::Deserialize>::deserialize(doc).unwrap_or_else(|e| panic!("{e}\n{skeleton}"))
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

fn object(kind: &str) -> Value {
    yaml_templates()
        .iter()
        .flat_map(|(_, text)| documents(text))
        .find(|doc| doc["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in the chart"))
}

#[test]
fn crd_templates_are_the_committed_crds() {
    let root = repo_root();
    for file in chart_crds::CRD_FILES {
        let crd = read(root.join("crds").join(file));
        let expected = chart_crds::chart_crd_template(&crd).unwrap();
        let template = read(root.join(chart_crds::TEMPLATE_DIR).join(file));
        assert!(
            template == expected,
            "{}/{file} differs from crds/{file}: run `make crds` and commit the result",
            chart_crds::TEMPLATE_DIR
        );
    }
}

#[test]
fn values_validate_against_the_schema() {
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let errors: Vec<String> =
        validator.iter_errors(&values()).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn the_schema_rejects_typos_and_bad_locations() {
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let with = |patch: &dyn Fn(&mut Value)| {
        let mut v = values();
        patch(&mut v);
        v
    };
    let bad = [
        with(&|v| v["operator"]["logLevl"] = "debug".into()),
        with(&|v| v["artifacts"]["location"] = "http://bucket/prefix".into()),
        with(&|v| v["operator"]["image"]["pullPolicy"] = "Sometimes".into()),
        with(&|v| v["operator"]["progressTimeoutSeconds"] = "900".into()),
        with(&|v| v["trainer"]["namespaces"] = serde_json::json!(["Not_A_Namespace"])),
        with(&|v| v["monitoring"]["serviceMonitor"]["interval"] = "often".into()),
    ];
    for values in bad {
        assert!(!validator.is_valid(&values), "accepted {values}");
    }
    let good = with(&|v| {
        v["artifacts"]["location"] = "s3://ocellus-artifacts/prod".into();
        v["trainer"]["namespaces"] = serde_json::json!(["team-a", "team-b"]);
    });
    assert!(validator.is_valid(&good));
    let pvc = with(&|v| v["artifacts"]["location"] = "pvc://ocellus-artifacts/runs".into());
    assert!(validator.is_valid(&pvc));
}

/// Indentation-based paths of the keys of values.yaml, with the line before each.
fn value_keys() -> Vec<(String, String)> {
    let text = read(chart_dir().join("values.yaml"));
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut previous = "";
    let mut keys = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some((key, _)) = trimmed.split_once(':').filter(|_| !trimmed.starts_with(['#', '-']))
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            stack.retain(|(depth, _)| *depth < indent);
            stack.push((indent, key.to_owned()));
            let path: Vec<&str> = stack.iter().map(|(_, k)| k.as_str()).collect();
            keys.push((path.join("."), previous.trim().to_owned()));
        }
        if !line.trim().is_empty() {
            previous = line;
        }
    }
    keys
}

fn declared_in_schema(path: &str) -> bool {
    let schema = schema();
    let mut node = &schema;
    for key in path.split('.') {
        match node["properties"].get(key) {
            Some(child) => node = child,
            None => return false,
        }
    }
    true
}

#[test]
fn every_value_is_documented_by_a_comment() {
    let keys = value_keys();
    assert!(keys.len() > 30, "{keys:?}");
    let undocumented: Vec<&String> = keys
        .iter()
        .filter(|(path, _)| declared_in_schema(path))
        .filter(|(_, before)| !before.starts_with('#'))
        .map(|(path, _)| path)
        .collect();
    assert!(undocumented.is_empty(), "values without a comment above them: {undocumented:?}");
}

/// Every `.Values.a.b` path the templates use.
fn value_references() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (_, text) in templates() {
        for (at, _) in text.match_indices(".Values.") {
            let path: String = text[at + 8..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '_')
                .collect();
            found.insert(path.trim_end_matches('.').to_owned());
        }
    }
    found
}

#[test]
fn templates_use_only_values_that_exist_and_every_value_is_used() {
    let values = values();
    let references = value_references();
    for reference in &references {
        let mut node = &values;
        for key in reference.split('.') {
            node = node.get(key).unwrap_or_else(|| panic!(".Values.{reference} is not in values.yaml"));
        }
    }
    let unused: Vec<String> = value_keys()
        .into_iter()
        .map(|(path, _)| path)
        .filter(|path| declared_in_schema(path))
        .filter(|path| !references.iter().any(|r| path == r || path.starts_with(&format!("{r}."))))
        .filter(|path| !references.iter().any(|r| r.starts_with(&format!("{path}."))))
        .collect();
    assert!(unused.is_empty(), "values no template reads: {unused:?}");
}

#[test]
fn every_template_is_yaml_with_kind_and_name() {
    let mut kinds = BTreeSet::new();
    for (name, text) in yaml_templates() {
        let docs = documents(&text);
        assert!(!docs.is_empty(), "{name} has no document");
        for doc in docs {
            assert!(doc["apiVersion"].is_string() && doc["metadata"]["name"].is_string(), "{name}: {doc}");
            kinds.insert(doc["kind"].as_str().unwrap_or_else(|| panic!("{name}: no kind")).to_owned());
        }
    }
    let expected = [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "CustomResourceDefinition",
        "Deployment",
        "PrometheusRule",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ];
    assert_eq!(kinds, expected.iter().map(|k| k.to_string()).collect());
}

#[test]
fn the_skeleton_drops_control_lines_and_blanks_inline_actions() {
    let template = "{{- if .Values.x }}\nmetadata:\n  labels:\n    {{- include \"l\" . | nindent 4 }}\n  name: {{ .Values.n }}-x\n{{- /* a\ncomment */}}\n{{- end }}\n";
    assert_eq!(skeleton(template), "metadata:\n  labels:\n  name: TEMPLATED-x\n");
}

type Rule = (Vec<String>, Vec<String>, Vec<String>);

fn normalized_rules(rules: &Value) -> BTreeSet<Rule> {
    let sorted = |list: &Value| -> Vec<String> {
        let mut items: Vec<String> =
            list.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
        items.sort();
        items
    };
    let rules = rules.as_array().expect("rules are a list");
    let set: BTreeSet<Rule> = rules
        .iter()
        .map(|r| (sorted(&r["apiGroups"]), sorted(&r["resources"]), sorted(&r["verbs"])))
        .collect();
    assert_eq!(set.len(), rules.len(), "duplicate rules");
    set
}

#[test]
fn the_cluster_role_grants_exactly_the_operators_rules() {
    let wanted = normalized_rules(&yaml(&read(repo_root().join("operator/rbac-rules.yaml"))));
    let granted = normalized_rules(&object("ClusterRole")["rules"]);
    assert_eq!(
        granted, wanted,
        "charts/ocellus/templates/clusterrole.yaml must equal operator/rbac-rules.yaml"
    );
    let binding = object("ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], "ocellus-operator");
    assert_eq!(binding["subjects"][0]["name"], "ocellus-operator");
    assert!(!wanted.iter().any(|(_, _, verbs)| verbs.contains(&"*".to_owned())));
}

#[test]
fn the_role_in_the_release_namespace_grants_exactly_the_certificate_rules() {
    let wanted = normalized_rules(&yaml(&read(repo_root().join("operator/rbac-namespace-rules.yaml"))));
    let role = object("Role");
    assert_eq!(
        normalized_rules(&role["rules"]),
        wanted,
        "charts/ocellus/templates/role.yaml must equal operator/rbac-namespace-rules.yaml"
    );
    // Reading and replacing is limited to the one Secret; only create cannot be.
    for rule in role["rules"].as_array().unwrap() {
        let create_only = rule["verbs"] == serde_json::json!(["create"]);
        assert_eq!(rule["resourceNames"].is_array(), !create_only, "{rule}");
    }
    assert_eq!(object("RoleBinding")["roleRef"]["kind"], "Role");
}

#[test]
fn trainer_pods_get_a_service_account_with_no_rights_and_no_token() {
    let trainer: Vec<Value> = yaml_templates()
        .iter()
        .flat_map(|(_, text)| documents(text))
        .filter(|doc| doc["kind"] == "ServiceAccount" && doc["metadata"]["name"] == "ocellus-trainer")
        .collect();
    assert_eq!(trainer.len(), 1);
    assert_eq!(trainer[0]["automountServiceAccountToken"], false);
    for (name, text) in yaml_templates() {
        for doc in documents(&text) {
            let subjects = doc["subjects"].as_array().into_iter().flatten();
            for subject in subjects {
                assert_ne!(subject["name"], "ocellus-trainer", "{name} grants the trainer rights");
            }
        }
    }
}

/// The flags of `ocellus-operator run`, as clap parses them.
#[derive(clap::Parser)]
struct OperatorRun {
    #[command(flatten)]
    config: ocellus_operator::config::Config,
}

/// The environment variables the operator reads (from its flags), plus RUST_LOG for tracing.
fn operator_env() -> BTreeSet<String> {
    use clap::CommandFactory;
    let mut names: BTreeSet<String> = OperatorRun::command()
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .collect();
    assert!(names.len() > 10, "the operator's flags lost their env names: {names:?}");
    names.insert("RUST_LOG".into());
    names
}

#[test]
fn the_deployment_runs_the_operator_as_the_contract_says() {
    let deployment = object("Deployment");
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "ocellus-operator");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let container = &pod["containers"][0];
    assert_eq!(container["args"], serde_json::json!(["run"]));
    let env: BTreeSet<String> =
        container["env"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(env, operator_env(), "the Deployment must set exactly the variables the operator reads");
    let field = |name: &str| {
        container["env"].as_array().unwrap().iter().find(|e| e["name"] == name).unwrap()["valueFrom"]["fieldRef"]
            ["fieldPath"]
            .clone()
    };
    assert_eq!(field("POD_NAME"), "metadata.name");
    assert_eq!(field("POD_NAMESPACE"), "metadata.namespace");
    let ports: Vec<(String, i64)> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_owned(), p["containerPort"].as_i64().unwrap()))
        .collect();
    assert_eq!(ports, [("metrics".to_owned(), 8080), ("status".to_owned(), 8081)]);
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "metrics");
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
}

#[test]
fn the_service_exposes_metrics_and_the_status_server_by_name() {
    let service = object("Service");
    assert_eq!(service["metadata"]["name"], "ocellus-operator");
    let ports: Vec<(String, i64)> = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_owned(), p["port"].as_i64().unwrap()))
        .collect();
    assert_eq!(ports, [("metrics".to_owned(), 8080), ("status".to_owned(), 8081)]);
}

/// The metric names the operator exports, read from its registry's text exposition: a counter
/// `x` is scraped as `x_total`, a histogram by its base name (see [`metrics_in`]).
fn operator_metrics() -> BTreeSet<String> {
    use ocellus_operator::metrics::{Metrics, ObjectState};
    // A family without series is not rendered at all, so give every one a series first.
    let metrics = Metrics::default();
    drop(metrics.reconcile("experiment"));
    metrics.error("experiment", "conflict");
    metrics.report_accepted();
    let state =
        ObjectState { condition: "Running".into(), best: Some(("RMSE".into(), 1.0)), trials: [1, 0, 0] };
    metrics.observe("Experiment", "ml", "a", Some(state));
    let text = metrics.render();
    let names: BTreeSet<String> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|line| match line.split_once(' ') {
            Some((name, "counter")) => format!("{name}_total"),
            Some((name, _)) => name.to_owned(),
            None => panic!("malformed TYPE line {line:?}"),
        })
        .collect();
    assert!(names.len() >= 7, "{text}");
    names
}

/// The metric names an expression uses (histogram series map back to their histogram).
fn metrics_in(expr: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in expr.match_indices("ocellus_") {
        let name: String =
            expr[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
        found.insert(base.to_owned());
    }
    found
}

fn dashboard() -> Value {
    serde_json::from_str(&read(chart_dir().join("dashboards/ocellus.json"))).expect("the dashboard is JSON")
}

#[test]
fn dashboard_and_alerts_use_only_the_operators_metrics_and_cover_all_of_them() {
    let mut used = BTreeSet::new();
    let dashboard = dashboard();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            assert!(!metrics_in(expr).is_empty(), "{expr} uses no Ocellus metric");
            used.extend(metrics_in(expr));
        }
    }
    let rules = object("PrometheusRule");
    let alerts: Vec<&Value> = rules["spec"]["groups"][0]["rules"].as_array().unwrap().iter().collect();
    let names: Vec<&str> = alerts.iter().map(|a| a["alert"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["OcellusExperimentFailed", "OcellusExperimentProgressStalled", "OcellusReconcileErrors"]
    );
    for alert in alerts {
        used.extend(metrics_in(alert["expr"].as_str().unwrap()));
    }
    assert_eq!(used, operator_metrics(), "the dashboard and alerts must use exactly the operator's metrics");
}

#[test]
fn the_dashboard_shows_what_the_issue_asks_for() {
    let dashboard = dashboard();
    let titles: Vec<&str> =
        dashboard["panels"].as_array().unwrap().iter().map(|p| p["title"].as_str().unwrap()).collect();
    for title in [
        "Experiments by condition",
        "Best scores",
        "Trainer throughput",
        "Reconciliations and errors",
        "Reconcile latency",
    ] {
        assert!(titles.contains(&title), "{title} missing from {titles:?}");
    }
    let ids: BTreeSet<i64> =
        dashboard["panels"].as_array().unwrap().iter().map(|p| p["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), titles.len(), "panel ids must be unique");
}

#[test]
fn files_the_templates_read_exist_in_the_chart() {
    for (name, text) in templates() {
        for (at, _) in text.match_indices(".Files.Get \"") {
            let path: String = text[at + 12..].chars().take_while(|c| *c != '"').collect();
            assert!(chart_dir().join(&path).is_file(), "{name} reads {path}, which the chart lacks");
        }
    }
}
