//! The KServe Open Inference Protocol (v2) REST messages, and their translation to the rows a
//! scoring bundle scores and back. Inputs are the model's columns by name, one row per
//! element: numeric columns as FP32/FP64/INT*/UINT* numbers, the others as BYTES strings (an
//! image as base64 or an http(s) URL); `null` is a missing value. Outputs mirror the columns of
//! `ocellus predict`: `prediction`, then `p_<class>` per class.

use std::collections::BTreeMap;

use ocellus_crds::dataset::ColumnType;
use ocellus_tabular::metrics::Predictions;
use ocellus_tabular::task::TaskKind;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use ocellus_dataset::normalized::ColumnMeta;
use ocellus_tabular::task::Target;

use crate::bundle::argmax;

/// What the server knows of the model it serves.
#[derive(Clone, Debug)]
pub struct Model {
    pub name: String,
    pub columns: Vec<ColumnMeta>,
    pub target: Target,
}

/// `POST /v2/models/{name}/infer`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct InferenceRequest {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
    pub inputs: Vec<RequestInput>,
    #[serde(default)]
    pub outputs: Option<Vec<RequestOutput>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RequestInput {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
    pub data: Value,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RequestOutput {
    pub name: String,
    #[serde(default)]
    pub parameters: Option<Map<String, Value>>,
}

#[derive(Serialize, Debug)]
pub struct InferenceResponse {
    pub model_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub outputs: Vec<ResponseOutput>,
}

#[derive(Serialize, Debug)]
pub struct ResponseOutput {
    pub name: String,
    pub shape: Vec<usize>,
    pub datatype: &'static str,
    pub data: Vec<Value>,
}

/// `GET /v2/models/{name}`.
#[derive(Serialize, Debug)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: &'static str,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

#[derive(Serialize, Debug)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: &'static str,
    /// -1: any number of rows.
    pub shape: Vec<i64>,
}

const NUMERIC_TYPES: &[&str] =
    &["FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"];

fn datatype_of(type_: ColumnType) -> &'static str {
    if type_ == ColumnType::Numeric { "FP64" } else { "BYTES" }
}

pub fn metadata(model: &Model) -> ModelMetadata {
    let inputs = model
        .columns
        .iter()
        .map(|c| TensorMetadata { name: c.name.clone(), datatype: datatype_of(c.type_), shape: vec![-1] })
        .collect();
    let outputs = output_names(model)
        .into_iter()
        .map(|(name, datatype)| TensorMetadata { name, datatype, shape: vec![-1] })
        .collect();
    ModelMetadata { name: model.name.clone(), versions: Vec::new(), platform: "ocellus", inputs, outputs }
}

fn output_names(model: &Model) -> Vec<(String, &'static str)> {
    if model.target.task == TaskKind::Regression {
        return vec![("prediction".to_owned(), "FP64")];
    }
    let mut names = vec![("prediction".to_owned(), "BYTES")];
    names.extend(model.target.classes.iter().map(|class| (format!("p_{class}"), "FP64")));
    names
}

/// The rows a request carries, typed as the bundle's columns, after checking every input
/// against the model's; the error is the 400 message.
pub fn rows_of(request: &InferenceRequest, model: &Model) -> Result<Vec<Map<String, Value>>, String> {
    let columns = &model.columns;
    let expected = || columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
    let mut by_name: BTreeMap<&str, &RequestInput> = BTreeMap::new();
    for input in &request.inputs {
        if !columns.iter().any(|c| c.name == input.name) {
            return Err(format!(
                "input {:?} is not a column of this model; its inputs are {}",
                input.name,
                expected()
            ));
        }
        if by_name.insert(&input.name, input).is_some() {
            return Err(format!("input {:?} is given twice", input.name));
        }
    }
    let missing: Vec<&str> =
        columns.iter().map(|c| c.name.as_str()).filter(|name| !by_name.contains_key(name)).collect();
    if !missing.is_empty() {
        return Err(format!("missing input(s) {}: the model needs {}", missing.join(", "), expected()));
    }
    let mut rows: Option<Vec<Map<String, Value>>> = None;
    for column in columns {
        let input = by_name[column.name.as_str()];
        let values = input_values(input, column.type_)?;
        let rows = rows.get_or_insert_with(|| vec![Map::new(); values.len()]);
        if rows.len() != values.len() {
            return Err(format!(
                "input {:?} has {} rows, other inputs {}: every input needs one element per row",
                input.name,
                values.len(),
                rows.len()
            ));
        }
        for (row, value) in rows.iter_mut().zip(values) {
            row.insert(column.name.clone(), value);
        }
    }
    let rows = rows.unwrap_or_default();
    if rows.is_empty() {
        return Err("the request has no rows (shape [0])".to_owned());
    }
    Ok(rows)
}

/// One input's elements, checked against its declared shape and the column's type.
fn input_values(input: &RequestInput, type_: ColumnType) -> Result<Vec<Value>, String> {
    let name = &input.name;
    let expected = datatype_of(type_);
    let numeric = type_ == ColumnType::Numeric;
    let datatype_fits =
        if numeric { NUMERIC_TYPES.contains(&input.datatype.as_str()) } else { input.datatype == "BYTES" };
    if !datatype_fits {
        return Err(format!(
            "input {name:?} has datatype {}, but column {name:?} is {type_:?}: send it as {expected}",
            input.datatype
        ));
    }
    let shape_ok = matches!(input.shape.as_slice(), [n] | [n, 1] if *n >= 0);
    if !shape_ok {
        return Err(format!(
            "input {name:?} has shape {:?}: send one element per row, shape [rows] or [rows, 1]",
            input.shape
        ));
    }
    let mut values = Vec::new();
    flatten(&input.data, &mut values);
    if values.len() as i64 != input.shape[0] {
        return Err(format!(
            "input {name:?} has {} elements but shape {:?} says {}",
            values.len(),
            input.shape,
            input.shape[0]
        ));
    }
    for (row, value) in values.iter().enumerate() {
        let fits = match value {
            Value::Null => true,
            Value::Number(_) => numeric,
            Value::String(_) => !numeric,
            _ => false,
        };
        if !fits {
            let kind = if numeric { "a number" } else { "a string" };
            return Err(format!(
                "input {name:?}, row {row}: {value} is not {kind} (or null for a missing value)"
            ));
        }
    }
    Ok(values)
}

/// Tensor data may be flat or nested (row-major); both read as the flat list of elements.
fn flatten(data: &Value, out: &mut Vec<Value>) {
    match data {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        other => out.push(other.clone()),
    }
}

/// Checks the requested outputs' names up front, so a typo is a 400 before any scoring.
pub fn check_outputs(request: &InferenceRequest, model: &Model) -> Result<(), String> {
    let names = output_names(model);
    for requested in request.outputs.iter().flatten() {
        if !names.iter().any(|(name, _)| name == &requested.name) {
            let known: Vec<&str> = names.iter().map(|(name, _)| name.as_str()).collect();
            return Err(format!(
                "output {:?} is not an output of this model; its outputs are {}",
                requested.name,
                known.join(", ")
            ));
        }
    }
    Ok(())
}

/// The response for `predictions`, with the outputs the request asked for (all by default).
pub fn response(model: &Model, request: &InferenceRequest, predictions: &Predictions) -> InferenceResponse {
    let rows = predictions.len();
    let number = |v: f64| serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number);
    let mut outputs = Vec::new();
    match predictions {
        Predictions::Regression(values) => outputs.push(ResponseOutput {
            name: "prediction".to_owned(),
            shape: vec![rows],
            datatype: "FP64",
            data: values.iter().copied().map(number).collect(),
        }),
        Predictions::Probabilities { .. } => {
            let classes = &model.target.classes;
            outputs.push(ResponseOutput {
                name: "prediction".to_owned(),
                shape: vec![rows],
                datatype: "BYTES",
                data: (0..rows)
                    .map(|row| Value::String(classes[argmax(predictions.probabilities(row))].clone()))
                    .collect(),
            });
            for (index, class) in classes.iter().enumerate() {
                outputs.push(ResponseOutput {
                    name: format!("p_{class}"),
                    shape: vec![rows],
                    datatype: "FP64",
                    data: (0..rows).map(|row| number(predictions.probabilities(row)[index])).collect(),
                });
            }
        }
    }
    if let Some(requested) = &request.outputs {
        outputs.retain(|output| requested.iter().any(|r| r.name == output.name));
    }
    InferenceResponse { model_name: model.name.clone(), id: request.id.clone(), outputs }
}
