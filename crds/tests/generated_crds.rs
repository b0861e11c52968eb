//! The committed CRDs are what the types generate, and they obey the rules the API server
//! enforces on structural schemas plus the API conventions of DESIGN.md.

use serde_json::Value;

fn crds() -> Vec<(&'static str, Value)> {
    ocellus_crds::crds().into_iter().map(|(file, crd)| (file, serde_json::to_value(crd).unwrap())).collect()
}

fn schema_of(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
}

#[test]
fn committed_yaml_matches_the_types() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, crd) in ocellus_crds::crds() {
        let expected = ocellus_crds::crd_yaml(&crd);
        let committed = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(
            committed == expected,
            "crds/{file} is stale: run `cargo run -p ocellus-crds --bin crdgen` (or `make crds`) and commit the result"
        );
    }
}

/// Walks every schema node with its dotted path.
fn walk<'a>(node: &'a Value, path: String, visit: &mut dyn FnMut(&str, &'a Value)) {
    visit(&path, node);
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            walk(child, format!("{path}.{name}"), visit);
        }
    }
    if let Some(items) = node.get("items") {
        walk(items, format!("{path}[]"), visit);
    }
    if let Some(additional) = node.get("additionalProperties").filter(|a| a.is_object()) {
        walk(additional, format!("{path}{{}}"), visit);
    }
    for junctor in ["allOf", "anyOf", "oneOf"] {
        for (index, branch) in node.get(junctor).and_then(Value::as_array).into_iter().flatten().enumerate() {
            walk(branch, format!("{path}<{junctor}{index}>"), visit);
        }
    }
}

fn problems(check: impl Fn(&str, &Value) -> Option<String>) -> Vec<String> {
    let mut found = Vec::new();
    for (file, crd) in crds() {
        walk(schema_of(&crd), file.to_owned(), &mut |path, node| {
            if let Some(problem) = check(path, node) {
                found.push(format!("{path}: {problem}"));
            }
        });
    }
    found
}

fn in_junctor(path: &str) -> bool {
    path.contains("<allOf") || path.contains("<anyOf") || path.contains("<oneOf")
}

#[test]
fn every_node_has_a_type() {
    let found = problems(|path, node| {
        let typed = node.get("type").and_then(Value::as_str).is_some_and(|t| !t.is_empty());
        let exempt = node.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
            || node.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
            || in_junctor(path);
        (!typed && !exempt).then(|| "no type".into())
    });
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn preserve_unknown_fields_appears_nowhere() {
    // No field of ours is free-form; should one ever be, list its path here on purpose.
    const INTENDED: [&str; 0] = [];
    let found = problems(|path, node| {
        (node.get("x-kubernetes-preserve-unknown-fields").is_some() && !INTENDED.contains(&path))
            .then(|| "x-kubernetes-preserve-unknown-fields is not intended here".into())
    });
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn junctors_carry_no_types_defaults_or_descriptions_and_nothing_is_referenced() {
    let found = problems(|path, node| {
        if node.get("$ref").is_some() {
            return Some("$ref is not allowed in a CRD".into());
        }
        if node.get("properties").is_some() && node.get("additionalProperties").is_some() {
            return Some("properties and additionalProperties are mutually exclusive".into());
        }
        let forbidden = ["type", "default", "description", "nullable", "additionalProperties"];
        (in_junctor(path) && forbidden.iter().any(|k| node.get(k).is_some()))
            .then(|| "a value inside allOf/anyOf/oneOf may only restrict, not declare".into())
    });
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn list_maps_have_required_scalar_keys() {
    let found = problems(|_, node| {
        if node.get("x-kubernetes-list-type").and_then(Value::as_str) != Some("map") {
            return None;
        }
        let keys = node["x-kubernetes-list-map-keys"].as_array()?;
        let items = &node["items"];
        let required: Vec<&str> = items["required"].as_array()?.iter().filter_map(Value::as_str).collect();
        keys.iter().filter_map(Value::as_str).find_map(|key| {
            let scalar = matches!(items["properties"][key]["type"].as_str(), Some("string" | "integer"));
            let needed = required.contains(&key) || items["properties"][key].get("default").is_some();
            (!scalar || !needed).then(|| format!("list-map key {key} must be a required scalar"))
        })
    });
    assert!(found.is_empty(), "{found:#?}");
    for (file, crd) in crds() {
        let conditions = &schema_of(&crd)["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{file}");
        assert_eq!(conditions["x-kubernetes-list-map-keys"], serde_json::json!(["type"]), "{file}");
    }
}

/// Subtrees whose schema is Kubernetes' own (k8s-openapi types), bounded by the API server
/// when it validates the Pod we build from them.
const KUBERNETES_OWNED: [&str; 1] = ["experiment.yaml.spec.resources.tolerations"];

#[test]
fn spec_follows_the_api_conventions() {
    let found = problems(|path, node| {
        let in_spec = path.contains(".spec");
        if !in_spec || KUBERNETES_OWNED.iter().any(|owned| path.starts_with(owned)) {
            return None;
        }
        match node.get("type").and_then(Value::as_str) {
            Some("number") => Some("no floats in spec: use an integer percent or a string".into()),
            Some("integer") => match node.get("format").and_then(Value::as_str) {
                Some("int32" | "int64") => None,
                _ => Some("integers must be int32 or int64".into()),
            },
            Some("string") => (node.get("maxLength").is_none() && node.get("enum").is_none())
                .then(|| "every string needs maxLength or an enum".into()),
            Some("array") => node.get("maxItems").is_none().then(|| "every list needs maxItems".into()),
            Some("object") if node.get("additionalProperties").is_some() => {
                node.get("maxProperties").is_none().then(|| "every map needs maxProperties".into())
            }
            _ => None,
        }
    });
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn enum_values_are_camel_case() {
    let found = problems(|_, node| {
        let values = node.get("enum")?.as_array()?;
        values.iter().filter_map(Value::as_str).find_map(|value| {
            let camel = value.starts_with(|c: char| c.is_ascii_uppercase())
                && value.chars().all(|c| c.is_ascii_alphanumeric());
            (!camel).then(|| format!("enum value {value:?} is not CamelCase"))
        })
    });
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn every_default_validates_against_its_own_schema() {
    let found = problems(|_, node| {
        let default = node.get("default")?;
        let mut own = node.clone();
        own.as_object_mut().unwrap().remove("default");
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .should_validate_formats(false)
            .build(&own)
            .unwrap();
        validator.validate(default).err().map(|error| format!("default {default} is invalid: {error}"))
    });
    let mut checked = 0;
    for (_, crd) in crds() {
        walk(schema_of(&crd), String::new(), &mut |_, node| {
            checked += node.get("default").is_some() as usize
        });
    }
    assert!(found.is_empty(), "{found:#?}");
    assert!(checked >= 15, "expected the documented defaults, found {checked}");
}

#[test]
fn documented_defaults_are_the_mission_defaults() {
    let experiment = crds().into_iter().find(|(f, _)| *f == "experiment.yaml").unwrap().1;
    let embeddings = &schema_of(&experiment)["properties"]["spec"]["properties"]["embeddings"];
    let defaults = &embeddings["default"];
    assert_eq!(defaults["architectures"], serde_json::json!(["xception"]));
    assert_eq!(defaults["dimensions"], serde_json::json!([100]));
    assert_eq!(defaults["fineTune"]["enabled"], false);
    assert_eq!(defaults["fineTune"]["epochs"], 2);
    assert_eq!(defaults["fineTune"]["augmentations"], serde_json::json!(["HorizontalFlip"]));
    let dimensions = &embeddings["properties"]["dimensions"]["items"]["enum"];
    assert_eq!(dimensions, &serde_json::json!([10, 25, 50, 100, 200, 300]));
    let augmentations = &embeddings["properties"]["fineTune"]["properties"]["augmentations"]["items"]["enum"];
    assert_eq!(augmentations.as_array().unwrap().len(), 13);
}

#[test]
fn immutable_fields_carry_a_transition_rule() {
    for (file, field) in [
        ("dataset.yaml", "source"),
        ("dataset.yaml", "format"),
        ("experiment.yaml", "datasetRef"),
        ("experiment.yaml", "target"),
        ("experiment.yaml", "pipeline"),
        ("experiment.yaml", "seed"),
    ] {
        let crd = crds().into_iter().find(|(f, _)| *f == file).unwrap().1;
        let node = &schema_of(&crd)["properties"]["spec"]["properties"][field];
        let rules: Vec<&str> = node["x-kubernetes-validations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|rule| rule["rule"].as_str())
            .collect();
        assert!(rules.contains(&"self == oldSelf"), "{file} spec.{field}: {rules:?}");
    }
}

#[test]
fn status_is_a_subresource_and_names_are_short() {
    for (file, crd) in crds() {
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["subresources"]["status"], serde_json::json!({}), "{file}");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["group"], "ocellus.dev");
        assert_eq!(version["name"], "v1alpha1");
        let short = crd["spec"]["names"]["shortNames"][0].as_str().unwrap();
        assert_eq!(short, if file == "dataset.yaml" { "ds" } else { "exp" });
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        if file == "experiment.yaml" {
            assert_eq!(columns, ["Status", "Target", "Scorer", "Best", "Age"]);
        }
    }
}
