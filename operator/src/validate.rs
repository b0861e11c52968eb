//! Checks an Experiment against the profiles of its Datasets before a GPU is spent on it,
//! and resolves `pipeline: Auto` the way the trainer does.

use ocellus_crds::ExperimentSpec;
use ocellus_crds::dataset::{ColumnType, DatasetStatus};
use ocellus_crds::experiment::{Pipeline, Task};

/// The pipeline that will run, or what is wrong with the spec, said so a person can fix it.
pub fn validate(
    spec: &ExperimentSpec,
    train: &DatasetStatus,
    test: Option<&DatasetStatus>,
) -> Result<Pipeline, String> {
    let dataset = &spec.dataset_ref.name;
    if train.columns.is_empty() {
        // An import that reported no profile: the trainer checks the same things itself.
        return Ok(spec.pipeline);
    }
    let names = || train.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
    let Some(target) = train.columns.iter().find(|c| c.name == spec.target) else {
        return Err(format!(
            "target column {:?} is not in Dataset {dataset}; its columns are: {}",
            spec.target,
            names()
        ));
    };
    match (target.type_, spec.task) {
        (ColumnType::Image, _) => {
            return Err(format!(
                "target column {:?} holds images; choose a label or value column",
                spec.target
            ));
        }
        (ColumnType::Text | ColumnType::Categorical, Task::Regression) => {
            return Err(format!(
                "task Regression needs a numeric target, but {:?} is {:?}; use task Classification",
                spec.target, target.type_
            ));
        }
        _ => {}
    }
    let features: Vec<_> = train.columns.iter().filter(|c| c.name != spec.target).collect();
    let images = features.iter().filter(|c| c.type_ == ColumnType::Image).count();
    if images == 0 {
        return Err(format!(
            "Dataset {dataset} has no image column (columns: {}); set its spec.imageColumns",
            names()
        ));
    }
    let others = features.len() - images;
    let pipeline = match spec.pipeline {
        Pipeline::Auto if others > 0 || images > 1 => Pipeline::Embeddings,
        Pipeline::Auto => Pipeline::AutoImage,
        Pipeline::AutoImage if images > 1 || others > 0 => {
            return Err(format!(
                "pipeline AutoImage needs exactly one image column and the target, but Dataset {dataset} has \
                 {images} image and {others} other feature columns; use pipeline Embeddings"
            ));
        }
        chosen => chosen,
    };
    if let (Some(test), Some(test_ref)) = (test, &spec.test_dataset_ref)
        && !test.columns.is_empty()
    {
        {
            let missing: Vec<_> = train
                .columns
                .iter()
                .filter(|c| !test.columns.iter().any(|t| t.name == c.name))
                .map(|c| c.name.as_str())
                .collect();
            if !missing.is_empty() {
                return Err(format!(
                    "test Dataset {} lacks columns of Dataset {dataset}: {}",
                    test_ref.name,
                    missing.join(", ")
                ));
            }
        }
    }
    Ok(pipeline)
}

#[cfg(test)]
mod tests {
    use ocellus_crds::Experiment;
    use ocellus_crds::common::LocalObjectReference;
    use ocellus_crds::dataset::ColumnProfile;

    use super::*;
    use crate::fixtures::ExperimentFixture;

    fn profile(columns: &[(&str, ColumnType)]) -> DatasetStatus {
        DatasetStatus {
            columns: columns
                .iter()
                .map(|(n, t)| ColumnProfile { name: (*n).into(), type_: *t, missing: 0 })
                .collect(),
            ..Default::default()
        }
    }

    fn spec() -> ExperimentSpec {
        Experiment::test().spec
    }

    const PHOTOS: &[(&str, ColumnType)] = &[("image", ColumnType::Image), ("label", ColumnType::Categorical)];

    #[test]
    fn auto_resolves_like_the_trainer() {
        assert_eq!(validate(&spec(), &profile(PHOTOS), None), Ok(Pipeline::AutoImage));
        let tabular = profile(&[
            ("image", ColumnType::Image),
            ("km", ColumnType::Numeric),
            ("label", ColumnType::Categorical),
        ]);
        assert_eq!(validate(&spec(), &tabular, None), Ok(Pipeline::Embeddings));
    }

    #[test]
    fn missing_target_names_the_columns() {
        let mut spec = spec();
        spec.target = "price".into();
        let error = validate(&spec, &profile(PHOTOS), None).unwrap_err();
        assert_eq!(error, "target column \"price\" is not in Dataset cats; its columns are: image, label");
    }

    #[test]
    fn regression_needs_a_numeric_target() {
        let mut spec = spec();
        spec.task = Task::Regression;
        assert!(validate(&spec, &profile(PHOTOS), None).unwrap_err().contains("use task Classification"));
    }

    #[test]
    fn auto_image_needs_one_image_column_only() {
        let mut spec = spec();
        spec.pipeline = Pipeline::AutoImage;
        let two = profile(&[
            ("front", ColumnType::Image),
            ("back", ColumnType::Image),
            ("label", ColumnType::Categorical),
        ]);
        assert!(validate(&spec, &two, None).unwrap_err().contains("use pipeline Embeddings"));
    }

    #[test]
    fn a_dataset_without_images_is_refused() {
        let error = validate(
            &spec(),
            &profile(&[("km", ColumnType::Numeric), ("label", ColumnType::Categorical)]),
            None,
        );
        assert!(error.unwrap_err().contains("has no image column"));
    }

    #[test]
    fn test_dataset_needs_the_training_columns() {
        let mut spec = spec();
        spec.test_dataset_ref = Some(LocalObjectReference::new("cats-test"));
        let error =
            validate(&spec, &profile(PHOTOS), Some(&profile(&[("image", ColumnType::Image)]))).unwrap_err();
        assert_eq!(error, "test Dataset cats-test lacks columns of Dataset cats: label");
    }

    #[test]
    fn unprofiled_datasets_are_left_to_the_trainer() {
        assert_eq!(validate(&spec(), &DatasetStatus::default(), None), Ok(Pipeline::Auto));
    }
}
