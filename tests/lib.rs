//! Tests across the Ocellus crates live in tests/tests/. This library holds the generators of
//! the committed files that are derived from the CRDs (the chart's CRD templates and the API
//! reference); `make crds` runs them and tests fail when the committed files drift.

pub mod api_reference;
pub mod chart_crds;

use std::path::{Path, PathBuf};

/// The root of the repository.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lives in the repository").to_path_buf()
}
