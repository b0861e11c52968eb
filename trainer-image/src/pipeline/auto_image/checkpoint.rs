//! A trial's files: its checkpoints (`epoch-NNNN/`: model.pt, head.ot, train.ot) and
//! `state.json`, written so that a kill at any moment leaves the old state or the new one.
//!
//! A checkpoint folder is written under a temporary name (`.epoch-NNNN.partial`), synced and
//! renamed into place; then state.json (written the same way) points at it. Partial folders
//! left by a kill are removed when the trial resumes.

use std::collections::BTreeMap;
use std::path::Path;

use ocellus_crds::contract::run_folder::{CHECKPOINT_PREFIX, TRIAL_STATE_FILE};
use ocellus_crds::experiment::Scorer;
use ocellus_dataset::json_file;
use tch::Tensor;

use super::averaging::top_epochs;
use super::mixed_precision::LossScaler;
use super::optimizer::Optimizer;
use super::trial::{Network, TrialState};
use crate::{Error, Result};

pub fn checkpoint_name(epoch: usize) -> String {
    format!("{CHECKPOINT_PREFIX}{epoch:04}")
}

pub fn read_state(dir: &Path) -> Result<TrialState> {
    let path = dir.join(TRIAL_STATE_FILE);
    match json_file::read_if_present(&path) {
        Ok(state) => Ok(state.unwrap_or_default()),
        Err(ocellus_dataset::Error::Json { source, .. }) => Err(Error::Internal(format!(
            "{}: unreadable trial state ({source}); delete the trial folder",
            path.display()
        ))),
        Err(error) => Err(error.into()),
    }
}

pub fn write_checkpoint(
    dir: &Path,
    network: &Network,
    (optimizer, scaler): (&Optimizer, &LossScaler),
    state: &mut TrialState,
    scorer: Scorer,
) -> Result<()> {
    let name = checkpoint_name(state.epochs_done);
    let partial = dir.join(format!(".{name}.partial"));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(Error::io(&partial))?;
    network.module.save(partial.join("model.pt"))?;
    save_head(&partial, network)?;
    let mut tensors = optimizer.state();
    if scaler.enabled() {
        tensors.extend(scaler.state());
    }
    Tensor::save_multi(
        &tensors.iter().map(|(n, t)| (n.as_str(), t)).collect::<Vec<_>>(),
        partial.join("train.ot"),
    )?;
    for file in ["model.pt", "head.ot", "train.ot"] {
        let path = partial.join(file);
        std::fs::File::open(&path).and_then(|f| f.sync_all()).map_err(Error::io(&path))?;
    }
    let folder = dir.join(&name);
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::rename(&partial, &folder).map_err(Error::io(&folder))?;
    state.checkpoint = Some(name);
    json_file::write(&dir.join(TRIAL_STATE_FILE), state)?;
    // The latest checkpoint stays whole (to resume); the top epochs keep their network (the
    // model, and what averaging needs); the rest goes.
    let top: Vec<String> = top_epochs(state, scorer).into_iter().map(checkpoint_name).collect();
    for entry in std::fs::read_dir(dir).map_err(Error::io(dir))?.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if !file_name.starts_with(CHECKPOINT_PREFIX)
            || state.checkpoint.as_deref() == Some(file_name.as_str())
        {
            continue;
        }
        if top.contains(&file_name) {
            let _ = std::fs::remove_file(entry.path().join("train.ot"));
        } else {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

/// Saves the linear head as `head.ot` in `folder`.
pub fn save_head(folder: &Path, network: &Network) -> Result<()> {
    let bias = network.head.bs.as_ref().expect("the head has a bias");
    Tensor::save_multi(&[("head.weight", &network.head.ws), ("head.bias", bias)], folder.join("head.ot"))?;
    Ok(())
}

/// The head of a checkpoint folder (`head.ot`, or `train.ot` in checkpoints of earlier versions).
pub fn read_head(folder: &Path) -> Result<(Tensor, Tensor)> {
    let file = ["head.ot", "train.ot"].into_iter().map(|f| folder.join(f)).find(|p| p.is_file());
    let file = file.ok_or_else(|| Error::Internal(format!("{}: no head.ot", folder.display())))?;
    let mut saved: BTreeMap<String, Tensor> = Tensor::load_multi(&file)?.into_iter().collect();
    let mut take = |name: &str| {
        saved.remove(name).ok_or_else(|| Error::Internal(format!("{}: no {name}", file.display())))
    };
    Ok((take("head.weight")?, take("head.bias")?))
}

/// Loads a checkpoint's head into `network`.
pub fn load_head(folder: &Path, network: &mut Network) -> Result<()> {
    let (weight, bias) = read_head(folder)?;
    let _guard = tch::no_grad_guard();
    network.head.ws.copy_(&weight);
    network.head.bs.as_mut().expect("the head has a bias").copy_(&bias);
    Ok(())
}

pub fn remove_partial_checkpoints(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(Error::io(dir))?.flatten() {
        if entry.file_name().to_string_lossy().ends_with(".partial") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}
