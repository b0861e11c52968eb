//! The scoring bundle of the embeddings pipeline: everything needed to score new rows, in one
//! folder that can be copied anywhere.
//!
//! ```text
//! scoring/bundle.json                 what the model expects and how it was made, sha256 of every file
//! scoring/backbones/<arch>/           model.pt (+ inference.pt) and manifest.json, copied
//! scoring/projections/<col>.<arch>.json   the PCA fitted on the training rows
//! scoring/tabular.json                the encoder of the numeric, categorical and text columns
//! scoring/gbm/ or scoring/linear/     the LightGBM model, or the linear model (bundle.json's learner)
//! ```
//! The experiment computes its own test predictions through [`ScoringBundle`], the same code
//! `ocellus predict` runs, so both give the same numbers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use ocellus_dataset::json_file;
use ocellus_dataset::normalized::ColumnMeta;
use ocellus_tabular::columns::TabularEncoder;
use ocellus_tabular::learner::{FittedModel, LearnerKind};
use ocellus_tabular::matrix::Matrix;
use ocellus_tabular::metrics::Predictions;
use ocellus_tabular::pca::Pca;
use ocellus_tabular::task::{Target, TaskKind};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tch::Device;

use crate::backbone::{Backbone, Registry};
use crate::embed::{EmbedOptions, Embeddings, embed};
use crate::finetune::LinearProjection;
use crate::image_cells::ImageCells;
use crate::{Error, Result};

/// Version of the bundle format.
pub const BUNDLE_FORMAT: u32 = 1;

/// `bundle.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BundleManifest {
    pub format: u32,
    /// `ocellus` version that wrote it.
    pub ocellus_version: String,
    pub experiment: String,
    pub target: String,
    pub task: TaskKind,
    /// Class labels, in the order of the probability columns; empty for regression.
    pub classes: Vec<String>,
    /// Every column a row to score must have.
    pub columns: Vec<ColumnMeta>,
    /// One projected embedding per image column and architecture, in feature order.
    pub images: Vec<ImageFeature>,
    /// The embeddings pipeline's learner, saved in its folder ([`LearnerKind::folder`]). Absent
    /// in bundles written before the linear learner existed: those hold LightGBM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learner: Option<LearnerKind>,
    /// The auto image model's fine-tuned network, when the bundle holds one instead of a learner
    /// on features (then `images` is empty and there is no tabular.json, gbm/ or linear/).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkModel>,
    /// sha256 of each file, relative to the bundle folder.
    pub files: BTreeMap<String, String>,
}

/// A fine-tuned network: backbone folder (TorchScript + preprocessing in its manifest) and a
/// linear head on its pooled features.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NetworkModel {
    pub column: String,
    /// Folder under `backbones/`.
    pub backbone: String,
    /// JSON of the head: a linear map from features to class logits or the standardised value.
    pub head: String,
    /// Regression: prediction = output * targetStd + targetMean.
    pub target_mean: f64,
    pub target_std: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageFeature {
    pub column: String,
    pub architecture: String,
    /// Folder under `backbones/`: the architecture's name, or a fine-tuned copy's.
    pub backbone: String,
    /// Size of the embedding after the projection.
    pub dimension: usize,
    pub projection: String,
}

/// Backbone features → embedding: a PCA fitted on training rows, or the bottleneck learned by
/// fine-tuning.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Projection {
    Pca(Pca),
    Linear(LinearProjection),
}

impl Projection {
    pub fn transform(&self, matrix: &Matrix) -> Result<Matrix> {
        match self {
            Self::Pca(pca) => pca.transform(matrix).map_err(tabular_error),
            Self::Linear(linear) => {
                let mut out = vec![0f32; matrix.rows * linear.output_dim];
                for (row, values) in out.chunks_exact_mut(linear.output_dim).enumerate() {
                    linear.apply(matrix.row(row), values);
                }
                Matrix::new(matrix.rows, linear.output_dim, out).map_err(tabular_error)
            }
        }
    }
}

/// What a trained embeddings model is made of, before it is written.
pub struct BundleParts<'a> {
    pub experiment: &'a str,
    pub target_column: &'a str,
    pub target: &'a Target,
    pub columns: &'a [ColumnMeta],
    /// Each image feature, its projection, and the backbone folder it embeds with.
    pub projections: Vec<(ImageFeature, &'a Projection, PathBuf)>,
    pub encoder: &'a TabularEncoder,
    pub model: &'a FittedModel,
}

/// Writes the bundle into `dir`, which must not exist yet (the caller renames it into place).
pub fn write_bundle(parts: &BundleParts, dir: &Path) -> Result<()> {
    let mut images = Vec::new();
    for (feature, projection, source) in &parts.projections {
        copy_backbone(source, &dir.join("backbones").join(&feature.backbone))?;
        json_file::write(&dir.join(&feature.projection), projection)?;
        images.push(feature.clone());
    }
    json_file::write(&dir.join("tabular.json"), parts.encoder)?;
    parts.model.save(&dir.join(parts.model.kind().folder())).map_err(tabular_error)?;
    let manifest = BundleManifest {
        format: BUNDLE_FORMAT,
        ocellus_version: env!("CARGO_PKG_VERSION").to_owned(),
        experiment: parts.experiment.to_owned(),
        target: parts.target_column.to_owned(),
        task: parts.target.task,
        classes: parts.target.classes.clone(),
        columns: parts.columns.to_vec(),
        images,
        learner: Some(parts.model.kind()),
        network: None,
        files: BTreeMap::new(),
    };
    write_manifest_with_digests(dir, manifest)
}

/// What a trained auto image model is made of, before it is written.
pub struct NetworkBundleParts<'a> {
    pub experiment: &'a str,
    pub target_column: &'a str,
    pub target: &'a Target,
    pub columns: &'a [ColumnMeta],
    pub network: NetworkModel,
    /// The fine-tuned backbone folder (model.pt + manifest.json).
    pub backbone: &'a Path,
    pub head: &'a LinearProjection,
}

/// Writes an auto image model's bundle into `dir`, which must not exist yet.
pub fn write_network_bundle(parts: &NetworkBundleParts, dir: &Path) -> Result<()> {
    copy_backbone(parts.backbone, &dir.join("backbones").join(&parts.network.backbone))?;
    json_file::write(&dir.join(&parts.network.head), parts.head)?;
    let manifest = BundleManifest {
        format: BUNDLE_FORMAT,
        ocellus_version: env!("CARGO_PKG_VERSION").to_owned(),
        experiment: parts.experiment.to_owned(),
        target: parts.target_column.to_owned(),
        task: parts.target.task,
        classes: parts.target.classes.clone(),
        columns: parts.columns.to_vec(),
        images: Vec::new(),
        learner: None,
        network: Some(parts.network.clone()),
        files: BTreeMap::new(),
    };
    write_manifest_with_digests(dir, manifest)
}

fn copy_backbone(source: &Path, target: &Path) -> Result<()> {
    if target.exists() {
        return Ok(());
    }
    create_dir(target)?;
    let name = source.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let registry = Registry::new(source.parent().expect("a backbone folder has a parent"));
    let manifest = registry.manifest(name)?;
    let mut names = vec!["manifest.json".to_owned(), "model.pt".to_owned()];
    names.extend(manifest.inference.map(|i| i.file));
    for name in names {
        std::fs::copy(source.join(&name), target.join(&name)).map_err(Error::io(source.join(&name)))?;
    }
    Ok(())
}

fn write_manifest_with_digests(dir: &Path, mut manifest: BundleManifest) -> Result<()> {
    for path in walk(dir)? {
        let relative = path.strip_prefix(dir).expect("walk stays inside").to_string_lossy().into_owned();
        manifest.files.insert(relative, ocellus_dataset::digest::sha256_file(&path)?);
    }
    Ok(json_file::write(&dir.join("bundle.json"), &manifest)?)
}

/// A loaded bundle, ready to score rows.
pub struct ScoringBundle {
    pub dir: PathBuf,
    pub manifest: BundleManifest,
    pub target: Target,
    backbones: BTreeMap<String, Backbone>,
    projections: Vec<Projection>,
    /// The embeddings pipeline's model.
    encoder: Option<TabularEncoder>,
    model: Option<FittedModel>,
    /// The auto image model's head.
    head: Option<LinearProjection>,
}

impl ScoringBundle {
    /// Loads and checks every file against the sha256 the bundle lists.
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let path = dir.join("bundle.json");
        let text = std::fs::read_to_string(&path).map_err(|error| {
            if error.kind() == std::io::ErrorKind::NotFound {
                Error::bad_input(format!(
                    "{} is not a scoring bundle (no bundle.json): pass the scoring/ folder an `ocellus run` wrote",
                    dir.display()
                ))
            } else {
                Error::io(&path)(error)
            }
        })?;
        let manifest: BundleManifest = serde_json::from_str(&text).map_err(|error| {
            Error::bad_input(format!("{}: not a bundle manifest: {error}", path.display()))
        })?;
        if manifest.format != BUNDLE_FORMAT {
            return Err(Error::bad_input(format!(
                "{}: bundle format {} is not {BUNDLE_FORMAT}; score it with the ocellus version that wrote it ({})",
                path.display(),
                manifest.format,
                manifest.ocellus_version
            )));
        }
        for (file, expected) in &manifest.files {
            let actual = ocellus_dataset::digest::sha256_file(&dir.join(file))?;
            if &actual != expected {
                return Err(Error::bad_input(format!(
                    "{}: sha256 {actual} differs from the bundle's {expected}: the bundle was changed or damaged; copy it again",
                    dir.join(file).display()
                )));
            }
        }
        let registry = Registry::new(dir.join("backbones"));
        let mut backbones = BTreeMap::new();
        let mut projections = Vec::new();
        for feature in &manifest.images {
            if !backbones.contains_key(&feature.backbone) {
                let backbone = registry.load_for_embeddings(&feature.backbone, device)?;
                backbones.insert(feature.backbone.clone(), backbone);
            }
            projections.push(json_file::read(&dir.join(&feature.projection))?);
        }
        let (mut encoder, mut model, mut head) = (None, None, None);
        if let Some(network) = &manifest.network {
            backbones
                .insert(network.backbone.clone(), registry.load_for_embeddings(&network.backbone, device)?);
            head = Some(json_file::read(&dir.join(&network.head))?);
        } else {
            encoder = Some(json_file::read(&dir.join("tabular.json"))?);
            let kind = manifest.learner.unwrap_or_default();
            model = Some(FittedModel::load(kind, &dir.join(kind.folder())).map_err(tabular_error)?);
        }
        let target = Target { task: manifest.task, classes: manifest.classes.clone() };
        Ok(Self { dir: dir.to_owned(), manifest, target, backbones, projections, encoder, model, head })
    }

    /// Checks that `columns` has every column the model needs, by name.
    pub fn check_columns(&self, columns: &[String]) -> Result<()> {
        let missing: Vec<&str> = self
            .manifest
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .filter(|name| !columns.iter().any(|c| c == name))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(Error::bad_input(format!(
            "the rows to score lack column(s) {}: the model needs {}",
            missing.join(", "),
            self.manifest.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        )))
    }

    /// Predictions for `rows`; image cells are resolved by `cells`.
    pub fn predict(
        &self,
        rows: &[Map<String, Value>],
        cells: &ImageCells,
        options: &EmbedOptions,
        progress: &ProgressBar,
    ) -> Result<Predictions> {
        if let (Some(network), Some(head)) = (&self.manifest.network, &self.head) {
            return self.predict_with_network(network, head, rows, cells, options, progress);
        }
        let (Some(encoder), Some(model)) = (&self.encoder, &self.model) else {
            return Err(Error::Internal("the bundle has neither a network nor a learner".into()));
        };
        let mut blocks = Vec::new();
        for (feature, projection) in self.manifest.images.iter().zip(&self.projections) {
            let values: Vec<Option<&Value>> = rows.iter().map(|row| row.get(&feature.column)).collect();
            let inputs = cells.resolve(&feature.column, &values)?;
            let embeddings = embed(&self.backbones[&feature.backbone], &inputs, options, progress)?;
            blocks.push(project(projection, &embeddings)?);
        }
        blocks.push(encoder.transform(rows).map_err(tabular_error)?);
        let features = Matrix::hstack(&blocks.iter().collect::<Vec<_>>()).map_err(tabular_error)?;
        model.predict(&features).map_err(tabular_error)
    }

    fn predict_with_network(
        &self,
        network: &NetworkModel,
        head: &LinearProjection,
        rows: &[Map<String, Value>],
        cells: &ImageCells,
        options: &EmbedOptions,
        progress: &ProgressBar,
    ) -> Result<Predictions> {
        let values: Vec<Option<&Value>> = rows.iter().map(|row| row.get(&network.column)).collect();
        let inputs = cells.resolve(&network.column, &values)?;
        if let Some(row) = inputs.iter().position(|i| matches!(i, crate::embed::ImageInput::Missing)) {
            return Err(Error::bad_input(format!(
                "row {}: column {:?} has no image; the auto image model scores only rows with an image",
                row + 1,
                network.column
            )));
        }
        let features = embed(&self.backbones[&network.backbone], &inputs, options, progress)?;
        let mut outputs = vec![0f32; rows.len() * head.output_dim];
        for (row, out) in outputs.chunks_exact_mut(head.output_dim).enumerate() {
            head.apply(features.row(row), out);
        }
        Ok(match self.target.task {
            TaskKind::Regression => Predictions::Regression(
                outputs.iter().map(|&v| f64::from(v) * network.target_std + network.target_mean).collect(),
            ),
            _ => Predictions::Probabilities {
                classes: head.output_dim,
                data: outputs.chunks_exact(head.output_dim).flat_map(softmax).collect(),
            },
        })
    }
}

/// Projects embeddings; rows without an image stay NaN, which the GBM treats as missing.
pub fn project(projection: &Projection, embeddings: &Embeddings) -> Result<Matrix> {
    let matrix =
        Matrix::new(embeddings.rows(), embeddings.dim, embeddings.data.clone()).map_err(tabular_error)?;
    let mut projected = projection.transform(&matrix)?;
    let width = projected.cols;
    for row in 0..embeddings.rows() {
        if embeddings.is_missing(row) {
            projected.data[row * width..(row + 1) * width].fill(f32::NAN);
        }
    }
    Ok(projected)
}

/// Writes predictions as CSV: `prediction`, then one `p_<class>` column per class. Floats are
/// written in Rust's shortest round-trip form, so equal files mean equal predictions.
pub fn write_predictions(path: &Path, target: &Target, predictions: &Predictions) -> Result<()> {
    let mut writer =
        csv::Writer::from_path(path).map_err(|e| Error::bad_input(format!("{}: {e}", path.display())))?;
    let mut header = vec!["prediction".to_owned()];
    header.extend(target.classes.iter().map(|class| format!("p_{class}")));
    let csv_error = |e: csv::Error| Error::bad_input(format!("{}: {e}", path.display()));
    writer.write_record(&header).map_err(csv_error)?;
    for row in 0..predictions.len() {
        let mut record = Vec::with_capacity(header.len());
        match predictions {
            Predictions::Regression(values) => record.push(values[row].to_string()),
            Predictions::Probabilities { .. } => {
                let probabilities = predictions.probabilities(row);
                record.push(target.classes[argmax(probabilities)].clone());
                record.extend(probabilities.iter().map(f64::to_string));
            }
        }
        writer.write_record(&record).map_err(csv_error)?;
    }
    writer.flush().map_err(Error::io(path))
}

fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

pub fn argmax(values: &[f64]) -> usize {
    values.iter().enumerate().fold(0, |best, (i, v)| if *v > values[best] { i } else { best })
}

pub fn tabular_error(error: ocellus_tabular::Error) -> Error {
    match error {
        ocellus_tabular::Error::BadInput(message) => Error::bad_input(message),
        other => Error::Internal(other.to_string()),
    }
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(Error::io(dir))
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).map_err(Error::io(&folder))? {
            let path = entry.map_err(Error::io(&folder))?.path();
            if path.is_dir() { pending.push(path) } else { files.push(path) }
        }
    }
    files.sort();
    Ok(files)
}
