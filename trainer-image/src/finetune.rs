//! Fine-tuning of a backbone before embedding (`embeddings.fineTune`).
//!
//! The scripted backbone is loaded as a `TrainableCModule` (BatchNorm really switches between
//! train and eval), followed by a linear bottleneck of the candidate dimension and a task head:
//! cross-entropy over the classes, or mean squared error on the standardised target. AdamW
//! trains all of it for `epochs` passes over the fit rows, with the spec's augmentations
//! applied to each training image. The fine-tuned backbone is saved as a backbone folder and
//! the bottleneck becomes the projection: the embedding of an image is the bottleneck's output.

use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use ocellus_crds::experiment::Augmentation;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use crate::augment::Augmenter;
use crate::backbone::{BackboneManifest, Registry};
use crate::embed::ImageInput;
use crate::optimizer::Optimizer;
use crate::pipeline::auto_image::space::OptimizerKind;
use crate::preprocess::{Preprocess, batch_tensor};
use crate::{Error, Result};

/// How fine-tuning runs.
#[derive(Clone, Debug)]
pub struct FineTuneConfig {
    pub epochs: usize,
    pub augmentations: Vec<Augmentation>,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub seed: u64,
    pub device: Device,
}

/// What fine-tuning learns for the task.
pub enum Objective<'a> {
    /// Class index of each row, `classes` in all.
    Classes { labels: &'a [i64], classes: i64 },
    /// The numeric target of each row.
    Values(&'a [f64]),
}

/// A learned linear map from backbone features to the embedding: `x · weightᵀ + bias`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LinearProjection {
    pub input_dim: usize,
    pub output_dim: usize,
    /// Row-major `output_dim x input_dim`.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl LinearProjection {
    pub fn apply(&self, row: &[f32], out: &mut [f32]) {
        for (o, value) in out.iter_mut().enumerate() {
            let weights = &self.weight[o * self.input_dim..(o + 1) * self.input_dim];
            *value = self.bias[o] + weights.iter().zip(row).map(|(w, x)| w * x).sum::<f32>();
        }
    }
}

/// A fine-tuned backbone folder (model.pt + manifest.json) and its bottleneck.
pub struct FineTuned {
    pub folder: PathBuf,
    pub bottleneck: LinearProjection,
    /// Mean training loss of each epoch.
    pub epoch_losses: Vec<f64>,
}

/// Fine-tunes `architecture` on `images` (only rows that have an image) and writes the
/// result to `folder`.
#[allow(clippy::too_many_arguments)] // one call site, each argument a different thing
pub fn fine_tune(
    registry: &Registry,
    architecture: &str,
    images: &[ImageInput],
    objective: &Objective,
    dimension: usize,
    config: &FineTuneConfig,
    folder: &Path,
    progress: &ProgressBar,
) -> Result<FineTuned> {
    let manifest = registry.manifest(architecture)?;
    let preprocess = Preprocess::from(&manifest);
    let vs = nn::VarStore::new(config.device);
    let mut module =
        tch::TrainableCModule::load(registry.root().join(architecture).join("model.pt"), vs.root())?;
    let feature_dim = manifest.feature_dim;
    let bottleneck = nn::linear(vs.root() / "bottleneck", feature_dim, dimension as i64, Default::default());
    let outputs = match objective {
        Objective::Classes { classes, .. } => *classes,
        Objective::Values(_) => 1,
    };
    let head = nn::linear(vs.root() / "head", dimension as i64, outputs, Default::default());
    // torch.optim.AdamW's defaults (betas 0.9/0.999, eps 1e-8, weight decay 0.01).
    let mut optimizer = Optimizer::new(OptimizerKind::AdamW, 0.01, vs.variables().into_iter().collect());
    let (mean, std) = match objective {
        Objective::Values(values) => standardisation(values),
        Objective::Classes { .. } => (0.0, 1.0),
    };
    let augmenter = Augmenter::new(&config.augmentations);
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut order: Vec<usize> = (0..images.len()).collect();
    let batch_size = config.batch_size.max(2);
    let mut epoch_losses = Vec::new();
    module.set_train();
    for _ in 0..config.epochs {
        order.shuffle(&mut rng);
        let (mut total, mut batches) = (0.0, 0);
        // A batch of one breaks BatchNorm's batch statistics: the last short batch is dropped.
        for rows in order.chunks(batch_size).filter(|rows| rows.len() >= 2) {
            let mut values = vec![0f32; rows.len() * preprocess.len()];
            for (&row, out) in rows.iter().zip(values.chunks_exact_mut(preprocess.len())) {
                let image = decode(&images[row])?;
                preprocess.write_hwc(&augmenter.augment(image, &mut rng), out);
            }
            let input = batch_tensor(&values, rows.len(), preprocess.crop).to_device(config.device);
            let features = module.forward_ts(&[input])?;
            let output = head.forward(&bottleneck.forward(&features));
            let loss = match objective {
                Objective::Classes { labels, .. } => {
                    let targets: Vec<i64> = rows.iter().map(|&r| labels[r]).collect();
                    output.cross_entropy_for_logits(&Tensor::from_slice(&targets).to_device(config.device))
                }
                Objective::Values(values) => {
                    let targets: Vec<f32> = rows.iter().map(|&r| ((values[r] - mean) / std) as f32).collect();
                    output.squeeze_dim(1).mse_loss(
                        &Tensor::from_slice(&targets).to_device(config.device),
                        tch::Reduction::Mean,
                    )
                }
            };
            optimizer.zero_grad();
            loss.backward();
            optimizer.step(config.learning_rate, 1.0);
            total += loss.double_value(&[]);
            batches += 1;
            progress.inc(rows.len() as u64);
        }
        epoch_losses.push(total / f64::from(batches.max(1)));
    }
    module.set_eval();
    std::fs::create_dir_all(folder).map_err(Error::io(folder))?;
    let model_path = folder.join("model.pt");
    module.save(&model_path)?;
    write_manifest(&manifest, folder, &model_path, architecture)?;
    let bottleneck = LinearProjection {
        input_dim: feature_dim as usize,
        output_dim: dimension,
        weight: Vec::<f32>::try_from(bottleneck.ws.to_kind(Kind::Float).to_device(Device::Cpu).view(-1))?,
        bias: Vec::<f32>::try_from(
            bottleneck.bs.as_ref().expect("linear layers have a bias").to_device(Device::Cpu).view(-1),
        )?,
    };
    Ok(FineTuned { folder: folder.to_owned(), bottleneck, epoch_losses })
}

fn decode(input: &ImageInput) -> Result<image::RgbImage> {
    match input {
        ImageInput::Path(path) => Ok(crate::preprocess::open_image(path)?.to_rgb8()),
        ImageInput::Bytes(bytes, what) => Ok(crate::preprocess::decode_image(bytes, what)?.to_rgb8()),
        ImageInput::Missing => Err(Error::Internal("fine-tuning was given a row without an image".into())),
    }
}

pub(crate) fn standardisation(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, variance.sqrt().max(1e-12))
}

/// The pretrained manifest, pointing at the fine-tuned weights (and without the frozen
/// inference model, which holds the pretrained ones).
fn write_manifest(
    original: &BackboneManifest,
    folder: &Path,
    model: &Path,
    architecture: &str,
) -> Result<()> {
    let source = registry_manifest_json(original)?;
    let mut json: serde_json::Value = source;
    json["name"] = serde_json::Value::String(folder_name(folder)?);
    json["modelSha256"] = serde_json::Value::String(ocellus_dataset::digest::sha256_file(model)?);
    json["source"] =
        serde_json::Value::String(format!("{} (fine-tuned by ocellus from {architecture})", original.source));
    if let Some(object) = json.as_object_mut() {
        object.remove("inference");
    }
    let path = folder.join("manifest.json");
    Ok(ocellus_dataset::json_file::write(&path, &json)?)
}

fn registry_manifest_json(manifest: &BackboneManifest) -> Result<serde_json::Value> {
    serde_json::to_value(manifest).map_err(|e| Error::Internal(e.to_string()))
}

fn folder_name(folder: &Path) -> Result<String> {
    folder
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| Error::Internal(format!("{} has no folder name", folder.display())))
}
