//! `ocellus predict --bundle DIR --input rows.csv --output preds.csv`: scores new rows with a
//! scoring bundle. Image cells are paths (relative to the CSV's folder), http(s) URLs or inline
//! base64 (`data:image/png;base64,...` or `base64:...`).

use std::path::{Path, PathBuf};

use ocellus_crds::dataset::ColumnType;
use serde_json::{Map, Value};

use crate::bundle::{ScoringBundle, write_predictions};
use crate::embed::EmbedOptions;
use crate::image_cells::{ImageCells, folder_of};
use crate::progress::bar;
use crate::{Error, Result, device};

#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// The scoring/ folder an `ocellus run` wrote (a folder, or `s3://…/scoring`).
    #[arg(long)]
    pub bundle: PathBuf,
    /// CSV with a header row and the columns the model was trained on.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the predictions (CSV: `prediction`, then `p_<class>` per class).
    #[arg(long)]
    pub output: PathBuf,
    /// Images per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Compute on the CPU even when a GPU is available.
    #[arg(long)]
    pub cpu: bool,
    /// Downloaded images are cached here [default: a folder beside the output].
    #[arg(long, env = "OCELLUS_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

pub fn predict(args: PredictArgs) -> Result<usize> {
    let device = if args.cpu { tch::Device::Cpu } else { device::best_device() };
    let bundle = ScoringBundle::load(&ocellus_dataset::store::trainer::bundle_dir(&args.bundle)?, device)?;
    let rows = read_rows(&args.input, &bundle)?;
    let cache_dir = args.cache_dir.clone().unwrap_or_else(|| folder_of(&args.output).join(".ocellus-cache"));
    let cells = ImageCells::new(folder_of(&args.input), cache_dir);
    let options = EmbedOptions { batch_size: args.batch_size, ..EmbedOptions::default() };
    let progress = bar(rows.len(), "scoring");
    let predictions = bundle.predict(&rows, &cells, &options, &progress)?;
    progress.finish_and_clear();
    // Written beside the output and renamed, so a failed run never leaves half a file.
    let folder = folder_of(&args.output);
    let partial = tempfile::Builder::new()
        .prefix(".predictions.partial-")
        .suffix(".csv")
        .tempfile_in(&folder)
        .map_err(Error::io(&folder))?;
    write_predictions(partial.path(), &bundle.target, &predictions)?;
    partial.persist(&args.output).map_err(|e| Error::io(&args.output)(e.error))?;
    Ok(rows.len())
}

/// Rows of a CSV as JSON objects typed as the bundle's columns: numbers for numeric columns,
/// strings otherwise, null for empty cells. Columns the model does not use are ignored.
pub fn read_rows(path: &Path, bundle: &ScoringBundle) -> Result<Vec<Map<String, Value>>> {
    let csv_error = |e: csv::Error| Error::bad_input(format!("{}: not a readable CSV: {e}", path.display()));
    let mut reader = csv::Reader::from_path(path).map_err(|e| match e.kind() {
        csv::ErrorKind::Io(_) => Error::bad_input(format!("{}: cannot open: {e}", path.display())),
        _ => csv_error(e),
    })?;
    let header: Vec<String> = reader.headers().map_err(csv_error)?.iter().map(str::to_owned).collect();
    bundle.check_columns(&header).map_err(|e| Error::bad_input(format!("{}: {e}", path.display())))?;
    let columns: Vec<(usize, &str, ColumnType)> = bundle
        .manifest
        .columns
        .iter()
        .map(|c| (header.iter().position(|h| h == &c.name).expect("checked"), c.name.as_str(), c.type_))
        .collect();
    let mut rows = Vec::new();
    for (index, record) in reader.records().enumerate() {
        let record = record.map_err(csv_error)?;
        let mut row = Map::new();
        for &(position, name, type_) in &columns {
            let cell = record.get(position).unwrap_or("").trim();
            let value = if cell.is_empty() {
                Value::Null
            } else if type_ == ColumnType::Numeric {
                let number: f64 = cell.parse().map_err(|_| {
                    Error::bad_input(format!(
                        "{}: row {}, column {name:?}: {cell:?} is not a number, and the model was trained on numbers there",
                        path.display(),
                        index + 1
                    ))
                })?;
                serde_json::Number::from_f64(number).map_or(Value::Null, Value::Number)
            } else {
                Value::String(cell.to_owned())
            };
            row.insert(name.to_owned(), value);
        }
        rows.push(row);
    }
    Ok(rows)
}
