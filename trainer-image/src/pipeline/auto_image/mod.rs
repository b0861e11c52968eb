//! The auto image model: AutoML fine-tuning of pretrained backbones on one image column.
//!
//! 1. Labelled rows are split 80/20 (stratified for classification) with the Experiment's seed.
//! 2. The search ([`search`]) runs seeded trials ([`space`]) as separate processes with
//!    successive halving, within `timeBudgetSeconds` and `maxTrials`; trials checkpoint every
//!    epoch in `DIR/trials/`, so running the same command after a kill resumes the search.
//! 3. The best trial's best epoch, or the average of its top epochs when that scores better on
//!    validation ([`averaging`]), becomes the scoring bundle (the fine-tuned TorchScript
//!    network, its preprocessing and its head); the test Dataset is scored through the bundle,
//!    the same code `ocellus predict` runs.

pub mod averaging;
pub mod checkpoint;
pub mod mixed_precision;
pub use crate::optimizer;
mod record;
pub mod schedule;
pub mod search;
pub mod space;
pub mod trial;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ocellus_crds::ExperimentStatus;
use ocellus_crds::dataset::ColumnType;
use ocellus_crds::experiment::{BestModel, Experiment, Metrics, Pipeline, TrialSummary, TrialsSummary};
use ocellus_dataset::normalized::NormalizedDataset;
use ocellus_report::RunRecord;
use ocellus_tabular::metrics::{evaluate, scorer_name};
use ocellus_tabular::task::{Target, TaskKind};
use serde_json::Value;
use tch::Device;

use self::search::{SearchSettings, TrialView, trial_dir};
use self::space::{SearchSpace, TrialConfig};
use ocellus_tabular::metrics::is_better;

use self::checkpoint::checkpoint_name;
use self::trial::{TrialData, eval_preprocess};
use crate::backbone::Registry;
use crate::bundle::{NetworkBundleParts, NetworkModel, ScoringBundle, write_network_bundle};
use crate::embed::{EmbedOptions, ImageInput};
use crate::finetune::{LinearProjection, standardisation};
use crate::image_cells::ImageCells;
use crate::pipeline::labelled::LabelledRows;
use crate::pipeline::outcome::{
    Outcome, Scoring, artifact_locations, bundle_staging, install_bundle, score_test,
};
use crate::pipeline::run_record;
use crate::progress::bar;
use crate::{Error, Result};
use ocellus_dataset::json_file;

/// Each class needs this many labelled rows, so the validation rows hold at least one of each.
const MIN_ROWS_PER_CLASS: usize = 5;
/// What averaging the top checkpoints costs, in epochs of the best trial: a forward pass over
/// the fit rows (BatchNorm statistics) and one over the validation rows.
const AVERAGING_EPOCHS: f64 = 0.5;

/// How the search runs on this machine (not part of the Experiment).
#[derive(Clone, Debug)]
pub struct AutoImageSettings {
    pub device: Device,
    /// Largest input side the search tries.
    pub max_input_size: u32,
    /// The `ocellus` binary, to start trial processes.
    pub program: PathBuf,
    pub cache_dir: PathBuf,
    pub embed: EmbedOptions,
}

pub fn run(
    experiment: &Experiment,
    train: &NormalizedDataset,
    test: Option<&NormalizedDataset>,
    registry: &Registry,
    settings: &AutoImageSettings,
    out: &Path,
) -> Result<Outcome> {
    let spec = &experiment.spec;
    let auto = &spec.auto_image;
    let name = experiment.metadata.name.as_deref().unwrap_or("experiment");
    let columns = &train.meta.columns;
    let image_column = check_columns(train, &spec.target)?;
    let architectures = allowed_architectures(registry, &auto.architectures)?;

    let labelled = LabelledRows::load(train, spec)?;
    // The final model is scored on these through its bundle, as the test rows are.
    let valid_rows = labelled.valid_rows();
    let LabelledRows { rows, target, y, scorer, fit, valid } = labelled;
    check_rows_per_class(&target, &y)?;
    if fit.len() < 4 || valid.is_empty() {
        return Err(Error::bad_input(format!(
            "{} labelled rows are too few to fit and validate a network; give at least 10",
            rows.len()
        )));
    }
    let cells = ImageCells::new(&train.dir, &settings.cache_dir);
    let cell_values: Vec<Option<&Value>> = rows.iter().map(|row| row.get(&image_column)).collect();
    let mut images = Vec::with_capacity(rows.len());
    for (row, input) in cells.resolve(&image_column, &cell_values)?.into_iter().enumerate() {
        match input {
            ImageInput::Path(path) => images.push(path),
            _ => {
                return Err(Error::bad_input(format!(
                    "row {}: column {image_column:?} has no image file; drop such rows at import \
                     (badImages: DropRow) for the auto image model",
                    row + 1
                )));
            }
        }
    }
    let (target_mean, target_std) = match target.task {
        TaskKind::Regression => standardisation(&fit.iter().map(|&i| y[i]).collect::<Vec<_>>()),
        _ => (0.0, 1.0),
    };
    let data = TrialData {
        images,
        y: y.clone(),
        fit: fit.clone(),
        valid: valid.clone(),
        target: target.clone(),
        scorer,
        target_mean,
        target_std,
        backbones: registry.root().canonicalize().map_err(Error::io(registry.root()))?,
    };

    // The trials' folder survives a kill; data.json must match, or the search starts afresh.
    let work = out.join("trials");
    prepare_work(&work, &data)?;
    let mut space = SearchSpace {
        architectures,
        augmentations: auto.augmentations.clone(),
        classification: target.task != TaskKind::Regression,
        max_input_size: settings.max_input_size,
        batch_sizes: if settings.device.is_cuda() { vec![64, 32, 128] } else { vec![16, 32] },
        max_epochs: vec![4, 8, 12],
    };
    let budget = Duration::from_secs(auto.time_budget_seconds.max(1) as u64);
    let (probe_size, probe_epoch) = check_budget(&space, &data, registry, settings, budget)?;
    let closing =
        Duration::from_secs_f64((budget.as_secs_f64() * 0.05).max(10.0).min(budget.as_secs_f64() / 4.0));
    let first_size = f64::from(space.sample(0, spec.seed as u64).input_size);
    let first_epoch = probe_epoch * (first_size / f64::from(probe_size)).powi(2);
    // Averaging the top checkpoints costs about half an epoch; it is planned for when the
    // budget holds enough epochs for a trial to have several good ones.
    let averaging = if (budget - closing).as_secs_f64() / first_epoch >= 6.0 {
        Duration::from_secs_f64(AVERAGING_EPOCHS * first_epoch)
    } else {
        Duration::ZERO
    };
    let reserve = closing + averaging;
    let affordable = (budget - reserve).as_secs_f64() / first_epoch;
    let max_trials = fit_to_budget(affordable, auto.max_trials.max(1) as usize, &mut space.max_epochs);
    println!(
        "{name}: {:?} on {:?} from {image_column:?}, {} rows ({} fit, {} validation), scorer {scorer:?}, \
         budget {}s (about {affordable:.0} epochs), up to {max_trials} trials, {} at a time",
        target.task,
        spec.target,
        rows.len(),
        fit.len(),
        valid.len(),
        budget.as_secs(),
        auto.parallel_trials
    );
    let search_settings = SearchSettings {
        budget,
        reserve,
        max_trials,
        parallel: auto.parallel_trials.max(1) as usize,
        scorer,
        program: settings.program.clone(),
        backbones: data.backbones.clone(),
        cpu: !settings.device.is_cuda(),
        gpus: if settings.device.is_cuda() {
            search::visible_gpus(tch::Cuda::device_count() as usize)
        } else {
            vec![]
        },
    };
    let seed = spec.seed as u64;
    let trials = search::search(&work, &search_settings, &|id| space.sample(id, seed))?;
    crate::progress::trials(trials_summary(&trials, scorer));
    crate::progress::stage("FinalModel", 95);
    let Some(best) = best_trial(&trials, scorer) else {
        return Err(Error::bad_input(format!(
            "no trial finished an epoch within the {}s budget; raise autoImage.timeBudgetSeconds",
            budget.as_secs()
        )));
    };
    let best_epoch = best.state.best_epoch.expect("a scored trial has a best epoch");
    println!(
        "{name}: best trial {} ({} {}px, {:?}, lr {:.2e}), epoch {best_epoch}: validation {} {:.5}",
        best.config.id,
        best.config.architecture,
        best.config.input_size,
        best.config.optimizer,
        best.config.learning_rate,
        scorer_name(scorer),
        best.state.best_score.unwrap_or(f64::NAN)
    );

    let manifest = registry.manifest(&best.config.architecture)?;
    let best_dir = trial_dir(&work, best.config.id);
    let time_left = budget.as_secs_f64() - search::seconds_spent(&work) - closing.as_secs_f64();
    let averaging_cost = AVERAGING_EPOCHS * best.state.history.iter().map(|r| r.seconds).fold(0.0, f64::max);
    let averaged = if time_left >= averaging_cost {
        averaging::average_top_checkpoints(
            &best_dir,
            &best.config,
            &best.state,
            &data,
            &manifest,
            settings.device,
        )?
    } else {
        println!(
            "{name}: averaging the top checkpoints skipped: it needs about {averaging_cost:.0}s, {:.0}s are left",
            time_left.max(0.0)
        );
        None
    };
    if let Some(averaged) = &averaged {
        println!(
            "{name}: the average of epochs {:?} scores {:.5} on validation; {}",
            averaged.epochs,
            averaged.score,
            if averaged.improves {
                "better, it is the final model"
            } else {
                "not better, the best epoch stays"
            }
        );
    }
    let averaged = averaged.filter(|a| a.improves);
    let checkpoint = match &averaged {
        Some(averaged) => averaged.save(&best_dir)?,
        None => best_dir.join(checkpoint_name(best_epoch)),
    };
    let staging = bundle_staging(out)?;
    let backbone_name = format!("auto_{}", best.config.architecture);
    let backbone_dir = staging.path().join("network").join(&backbone_name);
    let head = export_network(&checkpoint, &manifest, &best.config, &data, &backbone_dir)?;
    let bundle_dir = staging.path().join("scoring");
    let features: Vec<_> = columns.iter().filter(|c| c.name != spec.target).cloned().collect();
    write_network_bundle(
        &NetworkBundleParts {
            experiment: name,
            target_column: &spec.target,
            target: &target,
            columns: &features,
            network: NetworkModel {
                column: image_column.clone(),
                backbone: backbone_name,
                head: "head.json".into(),
                target_mean,
                target_std,
            },
            backbone: &backbone_dir,
            head: &head,
        },
        &bundle_dir,
    )?;
    let final_bundle = install_bundle(&bundle_dir, out)?;

    // Validation metrics of the final model, through the bundle.
    let bundle = ScoringBundle::load(&final_bundle, settings.device)?;
    let progress = bar(valid_rows.len(), "scoring the validation rows");
    let valid_predictions = bundle.predict(&valid_rows, &cells, &settings.embed, &progress)?;
    progress.finish_and_clear();
    let y_valid: Vec<f64> = valid.iter().map(|&i| y[i]).collect();
    let mut metrics =
        Metrics { validation: evaluate(&target, &y_valid, &valid_predictions), test: Vec::new() };
    let mut predictions_path = None;
    if let Some(test) = test {
        let scoring = Scoring { cache_dir: &settings.cache_dir, embed: &settings.embed };
        let (test_metrics, path) = score_test(&bundle, test, &target, &spec.target, &scoring, out)?;
        metrics.test = test_metrics;
        predictions_path = Some(path);
    }
    let score = metrics.validation.iter().find(|m| m.name == scorer_name(scorer)).map(|m| m.value);
    let config = &best.config;
    let status = ExperimentStatus {
        pipeline: Some(Pipeline::AutoImage),
        metrics: Some(metrics),
        best_model: Some(BestModel {
            architecture: Some(config.architecture.clone()),
            input_size: Some(config.input_size as i32),
            optimizer: Some(format!("{:?}", config.optimizer)),
            learning_rate: Some(config.learning_rate),
            batch_size: Some(best.state.batch_size.unwrap_or(config.batch_size) as i32),
            epochs: Some(best_epoch as i32),
            averaged_epochs: averaged.iter().flat_map(|a| a.epochs.iter().map(|&e| e as i32)).collect(),
            augmentations: match config.policy {
                space::AugmentPolicy::None => Vec::new(),
                space::AugmentPolicy::Listed => {
                    config.augmentations.iter().map(|a| format!("{a:?}")).collect()
                }
                space::AugmentPolicy::TrivialAugment => std::iter::once("TrivialAugment".to_owned())
                    .chain(config.augmentations.iter().map(|a| format!("{a:?}")))
                    .collect(),
            },
            scheduler: Some(format!("{:?}", config.scheduler)),
            crop_strategy: Some(format!("{:?}", config.crop)),
            learner: Some("fine-tuned network".into()),
            score,
            ..BestModel::default()
        }),
        trials: Some(trials_summary(&trials, scorer)),
        artifacts: Some(artifact_locations(out, &final_bundle, predictions_path)),
        ..ExperimentStatus::default()
    };
    json_file::write(&work.join("history.json"), &history(&trials))?;
    let record = RunRecord {
        trials: trials.iter().map(|t| record::trial_record(t, scorer_name(scorer))).collect(),
        ..run_record(
            experiment,
            Pipeline::AutoImage,
            &target,
            scorer,
            (train, test),
            vec![image_column.clone()],
        )
    };
    Ok(Outcome { status, record })
}

/// The one image column (`run` checked the spec against the columns with the contract's rules).
fn check_columns(train: &NormalizedDataset, target: &str) -> Result<String> {
    let mut images = train.meta.columns.iter().filter(|c| c.type_ == ColumnType::Image && c.name != target);
    match (images.next(), images.next()) {
        (Some(image), None) => Ok(image.name.clone()),
        _ => Err(Error::bad_input(format!(
            "the auto image model learns from exactly one image column; dataset {} has another number",
            train.dir.display()
        ))),
    }
}

/// Allowed backbones that exist here, with their native input size, in the spec's order.
fn allowed_architectures(registry: &Registry, allowed: &[String]) -> Result<Vec<(String, u32)>> {
    let available = registry.available();
    let names: Vec<String> = if allowed.is_empty() { available.clone() } else { allowed.to_vec() };
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in &names {
        match registry.manifest(name) {
            Ok(manifest) => found.push((name.clone(), manifest.input_size as u32)),
            Err(_) => missing.push(name.as_str()),
        }
    }
    // A backbone the spec names but this machine lacks is refused, as the embeddings pipeline
    // refuses it: silently searching fewer backbones would hide the typo.
    if found.is_empty() || (!allowed.is_empty() && !missing.is_empty()) {
        return Err(Error::bad_input(format!(
            "no backbone to fine-tune{}: {} has {}{}; export one with trainer-image/export_backbones.py \
             (see docs/backbones.md) or allow one of those in autoImage.architectures",
            if missing.is_empty() || allowed.is_empty() {
                String::new()
            } else {
                format!(" named {}", missing.join(", "))
            },
            registry.root().display(),
            if available.is_empty() { "none".to_owned() } else { available.join(", ") },
            if allowed.is_empty() {
                String::new()
            } else {
                format!(", and the spec allows only {}", allowed.join(", "))
            }
        )));
    }
    Ok(found)
}

fn check_rows_per_class(target: &Target, y: &[f64]) -> Result<()> {
    if target.task == TaskKind::Regression {
        return Ok(());
    }
    let mut counts = vec![0usize; target.classes.len()];
    for &label in y {
        counts[label as usize] += 1;
    }
    let few: Vec<String> = counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n < MIN_ROWS_PER_CLASS)
        .map(|(class, n)| format!("{:?} ({n})", target.classes[class]))
        .collect();
    if few.is_empty() {
        return Ok(());
    }
    Err(Error::bad_input(format!(
        "class(es) {} have fewer than {MIN_ROWS_PER_CLASS} labelled rows, too few to validate on; \
         add images of them or drop those rows",
        few.join(", ")
    )))
}

/// How many trials the budget affords, and the schedules' lengths capped to what it affords:
/// successive halving gives a trial about three epochs on average, so a budget of few epochs
/// runs fewer trials, and a schedule never plans more epochs than the budget holds (its learning
/// rate then anneals before time runs out).
pub fn fit_to_budget(affordable_epochs: f64, max_trials: usize, max_epochs: &mut Vec<usize>) -> usize {
    let cap = ((affordable_epochs * 0.9).floor() as usize).max(1);
    for epochs in max_epochs.iter_mut() {
        *epochs = (*epochs).min(cap);
    }
    max_epochs.dedup();
    ((affordable_epochs / 3.0).floor() as usize).clamp(1, max_trials)
}

/// Fails early when one epoch of the cheapest trial cannot fit in the budget; else returns the
/// probe's input size and the seconds of one epoch at that size.
fn check_budget(
    space: &SearchSpace,
    data: &TrialData,
    registry: &Registry,
    settings: &AutoImageSettings,
    budget: Duration,
) -> Result<(u32, f64)> {
    let first = space.sample(0, 0);
    let manifest = registry.manifest(&first.architecture)?;
    let size =
        space.architectures.iter().map(|(_, s)| (*s).min(space.max_input_size)).min().unwrap_or(96).min(96);
    let batch = first.batch_size.min(data.fit.len()).max(2);
    let model = registry.root().join(&first.architecture).join("model.pt");
    let step =
        trial::time_one_step(&model, manifest.feature_dim, data.outputs(), batch, size, settings.device, 5)?;
    let batches = data.fit.len().div_ceil(batch) as f64 + data.valid.len().div_ceil(batch) as f64 / 3.0;
    // Decoding and augmenting overlap the network; model loading and scoring come on top.
    let needed = step.as_secs_f64() * batches * 1.2 + 5.0;
    if needed > budget.as_secs_f64() {
        return Err(Error::bad_input(format!(
            "autoImage.timeBudgetSeconds {} is too small: one epoch of the cheapest trial ({} fit rows, \
             {size}px, batch {batch}) needs about {:.0}s here; set it to at least {:.0}",
            budget.as_secs(),
            data.fit.len(),
            needed,
            (needed * 2.0).ceil()
        )));
    }
    Ok((size, needed - 5.0))
}

/// Clears the trials' folder when it belongs to other data (a changed dataset or split).
fn prepare_work(work: &Path, data: &TrialData) -> Result<()> {
    let path = work.join("data.json");
    let current = serde_json::to_value(data).map_err(|e| Error::Internal(e.to_string()))?;
    if let Ok(Some(previous)) = json_file::read_if_present::<Value>(&path)
        && previous == current
    {
        println!("resuming the search in {}", work.display());
        return Ok(());
    }
    if work.exists() {
        std::fs::remove_dir_all(work).map_err(Error::io(work))?;
    }
    std::fs::create_dir_all(work).map_err(Error::io(work))?;
    Ok(json_file::write(&path, data)?)
}

fn best_trial(trials: &[TrialView], scorer: ocellus_crds::experiment::Scorer) -> Option<&TrialView> {
    trials.iter().filter(|t| t.state.best_score.is_some()).reduce(|a, b| {
        if is_better(scorer, b.state.best_score.unwrap_or(f64::NAN), a.state.best_score.unwrap_or(f64::NAN)) {
            b
        } else {
            a
        }
    })
}

/// The checkpoint's backbone as a backbone folder (with the trial's evaluation preprocessing in
/// its manifest) and its head as a linear projection.
fn export_network(
    checkpoint: &Path,
    manifest: &crate::backbone::BackboneManifest,
    config: &TrialConfig,
    data: &TrialData,
    folder: &Path,
) -> Result<LinearProjection> {
    std::fs::create_dir_all(folder).map_err(Error::io(folder))?;
    let model = folder.join("model.pt");
    std::fs::copy(checkpoint.join("model.pt"), &model).map_err(Error::io(&model))?;
    let eval = eval_preprocess(manifest, config.crop, config.input_size);
    let exported = crate::backbone::BackboneManifest {
        name: folder.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned(),
        input_size: i64::from(config.input_size),
        resize: crate::backbone::Resize {
            shorter_side: eval.shorter_side,
            center_crop: eval.crop,
            squash: eval.squash,
        },
        classifier: None,
        source: format!(
            "{} (fine-tuned by the ocellus auto image model, trial {})",
            manifest.source, config.id
        ),
        model_sha256: Some(ocellus_dataset::digest::sha256_file(&model)?),
        inference: None,
        ..manifest.clone()
    };
    json_file::write(&folder.join("manifest.json"), &exported)?;
    let (weight, bias) = checkpoint::read_head(checkpoint)?;
    let values = |t: tch::Tensor| Vec::<f32>::try_from(t.to_kind(tch::Kind::Float).view(-1));
    Ok(LinearProjection {
        input_dim: manifest.feature_dim as usize,
        output_dim: data.outputs() as usize,
        weight: values(weight)?,
        bias: values(bias)?,
    })
}

pub(crate) fn trials_summary(
    trials: &[TrialView],
    scorer: ocellus_crds::experiment::Scorer,
) -> TrialsSummary {
    let (completed, pruned) = search::outcome_counts(trials);
    let all = trials.iter().map(|t| TrialSummary {
        id: t.config.id as i32,
        score: t.state.best_score,
        architecture: Some(t.config.architecture.clone()),
        input_size: Some(t.config.input_size as i32),
        learning_rate: Some(t.config.learning_rate),
        epochs: Some(t.state.epochs_done as i32),
        ..TrialSummary::default()
    });
    super::outcome::trials_summary(scorer, (trials.len(), completed, pruned), all)
}

fn history(trials: &[TrialView]) -> Vec<Value> {
    trials.iter().map(|t| serde_json::json!({"config": t.config, "state": t.state})).collect()
}

#[cfg(test)]
mod tests {
    use super::fit_to_budget;

    #[test]
    fn a_small_budget_runs_fewer_trials_with_schedules_that_fit() {
        let mut epochs = vec![4, 8, 12];
        assert_eq!(fit_to_budget(2.5, 6, &mut epochs), 1);
        assert_eq!(epochs, vec![2]);
        let mut epochs = vec![4, 8, 12];
        assert_eq!(fit_to_budget(10.0, 6, &mut epochs), 3);
        assert_eq!(epochs, vec![4, 8, 9]);
        let mut epochs = vec![4, 8, 12];
        assert_eq!(fit_to_budget(500.0, 6, &mut epochs), 6, "maxTrials still bounds the search");
        assert_eq!(epochs, vec![4, 8, 12]);
    }
}
