//! What a run tells the operator while it works: its stage and progress, each finished trial,
//! and the results, as reports to the status server (`ocellus_dataset::report_client`). Like
//! logging it is a side channel every part of a run may use, so it is installed once per
//! process; outside a cluster, or before [`install`], every call does nothing.

use std::sync::OnceLock;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use kube::ResourceExt;
use ocellus_crds::experiment::{Progress, TrialsSummary};
use ocellus_crds::{Experiment, ExperimentStatus, TrainerReport};
use ocellus_dataset::report_client::Reporter;

struct Run {
    reporter: Reporter<TrainerReport>,
    started: Instant,
}

static RUN: OnceLock<Run> = OnceLock::new();

/// Starts reporting for `experiment` when the operator gave this pod a status server.
pub fn install(experiment: &Experiment) {
    let reporter = Reporter::from_env(experiment.namespace().as_deref(), &experiment.name_any());
    let _ = RUN.set(Run { reporter, started: Instant::now() });
}

fn send(status: ExperimentStatus) {
    if let Some(run) = RUN.get() {
        run.reporter.send(TrainerReport { status, final_: false });
    }
}

/// The run entered `stage` (CamelCase, for example `ExtractingEmbeddings`), `percent` of the
/// whole run done. The time left is estimated from the time spent so far.
pub fn stage(stage: &str, percent: i32) {
    let eta = RUN.get().and_then(|run| {
        let spent = run.started.elapsed().as_secs_f64();
        (percent > 0 && percent < 100).then(|| (spent * f64::from(100 - percent) / f64::from(percent)) as i64)
    });
    progress(Progress {
        stage: stage.into(),
        percent: percent.clamp(0, 100),
        eta_seconds: eta,
        ..Default::default()
    });
}

pub fn progress(progress: Progress) {
    send(ExperimentStatus { progress: Some(progress), ..Default::default() });
}

/// The trials so far (after each finished trial or candidate).
pub fn trials(trials: TrialsSummary) {
    send(ExperimentStatus { trials: Some(trials), ..Default::default() });
}

/// The final report: the results in `status` (what result.json holds), sent and waited for
/// (boundedly). Returns whether the operator got it.
pub fn finish(status: &ExperimentStatus) -> bool {
    let Some(run) = RUN.get() else { return true };
    let mut status = ExperimentStatus {
        conditions: Vec::new(),
        observed_generation: None,
        pipeline: None,
        start_time: None,
        completion_time: None,
        ..status.clone()
    };
    status.progress =
        Some(Progress { stage: "Done".into(), percent: 100, eta_seconds: Some(0), ..Default::default() });
    run.reporter.finish(TrainerReport { status, final_: true })
}

/// A terminal progress bar for `length` items (images embedded, rows scored).
pub fn bar(length: usize, message: &str) -> ProgressBar {
    let progress = ProgressBar::new(length as u64);
    progress.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    progress.set_message(message.to_owned());
    progress
}
