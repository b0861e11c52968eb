//! The contract between the operator and the trainer, in one place both sides import:
//! exit codes, artifact-store locations, the run folder's file names, the reports trainer
//! pods send and how they merge into status, and the checks of a spec against the data.

pub mod checks;
pub mod exit;
pub mod location;
pub mod report;
pub mod run_folder;
pub mod scrub;
