//! The experiment report: `DIR/report.html`, one self-contained file (inline SVG plots drawn
//! by plotters, thumbnails as data URLs, no scripts, no network) built from a run's folder:
//! `result.json`, `run.json` (see [`record`]), `predictions.csv` and the imported datasets.

pub mod error;
pub mod evaluation;
pub mod gallery;
pub mod inputs;
pub mod page;
pub mod plots;
pub mod record;

use std::io::Write;
use std::path::{Path, PathBuf};

pub use error::{Error, Result};
pub use record::{Curve, FeatureKind, ImportanceGroup, RUN_RECORD_FILE, RunRecord, TrialRecord};

pub const REPORT_FILE: &str = "report.html";

/// Writes `dir/report.html` from the run's files, atomically: a failed report leaves the
/// previous one in place.
pub fn write_report(dir: &Path) -> Result<PathBuf> {
    let run = inputs::RunFiles::load(dir)?;
    let html = page::render(&run)?;
    let path = dir.join(REPORT_FILE);
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(Error::io(dir))?;
    file.write_all(html.as_bytes()).map_err(Error::io(&path))?;
    // A report is for sharing; the temporary file's private mode would hide it from a web server.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.as_file().set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(Error::io(&path))?;
    }
    file.persist(&path).map_err(|e| Error::io(&path)(e.error))?;
    Ok(path)
}
