//! Mixed precision for trials on CUDA, as PyTorch's AMP recipe does it: the forward pass runs
//! under autocast (float16 for the ops autocast lists, float32 for the rest, parameters stay
//! float32), and a dynamic loss scale keeps small float16 gradients from underflowing
//! (`torch.amp.GradScaler`'s rule): the loss is multiplied by the scale before backward, the
//! optimizer unscales the gradients, a step whose gradients overflowed is skipped and halves
//! the scale, and 2,000 good steps in a row double it.
//!
//! On the CPU the scaler is off: autocast does nothing there and the step is plain float32.

use std::collections::BTreeMap;

use tch::Tensor;

use super::optimizer::Optimizer;
use crate::Result;

const INITIAL_SCALE: f64 = 65536.0;
const GROWTH_INTERVAL: i64 = 2000;

#[derive(Debug, Clone, PartialEq)]
pub struct LossScaler {
    enabled: bool,
    scale: f64,
    good_steps: i64,
}

impl LossScaler {
    /// Enabled means autocast for the forward pass and a dynamic loss scale.
    pub fn new(enabled: bool) -> Self {
        Self { enabled, scale: if enabled { INITIAL_SCALE } else { 1.0 }, good_steps: 0 }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Runs the forward pass in mixed precision when enabled (autocast acts on CUDA ops only).
    pub fn forward<T>(&self, forward: impl FnOnce() -> T) -> T {
        if self.enabled { tch::autocast(true, forward) } else { forward() }
    }

    /// Backward of the scaled loss.
    pub fn backward(&self, loss: &Tensor) -> Result<()> {
        if self.enabled {
            (loss * self.scale).f_backward()?
        } else {
            loss.f_backward()?
        }
        Ok(())
    }

    /// Steps the optimizer at `lr` with the gradients unscaled, unless they overflowed: then the
    /// step is skipped and the scale halves. Returns whether the optimizer stepped.
    pub fn step(&mut self, optimizer: &mut Optimizer, lr: f64) -> bool {
        if !self.enabled {
            optimizer.step(lr, 1.0);
            return true;
        }
        if !optimizer.gradients_finite() {
            self.scale = (self.scale * 0.5).max(1.0);
            self.good_steps = 0;
            return false;
        }
        optimizer.step(lr, 1.0 / self.scale);
        self.good_steps += 1;
        if self.good_steps >= GROWTH_INTERVAL {
            self.scale *= 2.0;
            self.good_steps = 0;
        }
        true
    }

    /// The scale and its count of good steps, for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        vec![
            ("scaler.scale".to_owned(), Tensor::from(self.scale)),
            ("scaler.good_steps".to_owned(), Tensor::from(self.good_steps)),
        ]
    }

    /// Restores what [`LossScaler::state`] saved; a checkpoint without it (written on the CPU)
    /// starts from the initial scale.
    pub fn restore(&mut self, saved: &BTreeMap<String, Tensor>) {
        if let (true, Some(scale), Some(good)) =
            (self.enabled, saved.get("scaler.scale"), saved.get("scaler.good_steps"))
        {
            self.scale = scale.double_value(&[]);
            self.good_steps = good.int64_value(&[]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::auto_image::space::OptimizerKind;
    use tch::Kind;

    fn train(scaler: &mut LossScaler, steps: usize) -> Vec<f32> {
        let w = Tensor::from_slice(&[1.0f32, -2.0, 0.5]).set_requires_grad(true);
        let mut optimizer =
            Optimizer::new(OptimizerKind::AdamW, 0.01, BTreeMap::from([("w".to_owned(), w.shallow_clone())]));
        for _ in 0..steps {
            optimizer.zero_grad();
            let loss = (&w * &w).sum(Kind::Float) * 1e-3;
            scaler.backward(&loss).unwrap();
            assert!(scaler.step(&mut optimizer, 0.1));
        }
        Vec::<f32>::try_from(&w).unwrap()
    }

    #[test]
    fn a_scaled_step_is_the_unscaled_step() {
        let plain = train(&mut LossScaler::new(false), 3);
        let mut scaler = LossScaler::new(true);
        let scaled = train(&mut scaler, 3);
        assert_eq!(scaler.scale(), INITIAL_SCALE, "no overflow, no growth before 2000 steps");
        for (a, b) in plain.iter().zip(&scaled) {
            assert!((a - b).abs() < 1e-6, "{plain:?} vs {scaled:?}");
        }
    }

    #[test]
    fn an_overflowing_step_is_skipped_and_halves_the_scale() {
        let w = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        let mut optimizer = Optimizer::new(
            OptimizerKind::SgdNesterov,
            0.0,
            BTreeMap::from([("w".to_owned(), w.shallow_clone())]),
        );
        let mut scaler = LossScaler::new(true);
        optimizer.zero_grad();
        // As a float16 overflow shows after backward: an infinite gradient.
        (&w * f64::INFINITY).sum(Kind::Float).backward();
        assert!(!scaler.step(&mut optimizer, 0.1));
        assert_eq!(Vec::<f32>::try_from(&w).unwrap(), vec![1.0, 2.0], "the weights are untouched");
        assert_eq!(optimizer.steps, 0);
        assert_eq!(scaler.scale(), INITIAL_SCALE / 2.0);

        optimizer.zero_grad();
        scaler.backward(&(&w * &w).sum(Kind::Float)).unwrap();
        assert!(scaler.step(&mut optimizer, 0.1));
        let mut resumed = LossScaler::new(true);
        resumed.restore(&scaler.state().into_iter().collect());
        assert_eq!(resumed, scaler, "a resumed trial continues with the same scale");
    }

    #[test]
    fn the_scale_grows_after_a_run_of_good_steps() {
        let mut scaler = LossScaler::new(true);
        scaler.good_steps = GROWTH_INTERVAL - 1;
        train(&mut scaler, 1);
        assert_eq!((scaler.scale(), scaler.good_steps), (INITIAL_SCALE * 2.0, 0));
    }
}
