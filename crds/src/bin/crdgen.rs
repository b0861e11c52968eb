//! Writes the CRDs generated from the API types to `crds/*.yaml` (or to stdout with `-`).

fn main() -> std::io::Result<()> {
    let to_stdout = std::env::args().nth(1).as_deref() == Some("-");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, crd) in ocellus_crds::crds() {
        let yaml = ocellus_crds::crd_yaml(&crd);
        if to_stdout {
            print!("---\n{yaml}");
        } else {
            std::fs::write(dir.join(file), yaml)?;
        }
    }
    Ok(())
}
