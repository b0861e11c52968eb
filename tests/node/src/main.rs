//! `ocellus-node`: a process node for test clusters. It registers a Node, keeps it Ready and
//! runs every pod bound to it as local processes (there is no container runtime here). See
//! the section "The process node" in `docs/testing.md` for what it does and does not do.

mod env;
mod hosts;
mod node;
mod pods;
mod process;
mod status;
mod volumes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Parser;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use tokio::sync::watch;

#[derive(Parser, Debug)]
#[command(about = "A kubelet stand-in that runs each pod's containers as local processes")]
struct Args {
    /// Name of the Node to register.
    #[arg(long, env = "OCELLUS_NODE_NAME", default_value = "process-node")]
    node_name: String,
    /// Kubeconfig to authenticate with (a real kubelet would use a node identity).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Pod folders (volumes, logs) and claim folders live here.
    #[arg(long, env = "OCELLUS_NODE_STATE_DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.tools/node"))]
    state_dir: PathBuf,
    /// `REPOSITORY=EXECUTABLE`: the image (without tag or digest) a local program stands for.
    #[arg(long = "image", env = "OCELLUS_NODE_IMAGES", value_delimiter = ',')]
    images: Vec<String>,
    /// GPUs the node advertises (the work itself runs on CPU).
    #[arg(long, default_value_t = 2)]
    gpus: u32,
    /// Extended resource name of the GPUs.
    #[arg(long, default_value = "nvidia.com/gpu")]
    gpu_resource: String,
    /// CPU capacity advertised.
    #[arg(long, default_value = "16")]
    cpu: String,
    /// Memory capacity advertised.
    #[arg(long, default_value = "64Gi")]
    memory: String,
    /// Pod capacity advertised.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// Variables of the agent's own environment every container inherits (the image's ENV).
    #[arg(long = "pass-env", env = "OCELLUS_NODE_PASS_ENV", value_delimiter = ',',
          default_values_t = ["PATH".to_owned(), "LD_LIBRARY_PATH".to_owned(), "LANG".to_owned()])]
    pass_env: Vec<String>,
}

/// What every part of the agent shares.
pub struct Ctx {
    pub client: Client,
    pub node_name: String,
    pub state_dir: PathBuf,
    /// Image repository → local executable.
    pub images: BTreeMap<String, PathBuf>,
    /// Port of the apiserver, for `KUBERNETES_SERVICE_PORT`.
    pub api_port: u16,
    /// The agent's variables every container inherits.
    pub base_env: Vec<(String, String)>,
    /// Capacity, for `resourceFieldRef` without a limit.
    pub cpu: String,
    pub memory: String,
    /// `/etc/hosts` lines for every Service, kept current by `hosts::run`.
    pub hosts: watch::Receiver<String>,
}

impl Ctx {
    /// The executable standing for `image`, if the table has it.
    pub fn executable(&self, image: &str) -> Option<&Path> {
        self.images.get(repository(image)).map(PathBuf::as_path)
    }
}

/// An image reference without its digest and tag: `ghcr.io/o/trainer:1.2@sha256:..` → `ghcr.io/o/trainer`.
pub fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(colon) if !image[colon..].contains('/') => &image[..colon],
        _ => image,
    }
}

fn image_table(entries: &[String]) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut table = BTreeMap::new();
    for entry in entries.iter().filter(|e| !e.trim().is_empty()) {
        let Some((image, path)) = entry.split_once('=') else {
            bail!("--image {entry:?}: expected REPOSITORY=EXECUTABLE");
        };
        table.insert(repository(image.trim()).to_owned(), PathBuf::from(path.trim()));
    }
    Ok(table)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // kube's TLS uses the process-wide provider, which rustls cannot pick when the workspace
    // build enables two (ring here, aws-lc-rs through the AWS SDK).
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let kubeconfig = Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", args.kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    let api_port = config.cluster_url.port_u16().unwrap_or(443);
    let client = Client::try_from(config)?;
    let base_env =
        args.pass_env.iter().filter_map(|name| Some((name.clone(), std::env::var(name).ok()?))).collect();
    let state_dir = std::path::absolute(&args.state_dir)?;
    std::fs::create_dir_all(state_dir.join("pods"))?;
    let (hosts_tx, hosts) = watch::channel(String::new());
    let ctx = Arc::new(Ctx {
        client,
        node_name: args.node_name.clone(),
        state_dir,
        images: image_table(&args.images)?,
        api_port,
        base_env,
        cpu: args.cpu.clone(),
        memory: args.memory.clone(),
        hosts,
    });
    for (image, path) in &ctx.images {
        tracing::info!("image {image} runs {}", path.display());
    }
    let capacity = node::Capacity {
        cpu: args.cpu,
        memory: args.memory,
        pods: args.max_pods,
        gpus: args.gpus,
        gpu_resource: args.gpu_resource,
    };
    node::register(&ctx, &capacity).await?;
    tracing::info!(
        "node {} registered; pod logs go to {}/pods/<ns>_<name>_<uid>/<container>.log",
        ctx.node_name,
        ctx.state_dir.display()
    );

    let result = tokio::select! {
        r = node::heartbeat(ctx.clone(), capacity) => r,
        r = hosts::run(ctx.client.clone(), hosts_tx) => r,
        r = pods::run(ctx.clone()) => r,
        r = shutdown_signal() => r,
    };
    tracing::info!("stopping: killing every pod process");
    process::kill_all().await;
    result
}

async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_drop_tag_and_digest() {
        assert_eq!(repository("ghcr.io/ocellus/trainer:0.1.0"), "ghcr.io/ocellus/trainer");
        assert_eq!(repository("ghcr.io/ocellus/trainer@sha256:abc"), "ghcr.io/ocellus/trainer");
        assert_eq!(repository("localhost:5000/shell"), "localhost:5000/shell");
        assert_eq!(repository("localhost:5000/shell:v1@sha256:abc"), "localhost:5000/shell");
        let table = image_table(&["ocellus.test/shell:1=/bin/sh".to_owned()]).unwrap();
        assert_eq!(table["ocellus.test/shell"], PathBuf::from("/bin/sh"));
    }
}
