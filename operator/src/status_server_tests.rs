//! The status server against a mocked API server answering TokenReviews.

use std::sync::Arc;

use axum::body::Body;
use futures::StreamExt;
use http::{Method, Request, StatusCode};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tower::ServiceExt;

use http_body_util::BodyExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use ocellus_crds::Experiment;

use crate::config::Config;
use crate::context::Reports;
use crate::fixtures::ExperimentFixture;
use crate::metrics::Metrics;
use crate::mock::{self, Expect};
use crate::status_server::{StatusServer, router};

const REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews?";
const REPORT: &str = "/v1/namespaces/ml/experiments/cats-exp/report";

fn review_answer(authenticated: bool, audiences: &[&str], user: &str, error: Option<&str>) -> Value {
    bound_review(authenticated, audiences, user, error, Some(("cats-exp-train-abcde", "uid-pod-1")))
}

/// A TokenReview answer; `pod` is what a pod-bound token's `user.extra` names.
fn bound_review(
    authenticated: bool,
    audiences: &[&str],
    user: &str,
    error: Option<&str>,
    pod: Option<(&str, &str)>,
) -> Value {
    let extra = pod.map_or(json!({}), |(name, uid)| {
        json!({"authentication.kubernetes.io/pod-name": [name], "authentication.kubernetes.io/pod-uid": [uid]})
    });
    json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "metadata": {},
        "spec": {},
        "status": {"authenticated": authenticated, "audiences": audiences,
                   "user": {"username": user, "extra": extra}, "error": error},
    })
}

fn good_review() -> Value {
    review_answer(
        true,
        &["ocellus.dev/experiments/ml/cats-exp"],
        "system:serviceaccount:ml:ocellus-trainer",
        None,
    )
}

const PROGRESS: &str = r#"{"status": {"progress": {"stage": "Trial", "percent": 30}}}"#;

fn request(token: Option<&str>, body: &str) -> Request<Body> {
    let mut builder =
        Request::builder().method(Method::POST).uri(REPORT).header("content-type", "application/json");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

struct Setup {
    reports: Arc<Reports>,
    triggers: futures::channel::mpsc::Receiver<kube::runtime::reflector::ObjectRef<ocellus_crds::Experiment>>,
}

fn store<K: kube::Resource<DynamicType = ()> + Clone + 'static>(objects: Vec<K>) -> Store<K> {
    let mut writer = Writer::default();
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(object));
    }
    writer.as_reader()
}

/// The Experiment's Job and its pod `cats-exp-train-abcde` (UID `uid-pod-1`), as cached.
fn job_and_pod() -> (Job, Pod) {
    let experiment = Experiment::test();
    let mut job = crate::jobs::trainer_job(&experiment, &[], &Config::test());
    job.metadata.uid = Some("uid-job-1".into());
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("cats-exp-train-abcde".into()),
            namespace: Some("ml".into()),
            uid: Some("uid-pod-1".into()),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name: "cats-exp-train".into(),
                uid: "uid-job-1".into(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..Default::default()
        },
        ..Default::default()
    };
    (job, pod)
}

async fn post(token: Option<&str>, script: Vec<Expect>) -> (StatusCode, Setup, Vec<mock::Seen>) {
    post_body(token, PROGRESS, script).await
}

async fn post_body(
    token: Option<&str>,
    body: &str,
    script: Vec<Expect>,
) -> (StatusCode, Setup, Vec<mock::Seen>) {
    let (status, setup, seen, _) = post_all(&[(token, body)], script).await;
    (status, setup, seen)
}

/// The status server's router over the Experiment's Job and pod, with a clock fixed at second 42.
fn app(
    client: kube::Client,
    reports: Arc<Reports>,
    experiments: futures::channel::mpsc::Sender<ObjectRef<Experiment>>,
) -> axum::Router {
    let (datasets, _) = futures::channel::mpsc::channel(8);
    let (job, pod) = job_and_pod();
    router(StatusServer {
        client,
        jobs: store(vec![job]),
        pods: store(vec![pod]),
        limiter: Arc::default(),
        reports,
        metrics: Arc::new(Metrics::default()),
        clock: Arc::new(|| Timestamp::from_second(42).unwrap()),
        experiments,
        datasets,
    })
}

/// Posts the requests in order to one server; returns the last status and every status.
async fn post_all(
    requests: &[(Option<&str>, &str)],
    script: Vec<Expect>,
) -> (StatusCode, Setup, Vec<mock::Seen>, Vec<StatusCode>) {
    let (client, handle) = mock::client();
    let server = mock::serve(handle, script);
    let (experiments, triggers) = futures::channel::mpsc::channel(64);
    let reports = Arc::new(Reports::default());
    let app = app(client, reports.clone(), experiments);
    let mut statuses = Vec::new();
    for (token, body) in requests {
        statuses.push(app.clone().oneshot(request(*token, body)).await.unwrap().status());
    }
    drop(app);
    (*statuses.last().unwrap(), Setup { reports, triggers }, server.await.unwrap(), statuses)
}

const UID: &str = "uid-experiment-cats";

#[tokio::test]
async fn a_token_for_this_experiment_is_accepted_and_triggers_a_reconcile() {
    let script = vec![Expect::new(Method::POST, REVIEWS, 201, good_review()).body(|body| {
        assert_eq!(
            body["spec"],
            json!({"token": "good", "audiences": ["ocellus.dev/experiments/ml/cats-exp"]})
        );
    })];
    let (status, mut setup, _) = post(Some("good"), script).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let report = setup.reports.experiment("ml", "cats-exp", UID).unwrap();
    assert_eq!(report.status.progress.unwrap().percent, 30);
    assert_eq!(report.received, Timestamp::from_second(42).unwrap());
    assert!(setup.reports.experiment("ml", "cats-exp", "uid-of-a-deleted-one").is_none());
    let trigger = setup.triggers.next().await.unwrap();
    assert_eq!((trigger.name.as_str(), trigger.namespace.as_deref()), ("cats-exp", Some("ml")));
}

#[tokio::test]
async fn a_token_bound_to_a_pod_outside_the_experiments_job_is_refused() {
    // A valid token with the public audience string, minted by some other pod of the namespace.
    for pod in [Some(("notebook-0", "uid-pod-9")), Some(("cats-exp-train-abcde", "uid-of-an-old-pod")), None]
    {
        let answer = bound_review(
            true,
            &["ocellus.dev/experiments/ml/cats-exp"],
            "system:serviceaccount:ml:default",
            None,
            pod,
        );
        let script = vec![Expect::new(Method::POST, REVIEWS, 201, answer)];
        let (status, setup, _) = post(Some("minted"), script).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{pod:?}");
        assert!(setup.reports.experiment("ml", "cats-exp", UID).is_none());
    }
}

#[tokio::test]
async fn bad_reports_get_400_with_the_reason_before_any_token_review() {
    for (body, reason) in [
        (r#"{"status": {"progress": {"stage": "Trial", "percent": 300}}}"#, "percent"),
        (r#"{"status": {"metrics": {"validation": [{"name": "made-up", "value": 1}]}}}"#, "unknown metric"),
        (r#"{"status": {"conditions": [], "observedGeneration": 3}}"#, "operator's"),
        ("{not json", "not a valid report"),
    ] {
        let (client, handle) = mock::client();
        let server = mock::serve(handle, vec![]);
        let (experiments, _) = futures::channel::mpsc::channel(8);
        let app = app(client, Arc::default(), experiments);
        let response = app.oneshot(request(Some("good"), body)).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let text = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&text);
        assert!(text.contains(reason), "{body}: {text}");
        server.await.unwrap();
    }
}

#[tokio::test]
async fn an_oversized_body_is_refused_unread() {
    let stage = "x".repeat(70 * 1024);
    let body = format!(r#"{{"status": {{"progress": {{"stage": "{stage}", "percent": 1}}}}}}"#);
    let (status, setup, seen) = post_body(Some("good"), &body, vec![]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(seen.is_empty() && setup.reports.experiment("ml", "cats-exp", UID).is_none());
}

#[tokio::test]
async fn a_flood_of_reports_is_throttled() {
    let requests = vec![(Some("good"), PROGRESS); 22];
    let script = (0..20).map(|_| Expect::new(Method::POST, REVIEWS, 201, good_review())).collect();
    let (_, _, _, statuses) = post_all(&requests, script).await;
    assert!(statuses[..20].iter().all(|s| *s == StatusCode::ACCEPTED), "{statuses:?}");
    assert_eq!(statuses[20..], [StatusCode::TOO_MANY_REQUESTS, StatusCode::TOO_MANY_REQUESTS]);
}

#[tokio::test]
async fn no_token_is_refused_without_asking_the_api_server() {
    let (status, setup, seen) = post(None, vec![]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(seen.is_empty());
    assert!(setup.reports.experiment("ml", "cats-exp", UID).is_none());
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
    assert!(setup.reports.experiment("ml", "cats-exp", UID).is_none());
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
