//! Operator settings, from flags or the environment variables the chart sets.

use std::net::SocketAddr;
use std::time::Duration;

use crate::store::Location;

/// The chart's Service in front of the operator (metrics and status ports).
pub const SERVICE: &str = "ocellus-operator";

/// Everything `ocellus-operator run` is configured with (see docs/operator.md).
#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    /// Trainer image the Jobs run, for example ghcr.io/ocellus/trainer:0.1.0.
    #[arg(long, env = "OCELLUS_TRAINER_IMAGE")]
    pub trainer_image: String,
    /// Image pull secrets of trainer pods, comma-separated.
    #[arg(long, env = "OCELLUS_TRAINER_PULL_SECRETS", value_delimiter = ',', default_value = "")]
    pub trainer_pull_secrets: Vec<String>,
    /// Extended resource name of a GPU.
    #[arg(long, env = "OCELLUS_GPU_RESOURCE", default_value = "nvidia.com/gpu")]
    pub gpu_resource: String,
    /// Artifact store: `s3://bucket/prefix` or `pvc://claim-name/sub/path`.
    #[arg(long, env = "OCELLUS_ARTIFACTS")]
    pub artifacts: Location,
    /// Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for an S3 artifact store.
    #[arg(long, env = "OCELLUS_ARTIFACTS_SECRET")]
    pub artifacts_secret: Option<String>,
    /// Endpoint URL of an S3-compatible artifact store.
    #[arg(long, env = "OCELLUS_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// Backbone directory: `pvc://claim/path` or `s3://bucket/prefix`.
    #[arg(long, env = "OCELLUS_BACKBONES")]
    pub backbones: Option<Location>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "OCELLUS_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Address of the trainer status server.
    #[arg(long, env = "OCELLUS_STATUS_ADDR", default_value = "0.0.0.0:8081")]
    pub status_addr: SocketAddr,
    /// URL trainer pods reach the status server at [default:
    /// https://ocellus-operator.<POD_NAMESPACE>.svc:8081, http:// without --status-tls-secret].
    #[arg(long, env = "OCELLUS_STATUS_URL")]
    pub status_url: Option<String>,
    /// Secret (in POD_NAMESPACE) holding the status server's CA and certificate: the operator
    /// makes it when missing and renews the certificate. Without it the server speaks plain HTTP.
    #[arg(long, env = "OCELLUS_STATUS_TLS_SECRET")]
    pub status_tls_secret: Option<String>,
    /// The status server's CA (PEM), which trainer pods verify it with; set at startup.
    #[arg(skip)]
    pub status_ca: Option<String>,
    /// Seconds without a trainer report before an Experiment gets `ProgressStalled`.
    #[arg(long, env = "OCELLUS_PROGRESS_TIMEOUT_SECONDS", default_value_t = 900)]
    pub progress_timeout_seconds: u64,
    /// Name of the operator pod (events name it as the reporting instance).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Namespace of the operator pod.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub pod_namespace: String,
}

impl Config {
    pub fn status_url(&self) -> String {
        self.status_url.clone().unwrap_or_else(|| {
            let scheme = if self.status_tls_secret.is_some() { "https" } else { "http" };
            format!("{scheme}://{SERVICE}.{}.svc:8081", self.pod_namespace)
        })
    }

    pub fn progress_timeout(&self) -> Duration {
        Duration::from_secs(self.progress_timeout_seconds)
    }

    pub fn pull_secrets(&self) -> impl Iterator<Item = &str> {
        self.trainer_pull_secrets.iter().map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    /// A configuration for tests: S3 artifacts with a Secret, a PVC of backbones.
    #[cfg(test)]
    pub fn test() -> Self {
        Self {
            trainer_image: "ghcr.io/ocellus/trainer:0.1.0".into(),
            trainer_pull_secrets: vec!["regcred".into()],
            gpu_resource: "nvidia.com/gpu".into(),
            artifacts: "s3://ocellus-artifacts/runs".parse().unwrap(),
            artifacts_secret: Some("ocellus-artifacts".into()),
            s3_endpoint: Some("http://minio.storage:9000".into()),
            backbones: Some("pvc://backbones/v1".parse().unwrap()),
            metrics_addr: "127.0.0.1:0".parse().unwrap(),
            status_addr: "127.0.0.1:0".parse().unwrap(),
            status_url: None,
            status_tls_secret: None,
            status_ca: None,
            progress_timeout_seconds: 900,
            pod_name: Some("ocellus-operator-0".into()),
            pod_namespace: "ocellus-system".into(),
        }
    }
}
