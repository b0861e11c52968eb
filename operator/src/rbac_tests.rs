//! `operator/rbac-rules.yaml` grants exactly what the code uses: every request the mocked
//! API server sees in these scenarios, plus the list and watch of each cache.

use std::collections::BTreeSet;

use http::Method;
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::Resource;
use kube::runtime::events::{Event, EventType};
use ocellus_crds::Experiment;
use serde_json::json;

use crate::controller_tests::experiment_lifecycle;
use crate::fixtures::ExperimentFixture;
use crate::mock::{self, Expect, Seen};
use crate::run::CACHED;

type Grant = (String, String, String);

fn granted() -> BTreeSet<Grant> {
    grants(include_str!("../rbac-rules.yaml"))
}

fn grants(text: &str) -> BTreeSet<Grant> {
    let rules: Vec<PolicyRule> = serde_yaml::from_str(text).expect("the rules are a list of PolicyRules");
    let mut grants = BTreeSet::new();
    for rule in rules {
        for group in rule.api_groups.unwrap_or_default() {
            for resource in rule.resources.clone().unwrap_or_default() {
                for verb in &rule.verbs {
                    grants.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    grants
}

fn grant(seen: &Seen) -> Grant {
    let (group, resource, verb) = seen.rbac();
    (group, resource, verb.to_owned())
}

/// Requests of the paths the lifecycle does not take.
async fn other_paths() -> Vec<Seen> {
    let mut seen = Vec::new();
    // Status server: a TokenReview.
    let (client, handle) = mock::client();
    let server = mock::serve(
        handle,
        vec![Expect::new(Method::POST, "/apis/authentication.k8s.io/v1/tokenreviews", 201, json!({}))],
    );
    let api: kube::Api<k8s_openapi::api::authentication::v1::TokenReview> = kube::Api::all(client.clone());
    let _ = api.create(&Default::default(), &Default::default()).await;
    drop((api, client));
    seen.extend(server.await.unwrap());
    // A Dataset's credentials: only the metadata of the Secret it names.
    let (client, handle) = mock::client();
    let secret =
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "photo-keys", "namespace": "ml"}});
    let server = mock::serve(
        handle,
        vec![Expect::new(Method::GET, "/api/v1/namespaces/ml/secrets/photo-keys", 200, secret)],
    );
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client.clone(), "ml");
    let _ = api.get_metadata_opt("photo-keys").await;
    drop((api, client));
    seen.extend(server.await.unwrap());
    // Startup: the CRD check.
    let (client, handle) = mock::client();
    let crd = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let crds: Vec<_> =
        ocellus_crds::crds().into_iter().map(|(_, crd)| serde_json::to_value(crd).unwrap()).collect();
    let server = mock::serve(
        handle,
        vec![
            Expect::new(Method::GET, &format!("{crd}/datasets.ocellus.dev"), 200, crds[0].clone()),
            Expect::new(Method::GET, &format!("{crd}/experiments.ocellus.dev"), 200, crds[1].clone()),
        ],
    );
    crate::run::ensure_crds_installed(&client).await.expect("both CRDs are there");
    drop(client);
    seen.extend(server.await.unwrap());
    // A repeated Event becomes a series: create, then patch.
    let (client, handle) = mock::client();
    let events = "/apis/events.k8s.io/v1/namespaces/ml/events";
    let server = mock::serve(
        handle,
        vec![
            Expect::new(Method::POST, events, 201, serde_json::Value::Null),
            Expect::new(Method::PATCH, events, 200, serde_json::Value::Null),
        ],
    );
    let recorder = kube::runtime::events::Recorder::new(client, "ocellus-operator".into());
    let event = Event {
        type_: EventType::Normal,
        reason: "Training".into(),
        note: None,
        action: "Running".into(),
        secondary: None,
    };
    let reference = Experiment::test().object_ref(&());
    for _ in 0..2 {
        let _ = recorder.publish(&event, &reference).await;
    }
    drop(recorder);
    seen.extend(server.await.unwrap());
    seen
}

#[tokio::test]
async fn rbac_rules_grant_exactly_what_the_code_uses() {
    let mut seen = experiment_lifecycle().await;
    seen.extend(crate::controller_tests::job_suspend_and_cleanup_requests().await);
    seen.extend(crate::controller_tests::dataset_import_requests().await);
    seen.extend(crate::controller_tests::pod_creation_refused_requests().await);
    seen.extend(other_paths().await);
    let mut used: BTreeSet<Grant> = seen.iter().map(grant).collect();
    for (group, resource) in CACHED {
        for verb in ["list", "watch"] {
            used.insert((group.to_owned(), resource.to_owned(), verb.to_owned()));
        }
    }
    let granted = granted();
    let missing: Vec<_> = used.difference(&granted).collect();
    let extra: Vec<_> = granted.difference(&used).collect();
    assert!(missing.is_empty(), "used but not granted in rbac-rules.yaml: {missing:?}");
    assert!(extra.is_empty(), "granted but never used: {extra:?}");
}

/// The status server's certificate Secret: made when missing, read, renewed.
#[tokio::test]
async fn namespace_rules_grant_exactly_what_the_certificate_code_uses() {
    use crate::status_certificate::{Material, ensure, serving_names};
    let secrets = "/api/v1/namespaces/ocellus-system/secrets";
    let names = serving_names(
        "https://ocellus-operator.ocellus-system.svc:8081",
        "ocellus-operator",
        "ocellus-system",
    );
    let now = time::OffsetDateTime::now_utc();
    let due = Material::new(&names[..1], now).unwrap().to_secret("ocellus-status-tls", "ocellus-system");
    let not_found =
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404});
    let (client, handle) = mock::client();
    let server = mock::serve(
        handle,
        vec![
            Expect::new(Method::GET, &format!("{secrets}/ocellus-status-tls"), 404, not_found),
            Expect::new(Method::POST, secrets, 201, serde_json::Value::Null),
            // The names changed since: renewed in place, under the same CA.
            Expect::new(
                Method::GET,
                &format!("{secrets}/ocellus-status-tls"),
                200,
                serde_json::to_value(&due).unwrap(),
            ),
            Expect::new(Method::PUT, &format!("{secrets}/ocellus-status-tls"), 200, serde_json::Value::Null),
        ],
    );
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(client.clone(), "ocellus-system");
    let made = ensure(&api, "ocellus-status-tls", &names, None).await.unwrap();
    let renewed = ensure(&api, "ocellus-status-tls", &names, Some(&made)).await.unwrap();
    assert_eq!(renewed.ca_cert, Material::from_secret(&due).unwrap().ca_cert, "the Secret's CA is kept");
    drop((api, client));
    let seen = server.await.unwrap();
    let used: BTreeSet<Grant> = seen.iter().map(grant).collect();
    assert_eq!(used, grants(include_str!("../rbac-namespace-rules.yaml")));
}
