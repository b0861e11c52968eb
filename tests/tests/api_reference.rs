//! docs/api-reference.md is what the generator makes from the current CRD types.

use ocellus_tests::{api_reference, repo_root};

#[test]
fn committed_api_reference_matches_the_types() {
    let committed = std::fs::read_to_string(repo_root().join(api_reference::PATH)).unwrap_or_default();
    assert!(
        committed == api_reference::render(),
        "{} is stale: run `make api-docs` and commit the result",
        api_reference::PATH
    );
}
