//! Reading the manifests a user would `kubectl apply`, with the checks the API server makes.
//!
//! `ocellus run` has no API server in front of it, so it applies the same rules itself:
//! the CRD's OpenAPI schema (types, bounds, enums, patterns), the CEL rules
//! (`x-kubernetes-validations`) after schema defaults are applied, and — as
//! `kubectl --validate=strict` does — a refusal of unknown fields. All come from the
//! generated CRDs, so local mode and the cluster can never disagree.

use std::sync::OnceLock;

use kube::core::cel::Validator as CelValidator;
use kube::{CustomResourceExt, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{API_VERSION, Dataset, Experiment};

/// One resource read from a manifest file.
#[derive(Clone, Debug)]
pub enum Manifest {
    Dataset(Box<Dataset>),
    Experiment(Box<Experiment>),
}

impl Manifest {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Dataset(_) => "Dataset",
            Self::Experiment(_) => "Experiment",
        }
    }

    pub fn name(&self) -> &str {
        let meta = match self {
            Self::Dataset(d) => d.meta(),
            Self::Experiment(e) => e.meta(),
        };
        meta.name.as_deref().unwrap_or_default()
    }
}

/// Why a manifest was refused. Each message names the document and says what to change.
#[derive(thiserror::Error, Debug)]
pub enum ManifestError {
    #[error("document {document}: not valid YAML: {source}")]
    Yaml {
        document: usize,
        #[source]
        source: serde_yaml::Error,
    },
    #[error(
        "document {document}: kind {kind:?} with apiVersion {api_version:?} is not an Ocellus resource; \
         expected apiVersion {API_VERSION} and kind Dataset or Experiment"
    )]
    NotOcellus { document: usize, kind: String, api_version: String },
    #[error("document {document} ({kind} {name:?}) is invalid:\n  - {}", problems.join("\n  - "))]
    Invalid { document: usize, kind: &'static str, name: String, problems: Vec<String> },
    #[error("the file holds no Dataset or Experiment")]
    Empty,
}

/// Parses every document of a multi-document YAML file into typed, validated resources,
/// with schema defaults applied (as the API server would store them).
pub fn parse_manifests(text: &str) -> Result<Vec<Manifest>, ManifestError> {
    let mut manifests = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document_number = index + 1;
        let value: Value = serde::Deserialize::deserialize(document)
            .map_err(|source| ManifestError::Yaml { document: document_number, source })?;
        if value.is_null() {
            continue;
        }
        manifests.push(parse_one(document_number, value)?);
    }
    if manifests.is_empty() {
        return Err(ManifestError::Empty);
    }
    Ok(manifests)
}

fn parse_one(document: usize, value: Value) -> Result<Manifest, ManifestError> {
    let field = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    if api_version != API_VERSION {
        return Err(ManifestError::NotOcellus { document, kind, api_version });
    }
    match kind.as_str() {
        "Dataset" => validated::<Dataset>(document, "Dataset", value).map(|d| Manifest::Dataset(Box::new(d))),
        "Experiment" => {
            validated::<Experiment>(document, "Experiment", value).map(|e| Manifest::Experiment(Box::new(e)))
        }
        _ => Err(ManifestError::NotOcellus { document, kind, api_version }),
    }
}

/// The `openAPIV3Schema` of a resource's CRD, computed once.
pub fn openapi_schema<K: CustomResourceExt>() -> Value {
    let crd = K::crd();
    let schema = crd.spec.versions[0].schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref());
    serde_json::to_value(schema.expect("derived CRDs have a schema")).expect("schemas serialise")
}

struct Checks {
    schema: Value,
    validator: jsonschema::Validator,
}

fn checks<K: CustomResourceExt>() -> &'static Checks {
    static DATASET: OnceLock<Checks> = OnceLock::new();
    static EXPERIMENT: OnceLock<Checks> = OnceLock::new();
    let cell = if K::crd_name() == Dataset::crd_name() { &DATASET } else { &EXPERIMENT };
    cell.get_or_init(|| {
        let schema = openapi_schema::<K>();
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .should_validate_formats(false)
            .build(&schema)
            .expect("the generated CRD schema is a valid JSON schema");
        Checks { schema, validator }
    })
}

fn validated<K>(document: usize, kind: &'static str, value: Value) -> Result<K, ManifestError>
where
    K: CustomResourceExt + Resource + DeserializeOwned + Serialize,
{
    let name = value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
    let invalid =
        |problems: Vec<String>| ManifestError::Invalid { document, kind, name: name.clone(), problems };
    let checks = checks::<K>();

    let mut problems = metadata_problems(&value);
    unknown_fields(&checks.schema, &value, "", &mut problems);
    problems.extend(
        checks
            .validator
            .iter_errors(&value)
            .map(|error| format!("{}: {}", display_path(&error.instance_path().to_string()), error)),
    );
    if !problems.is_empty() {
        return Err(invalid(problems));
    }

    let typed: K = serde_json::from_value(value).map_err(|error| invalid(vec![error.to_string()]))?;
    let defaulted = serde_json::to_value(&typed).expect("resources serialise");
    if let Err(errors) = CelValidator::new().validate(&checks.schema, &defaulted, None) {
        return Err(invalid(errors.into_iter().map(|e| e.to_string()).collect()));
    }
    Ok(typed)
}

fn metadata_problems(value: &Value) -> Vec<String> {
    let name = value.pointer("/metadata/name").and_then(Value::as_str);
    match name {
        None => vec!["metadata.name: required; give the resource a name".into()],
        Some(name) if !is_dns_subdomain(name) => vec![format!(
            "metadata.name: {name:?} must be lower-case letters, digits, '-' or '.', \
             start and end with a letter or digit, and be at most 253 characters"
        )],
        Some(_) => vec![],
    }
}

fn is_dns_subdomain(name: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| alnum(c) || c == '-' || c == '.')
        && name.starts_with(alnum)
        && name.ends_with(alnum)
}

/// Fields the schema does not know: the API server would silently drop them, so a typo
/// would quietly turn into a default. Refuse them instead.
fn unknown_fields(schema: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(object) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (key, child) in object {
                let child_path = format!("{path}/{key}");
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(child_schema), _) => unknown_fields(child_schema, child, &child_path, problems),
                    (None, Some(additional)) if additional.is_object() => {
                        unknown_fields(additional, child, &child_path, problems)
                    }
                    // The API server adds these to every root schema itself.
                    (None, _) if path.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") => {}
                    (None, _) if properties.is_some() => problems.push(format!(
                        "{}: unknown field; check its spelling against `kubectl explain` or the API reference",
                        display_path(&child_path)
                    )),
                    (None, _) => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    unknown_fields(item_schema, item, &format!("{path}/{index}"), problems);
                }
            }
        }
        _ => {}
    }
}

/// `/spec/embeddings/dimensions/0` → `spec.embeddings.dimensions[0]`.
fn display_path(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.split('/').filter(|p| !p.is_empty()) {
        if part.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    if out.is_empty() { "(root)".into() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPERIMENT: &str = "
apiVersion: ocellus.dev/v1alpha1
kind: Experiment
metadata: {name: cars}
spec:
  datasetRef: {name: cars-train}
  target: Price
";

    fn problems(yaml: &str) -> Vec<String> {
        match parse_manifests(yaml) {
            Err(ManifestError::Invalid { problems, .. }) => problems,
            other => panic!("expected an invalid manifest, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_applied_as_the_api_server_would() {
        let parsed = parse_manifests(EXPERIMENT).unwrap();
        let Manifest::Experiment(experiment) = &parsed[0] else { panic!() };
        assert_eq!(experiment.spec.embeddings.architectures, ["xception"]);
        assert_eq!(experiment.spec.embeddings.dimensions, [100]);
        assert!(!experiment.spec.embeddings.fine_tune.enabled);
        assert_eq!(experiment.spec.embeddings.fine_tune.epochs, 2);
        assert_eq!(experiment.spec.seed, 1234);
        assert_eq!(parsed[0].name(), "cars");
    }

    #[test]
    fn multi_document_files_keep_their_order_and_skip_empty_documents() {
        let text = format!(
            "---\napiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {{name: cars-train}}\nspec:\n  source: {{path: /data/cars.zip}}\n---\n---{EXPERIMENT}"
        );
        let kinds: Vec<_> = parse_manifests(&text).unwrap().iter().map(Manifest::kind).collect();
        assert_eq!(kinds, ["Dataset", "Experiment"]);
    }

    #[test]
    fn unknown_fields_are_refused_with_their_path() {
        let found = problems(&format!("{EXPERIMENT}  sead: 7\n"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("spec.sead: unknown field"), "{found:?}");
    }

    #[test]
    fn schema_bounds_and_enums_are_enforced() {
        let found =
            problems(&format!("{EXPERIMENT}  embeddings: {{dimensions: [100, 64]}}\n  task: Ranking\n"));
        assert!(found.iter().any(|p| p.starts_with("spec.embeddings.dimensions[1]")), "{found:?}");
        assert!(found.iter().any(|p| p.starts_with("spec.task")), "{found:?}");
    }

    #[test]
    fn cel_rules_run_after_defaults() {
        let found = problems(&format!("{EXPERIMENT}  task: Regression\n  scorer: AUC\n"));
        assert!(found.iter().any(|p| p.contains("Regression experiment needs scorer")), "{found:?}");
    }

    #[test]
    fn a_source_must_name_exactly_one_place() {
        let yaml = "apiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {name: d}\nspec:\n  source: {path: /a, http: {url: 'https://x/y.zip'}}\n";
        let found = problems(yaml);
        assert!(found.iter().any(|p| p.contains("exactly one of")), "{found:?}");
        let none =
            "apiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {name: d}\nspec:\n  source: {}\n";
        assert!(problems(none).iter().any(|p| p.contains("exactly one of")));
    }

    #[test]
    fn names_and_kinds_are_checked() {
        let found = problems(&EXPERIMENT.replace("name: cars}", "name: Cars_1}"));
        assert!(found[0].starts_with("metadata.name"), "{found:?}");
        let other = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n";
        assert!(matches!(parse_manifests(other), Err(ManifestError::NotOcellus { .. })));
        assert!(matches!(parse_manifests("---\n"), Err(ManifestError::Empty)));
        assert!(matches!(parse_manifests("a: [1"), Err(ManifestError::Yaml { .. })));
    }

    #[test]
    fn immutable_fields_reject_changes_but_allow_suspend() {
        let Manifest::Experiment(old) = parse_manifests(EXPERIMENT).unwrap().remove(0) else { panic!() };
        let mut suspended = old.clone();
        suspended.spec.suspend = true;
        assert!(suspended.validate_cel_update(&old).is_ok());
        let mut retargeted = old.clone();
        retargeted.spec.target = "Mileage".into();
        let errors = retargeted.validate_cel_update(&old).unwrap_err().to_string();
        assert!(errors.contains("target is immutable"), "{errors}");
    }
}
