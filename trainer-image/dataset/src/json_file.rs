//! The one way the trainer and the import write and read their JSON files (`result.json`,
//! `meta.json`, trial states, manifests): pretty, newline-terminated, and never half-written.

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// Writes `value` to a temporary file beside `path`, syncs it and renames it into place, so a
/// reader sees the old file or the new one, never a torn one. Creates the parent folder.
pub fn write(path: &Path, value: &impl Serialize) -> Result<()> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(folder).map_err(Error::io(folder))?;
    let mut file = tempfile::Builder::new().prefix(".tmp").tempfile_in(folder).map_err(Error::io(folder))?;
    serde_json::to_writer_pretty(&mut file, value).expect("JSON values serialise");
    file.write_all(b"\n").map_err(Error::io(path))?;
    // Temporary files are private (0600); these files are read by other pods and users.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let readable = std::fs::Permissions::from_mode(0o644);
        file.as_file().set_permissions(readable).map_err(Error::io(path))?;
    }
    file.as_file().sync_all().map_err(Error::io(path))?;
    file.persist(path).map_err(|e| Error::io(path)(e.error))?;
    Ok(())
}

/// Reads and parses `path`; a file that does not parse is [`Error::Json`].
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T> {
    read_if_present(path)?
        .ok_or_else(|| Error::io(path)(std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")))
}

/// Like [`read`], but an absent file is `None`.
pub fn read_if_present<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(Error::io(path)(error)),
    };
    serde_json::from_str(&text).map(Some).map_err(|source| Error::Json { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_written_file_reads_back_pretty_and_newline_terminated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/folder/value.json");
        let value = BTreeMap::from([("a", 1), ("b", 2)]);
        write(&path, &value).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("}\n") && text.contains("\n  \"a\": 1"), "{text}");
        assert_eq!(read::<BTreeMap<String, i32>>(&path).unwrap().len(), 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644, "readable by the other pods that share the volume");
        }
        // Only the file itself is left in the folder: the temporary file was renamed.
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn an_absent_file_is_none_or_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.json");
        assert!(read_if_present::<i32>(&path).unwrap().is_none());
        let error = read::<i32>(&path).unwrap_err();
        assert!(matches!(error, Error::Io { .. }), "{error}");
    }

    #[test]
    fn a_torn_file_is_a_json_error_that_names_the_file_and_leaves_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("torn.json");
        std::fs::write(&path, "{\"a\": 1").unwrap();
        let error = read::<BTreeMap<String, i32>>(&path).unwrap_err();
        assert!(matches!(error, Error::Json { .. }), "{error}");
        assert!(error.to_string().contains("torn.json"), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\": 1");
    }
}
