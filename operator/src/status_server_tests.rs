//! The status server against a mocked API server answering TokenReviews.

use std::sync::Arc;

use axum::body::Body;
use futures::StreamExt;
use http::{Method, Request, StatusCode};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::context::Reports;
use crate::metrics::Metrics;
use crate::mock::{self, Expect};
use crate::status_server::{StatusServer, router};

const REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews?";
const REPORT: &str = "/v1/namespaces/ml/experiments/cats-exp/report";

fn review_answer(authenticated: bool, audiences: &[&str], user: &str, error: Option<&str>) -> Value {
    json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "metadata": {},
        "spec": {},
        "status": {"authenticated": authenticated, "audiences": audiences, "user": {"username": user}, "error": error},
    })
}

fn request(token: Option<&str>) -> Request<Body> {
    let mut builder =
        Request::builder().method(Method::POST).uri(REPORT).header("content-type", "application/json");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Body::from(r#"{"progress": {"stage": "Trial", "percent": 30}}"#)).unwrap()
}

struct Setup {
    reports: Arc<Reports>,
    triggers: futures::channel::mpsc::Receiver<kube::runtime::reflector::ObjectRef<ocellus_crds::Experiment>>,
}

async fn post(token: Option<&str>, script: Vec<Expect>) -> (StatusCode, Setup, Vec<mock::Seen>) {
    let (client, handle) = mock::client();
    let server = mock::serve(handle, script);
    let (experiments, triggers) = futures::channel::mpsc::channel(8);
    let (datasets, _) = futures::channel::mpsc::channel(8);
    let reports = Arc::new(Reports::default());
    let app = router(StatusServer {
        client,
        reports: reports.clone(),
        metrics: Arc::new(Metrics::default()),
        clock: Arc::new(|| Timestamp::from_second(42).unwrap()),
        experiments,
        datasets,
    });
    let status = app.oneshot(request(token)).await.unwrap().status();
    (status, Setup { reports, triggers }, server.await.unwrap())
}

#[tokio::test]
async fn a_token_for_this_experiment_is_accepted_and_triggers_a_reconcile() {
    let script = vec![
        Expect::new(
            Method::POST,
            REVIEWS,
            201,
            review_answer(
                true,
                &["ocellus.dev/experiments/ml/cats-exp"],
                "system:serviceaccount:ml:ocellus-trainer",
                None,
            ),
        )
        .body(|body| {
            assert_eq!(
                body["spec"],
                json!({"token": "good", "audiences": ["ocellus.dev/experiments/ml/cats-exp"]})
            );
        }),
    ];
    let (status, mut setup, _) = post(Some("good"), script).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (report, at) = setup.reports.experiment("ml", "cats-exp").unwrap();
    assert_eq!(report.progress.unwrap().percent, 30);
    assert_eq!(at, Timestamp::from_second(42).unwrap());
    let trigger = setup.triggers.next().await.unwrap();
    assert_eq!((trigger.name.as_str(), trigger.namespace.as_deref()), ("cats-exp", Some("ml")));
}

#[tokio::test]
async fn no_token_is_refused_without_asking_the_api_server() {
    let (status, setup, seen) = post(None, vec![]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(seen.is_empty());
    assert!(setup.reports.experiment("ml", "cats-exp").is_none());
}

#[tokio::test]
async fn a_token_for_another_experiment_is_refused() {
    // The API server does not authenticate a token against an audience it was not minted for.
    let answer = review_answer(
        false,
        &[],
        "",
        Some("token audiences [\"ocellus.dev/experiments/ml/other\"] is invalid for the target audiences"),
    );
    let (status, setup, _) = post(Some("other"), vec![Expect::new(Method::POST, REVIEWS, 201, answer)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(setup.reports.experiment("ml", "cats-exp").is_none());
}

#[tokio::test]
async fn a_valid_token_of_another_namespace_is_refused() {
    let answer = review_answer(
        true,
        &["ocellus.dev/experiments/ml/cats-exp"],
        "system:serviceaccount:other:ocellus-trainer",
        None,
    );
    let (status, _, _) = post(Some("stolen"), vec![Expect::new(Method::POST, REVIEWS, 201, answer)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_invalid_token_is_refused() {
    let answer = review_answer(false, &[], "", Some("invalid bearer token"));
    let (status, _, _) = post(Some("garbage"), vec![Expect::new(Method::POST, REVIEWS, 201, answer)]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_missing_crd_stops_the_operator_with_what_to_do() {
    let (client, handle) = mock::client();
    let path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/datasets.ocellus.dev";
    let server = mock::serve(
        handle,
        vec![Expect::new(Method::GET, path, 404, mock::not_found("datasets.ocellus.dev"))],
    );
    let error = crate::run::ensure_crds_installed(&client).await.unwrap_err().to_string();
    drop(client);
    server.await.unwrap();
    assert!(error.contains("datasets.ocellus.dev is not installed"), "{error}");
    assert!(error.contains("ocellus-operator crds | kubectl apply -f -"), "{error}");
}
