//! The search: asynchronous successive halving (ASHA, Li et al. 2020) over seeded trials, run
//! as `parallel` trial processes at once, within a wall-clock budget.
//!
//! Rungs are at 1, 3, 9, 27... epochs (reduction factor 3). Whenever a worker is free, the
//! highest-rung trial that ranks in the top third of its rung is promoted to the next rung;
//! otherwise a new trial starts. When no trial may start and none ranks for promotion, the
//! best unfinished trial continues, so the budget goes to the most promising model rather than
//! being left unused. Everything the search knows is in the trial folders, so running it again
//! after a kill picks up where it stopped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ocellus_crds::experiment::{Progress, Scorer};
use serde::{Deserialize, Serialize};

use super::space::TrialConfig;
use ocellus_tabular::metrics::{compare, is_better};

use super::checkpoint::read_state;
use super::trial::{StopReason, TrialState};
use crate::{Error, Result};
use ocellus_dataset::json_file;

pub const REDUCTION: usize = 3;

/// Epochs of rung `k`.
pub fn rung_epochs(k: usize) -> usize {
    REDUCTION.pow(k as u32)
}

/// A trial as the search sees it.
#[derive(Clone, Debug)]
pub struct TrialView {
    pub config: TrialConfig,
    pub state: TrialState,
    pub running: bool,
}

impl TrialView {
    fn done(&self) -> bool {
        self.state.stopped.is_some() || self.state.epochs_done >= self.config.max_epochs
    }

    /// Highest rung whose epochs this trial has completed.
    fn rung(&self) -> Option<usize> {
        (0..).take_while(|&k| rung_epochs(k) <= self.state.epochs_done).last()
    }
}

/// What a free worker does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Job {
    /// Start trial `id` and train it for `until` epochs.
    Start { id: usize, until: usize },
    /// Train trial `id` on to `until` epochs.
    Continue { id: usize, until: usize },
}

/// The ASHA decision, a pure function of the trials' states.
pub fn next_job(trials: &[TrialView], max_trials: usize, scorer: Scorer) -> Option<Job> {
    // A job cut short by a kill is finished first.
    if let Some(t) = trials.iter().find(|t| !t.running && !t.done() && t.state.until > t.state.epochs_done) {
        return Some(Job::Continue { id: t.config.id, until: t.state.until });
    }
    let idle = |t: &&TrialView| !t.running && !t.done();
    let max_rung = trials.iter().filter_map(TrialView::rung).max();
    for k in (0..=max_rung.unwrap_or(0)).rev() {
        let at_rung = rung_epochs(k);
        let mut scored: Vec<(&TrialView, f64)> = trials
            .iter()
            .filter(|t| t.state.epochs_done >= at_rung)
            .filter_map(|t| t.state.score_at(at_rung, scorer).map(|s| (t, s)))
            .collect();
        scored.sort_by(|a, b| compare(scorer, a.1, b.1));
        let top = scored.len() / REDUCTION;
        if let Some((t, _)) =
            scored.iter().take(top).find(|(t, _)| idle(t) && t.state.epochs_done < rung_epochs(k + 1))
        {
            return Some(Job::Continue {
                id: t.config.id,
                until: rung_epochs(k + 1).min(t.config.max_epochs),
            });
        }
    }
    if trials.len() < max_trials {
        let id = trials.len();
        return Some(Job::Start { id, until: rung_epochs(0) });
    }
    if trials.iter().any(|t| t.running) {
        return None;
    }
    // Nothing ranks for promotion and no trial may start: the best unfinished trial goes on.
    let score = |t: &TrialView| t.state.best_score.unwrap_or(f64::NAN);
    let best = trials
        .iter()
        .filter(|t| idle(t))
        .reduce(|a, b| if is_better(scorer, score(b), score(a)) { b } else { a })?;
    let next = (0..).map(rung_epochs).find(|&e| e > best.state.epochs_done).unwrap_or(best.config.max_epochs);
    Some(Job::Continue { id: best.config.id, until: next.min(best.config.max_epochs) })
}

/// `trials/search.json`: time spent by earlier runs of the same search.
#[derive(Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SearchLedger {
    seconds_spent: f64,
}

pub struct SearchSettings {
    pub budget: Duration,
    /// Kept free at the end for the bundle and the test rows.
    pub reserve: Duration,
    pub max_trials: usize,
    pub parallel: usize,
    pub scorer: Scorer,
    /// The `ocellus` binary that runs trials.
    pub program: PathBuf,
    pub backbones: PathBuf,
    pub cpu: bool,
    /// The CUDA devices this process may use (`CUDA_VISIBLE_DEVICES` ids); each trial process
    /// gets one of them, so a pod with N GPUs trains N trials at once.
    pub gpus: Vec<String>,
}

/// The CUDA devices visible to this process, as ids a child's `CUDA_VISIBLE_DEVICES` takes.
pub fn visible_gpus(count: usize) -> Vec<String> {
    let listed: Vec<String> = std::env::var("CUDA_VISIBLE_DEVICES")
        .map(|v| v.split(',').map(|d| d.trim().to_owned()).filter(|d| !d.is_empty()).collect())
        .unwrap_or_default();
    if listed.len() >= count {
        listed.into_iter().take(count).collect()
    } else {
        (0..count).map(|d| d.to_string()).collect()
    }
}

/// The GPU of the lowest slot no running trial holds.
fn free_gpu<'a>(gpus: &'a [String], running: &[(usize, Child, Option<usize>)]) -> Option<(usize, &'a str)> {
    (0..gpus.len())
        .find(|slot| running.iter().all(|(_, _, s)| *s != Some(*slot)))
        .map(|slot| (slot, gpus[slot].as_str()))
}

/// Seconds the search in `work` has spent, over all its runs.
pub fn seconds_spent(work: &Path) -> f64 {
    // A torn ledger counts as no time spent: the budget is a guide, not an invariant.
    json_file::read_if_present::<SearchLedger>(&work.join("search.json"))
        .ok()
        .flatten()
        .map_or(0.0, |ledger| ledger.seconds_spent)
}

pub fn trial_dir(work: &Path, id: usize) -> PathBuf {
    work.join(format!("{id:04}"))
}

/// Runs the search in `work` (which holds data.json) and returns every trial it started.
pub fn search(
    work: &Path,
    settings: &SearchSettings,
    sample: &dyn Fn(usize) -> TrialConfig,
) -> Result<Vec<TrialView>> {
    let ledger_path = work.join("search.json");
    let ledger: SearchLedger = json_file::read_if_present(&ledger_path).ok().flatten().unwrap_or_default();
    let started = Instant::now();
    let spent = |started: &Instant| ledger.seconds_spent + started.elapsed().as_secs_f64();
    let deadline = super::trial::now_seconds() + (settings.budget.as_secs_f64() - ledger.seconds_spent)
        - settings.reserve.as_secs_f64();
    let mut trials = existing_trials(work)?;
    let mut running: Vec<(usize, Child, Option<usize>)> = Vec::new();
    // With several GPUs, every GPU trains a trial: a pod that asks for N GPUs uses N.
    let parallel = settings.parallel.max(settings.gpus.len());
    let threads = (std::thread::available_parallelism().map_or(1, |n| n.get()) / parallel).max(1);
    loop {
        // Reap finished trial processes.
        let mut index = 0;
        while index < running.len() {
            if let Some(status) = running[index].1.try_wait().map_err(|e| Error::Internal(e.to_string()))? {
                let (id, _, _) = running.remove(index);
                if !status.success() {
                    return Err(Error::Internal(format!(
                        "trial {id} failed ({status}); its output is above, its files in {}",
                        trial_dir(work, id).display()
                    )));
                }
                trials[id].state = read_state(&trial_dir(work, id))?;
                trials[id].running = false;
                crate::progress::trials(super::trials_summary(&trials, settings.scorer));
                json_file::write(&ledger_path, &SearchLedger { seconds_spent: spent(&started) })?;
            } else {
                index += 1;
            }
        }
        let time_left = deadline - super::trial::now_seconds();
        // A new trial starts only when its first epoch is likely to end before the deadline.
        let may_start = first_epoch_estimate(&trials, &sample(trials.len())).is_none_or(|s| s <= time_left);
        let max_trials = if may_start { settings.max_trials } else { trials.len() };
        let job = if running.len() < parallel && time_left > 0.0 {
            next_job(&trials, max_trials, settings.scorer)
        } else {
            None
        };
        match job {
            Some(job) => {
                let (id, until) = match job {
                    Job::Start { id, until } => {
                        let config = sample(id);
                        let dir = trial_dir(work, id);
                        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
                        json_file::write(&dir.join("config.json"), &config)?;
                        trials.push(TrialView { config, state: TrialState::default(), running: false });
                        (id, until)
                    }
                    Job::Continue { id, until } => (id, until),
                };
                let best = trials
                    .iter()
                    .filter_map(|t| t.state.best_score)
                    .reduce(|a, b| super::trial::better_of(settings.scorer, a, b));
                let config = &trials[id].config;
                println!(
                    "trial {id}/{}: {} {}px {:?} lr {:.2e} batch {} {:?} {:?} → epoch {until}; best so far {}; {:.0}s left",
                    settings.max_trials,
                    config.architecture,
                    config.input_size,
                    config.optimizer,
                    config.learning_rate,
                    config.batch_size,
                    config.crop,
                    config.policy,
                    best.map_or("-".to_owned(), |b| format!("{b:.5}")),
                    time_left.max(0.0),
                );
                let budget = settings.budget.as_secs_f64().max(1.0);
                crate::progress::progress(Progress {
                    stage: "Trial".into(),
                    percent: (100.0 * spent(&started) / budget).clamp(1.0, 99.0) as i32,
                    trial: Some(id as i32),
                    epoch: Some(trials[id].state.epochs_done as i32 + 1),
                    eta_seconds: Some(time_left.max(0.0) as i64),
                });
                let gpu = free_gpu(&settings.gpus, &running);
                let child = spawn_trial(work, id, until, deadline, threads, gpu.map(|g| g.1), settings)?;
                trials[id].running = true;
                running.push((id, child, gpu.map(|g| g.0)));
            }
            None if running.is_empty() => break,
            None => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    json_file::write(&ledger_path, &SearchLedger { seconds_spent: spent(&started) })?;
    Ok(trials)
}

/// Seconds the first epoch of `config` will take, from the slowest first epoch seen so far,
/// scaled by pixels per image and by the number of batches' worth of images (the same rows).
pub fn first_epoch_estimate(trials: &[TrialView], config: &TrialConfig) -> Option<f64> {
    trials
        .iter()
        .filter_map(|t| t.state.history.first().map(|r| (t, r.seconds)))
        .map(|(t, seconds)| seconds * (f64::from(config.input_size) / f64::from(t.config.input_size)).powi(2))
        .reduce(f64::max)
}

fn spawn_trial(
    work: &Path,
    id: usize,
    until: usize,
    deadline: f64,
    threads: usize,
    gpu: Option<&str>,
    settings: &SearchSettings,
) -> Result<Child> {
    let mut command = Command::new(&settings.program);
    if let Some(gpu) = gpu {
        command.env("CUDA_VISIBLE_DEVICES", gpu);
    }
    command
        .arg("--backbones")
        .arg(&settings.backbones)
        .arg("trial")
        .arg("--work")
        .arg(work)
        .arg("--id")
        .arg(id.to_string())
        .arg("--until")
        .arg(until.to_string())
        .arg("--deadline")
        .arg(format!("{deadline:.3}"))
        .arg("--threads")
        .arg(threads.to_string());
    if settings.cpu {
        command.arg("--cpu");
    }
    command.spawn().map_err(|e| Error::Internal(format!("cannot start {}: {e}", settings.program.display())))
}

/// Trials a previous run of this search started, in id order.
fn existing_trials(work: &Path) -> Result<Vec<TrialView>> {
    let mut trials = Vec::new();
    loop {
        let dir = trial_dir(work, trials.len());
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            break;
        }
        let config: TrialConfig = json_file::read(&config_path)?;
        trials.push(TrialView { config, state: read_state(&dir)?, running: false });
    }
    Ok(trials)
}

/// Counts for the status: (completed, pruned by successive halving or the budget).
pub fn outcome_counts(trials: &[TrialView]) -> (usize, usize) {
    let completed = trials
        .iter()
        .filter(|t| matches!(t.state.stopped, Some(StopReason::Finished | StopReason::EarlyStopped)))
        .count();
    (completed, trials.len() - completed)
}

#[cfg(test)]
mod tests {
    use super::super::space::{AugmentPolicy, OptimizerKind, SchedulerKind};
    use super::super::trial::EpochRecord;
    use super::*;
    use crate::augment::CropStrategy;

    fn view(id: usize, scores: &[f64], max_epochs: usize) -> TrialView {
        let config = TrialConfig {
            id,
            architecture: "a".into(),
            input_size: 96,
            optimizer: OptimizerKind::AdamW,
            learning_rate: 1e-3,
            weight_decay: 0.0,
            batch_size: 16,
            max_epochs,
            patience: 9,
            crop: CropStrategy::Resize,
            policy: AugmentPolicy::None,
            augmentations: vec![],
            scheduler: SchedulerKind::Step,
            label_smoothing: 0.0,
            seed: 0,
        };
        let history: Vec<EpochRecord> = scores
            .iter()
            .enumerate()
            .map(|(i, &score)| EpochRecord { epoch: i + 1, loss: 0.0, score, seconds: 1.0 })
            .collect();
        let best = history.iter().max_by(|a, b| a.score.total_cmp(&b.score));
        let state = TrialState {
            epochs_done: scores.len(),
            until: scores.len(),
            best_epoch: best.map(|r| r.epoch),
            best_score: best.map(|r| r.score),
            history,
            ..TrialState::default()
        };
        TrialView { config, state, running: false }
    }

    #[test]
    fn each_running_trial_holds_its_own_gpu() {
        let gpus = vec!["3".to_owned(), "5".to_owned()];
        let sleeper = || Command::new("true").spawn().unwrap();
        let mut running = vec![];
        assert_eq!(free_gpu(&gpus, &running), Some((0, "3")));
        running.push((0, sleeper(), Some(0)));
        assert_eq!(free_gpu(&gpus, &running), Some((1, "5")));
        running.push((1, sleeper(), Some(1)));
        assert_eq!(free_gpu(&gpus, &running), None, "both GPUs are busy");
        running.remove(0);
        assert_eq!(free_gpu(&gpus, &running), Some((0, "3")));
        assert!(free_gpu(&[], &running).is_none(), "on the CPU trials get no device");
    }

    #[test]
    fn the_first_trials_start_at_one_epoch() {
        assert_eq!(next_job(&[], 5, Scorer::Accuracy), Some(Job::Start { id: 0, until: 1 }));
        let trials = vec![view(0, &[0.5], 9)];
        assert_eq!(next_job(&trials, 5, Scorer::Accuracy), Some(Job::Start { id: 1, until: 1 }));
    }

    #[test]
    fn the_top_third_of_a_rung_is_promoted() {
        let trials = vec![view(0, &[0.5], 9), view(1, &[0.9], 9), view(2, &[0.7], 9)];
        assert_eq!(next_job(&trials, 10, Scorer::Accuracy), Some(Job::Continue { id: 1, until: 3 }));
        // Lower is better for RMSE: trial 0 leads.
        assert_eq!(next_job(&trials, 10, Scorer::RMSE), Some(Job::Continue { id: 0, until: 3 }));
    }

    #[test]
    fn a_running_or_promoted_trial_is_not_promoted_again() {
        let mut trials = vec![view(0, &[0.5], 9), view(1, &[0.9], 9), view(2, &[0.7], 9)];
        trials[1].running = true;
        assert_eq!(next_job(&trials, 10, Scorer::Accuracy), Some(Job::Start { id: 3, until: 1 }));
        let trials = vec![view(0, &[0.5], 9), view(1, &[0.9, 0.91, 0.92], 9), view(2, &[0.7], 9)];
        assert_eq!(next_job(&trials, 10, Scorer::Accuracy), Some(Job::Start { id: 3, until: 1 }));
    }

    #[test]
    fn a_first_epoch_is_estimated_from_the_slowest_seen_scaled_by_pixels() {
        let mut trials = vec![view(0, &[0.5], 9), view(1, &[0.6], 9)];
        trials[0].state.history[0].seconds = 10.0;
        trials[1].state.history[0].seconds = 4.0;
        let mut config = trials[0].config.clone();
        assert_eq!(first_epoch_estimate(&[], &config), None);
        config.input_size = 192; // twice the side of the trials seen: four times the pixels
        assert_eq!(first_epoch_estimate(&trials, &config), Some(40.0));
    }

    #[test]
    fn an_interrupted_job_is_finished_first() {
        let mut trials = vec![view(0, &[0.5], 9), view(1, &[0.9], 9)];
        trials[0].state.until = 3;
        assert_eq!(next_job(&trials, 10, Scorer::Accuracy), Some(Job::Continue { id: 0, until: 3 }));
    }

    #[test]
    fn with_no_trials_left_to_start_the_leader_trains_on_until_it_is_done() {
        let trials = vec![view(0, &[0.5], 4), view(1, &[0.9], 4)];
        assert_eq!(next_job(&trials, 2, Scorer::Accuracy), Some(Job::Continue { id: 1, until: 3 }));
        let trials = vec![view(0, &[0.5], 4), view(1, &[0.9, 0.9, 0.9], 4)];
        assert_eq!(next_job(&trials, 2, Scorer::Accuracy), Some(Job::Continue { id: 1, until: 4 }));
        let mut trials = vec![view(0, &[0.5], 4), view(1, &[0.9, 0.9, 0.9, 0.9], 4)];
        trials[1].state.stopped = Some(StopReason::Finished);
        assert_eq!(next_job(&trials, 2, Scorer::Accuracy), Some(Job::Continue { id: 0, until: 3 }));
        trials[0].state.stopped = Some(StopReason::EarlyStopped);
        assert_eq!(next_job(&trials, 2, Scorer::Accuracy), None);
    }
}
