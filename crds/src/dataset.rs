//! `Dataset`: where images and table come from, and what the import found.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    LocalObjectReference, MAX_COLUMN_LEN, MAX_NAME_LEN, MAX_PATH_LEN, MAX_URL_LEN, conditions_schema,
};

/// A set of images plus a table, imported once into a normalized copy and profiled.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ocellus.dev",
    version = "v1alpha1",
    kind = "Dataset",
    namespaced,
    status = "DatasetStatus",
    shortname = "ds",
    category = "ocellus",
    cel,
    doc = "Images plus a table, imported once into a normalized copy; status holds the profile.",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Rows","type":"integer","jsonPath":".status.rows"}"#,
    printcolumn = r#"{"name":"Bad images","type":"integer","jsonPath":".status.badImages","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DatasetSpec {
    /// Where the data comes from. Immutable: import other data as a new Dataset.
    #[x_kube(validation = Rule::new("self == oldSelf").message("source is immutable; create a new Dataset to import other data"))]
    pub source: DatasetSource,

    /// Layout of the data; `Auto` detects it.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("format is immutable; create a new Dataset"))]
    pub format: DatasetFormat,

    /// Columns holding images, overriding detection. Empty: detect them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = MAX_COLUMN_LEN)))]
    pub image_columns: Vec<String>,

    /// The table (CSV or Parquet) to read when the source holds several (`train.csv`,
    /// `labels/test.csv.gz`, `train.parquet`): its path inside the archive or folder,
    /// `/`-separated. One archive can so serve both a training and a test Dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_PATH_LEN))]
    pub table: Option<String>,

    /// When the top folders are splits (`train/`, `test/`, `val/`...) with class folders
    /// inside: the one to import, by name (any case). Labels come from its class folders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub split_folder: Option<String>,

    /// For class folders: the folder level that names the class, 1 being the top folders
    /// (inside the split folder, when there is one). Needed only when every image sits two or
    /// more folders deep (`batch1/cat/1.jpg`), where either level could be the class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 8))]
    pub class_folder_depth: Option<i32>,

    /// What to do with a row whose image is missing or unreadable.
    #[serde(default)]
    pub missing_image_policy: MissingImagePolicy,

    /// Safety limits applied while importing.
    #[serde(default)]
    pub limits: ImportLimits,
}

/// Exactly one of the members says where the data is.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    cel,
    validation = Rule::new("[has(self.s3), has(self.http), has(self.volume), has(self.path), has(self.split)].exists_one(x, x)")
        .message("source must set exactly one of s3, http, volume, path or split")
)]
#[serde(rename_all = "camelCase")]
pub struct DatasetSource {
    /// An object in S3 or an S3-compatible store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Source>,
    /// A file, or a folder with an HTML index, served over HTTP(S).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSource>,
    /// A file or folder on a PersistentVolumeClaim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeSource>,
    /// A file or folder on the machine that runs the import (local mode, or a hostPath).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_PATH_LEN))]
    pub path: Option<String>,
    /// A deterministic part of another Dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitSource>,
}

/// An object in S3 or an S3-compatible store, read with the AWS default credential chain
/// unless `credentialsSecretRef` names a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Source {
    /// `s3://bucket/key` of an archive or CSV, or `s3://bucket/prefix/` (ending in `/`) of a
    /// folder of images: class folders, split folders or a CSV beside its images.
    #[schemars(length(max = MAX_URL_LEN), regex(pattern = r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$"))]
    pub uri: String,
    /// Region of the bucket; the credential chain's region when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub region: Option<String>,
    /// Endpoint of an S3-compatible store, for example `http://minio.storage:9000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_URL_LEN), regex(pattern = r"^https?://"))]
    pub endpoint: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`). Unset: on when `endpoint` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_path_style: Option<bool>,
    /// A Secret with the access key pair; the default credential chain when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<S3CredentialsSecretReference>,
}

/// The label a Secret must carry (value `"true"`) before a Dataset may name it in
/// `credentialsSecretRef`: whoever may label Secrets decides which keys Ocellus may send to a
/// Dataset's endpoint, so a user who cannot read a Secret cannot send it to an endpoint of their
/// choosing through a Dataset.
pub const CREDENTIALS_LABEL: &str = "ocellus.dev/credentials";

/// A Secret holding an S3 access key pair. It must carry the label `ocellus.dev/credentials: "true"`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3CredentialsSecretReference {
    /// Name of the Secret, in the Dataset's namespace.
    #[schemars(length(min = 1, max = MAX_NAME_LEN))]
    pub name: String,
    /// Key of the access key id in the Secret.
    #[serde(default = "default_access_key_id_key")]
    #[schemars(length(min = 1, max = 253))]
    pub access_key_id_key: String,
    /// Key of the secret access key in the Secret.
    #[serde(default = "default_secret_access_key_key")]
    #[schemars(length(min = 1, max = 253))]
    pub secret_access_key_key: String,
}

fn default_access_key_id_key() -> String {
    "AWS_ACCESS_KEY_ID".into()
}
fn default_secret_access_key_key() -> String {
    "AWS_SECRET_ACCESS_KEY".into()
}

/// A file, or a folder with an HTML index, served over HTTP(S).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpSource {
    /// URL of an archive or table (CSV, Parquet), or of a folder when it ends in `/`: the
    /// folder's index page is read for the images and tables below it.
    #[schemars(length(max = MAX_URL_LEN), regex(pattern = r"^https?://"))]
    pub url: String,
}

/// A path on a PersistentVolumeClaim mounted into the import pod.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSource {
    /// The PersistentVolumeClaim, in the Dataset's namespace.
    #[schemars(length(min = 1, max = MAX_NAME_LEN))]
    pub claim_name: String,
    /// Path inside the volume, relative to its root.
    #[schemars(length(min = 1, max = MAX_PATH_LEN))]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.split('/').exists(p, p == '..')").message("path must be relative to the volume root and must not contain '..'"))]
    pub path: String,
}

/// A deterministic part of another Dataset. Two Datasets with the same parent, percent and
/// seed, one `First` and one `Rest`, partition the parent exactly.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SplitSource {
    /// The Dataset to split.
    pub dataset_ref: LocalObjectReference,
    /// Percent of the parent's rows that go to `First`.
    #[schemars(range(min = 1, max = 99))]
    pub percent: i32,
    /// Which part this Dataset is.
    pub part: SplitPart,
    /// Seed of the shuffle: the same seed gives the same split.
    #[serde(default = "default_seed")]
    pub seed: i64,
    /// Column whose class proportions both parts keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_COLUMN_LEN))]
    pub stratify_by: Option<String>,
}

pub(crate) fn default_seed() -> i64 {
    1234
}

/// Which part of a split.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SplitPart {
    /// The first `percent` of the rows.
    First,
    /// All other rows.
    Rest,
}

/// Layout of the data.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DatasetFormat {
    /// Detect the layout.
    #[default]
    Auto,
    /// An archive or folder with one folder of images per class: columns `image`, `label`.
    ClassFolders,
    /// An archive with images and a table (CSV or Parquet) of relative image paths, a target and
    /// other columns.
    ArchiveWithCsv,
    /// A table (CSV or Parquet) whose image columns hold local paths.
    CsvPaths,
    /// A table (CSV or Parquet) whose image columns hold HTTP(S) URLs.
    CsvUrls,
    /// A Parquet table whose image columns hold the encoded images (PNG, JPEG… bytes, or the
    /// Hugging Face `{bytes, path}` struct).
    ImageBytes,
}

/// What to do with a row whose image is missing or unreadable.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum MissingImagePolicy {
    /// Fail the import.
    #[default]
    Fail,
    /// Drop the row.
    DropRow,
    /// Keep the row; its image becomes an all-zero embedding.
    ZeroEmbedding,
}

/// Safety limits applied while importing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportLimits {
    /// Largest image file accepted, in bytes.
    #[serde(default = "default_max_image_bytes")]
    #[schemars(range(min = 1))]
    pub max_image_bytes: i64,
    /// Largest image accepted, in pixels (width × height), checked before decoding.
    #[serde(default = "default_max_image_pixels")]
    #[schemars(range(min = 1))]
    pub max_image_pixels: i64,
    /// Timeout of one download, in seconds.
    #[serde(default = "default_download_timeout_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub download_timeout_seconds: i32,
    /// Past this percent of bad images the import fails.
    #[serde(default = "default_max_bad_percent")]
    #[schemars(range(min = 0, max = 100))]
    pub max_bad_percent: i32,
}

fn default_max_image_bytes() -> i64 {
    50 * 1024 * 1024
}
/// Pillow's default decompression-bomb limit.
fn default_max_image_pixels() -> i64 {
    89_478_485
}
fn default_download_timeout_seconds() -> i32 {
    30
}
fn default_max_bad_percent() -> i32 {
    5
}

impl Default for ImportLimits {
    fn default() -> Self {
        Self {
            max_image_bytes: default_max_image_bytes(),
            max_image_pixels: default_max_image_pixels(),
            download_timeout_seconds: default_download_timeout_seconds(),
            max_bad_percent: default_max_bad_percent(),
        }
    }
}

/// What the import found. Written by the operator only.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatasetStatus {
    /// `Ready` tells whether the import finished; its reason says what happens or failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Rows in the normalized copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<i64>,
    /// Every column with its inferred type and missing count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub columns: Vec<ColumnProfile>,
    /// Columns holding images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = MAX_COLUMN_LEN)))]
    pub image_columns: Vec<String>,
    /// Images that could not be read, downloaded or decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad_images: Option<i64>,
    /// Rows per class of the label column, largest classes first (at most 100 listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub classes: Vec<ClassCount>,
    /// Split folders found at the top of the source (`train`, `test`...); `spec.splitFolder`
    /// picked the one imported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 253)))]
    pub splits: Vec<String>,
    /// Where the normalized copy lives in the artifact store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_URL_LEN))]
    pub location: Option<String>,
    /// `sha256:<hex>` of the normalized copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 80))]
    pub digest: Option<String>,
}

/// One column of a profiled dataset.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ColumnProfile {
    #[schemars(length(max = MAX_COLUMN_LEN))]
    pub name: String,
    #[serde(rename = "type")]
    pub type_: ColumnType,
    /// Rows where the value is missing.
    pub missing: i64,
}

/// Inferred type of a column.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ColumnType {
    Image,
    Text,
    Numeric,
    Categorical,
}

/// Rows of one class.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ClassCount {
    #[schemars(length(max = MAX_COLUMN_LEN))]
    pub name: String,
    pub count: i64,
}
