//! Checks an Experiment against the profiles of its Datasets before a GPU is spent on it, with
//! the contract's rules (`ocellus_crds::contract::checks`), which the trainer applies too.

use ocellus_crds::ExperimentSpec;
use ocellus_crds::contract::checks::{Column, check_experiment};
use ocellus_crds::dataset::DatasetStatus;
use ocellus_crds::experiment::Pipeline;

/// The pipeline that will run, or what is wrong with the spec, said so a person can fix it.
pub fn validate(
    spec: &ExperimentSpec,
    train: &DatasetStatus,
    test: Option<&DatasetStatus>,
) -> Result<Pipeline, String> {
    if train.columns.is_empty() {
        // An import that reported no profile: the trainer checks the same things itself.
        return Ok(spec.pipeline);
    }
    let test = test.filter(|t| !t.columns.is_empty()).map(columns);
    check_experiment(spec, &columns(train), test.as_deref())
}

fn columns(status: &DatasetStatus) -> Vec<Column<'_>> {
    status.columns.iter().map(|c| (c.name.as_str(), c.type_)).collect()
}

#[cfg(test)]
mod tests {
    use ocellus_crds::Experiment;
    use ocellus_crds::common::LocalObjectReference;
    use ocellus_crds::dataset::{ColumnProfile, ColumnType};

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

    const PHOTOS: &[(&str, ColumnType)] = &[("image", ColumnType::Image), ("label", ColumnType::Categorical)];

    #[test]
    fn profiles_are_checked_with_the_contract_rules() {
        let spec = Experiment::test().spec;
        assert_eq!(validate(&spec, &profile(PHOTOS), None), Ok(Pipeline::AutoImage));
        let mut spec = spec;
        spec.test_dataset_ref = Some(LocalObjectReference::new("cats-test"));
        let error =
            validate(&spec, &profile(PHOTOS), Some(&profile(&[("image", ColumnType::Image)]))).unwrap_err();
        assert!(error.contains("label is missing"), "{error}");
    }

    #[test]
    fn unprofiled_datasets_are_left_to_the_trainer() {
        assert_eq!(validate(&Experiment::test().spec, &DatasetStatus::default(), None), Ok(Pipeline::Auto));
        let spec = Experiment::test().spec;
        assert_eq!(
            validate(&spec, &profile(PHOTOS), Some(&DatasetStatus::default())),
            Ok(Pipeline::AutoImage)
        );
    }
}
