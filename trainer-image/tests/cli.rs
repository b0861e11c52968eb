//! The `ocellus` binary as a user and a Job's podFailurePolicy see it: output and exit codes.

use std::path::Path;
use std::process::{Command, Output};

use ocellus_trainer::error::EXIT_BAD_INPUT;

fn ocellus(args: &[&str]) -> Output {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    Command::new(env!("CARGO_BIN_EXE_ocellus"))
        .args(args)
        .current_dir(repo)
        .env("OCELLUS_BACKBONES", repo.join("backbones"))
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn valid_examples_pass_validation() {
    let output = ocellus(&["validate", "examples/car-deals-embeddings.yaml"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("Experiment car-price-embeddings is valid"), "{stdout}");
}

#[test]
fn an_invalid_manifest_exits_with_the_bad_input_code_and_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: ocellus.dev/v1alpha1\nkind: Experiment\nmetadata: {name: x}\nspec:\n  datasetRef: {name: d}\n  target: y\n  embeddings: {dimensions: [64]}\n",
    )
    .unwrap();
    let output = ocellus(&["validate", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(EXIT_BAD_INPUT), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("bad.yaml") && message.contains("spec.embeddings.dimensions[0]"), "{message}");
}

#[test]
fn an_image_that_is_not_an_image_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cat.png");
    std::fs::write(&file, b"this is not a PNG").unwrap();
    let output = ocellus(&["backbone", "classify", "efficientnet_lite0", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(EXIT_BAD_INPUT), "{}", stderr(&output));
    assert!(stderr(&output).contains("cannot decode image"), "{}", stderr(&output));
}

#[test]
fn classify_prints_imagenet_classes_of_a_real_photo() {
    let output =
        ocellus(&["backbone", "classify", "efficientnet_lite0", "testdata/coffee.png", "--top", "1"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("class 967"));
}

/// Without `--no-as-needed` the linker drops libtorch_cuda (nothing references it directly)
/// and the binary runs on CPU even on a GPU machine. Checkable without a GPU: when the
/// libtorch we link has CUDA, the binary must depend on it.
#[test]
fn the_binary_keeps_libtorch_cuda_when_libtorch_has_it() {
    let lib = Path::new(env!("OCELLUS_LIBTORCH_LIB"));
    let dynamic = Command::new("readelf").args(["-d", env!("CARGO_BIN_EXE_ocellus")]).output().unwrap();
    let dynamic = String::from_utf8_lossy(&dynamic.stdout);
    assert!(dynamic.contains(&format!("[{}]", lib.display())), "no rpath to libtorch:\n{dynamic}");
    if lib.join("libtorch_cuda.so").exists() {
        assert!(dynamic.contains("[libtorch_cuda.so]"), "libtorch_cuda.so was dropped:\n{dynamic}");
    }
}
