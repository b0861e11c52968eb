//! The names of the files and folders an Ocellus run or import writes.
//!
//! A run's folder (`ocellus run --out`, `<store>/experiments/<ns>/<name>` in a cluster):
//!
//! ```text
//! result.json       the Experiment's status; written last, so its presence means "finished"
//! run.json          what the report is drawn from (trials, curves, importances)
//! report.html       the experiment report
//! predictions.csv   the test rows' predictions, when a test dataset is given
//! scoring/          the scoring bundle `ocellus predict --bundle` reads
//! datasets/         normalized copies the run imported itself (local mode)
//! trials/           the auto image search: data.json, search.json, one folder per trial
//!                   with its checkpoints (the state a preempted pod resumes from)
//! .cache/ .work/    download cache and scratch space
//! ```
//!
//! A normalized dataset's folder (`<store>/datasets/<ns>/<name>`) holds [`DATASET_META_FILE`]
//! (its marker: written last), [`DATASET_TABLE_FILE`], [`DATASET_PROFILE_FILE`],
//! [`DATASET_BAD_IMAGES_FILE`] and [`DATASET_IMAGES_DIR`].

/// The run's status; the marker of a complete run folder.
pub const RESULT_FILE: &str = "result.json";
/// The run record the report is drawn from (`ocellus_report::RUN_RECORD_FILE`).
pub const RUN_RECORD_FILE: &str = "run.json";
pub const REPORT_FILE: &str = "report.html";
pub const PREDICTIONS_FILE: &str = "predictions.csv";
pub const SCORING_DIR: &str = "scoring";
pub const DATASETS_DIR: &str = "datasets";
/// The auto image search's folder; checkpoints live in its trial folders.
pub const TRIALS_DIR: &str = "trials";
pub const CACHE_DIR: &str = ".cache";
pub const WORK_DIR: &str = ".work";
/// Prefix of a checkpoint folder inside a trial folder (`epoch-0004`).
pub const CHECKPOINT_PREFIX: &str = "epoch-";
/// A trial's state inside its trial folder: the epochs done and the checkpoint to resume from.
/// It is written after the checkpoint it names, and uploaded after it.
pub const TRIAL_STATE_FILE: &str = "state.json";
/// Prefix of a scoring bundle being written beside `scoring/` (renamed into place).
pub const SCORING_PARTIAL_PREFIX: &str = ".scoring.partial-";
/// Prefix of the temporary files atomic writes rename into place.
pub const TEMP_PREFIX: &str = ".tmp";

/// Every top-level entry of a run folder. `ocellus artifacts delete` removes a folder only
/// when it holds nothing else (besides [`is_temporary`] leftovers).
pub const OCELLUS_ENTRIES: [&str; 9] = [
    RESULT_FILE,
    RUN_RECORD_FILE,
    REPORT_FILE,
    PREDICTIONS_FILE,
    SCORING_DIR,
    DATASETS_DIR,
    TRIALS_DIR,
    CACHE_DIR,
    WORK_DIR,
];

/// The normalized dataset's metadata; its marker, written (and uploaded) last.
pub const DATASET_META_FILE: &str = "dataset.json";
pub const DATASET_TABLE_FILE: &str = "table.jsonl";
pub const DATASET_PROFILE_FILE: &str = "profile.json";
pub const DATASET_BAD_IMAGES_FILE: &str = "bad_images.jsonl";
pub const DATASET_IMAGES_DIR: &str = "images";

/// Every top-level entry of a normalized dataset's folder.
pub const DATASET_ENTRIES: [&str; 5] = [
    DATASET_META_FILE,
    DATASET_TABLE_FILE,
    DATASET_PROFILE_FILE,
    DATASET_BAD_IMAGES_FILE,
    DATASET_IMAGES_DIR,
];

/// Leftovers of an interrupted atomic write (a temporary file, a bundle being written).
pub fn is_temporary(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) || name.starts_with(SCORING_PARTIAL_PREFIX)
}

/// Whether a run folder's top-level entry `name` is one Ocellus writes.
pub fn is_ocellus_entry(name: &str) -> bool {
    OCELLUS_ENTRIES.contains(&name) || is_temporary(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_recognised_and_foreign_names_are_not() {
        for name in OCELLUS_ENTRIES {
            assert!(is_ocellus_entry(name), "{name}");
        }
        assert!(is_ocellus_entry(".scoring.partial-x1") && is_ocellus_entry(".tmpAbc"));
        assert!(!is_ocellus_entry("thesis.tex") && !is_ocellus_entry("results.json"));
    }
}
