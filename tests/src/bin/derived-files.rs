//! Writes the committed files derived from `crds/*.yaml`: the chart's CRD templates and
//! docs/api-reference.md. Run by `make crds` and `make api-docs`.

use ocellus_tests::{api_reference, chart_crds, repo_root};

fn main() -> Result<(), String> {
    let root = repo_root();
    for file in chart_crds::CRD_FILES {
        let crd =
            std::fs::read_to_string(root.join("crds").join(file)).map_err(|e| format!("crds/{file}: {e}"))?;
        let target = root.join(chart_crds::TEMPLATE_DIR).join(file);
        std::fs::write(&target, chart_crds::chart_crd_template(&crd)?)
            .map_err(|e| format!("{}: {e}", target.display()))?;
    }
    let target = root.join(api_reference::PATH);
    std::fs::write(&target, api_reference::render()).map_err(|e| format!("{}: {e}", target.display()))
}
