//! The ten standard architectures, exported from timm with random weights by
//! `make random-backbones` (make test runs it), load through the Registry, give features of
//! their architecture's known dimension at their manifest's input size, and are scripted so
//! that BatchNorm follows train/eval and gradients reach every parameter: they can be
//! fine-tuned from Rust.

use std::path::{Path, PathBuf};

use ocellus_trainer::backbone::{Backbone, Registry};
use tch::{Device, Kind, Tensor, nn};

/// Large enough for every architecture (inception_v3 needs at least 75 px).
const TRAIN_CHECK_SIZE: i64 = 128;

fn random_backbones() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("testdata").join("random-backbones")
}

fn load(name: &str) -> Backbone {
    let root = random_backbones();
    assert!(
        root.join(name).join("manifest.json").is_file(),
        "{} has no {name}: run `make random-backbones` first (make test does)",
        root.display()
    );
    Registry::new(root).load(name, Device::Cpu).unwrap()
}

fn max_difference(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Loads `name`, checks its manifest and the shape of its features, and that it trains.
fn check_architecture(name: &str, feature_dim: i64, input_size: i64) {
    // The profiling executor re-optimises each graph on its second run, which costs seconds
    // per network and changes nothing these checks look at.
    tch::jit::set_graph_executor_optimize(false);
    let backbone = load(name);
    let manifest = &backbone.manifest;
    assert_eq!(manifest.feature_dim, feature_dim, "{name}: featureDim of the manifest");
    assert_eq!(manifest.input_size, input_size, "{name}: inputSize of the manifest");
    assert_eq!(i64::from(manifest.resize.center_crop), input_size, "{name}: centre crop");
    assert!(i64::from(manifest.resize.shorter_side) >= input_size, "{name}: {:?}", manifest.resize);
    assert!(!manifest.pretrained, "{name}: a random-weights export must say pretrained: false");
    assert!(
        manifest.source.starts_with("timm:") && manifest.source.contains("random weights"),
        "{name}: source {:?}",
        manifest.source
    );

    tch::manual_seed(0);
    let batch = Tensor::randn([2, 3, input_size, input_size], (Kind::Float, Device::Cpu));
    let features = backbone.features(&batch).unwrap();
    assert_eq!(features.size(), [2, feature_dim], "{name}: features");
    let classifier = manifest.classifier.as_ref().expect("timm exports keep the ImageNet head");
    let logits = backbone.classifier_logits(&features).unwrap();
    assert_eq!(logits.size(), [2, classifier.classes], "{name}: classifier logits");

    let store = nn::VarStore::new(Device::Cpu);
    let mut module = tch::TrainableCModule::load(backbone.model_path(), store.root()).unwrap();
    let trainable = store.trainable_variables();
    assert!(trainable.len() > 10, "{name}: only {} trainable tensors", trainable.len());

    // Smaller than the input size, which the forward above covered, to keep the backward cheap.
    let batch = batch.upsample_bilinear2d([TRAIN_CHECK_SIZE, TRAIN_CHECK_SIZE], false, None, None);
    module.set_eval();
    let eval_before = tch::no_grad(|| module.forward_ts(&[&batch])).unwrap();

    module.set_train();
    let train = module.forward_ts(&[&batch]).unwrap();
    assert!(
        max_difference(&train, &eval_before) > 1e-4,
        "{name}: train mode gives eval's features: BatchNorm is frozen (traced, not scripted?)"
    );
    // Through the head too, so that every parameter of the file is on the gradient's path.
    let train_logits = module.method_ts(&classifier.method, &[&train]).unwrap();
    train_logits.logsumexp([1], false).mean(Kind::Float).backward();
    let without_gradient = trainable.iter().filter(|tensor| !tensor.grad().defined()).count();
    assert_eq!(
        without_gradient,
        0,
        "{name}: {without_gradient} of {} parameters got no gradient",
        trainable.len()
    );

    module.set_eval();
    let eval_after = tch::no_grad(|| module.forward_ts(&[&batch])).unwrap();
    assert!(
        max_difference(&eval_after, &eval_before) > 1e-6,
        "{name}: a forward in train mode did not update BatchNorm's running statistics"
    );
}

/// One test per architecture, so that a failure names it and they run in parallel.
macro_rules! architecture_tests {
    ($($test:ident: $name:literal, features $dim:literal, input $size:literal;)*) => {$(
        #[test]
        fn $test() {
            check_architecture($name, $dim, $size);
        }
    )*};
}

// Feature dimensions are those of the architectures (the width of the last layer before the
// classifier); input sizes are those of the timm weights each export names in its source.
architecture_tests! {
    densenet121_loads_and_trains: "densenet121", features 1024, input 224;
    efficientnetb0_loads_and_trains: "efficientnetb0", features 1280, input 224;
    efficientnetb2_loads_and_trains: "efficientnetb2", features 1408, input 256;
    inception_v3_loads_and_trains: "inception_v3", features 2048, input 299;
    mobilenetv2_loads_and_trains: "mobilenetv2", features 1280, input 224;
    resnet34_loads_and_trains: "resnet34", features 512, input 224;
    resnet50_loads_and_trains: "resnet50", features 2048, input 224;
    seresnet50_loads_and_trains: "seresnet50", features 2048, input 224;
    seresnext50_loads_and_trains: "seresnext50", features 2048, input 224;
    xception_loads_and_trains: "xception", features 2048, input 299;
}

#[test]
fn every_standard_architecture_has_a_test_here() {
    let tested = [
        "densenet121",
        "efficientnetb0",
        "efficientnetb2",
        "inception_v3",
        "mobilenetv2",
        "resnet34",
        "resnet50",
        "seresnet50",
        "seresnext50",
        "xception",
    ];
    assert_eq!(ocellus_crds::experiment::STANDARD_ARCHITECTURES, tested);
}

#[test]
fn a_missing_backbone_lists_the_available_ones_and_how_to_export_it() {
    let root = random_backbones();
    load("resnet34");
    let error =
        Registry::new(&root).load("efficientnet_lite0", Device::Cpu).err().expect("not exported here");
    let message = error.to_string();
    assert!(message.contains("available: densenet121, efficientnetb0, efficientnetb2, "), "{message}");
    assert!(message.contains("seresnext50, xception)"), "{message}");
    assert!(message.contains("python trainer-image/export_backbones.py NAME --out DIR"), "{message}");
    assert_eq!(error.exit_code(), ocellus_trainer::error::EXIT_BAD_INPUT);

    let empty = tempfile::tempdir().unwrap();
    let error = Registry::new(empty.path()).load("resnet50", Device::Cpu).err().expect("empty directory");
    let message = error.to_string();
    assert!(message.contains("available: none"), "{message}");
    let command =
        format!("python trainer-image/export_backbones.py resnet50 --out {}", empty.path().display());
    assert!(message.contains(&command), "{message}");
    assert!(message.contains("--random-weights"), "{message}");
}
