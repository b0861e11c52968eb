//! The Jobs the operator runs, as pure functions of the resource and the configuration:
//! the Dataset import Job, the Experiment trainer Job and the artifact cleanup Job.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use ocellus_crds::experiment::{ArtifactLocations, Pipeline};
use ocellus_crds::report::{dataset_audience, experiment_audience};
use ocellus_crds::{Dataset, Experiment};
use serde::Serialize;

pub use ocellus_dataset::fetch::s3::{
    SOURCE_ACCESS_KEY_ENV, SOURCE_AUTH_ENV, SOURCE_AUTH_SECRET_ONLY, SOURCE_SECRET_KEY_ENV,
};

use crate::config::Config;
use crate::names::job_name;
use crate::trainer_pod::{ARTIFACTS_DIR, MANIFEST_DIR, TrainerPod};

pub use ocellus_crds::contract::exit::{
    BAD_INPUT as EXIT_BAD_INPUT, SOURCE_UNREACHABLE as EXIT_SOURCE_UNREACHABLE,
};
/// Name of the trainer container in every Job.
pub const CONTAINER: &str = "trainer";
/// ServiceAccount of trainer pods: no RBAC, no automounted API token.
pub const TRAINER_SERVICE_ACCOUNT: &str = "ocellus-trainer";
/// Pod retries after failures that are not disruptions.
pub const BACKOFF_LIMIT: i32 = 3;
/// Deadline of an import, and of an embeddings run (whose length the spec does not bound).
pub const DEFAULT_DEADLINE_SECONDS: i64 = 24 * 3600;
/// Time an auto-image run gets beyond its search budget (final fit, scoring, upload).
pub const DEADLINE_GRACE_SECONDS: i64 = 3600;
/// Kueue's queue label, copied from the resource to its Job.
pub const KUEUE_QUEUE_LABEL: &str = "kueue.x-k8s.io/queue-name";
/// Pod annotation holding the manifest the trainer reads (through a downward API file).
pub const MANIFEST_ANNOTATION: &str = "ocellus.dev/manifest";
/// Annotation on a cleanup Job (which has no owner, so that it outlives the Experiment): the
/// UID of the Experiment whose artifacts it deletes.
pub const OWNER_UID_ANNOTATION: &str = "ocellus.dev/owner-uid";
/// The status server's CA on a trainer pod's template, mounted as `MANIFEST_DIR/status-ca.crt`.
pub const STATUS_CA_ANNOTATION: &str = "ocellus.dev/status-ca";
/// Label on every Job and pod the operator makes.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "ocellus-operator");

/// Where the import looks for PVC sources, one folder per claim (`OCELLUS_VOLUMES_ROOT`).
const VOLUMES_DIR: &str = "/mnt/volumes";

/// The Job importing `dataset`. `parent` is the Dataset a split reads (its manifest goes along
/// so the trainer can find the parent's normalized copy).
pub fn import_job(dataset: &Dataset, parent: Option<&Dataset>, config: &Config) -> Job {
    let namespace = dataset.namespace().unwrap_or_default();
    let name = dataset.name_any();
    let mut manifest = String::new();
    if let Some(parent) = parent {
        manifest.push_str(&dataset_document(parent, config));
    }
    manifest.push_str(&manifest_document(dataset, false));
    let out = config.artifacts.in_pod(ARTIFACTS_DIR);
    let args = vec![
        "dataset".to_owned(),
        "import".to_owned(),
        format!("{MANIFEST_DIR}/manifest.yaml"),
        "--out".to_owned(),
        format!("{out}/datasets/{namespace}"),
        "--name".to_owned(),
        name.clone(),
    ];
    let mut pod = TrainerPod::new(config, args, &manifest, dataset_audience(&namespace, &name));
    pod.env("OCELLUS_VOLUMES_ROOT", VOLUMES_DIR);
    pod.env(SOURCE_AUTH_ENV, SOURCE_AUTH_SECRET_ONLY);
    if let Some(volume) = &dataset.spec.source.volume {
        pod.mount_claim(&volume.claim_name, &format!("{VOLUMES_DIR}/{}", volume.claim_name), true);
    }
    if let Some(secret) = dataset.spec.source.s3.as_ref().and_then(|s3| s3.credentials_secret_ref.as_ref()) {
        // Under their own names: AWS_* are the artifact store's keys, which the import writes with.
        pod.secret_env(SOURCE_ACCESS_KEY_ENV, &secret.name, &secret.access_key_id_key);
        pod.secret_env(SOURCE_SECRET_KEY_ENV, &secret.name, &secret.secret_access_key_key);
    }
    let spec = pod.into_job_spec(DEFAULT_DEADLINE_SECONDS, false);
    job(dataset, &job_name(&name, "import"), spec)
}

/// The folder of `experiment`'s run under an artifact-store root (the pod's mount, or the
/// store's `s3://`/`pvc://` address): the trainer writes there, cleanup deletes it, status links it.
/// It ends in the Experiment's UID, so an Experiment deleted and made again under the same name
/// never resumes from, or overwrites, the old one's run.
/// `<root>/experiments/<ns>/<name>-<uid8>`: the UID's first 8 hex digits set a re-created
/// Experiment of the same name apart (a 1 in 4 billion chance of a clash between two of them),
/// while keys stay short: S3-compatible stores limit names (s3s-fs keeps an object's metadata in
/// one file named after the whole key, 255 bytes at most), and people read these paths.
fn experiment_folder(root: &str, experiment: &Experiment) -> String {
    let uid: String =
        experiment.meta().uid.as_deref().unwrap_or("no-uid").chars().filter(|c| *c != '-').take(8).collect();
    format!(
        "{root}/experiments/{}/{}-{uid}",
        experiment.namespace().unwrap_or_default(),
        experiment.name_any()
    )
}

/// Where an import Job writes `dataset`'s normalized copy, as the store's address
/// (`s3://…` or `pvc://…`): what `status.location` says once the import succeeded.
pub fn dataset_location(dataset: &Dataset, config: &Config) -> String {
    format!(
        "{}/datasets/{}/{}",
        config.artifacts,
        dataset.namespace().unwrap_or_default(),
        dataset.name_any()
    )
}

/// `location` as a trainer pod sees it: a PVC's address becomes a path under its mount.
fn location_in_pod(location: &str, config: &Config) -> String {
    let store = config.artifacts.to_string();
    match location.strip_prefix(&store) {
        Some(rest) if config.artifacts.claim().is_some() => {
            format!("{}{rest}", config.artifacts.in_pod(ARTIFACTS_DIR))
        }
        _ => location.to_owned(),
    }
}

/// Where a finished `ocellus run` of `experiment` left its files, as the user finds them in the
/// store (`s3://bucket/...` or `pvc://claim/...`): the status links them even when the trainer
/// sent no report.
pub fn experiment_artifacts(experiment: &Experiment, config: &Config) -> ArtifactLocations {
    let location = experiment_folder(&config.artifacts.to_string(), experiment);
    ArtifactLocations {
        scoring_bundle: Some(format!("{location}/scoring")),
        predictions: experiment.spec.test_dataset_ref.as_ref().map(|_| format!("{location}/predictions.csv")),
        report: Some(format!("{location}/report.html")),
        location: Some(location),
    }
}

/// The Job running `experiment`: `ocellus run` on a manifest of the Experiment and its
/// Datasets (with their status, which says where their normalized copies are).
pub fn trainer_job(experiment: &Experiment, datasets: &[&Dataset], config: &Config) -> Job {
    let namespace = experiment.namespace().unwrap_or_default();
    let name = experiment.name_any();
    let mut manifest: String = datasets.iter().map(|d| dataset_document(d, config)).collect();
    manifest.push_str(&manifest_document(experiment, false));
    let out = config.artifacts.in_pod(ARTIFACTS_DIR);
    let args = vec![
        "run".to_owned(),
        format!("{MANIFEST_DIR}/manifest.yaml"),
        "--out".to_owned(),
        experiment_folder(&out, experiment),
    ];
    let mut pod = TrainerPod::new(config, args, &manifest, experiment_audience(&namespace, &name));
    let resources = &experiment.spec.resources;
    let mut limits = BTreeMap::new();
    if resources.gpus > 0 {
        limits.insert(config.gpu_resource.clone(), Quantity(resources.gpus.to_string()));
    }
    if let Some(cpu) = &resources.cpu {
        limits.insert("cpu".to_owned(), cpu.clone());
    }
    if let Some(memory) = &resources.memory {
        limits.insert("memory".to_owned(), memory.clone());
    }
    if !limits.is_empty() {
        pod.container.resources = Some(ResourceRequirements {
            requests: Some(limits.clone()),
            limits: Some(limits),
            ..Default::default()
        });
    }
    pod.spec.node_selector = (!resources.node_selector.is_empty()).then(|| resources.node_selector.clone());
    pod.spec.tolerations = (!resources.tolerations.is_empty()).then(|| resources.tolerations.clone());
    pod.spec.priority_class_name = resources.priority_class_name.clone();
    let deadline = match experiment.spec.pipeline {
        Pipeline::Embeddings => DEFAULT_DEADLINE_SECONDS,
        Pipeline::AutoImage | Pipeline::Auto => (experiment.spec.auto_image.time_budget_seconds
            + DEADLINE_GRACE_SECONDS)
            .max(DEFAULT_DEADLINE_SECONDS),
    };
    // Kueue admits a queued Job by un-suspending it, so it must start suspended.
    let suspend = experiment.spec.suspend || queue_name(experiment).is_some();
    let spec = pod.into_job_spec(deadline, suspend);
    job(experiment, &job_name(&name, "train"), spec)
}

/// The Job removing an Experiment's artifacts (`deletionPolicy: Delete`). It is not owned
/// by the Experiment, which is being deleted; it deletes itself an hour after finishing.
pub fn cleanup_job(experiment: &Experiment, config: &Config) -> Job {
    let namespace = experiment.namespace().unwrap_or_default();
    let name = experiment.name_any();
    let out = config.artifacts.in_pod(ARTIFACTS_DIR);
    let args = vec!["artifacts".to_owned(), "delete".to_owned(), experiment_folder(&out, experiment)];
    let mut pod = TrainerPod::new(config, args, "", String::new());
    // No manifest and no status reports: drop the manifest and token volumes.
    pod.spec.volumes.get_or_insert_default().retain(|v| v.name != "manifest" && v.name != "status-token");
    pod.container
        .volume_mounts
        .get_or_insert_default()
        .retain(|m| m.name != "manifest" && m.name != "status-token");
    pod.container.env.get_or_insert_default().retain(|e| !e.name.starts_with("OCELLUS_STATUS"));
    pod.template.annotations = None;
    let mut spec = pod.into_job_spec(DEFAULT_DEADLINE_SECONDS, false);
    spec.ttl_seconds_after_finished = Some(3600);
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(&name, "cleanup")),
            namespace: Some(namespace),
            labels: Some(managed_labels()),
            annotations: Some(BTreeMap::from([(
                OWNER_UID_ANNOTATION.to_owned(),
                experiment.metadata.uid.clone().unwrap_or_default(),
            )])),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

pub(crate) fn managed_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned())])
}

/// The Kueue queue a resource names, if any.
pub fn queue_name<K: Resource>(resource: &K) -> Option<&str> {
    resource.meta().labels.as_ref()?.get(KUEUE_QUEUE_LABEL).map(String::as_str)
}

/// A Job owned by `owner`, carrying its Kueue queue label.
fn job<K: Resource<DynamicType = ()>>(owner: &K, name: &str, spec: JobSpec) -> Job {
    let mut labels = managed_labels();
    if let Some(queue) = queue_name(owner) {
        labels.insert(KUEUE_QUEUE_LABEL.to_owned(), queue.to_owned());
    }
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: owner.meta().namespace.clone(),
            labels: Some(labels),
            owner_references: owner.controller_owner_ref(&()).map(|r| vec![r]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// A Dataset with its status, its location as the pod sees it: the trainer opens the
/// normalized copy there instead of importing again.
fn dataset_document(dataset: &Dataset, config: &Config) -> String {
    let mut dataset = dataset.clone();
    if let Some(location) = dataset.status.as_mut().and_then(|s| s.location.as_mut()) {
        *location = location_in_pod(location, config);
    }
    manifest_document(&dataset, true)
}

/// One YAML document of a resource as a user would write it: identity, spec and, for the
/// Datasets an Experiment uses, their status.
fn manifest_document<K>(resource: &K, with_status: bool) -> String
where
    K: Resource<DynamicType = ()> + Serialize,
{
    let mut value = serde_json::to_value(resource).expect("resources serialise");
    let object = value.as_object_mut().expect("a resource is an object");
    let metadata = serde_json::json!({"name": resource.meta().name, "namespace": resource.meta().namespace});
    object.insert("metadata".into(), metadata);
    if !with_status {
        object.remove("status");
    }
    format!("---\n{}", serde_yaml::to_string(&value).expect("JSON values serialise as YAML"))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, PodSpec, Toleration, Volume, VolumeMount};
    use ocellus_crds::dataset::{DatasetSource, S3CredentialsSecretReference, S3Source, VolumeSource};
    use serde_json::{Value, json};

    use super::*;
    use crate::fixtures::{DatasetFixture, ExperimentFixture};

    fn pod_spec(job: &Job) -> &PodSpec {
        job.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    fn container(job: &Job) -> &Container {
        &pod_spec(job).containers[0]
    }

    fn env(job: &Job, name: &str) -> Value {
        let var = container(job).env.as_ref().unwrap().iter().find(|e| e.name == name);
        serde_json::to_value(var.unwrap_or_else(|| panic!("no env {name}"))).unwrap()
    }

    fn mount(job: &Job, path: &str) -> (Volume, VolumeMount) {
        let mount = container(job).volume_mounts.as_ref().unwrap().iter().find(|m| m.mount_path == path);
        let mount = mount.unwrap_or_else(|| panic!("nothing mounted at {path}")).clone();
        let volume = pod_spec(job).volumes.as_ref().unwrap().iter().find(|v| v.name == mount.name).unwrap();
        (volume.clone(), mount)
    }

    fn manifest(job: &Job) -> String {
        let template = job.spec.as_ref().unwrap().template.metadata.as_ref().unwrap();
        template.annotations.as_ref().unwrap()[MANIFEST_ANNOTATION].clone()
    }

    fn gpu_experiment() -> Experiment {
        let mut experiment = Experiment::test();
        experiment.metadata.labels = Some(BTreeMap::from([
            (KUEUE_QUEUE_LABEL.into(), "gpu-queue".into()),
            ("team".into(), "vision".into()),
        ]));
        let resources = &mut experiment.spec.resources;
        resources.gpus = 2;
        resources.cpu = Some(Quantity("4".into()));
        resources.memory = Some(Quantity("16Gi".into()));
        resources.node_selector = BTreeMap::from([("gpu".into(), "a100".into())]);
        resources.tolerations = vec![Toleration {
            key: Some("nvidia.com/gpu".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        }];
        resources.priority_class_name = Some("training".into());
        experiment
    }

    #[test]
    fn trainer_job_is_named_owned_and_labelled_for_kueue() {
        let dataset = Dataset::test().ready_with(&[]);
        let job = trainer_job(&gpu_experiment(), &[&dataset], &Config::test());
        assert_eq!(job.metadata.name.as_deref(), Some("cats-exp-train"));
        assert_eq!(job.metadata.namespace.as_deref(), Some("ml"));
        let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Experiment", "cats-exp", "uid-experiment-cats")
        );
        assert_eq!(owner.controller, Some(true));
        let labels = job.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[KUEUE_QUEUE_LABEL], "gpu-queue");
        assert!(!labels.contains_key("team"), "only the queue label passes through");
        assert_eq!(job.spec.unwrap().suspend, Some(true), "created suspended for Kueue to admit");
        assert_eq!(labels[MANAGED_BY.0], MANAGED_BY.1);
    }

    #[test]
    fn trainer_job_asks_for_the_configured_gpu_resource_and_placement() {
        let mut config = Config::test();
        config.gpu_resource = "amd.com/gpu".into();
        let job = trainer_job(&gpu_experiment(), &[], &config);
        let resources = serde_json::to_value(container(&job).resources.as_ref().unwrap()).unwrap();
        let expected = json!({"amd.com/gpu": "2", "cpu": "4", "memory": "16Gi"});
        assert_eq!(resources, json!({"limits": expected, "requests": expected}));
        let pod = pod_spec(&job);
        assert_eq!(pod.node_selector.as_ref().unwrap()["gpu"], "a100");
        assert_eq!(pod.tolerations.as_ref().unwrap()[0].key.as_deref(), Some("nvidia.com/gpu"));
        assert_eq!(pod.priority_class_name.as_deref(), Some("training"));
        assert_eq!(pod.image_pull_secrets.as_ref().unwrap()[0].name, "regcred");
    }

    #[test]
    fn cpu_experiment_asks_for_no_gpu() {
        let mut experiment = Experiment::test();
        experiment.spec.resources.gpus = 0;
        let job = trainer_job(&experiment, &[], &Config::test());
        assert!(container(&job).resources.is_none());
        assert!(pod_spec(&job).node_selector.is_none());
    }

    #[test]
    fn trainer_job_runs_ocellus_run_on_its_manifest() {
        let dataset = Dataset::test().ready_with(&[("image", ocellus_crds::dataset::ColumnType::Image)]);
        let job = trainer_job(&Experiment::test(), &[&dataset], &Config::test());
        let container = container(&job);
        assert_eq!(container.image.as_deref(), Some("ghcr.io/ocellus/trainer:0.1.0"));
        assert_eq!(container.command.as_ref().unwrap(), &["ocellus"]);
        assert_eq!(
            container.args.as_ref().unwrap(),
            &[
                "run",
                "/etc/ocellus/manifest.yaml",
                "--out",
                "s3://ocellus-artifacts/runs/experiments/ml/cats-exp-uidexper"
            ]
        );
        let (volume, _) = mount(&job, "/etc/ocellus");
        let field = &volume.downward_api.unwrap().items.unwrap()[0];
        assert_eq!(field.path, "manifest.yaml");
        assert_eq!(
            field.field_ref.as_ref().unwrap().field_path,
            "metadata.annotations['ocellus.dev/manifest']"
        );
        let manifests =
            ocellus_crds::parse_manifests(&manifest(&job)).expect("the trainer can read the manifest");
        assert_eq!(
            manifests.iter().map(|m| (m.kind(), m.name())).collect::<Vec<_>>(),
            [("Dataset", "cats"), ("Experiment", "cats-exp")]
        );
        let ocellus_crds::Manifest::Dataset(parsed) = &manifests[0] else { unreachable!() };
        assert_eq!(parsed.status.as_ref().unwrap().location, dataset.status.as_ref().unwrap().location);
    }

    #[test]
    fn failure_policy_fails_bad_input_at_once_and_retries_disruptions() {
        let job = trainer_job(&Experiment::test(), &[], &Config::test());
        let spec = serde_json::to_value(job.spec.as_ref().unwrap()).unwrap();
        assert_eq!(
            spec["podFailurePolicy"],
            json!({"rules": [
                {"action": "FailJob", "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [65]}},
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            ]})
        );
        assert_eq!(spec["backoffLimit"], 3);
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Never", "podFailurePolicy requires Never");
        assert_eq!(spec["suspend"], false);
    }

    #[test]
    fn deadline_follows_the_search_budget() {
        let mut experiment = Experiment::test().with_pipeline(Pipeline::AutoImage);
        experiment.spec.auto_image.time_budget_seconds = 30 * 24 * 3600;
        let job = trainer_job(&experiment, &[], &Config::test());
        assert_eq!(job.spec.unwrap().active_deadline_seconds, Some(30 * 24 * 3600 + DEADLINE_GRACE_SECONDS));
        let job = trainer_job(&Experiment::test().with_pipeline(Pipeline::Embeddings), &[], &Config::test());
        assert_eq!(job.spec.unwrap().active_deadline_seconds, Some(DEFAULT_DEADLINE_SECONDS));
    }

    #[test]
    fn suspend_maps_to_the_job() {
        let job = trainer_job(&Experiment::test().suspended(), &[], &Config::test());
        assert_eq!(job.spec.unwrap().suspend, Some(true));
    }

    #[test]
    fn pod_is_restricted() {
        let job = trainer_job(&Experiment::test(), &[], &Config::test());
        let pod = pod_spec(&job);
        assert_eq!(
            serde_json::to_value(pod.security_context.as_ref().unwrap()).unwrap(),
            json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
                   "fsGroupChangePolicy": "OnRootMismatch", "seccompProfile": {"type": "RuntimeDefault"}})
        );
        assert_eq!(
            serde_json::to_value(container(&job).security_context.as_ref().unwrap()).unwrap(),
            json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true,
                   "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}})
        );
        assert_eq!(pod.service_account_name.as_deref(), Some(TRAINER_SERVICE_ACCOUNT));
        assert_eq!(pod.automount_service_account_token, Some(false));
        let (scratch, scratch_mount) = mount(&job, "/scratch");
        assert!(scratch.empty_dir.is_some());
        assert_eq!(scratch_mount.read_only, Some(false));
        assert_eq!(env(&job, "TMPDIR")["value"], "/scratch");
    }

    #[test]
    fn pod_gets_a_token_for_its_own_experiment_and_the_status_url() {
        let job = trainer_job(&Experiment::test(), &[], &Config::test());
        let (volume, mount) = mount(&job, "/var/run/secrets/ocellus");
        let projection = volume.projected.unwrap().sources.unwrap()[0].service_account_token.clone().unwrap();
        assert_eq!(projection.audience.as_deref(), Some("ocellus.dev/experiments/ml/cats-exp"));
        assert_eq!(projection.path, "token");
        assert_eq!(mount.read_only, Some(true));
        assert_eq!(env(&job, "OCELLUS_STATUS_TOKEN_FILE")["value"], "/var/run/secrets/ocellus/token");
        assert_eq!(
            env(&job, "OCELLUS_STATUS_URL")["value"],
            "http://ocellus-operator.ocellus-system.svc:8081"
        );
    }

    #[test]
    fn with_tls_the_pod_gets_the_status_servers_ca_as_a_file() {
        let mut config = Config::test();
        config.status_tls_secret = Some("ocellus-status-tls".into());
        config.status_ca = Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into());
        let job = trainer_job(&Experiment::test(), &[], &config);
        assert_eq!(
            env(&job, "OCELLUS_STATUS_URL")["value"],
            "https://ocellus-operator.ocellus-system.svc:8081"
        );
        assert_eq!(env(&job, "OCELLUS_STATUS_CA_FILE")["value"], "/etc/ocellus/status-ca.crt");
        let template = job.spec.as_ref().unwrap().template.metadata.as_ref().unwrap();
        assert_eq!(
            template.annotations.as_ref().unwrap()[STATUS_CA_ANNOTATION],
            *config.status_ca.as_ref().unwrap()
        );
        let (volume, _) = mount(&job, "/etc/ocellus");
        let items = volume.downward_api.unwrap().items.unwrap();
        assert_eq!(items[1].path, "status-ca.crt");
        assert_eq!(
            items[1].field_ref.as_ref().unwrap().field_path,
            "metadata.annotations['ocellus.dev/status-ca']"
        );
        // The cleanup pod reports nothing: no CA.
        let mut experiment = Experiment::test();
        experiment.spec.artifacts.deletion_policy = ocellus_crds::experiment::DeletionPolicy::Delete;
        let cleanup = cleanup_job(&experiment, &config);
        let spec = cleanup.spec.as_ref().unwrap();
        assert!(spec.template.metadata.as_ref().unwrap().annotations.is_none());
        let env = spec.template.spec.as_ref().unwrap().containers[0].env.as_ref().unwrap();
        assert!(env.iter().all(|e| !e.name.starts_with("OCELLUS_STATUS")), "{env:?}");
    }

    #[test]
    fn artifact_credentials_come_from_the_secret_and_backbones_from_their_claim() {
        let job = trainer_job(&Experiment::test(), &[], &Config::test());
        assert_eq!(
            env(&job, "AWS_SECRET_ACCESS_KEY"),
            json!({"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef":
                {"name": "ocellus-artifacts", "key": "AWS_SECRET_ACCESS_KEY", "optional": false}}})
        );
        assert_eq!(env(&job, "AWS_ACCESS_KEY_ID")["valueFrom"]["secretKeyRef"]["key"], "AWS_ACCESS_KEY_ID");
        assert_eq!(env(&job, "OCELLUS_S3_ENDPOINT")["value"], "http://minio.storage:9000");
        let (volume, mount) = mount(&job, "/mnt/backbones");
        assert_eq!(volume.persistent_volume_claim.unwrap().claim_name, "backbones");
        assert_eq!(mount.read_only, Some(true));
        assert_eq!(env(&job, "OCELLUS_BACKBONES")["value"], "/mnt/backbones/v1");
    }

    #[test]
    fn pvc_artifact_store_is_mounted_writable() {
        let mut config = Config::test();
        config.artifacts = "pvc://results/ocellus".parse().unwrap();
        config.artifacts_secret = None;
        let job = trainer_job(&Experiment::test(), &[], &config);
        let (volume, mount) = mount(&job, "/mnt/artifacts");
        assert_eq!(volume.persistent_volume_claim.unwrap().claim_name, "results");
        assert_eq!(mount.read_only, Some(false));
        assert_eq!(
            container(&job).args.as_ref().unwrap()[3],
            "/mnt/artifacts/ocellus/experiments/ml/cats-exp-uidexper"
        );
        assert!(container(&job).env.as_ref().unwrap().iter().all(|e| !e.name.starts_with("AWS_ACCESS")));
    }

    #[test]
    fn import_job_imports_one_dataset_into_the_namespace_folder() {
        let job = import_job(&Dataset::test(), None, &Config::test());
        assert_eq!(job.metadata.name.as_deref(), Some("cats-import"));
        assert_eq!(job.metadata.owner_references.as_ref().unwrap()[0].kind, "Dataset");
        assert_eq!(
            container(&job).args.as_ref().unwrap(),
            &[
                "dataset",
                "import",
                "/etc/ocellus/manifest.yaml",
                "--out",
                "s3://ocellus-artifacts/runs/datasets/ml",
                "--name",
                "cats"
            ]
        );
        assert!(container(&job).resources.is_none(), "imports need no GPU");
        let (volume, _) = mount(&job, "/var/run/secrets/ocellus");
        let projection = volume.projected.unwrap().sources.unwrap()[0].service_account_token.clone().unwrap();
        assert_eq!(projection.audience.as_deref(), Some("ocellus.dev/datasets/ml/cats"));
        assert!(job.spec.as_ref().unwrap().pod_failure_policy.is_some());
    }

    #[test]
    fn split_import_carries_its_parent_in_the_manifest() {
        let parent = Dataset::test().ready_with(&[]);
        let job = import_job(&Dataset::split_of("cats"), Some(&parent), &Config::test());
        let names: Vec<_> = ocellus_crds::parse_manifests(&manifest(&job))
            .unwrap()
            .iter()
            .map(|m| m.name().to_owned())
            .collect();
        assert_eq!(names, ["cats", "cats-train"]);
    }

    #[test]
    fn import_from_a_claim_mounts_it_read_only_and_s3_sources_use_their_secret() {
        let mut dataset = Dataset::test();
        dataset.spec.source = DatasetSource {
            volume: Some(VolumeSource { claim_name: "photos".into(), path: "cats".into() }),
            ..Default::default()
        };
        let job = import_job(&dataset, None, &Config::test());
        let (volume, mount) = mount(&job, "/mnt/volumes/photos");
        assert_eq!(volume.persistent_volume_claim.unwrap().claim_name, "photos");
        assert_eq!(mount.read_only, Some(true));
        assert_eq!(env(&job, "OCELLUS_VOLUMES_ROOT")["value"], "/mnt/volumes");

        dataset.spec.source = DatasetSource {
            s3: Some(S3Source {
                uri: "s3://photos/cats.zip".into(),
                region: None,
                endpoint: None,
                force_path_style: None,
                credentials_secret_ref: Some(S3CredentialsSecretReference {
                    name: "photo-keys".into(),
                    access_key_id_key: "id".into(),
                    secret_access_key_key: "secret".into(),
                }),
            }),
            ..Default::default()
        };
        let job = import_job(&dataset, None, &Config::test());
        assert_eq!(
            env(&job, "OCELLUS_SOURCE_AWS_ACCESS_KEY_ID")["valueFrom"]["secretKeyRef"],
            json!({"name": "photo-keys", "key": "id", "optional": false})
        );
        // AWS_* stay the artifact store's: the import writes its copy there with them.
        assert_eq!(env(&job, "AWS_ACCESS_KEY_ID")["valueFrom"]["secretKeyRef"]["name"], "ocellus-artifacts");
        assert_eq!(
            env(&job, "OCELLUS_SOURCE_AUTH")["value"],
            "SecretOnly",
            "never the store's keys for a source"
        );
        let count =
            container(&job).env.as_ref().unwrap().iter().filter(|e| e.name == "AWS_ACCESS_KEY_ID").count();
        assert_eq!(count, 1);
    }

    #[test]
    fn cleanup_job_is_not_owned_and_expires() {
        let job = cleanup_job(&Experiment::test(), &Config::test());
        assert_eq!(job.metadata.name.as_deref(), Some("cats-exp-cleanup"));
        assert!(job.metadata.owner_references.is_none(), "the Experiment is going away");
        assert_eq!(job.spec.as_ref().unwrap().ttl_seconds_after_finished, Some(3600));
        assert_eq!(
            container(&job).args.as_ref().unwrap(),
            &["artifacts", "delete", "s3://ocellus-artifacts/runs/experiments/ml/cats-exp-uidexper"]
        );
        assert!(pod_spec(&job).volumes.as_ref().unwrap().iter().all(|v| v.projected.is_none()));
    }
}
