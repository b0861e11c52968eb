//! Layout detection: class folders, archive with CSV, CSV of paths, CSV of URLs, and Parquet
//! tables in place of any of those CSVs (also with image bytes in the cells).
//!
//! Everywhere in a tree, hidden entries (`.git`, `.DS_Store`, `._*`), `__MACOSX`, `Thumbs.db`
//! and `desktop.ini` are ignored, and symbolic links to folders are not followed (links to files
//! are). A folder whose only visible entry is one folder is descended into first, repeatedly
//! (zips often wrap everything in `cars/…`).

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use ocellus_crds::dataset::{DatasetFormat, DatasetSpec};

use super::archive::printable;
use super::table::{DetectedLayout, RawTable};
use crate::{Error, Result};

/// Extensions of the image files a layout recognises, compared case-insensitively.
pub const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "bmp", "gif", "webp", "tif", "tiff"];

/// Deepest chain of single folders descended into.
const MAX_DESCENT: usize = 16;
/// Paths checked for existence when deciding whether a column holds local image paths.
const PATH_SAMPLE: usize = 256;
/// Names listed in a message before the rest are only counted.
const NAMES_SHOWN: usize = 20;
/// Bytes of a CSV's first line looked at to pick its delimiter.
const HEADER_SNIFF_BYTES: u64 = 64 * 1024;

/// What a Dataset's spec says about its layout, beyond what the files show.
#[derive(Clone, Copy, Debug, Default)]
pub struct LayoutChoice<'a> {
    /// `spec.format`; anything but `Auto` must match what is found.
    pub format: DatasetFormat,
    /// `spec.imageColumns`; empty detects them.
    pub image_columns: &'a [String],
    /// `spec.table`: the CSV to read when there are several, by its path inside the source.
    pub table: Option<&'a str>,
    /// `spec.splitFolder`: the split to import when the top folders are splits.
    pub split_folder: Option<&'a str>,
    /// `spec.classFolderDepth`: the folder level that names the class (1: the top folders).
    pub class_folder_depth: Option<usize>,
    /// Where a Parquet table's image bytes are unpacked, one file per cell; without it, a table
    /// holding image bytes is refused.
    pub cell_images: Option<&'a Path>,
}

impl<'a> LayoutChoice<'a> {
    pub fn of(spec: &'a DatasetSpec) -> Self {
        Self {
            format: spec.format,
            image_columns: &spec.image_columns,
            table: spec.table.as_deref(),
            split_folder: spec.split_folder.as_deref(),
            class_folder_depth: spec.class_folder_depth.and_then(|depth| usize::try_from(depth).ok()),
            cell_images: None,
        }
    }
}

/// Detects the layout under `root` (an extracted archive folder, a folder, or one CSV file)
/// and reads its table. `format` is the user's `spec.format`; anything but `Auto` must match.
pub fn detect(root: &Path, format: DatasetFormat) -> Result<DetectedLayout> {
    detect_with(root, &LayoutChoice { format, ..LayoutChoice::default() })
}

/// [`detect`], with the rest of what the spec chose: the image columns, the CSV among several,
/// the split folder.
pub fn detect_with(root: &Path, choice: &LayoutChoice) -> Result<DetectedLayout> {
    let metadata = fs::metadata(root).map_err(Error::io(root))?;
    if !metadata.is_dir() {
        if let Some((field, value)) = folder_fields(choice).next() {
            return Err(Error::bad_input(format!(
                "{}: spec.{field} is `{}`, but the source is one table file, not an archive or folder; \
                 remove spec.{field}",
                root.display(),
                printable(value)
            )));
        }
        return csv_layout(root, None, CsvPlace::Alone, choice);
    }
    let dir = descend_single_folders(root)?;
    let csv_files = match choice.table {
        Some(table) => vec![named_table(root, &dir, table)?],
        None => csv_files_in(&dir)?,
    };
    if let (Some(depth), false) = (choice.class_folder_depth, csv_files.is_empty()) {
        return Err(Error::bad_input(format!(
            "{}: spec.classFolderDepth is {depth}, but the data is a table listing the images ({}), \
             not class folders; remove spec.classFolderDepth",
            dir.display(),
            list_names(csv_files.iter().map(|path| file_name(path)))
        )));
    }
    if let (Some(split), false) = (choice.split_folder, csv_files.is_empty()) {
        return Err(Error::bad_input(format!(
            "{}: spec.splitFolder is `{}`, but the data is a CSV listing the images ({}), not split \
             folders of class folders; remove spec.splitFolder",
            dir.display(),
            printable(split),
            list_names(csv_files.iter().map(|path| file_name(path)))
        )));
    }
    match csv_files.as_slice() {
        [] => class_folder_layout(&dir, choice),
        [csv] => csv_layout(csv, Some(&dir), CsvPlace::InFolder, choice),
        _ => Err(Error::bad_input(format!(
            "{}: holds several tables (CSV or Parquet files: {}); set spec.table to the one this Dataset reads (one \
             archive can serve a training and a test Dataset), or keep one and remove the others",
            dir.display(),
            list_names(csv_files.iter().map(|path| file_name(path)))
        ))),
    }
}

/// The spec fields that only apply to an archive or folder, with their values.
fn folder_fields<'a>(choice: &LayoutChoice<'a>) -> impl Iterator<Item = (&'static str, &'a str)> {
    [("table", choice.table), ("splitFolder", choice.split_folder)]
        .into_iter()
        .filter_map(|(field, value)| Some((field, value?)))
}

/// `spec.table`'s CSV: a relative path without `..`, under the top folder (after single
/// folders were descended into) or else under the archive's or folder's root.
fn named_table(root: &Path, dir: &Path, table: &str) -> Result<PathBuf> {
    let relative = Path::new(table);
    if !relative.components().all(|part| matches!(part, Component::Normal(_))) {
        return Err(Error::bad_input(format!(
            "spec.table is `{}`: give the CSV's path inside the archive or folder, relative and \
             without `..` (for example `train.csv` or `labels/train.csv`)",
            printable(table)
        )));
    }
    if !is_table_name(table) {
        return Err(Error::bad_input(format!(
            "spec.table is `{}`, which is not a .csv, .csv.gz or .parquet file; name the table that \
             lists the images",
            printable(table)
        )));
    }
    if let Some(csv) = [dir, root].into_iter().map(|base| base.join(relative)).find(|csv| csv.is_file()) {
        return Ok(csv);
    }
    let found = csv_files_in(dir)?;
    let found = match found.is_empty() {
        true => "there is no CSV file at the top".to_owned(),
        false => {
            format!("the CSV files at the top are {}", list_names(found.iter().map(|path| file_name(path))))
        }
    };
    Err(Error::bad_input(format!(
        "{}: has no CSV `{}` (spec.table); {found}. Set spec.table to one of them, with its folder",
        dir.display(),
        printable(table)
    )))
}

/// Names of the columns that hold image paths or URLs, in table order. A column qualifies when
/// more than half of its non-empty values end with an image extension (URL query strings and
/// fragments ignored) and, when those are local paths, most of a sample of them exist (relative
/// to `base_dir`, or absolute); or when its name says image/path/file/url and every value is an
/// http(s) URL. URLs are never fetched.
pub fn image_columns(table: &RawTable, base_dir: &Path) -> Vec<String> {
    table
        .columns
        .iter()
        .enumerate()
        .filter(|(index, name)| detect_reference(table, *index, name, base_dir).is_some())
        .map(|(_, name)| name.clone())
        .collect()
}

/// Whether a file name or path ends with one of [`IMAGE_EXTENSIONS`].
pub fn has_image_extension(path: &str) -> bool {
    let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
    name.rsplit_once('.').is_some_and(|(_, ext)| IMAGE_EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext)))
}

/// Reads a CSV (gzipped when its name ends in `.gz`) with a header row, streaming. Header names are trimmed, an empty one becomes
/// `column_<n>` (pandas writes its index that way); empty or blank cells are `None`. The
/// delimiter is `,` unless the header line has no comma but has tabs or semicolons (whichever
/// is more frequent). A UTF-8 BOM is stripped; anything else that is not UTF-8 is refused.
pub fn read_csv(path: &Path) -> Result<RawTable> {
    let delimiter = sniff_delimiter(path)?;
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).from_reader(open_csv(path)?);
    let header = reader.byte_headers().map_err(|e| csv_failure(path, e))?.clone();
    let columns = column_names(path, &header)?;
    let mut rows = Vec::new();
    let mut record = csv::ByteRecord::new();
    while reader.read_byte_record(&mut record).map_err(|e| csv_failure(path, e))? {
        rows.push(row_values(path, &record)?);
    }
    if rows.is_empty() {
        return Err(Error::bad_input(format!(
            "{} has no rows; add one row per image under the header",
            path.display()
        )));
    }
    Ok(RawTable { columns, rows, declared: Vec::new() })
}

/// Where a CSV was found: alone (the source is the CSV) or at the top of a folder or archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CsvPlace {
    Alone,
    InFolder,
}

/// What the values of one image column are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reference {
    Url,
    Path,
}

/// What the image columns of a table hold, taken together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum References {
    Urls,
    RelativePaths,
    /// Absolute paths, possibly mixed with relative ones.
    AbsolutePaths,
}

impl References {
    fn describe(self) -> &'static str {
        match self {
            Self::Urls => "http(s) URLs",
            Self::RelativePaths => "relative paths",
            Self::AbsolutePaths => "absolute paths",
        }
    }
}

/// One visible entry of a folder.
struct Item {
    name: String,
    path: PathBuf,
    kind: ItemKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ItemKind {
    Dir,
    File,
    /// A link to a folder, a broken link, a device: not looked into.
    Other,
}

fn class_folder_layout(dir: &Path, choice: &LayoutChoice) -> Result<DetectedLayout> {
    let format = choice.format;
    if !matches!(format, DatasetFormat::Auto | DatasetFormat::ClassFolders) {
        let folders: Vec<String> = visible_items(dir)?
            .into_iter()
            .filter(|item| item.kind == ItemKind::Dir)
            .map(|item| item.name)
            .collect();
        let found = match folders.is_empty() {
            true => "no folders".to_owned(),
            false => format!("folders {}", list_names(folders.iter().map(String::as_str))),
        };
        return Err(Error::bad_input(format!(
            "{}: spec.format is {format:?} but there is no CSV file at the top level (found {found}); \
             set spec.format to ClassFolders or Auto, or add the CSV",
            dir.display()
        )));
    }
    let (class_root, splits) = class_root(dir, choice.split_folder)?;
    Ok(DetectedLayout {
        format: DatasetFormat::ClassFolders,
        table: class_folder_table(&class_root, choice.class_folder_depth)?,
        base_dir: class_root,
        image_columns: vec!["image".to_owned()],
        label_column: Some("label".to_owned()),
        splits,
    })
}

/// Columns `image` (path relative to `dir`, `/`-separated) and `label` (the folder at `depth`,
/// 1 by default: the first-level folder, also for images nested deeper), sorted by path. With
/// no depth given, every image sitting two or more folders deep is refused as ambiguous.
fn class_folder_table(dir: &Path, depth: Option<usize>) -> Result<RawTable> {
    let mut rows = Vec::new();
    let mut loose_image = None;
    let mut empty_folder = None;
    for item in visible_items(dir)? {
        match item.kind {
            ItemKind::Dir => {
                let images = images_under(&item.path, &item.name)?;
                if images.is_empty() {
                    empty_folder.get_or_insert(item.name.clone());
                }
                rows.extend(images.into_iter().map(|image| vec![Some(image), Some(item.name.clone())]));
            }
            ItemKind::File if has_image_extension(&item.name) => {
                loose_image.get_or_insert(item.name);
            }
            ItemKind::File | ItemKind::Other => {}
        }
    }
    if let Some(image) = loose_image {
        return Err(Error::bad_input(format!(
            "{}: image `{}` sits at the top level, not in a class folder; put every image in a \
             folder named after its class (at least two classes), or add a CSV listing paths and labels",
            dir.display(),
            printable(&image)
        )));
    }
    if rows.is_empty() {
        return Err(Error::bad_input(format!(
            "{}: holds no images ({}) and no CSV; upload one folder of images per class, or a CSV \
             that lists the images",
            dir.display(),
            IMAGE_EXTENSIONS.join(", ")
        )));
    }
    if let Some(folder) = empty_folder {
        return Err(Error::bad_input(format!(
            "{}: class folder `{}` holds no images ({}); add its images or remove the folder",
            dir.display(),
            printable(&folder),
            IMAGE_EXTENSIONS.join(", ")
        )));
    }
    rows.sort_unstable();
    match depth {
        None => refuse_ambiguous_depth(dir, &rows)?,
        Some(depth) => relabel_at_depth(dir, &mut rows, depth)?,
    }
    Ok(RawTable { columns: vec!["image".to_owned(), "label".to_owned()], rows, declared: Vec::new() })
}

/// The folders of an image path `a/b/c.png`: `a`, `b`.
fn folders_of(image: &str) -> Vec<&str> {
    let mut parts: Vec<&str> = image.split('/').collect();
    parts.pop();
    parts
}

/// When no image sits directly in a class folder, the class may as well be the folder inside:
/// that is the user's to say.
fn refuse_ambiguous_depth(dir: &Path, rows: &[Vec<Option<String>>]) -> Result<()> {
    let images = || rows.iter().filter_map(|row| row[0].as_deref());
    if images().any(|image| folders_of(image).len() < 2) {
        return Ok(());
    }
    let level = |index: usize| {
        let mut names: Vec<&str> = images().map(|image| folders_of(image)[index]).collect();
        names.sort_unstable();
        names.dedup();
        list_names(names.into_iter())
    };
    let example = images().next().unwrap_or_default();
    Err(Error::bad_input(format!(
        "{}: every image sits two or more folders deep (for example `{}`), so the class could be \
         the top folder ({}) or the folder inside it ({}); set spec.classFolderDepth to 1 to label \
         by the top folders or to 2 to label by the folders inside them",
        dir.display(),
        printable(example),
        level(0),
        level(1)
    )))
}

/// Labels each image by its folder at `depth` (1: the top folder).
fn relabel_at_depth(dir: &Path, rows: &mut [Vec<Option<String>>], depth: usize) -> Result<()> {
    for row in rows.iter_mut() {
        let image = row[0].clone().unwrap_or_default();
        let Some(label) = folders_of(&image).get(depth.saturating_sub(1)).map(|name| (*name).to_owned())
        else {
            return Err(Error::bad_input(format!(
                "{}: image `{}` sits above folder level {depth} (spec.classFolderDepth); put every \
                 image {depth} folders deep, or lower spec.classFolderDepth",
                dir.display(),
                printable(&image)
            )));
        };
        row[1] = Some(label);
    }
    Ok(())
}

/// Folder names that name a split of the data, not a class.
const SPLIT_FOLDER_NAMES: [&str; 5] = ["train", "test", "val", "valid", "validation"];

/// The folder whose folders are the classes, and the split folders found above it.
///
/// `train/cat/1.png` beside `test/cat/2.png` is a split with class folders inside: taking
/// `train` and `test` as the classes would fit a model of which split an image came from, so
/// that layout needs `spec.splitFolder`. An archive of one split (`train/cat/…` alone) was
/// already descended into; naming it is allowed.
fn class_root(dir: &Path, split_folder: Option<&str>) -> Result<(PathBuf, Vec<String>)> {
    let splits = split_folders(dir)?;
    let names = || list_names(splits.iter().map(|folder| folder.name.as_str()));
    let wanted = match split_folder {
        Some(wanted) => wanted,
        None if splits.is_empty() => return Ok((dir.to_path_buf(), Vec::new())),
        None => {
            return Err(Error::bad_input(format!(
                "{}: the top folders {} are splits with class folders inside, not classes; set \
                 spec.splitFolder to the split this Dataset imports (for example `splitFolder: train`, \
                 and a second Dataset with `splitFolder: test` for the Experiment's testDatasetRef)",
                dir.display(),
                names()
            )));
        }
    };
    if let Some(split) = splits.iter().find(|folder| folder.name.eq_ignore_ascii_case(wanted)) {
        let found = splits.iter().map(|folder| folder.name.clone()).collect();
        return Ok((split.path.clone(), found));
    }
    if let Some(name) = dir.file_name().and_then(|name| name.to_str())
        && name.eq_ignore_ascii_case(wanted)
        && splits.is_empty()
    {
        return Ok((dir.to_path_buf(), vec![name.to_owned()]));
    }
    let found = match splits.is_empty() {
        true => "the top folders are not split folders (train, test, val…) of class folders".to_owned(),
        false => format!("the split folders are {}", names()),
    };
    Err(Error::bad_input(format!(
        "{}: spec.splitFolder is `{}` but {found}; set it to one of those, or remove it",
        dir.display(),
        printable(wanted)
    )))
}

/// The top folders when every one of them names a split and at least one holds folders.
fn split_folders(dir: &Path) -> Result<Vec<Item>> {
    let folders: Vec<Item> =
        visible_items(dir)?.into_iter().filter(|item| item.kind == ItemKind::Dir).collect();
    let all_split_names = !folders.is_empty()
        && folders
            .iter()
            .all(|folder| SPLIT_FOLDER_NAMES.contains(&folder.name.to_ascii_lowercase().as_str()));
    if !all_split_names {
        return Ok(Vec::new());
    }
    for folder in &folders {
        if visible_items(&folder.path)?.iter().any(|item| item.kind == ItemKind::Dir) {
            return Ok(folders);
        }
    }
    Ok(Vec::new())
}

/// Relative paths (`prefix/…`, `/`-separated) of the image files anywhere under `dir`.
fn images_under(dir: &Path, prefix: &str) -> Result<Vec<String>> {
    let mut images = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), prefix.to_owned())];
    while let Some((dir, prefix)) = pending.pop() {
        for item in visible_items(&dir)? {
            let relative = format!("{prefix}/{}", item.name);
            match item.kind {
                ItemKind::Dir => pending.push((item.path, relative)),
                ItemKind::File if has_image_extension(&item.name) => images.push(relative),
                ItemKind::File | ItemKind::Other => {}
            }
        }
    }
    Ok(images)
}

fn descend_single_folders(root: &Path) -> Result<PathBuf> {
    let mut dir = root.to_path_buf();
    for _ in 0..MAX_DESCENT {
        match visible_items(&dir)?.as_slice() {
            [only] if only.kind == ItemKind::Dir => dir = only.path.clone(),
            _ => break,
        }
    }
    Ok(dir)
}

fn csv_files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(visible_items(dir)?
        .into_iter()
        .filter(|item| item.kind == ItemKind::File && is_table_name(&item.name))
        .map(|item| item.path)
        .collect())
}

/// A table file's name: `.csv`, `.csv.gz` or `.parquet` (any case).
pub(crate) fn is_table_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.ends_with(".csv") || name.ends_with(".csv.gz") || name.ends_with(".parquet")
}

/// A CSV file named `*.csv.gz` (any case): read through gzip; a source file of that name is
/// a table, not a tar.gz.
pub fn is_gzipped_csv_name(path: &Path) -> bool {
    path.file_name().is_some_and(|name| name.to_string_lossy().to_ascii_lowercase().ends_with(".csv.gz"))
}

/// A gzipped CSV that does not decompress is bad input; other read failures are the machine's.
fn read_failure(path: &Path, source: std::io::Error) -> Error {
    let gzipped = path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("gz"));
    if gzipped
        && matches!(
            source.kind(),
            std::io::ErrorKind::InvalidInput
                | std::io::ErrorKind::InvalidData
                | std::io::ErrorKind::UnexpectedEof
        )
    {
        return Error::bad_input(format!(
            "{}: not a readable gzip file ({source}); compress the CSV again with gzip, or upload it uncompressed",
            path.display()
        ));
    }
    Error::io(path)(source)
}

fn open_csv(path: &Path) -> Result<Box<dyn Read>> {
    let file = fs::File::open(path).map_err(Error::io(path))?;
    let gzipped = path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("gz"));
    Ok(if gzipped {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(file)
    })
}

/// The folder's entries that matter, sorted by name. A name that is not UTF-8 is refused,
/// since it could not be written into the table.
fn visible_items(dir: &Path) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    for entry in fs::read_dir(dir).map_err(Error::io(dir))? {
        let entry = entry.map_err(Error::io(dir))?;
        let path = entry.path();
        let name = entry.file_name();
        if is_ignored_name(&name.to_string_lossy()) {
            continue;
        }
        let Some(name) = name.to_str().map(str::to_owned) else {
            return Err(Error::bad_input(format!("{}: the name is not UTF-8; rename it", path.display())));
        };
        let file_type = entry.file_type().map_err(Error::io(&path))?;
        let kind = if file_type.is_dir() {
            ItemKind::Dir
        } else if file_type.is_file() || (file_type.is_symlink() && path.is_file()) {
            ItemKind::File
        } else {
            ItemKind::Other
        };
        items.push(Item { name, path, kind });
    }
    items.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(items)
}

pub(crate) fn is_ignored_name(name: &str) -> bool {
    name.starts_with('.') || matches!(name, "__MACOSX" | "Thumbs.db" | "desktop.ini")
}

/// `top` is the folder the CSV was found in or under; image paths are relative to the CSV's
/// own folder, or else (a CSV in a subfolder, named by spec.table) to `top`.
fn csv_layout(
    csv: &Path,
    top: Option<&Path>,
    place: CsvPlace,
    choice: &LayoutChoice,
) -> Result<DetectedLayout> {
    let format = choice.format;
    if format == DatasetFormat::ClassFolders {
        return Err(Error::bad_input(format!(
            "{}: spec.format is ClassFolders but the data is {}; set spec.format to Auto, or remove \
             the CSV and keep one folder of images per class",
            csv.display(),
            match place {
                CsvPlace::Alone => "a CSV file",
                CsvPlace::InFolder => "a CSV next to the images",
            }
        )));
    }
    let (table, byte_columns) = read_table(csv, choice.cell_images)?;
    if !byte_columns.is_empty() {
        return image_bytes_layout(csv, table, byte_columns, choice);
    }
    let parent = match csv.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let named_columns = choice.image_columns;
    let base_dir = match top {
        Some(top)
            if top != parent
                && !resolves_under(&table, named_columns, &parent)
                && resolves_under(&table, named_columns, top) =>
        {
            top.to_path_buf()
        }
        _ => parent,
    };
    let columns = match named_columns {
        [] => image_columns(&table, &base_dir),
        named => check_named_columns(csv, &table, named)?,
    };
    if columns.is_empty() {
        let unresolved = match first_missing_image_path(&table, &base_dir) {
            Some(path) => format!(" (`{}` is not found next to the CSV)", printable(path)),
            None => String::new(),
        };
        return Err(Error::bad_input(format!(
            "{}: no column holds image paths or URLs{unresolved}; columns are: {}. Name the image \
             column in spec.imageColumns or check the paths",
            csv.display(),
            list_names(table.columns.iter().map(String::as_str))
        )));
    }
    let references = references_of(csv, &table, &columns)?;
    let format = resolve_csv_format(csv, format, references, place, &columns)?;
    Ok(DetectedLayout {
        format,
        table,
        base_dir,
        image_columns: columns,
        label_column: None,
        splits: Vec::new(),
    })
}

/// A table (CSV or Parquet, told by its first bytes) and the columns that held image bytes.
fn read_table(path: &Path, cell_images: Option<&Path>) -> Result<(RawTable, Vec<String>)> {
    if crate::parquet_table::is_parquet_file(path)? {
        let read = crate::parquet_table::read_parquet(path, cell_images)?;
        return Ok((read.table, read.byte_columns));
    }
    Ok((read_csv(path)?, Vec::new()))
}

/// A Parquet table whose image columns hold encoded images: the cells name the files they were
/// unpacked to under `choice.cell_images`. Named image columns must be among the byte columns.
fn image_bytes_layout(
    path: &Path,
    table: RawTable,
    byte_columns: Vec<String>,
    choice: &LayoutChoice,
) -> Result<DetectedLayout> {
    let listed = list_names(byte_columns.iter().map(String::as_str));
    if !matches!(choice.format, DatasetFormat::Auto | DatasetFormat::ImageBytes) {
        return Err(Error::bad_input(format!(
            "{}: spec.format is {:?} but image column(s) {listed} hold encoded image bytes; set \
             spec.format to ImageBytes or Auto",
            path.display(),
            choice.format
        )));
    }
    let image_columns = match choice.image_columns {
        [] => byte_columns,
        named => {
            check_named_columns(path, &table, named)?;
            if let Some(other) = named.iter().find(|name| !byte_columns.contains(name)) {
                return Err(Error::bad_input(format!(
                    "{}: spec.imageColumns names `{}`, which holds no image bytes; the image \
                     bytes are in {listed}: name those",
                    path.display(),
                    printable(other)
                )));
            }
            named.to_vec()
        }
    };
    Ok(DetectedLayout {
        format: DatasetFormat::ImageBytes,
        table,
        base_dir: choice
            .cell_images
            .expect("byte columns are only read with a folder for them")
            .to_path_buf(),
        image_columns,
        label_column: None,
        splits: Vec::new(),
    })
}

/// Whether the table's image paths are files under `base`: some column is detected as image
/// paths or URLs there, or (named columns) most of a sample of a named column's paths exist.
fn resolves_under(table: &RawTable, named: &[String], base: &Path) -> bool {
    if named.is_empty() {
        return !image_columns(table, base).is_empty();
    }
    named.iter().filter_map(|name| table.column_index(name)).any(|index| {
        let paths: Vec<&str> = non_empty_values(table, index).filter(|value| !is_http_url(value)).collect();
        !paths.is_empty() && most_exist(&paths, base)
    })
}

/// The first cell that looks like a local image path but is no file under `base`.
fn first_missing_image_path<'a>(table: &'a RawTable, base: &Path) -> Option<&'a str> {
    table
        .rows
        .iter()
        .flatten()
        .flatten()
        .map(|value| value.trim())
        .find(|value| !is_http_url(value) && has_image_extension(value) && !base.join(value).is_file())
}

fn check_named_columns(csv: &Path, table: &RawTable, named: &[String]) -> Result<Vec<String>> {
    if let Some(missing) = named.iter().find(|name| table.column_index(name).is_none()) {
        return Err(Error::bad_input(format!(
            "{}: spec.imageColumns names `{}`, which is not a column; columns are: {}",
            csv.display(),
            printable(missing),
            list_names(table.columns.iter().map(String::as_str))
        )));
    }
    Ok(named.to_vec())
}

/// What the image columns hold together; columns mixing URLs and local paths are refused.
fn references_of(csv: &Path, table: &RawTable, columns: &[String]) -> Result<References> {
    let mut url_column = None;
    let mut path_column = None;
    let mut any_absolute = false;
    for name in columns {
        let index = table.column_index(name).unwrap_or_default();
        let values: Vec<&str> = non_empty_values(table, index).collect();
        let urls = values.iter().filter(|value| is_http_url(value)).count();
        if 2 * urls > values.len() {
            url_column.get_or_insert(name);
        } else {
            path_column.get_or_insert(name);
            any_absolute |= values.iter().any(|value| Path::new(value).is_absolute());
        }
    }
    match (url_column, path_column) {
        (Some(url), Some(path)) => Err(Error::bad_input(format!(
            "{}: column `{}` holds URLs but column `{}` holds local paths; use one kind of image \
             reference in every image column",
            csv.display(),
            printable(url),
            printable(path)
        ))),
        (Some(_), None) => Ok(References::Urls),
        (None, _) if any_absolute => Ok(References::AbsolutePaths),
        (None, _) => Ok(References::RelativePaths),
    }
}

/// The CSV layout that fits `references`, checked against the requested format.
fn resolve_csv_format(
    csv: &Path,
    requested: DatasetFormat,
    references: References,
    place: CsvPlace,
    columns: &[String],
) -> Result<DatasetFormat> {
    use DatasetFormat::*;
    let natural = match (references, place) {
        (References::Urls, _) => CsvUrls,
        (References::AbsolutePaths, _) | (References::RelativePaths, CsvPlace::Alone) => CsvPaths,
        (References::RelativePaths, CsvPlace::InFolder) => ArchiveWithCsv,
    };
    let fits = match requested {
        Auto => true,
        CsvUrls => references == References::Urls,
        CsvPaths => references != References::Urls,
        ArchiveWithCsv => natural == ArchiveWithCsv,
        ClassFolders | ImageBytes => false,
    };
    if fits {
        return Ok(if requested == Auto { natural } else { requested });
    }
    let found = if requested == ArchiveWithCsv && place == CsvPlace::Alone {
        "this is a lone CSV file, not an archive or folder holding a CSV and its images".to_owned()
    } else {
        format!(
            "image column(s) {} hold {}",
            list_names(columns.iter().map(String::as_str)),
            references.describe()
        )
    };
    Err(Error::bad_input(format!(
        "{}: spec.format is {requested:?} but {found}; set spec.format to {natural:?} or Auto",
        csv.display()
    )))
}

/// Whether (and how) column `index` holds image references; see [`image_columns`].
fn detect_reference(table: &RawTable, index: usize, name: &str, base_dir: &Path) -> Option<Reference> {
    let values: Vec<&str> = non_empty_values(table, index).collect();
    if values.is_empty() {
        return None;
    }
    let urls = values.iter().filter(|value| is_http_url(value)).count();
    if urls == values.len() && is_image_column_name(name) {
        return Some(Reference::Url);
    }
    let url_images = values.iter().filter(|value| is_http_url(value) && has_image_extension(url_path(value)));
    let path_images: Vec<&str> =
        values.iter().copied().filter(|value| !is_http_url(value) && has_image_extension(value)).collect();
    if 2 * (url_images.count() + path_images.len()) <= values.len() {
        return None;
    }
    if 2 * urls > values.len() {
        Some(Reference::Url)
    } else {
        most_exist(&path_images, base_dir).then_some(Reference::Path)
    }
}

/// Whether more than half of an evenly spread sample of `paths` are files.
fn most_exist(paths: &[&str], base_dir: &Path) -> bool {
    let step = paths.len().div_ceil(PATH_SAMPLE).max(1);
    let sample: Vec<&str> = paths.iter().copied().step_by(step).collect();
    let existing = sample.iter().filter(|path| base_dir.join(path).is_file()).count();
    2 * existing > sample.len()
}

fn is_image_column_name(name: &str) -> bool {
    let name: String =
        name.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_ascii_lowercase();
    name.starts_with("image")
        || name.starts_with("img")
        || matches!(name.as_str(), "path" | "file" | "filepath" | "filename" | "url" | "photo" | "picture")
}

fn is_http_url(value: &str) -> bool {
    let has_prefix = |prefix: &str| {
        value.len() > prefix.len() && value.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    };
    has_prefix("http://") || has_prefix("https://")
}

/// A URL without its query string and fragment.
fn url_path(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

fn non_empty_values(table: &RawTable, index: usize) -> impl Iterator<Item = &str> {
    table
        .rows
        .iter()
        .filter_map(move |row| row.get(index)?.as_deref())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// `,` unless the first line has none but has tabs or semicolons.
fn sniff_delimiter(path: &Path) -> Result<u8> {
    let mut first_line = Vec::new();
    BufReader::new(open_csv(path)?.take(HEADER_SNIFF_BYTES))
        .read_until(b'\n', &mut first_line)
        .map_err(|source| read_failure(path, source))?;
    Ok(delimiter_of(&first_line))
}

fn delimiter_of(header_line: &[u8]) -> u8 {
    let count = |byte: u8| header_line.iter().filter(|&&b| b == byte).count();
    if count(b',') > 0 {
        return b',';
    }
    match (count(b'\t'), count(b';')) {
        (0, 0) => b',',
        (tabs, semicolons) if tabs >= semicolons => b'\t',
        _ => b';',
    }
}

fn column_names(path: &Path, header: &csv::ByteRecord) -> Result<Vec<String>> {
    if header.is_empty() {
        return Err(Error::bad_input(format!(
            "{} is empty; a CSV needs a header row and one row per image",
            path.display()
        )));
    }
    let mut columns = Vec::with_capacity(header.len());
    for (index, field) in header.iter().enumerate() {
        let name = utf8_field(path, 1, field)?;
        let name = name.trim_start_matches('\u{feff}').trim();
        columns.push(if name.is_empty() { format!("column_{}", index + 1) } else { name.to_owned() });
    }
    let mut duplicates: Vec<&str> = Vec::new();
    for (index, name) in columns.iter().enumerate() {
        if columns[..index].contains(name) && !duplicates.contains(&name.as_str()) {
            duplicates.push(name);
        }
    }
    if !duplicates.is_empty() {
        return Err(Error::bad_input(format!(
            "{}: duplicate column names: {}; rename them so every column name is unique",
            path.display(),
            list_names(duplicates.into_iter())
        )));
    }
    Ok(columns)
}

fn row_values(path: &Path, record: &csv::ByteRecord) -> Result<Vec<Option<String>>> {
    let line = record.position().map_or(0, csv::Position::line);
    record
        .iter()
        .map(|field| {
            let value = utf8_field(path, line, field)?;
            Ok((!value.trim().is_empty()).then(|| value.to_owned()))
        })
        .collect()
}

fn utf8_field<'a>(path: &Path, line: u64, field: &'a [u8]) -> Result<&'a str> {
    std::str::from_utf8(field).map_err(|_| {
        Error::bad_input(format!("{}: line {line} is not UTF-8; save the file as UTF-8", path.display()))
    })
}

fn csv_failure(path: &Path, err: csv::Error) -> Error {
    match err.into_kind() {
        csv::ErrorKind::Io(source) => read_failure(path, source),
        csv::ErrorKind::UnequalLengths { pos, expected_len, len } => Error::bad_input(format!(
            "{}: line {} has {len} fields but the header has {expected_len}; fix that row (quote \
             values that contain the delimiter)",
            path.display(),
            pos.map_or(0, |pos| pos.line())
        )),
        other => Error::bad_input(format!(
            "{}: cannot read the CSV ({}); save it as a plain UTF-8 CSV",
            path.display(),
            printable(&format!("{other:?}"))
        )),
    }
}

fn file_name(path: &Path) -> &str {
    path.file_name().and_then(|name| name.to_str()).unwrap_or_default()
}

/// Names for a message: comma-separated, control characters escaped, at most [`NAMES_SHOWN`].
fn list_names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    let mut listed: Vec<String> = names.iter().take(NAMES_SHOWN).map(|name| printable(name)).collect();
    if names.len() > NAMES_SHOWN {
        listed.push(format!("and {} more", names.len() - NAMES_SHOWN));
    }
    listed.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(columns: &[&str], rows: &[&[&str]]) -> RawTable {
        RawTable {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: rows
                .iter()
                .map(|row| row.iter().map(|v| (!v.is_empty()).then(|| v.to_string())).collect())
                .collect(),
            declared: Vec::new(),
        }
    }

    #[test]
    fn image_extension_is_case_insensitive() {
        assert!(has_image_extension("a/b/C.JPG"));
        assert!(has_image_extension(r"a\b.TiFf"));
        assert!(!has_image_extension("a.png/readme"));
        assert!(!has_image_extension("png"));
        assert!(!has_image_extension("a.csv"));
    }

    #[test]
    fn url_columns_ignore_query_strings() {
        let urls =
            table(&["pic", "note"], &[&["https://x.org/a.jpg?s=1", "a"], &["HTTP://x.org/b.PNG#f", "b"]]);
        assert_eq!(image_columns(&urls, Path::new("/nonexistent")), vec!["pic"]);
    }

    #[test]
    fn url_columns_without_extension_need_an_image_name() {
        let rows: &[&[&str]] =
            &[&["https://x.org/1", "https://x.org/2"], &["https://x.org/3", "https://x.org/4"]];
        let urls = table(&["Image URL", "homepage"], rows);
        assert_eq!(image_columns(&urls, Path::new(".")), vec!["Image URL"]);
    }

    #[test]
    fn path_columns_need_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.png"), b"x").unwrap();
        fs::write(dir.path().join("b.png"), b"x").unwrap();
        let paths = table(&["there", "missing"], &[&["a.png", "x.png"], &["b.png", "y.png"], &["", "z.png"]]);
        assert_eq!(image_columns(&paths, dir.path()), vec!["there"]);
    }

    #[test]
    fn minority_of_image_values_is_not_an_image_column() {
        let urls = table(&["mixed"], &[&["https://x.org/a.jpg"], &["https://x.org/page"], &["text"]]);
        assert!(image_columns(&urls, Path::new(".")).is_empty());
    }

    #[test]
    fn delimiter_falls_back_to_tab_or_semicolon() {
        assert_eq!(delimiter_of(b"a,b;c\n"), b',');
        assert_eq!(delimiter_of(b"a;b;c\n"), b';');
        assert_eq!(delimiter_of(b"a\tb\tc\n"), b'\t');
        assert_eq!(delimiter_of(b"image\n"), b',');
    }

    #[test]
    fn list_names_caps_long_lists() {
        let names: Vec<String> = (0..25).map(|i| format!("c{i}")).collect();
        let listed = list_names(names.iter().map(String::as_str));
        assert!(listed.ends_with("c19, and 5 more"), "{listed}");
    }
}
