//! The checks of an Experiment's spec against its Datasets' columns, and the `Auto` pipeline
//! rule. The operator runs them on the Datasets' profiles before a GPU is spent; the trainer
//! runs the same on the normalized copies it reads, so both refuse the same specs with the
//! same words.

use crate::ExperimentSpec;
use crate::dataset::ColumnType;
use crate::experiment::{Pipeline, Task};

/// One column as both sides know it: a profile in `Dataset.status`, or a normalized copy's meta.
pub type Column<'a> = (&'a str, ColumnType);

impl Pipeline {
    /// `Auto` is Embeddings when there is any non-image feature or more than one image column,
    /// and the auto image model otherwise; other values stay.
    pub fn resolve(self, image_columns: usize, other_features: usize) -> Pipeline {
        match self {
            Pipeline::Auto if image_columns == 1 && other_features == 0 => Pipeline::AutoImage,
            Pipeline::Auto => Pipeline::Embeddings,
            chosen => chosen,
        }
    }
}

/// The pipeline that will run, or what is wrong with the spec, said so a person can fix it.
/// `train` and `test` are the columns of the Datasets `spec.datasetRef` and
/// `spec.testDatasetRef` name.
pub fn check_experiment(
    spec: &ExperimentSpec,
    train: &[Column<'_>],
    test: Option<&[Column<'_>]>,
) -> Result<Pipeline, String> {
    let dataset = &spec.dataset_ref.name;
    let names = || train.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ");
    let Some(&(_, target_type)) = train.iter().find(|(name, _)| *name == spec.target) else {
        return Err(format!(
            "target column {:?} is not in Dataset {dataset}; its columns are: {}; fix spec.target",
            spec.target,
            names()
        ));
    };
    match (target_type, spec.task) {
        (ColumnType::Image, _) => {
            return Err(format!(
                "target column {:?} holds images; choose a label or value column",
                spec.target
            ));
        }
        (ColumnType::Text | ColumnType::Categorical, Task::Regression) => {
            return Err(format!(
                "task Regression needs a numeric target, but {:?} is {target_type:?}; use task Classification",
                spec.target
            ));
        }
        _ => {}
    }
    let features: Vec<&Column<'_>> = train.iter().filter(|(name, _)| *name != spec.target).collect();
    let images: Vec<&str> =
        features.iter().filter(|(_, t)| *t == ColumnType::Image).map(|(name, _)| *name).collect();
    let others: Vec<&str> =
        features.iter().filter(|(_, t)| *t != ColumnType::Image).map(|(name, _)| *name).collect();
    if images.is_empty() {
        return Err(format!(
            "Dataset {dataset} has no image column (columns: {}); set its spec.imageColumns",
            names()
        ));
    }
    let pipeline = spec.pipeline.resolve(images.len(), others.len());
    if pipeline == Pipeline::AutoImage && (images.len() > 1 || !others.is_empty()) {
        return Err(format!(
            "pipeline AutoImage learns from exactly one image column and the target, but Dataset {dataset} \
             has image columns {} and other feature columns [{}]; use pipeline Embeddings, which joins \
             images with other columns",
            images.join(", "),
            others.join(", ")
        ));
    }
    if let (Some(test), Some(test_ref)) = (test, &spec.test_dataset_ref) {
        check_test_columns(train, test, &test_ref.name, dataset)?;
    }
    Ok(pipeline)
}

/// A test Dataset needs every training column (the features to score, the target to measure)
/// with the same type; columns it has beyond those are ignored.
fn check_test_columns(
    train: &[Column<'_>],
    test: &[Column<'_>],
    test_name: &str,
    train_name: &str,
) -> Result<(), String> {
    let mut problems = Vec::new();
    for (name, type_) in train {
        match test.iter().find(|(n, _)| n == name) {
            None => problems.push(format!("{name} is missing")),
            Some((_, t)) if t != type_ => problems.push(format!("{name} is {t:?}, not {type_:?}")),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "test Dataset {test_name} does not match the columns of Dataset {train_name}: {}; import both \
         from the same source, for example as the two parts of a split",
        problems.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Experiment;
    use crate::common::LocalObjectReference;

    fn spec() -> ExperimentSpec {
        let text = "apiVersion: ocellus.dev/v1alpha1\nkind: Experiment\nmetadata: {name: e}\n\
                    spec: {datasetRef: {name: cats}, target: label}\n";
        match crate::parse_manifests(text).unwrap().remove(0) {
            crate::Manifest::Experiment(e) => Experiment::clone(&e).spec,
            crate::Manifest::Dataset(_) => unreachable!(),
        }
    }

    const PHOTOS: &[Column<'static>] = &[("image", ColumnType::Image), ("label", ColumnType::Categorical)];

    #[test]
    fn auto_resolves_by_the_feature_columns() {
        assert_eq!(check_experiment(&spec(), PHOTOS, None), Ok(Pipeline::AutoImage));
        let tabular =
            [("image", ColumnType::Image), ("km", ColumnType::Numeric), ("label", ColumnType::Categorical)];
        assert_eq!(check_experiment(&spec(), &tabular, None), Ok(Pipeline::Embeddings));
        let two = [("a", ColumnType::Image), ("b", ColumnType::Image), ("label", ColumnType::Categorical)];
        assert_eq!(check_experiment(&spec(), &two, None), Ok(Pipeline::Embeddings));
    }

    #[test]
    fn a_missing_target_names_the_columns() {
        let mut spec = spec();
        spec.target = "price".into();
        let error = check_experiment(&spec, PHOTOS, None).unwrap_err();
        assert_eq!(
            error,
            "target column \"price\" is not in Dataset cats; its columns are: image, label; fix spec.target"
        );
    }

    #[test]
    fn regression_needs_a_numeric_target_and_images_are_no_target() {
        let mut spec = spec();
        spec.task = Task::Regression;
        assert!(check_experiment(&spec, PHOTOS, None).unwrap_err().contains("use task Classification"));
        spec.target = "image".into();
        assert!(check_experiment(&spec, PHOTOS, None).unwrap_err().contains("holds images"));
    }

    #[test]
    fn auto_image_needs_one_image_column_only() {
        let mut spec = spec();
        spec.pipeline = Pipeline::AutoImage;
        let two =
            [("front", ColumnType::Image), ("km", ColumnType::Numeric), ("label", ColumnType::Categorical)];
        let error = check_experiment(&spec, &two, None).unwrap_err();
        assert!(error.contains("use pipeline Embeddings") && error.contains("[km]"), "{error}");
    }

    #[test]
    fn a_dataset_without_images_is_refused() {
        let columns = [("km", ColumnType::Numeric), ("label", ColumnType::Categorical)];
        assert!(check_experiment(&spec(), &columns, None).unwrap_err().contains("has no image column"));
    }

    #[test]
    fn a_test_dataset_needs_every_training_column_with_its_type() {
        let mut spec = spec();
        spec.test_dataset_ref = Some(LocalObjectReference::new("cats-test"));
        let error = check_experiment(&spec, PHOTOS, Some(&[("image", ColumnType::Image)])).unwrap_err();
        assert!(
            error.starts_with("test Dataset cats-test does not match") && error.contains("label is missing")
        );
        let retyped = [("image", ColumnType::Image), ("label", ColumnType::Numeric)];
        assert!(check_experiment(&spec, PHOTOS, Some(&retyped)).unwrap_err().contains("label is Numeric"));
        let extra =
            [("image", ColumnType::Image), ("label", ColumnType::Categorical), ("id", ColumnType::Text)];
        assert_eq!(check_experiment(&spec, PHOTOS, Some(&extra)), Ok(Pipeline::AutoImage));
    }
}
