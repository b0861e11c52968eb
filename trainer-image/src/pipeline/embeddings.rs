//! The embeddings pipeline: pretrained CNN embeddings of every image column, reduced per
//! architecture, joined with the other columns, into gradient boosting.
//!
//! 1. Labelled training rows are split 80/20 (stratified for classification) into fit and
//!    validation rows, with the Experiment's seed.
//! 2. Every image of every image column goes through every architecture once.
//! 3. For each candidate dimension, a PCA per (column, architecture) is fitted on the fit rows
//!    only, and two learners train on the projections plus the tabular features: LightGBM with
//!    early stopping on the validation rows, and an L2-regularised linear model (logistic or
//!    ridge) whose strength is chosen on them. The (dimension, learner) candidate with the best
//!    validation score wins.
//! 4. The winner becomes the scoring bundle; the test Dataset is scored through the bundle.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use ocellus_crds::ExperimentStatus;
use ocellus_crds::common::MetricValue;
use ocellus_crds::dataset::ColumnType;
use ocellus_crds::experiment::{
    BestModel, EMBEDDING_DIMENSIONS, Experiment, ExperimentSpec, Metrics, Pipeline, Scorer, TrialSummary,
    TrialsSummary,
};
use ocellus_dataset::normalized::{ColumnMeta, NormalizedDataset};
use ocellus_report::{Curve, FeatureKind, ImportanceGroup, RunRecord, TrialRecord};
use ocellus_tabular::columns::TabularEncoder;
use ocellus_tabular::gbm::{Gbm, GbmConfig, curve_metric};
use ocellus_tabular::learner::{FittedModel, TrainingData};
use ocellus_tabular::linear::{self, LinearConfig};
use ocellus_tabular::matrix::Matrix;
use ocellus_tabular::metrics::{compare, evaluate, scorer_name};
use ocellus_tabular::pca::Pca;
use ocellus_tabular::task::{Target, TaskKind};
use serde_json::{Map, Value};
use tch::Device;

use crate::backbone::Registry;
use crate::bundle::{
    BundleParts, ImageFeature, Projection, ScoringBundle, project, tabular_error, write_bundle,
};
use crate::embed::{EmbedOptions, Embeddings, ImageInput, embed};
use crate::finetune::{FineTuneConfig, Objective, fine_tune};
use crate::image_cells::ImageCells;
use crate::pipeline::labelled::LabelledRows;
use crate::pipeline::outcome::{
    self, Outcome, Scoring, artifact_locations, bundle_staging, install_bundle, score_test,
};
use crate::pipeline::run_record;
use crate::progress::bar;
use crate::{Error, Result};

/// How the pipeline runs on this machine (not part of the Experiment).
#[derive(Clone, Debug)]
pub struct RunSettings {
    pub device: Device,
    pub embed: EmbedOptions,
    /// Time for LightGBM's hyperparameter search, per candidate dimension (and, separately, for
    /// the linear model's choice of strength).
    pub gbm_budget: Duration,
    pub cache_dir: std::path::PathBuf,
}

/// One candidate feature set and a model of one learner on it.
struct Candidate {
    dimension: i32,
    images: Vec<(ImageFeature, Projection, PathBuf)>,
    model: FittedModel,
    score: f64,
    validation: Vec<MetricValue>,
    /// Every labelled row's features (shared by a dimension's candidates), for the refit.
    features: Rc<FeatureMatrix>,
}

/// The features of every labelled row, and which of them hold category codes.
struct FeatureMatrix {
    values: Matrix,
    categorical: Vec<usize>,
}

/// The projected embedding of one (image column, architecture) for every labelled row.
struct ImageBlock {
    feature: ImageFeature,
    projection: Projection,
    /// The backbone folder the embeddings came from.
    source: PathBuf,
    values: Matrix,
}

pub fn run(
    experiment: &Experiment,
    train: &NormalizedDataset,
    test: Option<&NormalizedDataset>,
    registry: &Registry,
    settings: &RunSettings,
    out: &Path,
) -> Result<Outcome> {
    let spec = &experiment.spec;
    let name = experiment.metadata.name.as_deref().unwrap_or("experiment");
    let columns = &train.meta.columns;
    let target_column = find_target(columns, &spec.target, &train.dir)?;
    let features: Vec<ColumnMeta> =
        columns.iter().filter(|c| c.name != target_column.name).cloned().collect();
    let image_columns: Vec<&ColumnMeta> = features.iter().filter(|c| c.type_ == ColumnType::Image).collect();
    let tabular_columns: Vec<(String, ColumnType)> =
        features.iter().filter(|c| c.type_ != ColumnType::Image).map(|c| (c.name.clone(), c.type_)).collect();
    if image_columns.is_empty() {
        return Err(Error::bad_input(format!(
            "dataset {} has no image column; the embeddings pipeline needs at least one (columns: {})",
            train.dir.display(),
            column_list(columns)
        )));
    }
    check_dimensions(&spec.embeddings.dimensions)?;
    for architecture in &spec.embeddings.architectures {
        registry.manifest(architecture)?;
    }

    let LabelledRows { rows, target, y, scorer, fit, valid } = LabelledRows::load(train, spec)?;
    if fit.is_empty() || valid.is_empty() {
        return Err(Error::bad_input(format!(
            "{} labelled rows are too few to fit and validate; the embeddings pipeline needs at least 10",
            rows.len()
        )));
    }
    println!(
        "{name}: {:?} on {:?}, {} rows ({} fit, {} validation), scorer {scorer:?}",
        target.task,
        spec.target,
        rows.len(),
        fit.len(),
        valid.len()
    );

    // The images of every image column, checked once.
    let cells = ImageCells::new(&train.dir, &settings.cache_dir);
    let mut column_inputs: Vec<(String, Vec<ImageInput>)> = Vec::new();
    for column in &image_columns {
        let values: Vec<Option<&Value>> = rows.iter().map(|row| row.get(&column.name)).collect();
        let inputs = cells.resolve(&column.name, &values)?;
        if fit.iter().all(|&i| matches!(inputs[i], ImageInput::Missing)) {
            return Err(Error::bad_input(format!(
                "image column {:?} has no images in the training rows: fix the dataset or drop the column",
                column.name
            )));
        }
        column_inputs.push((column.name.clone(), inputs));
    }
    let fit_rows: Vec<Map<String, Value>> = fit.iter().map(|&i| rows[i].clone()).collect();
    let encoder =
        TabularEncoder::fit(&fit_rows, &tabular_columns, spec.seed as u64).map_err(tabular_error)?;
    let tabular = encoder.transform(&rows).map_err(tabular_error)?;

    let mut dimensions = spec.embeddings.dimensions.clone();
    dimensions.sort_unstable();
    let fine_tuning = &spec.embeddings.fine_tune;
    // Pretrained embeddings are computed once and projected per dimension; fine-tuned ones
    // come from a network trained for each dimension.
    crate::progress::stage(if fine_tuning.enabled { "FineTuning" } else { "ExtractingEmbeddings" }, 5);
    let pretrained = if fine_tuning.enabled {
        Vec::new()
    } else {
        pretrained_embeddings(name, &column_inputs, &spec.embeddings.architectures, registry, settings)?
    };
    let work = out.join(".work");
    let mut candidates: Vec<Candidate> = Vec::new();
    for (index, &dimension) in dimensions.iter().enumerate() {
        if index > 0 || !fine_tuning.enabled {
            crate::progress::stage("FittingModels", 50 + (40 * index / dimensions.len()) as i32);
        }
        let blocks = if fine_tuning.enabled {
            let context =
                FineTuneContext { registry, settings, fit: &fit, y: &y, target: &target, work: &work };
            fine_tuned_blocks(
                name,
                dimension,
                &column_inputs,
                &spec.embeddings.architectures,
                fine_tuning,
                spec.seed,
                &context,
            )?
        } else {
            pca_blocks(dimension, &pretrained, &fit, registry)?
        };
        for candidate in fit_candidates(
            dimension, blocks, &tabular, &encoder, &y, &fit, &valid, &target, scorer, spec.seed, settings,
        )? {
            println!(
                "{name}: dimension {dimension}, {}: validation {scorer:?} {:.6}",
                candidate.model.name(),
                candidate.score
            );
            candidates.push(candidate);
        }
        let architectures = spec.embeddings.architectures.join("+");
        crate::progress::trials(trials_summary(&candidates, scorer, &architectures));
    }
    let best_index = best_candidate(&candidates, scorer);
    let best = &candidates[best_index];
    let final_model = refit_on_all_rows(best, &y, (&fit, &valid), spec.seed)?;
    println!(
        "{name}: {} refitted on all {} labelled rows (fit and validation)",
        final_model.name(),
        fit.len() + valid.len()
    );

    // The bundle, written aside and renamed into place.
    let staging = bundle_staging(out)?;
    let bundle_dir = staging.path().join("scoring");
    let parts = BundleParts {
        experiment: name,
        target_column: &spec.target,
        target: &target,
        columns: &features,
        projections: best.images.iter().map(|(f, p, source)| (f.clone(), p, source.clone())).collect(),
        encoder: &encoder,
        model: &final_model,
    };
    write_bundle(&parts, &bundle_dir)?;
    let _ = std::fs::remove_dir_all(&work);
    let final_bundle = install_bundle(&bundle_dir, out)?;

    let mut metrics = Metrics { validation: best.validation.clone(), test: Vec::new() };
    let mut predictions_path = None;
    if let Some(test) = test {
        crate::progress::stage("ScoringTest", 92);
        let bundle = ScoringBundle::load(&final_bundle, settings.device)?;
        let scoring = Scoring { cache_dir: &settings.cache_dir, embed: &settings.embed };
        let (test_metrics, path) = score_test(&bundle, test, &target, &spec.target, &scoring, out)?;
        metrics.test = test_metrics;
        predictions_path = Some(path);
    }

    let status = ExperimentStatus {
        pipeline: Some(Pipeline::Embeddings),
        metrics: Some(metrics),
        best_model: Some(BestModel {
            architecture: Some(spec.embeddings.architectures.join("+")),
            input_size: registry
                .manifest(&spec.embeddings.architectures[0])
                .ok()
                .map(|m| m.input_size as i32),
            embedding_dimension: Some(best.dimension),
            epochs: fine_tuning.enabled.then_some(fine_tuning.epochs),
            augmentations: if fine_tuning.enabled {
                fine_tuning.augmentations.iter().map(|a| format!("{a:?}")).collect()
            } else {
                Vec::new()
            },
            learner: Some(best.model.name().into()),
            score: Some(best.score),
            ..BestModel::default()
        }),
        trials: Some(trials_summary(&candidates, scorer, &spec.embeddings.architectures.join("+"))),
        artifacts: Some(artifact_locations(out, &final_bundle, predictions_path)),
        ..ExperimentStatus::default()
    };
    let image_names = image_columns.iter().map(|c| c.name.clone()).collect();
    let record = RunRecord {
        trials: candidates.iter().enumerate().map(|(i, c)| candidate_record(i, c, spec, &target)).collect(),
        feature_importance: importance_groups(best, &final_model, &encoder)?,
        importance_measure: Some(best.model.importance_measure().into()),
        ..run_record(experiment, Pipeline::Embeddings, &target, scorer, (train, test), image_names)
    };
    Ok(Outcome { status, record })
}

/// A candidate as a trial of the report: its feature set, its learner's chosen parameters and,
/// for LightGBM, that model's validation curve.
fn candidate_record(id: usize, candidate: &Candidate, spec: &ExperimentSpec, target: &Target) -> TrialRecord {
    let mut config = Map::new();
    config.insert("architectures".into(), spec.embeddings.architectures.join("+").into());
    config.insert("embeddingDimension".into(), candidate.dimension.into());
    config.insert("fineTuned".into(), spec.embeddings.fine_tune.enabled.into());
    config.insert("learner".into(), candidate.model.name().into());
    let mut curve = None;
    match &candidate.model {
        FittedModel::LightGbm(gbm) => {
            let info = &gbm.info;
            if let Ok(Value::Object(params)) = serde_json::to_value(&info.params) {
                config.extend(params);
            }
            config.insert("boostingRounds".into(), info.best_iteration.into());
            config.insert("gbmTrials".into(), info.trials.len().into());
            curve = info.trials.iter().find(|t| t.params == info.params).map(|t| t.validation_curve.clone());
        }
        FittedModel::Linear(linear) => {
            config.insert("alpha".into(), linear.alpha.into());
            config.insert("alphasTried".into(), linear.trials.len().into());
        }
    }
    TrialRecord {
        id,
        config,
        score: Some(candidate.score),
        status: "Finished".into(),
        curves: curve
            .into_iter()
            .map(|values| Curve {
                metric: format!("LightGBM validation {}", curve_metric(target.task)),
                step: "boosting round".into(),
                values,
            })
            .collect(),
    }
}

/// The winning model's feature importance (LightGBM's split gain, or the linear model's absolute
/// standardised coefficients) summed per source column: all embedding features of an image
/// column together, each tabular column (a text column's components together).
fn importance_groups(
    best: &Candidate,
    model: &FittedModel,
    encoder: &TabularEncoder,
) -> Result<Vec<ImportanceGroup>> {
    let gains = model.feature_importance().map_err(tabular_error)?;
    let mut sources: Vec<(String, FeatureKind)> = Vec::new();
    for (feature, _, _) in &best.images {
        sources.extend(std::iter::repeat_n(
            (feature.column.clone(), FeatureKind::ImageEmbedding),
            feature.dimension,
        ));
    }
    sources.extend(encoder.feature_groups().into_iter().map(|c| (c, FeatureKind::Tabular)));
    if sources.len() != gains.len() {
        return Err(Error::Internal(format!("{} importances for {} features", gains.len(), sources.len())));
    }
    let mut groups: Vec<ImportanceGroup> = Vec::new();
    for ((column, kind), gain) in sources.into_iter().zip(gains) {
        match groups.iter_mut().find(|g| g.column == column && g.kind == kind) {
            Some(group) => group.importance += gain,
            None => groups.push(ImportanceGroup { column, kind, importance: gain }),
        }
    }
    Ok(groups)
}

/// Every (column, architecture) through its pretrained backbone, once.
fn pretrained_embeddings(
    name: &str,
    column_inputs: &[(String, Vec<ImageInput>)],
    architectures: &[String],
    registry: &Registry,
    settings: &RunSettings,
) -> Result<Vec<(String, String, Embeddings)>> {
    let mut embeddings = Vec::new();
    for (column, inputs) in column_inputs {
        for architecture in architectures {
            let backbone = registry.load_for_embeddings(architecture, settings.device)?;
            let progress = bar(inputs.len(), &format!("embedding {column} with {architecture}"));
            let started = Instant::now();
            let result = embed(&backbone, inputs, &settings.embed, &progress)?;
            progress.finish_and_clear();
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "{name}: {} images of {column:?} through {architecture} in {seconds:.1}s ({:.1} images/s)",
                inputs.len(),
                inputs.len() as f64 / seconds.max(1e-9)
            );
            embeddings.push((column.clone(), architecture.clone(), result));
        }
    }
    Ok(embeddings)
}

/// PCA of each pretrained embedding, fitted on the fit rows that have an image.
fn pca_blocks(
    dimension: i32,
    embeddings: &[(String, String, Embeddings)],
    fit: &[usize],
    registry: &Registry,
) -> Result<Vec<ImageBlock>> {
    let mut blocks = Vec::new();
    for (column, architecture, embedding) in embeddings {
        let present: Vec<usize> = fit.iter().copied().filter(|&i| !embedding.is_missing(i)).collect();
        let fit_matrix = Matrix::new(
            present.len(),
            embedding.dim,
            present.iter().flat_map(|&i| embedding.row(i).iter().copied()).collect(),
        )
        .map_err(tabular_error)?;
        let components = (dimension as usize).min(present.len().saturating_sub(1)).min(embedding.dim).max(1);
        let projection = Projection::Pca(Pca::fit(&fit_matrix, components).map_err(tabular_error)?);
        let values = project(&projection, embedding)?;
        let feature = ImageFeature {
            column: column.clone(),
            architecture: architecture.clone(),
            backbone: architecture.clone(),
            dimension: components,
            projection: format!("projections/{}.{architecture}.json", safe_file_name(column)),
        };
        blocks.push(ImageBlock { feature, projection, source: registry.root().join(architecture), values });
    }
    Ok(blocks)
}

struct FineTuneContext<'a> {
    registry: &'a Registry,
    settings: &'a RunSettings,
    fit: &'a [usize],
    y: &'a [f64],
    target: &'a Target,
    work: &'a Path,
}

/// Fine-tunes each architecture per image column with a bottleneck of `dimension`, then
/// embeds every labelled row with the fine-tuned network.
fn fine_tuned_blocks(
    name: &str,
    dimension: i32,
    column_inputs: &[(String, Vec<ImageInput>)],
    architectures: &[String],
    spec: &ocellus_crds::experiment::FineTuneSpec,
    seed: i64,
    context: &FineTuneContext,
) -> Result<Vec<ImageBlock>> {
    let mut blocks = Vec::new();
    for (column, inputs) in column_inputs {
        let present: Vec<usize> =
            context.fit.iter().copied().filter(|&i| !matches!(inputs[i], ImageInput::Missing)).collect();
        let images: Vec<ImageInput> = present.iter().map(|&i| inputs[i].clone()).collect();
        let labels: Vec<i64>;
        let values: Vec<f64>;
        let objective = match context.target.task {
            TaskKind::Regression => {
                values = present.iter().map(|&i| context.y[i]).collect();
                Objective::Values(&values)
            }
            _ => {
                labels = present.iter().map(|&i| context.y[i] as i64).collect();
                Objective::Classes { labels: &labels, classes: context.target.classes.len() as i64 }
            }
        };
        for architecture in architectures {
            let backbone_name = fine_tuned_name(architecture, column, dimension);
            let folder = context.work.join("finetuned").join(&backbone_name);
            let config = FineTuneConfig {
                epochs: spec.epochs.max(1) as usize,
                augmentations: spec.augmentations.clone(),
                batch_size: 16,
                learning_rate: 3e-4,
                seed: seed as u64,
                device: context.settings.device,
            };
            let progress = bar(
                images.len() * config.epochs,
                &format!("fine-tuning {architecture} on {column} (dimension {dimension})"),
            );
            let started = Instant::now();
            let tuned = fine_tune(
                context.registry,
                architecture,
                &images,
                &objective,
                dimension as usize,
                &config,
                &folder,
                &progress,
            )?;
            progress.finish_and_clear();
            println!(
                "{name}: fine-tuned {architecture} on {column:?} for dimension {dimension} in {:.1}s, loss per epoch {:?}",
                started.elapsed().as_secs_f64(),
                tuned.epoch_losses.iter().map(|l| (l * 1e4).round() / 1e4).collect::<Vec<_>>()
            );
            let registry = Registry::new(folder.parent().expect("inside the work folder"));
            let backbone = registry.load_for_embeddings(&backbone_name, context.settings.device)?;
            let progress = bar(inputs.len(), &format!("embedding {column} with fine-tuned {architecture}"));
            let embeddings = embed(&backbone, inputs, &context.settings.embed, &progress)?;
            progress.finish_and_clear();
            let projection = Projection::Linear(tuned.bottleneck);
            let values = project(&projection, &embeddings)?;
            let feature = ImageFeature {
                column: column.clone(),
                architecture: architecture.clone(),
                backbone: backbone_name.clone(),
                dimension: dimension as usize,
                projection: format!("projections/{}.{backbone_name}.json", safe_file_name(column)),
            };
            blocks.push(ImageBlock { feature, projection, source: folder, values });
        }
    }
    Ok(blocks)
}

/// A backbone folder name for a fine-tuned copy: lower case, digits and `_`, at most 63.
fn fine_tuned_name(architecture: &str, column: &str, dimension: i32) -> String {
    let column: String = column
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .collect();
    let mut name = format!("ft{dimension}_{architecture}_{column}");
    name.truncate(63);
    name
}

/// LightGBM and the linear model on one feature set.
#[allow(clippy::too_many_arguments)]
fn fit_candidates(
    dimension: i32,
    blocks: Vec<ImageBlock>,
    tabular: &Matrix,
    encoder: &TabularEncoder,
    y: &[f64],
    fit: &[usize],
    valid: &[usize],
    target: &Target,
    scorer: Scorer,
    seed: i64,
    settings: &RunSettings,
) -> Result<Vec<Candidate>> {
    let mut parts: Vec<&Matrix> = blocks.iter().map(|b| &b.values).collect();
    parts.push(tabular);
    let values = Matrix::hstack(&parts).map_err(tabular_error)?;
    let offset = values.cols - tabular.cols;
    let categorical: Vec<usize> = encoder.categorical_features().iter().map(|i| i + offset).collect();
    let features = Rc::new(FeatureMatrix { values, categorical });
    let categorical = &features.categorical;
    let pick = |indices: &[usize]| {
        (features.values.select_rows(indices), indices.iter().map(|&i| y[i]).collect::<Vec<_>>())
    };
    let (fit_x, fit_y) = pick(fit);
    let (valid_x, valid_y) = pick(valid);
    let data =
        TrainingData { train: &fit_x, y: &fit_y, valid: &valid_x, y_valid: &valid_y, target, categorical };
    let config = GbmConfig { budget: settings.gbm_budget, seed: seed as u64, scorer, ..GbmConfig::default() };
    let gbm = Gbm::fit(&data, &config).map_err(tabular_error)?;
    let config = LinearConfig { budget: settings.gbm_budget, scorer, ..LinearConfig::default() };
    let linear = linear::fit(&data, &config).map_err(tabular_error)?;
    let images: Vec<_> = blocks.into_iter().map(|b| (b.feature, b.projection, b.source)).collect();
    [FittedModel::LightGbm(gbm), FittedModel::Linear(linear)]
        .into_iter()
        .map(|model| {
            let predictions = model.predict(&valid_x).map_err(tabular_error)?;
            let validation = evaluate(target, &valid_y, &predictions);
            let score = validation
                .iter()
                .find(|m| m.name == scorer_name(scorer))
                .map(|m| m.value)
                .ok_or_else(|| Error::Internal(format!("scorer {scorer:?} was not computed")))?;
            Ok(Candidate {
                dimension,
                images: images.clone(),
                model,
                score,
                validation,
                features: features.clone(),
            })
        })
        .collect()
}

/// The chosen candidate's learner fitted again, with the settings validation chose, on the fit
/// and validation rows together (AutoGluon's `refit_full`): the validation rows have done their
/// job of choosing, and a model on a few hundred rows gains from every one of them.
fn refit_on_all_rows(
    best: &Candidate,
    y: &[f64],
    (fit, valid): (&[usize], &[usize]),
    seed: i64,
) -> Result<FittedModel> {
    let mut all: Vec<usize> = fit.iter().chain(valid).copied().collect();
    all.sort_unstable();
    let x = best.features.values.select_rows(&all);
    let y: Vec<f64> = all.iter().map(|&i| y[i]).collect();
    best.model.refit(&x, &y, &best.features.categorical, seed as u64).map_err(tabular_error)
}

fn best_candidate(candidates: &[Candidate], scorer: Scorer) -> usize {
    (0..candidates.len())
        .min_by(|&a, &b| compare(scorer, candidates[a].score, candidates[b].score))
        .unwrap_or(0)
}

fn trials_summary(candidates: &[Candidate], scorer: Scorer, architecture: &str) -> TrialsSummary {
    let all = candidates.iter().enumerate().map(|(i, candidate)| TrialSummary {
        id: i as i32,
        score: Some(candidate.score),
        architecture: Some(architecture.to_owned()),
        embedding_dimension: Some(candidate.dimension),
        learner: Some(candidate.model.name().into()),
        ..TrialSummary::default()
    });
    outcome::trials_summary(scorer, (candidates.len(), candidates.len(), 0), all)
}

fn find_target<'a>(columns: &'a [ColumnMeta], target: &str, dir: &Path) -> Result<&'a ColumnMeta> {
    columns.iter().find(|c| c.name == target).ok_or_else(|| {
        Error::bad_input(format!(
            "target column {target:?} is not in dataset {} (columns: {}); fix spec.target",
            dir.display(),
            column_list(columns)
        ))
    })
}

fn check_dimensions(dimensions: &[i32]) -> Result<()> {
    match dimensions.iter().find(|d| !EMBEDDING_DIMENSIONS.contains(d)) {
        Some(bad) => Err(Error::bad_input(format!(
            "embedding dimension {bad} is not allowed; use one or more of {EMBEDDING_DIMENSIONS:?}"
        ))),
        None if dimensions.is_empty() => {
            Err(Error::bad_input("embeddings.dimensions is empty; give at least one"))
        }
        None => Ok(()),
    }
}

fn column_list(columns: &[ColumnMeta]) -> String {
    columns.iter().map(|c| format!("{} ({:?})", c.name, c.type_)).collect::<Vec<_>>().join(", ")
}

fn safe_file_name(column: &str) -> String {
    column.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}
