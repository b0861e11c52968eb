//! S3 clients: the artifact store's, and the shared rules both it and a Dataset source's
//! client follow (an explicit endpoint beats the environment, anonymous access when no
//! credentials are configured).

use std::time::Duration;

use aws_config::meta::region::RegionProviderChain;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::provider::error::CredentialsError;

/// Region when neither the caller nor the environment names one.
pub const FALLBACK_REGION: &str = "us-east-1";
/// The artifact store's endpoint (an S3-compatible server); unset means AWS S3.
pub const ENDPOINT_ENV: &str = "OCELLUS_S3_ENDPOINT";
// The SDK's defaults have no read timeout (its stalled-stream protection covers bodies, not
// waiting for an answer), so a store that accepts a connection and never answers would hang;
// the connect timeout is above its 3.1 s for stores behind slow load balancers.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How a client signs its requests.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// The AWS default credential chain (environment, profile, web identity, IMDS…); when it
    /// finds nothing, requests go unsigned, which public buckets accept.
    DefaultChain,
    /// This access key pair.
    Static { access_key_id: String, secret_access_key: String },
    /// Unsigned requests.
    Anonymous,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::DefaultChain => write!(f, "DefaultChain"),
            Self::Static { access_key_id, .. } => write!(f, "Static({access_key_id}, ** redacted **)"),
            Self::Anonymous => write!(f, "Anonymous"),
        }
    }
}

/// Everything a client is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// An S3-compatible server (path-style addressing unless `force_path_style` says
    /// otherwise); `None` is AWS S3, whatever `AWS_ENDPOINT_URL*` says.
    pub endpoint: Option<String>,
    pub force_path_style: Option<bool>,
    /// `None`: `AWS_REGION`/the profile, else [`FALLBACK_REGION`].
    pub region: Option<String>,
    pub auth: Auth,
}

impl ClientConfig {
    /// The artifact store's client as a pod configures it: endpoint from
    /// `OCELLUS_S3_ENDPOINT`, region from `AWS_REGION` (or the profile), the default
    /// credential chain.
    pub fn store_from_env() -> Self {
        Self {
            endpoint: std::env::var(ENDPOINT_ENV).ok().filter(|e| !e.is_empty()),
            force_path_style: None,
            region: None,
            auth: Auth::DefaultChain,
        }
    }
}

/// Builds the client. The endpoint is set on the S3 client itself, so neither
/// `AWS_ENDPOINT_URL` nor `AWS_ENDPOINT_URL_S3` can redirect it (aws-sdk-s3 prefers the
/// service-specific variable over an endpoint given to the shared config loader).
pub async fn build_client(config: &ClientConfig) -> aws_sdk_s3::Client {
    let shared = match &config.auth {
        Auth::Static { access_key_id, secret_access_key } => {
            // Given credentials replace the default chain entirely, so nothing probes IMDS.
            loader(config)
                .credentials_provider(Credentials::new(
                    access_key_id,
                    secret_access_key,
                    None,
                    None,
                    "ocellus",
                ))
                .load()
                .await
        }
        Auth::Anonymous => loader(config).no_credentials().load().await,
        Auth::DefaultChain => {
            let shared = loader(config).load().await;
            if has_credentials(&shared).await { shared } else { loader(config).no_credentials().load().await }
        }
    };
    let path_style = config.force_path_style.unwrap_or(config.endpoint.is_some());
    // Checksums only where S3 requires them: unsigned (anonymous) uploads would otherwise carry
    // them in an aws-chunked trailer, which S3-compatible servers such as s3s-fs refuse (BadDigest).
    let mut builder = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(path_style)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired);
    builder.set_endpoint_url(config.endpoint.clone());
    aws_sdk_s3::Client::from_conf(builder.build())
}

fn loader(config: &ClientConfig) -> ConfigLoader {
    let region = RegionProviderChain::first_try(config.region.clone().map(Region::new))
        .or_default_provider()
        .or_else(Region::from_static(FALLBACK_REGION));
    let timeouts =
        TimeoutConfig::builder().connect_timeout(CONNECT_TIMEOUT).read_timeout(READ_TIMEOUT).build();
    aws_config::defaults(BehaviorVersion::latest()).region(region).timeout_config(timeouts)
}

/// Whether the default chain finds credentials. "Not loaded" (nothing configured) means
/// anonymous; any other failure (an STS error, say) keeps the chain, so the request reports it.
async fn has_credentials(shared: &SdkConfig) -> bool {
    let Some(provider) = shared.credentials_provider() else { return false };
    !matches!(provider.provide_credentials().await, Err(CredentialsError::CredentialsNotLoaded(_)))
}
