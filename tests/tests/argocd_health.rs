//! The Argo CD health checks in gitops/argocd/, run in Lua 5.1 (what Argo CD's gopher-lua
//! implements) on sample Datasets and Experiments, the way Argo CD runs them: the object as the
//! global `obj`, the script's returned table read for `status` and `message`.

use mlua::{Lua, LuaSerdeExt, Table};
use ocellus_crds::condition::{reasons, types};
use ocellus_tests::repo_root;
use serde_json::{Value, json};

fn script(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("gitops/argocd").join(name)).unwrap()
}

/// (status, message) the script gives the object.
fn health(script_name: &str, object: &Value) -> (String, String) {
    let lua = Lua::new();
    let obj = lua.to_value_with(object, mlua::SerializeOptions::new().serialize_none_to_null(false)).unwrap();
    lua.globals().set("obj", obj).unwrap();
    let result: Table = lua.load(script(script_name)).set_name(script_name).eval().unwrap();
    let message: Option<String> = result.get("message").unwrap();
    (result.get("status").unwrap(), message.unwrap_or_default())
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": "2026-11-28T18:00:00Z", "observedGeneration": 1})
}

fn object(kind: &str, conditions: Vec<Value>) -> Value {
    json!({
        "apiVersion": "ocellus.dev/v1alpha1", "kind": kind,
        "metadata": {"name": "sample", "namespace": "default", "generation": 1},
        "spec": {},
        "status": {"observedGeneration": 1, "conditions": conditions}
    })
}

#[test]
fn dataset_health_follows_the_ready_condition() {
    let cases = [
        (vec![condition(types::READY, "True", reasons::IMPORTED, "1,204 rows")], "Healthy"),
        (vec![condition(types::READY, "False", reasons::IMPORTING, "")], "Progressing"),
        (
            vec![condition(types::READY, "False", reasons::WAITING_FOR_DATASET, "car-deals is not Ready")],
            "Progressing",
        ),
        (vec![condition(types::READY, "Unknown", reasons::EVICTED, "")], "Progressing"),
        (vec![condition(types::READY, "False", reasons::EVICTED, "the Job retries")], "Progressing"),
        (vec![condition(types::READY, "False", reasons::UNSCHEDULABLE, "no node fits")], "Progressing"),
        (vec![condition(types::READY, "False", reasons::QUEUED, "")], "Progressing"),
        (vec![condition(types::READY, "False", reasons::IMAGE_PULL_BACK_OFF, "ghcr.io/x")], "Degraded"),
        (vec![condition(types::READY, "False", reasons::DEADLINE_EXCEEDED, "")], "Degraded"),
        (vec![condition(types::READY, "False", reasons::BAD_INPUT, "no images found")], "Degraded"),
        (vec![condition(types::READY, "False", reasons::SOURCE_UNREACHABLE, "403 from S3")], "Degraded"),
        (vec![condition(types::READY, "False", reasons::FAILED, "")], "Degraded"),
        (vec![], "Progressing"),
    ];
    for (conditions, expected) in cases {
        let (status, message) = health("health-dataset.lua", &object("Dataset", conditions.clone()));
        assert_eq!(status, expected, "{conditions:?}: {message}");
    }
    let (_, message) = health(
        "health-dataset.lua",
        &object("Dataset", vec![condition(types::READY, "False", reasons::BAD_INPUT, "no images found")]),
    );
    assert_eq!(message, "BadInput: no images found");
}

#[test]
fn experiment_health_follows_the_summary_conditions() {
    let running = condition(types::RUNNING, "True", reasons::TRAINING, "trial 3 of 20");
    let cases = [
        (vec![running.clone()], "Progressing"),
        (
            vec![condition(types::RUNNING, "False", reasons::WAITING_FOR_DATASET, "car-deals-train")],
            "Progressing",
        ),
        (
            vec![condition(types::RUNNING, "False", reasons::UNSCHEDULABLE, "0/3 nodes have nvidia.com/gpu")],
            "Progressing",
        ),
        (vec![condition(types::RUNNING, "False", reasons::IMAGE_PULL_BACK_OFF, "ghcr.io/x")], "Degraded"),
        (
            vec![condition(types::RUNNING, "False", reasons::POD_CREATION_REFUSED, "serviceaccount")],
            "Degraded",
        ),
        (vec![condition(types::RUNNING, "False", reasons::POD_CONFIG_ERROR, "secret not found")], "Degraded"),
        (
            vec![
                condition(types::RUNNING, "False", reasons::SUCCEEDED, ""),
                condition(types::SUCCEEDED, "True", reasons::SUCCEEDED, "RMSE 1234.5"),
            ],
            "Healthy",
        ),
        (
            vec![
                condition(types::RUNNING, "False", reasons::FAILED, ""),
                condition(types::FAILED, "True", reasons::OOM_KILLED, "raise spec.resources.memory"),
            ],
            "Degraded",
        ),
        (
            vec![
                running.clone(),
                condition(types::PROGRESS_STALLED, "True", reasons::NO_PROGRESS_REPORT, ""),
            ],
            "Degraded",
        ),
        (
            vec![running.clone(), condition(types::PROGRESS_STALLED, "False", reasons::REPORTING, "")],
            "Progressing",
        ),
        (vec![condition(types::SUSPENDED, "True", reasons::SUSPENDED_BY_USER, "")], "Suspended"),
        (vec![condition(types::SUSPENDED, "False", reasons::TRAINING, ""), running.clone()], "Progressing"),
        (
            vec![
                condition(types::SUSPENDED, "True", reasons::QUEUED, "the Job waits for its queue"),
                condition(types::RUNNING, "False", reasons::QUEUED, "the Job waits for its queue"),
            ],
            "Suspended",
        ),
        (vec![], "Progressing"),
    ];
    for (conditions, expected) in cases {
        let (status, message) = health("health-experiment.lua", &object("Experiment", conditions.clone()));
        assert_eq!(status, expected, "{conditions:?}: {message}");
    }
}

#[test]
fn failure_wins_over_everything_and_says_why() {
    let conditions = vec![
        condition(types::SUSPENDED, "True", reasons::SUSPENDED_BY_USER, ""),
        condition(types::FAILED, "True", reasons::INVALID_SPEC, "target Price is not a column"),
    ];
    let (status, message) = health("health-experiment.lua", &object("Experiment", conditions));
    assert_eq!(
        (status.as_str(), message.as_str()),
        ("Degraded", "InvalidSpec: target Price is not a column")
    );
}

#[test]
fn objects_the_operator_has_not_seen_yet_are_progressing_or_suspended() {
    let mut fresh = json!({"apiVersion": "ocellus.dev/v1alpha1", "kind": "Experiment",
                           "metadata": {"name": "new", "generation": 1}, "spec": {"suspend": true}});
    assert_eq!(health("health-experiment.lua", &fresh).0, "Suspended");
    fresh["spec"]["suspend"] = json!(false);
    assert_eq!(health("health-experiment.lua", &fresh).0, "Progressing");
    let dataset =
        json!({"apiVersion": "ocellus.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "new"}});
    assert_eq!(health("health-dataset.lua", &dataset).0, "Progressing");

    // A spec change the operator has not reconciled yet: the old Succeeded says nothing about it.
    let mut edited = object("Experiment", vec![condition(types::SUCCEEDED, "True", reasons::SUCCEEDED, "")]);
    edited["metadata"]["generation"] = json!(2);
    let (status, message) = health("health-experiment.lua", &edited);
    assert_eq!(
        (status.as_str(), message.as_str()),
        ("Progressing", "The operator has not yet seen generation 2")
    );
}

#[test]
fn the_argocd_cm_snippet_holds_the_scripts_verbatim() {
    let text = std::fs::read_to_string(repo_root().join("gitops/argocd/argocd-cm.yaml")).unwrap();
    let cm: Value = serde_yaml::from_str(&text).unwrap();
    for (key, file) in [
        ("resource.customizations.health.ocellus.dev_Dataset", "health-dataset.lua"),
        ("resource.customizations.health.ocellus.dev_Experiment", "health-experiment.lua"),
    ] {
        assert!(
            cm["data"][key].as_str() == Some(script(file).as_str()),
            "argocd-cm.yaml {key} differs from {file}"
        );
    }
}
