//! Learning rate at a step, for the three schedulers the search chooses from.

use std::f64::consts::PI;

use super::space::SchedulerKind;

/// Learning rate at `step` (0-based) of `total` steps, peaking at `peak`.
pub fn learning_rate(kind: SchedulerKind, peak: f64, step: usize, total: usize) -> f64 {
    let total = total.max(1) as f64;
    let t = (step as f64).min(total) / total;
    match kind {
        SchedulerKind::CosineWarmup => {
            const WARMUP: f64 = 0.05;
            if t < WARMUP {
                peak * (step as f64 + 1.0) / (WARMUP * total).max(1.0)
            } else {
                peak * 0.5 * (1.0 + (PI * (t - WARMUP) / (1.0 - WARMUP)).cos())
            }
        }
        SchedulerKind::OneCycle => {
            // As torch.optim.lr_scheduler.OneCycleLR with its defaults (pct_start 0.3,
            // div_factor 25, final_div_factor 1e4, cosine annealing).
            const UP: f64 = 0.3;
            let (start, end) = (peak / 25.0, peak / 25.0 / 1e4);
            let cosine = |from: f64, to: f64, x: f64| to + (from - to) * 0.5 * (1.0 + (PI * x).cos());
            if t < UP { cosine(start, peak, t / UP) } else { cosine(peak, end, (t - UP) / (1.0 - UP)) }
        }
        SchedulerKind::Step => {
            if t < 0.5 {
                peak
            } else if t < 0.75 {
                peak / 10.0
            } else {
                peak / 100.0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_warms_up_then_decays_to_zero() {
        let lr = |s| learning_rate(SchedulerKind::CosineWarmup, 1.0, s, 100);
        assert!(lr(0) < lr(2) && lr(2) < lr(4));
        assert!((lr(4) - 1.0).abs() < 1e-9, "peak at the end of warmup");
        assert!(lr(50) < lr(20) && lr(99) < 0.01);
    }

    #[test]
    fn one_cycle_starts_low_peaks_at_30_percent_and_ends_lower_still() {
        let lr = |s| learning_rate(SchedulerKind::OneCycle, 1.0, s, 100);
        assert!((lr(0) - 0.04).abs() < 1e-9);
        assert!((lr(30) - 1.0).abs() < 1e-9);
        assert!(lr(100) < 1e-5 && lr(70) < lr(40));
    }

    #[test]
    fn step_divides_by_ten_twice() {
        let lr = |s| learning_rate(SchedulerKind::Step, 1.0, s, 100);
        assert_eq!((lr(10), lr(60), lr(90)), (1.0, 0.1, 0.01));
    }
}
