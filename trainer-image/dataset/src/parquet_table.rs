//! Parquet tables: column types from the schema, and image columns that hold encoded bytes.
//!
//! A top-level column is read when it is a scalar (numbers, strings, booleans, dates, times,
//! timestamps, decimals), binary, or a struct with a binary `bytes` child (the Hugging Face
//! `Image` feature: `{bytes, path}`). Lists, maps and other structs have no cell of their own;
//! they are dropped, with a note on standard error. A binary column whose first value is an
//! encoded image (PNG, JPEG, WebP, GIF, BMP, TIFF…) holds image bytes: every cell is written to
//! `<cell_images>/<column index>-<column name>/<row>.<ext>` and the table names that file, so
//! the import checks and copies it like any other image. Other binary columns must be UTF-8 text.

use std::fs;
use std::path::{Path, PathBuf};

use parquet::basic::{ConvertedType, LogicalType, Type as PhysicalType};
use parquet::errors::ParquetError;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use parquet::schema::types::{Type, TypePtr};

use crate::archive::printable;
use crate::table::{DeclaredType, RawTable};
use crate::{Error, Result};

/// The magic bytes a Parquet file starts (and ends) with.
pub const PARQUET_MAGIC: &[u8; 4] = b"PAR1";

/// A Parquet file read into a table, with the columns that held image bytes.
#[derive(Debug)]
pub struct ParquetTable {
    pub table: RawTable,
    /// Columns whose cells were encoded images, now files under the `cell_images` folder that
    /// the cells name relative to it.
    pub byte_columns: Vec<String>,
}

/// How one kept column becomes cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    Value(DeclaredType),
    /// Binary without a string annotation: image bytes or text, decided by the first value.
    Binary(BinaryKind),
    /// A struct with a `bytes` child (and usually `path`), as Hugging Face writes images.
    ImageStruct,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BinaryKind {
    Undecided,
    Image,
    Text,
}

/// Reads `path` (a Parquet file). Image bytes are written under `cell_images`; without one, a
/// table holding image bytes is refused.
pub fn read_parquet(path: &Path, cell_images: Option<&Path>) -> Result<ParquetTable> {
    let file = fs::File::open(path).map_err(Error::io(path))?;
    let reader = SerializedFileReader::new(file).map_err(|e| unreadable(path, e))?;
    let fields = reader.metadata().file_metadata().schema_descr().root_schema().get_fields().to_vec();
    let mut kept: Vec<TypePtr> = Vec::new();
    let mut kinds: Vec<Column> = Vec::new();
    for field in fields {
        match column_kind(&field) {
            Some(kind) => {
                kinds.push(kind);
                kept.push(field);
            }
            None => eprintln!(
                "{}: column `{}` is a list, map or struct, which has no cell value; it is not imported",
                path.display(),
                printable(field.name())
            ),
        }
    }
    if kept.is_empty() {
        return Err(Error::bad_input(format!(
            "{}: no column holds scalar values or image bytes; export a table with one column per \
             value (image, label, features)",
            path.display()
        )));
    }
    let columns: Vec<String> = kept.iter().map(|field| field.name().to_owned()).collect();
    let folders: Vec<String> =
        columns.iter().enumerate().map(|(index, name)| format!("{index}-{}", folder_name(name))).collect();
    let projection =
        Type::group_type_builder("schema").with_fields(kept).build().map_err(|e| unreadable(path, e))?;
    let mut rows = Vec::new();
    for (row_index, row) in
        reader.get_row_iter(Some(projection)).map_err(|e| unreadable(path, e))?.enumerate()
    {
        let row = row.map_err(|e| unreadable(path, e))?;
        let mut cells = Vec::with_capacity(columns.len());
        for (index, (_, field)) in row.get_column_iter().enumerate() {
            let place = Cell { path, column: &columns[index], row: row_index + 1 };
            let cell = match (&mut kinds[index], field) {
                (_, Field::Null) => None,
                (Column::Value(_), field) => Some(scalar_text(field)),
                (Column::Binary(kind), Field::Bytes(bytes)) => {
                    binary_cell(kind, bytes.data(), &place, cell_images, &folders[index])?
                }
                (Column::ImageStruct, Field::Group(image)) => {
                    let bytes =
                        image.get_column_iter().find_map(|(name, value)| match (name.as_str(), value) {
                            ("bytes", Field::Bytes(bytes)) => Some(bytes.data()),
                            _ => None,
                        });
                    match bytes {
                        Some(bytes) => Some(write_image(bytes, &place, cell_images, &folders[index])?),
                        None => struct_without_bytes(image, &place)?,
                    }
                }
                (_, other) => Some(scalar_text(other)),
            };
            cells.push(cell);
        }
        rows.push(cells);
    }
    if rows.is_empty() {
        return Err(Error::bad_input(format!(
            "{} has no rows; export the table with its rows",
            path.display()
        )));
    }
    let byte_columns = columns
        .iter()
        .zip(&kinds)
        .filter(|(_, kind)| matches!(kind, Column::ImageStruct | Column::Binary(BinaryKind::Image)))
        .map(|(name, _)| name.clone())
        .collect();
    let declared = kinds
        .iter()
        .map(|kind| match kind {
            Column::Value(declared) => *declared,
            Column::Binary(BinaryKind::Text) => DeclaredType::Words,
            _ => DeclaredType::Inferred,
        })
        .collect();
    Ok(ParquetTable { table: RawTable { columns, rows, declared }, byte_columns })
}

/// Whether the file starts with Parquet's magic bytes.
pub fn is_parquet_file(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut head = Vec::with_capacity(4);
    fs::File::open(path).and_then(|file| file.take(4).read_to_end(&mut head)).map_err(Error::io(path))?;
    Ok(head == PARQUET_MAGIC)
}

/// Where a cell is, for messages.
struct Cell<'a> {
    path: &'a Path,
    column: &'a str,
    row: usize,
}

/// What the schema says a top-level column holds; `None` for lists, maps and plain structs.
fn column_kind(field: &Type) -> Option<Column> {
    if field.is_group() {
        let has_bytes = field.get_fields().iter().any(|child| {
            child.name() == "bytes"
                && child.is_primitive()
                && child.get_physical_type() == PhysicalType::BYTE_ARRAY
        });
        return has_bytes.then_some(Column::ImageStruct);
    }
    let info = field.get_basic_info();
    let logical = info.logical_type_ref();
    let converted = info.converted_type();
    let is_time =
        matches!(logical, Some(LogicalType::Date | LogicalType::Time { .. } | LogicalType::Timestamp { .. }))
            || matches!(
                converted,
                ConvertedType::DATE
                    | ConvertedType::TIME_MILLIS
                    | ConvertedType::TIME_MICROS
                    | ConvertedType::TIMESTAMP_MILLIS
                    | ConvertedType::TIMESTAMP_MICROS
                    | ConvertedType::INTERVAL
            );
    let is_text = matches!(
        logical,
        Some(LogicalType::String | LogicalType::Enum | LogicalType::Json | LogicalType::Uuid)
    ) || matches!(converted, ConvertedType::UTF8 | ConvertedType::ENUM | ConvertedType::JSON);
    let is_decimal =
        matches!(logical, Some(LogicalType::Decimal { .. })) || converted == ConvertedType::DECIMAL;
    Some(match field.get_physical_type() {
        _ if is_time => Column::Value(DeclaredType::Categorical),
        _ if is_decimal => Column::Value(DeclaredType::Numeric),
        PhysicalType::BOOLEAN | PhysicalType::INT96 => Column::Value(DeclaredType::Categorical),
        PhysicalType::INT32 | PhysicalType::INT64 | PhysicalType::FLOAT | PhysicalType::DOUBLE => {
            Column::Value(DeclaredType::Numeric)
        }
        PhysicalType::FIXED_LEN_BYTE_ARRAY if matches!(logical, Some(LogicalType::Float16)) => {
            Column::Value(DeclaredType::Numeric)
        }
        _ if is_text => Column::Value(DeclaredType::Words),
        PhysicalType::BYTE_ARRAY | PhysicalType::FIXED_LEN_BYTE_ARRAY => {
            Column::Binary(BinaryKind::Undecided)
        }
    })
}

/// A scalar as a CSV would hold it: plain numbers (no exponent for ordinary floats), strings
/// unquoted, dates and times as the `parquet` crate prints them.
fn scalar_text(field: &Field) -> String {
    match field {
        Field::Bool(value) => value.to_string(),
        Field::Byte(value) => value.to_string(),
        Field::Short(value) => value.to_string(),
        Field::Int(value) => value.to_string(),
        Field::Long(value) => value.to_string(),
        Field::UByte(value) => value.to_string(),
        Field::UShort(value) => value.to_string(),
        Field::UInt(value) => value.to_string(),
        Field::ULong(value) => value.to_string(),
        Field::Float16(value) => value.to_string(),
        Field::Float(value) => value.to_string(),
        Field::Double(value) => value.to_string(),
        Field::Str(value) => value.clone(),
        Field::Bytes(bytes) => String::from_utf8_lossy(bytes.data()).into_owned(),
        other => other.to_string(),
    }
}

/// A binary cell: the first value decides whether the column holds images or text.
fn binary_cell(
    kind: &mut BinaryKind,
    bytes: &[u8],
    place: &Cell,
    cell_images: Option<&Path>,
    folder: &str,
) -> Result<Option<String>> {
    if *kind == BinaryKind::Undecided {
        *kind = if image::guess_format(bytes).is_ok() { BinaryKind::Image } else { BinaryKind::Text };
    }
    if *kind == BinaryKind::Image {
        return write_image(bytes, place, cell_images, folder).map(Some);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(Some(text.to_owned())),
        Err(_) => Err(Error::bad_input(format!(
            "{}: column `{}` is binary and row {} is neither an encoded image nor UTF-8 text; \
             store images as PNG or JPEG bytes, or text as a string column",
            place.path.display(),
            printable(place.column),
            place.row
        ))),
    }
}

/// Writes one cell's image bytes and returns the path the table names, relative to
/// `cell_images`. Bytes that are no known image keep the extension `bin`, so the image check
/// reports that row as a bad image under the Dataset's missingImagePolicy.
fn write_image(bytes: &[u8], place: &Cell, cell_images: Option<&Path>, folder: &str) -> Result<String> {
    let Some(cell_images) = cell_images else {
        return Err(Error::bad_input(format!(
            "{}: column `{}` holds image bytes, which only `ocellus dataset import` unpacks; import \
             the Dataset with it",
            place.path.display(),
            printable(place.column)
        )));
    };
    let extension =
        image::guess_format(bytes).ok().and_then(|format| format.extensions_str().first().copied());
    let relative = PathBuf::from(folder).join(format!("{}.{}", place.row, extension.unwrap_or("bin")));
    let file = cell_images.join(&relative);
    if let Some(parent) = file.parent() {
        fs::create_dir_all(parent).map_err(Error::io(parent))?;
    }
    fs::write(&file, bytes).map_err(Error::io(&file))?;
    Ok(relative.to_string_lossy().into_owned())
}

/// An image struct without bytes: missing when it names nothing, refused when it only names a
/// path (a table of references to files that were not shipped with it).
fn struct_without_bytes(image: &parquet::record::Row, place: &Cell) -> Result<Option<String>> {
    let path = image.get_column_iter().find_map(|(name, value)| match (name.as_str(), value) {
        ("path", Field::Str(path)) => Some(path.clone()),
        _ => None,
    });
    match path {
        None => Ok(None),
        Some(path) => Err(Error::bad_input(format!(
            "{}: row {} of image column `{}` has no bytes, only the path `{}`; export the table \
             with the image bytes embedded (in Hugging Face datasets, `embed_table_storage` or \
             `push_to_hub` embed them)",
            place.path.display(),
            place.row,
            printable(place.column),
            printable(&path)
        ))),
    }
}

/// A column name as one safe path segment.
fn folder_name(column: &str) -> String {
    column.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

fn unreadable(path: &Path, error: ParquetError) -> Error {
    Error::bad_input(format!("{}: not a readable Parquet file ({error}); export it again", path.display()))
}
