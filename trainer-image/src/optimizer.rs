//! AdamW and SGD with Nesterov momentum over a VarStore, with their state in plain tensors so a
//! checkpoint holds it and a resumed trial continues with the same moments.
//!
//! The update rules are those of `torch.optim.AdamW` and `torch.optim.SGD(nesterov=True)`.
//! The one optimizer of the trainer: the auto image trials and the embeddings pipeline's
//! fine-tuning both step with it, so a fix in one is a fix in both.

use std::collections::BTreeMap;

use tch::Tensor;

use crate::pipeline::auto_image::space::OptimizerKind;

const BETAS: (f64, f64) = (0.9, 0.999);
const EPSILON: f64 = 1e-8;
const MOMENTUM: f64 = 0.9;

pub struct Optimizer {
    kind: OptimizerKind,
    weight_decay: f64,
    /// Trainable parameters by name, in name order.
    parameters: Vec<(String, Tensor)>,
    /// AdamW: first and second moments; SGD: the momentum buffer (second unused).
    first: Vec<Tensor>,
    second: Vec<Tensor>,
    pub steps: i64,
}

impl Optimizer {
    pub fn new(kind: OptimizerKind, weight_decay: f64, parameters: BTreeMap<String, Tensor>) -> Self {
        let parameters: Vec<(String, Tensor)> =
            parameters.into_iter().filter(|(_, t)| t.requires_grad()).collect();
        let zeros = |p: &Tensor| p.zeros_like().detach();
        let first = parameters.iter().map(|(_, p)| zeros(p)).collect();
        let second = match kind {
            OptimizerKind::AdamW => parameters.iter().map(|(_, p)| zeros(p)).collect(),
            OptimizerKind::SgdNesterov => Vec::new(),
        };
        Self { kind, weight_decay, parameters, first, second, steps: 0 }
    }

    pub fn zero_grad(&mut self) {
        for (_, parameter) in &mut self.parameters {
            parameter.zero_grad();
        }
    }

    /// Whether every gradient is finite (one device sync): a float16 overflow shows as inf/NaN.
    pub fn gradients_finite(&self) -> bool {
        let _guard = tch::no_grad_guard();
        self.parameters
            .iter()
            .map(|(_, p)| p.grad())
            .filter(Tensor::defined)
            .map(|g| g.isfinite().all())
            .reduce(|a, b| a.logical_and(&b))
            .is_none_or(|all| all.int64_value(&[]) != 0)
    }

    /// One update at learning rate `lr`; gradients are first multiplied by `grad_scale`.
    pub fn step(&mut self, lr: f64, grad_scale: f64) {
        self.steps += 1;
        let _guard = tch::no_grad_guard();
        let (b1, b2) = BETAS;
        for (i, (_, parameter)) in self.parameters.iter_mut().enumerate() {
            let grad = parameter.grad();
            if !grad.defined() {
                continue;
            }
            // A new tensor, not `*=`: the parameter's own gradient must stay as autograd left it.
            let grad = if grad_scale != 1.0 { grad * grad_scale } else { grad };
            match self.kind {
                OptimizerKind::AdamW => {
                    let _ = parameter.g_mul_scalar_(1.0 - lr * self.weight_decay);
                    let _ = self.first[i].g_mul_scalar_(b1).g_add_(&(&grad * (1.0 - b1)));
                    let _ = self.second[i].g_mul_scalar_(b2).g_add_(&(&grad * &grad * (1.0 - b2)));
                    let correction1 = 1.0 - b1.powi(self.steps as i32);
                    let correction2 = 1.0 - b2.powi(self.steps as i32);
                    let denominator = (&self.second[i] / correction2).sqrt() + EPSILON;
                    let _ = parameter.g_sub_(&(&self.first[i] / &denominator * (lr / correction1)));
                }
                OptimizerKind::SgdNesterov => {
                    let grad = grad + &*parameter * self.weight_decay;
                    let _ = self.first[i].g_mul_scalar_(MOMENTUM).g_add_(&grad);
                    let _ = parameter.g_sub_(&((grad + &self.first[i] * MOMENTUM) * lr));
                }
            }
        }
    }

    /// The state as named tensors, for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut state = vec![("optimizer.steps".to_owned(), Tensor::from(self.steps))];
        for (i, (name, _)) in self.parameters.iter().enumerate() {
            state.push((format!("optimizer.first.{name}"), self.first[i].shallow_clone()));
            if let Some(second) = self.second.get(i) {
                state.push((format!("optimizer.second.{name}"), second.shallow_clone()));
            }
        }
        state
    }

    /// Restores what [`Optimizer::state`] saved; `Err` names what is missing.
    pub fn restore(&mut self, saved: &BTreeMap<String, Tensor>) -> Result<(), String> {
        let get = |key: &str| saved.get(key).ok_or_else(|| format!("the checkpoint lacks {key}"));
        self.steps = get("optimizer.steps")?.int64_value(&[]);
        let _guard = tch::no_grad_guard();
        for (i, (name, _)) in self.parameters.iter().enumerate() {
            self.first[i].copy_(get(&format!("optimizer.first.{name}"))?);
            if let Some(second) = self.second.get_mut(i) {
                second.copy_(get(&format!("optimizer.second.{name}"))?);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn parameter(values: &[f32]) -> BTreeMap<String, Tensor> {
        BTreeMap::from([("w".to_owned(), Tensor::from_slice(values).set_requires_grad(true))])
    }

    /// Values torch.optim.AdamW(lr=0.1, weight_decay=0.01) gives for loss sum(w^2) from
    /// w = [1, -2] after two steps (computed with PyTorch 2.13).
    #[test]
    fn adamw_matches_pytorch() {
        let params = parameter(&[1.0, -2.0]);
        let w = params["w"].shallow_clone();
        let mut optimizer = Optimizer::new(OptimizerKind::AdamW, 0.01, params);
        for _ in 0..2 {
            optimizer.zero_grad();
            (&w * &w).sum(Kind::Float).backward();
            optimizer.step(0.1, 1.0);
        }
        let got = Vec::<f32>::try_from(&w).unwrap();
        let expected = [0.798_519_1f32, -1.796_272_6];
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-5, "{got:?} vs {expected:?}");
        }
    }

    /// torch.optim.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01), same loss.
    #[test]
    fn sgd_nesterov_matches_pytorch() {
        let params = parameter(&[1.0, -2.0]);
        let w = params["w"].shallow_clone();
        let mut optimizer = Optimizer::new(OptimizerKind::SgdNesterov, 0.01, params);
        for _ in 0..2 {
            optimizer.zero_grad();
            (&w * &w).sum(Kind::Float).backward();
            optimizer.step(0.1, 1.0);
        }
        let got = Vec::<f32>::try_from(&w).unwrap();
        let expected = [0.219_237_63f32, -0.438_475_25];
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-5, "{got:?} vs {expected:?}");
        }
    }

    #[test]
    fn state_round_trips() {
        let params = parameter(&[1.0, -2.0]);
        let w = params["w"].shallow_clone();
        let mut optimizer = Optimizer::new(OptimizerKind::AdamW, 0.0, params);
        optimizer.zero_grad();
        (&w * &w).sum(Kind::Float).backward();
        optimizer.step(0.1, 1.0);
        let saved: BTreeMap<String, Tensor> =
            optimizer.state().into_iter().map(|(k, t)| (k, t.copy())).collect();
        let mut fresh = Optimizer::new(OptimizerKind::AdamW, 0.0, parameter(&[0.0, 0.0]));
        fresh.restore(&saved).unwrap();
        assert_eq!(fresh.steps, 1);
        assert!(fresh.first[0].allclose(&optimizer.first[0], 0.0, 0.0, false));
        assert!(fresh.restore(&BTreeMap::new()).is_err());
    }
}
