//! Objects in S3 or an S3-compatible store (MinIO, Ceph, s3s…), read with aws-sdk-s3.

use std::path::Path;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::error::{ConnectorError, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use ocellus_crds::dataset::S3Source;

use tempfile::NamedTempFile;

use super::{PartialFile, innermost_cause, parent_dir, persist};
use crate::store::client::{Auth, ClientConfig, build_client};
use crate::{Error, Result};

/// The environment variables an import pod gets a Dataset's own `credentialsSecretRef` keys in.
/// They are not `AWS_*`, which hold the artifact store's keys in the same pod.
pub const SOURCE_ACCESS_KEY_ENV: &str = "OCELLUS_SOURCE_AWS_ACCESS_KEY_ID";
pub const SOURCE_SECRET_KEY_ENV: &str = "OCELLUS_SOURCE_AWS_SECRET_ACCESS_KEY";

/// Set to [`SOURCE_AUTH_SECRET_ONLY`] in import pods: a source is read with its own Secret's keys
/// or anonymously, never with the default credential chain (which holds the store's keys there).
pub const SOURCE_AUTH_ENV: &str = "OCELLUS_SOURCE_AUTH";
pub const SOURCE_AUTH_SECRET_ONLY: &str = "SecretOnly";

/// An access key pair, instead of the AWS default credential chain.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl S3Credentials {
    /// The source's keys from [`SOURCE_ACCESS_KEY_ENV`] and [`SOURCE_SECRET_KEY_ENV`], when both are set.
    pub fn source_from_env() -> Option<Self> {
        let get = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
        Some(Self {
            access_key_id: get(SOURCE_ACCESS_KEY_ENV)?,
            secret_access_key: get(SOURCE_SECRET_KEY_ENV)?,
        })
    }
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .finish()
    }
}

/// Bucket and key of an `s3://bucket/key` URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub key: String,
}

impl S3Location {
    pub fn parse(uri: &str) -> Result<Self> {
        let invalid = || {
            Error::bad_input(format!(
                "spec.source.s3.uri {uri:?} is not of the form s3://bucket/key (or s3://bucket/prefix/); \
                 fix the URI"
            ))
        };
        let (bucket, key) =
            uri.strip_prefix("s3://").and_then(|rest| rest.split_once('/')).ok_or_else(invalid)?;
        if bucket.is_empty() || key.is_empty() || key.ends_with('/') {
            return Err(invalid());
        }
        Ok(Self { bucket: bucket.to_owned(), key: key.to_owned() })
    }

    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// Downloads the object `source.uri` to `dest` (temporary file in the same directory, then
/// renamed) and returns its size. Without `credentials` the AWS default credential chain
/// applies (environment, profile, web identity, IMDS…). With `source.endpoint` set,
/// path-style addressing is on unless `forcePathStyle` says otherwise.
pub async fn download_object(
    source: &S3Source,
    credentials: Option<&S3Credentials>,
    dest: &Path,
) -> Result<u64> {
    let location = S3Location::parse(&source.uri)?;
    let client = client_for(source, credentials).await;
    let (file, bytes) = get_object(&client, source, &location, parent_dir(dest)).await?;
    persist(file, dest)?;
    Ok(bytes)
}

/// The object at `location` in a temporary file in `dir`, flushed to disk; errors name it as
/// `s3://bucket/key`.
pub(crate) async fn get_object(
    client: &aws_sdk_s3::Client,
    source: &S3Source,
    location: &S3Location,
    dir: &Path,
) -> Result<(NamedTempFile, u64)> {
    let uri = location.uri();
    let output = client
        .get_object()
        .bucket(&location.bucket)
        .key(&location.key)
        .send()
        .await
        .map_err(|e| get_object_error(source, &uri, e))?;
    let mut body = output.body;
    let mut partial = PartialFile::create_in(dir)?;
    while let Some(chunk) = body.try_next().await.map_err(|e| {
        Error::unreachable(format!("reading {uri} broke off: {}; retry later", innermost_cause(&e)))
    })? {
        partial.write(&chunk).await?;
    }
    partial.finish().await
}

/// The source's client: only the endpoint in the Dataset spec (never `AWS_ENDPOINT_URL*`, which
/// may point at the artifact store), and unsigned requests when no credentials are configured,
/// so public buckets work.
pub(crate) async fn client_for(source: &S3Source, credentials: Option<&S3Credentials>) -> aws_sdk_s3::Client {
    let auth = match credentials {
        Some(c) => Auth::Static {
            access_key_id: c.access_key_id.clone(),
            secret_access_key: c.secret_access_key.clone(),
        },
        // In an import pod the default chain holds the artifact store's keys: never send them
        // to a Dataset's endpoint. A source without its own Secret is read anonymously there.
        None if std::env::var(SOURCE_AUTH_ENV).as_deref() == Ok(SOURCE_AUTH_SECRET_ONLY) => Auth::Anonymous,
        None => Auth::DefaultChain,
    };
    build_client(&ClientConfig {
        endpoint: source.endpoint.clone(),
        force_path_style: source.force_path_style,
        region: source.region.clone(),
        auth,
    })
    .await
}

fn get_object_error(source: &S3Source, uri: &str, error: SdkError<GetObjectError>) -> Error {
    match &error {
        SdkError::ServiceError(context) => {
            service_error(uri, context.err().code(), context.raw().status().as_u16())
        }
        SdkError::TimeoutError(_) => Error::unreachable(format!(
            "reading {uri} from {} timed out; check the network, or retry later",
            store_name(source)
        )),
        SdkError::DispatchFailure(failure) => match failure.as_connector_error() {
            Some(connector) => connector_error(source, uri, connector),
            None => Error::unreachable(format!("cannot reach {} for {uri}; retry later", store_name(source))),
        },
        SdkError::ConstructionFailure(_) => Error::bad_input(format!(
            "cannot build a request for {uri}: {}; check spec.source.s3",
            innermost_cause(&error)
        )),
        _ => Error::unreachable(format!("reading {uri} failed: {}; retry later", innermost_cause(&error))),
    }
}

pub(crate) fn service_error(uri: &str, code: Option<&str>, status: u16) -> Error {
    match (code, status) {
        (Some("NoSuchKey" | "NoSuchBucket"), _) | (None, 404) => Error::bad_input(format!(
            "{uri} does not exist; check spec.source.s3.uri (to import every object under a \
                 prefix, end it with `/`)"
        )),
        (Some(code @ ("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch")), _) => {
            Error::bad_input(format!(
                "credentials were rejected for {uri} ({code}); check the Secret named in credentialsSecretRef \
                 or the AWS_* environment, and that it may read the object"
            ))
        }
        (None, 401 | 403) => Error::bad_input(format!(
            "credentials were rejected for {uri} (HTTP {status}); check the Secret named in \
             credentialsSecretRef or the AWS_* environment, and that it may read the object"
        )),
        (code, 429 | 500..) => Error::unreachable(format!(
            "the store answered {} for {uri}; retry later",
            code.map_or_else(|| format!("HTTP {status}"), str::to_owned)
        )),
        (code, _) => Error::bad_input(format!(
            "reading {uri} failed with {} (HTTP {status}); check spec.source.s3",
            code.unwrap_or("an unknown error")
        )),
    }
}

pub(crate) fn connector_error(source: &S3Source, uri: &str, error: &ConnectorError) -> Error {
    let store = store_name(source);
    if let Some(credentials) = credentials_error(error) {
        return match credentials {
            CredentialsError::CredentialsNotLoaded(_) => Error::bad_input(format!(
                "no AWS credentials were found for {uri}; set credentialsSecretRef, the AWS_* environment \
                 or a service account role"
            )),
            _ => Error::unreachable(format!(
                "cannot load AWS credentials for {uri}: {}; retry later",
                innermost_cause(credentials)
            )),
        };
    }
    if error.is_timeout() {
        return Error::unreachable(format!("connecting to {store} for {uri} timed out; retry later"));
    }
    Error::unreachable(format!(
        "cannot connect to {store} for {uri}: {}; check spec.source.s3.endpoint and the network, or retry later",
        innermost_cause(error)
    ))
}

/// Credential-chain failures surface as dispatch failures, wrapped by the SDK.
fn credentials_error(error: &ConnectorError) -> Option<&CredentialsError> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(credentials) = current.downcast_ref::<CredentialsError>() {
            return Some(credentials);
        }
        cause = current.source();
    }
    None
}

/// The endpoint for messages, without user info or query; AWS S3 when none is set.
pub(crate) fn store_name(source: &S3Source) -> String {
    source.endpoint.as_deref().map_or_else(|| "S3".to_owned(), super::http::redact)
}
