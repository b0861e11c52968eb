//! Layout detection: class folders, archive with CSV, CSV of paths, CSV of URLs.
