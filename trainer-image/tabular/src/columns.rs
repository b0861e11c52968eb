//! Non-image columns as model features: numeric as-is, categorical as integer codes (declared
//! as LightGBM categorical features), text as TF-IDF + SVD components. Fitted on training rows.

use std::collections::HashMap;

use ocellus_crds::dataset::ColumnType;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::matrix::Matrix;
use crate::task::{as_label, as_number, is_missing};
use crate::text::TextVectorizer;

/// A categorical column keeps at most this many levels (the most frequent); rarer ones become
/// missing, as LightGBM would lump them anyway.
pub const MAX_CATEGORIES: usize = 1000;

pub type Row = Map<String, Value>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum ColumnEncoder {
    Numeric,
    /// Levels in code order (most frequent first, ties by name).
    Categorical {
        levels: Vec<String>,
    },
    Text(TextVectorizer),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct EncodedColumn {
    name: String,
    encoder: ColumnEncoder,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TabularEncoder {
    columns: Vec<EncodedColumn>,
}

fn cell<'a>(row: &'a Row, column: &str, index: usize) -> Result<&'a Value> {
    row.get(column).ok_or_else(|| {
        Error::bad_input(format!(
            "row {index} has no column {column:?}, which the model was trained with: add the column \
             (empty cells are allowed)"
        ))
    })
}

fn numeric(value: &Value, column: &str, index: usize) -> Result<f32> {
    if is_missing(value) {
        return Ok(f32::NAN);
    }
    as_number(value).map(|x| x as f32).ok_or_else(|| {
        Error::bad_input(format!(
            "column {column:?} is numeric but row {index} holds {value}: fix the cell, or declare the \
             column as categorical or text"
        ))
    })
}

fn text(value: &Value) -> Option<&str> {
    value.as_str()
}

impl TabularEncoder {
    /// Image columns are skipped: they become embeddings elsewhere.
    pub fn fit(rows: &[Row], columns: &[(String, ColumnType)], seed: u64) -> Result<TabularEncoder> {
        let mut encoded = Vec::new();
        for (name, kind) in columns {
            let values: Vec<&Value> =
                rows.iter().enumerate().map(|(i, r)| cell(r, name, i)).collect::<Result<_>>()?;
            let encoder = match kind {
                ColumnType::Image => continue,
                ColumnType::Numeric => {
                    for (i, v) in values.iter().enumerate() {
                        numeric(v, name, i)?;
                    }
                    ColumnEncoder::Numeric
                }
                ColumnType::Categorical => {
                    let mut counts: HashMap<String, usize> = HashMap::new();
                    for v in &values {
                        if let Some(label) = as_label(v) {
                            *counts.entry(label).or_default() += 1;
                        }
                    }
                    let mut levels: Vec<(String, usize)> = counts.into_iter().collect();
                    levels.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                    levels.truncate(MAX_CATEGORIES);
                    ColumnEncoder::Categorical { levels: levels.into_iter().map(|(l, _)| l).collect() }
                }
                ColumnType::Text => {
                    let texts: Vec<Option<&str>> = values.iter().map(|v| text(v)).collect();
                    ColumnEncoder::Text(TextVectorizer::fit(name, &texts, seed)?)
                }
            };
            encoded.push(EncodedColumn { name: name.clone(), encoder });
        }
        Ok(TabularEncoder { columns: encoded })
    }

    pub fn transform(&self, rows: &[Row]) -> Result<Matrix> {
        let cols = self.feature_names().len();
        let mut out = Matrix::zeros(rows.len(), cols);
        let codes: Vec<HashMap<&str, usize>> = self
            .columns
            .iter()
            .map(|c| match &c.encoder {
                ColumnEncoder::Categorical { levels } => {
                    levels.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect()
                }
                _ => HashMap::new(),
            })
            .collect();
        for (i, row) in rows.iter().enumerate() {
            let features = out.row_mut(i);
            let mut j = 0;
            for (column, codes) in self.columns.iter().zip(&codes) {
                let value = cell(row, &column.name, i)?;
                match &column.encoder {
                    ColumnEncoder::Numeric => {
                        features[j] = numeric(value, &column.name, i)?;
                        j += 1;
                    }
                    ColumnEncoder::Categorical { .. } => {
                        features[j] = as_label(value)
                            .and_then(|l| codes.get(l.as_str()).map(|&c| c as f32))
                            .unwrap_or(f32::NAN);
                        j += 1;
                    }
                    ColumnEncoder::Text(vectorizer) => {
                        let components = vectorizer.transform_one(text(value));
                        features[j..j + components.len()].copy_from_slice(&components);
                        j += components.len();
                    }
                }
            }
        }
        Ok(out)
    }

    /// One name per output feature: the column name, or `column/svdN` for text components.
    pub fn feature_names(&self) -> Vec<String> {
        self.columns
            .iter()
            .flat_map(|c| match &c.encoder {
                ColumnEncoder::Text(v) => (0..v.components()).map(|k| format!("{}/svd{k}", c.name)).collect(),
                _ => vec![c.name.clone()],
            })
            .collect()
    }

    /// The source column of every output feature, to sum importances per column.
    pub fn feature_groups(&self) -> Vec<String> {
        self.columns
            .iter()
            .flat_map(|c| {
                let width = match &c.encoder {
                    ColumnEncoder::Text(v) => v.components(),
                    _ => 1,
                };
                std::iter::repeat_n(c.name.clone(), width)
            })
            .collect()
    }

    /// Output indices of the categorical features, for LightGBM's `categorical_feature`.
    pub fn categorical_features(&self) -> Vec<usize> {
        let mut index = 0;
        let mut out = Vec::new();
        for c in &self.columns {
            match &c.encoder {
                ColumnEncoder::Categorical { .. } => {
                    out.push(index);
                    index += 1;
                }
                ColumnEncoder::Numeric => index += 1,
                ColumnEncoder::Text(v) => index += v.components(),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A few used-car listings: price-style mixed columns.
    fn cars() -> Vec<Row> {
        let rows = [
            json!({"km": 120000, "make": "toyota", "notes": "new brakes, engine runs great", "photo": "a.jpg"}),
            json!({"km": "45000", "make": "bmw", "notes": "leather seats, clean interior", "photo": "b.jpg"}),
            json!({"km": null, "make": "toyota", "notes": "engine needs work", "photo": "c.jpg"}),
            json!({"km": 80000, "make": "", "notes": "", "photo": "d.jpg"}),
            json!({"km": 30500.5, "make": "ford", "notes": "clean leather interior, new tyres", "photo": "e.jpg"}),
        ];
        rows.into_iter().map(|r| r.as_object().unwrap().clone()).collect()
    }

    fn columns() -> Vec<(String, ColumnType)> {
        vec![
            ("km".into(), ColumnType::Numeric),
            ("make".into(), ColumnType::Categorical),
            ("notes".into(), ColumnType::Text),
            ("photo".into(), ColumnType::Image),
        ]
    }

    #[test]
    fn encodes_numeric_categorical_and_text_columns() {
        let encoder = TabularEncoder::fit(&cars(), &columns(), 1).unwrap();
        let names = encoder.feature_names();
        assert_eq!(names[..2], ["km", "make"]);
        assert!(names[2].starts_with("notes/svd"));
        assert_eq!(names.len(), encoder.feature_groups().len());
        assert!(encoder.feature_groups()[2..].iter().all(|g| g == "notes"));
        assert_eq!(encoder.categorical_features(), vec![1]);

        let x = encoder.transform(&cars()).unwrap();
        assert_eq!((x.rows, x.cols), (5, names.len()));
        assert_eq!(x.column(0)[..2], [120000.0, 45000.0]);
        assert!(x.get(2, 0).is_nan());
        // toyota is the most frequent level: code 0; missing make is NaN.
        assert_eq!(x.column(1)[..3], [0.0, 1.0, 0.0]);
        assert!(x.get(3, 1).is_nan());
        // The empty text has no components; the others do.
        assert!(x.row(3)[2..].iter().all(|v| *v == 0.0));
        assert!(x.row(1)[2..].iter().any(|v| *v != 0.0));

        let mut unseen = cars()[..1].to_vec();
        unseen[0].insert("make".into(), json!("lada"));
        assert!(encoder.transform(&unseen).unwrap().get(0, 1).is_nan());
    }

    #[test]
    fn round_trips_through_json() {
        let encoder = TabularEncoder::fit(&cars(), &columns(), 1).unwrap();
        let back: TabularEncoder = serde_json::from_str(&serde_json::to_string(&encoder).unwrap()).unwrap();
        let (a, b) = (encoder.transform(&cars()).unwrap(), back.transform(&cars()).unwrap());
        assert_eq!(
            a.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn missing_columns_and_bad_numbers_are_clear_errors() {
        let encoder = TabularEncoder::fit(&cars(), &columns(), 1).unwrap();
        let mut rows = cars();
        rows[1].remove("make");
        let e = encoder.transform(&rows).unwrap_err();
        assert!(e.is_bad_input() && e.to_string().contains("row 1 has no column \"make\""), "{e}");

        let mut rows = cars();
        rows[2].insert("km".into(), json!("lots"));
        let e = TabularEncoder::fit(&rows, &columns(), 1).unwrap_err();
        assert!(e.is_bad_input() && e.to_string().contains("\"km\" is numeric but row 2"), "{e}");
    }
}
