//! Image cells of a table → [`ImageInput`]s: relative or absolute paths, http(s) URLs
//! (downloaded once into a cache), or inline bytes as `data:image/...;base64,...` or
//! `base64:...`. Cells of a network request ([`ImageCells::for_requests`]) are never paths:
//! a server must not read its own files for whoever asks, so there bare base64 is the bytes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use ocellus_dataset::fetch::FetchOptions;
use ocellus_dataset::fetch::http::ImageDownloader;
use serde_json::Value;

use crate::embed::ImageInput;
use crate::{Error, Result};

/// Largest inline or downloaded image accepted, in bytes.
const MAX_IMAGE_BYTES: u64 = 64 << 20;

/// Resolves image cells; `base` is the folder relative paths are relative to.
pub struct ImageCells {
    /// `None` for cells from the network, which may not name files.
    base: Option<PathBuf>,
    cache_dir: PathBuf,
}

impl ImageCells {
    pub fn new(base: impl Into<PathBuf>, cache_dir: impl Into<PathBuf>) -> Self {
        Self { base: Some(base.into()), cache_dir: cache_dir.into() }
    }

    /// Cells of inference requests: base64 (bare, `base64:` or a `data:` URL) or http(s) URLs.
    pub fn for_requests(cache_dir: impl Into<PathBuf>) -> Self {
        Self { base: None, cache_dir: cache_dir.into() }
    }

    /// One input per cell, in order; `column` and the row number name a bad cell.
    pub fn resolve(&self, column: &str, cells: &[Option<&Value>]) -> Result<Vec<ImageInput>> {
        let mut inputs = Vec::with_capacity(cells.len());
        let mut urls = Vec::new();
        for (row, cell) in cells.iter().enumerate() {
            let text = match cell {
                None | Some(Value::Null) => {
                    inputs.push(ImageInput::Missing);
                    continue;
                }
                Some(Value::String(text)) if text.trim().is_empty() => {
                    inputs.push(ImageInput::Missing);
                    continue;
                }
                Some(Value::String(text)) => text.trim(),
                Some(other) => {
                    return Err(Error::bad_input(format!(
                        "row {row}, column {column:?}: {other} is not an image path, URL or base64 string"
                    )));
                }
            };
            let what = format!("row {row}, column {column:?}");
            if let Some(encoded) = inline_base64(text) {
                let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|error| {
                    Error::bad_input(format!("{what}: inline image is not valid base64 ({error})"))
                })?;
                inputs.push(ImageInput::Bytes(Arc::new(bytes), what));
            } else if text.starts_with("http://") || text.starts_with("https://") {
                urls.push((inputs.len(), text.to_owned(), what));
                inputs.push(ImageInput::Missing);
            } else if let Some(base) = &self.base {
                let path = base.join(text);
                if !path.is_file() {
                    return Err(Error::bad_input(format!(
                        "{what}: image file {} does not exist (relative paths are relative to {})",
                        path.display(),
                        base.display()
                    )));
                }
                inputs.push(ImageInput::Path(path));
            } else {
                let bytes = base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| {
                    Error::bad_input(format!(
                        "{what}: {} is neither base64 image bytes nor an http(s) URL (a server never \
                         reads its own files: send the image itself, base64-encoded)",
                        excerpt(text)
                    ))
                })?;
                inputs.push(ImageInput::Bytes(Arc::new(bytes), what));
            }
        }
        if !urls.is_empty() {
            let options = FetchOptions {
                timeout: std::time::Duration::from_secs(60),
                max_bytes: MAX_IMAGE_BYTES,
                retries: 3,
                initial_backoff: std::time::Duration::from_millis(200),
            };
            let downloader = ImageDownloader::new(&self.cache_dir, options, 8)?;
            let list: Vec<String> = urls.iter().map(|(_, url, _)| url.clone()).collect();
            for ((index, _, what), result) in urls.into_iter().zip(downloader.download_all(&list)) {
                let path = result.map_err(|failure| {
                    ocellus_dataset::Error::unreachable(format!(
                        "{what}: cannot download {}: {}",
                        failure.url, failure.reason
                    ))
                })?;
                inputs[index] = ImageInput::Path(path);
            }
        }
        Ok(inputs)
    }
}

fn inline_base64(text: &str) -> Option<&str> {
    if let Some(rest) = text.strip_prefix("base64:") {
        return Some(rest);
    }
    let rest = text.strip_prefix("data:")?;
    let (header, data) = rest.split_once(',')?;
    header.ends_with(";base64").then_some(data)
}

/// The start of a long cell, for an error message.
fn excerpt(text: &str) -> String {
    match text.char_indices().nth(40) {
        Some((end, _)) => format!("{:?}…", &text[..end]),
        None => format!("{text:?}"),
    }
}

/// The folder that holds `file`, for resolving paths relative to it.
pub fn folder_of(file: &Path) -> PathBuf {
    file.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_become_paths_bytes_or_missing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.png"), b"x").unwrap();
        let cells = ImageCells::new(dir.path(), dir.path().join("cache"));
        let values = [json!("a.png"), json!("base64:aGk="), json!("data:image/png;base64,aGk="), json!("")];
        let refs: Vec<Option<&Value>> = values.iter().map(Some).chain([None]).collect();
        let inputs = cells.resolve("photo", &refs).unwrap();
        assert!(matches!(&inputs[0], ImageInput::Path(p) if p.ends_with("a.png")));
        assert!(matches!(&inputs[1], ImageInput::Bytes(b, _) if b.as_slice() == b"hi"));
        assert!(matches!(&inputs[2], ImageInput::Bytes(b, _) if b.as_slice() == b"hi"));
        assert!(matches!(inputs[3], ImageInput::Missing));
        assert!(matches!(inputs[4], ImageInput::Missing));
    }

    #[test]
    fn a_missing_file_or_bad_base64_names_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let cells = ImageCells::new(dir.path(), dir.path().join("cache"));
        let error = cells.resolve("photo", &[Some(&json!("nope.jpg"))]).unwrap_err().to_string();
        assert!(error.contains("row 0, column \"photo\"") && error.contains("does not exist"), "{error}");
        let error = cells.resolve("photo", &[Some(&json!("base64:%%%"))]).unwrap_err().to_string();
        assert!(error.contains("not valid base64"), "{error}");
        let error = cells.resolve("photo", &[Some(&json!(3))]).unwrap_err().to_string();
        assert!(error.contains("not an image path"), "{error}");
    }

    #[test]
    fn request_cells_are_base64_or_urls_and_never_read_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret.png");
        std::fs::write(&file, b"x").unwrap();
        let cells = ImageCells::for_requests(dir.path().join("cache"));
        let inputs = cells.resolve("photo", &[Some(&json!("aGk=")), Some(&json!("base64:aGk="))]).unwrap();
        assert!(inputs.iter().all(|i| matches!(i, ImageInput::Bytes(b, _) if b.as_slice() == b"hi")));
        for path in [file.display().to_string(), "secret.png".to_owned()] {
            let error = cells.resolve("photo", &[Some(&json!(path))]).unwrap_err().to_string();
            assert!(error.contains("neither base64 image bytes nor an http(s) URL"), "{error}");
        }
    }
}
