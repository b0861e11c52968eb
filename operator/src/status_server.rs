//! The status server trainer pods report to. A report is accepted only with a projected
//! ServiceAccount token whose audience names the very object it reports on, checked by
//! TokenReview, so one pod can never write another's status. Accepted reports are handed
//! to the controllers, which stay the only writers of status.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::channel::mpsc::Sender;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};
use ocellus_crds::report::{dataset_audience, experiment_audience};
use ocellus_crds::{Dataset, DatasetReport, Experiment, TrainerReport};

use crate::context::{Clock, Reports};
use crate::metrics::Metrics;

/// What the status server needs.
#[derive(Clone)]
pub struct StatusServer {
    pub client: Client,
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
        .with_state(server)
}

/// Why a report was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    NoToken,
    InvalidToken,
    WrongAudience,
    ReviewFailed,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Self::NoToken => (StatusCode::UNAUTHORIZED, "missing Authorization: Bearer <token>"),
            Self::InvalidToken => (StatusCode::UNAUTHORIZED, "the token is not valid"),
            Self::WrongAudience => (StatusCode::FORBIDDEN, "the token is not for this object"),
            Self::ReviewFailed => (StatusCode::SERVICE_UNAVAILABLE, "could not review the token; retry"),
        };
        (status, message).into_response()
    }
}

async fn experiment_report(
    State(server): State<StatusServer>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    axum::Json(report): axum::Json<TrainerReport>,
) -> Result<StatusCode, Refusal> {
    server.authenticate(&headers, &namespace, &experiment_audience(&namespace, &name)).await?;
    server.reports.experiment_report(&namespace, &name, report, (server.clock)());
    server.metrics.report_accepted();
    // A full queue means a reconcile of this object is pending anyway; it reads the merged report.
    let _ = server.experiments.clone().try_send(ObjectRef::new(&name).within(&namespace));
    Ok(StatusCode::ACCEPTED)
}

async fn dataset_report(
    State(server): State<StatusServer>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    axum::Json(report): axum::Json<DatasetReport>,
) -> Result<StatusCode, Refusal> {
    server.authenticate(&headers, &namespace, &dataset_audience(&namespace, &name)).await?;
    server.reports.dataset_report(&namespace, &name, report);
    server.metrics.report_accepted();
    let _ = server.datasets.clone().try_send(ObjectRef::new(&name).within(&namespace));
    Ok(StatusCode::ACCEPTED)
}

impl StatusServer {
    /// Accepts a token the API server authenticates for `audience`, held by a
    /// ServiceAccount of the object's namespace.
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        namespace: &str,
        audience: &str,
    ) -> Result<(), Refusal> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Refusal::NoToken)?;
        let review = TokenReview {
            metadata: Default::default(),
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: Some(vec![audience.to_owned()]),
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
        let user = status.user.and_then(|u| u.username).unwrap_or_default();
        let in_namespace = user.starts_with(&format!("system:serviceaccount:{namespace}:"));
        if !audiences.iter().any(|a| a == audience) || !in_namespace {
            return Err(Refusal::WrongAudience);
        }
        Ok(())
    }
}
