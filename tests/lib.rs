//! Tests across the Ocellus crates live in tests/tests/. This library holds the generators of
//! the committed files that are derived from the CRDs (the chart's CRD templates and the API
//! reference); `make crds` runs them and tests fail when the committed files drift.

pub mod api_reference;
pub mod chart_crds;

use std::path::PathBuf;

/// The root of the repository. Cargo sets `CARGO_MANIFEST_DIR` when it runs a test too; that one
/// wins over the compile-time path because clones sharing one `CARGO_TARGET_DIR` may reuse a
/// library built in another clone.
pub fn repo_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir.parent().expect("tests/ lives in the repository").to_path_buf()
}

/// `ocellus` of this workspace, as `cargo test --workspace` builds it (the trainer's tests need it).
pub fn ocellus_binary() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo_root().join("target"), PathBuf::from);
    target.join("debug/ocellus")
}

/// The variables of the dev cluster's `dev.env` (`tests/cluster/dev-cluster.sh up` writes it;
/// `OCELLUS_DEV_ENV` names another file). Without it: `None` after printing SKIPPED, or a panic
/// when `OCELLUS_REQUIRE_CLUSTER=1` (as `make test` sets) makes a missing cluster a failure.
pub fn dev_cluster_env() -> Option<std::collections::HashMap<String, String>> {
    let file = std::env::var_os("OCELLUS_DEV_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools/cluster/dev.env"));
    let Ok(text) = std::fs::read_to_string(&file) else {
        let why = format!("no dev cluster ({} is missing; run `make dev-cluster`)", file.display());
        assert!(std::env::var("OCELLUS_REQUIRE_CLUSTER").as_deref() != Ok("1"), "{why}");
        println!("SKIPPED: {why}");
        return None;
    };
    Some(
        text.lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}
