//! The test backbone is really ImageNet-pretrained, Rust computes what PyTorch computes,
//! and the TorchScript file can be fine-tuned. Needs `make backbones` (make test runs it).

use std::path::{Path, PathBuf};

use ocellus_trainer::backbone::Registry;
use ocellus_trainer::preprocess::{Preprocess, open_image};
use tch::nn::{ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor, nn};

const NAME: &str = "efficientnet_lite0";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn registry() -> Registry {
    let root = std::env::var_os("OCELLUS_BACKBONES").map(PathBuf::from).unwrap_or(repo().join("backbones"));
    assert!(
        root.join(NAME).join("manifest.json").is_file(),
        "{} has no {NAME}: run `make backbones` first (make test does)",
        root.display()
    );
    Registry::new(root)
}

fn top1(registry: &Registry, image: &str) -> (i64, f64) {
    let backbone = registry.load(NAME, Device::Cpu).unwrap();
    let input = Preprocess::from(&backbone.manifest)
        .tensor(&open_image(&repo().join("testdata").join(image)).unwrap());
    let logits = backbone.classifier_logits(&backbone.features(&input.unsqueeze(0)).unwrap()).unwrap();
    let probabilities = logits.softmax(-1, Kind::Float);
    let (value, index) = probabilities.max_dim(-1, false);
    (index.int64_value(&[0]), value.double_value(&[0]))
}

#[test]
fn a_real_cat_photo_lands_in_imagenet_cat_classes() {
    let (class, probability) = top1(&registry(), "chelsea.png");
    assert!((281..=285).contains(&class), "chelsea classified as {class} ({probability:.3})");
}

#[test]
fn a_real_espresso_photo_is_espresso() {
    let (class, probability) = top1(&registry(), "coffee.png");
    assert_eq!(class, 967, "coffee classified as {class} ({probability:.3})");
    assert!(probability > 0.8, "espresso with only {probability:.3}");
}

#[test]
fn features_match_pytorch_on_the_same_input() {
    let registry = registry();
    let reference = registry.root().join(NAME).join("reference");
    let input = Tensor::read_npy(reference.join("input.npy")).unwrap();
    let expected = Tensor::read_npy(reference.join("features.npy")).unwrap();
    let backbone = registry.load(NAME, Device::Cpu).unwrap();
    let features = backbone.features(&input).unwrap();
    assert_eq!(features.size(), [1, 1280]);
    let max_difference = (&features - &expected).abs().max().double_value(&[]);
    assert!(max_difference < 1e-4, "Rust and PyTorch features differ by {max_difference}");

    let logits = backbone.classifier_logits(&features).unwrap();
    let expected_logits = Tensor::read_npy(reference.join("logits.npy")).unwrap();
    let max_difference = (&logits - &expected_logits).abs().max().double_value(&[]);
    assert!(max_difference < 1e-3, "Rust and PyTorch logits differ by {max_difference}");
}

#[test]
fn the_torchscript_backbone_fine_tunes_from_rust() {
    let registry = registry();
    let path = registry.root().join(NAME).join("model.pt");
    let store = nn::VarStore::new(Device::Cpu);
    let mut module = tch::TrainableCModule::load(&path, store.root()).unwrap();
    module.set_train();
    let trainable = store.trainable_variables();
    assert!(trainable.len() > 100, "only {} trainable tensors", trainable.len());
    let before: Vec<Tensor> = trainable.iter().map(|t| t.detach().copy()).collect();

    let head = nn::linear(store.root() / "head", 1280, 2, Default::default());
    let mut optimizer = nn::Adam::default().build(&store, 1e-3).unwrap();
    tch::manual_seed(7);
    let images = Tensor::randn([4, 3, 96, 96], (Kind::Float, Device::Cpu));
    let labels = Tensor::from_slice(&[0i64, 1, 0, 1]);
    let features = module.forward_t(&images, true);
    let loss = nn::Module::forward(&head, &features).cross_entropy_for_logits(&labels);
    optimizer.backward_step(&loss);

    let changed = store
        .trainable_variables()
        .iter()
        .zip(&before)
        .filter(|(after, before)| after.size() == before.size() && !after.allclose(before, 0.0, 0.0, false))
        .count();
    assert!(changed > 100, "a training step changed only {changed} backbone tensors");
}

#[test]
fn a_missing_backbone_names_what_is_there_and_what_to_do() {
    let error = registry().load("xception", Device::Cpu).err().expect("xception is not converted here");
    let message = error.to_string();
    assert!(message.contains("available: efficientnet_lite0"), "{message}");
    assert!(message.contains("docs/backbones.md"), "{message}");
    assert_eq!(error.exit_code(), ocellus_trainer::error::EXIT_BAD_INPUT);
}

#[test]
fn a_damaged_model_file_is_refused_before_libtorch_reads_it() {
    let registry = registry();
    let copy = tempfile::tempdir().unwrap();
    let folder = copy.path().join(NAME);
    std::fs::create_dir(&folder).unwrap();
    std::fs::copy(registry.root().join(NAME).join("manifest.json"), folder.join("manifest.json")).unwrap();
    let model = std::fs::read(registry.root().join(NAME).join("model.pt")).unwrap();
    std::fs::write(folder.join("model.pt"), &model[..model.len() / 2]).unwrap();
    let error = Registry::new(copy.path()).load(NAME, Device::Cpu).err().expect("half a model must not load");
    assert!(error.to_string().contains("does not match the manifest"), "{error}");
}

#[test]
fn a_backbone_folder_missing_the_file_its_manifest_names_says_to_copy_the_whole_folder() {
    let registry = registry();
    let copy = tempfile::tempdir().unwrap();
    let folder = copy.path().join(NAME);
    std::fs::create_dir(&folder).unwrap();
    std::fs::copy(registry.root().join(NAME).join("manifest.json"), folder.join("manifest.json")).unwrap();
    std::fs::copy(registry.root().join(NAME).join("model.pt"), folder.join("model.pt")).unwrap();
    let error = Registry::new(copy.path())
        .load_for_embeddings(NAME, Device::Cpu)
        .err()
        .expect("the manifest names inference.pt, which is not there");
    let message = error.to_string();
    assert!(message.contains("inference.pt: missing"), "{message}");
    assert!(message.contains("copy the whole folder"), "{message}");
    assert_eq!(error.exit_code(), ocellus_trainer::error::EXIT_BAD_INPUT);
}

/// On a GPU machine (`make test-cuda`): libtorch must really see the GPU through our binary's
/// link flags, and the backbone must give the same features there.
#[cfg(feature = "cuda-tests")]
#[test]
fn cuda_is_available_and_agrees_with_the_cpu() {
    assert!(
        tch::Cuda::is_available(),
        "CUDA not available: libtorch_cuda was not linked or no GPU is visible"
    );
    let registry = registry();
    let reference = registry.root().join(NAME).join("reference");
    let input = Tensor::read_npy(reference.join("input.npy")).unwrap();
    let expected = Tensor::read_npy(reference.join("features.npy")).unwrap();
    let features =
        registry.load(NAME, Device::Cuda(0)).unwrap().features(&input).unwrap().to_device(Device::Cpu);
    let max_difference = (&features - &expected).abs().max().double_value(&[]);
    assert!(max_difference < 1e-3, "GPU and PyTorch CPU features differ by {max_difference}");
}

/// Batches spread over two replicas of the network (as over a pod's two GPUs; here two CPU
/// replicas) give exactly the features of one network, in row order, missing rows still NaN.
#[test]
fn batches_spread_over_replicas_give_the_features_of_one_network() {
    use ocellus_trainer::embed::{EmbedOptions, ImageInput, embed};
    let registry = registry();
    let backbone = registry.load_for_embeddings(NAME, Device::Cpu).unwrap();
    let photos = ["chelsea.png", "coffee.png"];
    let inputs: Vec<ImageInput> = (0..7)
        .map(|i| match i {
            3 => ImageInput::Missing,
            _ => ImageInput::Path(repo().join("testdata").join(photos[i % 2])),
        })
        .collect();
    let progress = indicatif::ProgressBar::hidden();
    let one = EmbedOptions { batch_size: 2, decode_threads: 1, devices: vec![Device::Cpu] };
    let single = embed(&backbone, &inputs, &one, &progress).unwrap();
    let two = EmbedOptions { devices: vec![Device::Cpu, Device::Cpu], ..one };
    let spread = embed(&backbone, &inputs, &two, &progress).unwrap();
    assert_eq!(spread.rows(), 7);
    assert!(spread.is_missing(3) && !spread.is_missing(4));
    for row in [0, 1, 2, 4, 5, 6] {
        let (a, b) = (single.row(row), spread.row(row));
        let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-4, "row {row} differs by {worst}");
    }
    assert!(spread.row(0) != spread.row(1), "rows are not mixed up");
}
