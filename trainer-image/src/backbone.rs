//! Backbones: a TorchScript feature extractor plus a manifest, one folder per backbone.
//!
//! ```text
//! BACKBONES/efficientnet_lite0/model.pt        forward(x[N,3,H,W]) -> features[N,D]
//! BACKBONES/efficientnet_lite0/manifest.json   name, inputSize, resize, mean, std, featureDim, ...
//! ```
//! The format is documented in docs/backbones.md.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{CModule, Device, Kind, Tensor};

use crate::{Error, Result};

/// What a backbone folder says about its model.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackboneManifest {
    pub name: String,
    /// Version of this manifest format.
    pub format: u32,
    /// Side of the square input the network was trained at.
    pub input_size: i64,
    pub resize: Resize,
    /// Per-channel mean and standard deviation on RGB scaled to [0, 1].
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Length of the pooled feature vector `forward` returns.
    pub feature_dim: i64,
    /// The pretrained classification head, when the model keeps one.
    #[serde(default)]
    pub classifier: Option<Classifier>,
    pub source: String,
    pub license: String,
    /// False for a random-weights export (`export_backbones.py --random-weights`): right
    /// shapes, meaningless features, for shape tests only.
    #[serde(default = "pretrained_by_default")]
    pub pretrained: bool,
    /// sha256 of model.pt, checked on load when present.
    #[serde(default)]
    pub model_sha256: Option<String>,
    /// A faster, inference-only form of the same network (frozen, channels_last) for CPU embeddings.
    #[serde(default)]
    pub inference: Option<InferenceModel>,
}

/// `inference.pt`: BatchNorm folded into the convolutions, weights in channels_last; it cannot
/// be trained and is only used on the device it was made for.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InferenceModel {
    pub file: String,
    pub sha256: String,
    /// `cpu`: the only device it is made for today.
    pub device: String,
}

fn pretrained_by_default() -> bool {
    true
}

/// How an image becomes the network's input: shorter side to `shorterSide`, then a centre crop.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Resize {
    pub shorter_side: u32,
    pub center_crop: u32,
    /// Squash the whole image to `centerCrop` x `centerCrop` instead (aspect ratio ignored):
    /// how a network trained with the `Resize` crop strategy sees its images.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub squash: bool,
}

/// A TorchScript method mapping features to class logits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Classifier {
    pub method: String,
    pub classes: i64,
}

/// A directory of backbones.
#[derive(Clone, Debug)]
pub struct Registry {
    root: PathBuf,
}

impl Registry {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Names of the folders that hold a manifest, sorted.
    pub fn available(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.root) else { return vec![] };
        let mut names: Vec<String> = entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().join("manifest.json").is_file())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }

    fn folder(&self, name: &str) -> Result<PathBuf> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(Error::bad_input(format!(
                "{name:?} is not a backbone name: use lower-case letters, digits and '_'"
            )));
        }
        let folder = self.root.join(name);
        if folder.join("manifest.json").is_file() {
            return Ok(folder);
        }
        let available = self.available();
        let available = if available.is_empty() { "none".to_owned() } else { available.join(", ") };
        let root = self.root.display();
        let export = if ocellus_crds::experiment::STANDARD_ARCHITECTURES.contains(&name) {
            format!(
                "Export it with `python trainer-image/export_backbones.py {name} --out {root}` where \
                 the internet is reachable (pretrained weights; `--random-weights` gives an offline \
                 export for shape tests only), "
            )
        } else {
            "Export a standard architecture with `python trainer-image/export_backbones.py NAME --out \
             DIR`, "
                .to_owned()
        };
        Err(Error::bad_input(format!(
            "backbone {name:?} is not in {root} (available: {available}). {export}point --backbones \
             at a directory that has it, or put its folder (model.pt + manifest.json, see \
             docs/backbones.md) there; `make backbones` converts the test backbone efficientnet_lite0"
        )))
    }

    pub fn manifest(&self, name: &str) -> Result<BackboneManifest> {
        let path = self.folder(name)?.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
        let manifest: BackboneManifest = serde_json::from_str(&text).map_err(|error| {
            Error::bad_input(format!("{}: not a backbone manifest: {error}", path.display()))
        })?;
        if manifest.name != name {
            return Err(Error::bad_input(format!(
                "{}: names backbone {:?} but lives in folder {name:?}; rename one of them",
                path.display(),
                manifest.name
            )));
        }
        Ok(manifest)
    }

    /// Loads a backbone in inference mode on `device`, checking model.pt against its manifest.
    pub fn load(&self, name: &str, device: Device) -> Result<Backbone> {
        let manifest = self.manifest(name)?;
        let model_path = self.folder(name)?.join("model.pt");
        load_checked(manifest, model_path, device)
    }

    /// Loads the fastest form of a backbone for embeddings on `device`: its frozen
    /// `inference.pt` on CPU when the folder has one, else model.pt.
    pub fn load_for_embeddings(&self, name: &str, device: Device) -> Result<Backbone> {
        let manifest = self.manifest(name)?;
        let folder = self.folder(name)?;
        match &manifest.inference {
            Some(inference) if inference.device == "cpu" && device == Device::Cpu => {
                let path = folder.join(&inference.file);
                let expected = Some(inference.sha256.clone());
                load_checked(BackboneManifest { model_sha256: expected, ..manifest }, path, device)
            }
            _ => load_checked(manifest, folder.join("model.pt"), device),
        }
    }
}

fn load_checked(manifest: BackboneManifest, model_path: PathBuf, device: Device) -> Result<Backbone> {
    if !model_path.is_file() {
        return Err(Error::bad_input(format!(
            "{}: missing, although the backbone's manifest.json names it: copy the whole folder \
             that `make backbones` (or export_backbones.py) wrote, every file in it",
            model_path.display()
        )));
    }
    if let Some(expected) = &manifest.model_sha256 {
        let actual = ocellus_dataset::digest::sha256_file(&model_path)?;
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(Error::bad_input(format!(
                "{}: sha256 {actual} does not match the manifest's {expected}; the file is \
                 damaged or from another export: export the backbone again",
                model_path.display()
            )));
        }
    }
    let mut module = CModule::load_on_device(&model_path, device)?;
    module.set_eval();
    Ok(Backbone { manifest, module, model_path, device, kind: Kind::Float })
}

/// A loaded backbone, ready for inference.
pub struct Backbone {
    pub manifest: BackboneManifest,
    module: CModule,
    model_path: PathBuf,
    device: Device,
    kind: Kind,
}

impl Backbone {
    /// Runs the network in half precision (CUDA only: CPU kernels for half are slow or missing).
    pub fn use_half(&mut self) -> Result<()> {
        if !self.device.is_cuda() {
            return Err(Error::bad_input("half precision needs a CUDA device; this run is on the CPU"));
        }
        self.module.to(self.device, Kind::Half, false);
        self.kind = Kind::Half;
        Ok(())
    }

    /// The same network loaded again on `device`, in the same precision: one replica per GPU
    /// when embeddings are spread over several (its file was checked when `self` was loaded).
    pub fn replica(&self, device: Device) -> Result<Backbone> {
        let mut module = CModule::load_on_device(&self.model_path, device)?;
        module.set_eval();
        if self.kind != Kind::Float {
            module.to(device, self.kind, false);
        }
        Ok(Backbone {
            manifest: self.manifest.clone(),
            module,
            model_path: self.model_path.clone(),
            device,
            kind: self.kind,
        })
    }

    pub fn model_path(&self) -> &Path {
        &self.model_path
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Pooled features `[N, featureDim]` of a normalised batch `[N, 3, H, W]`.
    pub fn features(&self, batch: &Tensor) -> Result<Tensor> {
        let input = batch.to_device(self.device).to_kind(self.kind);
        let features = tch::no_grad(|| self.module.forward_ts(&[input]))?.to_kind(Kind::Float);
        let expected = [batch.size()[0], self.manifest.feature_dim];
        if features.size() != expected {
            return Err(Error::bad_input(format!(
                "{}: returned features of shape {:?}, the manifest promises {expected:?}",
                self.model_path.display(),
                features.size()
            )));
        }
        Ok(features)
    }

    /// Logits of the pretrained classification head for `features`.
    pub fn classifier_logits(&self, features: &Tensor) -> Result<Tensor> {
        let Some(classifier) = &self.manifest.classifier else {
            return Err(Error::bad_input(format!(
                "backbone {} has no pretrained classifier in its manifest",
                self.manifest.name
            )));
        };
        Ok(tch::no_grad(|| self.module.method_ts(&classifier.method, &[features.shallow_clone()]))?)
    }
}
