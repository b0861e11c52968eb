//! Dataset import: sources → archive → layout → images → profile → normalized copy.
//!
//! Used by the `ocellus` trainer CLI and by `ocellus-dataset`, the libtorch-free binary an
//! import Job runs.

pub mod archive;
pub mod cli;
pub mod digest;
pub mod error;
pub mod fetch;
pub mod images;
pub mod import;
pub mod json_file;
pub mod layout;
pub mod normalized;
pub mod parquet_table;
pub mod profile;
pub mod report_client;
pub mod split;
pub mod store;
pub mod table;

pub use error::{Error, Result};
