//! Helpers shared by the end-to-end tests of `ocellus run` and `ocellus predict`.
#![allow(dead_code)]

pub mod browser;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use ocellus_crds::ExperimentStatus;
use ocellus_trainer::error::EXIT_BAD_INPUT;
use serde_json::{Map, Value};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

pub fn ocellus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ocellus"))
        .args(args)
        .current_dir(repo())
        .env("OCELLUS_BACKBONES", repo().join("backbones"))
        .output()
        .unwrap()
}

pub fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

pub fn test_set(name: &str) -> PathBuf {
    let path = repo().join("testdata/sets").join(name);
    assert!(path.exists(), "{} is missing: run `make testdata` (make test does)", path.display());
    path
}

pub fn run(manifest: &Path, out: &Path) -> ExperimentStatus {
    let output = ocellus(&[
        "run",
        manifest.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--gbm-seconds",
        "10",
        "--cpu",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    serde_json::from_str(&std::fs::read_to_string(out.join("result.json")).unwrap()).unwrap()
}

pub fn metric(values: &[ocellus_crds::common::MetricValue], name: &str) -> f64 {
    values.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("no {name} in {values:?}")).value
}

/// The rows of an imported dataset as a CSV `ocellus predict` reads: image cells as absolute
/// paths, or inline base64 when `inline` is set.
pub fn rows_as_csv(dataset: &Path, csv_path: &Path, inline: bool) -> usize {
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dataset.join("dataset.json")).unwrap()).unwrap();
    let columns: Vec<String> =
        meta["columns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect();
    let images: Vec<&str> =
        meta["imageColumns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    let mut writer = csv::Writer::from_path(csv_path).unwrap();
    writer.write_record(&columns).unwrap();
    let table = std::fs::read_to_string(dataset.join("table.jsonl")).unwrap();
    let mut count = 0;
    for line in table.lines() {
        let row: Map<String, Value> = serde_json::from_str(line).unwrap();
        let record: Vec<String> = columns
            .iter()
            .map(|column| match &row[column] {
                Value::Null => String::new(),
                Value::String(s) if images.contains(&column.as_str()) => {
                    let path = dataset.join(s);
                    if inline {
                        let bytes = std::fs::read(&path).unwrap();
                        format!(
                            "data:image/png;base64,{}",
                            base64::engine::general_purpose::STANDARD.encode(bytes)
                        )
                    } else {
                        path.display().to_string()
                    }
                }
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        writer.write_record(&record).unwrap();
        count += 1;
    }
    writer.flush().unwrap();
    count
}

pub fn predict(bundle: &Path, input: &Path, output: &Path) -> Output {
    ocellus(&[
        "predict",
        "--bundle",
        bundle.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--cpu",
    ])
}

/// A tiny CSV dataset of real photos in `dir`, and a manifest that runs an Experiment on it.
pub struct Tiny {
    pub dir: tempfile::TempDir,
}

impl Tiny {
    pub fn new(rows: usize, row: impl Fn(usize) -> String, header: &str) -> Tiny {
        let dir = tempfile::tempdir().unwrap();
        for name in ["chelsea.png", "coffee.png"] {
            std::fs::copy(repo().join("testdata").join(name), dir.path().join(name)).unwrap();
        }
        let mut csv = format!("{header}\n");
        for i in 0..rows {
            csv.push_str(&row(i));
            csv.push('\n');
        }
        std::fs::write(dir.path().join("table.csv"), csv).unwrap();
        Tiny { dir }
    }

    pub fn photo(i: usize) -> &'static str {
        if i.is_multiple_of(2) { "chelsea.png" } else { "coffee.png" }
    }

    /// Runs an Experiment whose spec lines (indented two spaces) are `spec`; returns the output
    /// after checking that a failed run left no result.json.
    pub fn run_failing(&self, dataset_extra: &str, pipeline: &str, spec: &str) -> String {
        let manifest = format!(
            "apiVersion: ocellus.dev/v1alpha1\nkind: Dataset\nmetadata: {{name: tiny}}\nspec:\n  source: {{path: table.csv}}\n  format: CsvPaths\n{dataset_extra}---\n\
             apiVersion: ocellus.dev/v1alpha1\nkind: Experiment\nmetadata: {{name: tiny}}\nspec:\n  datasetRef: {{name: tiny}}\n  pipeline: {pipeline}\n{spec}"
        );
        let file = self.dir.path().join("experiment.yaml");
        std::fs::write(&file, manifest).unwrap();
        let out = self.dir.path().join("out");
        let output = ocellus(&["run", file.to_str().unwrap(), "--out", out.to_str().unwrap(), "--cpu"]);
        assert_eq!(output.status.code(), Some(EXIT_BAD_INPUT), "{}", text(&output));
        assert!(!out.join("result.json").exists(), "a failed run must not leave a result");
        assert!(!out.join("scoring").exists(), "a failed run must not leave a bundle");
        text(&output)
    }
}
