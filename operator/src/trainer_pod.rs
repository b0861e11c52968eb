//! The pod every operator Job runs: restricted (non-root, no privilege escalation, read-only
//! root filesystem, seccomp RuntimeDefault), the manifest as a downward API file, a projected
//! token for the status server, scratch space, the artifact store and backbones mounted, and the
//! failure policy that fails bad input at once. `jobs.rs` says what each Job does with it.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{
    JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, DownwardAPIVolumeFile, DownwardAPIVolumeSource, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, LocalObjectReference, ObjectFieldSelector, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, ProjectedVolumeSource, SeccompProfile, SecretKeySelector,
    SecurityContext, ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::config::Config;
use crate::jobs::{
    BACKOFF_LIMIT, CONTAINER, EXIT_BAD_INPUT, MANIFEST_ANNOTATION, STATUS_CA_ANNOTATION,
    TRAINER_SERVICE_ACCOUNT, managed_labels,
};

/// UID and GID trainer pods run as (the distroless `nonroot` user).
const RUN_AS: i64 = 65532;
const TOKEN_DIR: &str = "/var/run/secrets/ocellus";
/// Where the manifest (and the status server's CA) are mounted.
pub(crate) const MANIFEST_DIR: &str = "/etc/ocellus";
const SCRATCH_DIR: &str = "/scratch";
/// Where a PVC artifact store is mounted.
pub(crate) const ARTIFACTS_DIR: &str = "/mnt/artifacts";
const BACKBONES_DIR: &str = "/mnt/backbones";
/// Lifetime of the projected token; the kubelet refreshes it long before.
const TOKEN_SECONDS: i64 = 3600;
const STATUS_CA_FILE: &str = "status-ca.crt";

/// The pod every Job runs, built up before it is wrapped in a Job.
pub(crate) struct TrainerPod {
    pub(crate) template: ObjectMeta,
    pub(crate) spec: PodSpec,
    pub(crate) container: Container,
}

impl TrainerPod {
    pub(crate) fn new(config: &Config, args: Vec<String>, manifest: &str, audience: String) -> Self {
        let container = Container {
            name: CONTAINER.to_owned(),
            image: Some(config.trainer_image.clone()),
            command: Some(vec!["ocellus".to_owned()]),
            args: Some(args),
            env: Some(vec![]),
            volume_mounts: Some(vec![]),
            termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
            security_context: Some(SecurityContext {
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                run_as_non_root: Some(true),
                capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_owned()]), add: None }),
                seccomp_profile: Some(runtime_default()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pull_secrets: Vec<_> =
            config.pull_secrets().map(|name| LocalObjectReference { name: name.to_owned() }).collect();
        let spec = PodSpec {
            restart_policy: Some("Never".to_owned()),
            service_account_name: Some(TRAINER_SERVICE_ACCOUNT.to_owned()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            image_pull_secrets: (!pull_secrets.is_empty()).then_some(pull_secrets),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(RUN_AS),
                run_as_group: Some(RUN_AS),
                fs_group: Some(RUN_AS),
                // Without it the kubelet re-owns every file of the shared artifacts PVC at each
                // pod start (minutes on a volume with many runs); the root's owner tells.
                fs_group_change_policy: Some("OnRootMismatch".to_owned()),
                seccomp_profile: Some(runtime_default()),
                ..Default::default()
            }),
            volumes: Some(vec![]),
            ..Default::default()
        };
        let template = ObjectMeta {
            labels: Some(managed_labels()),
            annotations: Some(BTreeMap::from([(MANIFEST_ANNOTATION.to_owned(), manifest.to_owned())])),
            ..Default::default()
        };
        let mut pod = Self { template, spec, container };
        pod.volume(
            Volume {
                name: "scratch".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            },
            SCRATCH_DIR,
            false,
        );
        pod.env("TMPDIR", SCRATCH_DIR);
        pod.env("HOME", SCRATCH_DIR);
        pod.volume(
            Volume {
                name: "manifest".into(),
                downward_api: Some(DownwardAPIVolumeSource {
                    items: Some(vec![DownwardAPIVolumeFile {
                        path: "manifest.yaml".into(),
                        field_ref: Some(ObjectFieldSelector {
                            field_path: format!("metadata.annotations['{MANIFEST_ANNOTATION}']"),
                            api_version: None,
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
            MANIFEST_DIR,
            true,
        );
        pod.volume(
            Volume {
                name: "status-token".into(),
                projected: Some(ProjectedVolumeSource {
                    sources: Some(vec![VolumeProjection {
                        service_account_token: Some(ServiceAccountTokenProjection {
                            audience: Some(audience),
                            expiration_seconds: Some(TOKEN_SECONDS),
                            path: "token".into(),
                        }),
                        ..Default::default()
                    }]),
                    default_mode: None,
                }),
                ..Default::default()
            },
            TOKEN_DIR,
            true,
        );
        pod.env("OCELLUS_STATUS_URL", &config.status_url());
        pod.env("OCELLUS_STATUS_TOKEN_FILE", &format!("{TOKEN_DIR}/token"));
        if let Some(ca) = &config.status_ca {
            pod.status_ca(ca);
        }
        if let Some(claim) = config.artifacts.claim() {
            pod.mount_claim(claim, ARTIFACTS_DIR, false);
        }
        if let Some(secret) = &config.artifacts_secret {
            for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
                pod.secret_env(key, secret, key);
            }
        }
        if let Some(endpoint) = &config.s3_endpoint {
            // Only OCELLUS_S3_ENDPOINT: AWS_ENDPOINT_URL_S3 would also send a Dataset's own S3
            // source to the store.
            pod.env("OCELLUS_S3_ENDPOINT", endpoint);
        }
        if let Some(backbones) = &config.backbones {
            if let Some(claim) = backbones.claim() {
                pod.mount_claim(claim, BACKBONES_DIR, true);
            }
            pod.env("OCELLUS_BACKBONES", &backbones.in_pod(BACKBONES_DIR));
        }
        pod
    }

    pub(crate) fn env(&mut self, name: &str, value: &str) {
        let env = self.container.env.get_or_insert_default();
        env.retain(|e| e.name != name);
        env.push(EnvVar { name: name.to_owned(), value: Some(value.to_owned()), value_from: None });
    }

    pub(crate) fn secret_env(&mut self, name: &str, secret: &str, key: &str) {
        let env = self.container.env.get_or_insert_default();
        env.retain(|e| e.name != name);
        env.push(EnvVar {
            name: name.to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.to_owned(),
                    key: key.to_owned(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
        });
    }

    fn volume(&mut self, volume: Volume, mount_path: &str, read_only: bool) {
        self.container.volume_mounts.get_or_insert_default().push(VolumeMount {
            name: volume.name.clone(),
            mount_path: mount_path.to_owned(),
            read_only: Some(read_only),
            ..Default::default()
        });
        self.spec.volumes.get_or_insert_default().push(volume);
    }

    pub(crate) fn mount_claim(&mut self, claim: &str, mount_path: &str, read_only: bool) {
        let index = self.spec.volumes.as_ref().map_or(0, Vec::len);
        let volume = Volume {
            name: format!("claim-{index}"),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.to_owned(),
                read_only: Some(read_only),
            }),
            ..Default::default()
        };
        self.volume(volume, mount_path, read_only);
    }

    /// The status server's CA as a file beside the manifest (an annotation, like the manifest:
    /// no object in the pod's namespace to create or keep in step).
    fn status_ca(&mut self, ca: &str) {
        self.template
            .annotations
            .get_or_insert_default()
            .insert(STATUS_CA_ANNOTATION.to_owned(), ca.to_owned());
        let manifest = self.spec.volumes.get_or_insert_default().iter_mut().find(|v| v.name == "manifest");
        let items = manifest.and_then(|v| v.downward_api.as_mut()).and_then(|d| d.items.as_mut());
        items.expect("the manifest volume comes first").push(DownwardAPIVolumeFile {
            path: STATUS_CA_FILE.into(),
            field_ref: Some(ObjectFieldSelector {
                field_path: format!("metadata.annotations['{STATUS_CA_ANNOTATION}']"),
                api_version: None,
            }),
            ..Default::default()
        });
        self.env("OCELLUS_STATUS_CA_FILE", &format!("{MANIFEST_DIR}/{STATUS_CA_FILE}"));
    }

    pub(crate) fn into_job_spec(mut self, deadline_seconds: i64, suspend: bool) -> JobSpec {
        self.spec.containers = vec![self.container];
        JobSpec {
            backoff_limit: Some(BACKOFF_LIMIT),
            active_deadline_seconds: Some(deadline_seconds),
            suspend: Some(suspend),
            pod_failure_policy: Some(pod_failure_policy()),
            template: PodTemplateSpec { metadata: Some(self.template), spec: Some(self.spec) },
            ..Default::default()
        }
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile { type_: "RuntimeDefault".to_owned(), localhost_profile: None }
}

/// Bad input fails the Job at once; disruptions (eviction, preemption, node drain) are
/// retried without counting against `backoffLimit`.
fn pod_failure_policy() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![
            PodFailurePolicyRule {
                action: "FailJob".to_owned(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some(CONTAINER.to_owned()),
                    operator: "In".to_owned(),
                    values: vec![EXIT_BAD_INPUT],
                }),
                on_pod_conditions: None,
            },
            PodFailurePolicyRule {
                action: "Ignore".to_owned(),
                on_exit_codes: None,
                on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: "DisruptionTarget".to_owned(),
                    status: "True".to_owned(),
                }]),
            },
        ],
    }
}
