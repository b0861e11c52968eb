//! Every manifest under examples/ is one the API server would accept, as generated from the types.

use std::path::Path;

fn example_files() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("examples");
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
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
