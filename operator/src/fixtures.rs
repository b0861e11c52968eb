//! Test resources that read like prose: `Experiment::test().suspended()`.

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, Pod, PodCondition,
    PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use ocellus_crds::condition::{reasons, types};
use ocellus_crds::dataset::{ColumnProfile, ColumnType, DatasetSource, SplitPart, SplitSource};
use ocellus_crds::experiment::{DeletionPolicy, Pipeline};
use ocellus_crds::{ConditionStatus, Dataset, DatasetSpec, Experiment, NewCondition, set_condition};

pub const NAMESPACE: &str = "ml";

pub fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(seconds).unwrap())
}

fn meta(name: &str, uid: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NAMESPACE.into()),
        uid: Some(uid.into()),
        generation: Some(1),
        resource_version: Some("1".into()),
        ..Default::default()
    }
}

pub trait DatasetFixture {
    fn test() -> Self;
    fn split_of(parent: &str) -> Self;
    fn named(self, name: &str) -> Self;
    fn ready_with(self, columns: &[(&str, ColumnType)]) -> Self;
}

impl DatasetFixture for Dataset {
    fn test() -> Self {
        let spec = DatasetSpec {
            source: DatasetSource { path: Some("/data/cats.zip".into()), ..Default::default() },
            format: Default::default(),
            image_columns: vec![],
            table: None,
            split_folder: None,
            class_folder_depth: None,
            missing_image_policy: Default::default(),
            limits: Default::default(),
        };
        let mut dataset = Dataset::new("cats", spec);
        dataset.metadata = meta("cats", "uid-dataset-cats");
        dataset
    }

    fn split_of(parent: &str) -> Self {
        let mut dataset = Dataset::test().named("cats-train");
        dataset.spec.source = DatasetSource {
            split: Some(SplitSource {
                dataset_ref: ocellus_crds::common::LocalObjectReference::new(parent),
                percent: 80,
                part: SplitPart::First,
                seed: 1234,
                stratify_by: None,
            }),
            ..Default::default()
        };
        dataset
    }

    fn named(mut self, name: &str) -> Self {
        self.metadata.name = Some(name.into());
        self.metadata.uid = Some(format!("uid-dataset-{name}"));
        self
    }

    fn ready_with(mut self, columns: &[(&str, ColumnType)]) -> Self {
        let status = self.status.get_or_insert_default();
        status.rows = Some(100);
        status.columns = columns
            .iter()
            .map(|(name, type_)| ColumnProfile { name: (*name).into(), type_: *type_, missing: 0 })
            .collect();
        status.location =
            Some(format!("s3://ocellus-artifacts/runs/datasets/ml/{}", self.metadata.name.as_ref().unwrap()));
        status.observed_generation = Some(1);
        set_condition(
            &mut status.conditions,
            NewCondition {
                type_: types::READY,
                status: ConditionStatus::True,
                reason: reasons::IMPORTED,
                message: "imported",
                observed_generation: Some(1),
            },
            at(100),
        );
        self
    }
}

pub trait ExperimentFixture {
    fn test() -> Self;
    fn suspended(self) -> Self;
    fn with_pipeline(self, pipeline: Pipeline) -> Self;
    fn deleting(self, policy: DeletionPolicy) -> Self;
}

impl ExperimentFixture for Experiment {
    fn test() -> Self {
        let spec: ocellus_crds::ExperimentSpec =
            serde_json::from_value(serde_json::json!({"datasetRef": {"name": "cats"}, "target": "label"}))
                .unwrap();
        let mut experiment = Experiment::new("cats-exp", spec);
        experiment.metadata = meta("cats-exp", "uid-experiment-cats");
        experiment
    }

    fn suspended(mut self) -> Self {
        self.spec.suspend = true;
        self
    }

    fn with_pipeline(mut self, pipeline: Pipeline) -> Self {
        self.spec.pipeline = pipeline;
        self
    }

    fn deleting(mut self, policy: DeletionPolicy) -> Self {
        self.spec.artifacts.deletion_policy = policy;
        self.metadata.deletion_timestamp = Some(at(500));
        self.metadata.finalizers = Some(vec![crate::experiment_controller::FINALIZER.into()]);
        self
    }
}

/// A Job in a given state, for the state mapping.
pub fn job(conditions: &[(&str, &str, &str)], active: i32, failed: i32) -> Job {
    Job {
        metadata: ObjectMeta { name: Some("cats-exp-train".into()), ..Default::default() },
        spec: Some(Default::default()),
        status: Some(JobStatus {
            active: Some(active),
            failed: Some(failed),
            conditions: Some(
                conditions
                    .iter()
                    .map(|(type_, reason, message)| JobCondition {
                        type_: (*type_).into(),
                        status: "True".into(),
                        reason: Some((*reason).into()),
                        message: Some((*message).into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
    }
}

pub fn pending_pod(condition_reason: &str, message: &str) -> Pod {
    Pod {
        status: Some(PodStatus {
            phase: Some("Pending".into()),
            conditions: Some(vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some(condition_reason.into()),
                message: Some(message.into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn waiting_pod(reason: &str, message: &str) -> Pod {
    container_pod(
        "Pending",
        ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.into()),
                message: Some(message.into()),
            }),
            ..Default::default()
        },
    )
}

pub fn terminated_pod(reason: &str, exit_code: i32, message: &str) -> Pod {
    container_pod(
        "Failed",
        ContainerState {
            terminated: Some(ContainerStateTerminated {
                reason: Some(reason.into()),
                exit_code,
                message: Some(message.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
}

pub fn evicted_pod() -> Pod {
    Pod {
        status: Some(PodStatus {
            phase: Some("Failed".into()),
            reason: Some("Evicted".into()),
            message: Some("The node was low on resource: memory.".into()),
            conditions: Some(vec![PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some("TerminationByKubelet".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn container_pod(phase: &str, state: ContainerState) -> Pod {
    Pod {
        status: Some(PodStatus {
            phase: Some(phase.into()),
            container_statuses: Some(vec![ContainerStatus {
                name: crate::jobs::CONTAINER.into(),
                state: Some(state),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}
