//! The HTTP side: KServe v2 REST routes and `/metrics`. Handlers check a request against the
//! model and hand its rows to the batcher; every refusal is `{"error": "..."}`.

use std::sync::mpsc::Sender;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::oneshot;

use super::batcher::{Job, ScoreError};
use super::metrics::Metrics;
use super::protocol::{self, InferenceRequest, Model};

#[derive(Clone)]
pub struct AppState {
    /// Set once the bundle is loaded: the server is ready.
    pub model: Arc<OnceLock<Model>>,
    pub jobs: Sender<Job>,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: AppState, max_request_bytes: usize) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(|| async { StatusCode::OK }))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(infer))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .with_state(state)
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

async fn server_metadata() -> Json<serde_json::Value> {
    Json(json!({ "name": "ocellus", "version": env!("CARGO_PKG_VERSION"), "extensions": [] }))
}

async fn ready(State(state): State<AppState>) -> Response {
    match state.model.get() {
        Some(_) => StatusCode::OK.into_response(),
        None => refuse(StatusCode::SERVICE_UNAVAILABLE, "the scoring bundle is still loading"),
    }
}

/// The model named `name`, or the response that says why there is none (boxed: a `Response`
/// is large next to a reference).
fn model_named<'a>(state: &'a AppState, name: &str) -> Result<&'a Model, Box<Response>> {
    let Some(model) = state.model.get() else {
        return Err(Box::new(refuse(StatusCode::SERVICE_UNAVAILABLE, "the scoring bundle is still loading")));
    };
    if model.name != name {
        return Err(Box::new(refuse(
            StatusCode::NOT_FOUND,
            format!("no model {name:?} here: this server serves {:?}", model.name),
        )));
    }
    Ok(model)
}

async fn model_metadata(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match model_named(&state, &name) {
        Ok(model) => Json(protocol::metadata(model)).into_response(),
        Err(response) => *response,
    }
}

async fn model_ready(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    match model_named(&state, &name) {
        Ok(_) => StatusCode::OK.into_response(),
        Err(response) => *response,
    }
}

async fn infer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let start = Instant::now();
    let response = match body {
        Ok(body) => answer(&state, &name, &headers, &body).await,
        // Over --max-request-bytes (413), or a body that could not be read.
        Err(rejection) => {
            refuse(rejection.status(), format!("{}: send fewer rows per request", rejection.body_text()))
        }
    };
    state.metrics.observe_request(response.status().as_u16(), start.elapsed().as_secs_f64());
    response
}

async fn answer(state: &AppState, name: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let model = match model_named(state, name) {
        Ok(model) => model,
        Err(response) => return *response,
    };
    if headers.contains_key("inference-header-content-length") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the binary tensor extension is not supported: send JSON, with images as base64 strings",
        );
    }
    let request: InferenceRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(error) => {
            return refuse(StatusCode::BAD_REQUEST, format!("not a KServe v2 inference request: {error}"));
        }
    };
    let rows = match protocol::rows_of(&request, model).and_then(|rows| {
        protocol::check_outputs(&request, model)?;
        Ok(rows)
    }) {
        Ok(rows) => rows,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, message),
    };
    let (reply, answer) = oneshot::channel();
    if state.jobs.send(Job { rows, queued: Instant::now(), reply }).is_err() {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "the server is shutting down");
    }
    match answer.await {
        Ok(Ok(predictions)) => Json(protocol::response(model, &request, &predictions)).into_response(),
        Ok(Err(ScoreError::BadRequest(message))) => refuse(StatusCode::BAD_REQUEST, message),
        Ok(Err(ScoreError::Internal(message))) => refuse(StatusCode::INTERNAL_SERVER_ERROR, message),
        Err(_) => refuse(StatusCode::INTERNAL_SERVER_ERROR, "the scoring thread stopped"),
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], state.metrics.render())
}
