//! One trial: fine-tune a backbone with one configuration, epoch by epoch, with a checkpoint
//! after each epoch, until a given epoch, early stopping, the schedule's end or a deadline.
//!
//! A trial is a pure function of its configuration, the data and its seed: batch order and
//! augmentations come from (seed, epoch, batch) alone, so a trial resumed from a checkpoint
//! trains exactly the batches it would have trained. Trials run as separate processes
//! (`ocellus trial`) and talk to the search only through files in their folder:
//!
//! ```text
//! trials/data.json              the rows, labels, split and scorer (written by the search)
//! trials/0003/config.json       the trial's configuration
//! trials/0003/state.json        epochs done, scores per epoch, best epoch, why it stopped
//! trials/0003/epoch-0004/       model.pt (TorchScript, buffers included), head.ot (the linear
//!                               head), train.ot (optimizer and loss-scale state)
//! ```
//! A trial keeps its latest checkpoint whole (to resume) and the network of its top epochs
//! (model.pt + head.ot, for [`super::averaging`]).
//! How those files are written so that a kill never leaves a half-written one is
//! [`super::checkpoint`]'s.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use image::RgbImage;
use ocellus_crds::contract::run_folder::TRIAL_STATE_FILE;
use ocellus_crds::experiment::Scorer;
use ocellus_tabular::metrics::{Predictions, evaluate, is_better, scorer_name};
use ocellus_tabular::task::{Target, TaskKind};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

use super::checkpoint::{load_head, read_state, remove_partial_checkpoints, write_checkpoint};
use super::mixed_precision::LossScaler;
use super::optimizer::Optimizer;
use super::schedule::learning_rate;
use super::space::{AugmentPolicy, TrialConfig};
use crate::augment::{Augmenter, CropStrategy, TrivialAugment};
use crate::backbone::{BackboneManifest, Registry};
use crate::preprocess::{Preprocess, batch_tensor};
use crate::{Error, Result};
use ocellus_dataset::json_file;

/// Everything trials share, written once by the search.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase")]
pub struct TrialData {
    /// Image file of each labelled row.
    pub images: Vec<PathBuf>,
    /// Encoded target of each row: class index, or the value.
    pub y: Vec<f64>,
    pub fit: Vec<usize>,
    pub valid: Vec<usize>,
    pub target: Target,
    pub scorer: Scorer,
    /// Regression targets are standardised with the fit rows' mean and deviation.
    pub target_mean: f64,
    pub target_std: f64,
    pub backbones: PathBuf,
}

impl TrialData {
    pub fn outputs(&self) -> i64 {
        match self.target.task {
            TaskKind::Regression => 1,
            _ => self.target.classes.len() as i64,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Ran its schedule's epochs.
    Finished,
    /// `patience` epochs without a better validation score.
    EarlyStopped,
    /// The search's time ran out before its next epoch.
    Budget,
    /// The loss or the validation score became infinite or NaN (a learning rate too high for
    /// this configuration); the last good checkpoint stays.
    Diverged,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EpochRecord {
    pub epoch: usize,
    pub loss: f64,
    pub score: f64,
    pub seconds: f64,
}

/// `state.json`: where a trial stands.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TrialState {
    pub epochs_done: usize,
    /// Epochs the last job asked for.
    pub until: usize,
    pub history: Vec<EpochRecord>,
    pub best_epoch: Option<usize>,
    pub best_score: Option<f64>,
    pub stopped: Option<StopReason>,
    /// Folder of the latest checkpoint.
    pub checkpoint: Option<String>,
    /// The batch size trained with: the configuration's, or on CUDA the largest below it that
    /// fits in memory (probed once, then kept, so a resumed trial trains the same batches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
}

impl TrialState {
    /// Best score within the first `epochs` epochs.
    pub fn score_at(&self, epochs: usize, scorer: Scorer) -> Option<f64> {
        self.history
            .iter()
            .filter(|r| r.epoch <= epochs)
            .map(|r| r.score)
            .reduce(|a, b| better_of(scorer, a, b))
    }
}

pub fn better_of(scorer: Scorer, a: f64, b: f64) -> f64 {
    if is_better(scorer, b, a) { b } else { a }
}

/// How the validation rows and the scoring bundle see an image under a crop strategy.
pub fn eval_preprocess(manifest: &BackboneManifest, crop: CropStrategy, size: u32) -> Preprocess {
    let shorter_side = match crop {
        CropStrategy::Resize | CropStrategy::CenterCrop => size,
        CropStrategy::RandomResizedCrop => (f64::from(size) / 0.875).round() as u32,
    };
    Preprocess {
        shorter_side,
        crop: size,
        squash: crop == CropStrategy::Resize,
        mean: manifest.mean,
        std: manifest.std,
    }
}

/// The trained network: the backbone as a trainable TorchScript module, plus a linear head.
pub struct Network {
    pub vs: nn::VarStore,
    pub module: tch::TrainableCModule,
    pub head: nn::Linear,
}

impl Network {
    /// The backbone's pretrained weights, or a checkpoint's.
    pub fn load(model: &Path, feature_dim: i64, outputs: i64, device: Device) -> Result<Self> {
        let vs = nn::VarStore::new(device);
        let module = tch::TrainableCModule::load(model, vs.root() / "backbone")?;
        let head = nn::linear(vs.root() / "head", feature_dim, outputs, Default::default());
        Ok(Self { vs, module, head })
    }

    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        Ok(self.head.forward(&self.module.forward_ts(&[input])?))
    }

    pub fn parameters(&self) -> BTreeMap<String, Tensor> {
        self.vs.variables().into_iter().collect()
    }
}

/// Where the trial runs and when it must stop.
pub struct TrialRun<'a> {
    pub dir: &'a Path,
    pub data: &'a TrialData,
    pub config: &'a TrialConfig,
    pub until: usize,
    /// Wall-clock time (UNIX seconds) by which the trial must have stopped.
    pub deadline: f64,
    pub device: Device,
}

pub fn now_seconds() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Runs (or resumes) a trial until `run.until` epochs, then returns its state.
pub fn run_trial(run: &TrialRun) -> Result<TrialState> {
    let config = run.config;
    // A trial process orphaned by a killed search finishes its epoch before it notices; the
    // lock keeps the resumed search's process for the same trial waiting until it has.
    let lock_path = run.dir.join("lock");
    let lock = std::fs::File::create(&lock_path).map_err(Error::io(&lock_path))?;
    lock.lock().map_err(Error::io(&lock_path))?;
    let mut state = read_state(run.dir)?;
    remove_partial_checkpoints(run.dir)?;
    let registry = Registry::new(&run.data.backbones);
    let manifest = registry.manifest(&config.architecture)?;
    let (model, saved) = match &state.checkpoint {
        Some(name) => {
            let folder = run.dir.join(name);
            let saved: BTreeMap<String, Tensor> =
                Tensor::load_multi(folder.join("train.ot"))?.into_iter().collect();
            (folder.join("model.pt"), Some((folder, saved)))
        }
        None => (registry.root().join(&config.architecture).join("model.pt"), None),
    };
    let batch_size = match state.batch_size {
        Some(batch) => batch,
        None if run.device.is_cuda() => {
            batch_size_that_fits(&model, &manifest, run.data.outputs(), config, run.device)?
        }
        None => config.batch_size,
    };
    state.batch_size = Some(batch_size);
    let config = &TrialConfig { batch_size, ..config.clone() };
    let mut network = Network::load(&model, manifest.feature_dim, run.data.outputs(), run.device)?;
    let mut optimizer = Optimizer::new(config.optimizer, config.weight_decay, network.parameters());
    let mut scaler = LossScaler::new(run.device.is_cuda());
    if let Some((folder, saved)) = &saved {
        load_head(folder, &mut network)?;
        optimizer.restore(saved).map_err(Error::Internal)?;
        scaler.restore(saved);
    }
    state.until = run.until;
    json_file::write(&run.dir.join(TRIAL_STATE_FILE), &state)?;

    let train = TrainLoader::new(Arc::new(run.data.clone()), config.clone(), &manifest);
    let eval = eval_preprocess(&manifest, config.crop, config.input_size);
    let steps_per_epoch = train.batches_per_epoch();
    let total_steps = steps_per_epoch * config.max_epochs;
    let parent = std::os::unix::process::parent_id();
    let mut last_epoch_seconds: Option<f64> = state.history.last().map(|r| r.seconds);
    while state.epochs_done < run.until.min(config.max_epochs) && state.stopped.is_none() {
        if let Some(seconds) = last_epoch_seconds
            && now_seconds() + seconds > run.deadline
        {
            state.stopped = Some(StopReason::Budget);
            break;
        }
        let epoch = state.epochs_done + 1;
        let started = Instant::now();
        network.module.set_train();
        let mut losses = Vec::new();
        for (batch, (rows, values)) in train.epoch(epoch).enumerate() {
            if std::os::unix::process::parent_id() != parent {
                // The search was killed: stop rather than write checkpoints nobody waits for.
                std::process::exit(1);
            }
            let values = values?;
            let step = (epoch - 1) * steps_per_epoch + batch;
            let input = batch_tensor(&values, rows.len(), config.input_size).to_device(run.device);
            let lr = learning_rate(config.scheduler, config.learning_rate, step, total_steps);
            let loss = train_step(&network, &mut optimizer, &mut scaler, &input, lr, |output| {
                loss(output, &rows, run.data, config.label_smoothing, run.device)
            })?;
            losses.push(loss.double_value(&[]));
        }
        network.module.set_eval();
        let predictions = predict(&network, run.data, &run.data.valid, &eval, run.device)?;
        let y_valid: Vec<f64> = run.data.valid.iter().map(|&i| run.data.y[i]).collect();
        let metrics = evaluate(&run.data.target, &y_valid, &predictions);
        let score =
            metrics.iter().find(|m| m.name == scorer_name(run.data.scorer)).map_or(f64::NAN, |m| m.value);
        let seconds = started.elapsed().as_secs_f64();
        let loss = losses.iter().sum::<f64>() / losses.len().max(1) as f64;
        if !loss.is_finite() || !score.is_finite() {
            println!(
                "trial {} epoch {epoch}: diverged (loss {loss}, validation {score}); stopping it",
                config.id
            );
            state.stopped = Some(StopReason::Diverged);
            break;
        }
        state.history.push(EpochRecord { epoch, loss, score, seconds });
        last_epoch_seconds = Some(seconds);
        if state.best_score.is_none_or(|best| is_better(run.data.scorer, score, best)) {
            state.best_score = Some(score);
            state.best_epoch = Some(epoch);
        }
        state.epochs_done = epoch;
        if epoch >= config.max_epochs {
            state.stopped = Some(StopReason::Finished);
        } else if epoch - state.best_epoch.unwrap_or(epoch) >= config.patience {
            state.stopped = Some(StopReason::EarlyStopped);
        }
        write_checkpoint(run.dir, &network, (&optimizer, &scaler), &mut state, run.data.scorer)?;
        println!(
            "trial {} epoch {epoch}/{}: loss {loss:.4}, validation {} {score:.5} (best {:.5} at epoch {}), {seconds:.1}s",
            config.id,
            config.max_epochs,
            scorer_name(run.data.scorer),
            state.best_score.unwrap_or(f64::NAN),
            state.best_epoch.unwrap_or(0),
        );
    }
    json_file::write(&run.dir.join(TRIAL_STATE_FILE), &state)?;
    Ok(state)
}

/// One optimisation step, as every trial takes it: forward (in mixed precision on CUDA), the
/// loss `loss_of` the float32 output, backward, update. Returns the loss.
pub fn train_step(
    network: &Network,
    optimizer: &mut Optimizer,
    scaler: &mut LossScaler,
    input: &Tensor,
    lr: f64,
    loss_of: impl FnOnce(&Tensor) -> Tensor,
) -> Result<Tensor> {
    let output = scaler.forward(|| network.forward(input))?.to_kind(Kind::Float);
    let loss = loss_of(&output);
    optimizer.zero_grad();
    scaler.backward(&loss)?;
    scaler.step(optimizer, lr);
    Ok(loss)
}

/// On CUDA, the largest batch, halving from the configuration's down to 8, whose training step
/// (mixed precision, AdamW's moments included) fits in the GPU's free memory. The probe trains a
/// separate copy of the network on random inputs, so the trial's own weights and BatchNorm
/// statistics never see them.
fn batch_size_that_fits(
    model: &Path,
    manifest: &BackboneManifest,
    outputs: i64,
    config: &TrialConfig,
    device: Device,
) -> Result<usize> {
    let out_of_memory = |message: &str| message.contains("out of memory");
    let fitted = largest_fitting(config.batch_size, 8, |batch| {
        // Most allocations fail as errors; the optimizer's in-place updates panic instead.
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            time_one_step(model, manifest.feature_dim, outputs, batch, config.input_size, device, 1)
        }));
        match attempt {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(error)) if out_of_memory(&error.to_string()) => Ok(false),
            Ok(Err(error)) => Err(error),
            Err(panic) => match panic.downcast_ref::<String>() {
                Some(message) if out_of_memory(message) => Ok(false),
                _ => std::panic::resume_unwind(panic),
            },
        }
    })?;
    fitted.ok_or_else(|| {
        Error::bad_input(format!(
            "even a batch of 8 images at {}px does not fit in the GPU's memory for {}; lower \
             --max-image-size, allow a smaller backbone in autoImage.architectures, or run fewer \
             parallelTrials",
            config.input_size, config.architecture
        ))
    })
}

/// The largest of `start`, `start / 2`, ... (not below `smallest`) for which `fits` holds.
pub fn largest_fitting(
    start: usize,
    smallest: usize,
    mut fits: impl FnMut(usize) -> Result<bool>,
) -> Result<Option<usize>> {
    let mut batch = start;
    while batch >= smallest.max(1) {
        if fits(batch)? {
            return Ok(Some(batch));
        }
        batch /= 2;
    }
    Ok(None)
}

fn loss(output: &Tensor, rows: &[usize], data: &TrialData, smoothing: f64, device: Device) -> Tensor {
    match data.target.task {
        TaskKind::Regression => {
            let targets: Vec<f32> =
                rows.iter().map(|&r| ((data.y[r] - data.target_mean) / data.target_std) as f32).collect();
            output
                .squeeze_dim(1)
                .mse_loss(&Tensor::from_slice(&targets).to_device(device), tch::Reduction::Mean)
        }
        _ => {
            let targets: Vec<i64> = rows.iter().map(|&r| data.y[r] as i64).collect();
            output.cross_entropy_loss::<Tensor>(
                &Tensor::from_slice(&targets).to_device(device),
                None,
                tch::Reduction::Mean,
                -100,
                smoothing,
            )
        }
    }
}

/// Predictions of the network for `rows`, images seen as `eval` prescribes.
pub fn predict(
    network: &Network,
    data: &TrialData,
    rows: &[usize],
    eval: &Preprocess,
    device: Device,
) -> Result<Predictions> {
    let output = forward_rows(network, data, rows, eval, device)?;
    Ok(match data.target.task {
        TaskKind::Regression => {
            let values = Vec::<f64>::try_from(output.view(-1))?;
            Predictions::Regression(
                values.into_iter().map(|v| v * data.target_std + data.target_mean).collect(),
            )
        }
        _ => Predictions::Probabilities {
            classes: data.target.classes.len(),
            data: Vec::<f64>::try_from(output.softmax(1, Kind::Double).view(-1))?,
        },
    })
}

/// The network's outputs for `rows` (no gradients, batches of 32), on the CPU in float64.
pub fn forward_rows(
    network: &Network,
    data: &TrialData,
    rows: &[usize],
    eval: &Preprocess,
    device: Device,
) -> Result<Tensor> {
    let _guard = tch::no_grad_guard();
    let mut outputs = Vec::new();
    for chunk in rows.chunks(32) {
        let mut values = vec![0f32; chunk.len() * eval.len()];
        for (&row, out) in chunk.iter().zip(values.chunks_exact_mut(eval.len())) {
            eval.write_hwc(&decode(&data.images[row])?, out);
        }
        let input = batch_tensor(&values, chunk.len(), eval.crop).to_device(device);
        outputs.push(network.forward(&input)?.to_kind(Kind::Double).to_device(Device::Cpu));
    }
    Ok(Tensor::cat(&outputs, 0))
}

fn decode(path: &Path) -> Result<RgbImage> {
    Ok(crate::preprocess::open_image(path)?.to_rgb8())
}

/// Training batches: shuffled fit rows, cropped and augmented on a background thread while the
/// network trains on the previous batch.
#[derive(Clone)]
struct TrainLoader {
    data: Arc<TrialData>,
    config: TrialConfig,
    normalize: Preprocess,
    listed: Augmenter,
    trivial: TrivialAugment,
}

type Batch = (Vec<usize>, Result<Vec<f32>>);

impl TrainLoader {
    fn new(data: Arc<TrialData>, config: TrialConfig, manifest: &BackboneManifest) -> Self {
        let normalize = Preprocess {
            shorter_side: config.input_size,
            crop: config.input_size,
            squash: false,
            mean: manifest.mean,
            std: manifest.std,
        };
        Self {
            normalize,
            listed: Augmenter::new(&config.augmentations),
            trivial: TrivialAugment::new(&config.augmentations),
            data,
            config,
        }
    }

    /// Full batches only: a batch of one breaks BatchNorm's batch statistics.
    fn batches_per_epoch(&self) -> usize {
        let n = self.data.fit.len();
        let batch = self.config.batch_size.min(n).max(2);
        (n / batch).max(1)
    }

    fn batch_rows(&self, epoch: usize) -> Vec<Vec<usize>> {
        let mut order = self.data.fit.clone();
        order
            .shuffle(&mut StdRng::seed_from_u64(self.config.seed ^ (epoch as u64).wrapping_mul(0x2545_F491)));
        let batch = self.config.batch_size.min(order.len()).max(2);
        order
            .chunks(batch)
            .filter(|rows| rows.len() == batch || order.len() < batch)
            .map(<[usize]>::to_vec)
            .collect()
    }

    fn make_batch(&self, rows: &[usize], seed: u64) -> Result<Vec<f32>> {
        let mut values = vec![0f32; rows.len() * self.normalize.len()];
        let mut rng = StdRng::seed_from_u64(seed);
        for (&row, out) in rows.iter().zip(values.chunks_exact_mut(self.normalize.len())) {
            let image = decode(&self.data.images[row])?;
            let crop = self.config.crop.crop(&image, self.config.input_size, true, &mut rng);
            let augmented = match self.config.policy {
                AugmentPolicy::Listed => self.listed.augment(crop, &mut rng),
                AugmentPolicy::TrivialAugment => self.trivial.augment(crop, &mut rng),
                AugmentPolicy::None => crop,
            };
            self.normalize.normalize_hwc(&augmented, out);
        }
        Ok(values)
    }

    /// The batches of `epoch`, prepared one ahead on another thread.
    fn epoch(&self, epoch: usize) -> impl Iterator<Item = Batch> + use<> {
        let batches = self.batch_rows(epoch);
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Batch>(2);
        let seed = self.config.seed.wrapping_add((epoch as u64) << 32);
        let loader = self.clone();
        std::thread::spawn(move || {
            for (index, rows) in batches.into_iter().enumerate() {
                let values = loader.make_batch(&rows, seed.wrapping_add(index as u64));
                if sender.send((rows, values)).is_err() {
                    return;
                }
            }
        });
        receiver.into_iter()
    }
}

/// Seconds one training step takes at `batch` images of `size` pixels, on random inputs: how
/// the search knows what one epoch costs. The fastest of up to `max_steps` steps counts: TorchScript's
/// profiling executor specialises the graph during the first ones, and other work on the
/// machine only ever makes a step slower.
pub fn time_one_step(
    model: &Path,
    feature_dim: i64,
    outputs: i64,
    batch: usize,
    size: u32,
    device: Device,
    max_steps: usize,
) -> Result<Duration> {
    let mut network = Network::load(model, feature_dim, outputs, device)?;
    network.module.set_train();
    let mut optimizer = Optimizer::new(super::space::OptimizerKind::AdamW, 0.0, network.parameters());
    let mut scaler = LossScaler::new(device.is_cuda());
    // Channels-last, as the training batches are.
    let input = Tensor::f_randn([batch as i64, i64::from(size), i64::from(size), 3], (Kind::Float, device))?
        .permute([0, 3, 1, 2]);
    let mut fastest = Duration::MAX;
    let probing = Instant::now();
    for step in 0..max_steps {
        let started = Instant::now();
        let _ = train_step(&network, &mut optimizer, &mut scaler, &input, 1e-6, |output| {
            output.square().mean(Kind::Float)
        })?;
        if let Device::Cuda(index) = device {
            tch::Cuda::synchronize(index as i64);
        }
        fastest = fastest.min(started.elapsed());
        if step >= 2 && probing.elapsed() > Duration::from_secs(15) {
            break;
        }
    }
    Ok(fastest)
}

#[cfg(test)]
mod tests {
    use super::largest_fitting;

    #[test]
    fn the_batch_probe_halves_until_a_batch_fits() {
        let mut tried = Vec::new();
        let fitted = largest_fitting(128, 8, |batch| {
            tried.push(batch);
            Ok(batch <= 40)
        });
        assert_eq!(fitted.unwrap(), Some(32));
        assert_eq!(tried, vec![128, 64, 32]);
        assert_eq!(largest_fitting(64, 8, |_| Ok(false)).unwrap(), None, "nothing fits");
        let failing = largest_fitting(64, 8, |_| Err(crate::Error::Internal("driver".into())));
        assert!(failing.is_err(), "an error other than out-of-memory is not a miss");
    }
}
