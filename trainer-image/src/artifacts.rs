//! `ocellus artifacts delete LOCATION`: what the operator's cleanup Job runs when an Experiment
//! with `artifacts.deletionPolicy: Delete` is deleted.

use std::path::Path;

use ocellus_crds::contract::location::StoreUri;
use ocellus_crds::contract::run_folder::is_ocellus_entry;

use crate::{Error, Result};

/// Deletes an experiment's artifacts: only files and folders an Ocellus run writes
/// (`run_folder::OCELLUS_ENTRIES`); a folder (or S3 prefix) holding anything else is not
/// deleted, so a wrong location cannot wipe unrelated data. A location that does not exist
/// is already deleted.
pub fn delete(location: &str) -> Result<()> {
    if let StoreUri::S3(prefix) = StoreUri::parse(location).map_err(Error::bad_input)? {
        return Ok(ocellus_dataset::store::trainer::delete_s3(&prefix)?);
    }
    let path = Path::new(location);
    if !path.is_absolute() || path.components().count() < 3 {
        return Err(Error::bad_input(format!(
            "{location}: refusing to delete: give the absolute folder of one experiment's artifacts"
        )));
    }
    if !path.exists() {
        println!("{location}: already gone");
        return Ok(());
    }
    let entries = std::fs::read_dir(path).map_err(Error::io(path))?;
    for entry in entries {
        let name = entry.map_err(Error::io(path))?.file_name();
        let name = name.to_string_lossy();
        if !is_ocellus_entry(&name) {
            return Err(Error::bad_input(format!(
                "{location}: refusing to delete: {name:?} was not written by ocellus, so this is \
                 not (only) an experiment's artifacts folder"
            )));
        }
    }
    std::fs::remove_dir_all(path).map_err(Error::io(path))?;
    println!("{location}: deleted");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletes_an_artifacts_folder_and_is_idempotent() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("experiments/ns/exp");
        std::fs::create_dir_all(dir.join("scoring")).unwrap();
        std::fs::write(dir.join("result.json"), "{}").unwrap();
        delete(dir.to_str().unwrap()).unwrap();
        assert!(!dir.exists());
        delete(dir.to_str().unwrap()).unwrap();
    }

    #[test]
    fn refuses_folders_with_foreign_files_and_relative_or_shallow_paths() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("experiments/ns/exp");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("thesis.tex"), "mine").unwrap();
        let error = delete(dir.to_str().unwrap()).unwrap_err().to_string();
        assert!(error.contains("thesis.tex") && dir.join("thesis.tex").exists(), "{error}");
        assert!(delete("relative/path").is_err());
        assert!(delete("/mnt").is_err());
        assert!(delete("s3://bucket").unwrap_err().to_string().contains("not a bucket"));
    }
}
