//! Small types shared by both resources.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest Kubernetes object name (a DNS subdomain).
pub const MAX_NAME_LEN: u32 = 253;
/// Longest column name accepted anywhere in the API.
pub const MAX_COLUMN_LEN: u32 = 256;
/// Longest URL or URI accepted anywhere in the API.
pub const MAX_URL_LEN: u32 = 2048;
/// Longest filesystem path accepted anywhere in the API.
pub const MAX_PATH_LEN: u32 = 4096;

/// A reference, by name, to an object in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct LocalObjectReference {
    /// Name of the referenced object.
    #[schemars(length(min = 1, max = MAX_NAME_LEN), regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub name: String,
}

impl LocalObjectReference {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

/// One named metric value, as reported in status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct MetricValue {
    /// Scorer name, for example `RMSE` or `AUC`.
    #[schemars(length(max = 64))]
    pub name: String,
    pub value: f64,
}

/// metav1.Condition with the bounds the API server enforces for it, as a list map keyed by
/// `type` (one condition per type).
pub(crate) fn conditions_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "maxItems": 16,
        "items": {
            "type": "object",
            "required": ["type", "status", "reason", "message", "lastTransitionTime"],
            "properties": {
                "type": {"type": "string", "maxLength": 316, "description": "Type of condition in CamelCase."},
                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                "reason": {"type": "string", "minLength": 1, "maxLength": 1024,
                           "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
                           "description": "Machine-readable CamelCase reason of the last transition."},
                "message": {"type": "string", "maxLength": crate::condition::MAX_MESSAGE_LEN,
                            "description": "What happened and what to do, for a person."},
                "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
                "lastTransitionTime": {"type": "string", "format": "date-time",
                                       "description": "When the status last flipped."},
            },
        },
    })
}

/// Node labels: keys are qualified names, values at most 63 characters.
pub(crate) fn node_selector_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "maxProperties": 32,
        "additionalProperties": {"type": "string", "maxLength": 63},
    })
}

/// Marks a list of unique scalars as a set, so the API server rejects duplicates.
pub(crate) fn set_of_strings_schema(
    max_items: u32,
    item_pattern: &str,
    item_max_len: u32,
) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "set",
        "maxItems": max_items,
        "items": {"type": "string", "minLength": 1, "maxLength": item_max_len, "pattern": item_pattern},
    })
}
