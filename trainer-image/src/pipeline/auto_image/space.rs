//! The search space of the auto image model and its seeded sampler.
//!
//! Trial 0 is a strong default (the backbone's first allowed architecture, AdamW at 1e-3,
//! cosine with warmup, centre crop, TrivialAugment); later trials are drawn at random, each from
//! its own seed, so trial `i` is the same configuration on every run and every machine.

use ocellus_crds::experiment::Augmentation;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::augment::CropStrategy;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OptimizerKind {
    AdamW,
    /// SGD with Nesterov momentum 0.9.
    SgdNesterov,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchedulerKind {
    /// Linear warmup over the first 5% of steps, then cosine decay to zero.
    CosineWarmup,
    /// Leslie Smith's one-cycle: up over the first 30% of steps, cosine down to 1/10000.
    OneCycle,
    /// Divide by 10 at 50% and 75% of the steps.
    Step,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AugmentPolicy {
    /// Every allowed augmentation, each at its own probability.
    Listed,
    /// One allowed augmentation per image at a random strength (TrivialAugment).
    TrivialAugment,
    None,
}

/// One trial's configuration: everything a trial's result depends on, with the data and seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrialConfig {
    pub id: usize,
    pub architecture: String,
    pub input_size: u32,
    pub optimizer: OptimizerKind,
    pub learning_rate: f64,
    pub weight_decay: f64,
    pub batch_size: usize,
    /// The schedule's length; successive halving may stop a trial before it.
    pub max_epochs: usize,
    /// Epochs without a better validation score before the trial stops itself.
    pub patience: usize,
    pub crop: CropStrategy,
    pub policy: AugmentPolicy,
    pub augmentations: Vec<Augmentation>,
    pub scheduler: SchedulerKind,
    /// Classification only; 0 for regression.
    pub label_smoothing: f64,
    pub seed: u64,
}

/// What the search may choose from on this machine.
#[derive(Clone, Debug)]
pub struct SearchSpace {
    /// Allowed backbones that exist, with their native input size.
    pub architectures: Vec<(String, u32)>,
    pub augmentations: Vec<Augmentation>,
    pub classification: bool,
    /// Largest input side to try (a machine setting: small on CPUs).
    pub max_input_size: u32,
    pub batch_sizes: Vec<usize>,
    pub max_epochs: Vec<usize>,
}

const INPUT_SIZES: [u32; 6] = [96, 128, 160, 192, 224, 256];

impl SearchSpace {
    /// Input sizes allowed for a backbone of native size `native`.
    fn input_sizes(&self, native: u32) -> Vec<u32> {
        let cap = native.min(self.max_input_size);
        let sizes: Vec<u32> = INPUT_SIZES.into_iter().filter(|&s| s <= cap).collect();
        if sizes.is_empty() { vec![cap.max(32)] } else { sizes }
    }

    /// Configuration of trial `id` under the experiment's `seed`.
    pub fn sample(&self, id: usize, seed: u64) -> TrialConfig {
        let trial_seed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(id as u64);
        let mut rng = StdRng::seed_from_u64(trial_seed);
        if id == 0 {
            let (architecture, native) = self.architectures[0].clone();
            let sizes = self.input_sizes(native);
            return TrialConfig {
                id,
                architecture,
                input_size: sizes[sizes.len() / 2],
                optimizer: OptimizerKind::AdamW,
                learning_rate: 1e-3,
                weight_decay: 0.05,
                batch_size: self.batch_sizes[0],
                max_epochs: self.max_epochs[self.max_epochs.len() / 2],
                patience: 3,
                crop: CropStrategy::CenterCrop,
                policy: AugmentPolicy::TrivialAugment,
                augmentations: self.augmentations.clone(),
                scheduler: SchedulerKind::CosineWarmup,
                label_smoothing: if self.classification { 0.1 } else { 0.0 },
                seed: trial_seed,
            };
        }
        let (architecture, native) = pick(&mut rng, &self.architectures).clone();
        let optimizer = *pick(&mut rng, &[OptimizerKind::AdamW, OptimizerKind::SgdNesterov]);
        let learning_rate = match optimizer {
            OptimizerKind::AdamW => log_uniform(&mut rng, 1e-4, 3e-3),
            OptimizerKind::SgdNesterov => log_uniform(&mut rng, 3e-3, 1e-1),
        };
        TrialConfig {
            id,
            input_size: *pick(&mut rng, &self.input_sizes(native)),
            architecture,
            optimizer,
            learning_rate,
            weight_decay: log_uniform(&mut rng, 1e-5, 1e-1),
            batch_size: *pick(&mut rng, &self.batch_sizes),
            max_epochs: *pick(&mut rng, &self.max_epochs),
            patience: rng.random_range(2..=4),
            crop: *pick(
                &mut rng,
                &[CropStrategy::Resize, CropStrategy::CenterCrop, CropStrategy::RandomResizedCrop],
            ),
            policy: *pick(
                &mut rng,
                &[AugmentPolicy::Listed, AugmentPolicy::TrivialAugment, AugmentPolicy::None],
            ),
            augmentations: self.augmentations.clone(),
            scheduler: *pick(
                &mut rng,
                &[SchedulerKind::CosineWarmup, SchedulerKind::OneCycle, SchedulerKind::Step],
            ),
            label_smoothing: if self.classification { *pick(&mut rng, &[0.0, 0.05, 0.1, 0.2]) } else { 0.0 },
            seed: trial_seed,
        }
    }
}

fn pick<'a, T>(rng: &mut StdRng, choices: &'a [T]) -> &'a T {
    &choices[rng.random_range(0..choices.len())]
}

fn log_uniform(rng: &mut StdRng, low: f64, high: f64) -> f64 {
    rng.random_range(low.ln()..high.ln()).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> SearchSpace {
        SearchSpace {
            architectures: vec![("a".into(), 224), ("b".into(), 299)],
            augmentations: vec![Augmentation::HorizontalFlip],
            classification: true,
            max_input_size: 160,
            batch_sizes: vec![16, 32],
            max_epochs: vec![3, 6, 9],
        }
    }

    #[test]
    fn a_trial_is_the_same_configuration_every_time() {
        let space = space();
        for id in 0..20 {
            assert_eq!(space.sample(id, 7), space.sample(id, 7));
        }
        assert_ne!(space.sample(3, 7), space.sample(3, 8), "the experiment's seed changes the draw");
    }

    #[test]
    fn samples_stay_inside_the_space_and_cover_it() {
        let space = space();
        let trials: Vec<TrialConfig> = (0..200).map(|id| space.sample(id, 1)).collect();
        for t in &trials {
            assert!(t.input_size <= 160 && INPUT_SIZES.contains(&t.input_size));
            assert!(space.batch_sizes.contains(&t.batch_size) && space.max_epochs.contains(&t.max_epochs));
            assert!((1e-5..=1e-1).contains(&t.weight_decay));
            match t.optimizer {
                OptimizerKind::AdamW => assert!((1e-4..=3e-3).contains(&t.learning_rate)),
                OptimizerKind::SgdNesterov => assert!((3e-3..=1e-1).contains(&t.learning_rate)),
            }
        }
        let distinct = |f: &dyn Fn(&TrialConfig) -> String| {
            trials.iter().map(f).collect::<std::collections::BTreeSet<_>>().len()
        };
        assert_eq!(distinct(&|t| t.architecture.clone()), 2);
        assert_eq!(distinct(&|t| format!("{:?}", t.crop)), 3);
        assert_eq!(distinct(&|t| format!("{:?}", t.scheduler)), 3);
        assert_eq!(distinct(&|t| format!("{:?}", t.policy)), 3);
        assert_eq!(distinct(&|t| format!("{:?}", t.optimizer)), 2);
        assert_eq!(distinct(&|t| t.label_smoothing.to_string()), 4);
    }

    #[test]
    fn regression_never_smooths_labels() {
        let space = SearchSpace { classification: false, ..space() };
        assert!((0..50).all(|id| space.sample(id, 3).label_smoothing == 0.0));
    }
}
