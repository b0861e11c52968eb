//! A pod's volumes as folders under its pod folder: emptyDir, secret, configMap, downwardAPI,
//! projected (with ServiceAccount tokens from TokenRequest, refreshed at 80% of their
//! lifetime), persistentVolumeClaim (a folder per claim, shared) and hostPath.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Pod, ServiceAccount, Volume};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::task::JoinHandle;

use crate::Ctx;
use crate::env::{config_map, field_value, resource_value, secret};

/// The materialized volumes of one pod; dropping it stops the token refreshes.
pub struct PodVolumes {
    pub paths: HashMap<String, PathBuf>,
    refreshes: Vec<JoinHandle<()>>,
}

impl Drop for PodVolumes {
    fn drop(&mut self) {
        self.refreshes.iter().for_each(JoinHandle::abort);
    }
}

/// A token file to keep fresh.
#[derive(Clone)]
struct TokenFile {
    dir: PathBuf,
    path: String,
    mode: u32,
    audience: Option<String>,
    expiration_seconds: i64,
}

/// Materializes every volume of `pod` under `pod_dir/volumes`. An error says what is missing
/// (the kubelet's `FailedMount`); the caller retries.
pub async fn prepare(ctx: &Arc<Ctx>, pod: &Pod, pod_dir: &Path) -> Result<PodVolumes, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut out = PodVolumes { paths: HashMap::new(), refreshes: vec![] };
    let mut tokens = vec![];
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let dir = pod_dir.join("volumes").join(&volume.name);
        let path = materialize(ctx, pod, namespace, volume, &dir, &mut tokens).await?;
        out.paths.insert(volume.name.clone(), path);
    }
    for token in tokens {
        let expires = write_token(ctx, pod, &token).await?;
        let (ctx, pod) = (ctx.clone(), pod.clone());
        out.refreshes.push(tokio::spawn(async move {
            let mut expires = expires;
            loop {
                let lifetime = (expires - Timestamp::now()).get_seconds().max(10) as f64;
                tokio::time::sleep(Duration::from_secs_f64(lifetime * 0.8)).await;
                match write_token(&ctx, &pod, &token).await {
                    Ok(next) => expires = next,
                    Err(error) => {
                        tracing::warn!("refreshing a token: {error}");
                        expires = Timestamp::now() + Duration::from_secs(12);
                    }
                }
            }
        }));
    }
    Ok(out)
}

async fn materialize(
    ctx: &Ctx,
    pod: &Pod,
    namespace: &str,
    volume: &Volume,
    dir: &Path,
    tokens: &mut Vec<TokenFile>,
) -> Result<PathBuf, String> {
    let io = |e: std::io::Error| format!("volume {:?}: {e}", volume.name);
    if let Some(claim) = &volume.persistent_volume_claim {
        let path = ctx.state_dir.join("volumes").join(namespace).join(&claim.claim_name);
        std::fs::create_dir_all(&path).map_err(io)?;
        return Ok(path);
    }
    if let Some(host) = &volume.host_path {
        let path = PathBuf::from(&host.path);
        match host.type_.as_deref() {
            Some("DirectoryOrCreate") => std::fs::create_dir_all(&path).map_err(io)?,
            Some("FileOrCreate") if !path.exists() => std::fs::write(&path, b"").map_err(io)?,
            _ => {}
        }
        return Ok(path);
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    if volume.empty_dir.is_some() {
        return Ok(dir.to_owned());
    }
    if let Some(source) = &volume.secret {
        let name = source.secret_name.as_deref().unwrap_or_default();
        let data = secret_data(ctx, namespace, name, source.optional).await?;
        write_keys(dir, &data, source.items.as_ref(), mode(source.default_mode), source.optional, name)?;
    } else if let Some(source) = &volume.config_map {
        let data = config_map_data(ctx, namespace, &source.name, source.optional).await?;
        write_keys(
            dir,
            &data,
            source.items.as_ref(),
            mode(source.default_mode),
            source.optional,
            &source.name,
        )?;
    } else if let Some(source) = &volume.downward_api {
        write_downward(ctx, pod, dir, source.items.iter().flatten(), mode(source.default_mode))?;
    } else if let Some(projected) = &volume.projected {
        let default_mode = mode(projected.default_mode);
        for source in projected.sources.iter().flatten() {
            if let Some(s) = &source.secret {
                let data = secret_data(ctx, namespace, &s.name, s.optional).await?;
                write_keys(dir, &data, s.items.as_ref(), default_mode, s.optional, &s.name)?;
            }
            if let Some(c) = &source.config_map {
                let data = config_map_data(ctx, namespace, &c.name, c.optional).await?;
                write_keys(dir, &data, c.items.as_ref(), default_mode, c.optional, &c.name)?;
            }
            if let Some(d) = &source.downward_api {
                write_downward(ctx, pod, dir, d.items.iter().flatten(), default_mode)?;
            }
            if let Some(t) = &source.service_account_token {
                tokens.push(TokenFile {
                    dir: dir.to_owned(),
                    path: t.path.clone(),
                    mode: default_mode,
                    audience: t.audience.clone().filter(|a| !a.is_empty()),
                    expiration_seconds: t.expiration_seconds.unwrap_or(3600),
                });
            }
        }
    } else {
        return Err(format!("volume {:?}: this node supports no such volume type", volume.name));
    }
    Ok(dir.to_owned())
}

fn mode(mode: Option<i32>) -> u32 {
    mode.map_or(0o644, |m| m as u32)
}

async fn secret_data(
    ctx: &Ctx,
    namespace: &str,
    name: &str,
    optional: Option<bool>,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    match secret(ctx, namespace, name).await? {
        Some(s) => Ok(s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect()),
        None if optional == Some(true) => Ok(BTreeMap::new()),
        None => Err(format!("secret \"{name}\" not found")),
    }
}

async fn config_map_data(
    ctx: &Ctx,
    namespace: &str,
    name: &str,
    optional: Option<bool>,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    match config_map(ctx, namespace, name).await? {
        Some(c) => {
            let mut data: BTreeMap<_, _> =
                c.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
            data.extend(c.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)));
            Ok(data)
        }
        None if optional == Some(true) => Ok(BTreeMap::new()),
        None => Err(format!("configmap \"{name}\" not found")),
    }
}

/// Writes the keys of a Secret or ConfigMap: all of them, or the listed `items`.
fn write_keys(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    optional: Option<bool>,
    source: &str,
) -> Result<(), String> {
    match items {
        None => data.iter().try_for_each(|(key, value)| write_file(dir, key, value, default_mode)),
        Some(items) => items.iter().try_for_each(|item| match data.get(&item.key) {
            Some(value) => write_file(dir, &item.path, value, item.mode.map_or(default_mode, |m| m as u32)),
            None if optional == Some(true) => Ok(()),
            None => Err(format!("key {:?} not found in {source:?}", item.key)),
        }),
    }
}

fn write_downward<'a>(
    ctx: &Ctx,
    pod: &Pod,
    dir: &Path,
    items: impl Iterator<Item = &'a DownwardAPIVolumeFile>,
    default_mode: u32,
) -> Result<(), String> {
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            field_value(pod, &field.field_path)?
        } else if let Some(resource) = &item.resource_field_ref {
            resource_value(ctx, pod, None, resource)?
        } else {
            String::new()
        };
        write_file(dir, &item.path, value.as_bytes(), item.mode.map_or(default_mode, |m| m as u32))?;
    }
    Ok(())
}

/// Requests a token bound to `pod` and writes it; returns when it expires.
async fn write_token(ctx: &Ctx, pod: &Pod, token: &TokenFile) -> Result<Timestamp, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let account = pod.spec.as_ref().and_then(|s| s.service_account_name.as_deref()).unwrap_or("default");
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: token.audience.iter().cloned().collect(),
            expiration_seconds: Some(token.expiration_seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
        },
        ..Default::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), namespace);
    let response = api
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .map_err(|e| format!("requesting a token for {namespace}/{account}: {e}"))?;
    let status = response.status.ok_or("the token request returned no token")?;
    write_file(&token.dir, &token.path, status.token.as_bytes(), token.mode)?;
    Ok(status.expiration_timestamp.0)
}

/// Writes `relative` under `dir` atomically (write, then rename), so a reader never sees half
/// a file and a refreshed token appears through a bind mount of the folder.
fn write_file(dir: &Path, relative: &str, contents: &[u8], mode: u32) -> Result<(), String> {
    if relative.split('/').any(|part| part == "..") || relative.starts_with('/') {
        return Err(format!("invalid path {relative:?}"));
    }
    let path = dir.join(relative);
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(path.parent().unwrap_or(dir))?;
        let tmp =
            path.with_file_name(format!(".{}.tmp", path.file_name().unwrap_or_default().to_string_lossy()));
        std::fs::write(&tmp, contents)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode & 0o777))?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|e| format!("writing {}: {e}", path.display()))
}
