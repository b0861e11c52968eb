//! The fallback when a trainer's final report never arrived: the run's `result.json` in the
//! artifact store holds the same status (`ocellus_crds::contract::report`). The operator reads it
//! from an S3 store with its own keys (the chart gives it the store's Secret); a PVC store is
//! mounted only in trainer pods, so there the final report is the only way back.

use aws_sdk_s3::primitives::ByteStream;
use ocellus_crds::ExperimentStatus;
use ocellus_crds::contract::location::S3Prefix;
use ocellus_crds::contract::run_folder::RESULT_FILE;
use ocellus_dataset::store::client::{ClientConfig, build_client};

/// The status in `<location>/result.json`, or why it could not be read. `Ok(None)`: the store
/// is not S3, or the run wrote no result.
pub async fn read_result(location: &str) -> Result<Option<ExperimentStatus>, String> {
    if !location.starts_with("s3://") {
        return Ok(None);
    }
    let prefix = S3Prefix::parse(location)?;
    let client = build_client(&ClientConfig::store_from_env()).await;
    let key = prefix.key(RESULT_FILE);
    let object = match client.get_object().bucket(&prefix.bucket).key(&key).send().await {
        Ok(object) => object,
        Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
        Err(error) => {
            return Err(format!(
                "cannot read s3://{}/{key}: {}",
                prefix.bucket,
                aws_sdk_s3::error::DisplayErrorContext(&error)
            ));
        }
    };
    let bytes = collect(object.body).await?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| format!("s3://{}/{key} is not a run's result: {e}", prefix.bucket))
}

async fn collect(body: ByteStream) -> Result<Vec<u8>, String> {
    body.collect().await.map(|b| b.into_bytes().to_vec()).map_err(|e| format!("reading result.json: {e}"))
}
