//! The normalized copy of a dataset, the only form the pipelines read:
//!
//! ```text
//! DIR/dataset.json       format version, layout, columns with types, image and label columns
//! DIR/table.jsonl        one JSON object per row; images as paths relative to DIR, missing as null
//! DIR/images/ab/<sha256>.<ext>   each distinct image once, original bytes, named by content
//! DIR/bad_images.jsonl   every image that was refused: row, column, value, reason
//! DIR/profile.json       the profile, in the shape of Dataset.status
//! ```
//! It is built in a sibling staging folder and renamed into place, so a killed import never
//! leaves a `DIR` that looks complete.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Write};
use std::path::{Path, PathBuf};

use ocellus_crds::dataset::{ColumnType, DatasetFormat, DatasetStatus};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::{Error, Result, json_file};

/// Version of this on-disk format.
pub const FORMAT_VERSION: u32 = 1;

/// `dataset.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DatasetMeta {
    pub format_version: u32,
    pub layout: DatasetFormat,
    pub columns: Vec<ColumnMeta>,
    pub image_columns: Vec<String>,
    pub label_column: Option<String>,
    pub rows: i64,
    /// The split folders of the source, when `spec.splitFolder` picked one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub splits: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ColumnMeta {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: ColumnType,
}

/// One refused image.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BadImage {
    /// Row number in the source table, 1-based (the CSV's header is row 0).
    pub row: usize,
    pub column: String,
    pub value: String,
    pub reason: String,
}

/// Where an image with this content digest is stored, relative to the dataset folder.
pub fn image_path(digest: &str, extension: &str) -> String {
    format!("images/{}/{digest}.{extension}", &digest[..2])
}

/// Builds a normalized copy in a staging folder; [`finish`](Self::finish) moves it into place.
/// Dropped without finishing, it removes the staging folder.
pub struct NormalizedWriter {
    staging: Option<tempfile::TempDir>,
    destination: PathBuf,
    table: BufWriter<File>,
    table_hash: Sha256,
    rows: i64,
}

impl NormalizedWriter {
    pub fn create(destination: &Path) -> Result<Self> {
        let parent = destination.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
        let name = destination.file_name().and_then(|n| n.to_str()).unwrap_or("dataset");
        let staging = tempfile::Builder::new()
            .prefix(&format!(".{name}.partial-"))
            .tempdir_in(parent)
            .map_err(Error::io(parent))?;
        let table_path = staging.path().join("table.jsonl");
        let table = BufWriter::new(File::create(&table_path).map_err(Error::io(&table_path))?);
        Ok(Self {
            staging: Some(staging),
            destination: destination.to_owned(),
            table,
            table_hash: Sha256::new(),
            rows: 0,
        })
    }

    fn staging(&self) -> &Path {
        self.staging.as_ref().expect("staging exists until finish").path()
    }

    /// Stores a checked image under its content digest from the bytes the check read. A file
    /// this import extracted or downloaded into its own scratch space (`movable`) is renamed
    /// into place instead, so its bytes are not written twice. A user's file is always copied:
    /// a hard link would let a later in-place edit change the dataset. Returns the image's path
    /// relative to the dataset folder.
    pub fn store_image(
        &self,
        source: &Path,
        data: &[u8],
        digest: &str,
        extension: &str,
        movable: bool,
    ) -> Result<String> {
        let relative = image_path(digest, extension);
        let target = self.staging().join(&relative);
        let folder = target.parent().expect("images have a folder");
        let is_plain_file = || std::fs::symlink_metadata(source).is_ok_and(|meta| meta.file_type().is_file());
        if movable && is_plain_file() {
            let moved = std::fs::rename(source, &target).or_else(|error| match error.kind() {
                ErrorKind::NotFound => {
                    std::fs::create_dir_all(folder).map_err(Error::io(folder))?;
                    std::fs::rename(source, &target).map_err(Error::io(source))
                }
                _ => Err(Error::io(source)(error)),
            });
            // Only another file system (EXDEV) stops a rename here; then the bytes are written.
            if moved.is_ok() {
                return Ok(relative);
            }
        }
        let create = || std::fs::OpenOptions::new().write(true).create_new(true).open(&target);
        let file = match create() {
            Err(error) if error.kind() == ErrorKind::NotFound => {
                std::fs::create_dir_all(folder).map_err(Error::io(folder))?;
                create()
            }
            other => other,
        };
        match file {
            Ok(mut file) => file.write_all(data).map_err(Error::io(&target))?,
            // The same content under another name in the source: stored once.
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
            Err(error) => return Err(Error::io(&target)(error)),
        }
        Ok(relative)
    }

    /// Removes a stored image again (its rows were dropped after it was stored).
    pub fn remove_image(&self, relative: &str) -> Result<()> {
        let path = self.staging().join(relative);
        match std::fs::remove_file(&path) {
            Err(error) if error.kind() != ErrorKind::NotFound => Err(Error::io(&path)(error)),
            _ => Ok(()),
        }
    }

    /// Links an image another normalized copy already stores under `relative`: those copies
    /// are never modified, and the content hash is the name, so it is not hashed again.
    pub fn link_image(&mut self, dataset_dir: &Path, relative: &str) -> Result<String> {
        let (source, target) = (dataset_dir.join(relative), self.staging().join(relative));
        if !target.exists() {
            let folder = target.parent().expect("images have a folder");
            std::fs::create_dir_all(folder).map_err(Error::io(folder))?;
            if std::fs::hard_link(&source, &target).is_err() {
                std::fs::copy(&source, &target).map_err(Error::io(&source))?;
            }
        }
        Ok(relative.to_owned())
    }

    pub fn write_row(&mut self, row: &Map<String, Value>) -> Result<()> {
        let mut line = serde_json::to_vec(row).expect("JSON values serialise");
        line.push(b'\n');
        self.table_hash.update(&line);
        self.rows += 1;
        let path = self.destination.join("table.jsonl");
        self.table.write_all(&line).map_err(Error::io(path))
    }

    pub fn rows(&self) -> i64 {
        self.rows
    }

    /// Writes the metadata files, syncs, and renames the staging folder to the destination,
    /// replacing an older copy only once the new one is complete. Returns the digest.
    pub fn finish(
        mut self,
        meta: &DatasetMeta,
        bad_images: &[BadImage],
        profile: &mut DatasetStatus,
    ) -> Result<String> {
        let table_path = self.destination.join("table.jsonl");
        self.table.flush().map_err(Error::io(&table_path))?;
        self.table.get_ref().sync_all().map_err(Error::io(&table_path))?;
        let digest = format!("sha256:{}", hex::encode(std::mem::take(&mut self.table_hash).finalize()));
        profile.digest = Some(digest.clone());
        let staging = self.staging.take().expect("finish runs once");
        json_file::write(&staging.path().join("dataset.json"), meta)?;
        json_file::write(&staging.path().join("profile.json"), profile)?;
        let bad_path = staging.path().join("bad_images.jsonl");
        let mut bad = BufWriter::new(File::create(&bad_path).map_err(Error::io(&bad_path))?);
        for image in bad_images {
            serde_json::to_writer(&mut bad, image).expect("JSON values serialise");
            bad.write_all(b"\n").map_err(Error::io(&bad_path))?;
        }
        bad.flush().map_err(Error::io(&bad_path))?;

        let staging = staging.keep();
        replace_dir(&staging, &self.destination)?;
        Ok(digest)
    }
}

/// Moves `staging` to `destination`; an existing destination is moved aside first and
/// deleted only after the new one is in place.
fn replace_dir(staging: &Path, destination: &Path) -> Result<()> {
    let old = destination.with_extension(format!("old-{}", std::process::id()));
    let had_old = destination.exists();
    if had_old {
        std::fs::rename(destination, &old).map_err(Error::io(destination))?;
    }
    if let Err(error) = std::fs::rename(staging, destination) {
        if had_old {
            let _ = std::fs::rename(&old, destination);
        }
        return Err(Error::io(destination)(error));
    }
    if had_old {
        std::fs::remove_dir_all(&old).map_err(Error::io(&old))?;
    }
    Ok(())
}

/// A finished normalized copy, opened for reading.
#[derive(Clone, Debug)]
pub struct NormalizedDataset {
    pub dir: PathBuf,
    pub meta: DatasetMeta,
}

impl NormalizedDataset {
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join("dataset.json");
        let text = std::fs::read_to_string(&path).map_err(|error| {
            if error.kind() == std::io::ErrorKind::NotFound {
                Error::bad_input(format!(
                    "{} is not an imported dataset (no dataset.json); import it first",
                    dir.display()
                ))
            } else {
                Error::io(&path)(error)
            }
        })?;
        let meta: DatasetMeta = serde_json::from_str(&text)
            .map_err(|error| Error::bad_input(format!("{}: unreadable: {error}", path.display())))?;
        if meta.format_version != FORMAT_VERSION {
            return Err(Error::bad_input(format!(
                "{}: format version {} is not {FORMAT_VERSION}; import the dataset again",
                path.display(),
                meta.format_version
            )));
        }
        Ok(Self { dir: dir.to_owned(), meta })
    }

    /// Every row, in order.
    pub fn rows(&self) -> Result<Vec<Map<String, Value>>> {
        let path = self.dir.join("table.jsonl");
        let file = File::open(&path).map_err(Error::io(&path))?;
        BufReader::new(file)
            .lines()
            .map(|line| {
                let line = line.map_err(Error::io(&path))?;
                serde_json::from_str(&line)
                    .map_err(|error| Error::bad_input(format!("{}: damaged row: {error}", path.display())))
            })
            .collect()
    }

    pub fn profile(&self) -> Result<DatasetStatus> {
        let path = self.dir.join("profile.json");
        let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
        serde_json::from_str(&text)
            .map_err(|error| Error::bad_input(format!("{}: unreadable: {error}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_image_copies_user_files_moves_scratch_files_and_keeps_one_per_digest() {
        let dir = tempfile::tempdir().unwrap();
        let writer = NormalizedWriter::create(&dir.path().join("copy")).unwrap();
        let (user, scratch) = (dir.path().join("user.png"), dir.path().join("scratch.png"));
        std::fs::write(&user, b"user bytes").unwrap();
        std::fs::write(&scratch, b"scratch bytes").unwrap();

        let copied = writer.store_image(&user, b"user bytes", "aa11", "png", false).unwrap();
        assert_eq!(copied, "images/aa/aa11.png");
        assert!(user.is_file(), "a user's file stays where it is");
        let moved = writer.store_image(&scratch, b"scratch bytes", "bb22", "png", true).unwrap();
        assert!(!scratch.exists(), "a scratch file is renamed into the copy");
        assert_eq!(std::fs::read(writer.staging().join(&moved)).unwrap(), b"scratch bytes");

        // The same content under a second name is stored once, and the first copy is kept.
        writer.store_image(&user, b"other", "aa11", "png", false).unwrap();
        assert_eq!(std::fs::read(writer.staging().join(&copied)).unwrap(), b"user bytes");
        writer.remove_image(&copied).unwrap();
        writer.remove_image(&copied).unwrap();
        assert!(!writer.staging().join(&copied).exists());
    }
}
