//! `ocellus-operator run`: checks the CRDs, fills the caches, and runs both controllers,
//! the status server and the metrics server side by side until a signal stops them.

use std::future::ready;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use ocellus_crds::{Dataset, Experiment};
use serde::de::DeserializeOwned;

use crate::config::{Config, SERVICE};
use crate::context::{Context, Reports, Stores};
use crate::jobs::MANAGED_BY;
use crate::metrics::Metrics;
use crate::status_certificate::serving_names;
use crate::status_server::StatusServer;
use crate::status_tls::TlsListener;
use crate::{dataset_controller, experiment_controller, status_server, status_tls, web};

/// Kinds the operator lists and watches (its caches and controllers): (API group, resource).
pub const CACHED: [(&str, &str); 4] =
    [("ocellus.dev", "datasets"), ("ocellus.dev", "experiments"), ("batch", "jobs"), ("", "pods")];

/// Fails with what to do when the Ocellus CRDs are not installed.
pub async fn ensure_crds_installed(client: &Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [Dataset::crd_name(), Experiment::crd_name()] {
        let found = api.get_opt(crd).await.with_context(|| format!("could not look up CRD {crd}"))?;
        if found.is_none() {
            anyhow::bail!(
                "the CRD {crd} is not installed; install the chart (helm install ocellus charts/ocellus) or run \
                 `ocellus-operator crds | kubectl apply -f -`, then start the operator again"
            );
        }
    }
    Ok(())
}

trait CrdName {
    fn crd_name() -> &'static str;
}

impl<K: kube::CustomResourceExt> CrdName for K {
    fn crd_name() -> &'static str {
        // `<plural>.<group>`, leaked once per kind at startup.
        Box::leak(Self::crd().metadata.name.unwrap_or_default().into_boxed_str())
    }
}

/// Drops what the operator never reads from a cached Job or pod: managed fields and the
/// manifest annotation (the largest part of a trainer pod's template).
pub fn slim<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
    if let Some(annotations) = object.meta_mut().annotations.as_mut() {
        annotations.remove(crate::jobs::MANIFEST_ANNOTATION);
    }
}

/// Slims the pod template of a cached Job too.
pub fn slim_job(job: &mut Job) {
    slim(job);
    if let Some(template) = job.spec.as_mut().and_then(|s| s.template.metadata.as_mut()) {
        template.annotations = None;
    }
}

/// A cache of `K` filled by its own watch; `trim` drops fields the operator never reads.
fn cache<K>(api: Api<K>, config: watcher::Config, trim: fn(&mut K)) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config).default_backoff().modify(trim).reflect(writer).applied_objects();
    tokio::spawn(stream.for_each(|_| ready(())));
    reader
}

pub async fn run(mut config: Config) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("no Kubernetes configuration: run in a pod with a ServiceAccount, or set KUBECONFIG")?;
    ensure_crds_installed(&client).await?;
    let tls = match config.status_tls_secret.clone() {
        Some(secret) => {
            let names = serving_names(&config.status_url(), SERVICE, &config.pod_namespace);
            let api = Api::namespaced(client.clone(), &config.pod_namespace);
            let (certificates, ca) =
                status_tls::start(api, secret.clone(), names).await.with_context(|| {
                    format!(
                        "cannot read or write the status server's certificate in the Secret {}/{secret}",
                        config.pod_namespace
                    )
                })?;
            config.status_ca = Some(ca);
            Some(certificates)
        }
        None => None,
    };
    let managed = watcher::Config::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    // One watch of Jobs feeds the cache the reconcilers read and both controllers' triggers, in
    // that order: a reconcile woken by a Job event always finds that event in the cache.
    let (jobs_store, jobs_writer) = reflector::store_shared::<Job>(256);
    let job_events = [jobs_writer.subscribe(), jobs_writer.subscribe()];
    let [experiment_jobs, dataset_jobs] = job_events.map(|s| s.expect("a shared store gives subscribers"));
    let job_watch = watcher(Api::<Job>::all(client.clone()), managed.clone())
        .default_backoff()
        .modify(slim_job)
        .reflect_shared(jobs_writer)
        .applied_objects();
    tokio::spawn(job_watch.for_each(|_| ready(())));
    let stores = Stores {
        datasets: cache(Api::<Dataset>::all(client.clone()), watcher::Config::default(), slim),
        jobs: jobs_store,
        pods: cache(Api::<Pod>::all(client.clone()), managed.clone(), slim),
    };
    let metrics = Arc::new(Metrics::default());
    let reports = Arc::new(Reports::default());
    let ready_flag = Arc::new(AtomicBool::new(false));
    let caches = (stores.datasets.clone(), stores.jobs.clone(), stores.pods.clone());
    let context =
        Arc::new(Context::new(client.clone(), config.clone(), metrics.clone(), stores, reports.clone()));
    let (experiment_tx, experiment_rx) = futures::channel::mpsc::channel::<ObjectRef<Experiment>>(1024);
    let (dataset_tx, dataset_rx) = futures::channel::mpsc::channel::<ObjectRef<Dataset>>(1024);

    let status = status_server::router(StatusServer {
        client: client.clone(),
        jobs: context.jobs.clone(),
        pods: context.pods.clone(),
        limiter: Arc::default(),
        reports: reports.clone(),
        metrics: metrics.clone(),
        clock: context.clock.clone(),
        experiments: experiment_tx,
        datasets: dataset_tx,
    });
    let status_listener = tokio::net::TcpListener::bind(config.status_addr)
        .await
        .with_context(|| format!("cannot listen on OCELLUS_STATUS_ADDR {}", config.status_addr))?;
    let web_listener = tokio::net::TcpListener::bind(config.metrics_addr)
        .await
        .with_context(|| format!("cannot listen on OCELLUS_METRICS_ADDR {}", config.metrics_addr))?;
    match tls {
        Some(certificates) => {
            let listener = TlsListener::new(status_listener, certificates)?;
            tokio::spawn(async move { axum::serve(listener, status).await });
        }
        None => {
            tokio::spawn(async move { axum::serve(status_listener, status).await });
        }
    }
    let health = web::Health { metrics: metrics.clone(), ready: ready_flag.clone() };
    tokio::spawn(async move { axum::serve(web_listener, web::router(health)).await });
    tracing::info!(metrics = %config.metrics_addr, status = %config.status_addr, "serving");
    // A reconcile on half-filled caches would miss existing Jobs and make them again.
    let (datasets_cache, jobs_cache, pods_cache) = caches;
    let _ = futures::join!(
        datasets_cache.wait_until_ready(),
        jobs_cache.wait_until_ready(),
        pods_cache.wait_until_ready()
    );
    ready_flag.store(true, Ordering::Relaxed);
    tracing::info!("caches filled");

    let experiments =
        Controller::new(Api::<Experiment>::all(client.clone()), watcher::Config::default().any_semantic())
            .owns_shared_stream(experiment_jobs)
            .reconcile_on(experiment_rx)
            .shutdown_on_signal();
    let experiment_store = experiments.store();
    let experiments = experiments
        .run(experiment_controller::reconcile, experiment_controller::error_policy, context.clone())
        .for_each(|_| ready(()));
    let datasets =
        Controller::new(Api::<Dataset>::all(client.clone()), watcher::Config::default().any_semantic())
            .owns_shared_stream(dataset_jobs)
            .reconcile_on(dataset_rx)
            .shutdown_on_signal();
    let dataset_store = datasets.store();
    let datasets = datasets
        .run(dataset_controller::reconcile, dataset_controller::error_policy, context.clone())
        .for_each(|_| ready(()));
    // Deleted objects get no reconcile: forget their reports and metric series from time to time.
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(30)).await;
            let gone = metrics.forget_missing("Experiment", |namespace, name| {
                experiment_store.get(&ObjectRef::new(name).within(namespace)).is_some()
            });
            let gone_datasets = metrics.forget_missing("Dataset", |namespace, name| {
                dataset_store.get(&ObjectRef::new(name).within(namespace)).is_some()
            });
            for (namespace, name) in gone {
                reports.forget("Experiment", &namespace, &name);
            }
            for (namespace, name) in gone_datasets {
                reports.forget("Dataset", &namespace, &name);
            }
        }
    });
    futures::join!(experiments, datasets);
    Ok(())
}
