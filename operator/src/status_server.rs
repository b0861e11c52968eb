//! The status server trainer pods report to.
//!
//! A report is accepted only when all of these hold:
//! - the body is at most [`MAX_REPORT_BYTES`] and a well-formed report within the CRD's own
//!   status schema (so an accepted report can always be written);
//! - the projected ServiceAccount token is authenticated by TokenReview for the audience that
//!   names the very object reported on;
//! - the token is bound to a pod (TokenReview's `authentication.kubernetes.io/pod-name` and
//!   `pod-uid`) of the Job that object owns, as Kubeflow Trainer's progress server checks: a
//!   token minted with the public audience string from any other pod is refused;
//! - the object has not sent more than its share of reports (a token bucket per object).
//!
//! Accepted reports are handed to the controllers, which stay the only writers of status.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::channel::mpsc::Sender;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use ocellus_crds::report::{
    MAX_REPORT_BYTES, check_dataset_report, check_experiment_report, dataset_audience, experiment_audience,
};
use ocellus_crds::{Dataset, DatasetReport, Experiment, TrainerReport};

use crate::context::{Clock, Reports};
use crate::metrics::Metrics;
use crate::names::job_name;

/// Reports an object may send in a burst, and how many more each second.
const BURST: f64 = 20.0;
const PER_SECOND: f64 = 1.0;

/// What the status server needs.
#[derive(Clone)]
pub struct StatusServer {
    pub client: Client,
    /// The Jobs and pods the operator made: a token's pod must be one of them.
    pub jobs: Store<Job>,
    pub pods: Store<Pod>,
    pub limiter: Arc<Limiter>,
    pub reports: Arc<Reports>,
    pub metrics: Arc<Metrics>,
    pub clock: Clock,
    pub experiments: Sender<ObjectRef<Experiment>>,
    pub datasets: Sender<ObjectRef<Dataset>>,
}

pub fn router(server: StatusServer) -> Router {
    Router::new()
        .route("/v1/namespaces/{namespace}/experiments/{name}/report", post(experiment_report))
        .route("/v1/namespaces/{namespace}/datasets/{name}/report", post(dataset_report))
        .layer(DefaultBodyLimit::max(MAX_REPORT_BYTES))
        .with_state(server)
}

/// Why a report was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    NoToken,
    InvalidToken,
    WrongAudience,
    /// The token is not bound to a pod of the object's Job.
    WrongPod(String),
    /// The token names a pod that is not one the operator started (its cache holds them all).
    UnknownPod,
    ReviewFailed,
    TooMany,
    BadReport(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Self::NoToken => (StatusCode::UNAUTHORIZED, "missing Authorization: Bearer <token>".into()),
            Self::InvalidToken => (StatusCode::UNAUTHORIZED, "the token is not valid".into()),
            Self::WrongAudience => (StatusCode::FORBIDDEN, "the token is not for this object".into()),
            Self::WrongPod(why) => (StatusCode::FORBIDDEN, why),
            Self::UnknownPod => {
                (StatusCode::FORBIDDEN, "the token's pod is not a trainer pod the operator started".into())
            }
            Self::ReviewFailed => {
                (StatusCode::SERVICE_UNAVAILABLE, "could not review the token; retry".into())
            }
            Self::TooMany => {
                (StatusCode::TOO_MANY_REQUESTS, "too many reports; send at most one a second".into())
            }
            Self::BadReport(why) => (StatusCode::BAD_REQUEST, why),
        };
        (status, message).into_response()
    }
}

/// Which object a report is about.
struct Target<'a> {
    kind: &'static str,
    namespace: &'a str,
    name: &'a str,
    /// The role in the Job's name (`<name>-train`, `<name>-import`).
    role: &'static str,
    audience: String,
}

async fn experiment_report(
    State(server): State<StatusServer>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, Refusal> {
    let report: TrainerReport = parse(&body)?;
    check_experiment_report(&report.status).map_err(Refusal::BadReport)?;
    let audience = experiment_audience(&namespace, &name);
    let target = Target { kind: "Experiment", namespace: &namespace, name: &name, role: "train", audience };
    let owner = server.admit(&headers, &target).await?;
    server.reports.experiment_report(&namespace, &name, &owner, report, (server.clock)());
    server.metrics.report_accepted();
    // A full queue means a reconcile of this object is pending anyway; it reads the merged report.
    let _ = server.experiments.clone().try_send(ObjectRef::new(&name).within(&namespace));
    Ok(StatusCode::ACCEPTED)
}

async fn dataset_report(
    State(server): State<StatusServer>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, Refusal> {
    let report: DatasetReport = parse(&body)?;
    check_dataset_report(&report).map_err(Refusal::BadReport)?;
    let audience = dataset_audience(&namespace, &name);
    let target = Target { kind: "Dataset", namespace: &namespace, name: &name, role: "import", audience };
    let owner = server.admit(&headers, &target).await?;
    server.reports.dataset_report(&namespace, &name, &owner, report);
    server.metrics.report_accepted();
    let _ = server.datasets.clone().try_send(ObjectRef::new(&name).within(&namespace));
    Ok(StatusCode::ACCEPTED)
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|error| Refusal::BadReport(format!("not a valid report: {error}")))
}

impl StatusServer {
    /// Authenticates the token and binds it to a pod of the object's Job; returns the UID of
    /// the object that owns that Job.
    async fn admit(&self, headers: &HeaderMap, target: &Target<'_>) -> Result<String, Refusal> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Refusal::NoToken)?;
        if !self.limiter.allow(target.kind, target.namespace, target.name) {
            return Err(Refusal::TooMany);
        }
        let user = self.review(token, target).await?;
        self.owner_of_pod(&user, target)
    }

    /// TokenReview for the target's audience, held by a ServiceAccount of its namespace.
    async fn review(&self, token: &str, target: &Target<'_>) -> Result<UserInfo, Refusal> {
        let review = TokenReview {
            metadata: Default::default(),
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: Some(vec![target.audience.clone()]),
            },
            status: None,
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let reviewed = api.create(&PostParams::default(), &review).await.map_err(|error| {
            tracing::warn!(%error, "TokenReview failed");
            Refusal::ReviewFailed
        })?;
        let status = reviewed.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            // With audiences in the request, a token minted for another audience is not authenticated.
            return Err(if status.error.as_deref().is_some_and(|e| e.contains("audience")) {
                Refusal::WrongAudience
            } else {
                Refusal::InvalidToken
            });
        }
        let audiences = status.audiences.unwrap_or_default();
        let user = status.user.unwrap_or_default();
        let username = user.username.as_deref().unwrap_or_default();
        let in_namespace = username.starts_with(&format!("system:serviceaccount:{}:", target.namespace));
        if !audiences.contains(&target.audience) || !in_namespace {
            return Err(Refusal::WrongAudience);
        }
        Ok(user)
    }

    /// The pod the token is bound to must be a pod of `<name>-<role>`, a Job the operator made
    /// and the target object owns.
    fn owner_of_pod(&self, user: &UserInfo, target: &Target<'_>) -> Result<String, Refusal> {
        let extra = |key: &str| {
            user.extra.as_ref().and_then(|e| e.get(key)).and_then(|v| v.first()).cloned().unwrap_or_default()
        };
        let (pod_name, pod_uid) =
            (extra("authentication.kubernetes.io/pod-name"), extra("authentication.kubernetes.io/pod-uid"));
        if pod_name.is_empty() || pod_uid.is_empty() {
            return Err(Refusal::WrongPod(
                "the token is not bound to a pod; report with the pod's projected token".into(),
            ));
        }
        let pod =
            self.pods.get(&ObjectRef::new(&pod_name).within(target.namespace)).ok_or(Refusal::UnknownPod)?;
        if pod.metadata.uid.as_deref() != Some(pod_uid.as_str()) {
            return Err(Refusal::WrongPod(format!("pod {pod_name} of the token no longer exists")));
        }
        let wanted_job = job_name(target.name, target.role);
        let wrong_pod = || {
            Refusal::WrongPod(format!(
                "pod {pod_name} does not belong to Job {wanted_job} of {} {}",
                target.kind, target.name
            ))
        };
        let job_ref =
            controller_of(&pod.metadata, "Job").filter(|r| r.name == wanted_job).ok_or_else(wrong_pod)?;
        let job =
            self.jobs.get(&ObjectRef::new(&wanted_job).within(target.namespace)).ok_or_else(wrong_pod)?;
        if job.metadata.uid.as_deref() != Some(job_ref.uid.as_str()) {
            return Err(wrong_pod());
        }
        let owner = controller_of(&job.metadata, target.kind)
            .filter(|r| r.name == target.name)
            .ok_or_else(wrong_pod)?;
        Ok(owner.uid.clone())
    }
}

fn controller_of<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    kind: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    meta.owner_references.as_ref()?.iter().find(|r| r.controller == Some(true) && r.kind == kind)
}

/// A reporting object: its kind, namespace and name.
type ObjectKey = (&'static str, String, String);

/// A token bucket per reporting object, so one pod cannot flood the operator: tokens left and
/// when they were counted.
#[derive(Default)]
pub struct Limiter {
    buckets: Mutex<HashMap<ObjectKey, (f64, Instant)>>,
}

impl Limiter {
    fn allow(&self, kind: &'static str, namespace: &str, name: &str) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("limiter lock is never poisoned");
        if buckets.len() > 10_000 {
            // Full buckets are the same as none: drop them so the map stays bounded.
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * PER_SECOND < BURST
            });
        }
        let (tokens, at) =
            buckets.entry((kind, namespace.to_owned(), name.to_owned())).or_insert((BURST, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * PER_SECOND).min(BURST);
        *at = now;
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }
}
