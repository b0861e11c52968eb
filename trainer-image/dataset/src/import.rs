//! `ocellus dataset import`: one Dataset manifest in, one normalized copy plus profile out.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use kube::ResourceExt;
use ocellus_crds::dataset::{
    ColumnType, Dataset, DatasetSource, DatasetStatus, MissingImagePolicy, SplitSource,
};
use serde_json::{Map, Number, Value};

use crate::archive::{self, ArchiveLimits};
use crate::fetch::{self, FetchOptions, http::ImageDownloader};
use crate::images::{GoodImage, check_images};
use crate::layout::{self, LayoutChoice};
use crate::normalized::{
    BadImage, ColumnMeta, DatasetMeta, FORMAT_VERSION, NormalizedDataset, NormalizedWriter, image_path,
};
use crate::profile::{infer_as, profile_rows};
use crate::split::part_indices;
use crate::table::{DetectedLayout, RawTable};
use crate::{Error, Result};

/// How many image URLs download at once.
const DOWNLOAD_CONCURRENCY: usize = 16;
/// How many bad images an error message lists.
const LISTED_BAD_IMAGES: usize = 5;

/// Where an import reads and writes.
#[derive(Clone, Debug)]
pub struct ImportContext {
    /// Relative `spec.source.path` values are resolved from here (the manifest's folder).
    pub manifest_dir: PathBuf,
    /// PersistentVolumeClaims are mounted at `<volumes_root>/<claimName>`.
    pub volumes_root: PathBuf,
    /// Each imported Dataset lives at `<datasets_root>/<name>`; split parents are read there.
    pub datasets_root: PathBuf,
    /// Scratch space for downloads and extraction, emptied after each import.
    pub work_dir: PathBuf,
    /// Content-addressed cache of downloaded images, kept between imports.
    pub cache_dir: PathBuf,
}

/// Imports one Dataset into `<datasets_root>/<name>` and returns its profile.
pub fn import(dataset: &Dataset, context: &ImportContext) -> Result<DatasetStatus> {
    let destination = context.datasets_root.join(dataset.name_any());
    if let Some(split) = &dataset.spec.source.split {
        return import_split(split, &destination, context);
    }
    std::fs::create_dir_all(&context.work_dir).map_err(Error::io(&context.work_dir))?;
    let scratch = tempfile::tempdir_in(&context.work_dir).map_err(Error::io(&context.work_dir))?;
    let local = resolve_source(dataset, context, scratch.path())?;
    let is_table = layout::is_gzipped_csv_name(&local);
    let archive_kind = if local.is_file() && !is_table { archive::detect(&local)? } else { None };
    let root = match archive_kind {
        Some(_) => {
            let extracted = scratch.path().join("extracted");
            archive::extract(&local, &extracted, &ArchiveLimits::default())
                .map_err(|e| in_source_terms(e, (&local, scratch.path()), dataset))?;
            extracted
        }
        None => local.clone(),
    };
    let cell_images = scratch.path().join("cell-images");
    let choice = LayoutChoice { cell_images: Some(&cell_images), ..LayoutChoice::of(&dataset.spec) };
    let detected = layout::detect_with(&root, &choice)
        .map_err(|e| in_source_terms(e, (&root, scratch.path()), dataset))?;
    let image_columns = detected.image_columns.clone();
    let cells = resolve_image_cells(&detected, &image_columns, dataset, context)?;
    write_import(dataset, detected, image_columns, cells, (&destination, scratch.path()))
        .map_err(|e| in_source_terms(e, (&root, scratch.path()), dataset))
}

/// A bad-input message names paths as the user knows them: inside `s3://bucket/x.zip` or the
/// archive given as `path`, not in the scratch folder it was downloaded or extracted to.
fn in_source_terms(error: Error, (scratch_path, scratch): (&Path, &Path), dataset: &Dataset) -> Error {
    if !scratch_path.starts_with(scratch) {
        return error; // the user's own file or folder: its paths are the user's
    }
    let source = &dataset.spec.source;
    let label = match (&source.s3, &source.http, &source.path) {
        (Some(s3), _, _) => s3.uri.trim_end_matches('/').to_owned(),
        (_, Some(http), _) => http.url.trim_end_matches('/').to_owned(),
        (_, _, Some(path)) => path.clone(),
        _ => return error,
    };
    match error {
        Error::BadInput(message) => {
            let scratch = scratch_path.display().to_string();
            Error::BadInput(
                message.replace(&format!("{scratch}/"), &format!("{label}/")).replace(&scratch, &label),
            )
        }
        other => other,
    }
}

/// A local file or folder holding the source.
fn resolve_source(dataset: &Dataset, context: &ImportContext, scratch: &Path) -> Result<PathBuf> {
    let source: &DatasetSource = &dataset.spec.source;
    let local = if let Some(path) = &source.path {
        let path = Path::new(path);
        if path.is_absolute() { path.to_owned() } else { context.manifest_dir.join(path) }
    } else if let Some(volume) = &source.volume {
        let mount = context.volumes_root.join(&volume.claim_name);
        if !mount.is_dir() {
            return Err(Error::unreachable(format!(
                "volume {:?} is not mounted at {}; mount the PersistentVolumeClaim there",
                volume.claim_name,
                mount.display()
            )));
        }
        mount.join(&volume.path)
    } else if let Some(http) = source.http.as_ref().filter(|http| fetch::http_folder::is_folder(&http.url)) {
        let options = FetchOptions::from_limits(&dataset.spec.limits);
        return fetch::fetch_http_folder(&http.url, scratch, &options);
    } else if let Some(s3) = source.s3.as_ref().filter(|s3| fetch::s3_prefix::is_prefix(&s3.uri)) {
        let options = FetchOptions::from_limits(&dataset.spec.limits);
        return fetch::fetch_s3_prefix(s3, scratch, &context.cache_dir, &options);
    } else {
        let options = FetchOptions::from_limits(&dataset.spec.limits);
        return fetch::fetch_source(source, scratch, &options)?.ok_or_else(|| {
            Error::bad_input("spec.source must set exactly one of s3, http, volume, path or split")
        });
    };
    if !local.exists() {
        return Err(Error::bad_input(format!("{} does not exist; check spec.source", local.display())));
    }
    Ok(local)
}

/// For every row and image column: the local file to check, or why there is none.
type Cells = Vec<Vec<std::result::Result<PathBuf, String>>>;

fn resolve_image_cells(
    detected: &DetectedLayout,
    image_columns: &[String],
    dataset: &Dataset,
    context: &ImportContext,
) -> Result<Cells> {
    let indices: Vec<usize> =
        image_columns.iter().map(|c| detected.table.column_index(c).expect("checked above")).collect();
    let is_url = |value: &str| value.starts_with("http://") || value.starts_with("https://");
    let mut urls: Vec<String> = detected
        .table
        .rows
        .iter()
        .flat_map(|row| indices.iter().filter_map(|&i| row[i].clone()))
        .filter(|value| is_url(value))
        .collect();
    urls.sort();
    urls.dedup();
    let downloaded: HashMap<String, std::result::Result<PathBuf, String>> = if urls.is_empty() {
        HashMap::new()
    } else {
        let options = FetchOptions::from_limits(&dataset.spec.limits);
        let downloader = ImageDownloader::new(&context.cache_dir, options, DOWNLOAD_CONCURRENCY)?;
        let results = downloader.download_all(&urls);
        urls.into_iter().zip(results.into_iter().map(|r| r.map_err(|failure| failure.reason))).collect()
    };
    Ok(detected
        .table
        .rows
        .iter()
        .map(|row| {
            indices
                .iter()
                .map(|&i| match row[i].as_deref() {
                    None => Err("no image given".to_owned()),
                    Some(value) if is_url(value) => downloaded[value].clone(),
                    Some(value) => Ok(detected.base_dir.join(value)),
                })
                .collect()
        })
        .collect())
}

/// Checks every distinct image once and stores each good one as it is checked (files in the
/// import's own `scratch` space are moved, not copied), applies the bad-image policy and
/// writes the rest of the copy.
fn write_import(
    dataset: &Dataset,
    detected: DetectedLayout,
    image_columns: Vec<String>,
    cells: Cells,
    (destination, scratch): (&Path, &Path),
) -> Result<DatasetStatus> {
    let mut distinct: Vec<PathBuf> =
        cells.iter().flatten().filter_map(|c| c.as_ref().ok().cloned()).collect();
    distinct.sort();
    distinct.dedup();
    let mut writer = NormalizedWriter::create(destination)?;
    let store = |path: &Path, image: &GoodImage, data: &[u8]| {
        let movable = path.starts_with(scratch);
        writer.store_image(path, data, &image.sha256, extension(image), movable).map(drop)
    };
    let checked: HashMap<PathBuf, std::result::Result<GoodImage, String>> =
        distinct.iter().cloned().zip(check_images(&distinct, &dataset.spec.limits, store)?).collect();

    let table = &detected.table;
    let mut bad_images = Vec::new();
    let mut rows_with_bad = vec![false; table.rows.len()];
    let mut good: Vec<Vec<Option<(PathBuf, GoodImage)>>> = Vec::with_capacity(table.rows.len());
    for (row_index, row_cells) in cells.iter().enumerate() {
        let mut row_good = Vec::with_capacity(row_cells.len());
        for (cell, column) in row_cells.iter().zip(&image_columns) {
            let outcome = cell.clone().and_then(|path| checked[&path].clone().map(|image| (path, image)));
            match outcome {
                Ok(found) => row_good.push(Some(found)),
                Err(reason) => {
                    let value = table.rows[row_index][table.column_index(column).expect("known")].clone();
                    bad_images.push(BadImage {
                        row: row_index + 1,
                        column: column.clone(),
                        value: value.unwrap_or_default(),
                        reason,
                    });
                    rows_with_bad[row_index] = true;
                    row_good.push(None);
                }
            }
        }
        good.push(row_good);
    }
    enforce_bad_image_policy(dataset, table, &image_columns, &bad_images)?;

    let keep: Vec<usize> = (0..table.rows.len())
        .filter(|&i| !(rows_with_bad[i] && dataset.spec.missing_image_policy == MissingImagePolicy::DropRow))
        .collect();
    if keep.is_empty() {
        return Err(Error::bad_input(format!(
            "{}: no rows left after dropping rows with bad images; fix the images",
            dataset.name_any()
        )));
    }
    let meta = dataset_meta(&detected, &image_columns, &keep, keep.len() as i64);
    // Images stored during the check whose every row was dropped leave the copy again.
    let kept: HashSet<&str> = keep
        .iter()
        .flat_map(|&row| good[row].iter().flatten())
        .map(|(_, image)| image.sha256.as_str())
        .collect();
    for image in checked.values().flatten().filter(|image| !kept.contains(image.sha256.as_str())) {
        writer.remove_image(&image_path(&image.sha256, extension(image)))?;
    }
    let mut rows = Vec::with_capacity(keep.len());
    for &row_index in &keep {
        let mut row = Map::new();
        for column in &meta.columns {
            let raw = table.rows[row_index][table.column_index(&column.name).expect("known")].as_deref();
            let value = match image_columns.iter().position(|c| *c == column.name) {
                Some(image_index) => match &good[row_index][image_index] {
                    Some((_, image)) => Value::String(image_path(&image.sha256, extension(image))),
                    None => Value::Null,
                },
                None => typed_value(raw, column.type_),
            };
            row.insert(column.name.clone(), value);
        }
        writer.write_row(&row)?;
        rows.push(row);
    }
    let mut profile = profile_rows(&meta, &rows, bad_images.len() as i64);
    profile.location = Some(destination.display().to_string());
    writer.finish(&meta, &bad_images, &mut profile)?;
    Ok(profile)
}

fn enforce_bad_image_policy(
    dataset: &Dataset,
    table: &RawTable,
    image_columns: &[String],
    bad: &[BadImage],
) -> Result<()> {
    if bad.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = bad
        .iter()
        .take(LISTED_BAD_IMAGES)
        .map(|b| format!("row {} {} {:?}: {}", b.row, b.column, b.value, b.reason))
        .collect();
    let listed = listed.join("; ");
    let total = (table.rows.len() * image_columns.len()).max(1);
    let percent = bad.len() as f64 * 100.0 / total as f64;
    let limit = dataset.spec.limits.max_bad_percent;
    if dataset.spec.missing_image_policy == MissingImagePolicy::Fail {
        return Err(Error::bad_input(format!(
            "{} of {total} images are bad ({listed}); fix them, or set missingImagePolicy to DropRow or ZeroEmbedding",
            bad.len()
        )));
    }
    if percent > f64::from(limit) {
        return Err(Error::bad_input(format!(
            "{} of {total} images ({percent:.1}%) are bad, over limits.maxBadPercent ({limit}%): {listed}",
            bad.len()
        )));
    }
    Ok(())
}

fn dataset_meta(
    detected: &DetectedLayout,
    image_columns: &[String],
    keep: &[usize],
    rows: i64,
) -> DatasetMeta {
    let table = &detected.table;
    let columns = table
        .columns
        .iter()
        .enumerate()
        .map(|(index, name)| ColumnMeta {
            name: name.clone(),
            type_: if image_columns.contains(name) {
                ColumnType::Image
            } else {
                infer_as(table.declared(index), keep.iter().map(|&row| table.rows[row][index].as_deref()))
            },
        })
        .collect();
    DatasetMeta {
        format_version: FORMAT_VERSION,
        layout: detected.format,
        columns,
        image_columns: image_columns.to_vec(),
        label_column: detected.label_column.clone(),
        rows,
        splits: detected.splits.clone(),
    }
}

fn typed_value(raw: Option<&str>, type_: ColumnType) -> Value {
    match (raw, type_) {
        (None, _) => Value::Null,
        (Some(text), ColumnType::Numeric) => {
            text.trim().parse::<f64>().ok().and_then(Number::from_f64).map_or(Value::Null, Value::Number)
        }
        (Some(text), _) => Value::String(text.to_owned()),
    }
}

fn extension(image: &GoodImage) -> &'static str {
    image.format.extensions_str().first().copied().unwrap_or("img")
}

/// A split Dataset: a deterministic part of its parent's normalized copy.
fn import_split(split: &SplitSource, destination: &Path, context: &ImportContext) -> Result<DatasetStatus> {
    let parent_dir = context.datasets_root.join(&split.dataset_ref.name);
    let parent = NormalizedDataset::open(&parent_dir).map_err(|_| {
        Error::bad_input(format!(
            "parent Dataset {:?} is not imported yet (no {}); import it first",
            split.dataset_ref.name,
            parent_dir.display()
        ))
    })?;
    let rows = parent.rows()?;
    if let Some(column) = &split.stratify_by
        && !parent.meta.columns.iter().any(|c| c.name == *column)
    {
        return Err(Error::bad_input(format!(
            "stratifyBy names column {column:?}, which Dataset {:?} does not have",
            split.dataset_ref.name
        )));
    }
    let strata: Vec<Option<String>> = rows
        .iter()
        .map(|row| {
            split.stratify_by.as_ref().and_then(|c| row.get(c)).filter(|v| !v.is_null()).map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        })
        .collect();
    let strata: Vec<Option<&str>> = strata.iter().map(Option::as_deref).collect();
    let chosen = part_indices(&strata, split.percent, split.seed, split.part);

    let mut meta = parent.meta.clone();
    meta.rows = chosen.len() as i64;
    let mut writer = NormalizedWriter::create(destination)?;
    let mut kept = Vec::with_capacity(chosen.len());
    for index in chosen {
        let row = rows[index].clone();
        for column in &meta.image_columns {
            if let Some(Value::String(relative)) = row.get(column) {
                writer.link_image(&parent.dir, relative)?;
            }
        }
        writer.write_row(&row)?;
        kept.push(row);
    }
    let mut profile = profile_rows(&meta, &kept, 0);
    profile.location = Some(destination.display().to_string());
    writer.finish(&meta, &[], &mut profile)?;
    Ok(profile)
}
