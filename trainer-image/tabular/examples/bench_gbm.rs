//! The ocellus side of bench/gbm: fits on DIR/X_train.csv (+ y_train.csv), stops early on
//! X_valid/y_valid, and prints one JSON line with fit seconds and the test metrics.
//!
//! Usage: bench_gbm DIR regression|binary|multiclass MAX_TRIALS BUDGET_SECONDS

use std::path::Path;
use std::time::{Duration, Instant};

use ocellus_tabular::Matrix;
use ocellus_tabular::gbm::{Gbm, GbmConfig};
use ocellus_tabular::learner::TrainingData;
use ocellus_tabular::metrics::evaluate;
use ocellus_tabular::task::{Target, TaskKind};

fn read_matrix(path: &Path) -> Matrix {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rows: Vec<Vec<f32>> =
        text.lines().map(|l| l.split(',').map(|v| v.trim().parse().expect("a number")).collect()).collect();
    Matrix::from_rows(&rows).expect("rows of equal length")
}

fn read_vector(path: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(|l| l.trim().parse().expect("a number")).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, task, trials, budget] = &args[..] else {
        eprintln!("usage: bench_gbm DIR regression|binary|multiclass MAX_TRIALS BUDGET_SECONDS");
        std::process::exit(2);
    };
    let dir = Path::new(dir);
    let (x, y) = (read_matrix(&dir.join("X_train.csv")), read_vector(&dir.join("y_train.csv")));
    let (xv, yv) = (read_matrix(&dir.join("X_valid.csv")), read_vector(&dir.join("y_valid.csv")));
    let (xt, yt) = (read_matrix(&dir.join("X_test.csv")), read_vector(&dir.join("y_test.csv")));
    let target = match task.as_str() {
        "regression" => Target { task: TaskKind::Regression, classes: vec![] },
        kind => {
            let classes = y.iter().map(|v| *v as usize).max().unwrap() + 1;
            let task = if kind == "binary" { TaskKind::Binary } else { TaskKind::Multiclass };
            Target { task, classes: (0..classes).map(|c| c.to_string()).collect() }
        }
    };
    let config = GbmConfig {
        budget: Duration::from_secs_f64(budget.parse().expect("budget in seconds")),
        max_trials: trials.parse().expect("a number of trials"),
        ..GbmConfig::default()
    };
    let start = Instant::now();
    let data = TrainingData { train: &x, y: &y, valid: &xv, y_valid: &yv, target: &target, categorical: &[] };
    let model = Gbm::fit(&data, &config).expect("fit");
    let fit_seconds = start.elapsed().as_secs_f64();
    let predictions = model.predict(&xt).expect("predict");
    let test: serde_json::Map<String, serde_json::Value> =
        evaluate(&target, &yt, &predictions).into_iter().map(|m| (m.name, m.value.into())).collect();
    let line = serde_json::json!({
        "fit_seconds": fit_seconds,
        "rounds": model.info.best_iteration,
        "trials": model.info.trials.len(),
        "cross_validated": model.info.cross_validated,
        "test": test,
    });
    println!("{line}");
}
