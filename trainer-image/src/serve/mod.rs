//! `ocellus serve --bundle DIR`: a scoring bundle behind an HTTP server that speaks the KServe
//! Open Inference Protocol (v2 REST), with dynamic batching, Prometheus metrics at `/metrics`
//! and a graceful shutdown on SIGTERM or Ctrl-C (requests already received are answered).

pub mod batcher;
pub mod metrics;
pub mod protocol;
pub mod routes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::Notify;

use crate::bundle::ScoringBundle;
use crate::image_cells::ImageCells;
use crate::{Error, Result, device};
use batcher::{BatchPolicy, Batcher};
use metrics::Metrics;
use protocol::Model;
use routes::AppState;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The scoring/ folder an `ocellus run` wrote (a folder, or `s3://…/scoring`).
    #[arg(long, env = "OCELLUS_BUNDLE")]
    pub bundle: PathBuf,
    /// The model's name in the URLs (`/v2/models/NAME/infer`) [default: the experiment's name].
    #[arg(long, env = "OCELLUS_MODEL_NAME")]
    pub model_name: Option<String>,
    /// Address to listen on (port 0: any free port; the one chosen is printed).
    #[arg(long, env = "OCELLUS_SERVE_ADDRESS", default_value = "0.0.0.0:8080")]
    pub address: SocketAddr,
    /// Most rows scored in one pass; concurrent requests are batched up to this.
    #[arg(long, default_value_t = 32)]
    pub max_batch_size: usize,
    /// Longest a request waits for others to join its batch, in milliseconds (0: no waiting).
    #[arg(long, default_value_t = 5)]
    pub max_latency_ms: u64,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub max_request_bytes: usize,
    /// Compute on the CPU even when a GPU is available.
    #[arg(long)]
    pub cpu: bool,
    /// Images given as URLs are downloaded into this folder [default: a temporary folder
    /// removed at shutdown].
    #[arg(long, env = "OCELLUS_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
}

pub fn serve(args: ServeArgs) -> Result<()> {
    if args.max_batch_size == 0 {
        return Err(Error::bad_input("--max-batch-size must be at least 1"));
    }
    let scratch =
        tempfile::Builder::new().prefix("ocellus-serve-").tempdir().map_err(Error::io("temporary folder"))?;
    let cache_dir = args.cache_dir.clone().unwrap_or_else(|| scratch.path().to_owned());
    let metrics = Arc::new(Metrics::default());
    let model = Arc::new(OnceLock::new());
    let (jobs, queue) = mpsc::channel();
    let failed = Arc::new(Notify::new());
    let failure: Arc<Mutex<Option<Error>>> = Arc::default();
    let policy =
        BatchPolicy { max_rows: args.max_batch_size, max_wait: Duration::from_millis(args.max_latency_ms) };

    // The bundle is loaded (downloaded, when in S3) by the thread that scores with it, while
    // the server already answers liveness probes; readiness waits for it.
    let scorer = {
        let (metrics, model, failed, failure) =
            (metrics.clone(), model.clone(), failed.clone(), failure.clone());
        let (bundle, name, cpu) = (args.bundle.clone(), args.model_name.clone(), args.cpu);
        std::thread::Builder::new()
            .name("ocellus-scorer".into())
            .spawn(move || {
                let loaded = ocellus_dataset::store::trainer::bundle_dir(&bundle)
                    .map_err(Error::from)
                    .and_then(|dir| {
                        ScoringBundle::load(&dir, if cpu { tch::Device::Cpu } else { device::best_device() })
                    });
                let bundle = match loaded {
                    Ok(bundle) => bundle,
                    Err(error) => {
                        *failure.lock().expect("not poisoned") = Some(error);
                        failed.notify_one();
                        return;
                    }
                };
                let name = name.unwrap_or_else(|| bundle.manifest.experiment.clone());
                let _ = model.set(Model {
                    name: name.clone(),
                    columns: bundle.manifest.columns.clone(),
                    target: bundle.target.clone(),
                });
                println!("model {name:?} ready");
                let cells = ImageCells::for_requests(cache_dir);
                Batcher { bundle: &bundle, cells: &cells, policy, metrics: &metrics }.run(&queue);
            })
            .map_err(|e| Error::Internal(format!("cannot start the scoring thread: {e}")))?
    };

    let state = AppState { model, jobs, metrics };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the HTTP runtime: {e}")))?;
    let served = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.address)
            .await
            .map_err(|e| Error::bad_input(format!("cannot listen on {}: {e}", args.address)))?;
        let address = listener.local_addr().map_err(Error::io("listening socket"))?;
        println!("listening on http://{address}");
        let app = routes::router(state, args.max_request_bytes);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal(failed))
            .await
            .map_err(|e| Error::Internal(format!("the HTTP server failed: {e}")))
    });
    // The router, and with it the last sender, is gone: the scorer answers what is queued and ends.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let _ = scorer.join();
    if let Some(error) = failure.lock().expect("not poisoned").take() {
        return Err(error);
    }
    served?;
    println!("stopped");
    Ok(())
}

async fn shutdown_signal(failed: Arc<Notify>) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
        _ = failed.notified() => {}
    }
}
