//! The chart's CRD templates: the committed `crds/*.yaml`, verbatim, inside two template
//! conditions (`crds.install`, and `crds.keep` for Helm's keep annotation).

/// The CRD files under `crds/`, and so under `charts/ocellus/templates/crds/`.
pub const CRD_FILES: [&str; 2] = ["dataset.yaml", "experiment.yaml"];

/// Where the chart keeps its CRD templates, relative to the repository root.
pub const TEMPLATE_DIR: &str = "charts/ocellus/templates/crds";

const TOP_LEVEL_METADATA: &str = "\nmetadata:\n";
const KEEP_ANNOTATION: &str =
    "  {{- if .Values.crds.keep }}\n  annotations:\n    helm.sh/resource-policy: keep\n  {{- end }}\n";

/// The chart template of one CRD, from the CRD's YAML as crdgen writes it.
pub fn chart_crd_template(crd_yaml: &str) -> Result<String, String> {
    if crd_yaml.matches(TOP_LEVEL_METADATA).count() != 1 {
        return Err("a CRD has exactly one top-level `metadata:` line; is this crdgen's output?".into());
    }
    let with_keep =
        crd_yaml.replacen(TOP_LEVEL_METADATA, &format!("{TOP_LEVEL_METADATA}{KEEP_ANNOTATION}"), 1);
    Ok(format!("{{{{- if .Values.crds.install }}}}\n{with_keep}{{{{- end }}}}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_the_crd_plus_only_template_conditions_and_the_keep_annotation() {
        let crd = "# header\napiVersion: v1\nkind: CustomResourceDefinition\nmetadata:\n  name: a.b\nspec:\n  x: 1\n";
        let template = chart_crd_template(crd).unwrap();
        let added: Vec<&str> = template.lines().filter(|line| !crd.lines().any(|l| l == *line)).collect();
        assert_eq!(
            added,
            [
                "{{- if .Values.crds.install }}",
                "  {{- if .Values.crds.keep }}",
                "  annotations:",
                "    helm.sh/resource-policy: keep",
                "  {{- end }}",
                "{{- end }}"
            ]
        );
        assert!(template.contains("metadata:\n  {{- if .Values.crds.keep }}"));
    }

    #[test]
    fn text_that_is_not_a_crd_is_refused() {
        assert!(chart_crd_template("kind: Foo\n").is_err());
    }
}
