//! The raw table a layout yields, before column types are inferred.

use std::path::PathBuf;

/// Rows of strings with named columns, as read from a CSV or Parquet file or derived from class
/// folders. `None` is a missing value (an empty CSV cell, a Parquet null).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    /// What a typed source's schema says each column holds; empty for a CSV (all inferred).
    pub declared: Vec<DeclaredType>,
}

impl RawTable {
    /// Index of a column by exact name.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// What the schema says column `index` holds.
    pub fn declared(&self, index: usize) -> DeclaredType {
        self.declared.get(index).copied().unwrap_or_default()
    }
}

/// A column's type as a schema declares it, before the values are looked at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeclaredType {
    /// No schema (CSV): inferred from the values.
    #[default]
    Inferred,
    /// Integers, floats, decimals.
    Numeric,
    /// Booleans, dates, times, timestamps.
    Categorical,
    /// Strings: text or categorical by their words, never numeric (a zip code stays a code).
    Words,
}

/// What a layout detector found under an extracted source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetectedLayout {
    /// The layout that applies (never `Auto`).
    pub format: ocellus_crds::dataset::DatasetFormat,
    pub table: RawTable,
    /// Directory that relative image paths in `table` are relative to.
    pub base_dir: PathBuf,
    /// Columns the layout knows hold images (`image` for class folders, the path/URL columns of a CSV).
    pub image_columns: Vec<String>,
    /// The label column the layout itself defines (`label` for class folders).
    pub label_column: Option<String>,
    /// The split folders found at the top (`train`, `test`…), one of which was imported.
    pub splits: Vec<String>,
}
