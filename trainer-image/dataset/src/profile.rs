//! Column types, missing counts and class counts: the profile that becomes `Dataset.status`.

use std::collections::BTreeMap;

use ocellus_crds::dataset::{ClassCount, ColumnProfile, ColumnType, DatasetStatus};
use serde_json::{Map, Value};

use crate::normalized::DatasetMeta;
use crate::table::DeclaredType;

/// At most this many classes are listed in status; the rest are counted in the files.
pub const MAX_CLASSES_IN_STATUS: usize = 100;

/// Infers the type of a non-image column from its values (`None` is missing).
///
/// Numeric when every present value parses as a finite number; text when values average
/// three or more words (sentences, descriptions); categorical otherwise.
pub fn infer_type<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ColumnType {
    infer_as(DeclaredType::Inferred, values)
}

/// The type of a non-image column whose schema declared `declared` (Parquet); a declared
/// number or date is taken as is, declared strings are text or categorical by their words.
pub fn infer_as<'a>(declared: DeclaredType, values: impl Iterator<Item = Option<&'a str>>) -> ColumnType {
    match declared {
        DeclaredType::Numeric => return ColumnType::Numeric,
        DeclaredType::Categorical => return ColumnType::Categorical,
        DeclaredType::Inferred | DeclaredType::Words => {}
    }
    let (mut present, mut numeric, mut words) = (0usize, 0usize, 0usize);
    for value in values.flatten() {
        present += 1;
        if value.trim().parse::<f64>().is_ok_and(f64::is_finite) {
            numeric += 1;
        }
        words += value.split_whitespace().count();
    }
    if present > 0 && numeric == present && declared == DeclaredType::Inferred {
        ColumnType::Numeric
    } else if present > 0 && words >= 3 * present {
        ColumnType::Text
    } else {
        ColumnType::Categorical
    }
}

/// Rows per class, largest first (ties by name), at most [`MAX_CLASSES_IN_STATUS`].
pub fn class_counts<'a>(labels: impl Iterator<Item = Option<&'a str>>) -> (Vec<ClassCount>, usize) {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for label in labels.flatten() {
        *counts.entry(label).or_default() += 1;
    }
    let total = counts.len();
    let mut classes: Vec<ClassCount> =
        counts.into_iter().map(|(name, count)| ClassCount { name: name.to_owned(), count }).collect();
    classes.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    classes.truncate(MAX_CLASSES_IN_STATUS);
    (classes, total)
}

/// The profile of normalized rows, in the shape of `Dataset.status` (no conditions:
/// the operator owns those; no location: the caller knows where the copy lives).
pub fn profile_rows(meta: &DatasetMeta, rows: &[Map<String, Value>], bad_images: i64) -> DatasetStatus {
    let columns = meta
        .columns
        .iter()
        .map(|column| ColumnProfile {
            name: column.name.clone(),
            type_: column.type_,
            missing: rows.iter().filter(|row| row.get(&column.name).is_none_or(Value::is_null)).count()
                as i64,
        })
        .collect();
    let classes = meta
        .label_column
        .as_ref()
        .map(|label| class_counts(rows.iter().map(|row| row.get(label).and_then(Value::as_str))).0)
        .unwrap_or_default();
    DatasetStatus {
        rows: Some(rows.len() as i64),
        columns,
        image_columns: meta.image_columns.clone(),
        bad_images: Some(bad_images),
        classes,
        splits: meta.splits.clone(),
        ..DatasetStatus::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer(values: &[Option<&str>]) -> ColumnType {
        infer_type(values.iter().copied())
    }

    #[test]
    fn types_are_inferred_from_values() {
        assert_eq!(infer(&[Some("1"), Some("2.5"), None, Some("-3e2")]), ColumnType::Numeric);
        assert_eq!(infer(&[Some("red"), Some("blue"), Some("red")]), ColumnType::Categorical);
        assert_eq!(infer(&[Some("1"), Some("n/a")]), ColumnType::Categorical);
        assert_eq!(infer(&[Some("a clean one owner car"), Some("needs new tires soon")]), ColumnType::Text);
        assert_eq!(infer(&[None, None]), ColumnType::Categorical);
        assert_eq!(infer(&[Some("NaN"), Some("inf")]), ColumnType::Categorical);
    }

    #[test]
    fn classes_are_counted_largest_first_and_bounded() {
        let labels = [Some("dog"), Some("cat"), Some("dog"), None, Some("ant")];
        let (classes, total) = class_counts(labels.iter().copied());
        assert_eq!(total, 3);
        let names: Vec<_> = classes.iter().map(|c| (c.name.as_str(), c.count)).collect();
        assert_eq!(names, [("dog", 2), ("ant", 1), ("cat", 1)]);

        let many: Vec<String> = (0..150).map(|i| format!("c{i}")).collect();
        let (classes, total) = class_counts(many.iter().map(|s| Some(s.as_str())));
        assert_eq!((classes.len(), total), (MAX_CLASSES_IN_STATUS, 150));
    }
}
