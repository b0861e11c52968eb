//! Every YAML file of the repository that is not a Helm template parses (workflows, GitOps
//! snippets, chart metadata, RBAC rules, examples, CRDs): a broken one would otherwise surface
//! only in a cluster or on GitHub.

use std::path::{Path, PathBuf};

use ocellus_tests::repo_root;

/// Build outputs, virtualenvs and data, and Helm templates (checked by tests/tests/chart.rs).
const SKIPPED: [&str; 9] =
    ["target", ".venv", ".git", "backbones", "testdata", "out", ".tools", ".cache", "templates"];

fn yaml_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !SKIPPED.contains(&name.as_str()) {
                yaml_files(&path, found);
            }
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            found.push(path);
        }
    }
}

#[test]
fn every_yaml_file_outside_the_chart_templates_parses() {
    let mut files = Vec::new();
    yaml_files(&repo_root(), &mut files);
    let names: Vec<String> =
        files.iter().map(|f| f.strip_prefix(repo_root()).unwrap().display().to_string()).collect();
    for expected in
        [".github/workflows/e2e.yaml", "gitops/argocd/argocd-cm.yaml", "charts/ocellus/Chart.yaml"]
    {
        assert!(names.iter().any(|n| n == expected), "{expected} not found among {names:?}");
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            if let Err(error) = <serde_yaml::Value as serde::Deserialize>::deserialize(document) {
                panic!("{}: {error}", file.display());
            }
        }
    }
}
