//! Averaging the best trial's top checkpoints: the weights of its best `TOP_CHECKPOINTS`
//! epochs (by validation score), averaged uniformly, as stochastic weight averaging does over
//! one trajectory (Izmailov et al. 2018). Epochs of one trial start from the same pretrained
//! weights and lie in one basin, so their average is a model too, often a flatter and better one.
//!
//! BatchNorm's running statistics are buffers that TorchScript keeps out of reach of tch, so
//! they cannot be averaged; the averaged network instead re-estimates them with forward passes
//! in training mode over the fit rows (as `torch.optim.swa_utils.update_bn` does), starting
//! from the best epoch's statistics. The average then becomes the final model only when it
//! scores better on the validation rows than the best epoch alone.

use std::path::{Path, PathBuf};

use ocellus_tabular::metrics::{compare, evaluate, is_better, scorer_name};
use tch::Device;

use super::checkpoint::{checkpoint_name, load_head, save_head};
use super::space::TrialConfig;
use super::trial::{Network, TrialData, TrialState, eval_preprocess, forward_rows, predict};
use crate::backbone::BackboneManifest;
use crate::{Error, Result};

/// Checkpoints a trial keeps for averaging, besides its latest (to resume).
pub const TOP_CHECKPOINTS: usize = 3;

/// Folder of the averaged network in a trial's folder (model.pt + head.ot).
pub const AVERAGED: &str = "averaged";

/// The epochs of a trial's top checkpoints, best first.
pub fn top_epochs(state: &TrialState, scorer: ocellus_crds::experiment::Scorer) -> Vec<usize> {
    let mut records: Vec<_> = state.history.iter().collect();
    records.sort_by(|a, b| compare(scorer, a.score, b.score).then(a.epoch.cmp(&b.epoch)));
    records.into_iter().take(TOP_CHECKPOINTS).map(|r| r.epoch).collect()
}

/// The averaged network and its validation score.
pub struct Averaged {
    pub epochs: Vec<usize>,
    pub network: Network,
    pub score: f64,
    /// Whether it scores better than the trial's best epoch.
    pub improves: bool,
}

impl Averaged {
    /// Writes the averaged network into `dir/averaged/` (atomically) and returns that folder,
    /// a checkpoint folder as the bundle's export reads it.
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        let folder = dir.join(AVERAGED);
        let partial = dir.join(format!(".{AVERAGED}.partial"));
        let _ = std::fs::remove_dir_all(&partial);
        std::fs::create_dir_all(&partial).map_err(Error::io(&partial))?;
        self.network.module.save(partial.join("model.pt"))?;
        save_head(&partial, &self.network)?;
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::rename(&partial, &folder).map_err(Error::io(&folder))?;
        Ok(folder)
    }
}

/// Averages the top checkpoints of the trial in `dir`; `None` when fewer than two are there.
pub fn average_top_checkpoints(
    dir: &Path,
    config: &TrialConfig,
    state: &TrialState,
    data: &TrialData,
    manifest: &BackboneManifest,
    device: Device,
) -> Result<Option<Averaged>> {
    let epochs: Vec<usize> = top_epochs(state, data.scorer)
        .into_iter()
        .filter(|&e| dir.join(checkpoint_name(e)).join("model.pt").is_file())
        .collect();
    if epochs.len() < 2 {
        return Ok(None);
    }
    let load = |epoch: usize| -> Result<Network> {
        let folder = dir.join(checkpoint_name(epoch));
        let mut network =
            Network::load(&folder.join("model.pt"), manifest.feature_dim, data.outputs(), device)?;
        load_head(&folder, &mut network)?;
        Ok(network)
    };
    let mut network = load(epochs[0])?;
    {
        let _guard = tch::no_grad_guard();
        let mut sums = network.parameters();
        for &epoch in &epochs[1..] {
            let other = load(epoch)?.parameters();
            for (name, sum) in &mut sums {
                let value = other.get(name).ok_or_else(|| {
                    Error::Internal(format!("epoch {epoch} of trial {} lacks {name}", config.id))
                })?;
                let _ = sum.g_add_(value);
            }
        }
        for sum in sums.values_mut() {
            let _ = sum.g_div_scalar_(epochs.len() as f64);
        }
    }
    let eval = eval_preprocess(manifest, config.crop, config.input_size);
    // A last batch of one row would break BatchNorm in training mode.
    let fit = &data.fit[..data.fit.len() - usize::from(data.fit.len() % 32 == 1)];
    network.module.set_train();
    let _ = forward_rows(&network, data, fit, &eval, device)?;
    network.module.set_eval();
    let predictions = predict(&network, data, &data.valid, &eval, device)?;
    let y_valid: Vec<f64> = data.valid.iter().map(|&i| data.y[i]).collect();
    let score = evaluate(&data.target, &y_valid, &predictions)
        .iter()
        .find(|m| m.name == scorer_name(data.scorer))
        .map_or(f64::NAN, |m| m.value);
    let improves = state.best_score.is_some_and(|best| is_better(data.scorer, score, best));
    Ok(Some(Averaged { epochs, network, score, improves }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::auto_image::trial::EpochRecord;
    use ocellus_crds::experiment::Scorer;

    #[test]
    fn the_top_epochs_are_the_best_scores_first() {
        let record = |epoch, score| EpochRecord { epoch, loss: 0.0, score, seconds: 1.0 };
        let state = TrialState {
            history: vec![record(1, 0.5), record(2, 0.8), record(3, 0.7), record(4, 0.8), record(5, 0.6)],
            ..TrialState::default()
        };
        assert_eq!(top_epochs(&state, Scorer::Accuracy), vec![2, 4, 3], "ties go to the earlier epoch");
        assert_eq!(top_epochs(&state, Scorer::LogLoss), vec![1, 5, 3], "lower is better for a loss");
    }
}
