//! A mocked API server (tower-test, as in kube-rs/controller-rs): each test scripts the
//! requests it expects, in order, with the answers; a missing or an extra request fails.

use std::time::Duration;

use http::{Method, Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::Value;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// An assertion on a request body.
pub type BodyCheck = Box<dyn Fn(&Value) + Send>;

/// One request the code is expected to make, and the answer it gets.
pub struct Expect {
    pub method: Method,
    /// Path and query must start with this.
    pub path: String,
    pub status: u16,
    /// The response body; `Value::Null` echoes the request body.
    pub answer: Value,
    pub check: Option<BodyCheck>,
}

impl Expect {
    pub fn new(method: Method, path: &str, status: u16, answer: Value) -> Self {
        Self { method, path: path.to_owned(), status, answer, check: None }
    }

    /// Also asserts on the request body.
    pub fn body(mut self, check: impl Fn(&Value) + Send + 'static) -> Self {
        self.check = Some(Box::new(check));
        self
    }
}

/// A request the mock saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub body: Value,
}

impl Seen {
    /// RBAC terms of this request: API group, resource (with subresource), verb.
    pub fn rbac(&self) -> (String, String, &'static str) {
        let (path, query) = self.path.split_once('?').unwrap_or((&self.path, ""));
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (group, rest) = match parts[0] {
            "api" => (String::new(), &parts[2..]),
            _ => (parts[1].to_owned(), &parts[3..]),
        };
        let rest = if rest.first() == Some(&"namespaces") && rest.len() > 2 { &rest[2..] } else { rest };
        let resource = match rest {
            [resource, _, sub] => format!("{resource}/{sub}"),
            [resource, ..] => (*resource).to_owned(),
            [] => String::new(),
        };
        let named = rest.len() >= 2;
        let verb = match self.method {
            Method::GET if query.contains("watch=true") => "watch",
            Method::GET if named => "get",
            Method::GET => "list",
            Method::POST => "create",
            Method::PATCH => "patch",
            Method::PUT => "update",
            Method::DELETE => "delete",
            _ => "unknown",
        };
        (group, resource, verb)
    }

    pub fn is_write(&self) -> bool {
        self.method != Method::GET
    }
}

/// A client whose requests go to the returned handle.
pub fn client() -> (Client, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

/// Serves `script` in order, then fails on any further request. Await the returned task
/// after dropping every clone of the client.
pub fn serve(mut handle: Handle, script: Vec<Expect>) -> tokio::task::JoinHandle<Vec<Seen>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        for (index, expect) in script.into_iter().enumerate() {
            let next = tokio::time::timeout(Duration::from_secs(5), handle.next_request()).await;
            let Ok(Some((request, send))) = next else {
                panic!("request {index} ({} {}) was never made; seen: {seen:#?}", expect.method, expect.path);
            };
            let request = read(request).await;
            assert_eq!(
                (&request.method, request.path.starts_with(&expect.path)),
                (&expect.method, true),
                "request {index}: expected {} {}, got {} {}",
                expect.method,
                expect.path,
                request.method,
                request.path
            );
            if let Some(check) = &expect.check {
                check(&request.body);
            }
            // A Null answer echoes the request body (creates answer with what they created).
            let answer = if expect.answer.is_null() { request.body.clone() } else { expect.answer };
            seen.push(request);
            let body = serde_json::to_vec(&answer).unwrap();
            send.send_response(Response::builder().status(expect.status).body(Body::from(body)).unwrap());
        }
        if let Ok(Some((request, _))) =
            tokio::time::timeout(Duration::from_secs(5), handle.next_request()).await
        {
            let request = read(request).await;
            panic!("unexpected request {} {} {}", request.method, request.path, request.body);
        }
        seen
    })
}

async fn read(request: Request<Body>) -> Seen {
    let method = request.method().clone();
    let path = request.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let bytes = request.into_body().collect_bytes().await.unwrap();
    let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
    Seen { method, path, body }
}

/// The answer of the API server to a create that finds the object already there.
pub fn already_exists(kind: &str, name: &str) -> Value {
    serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409,
        "message": format!("{kind} {name:?} already exists"), "metadata": {},
    })
}

pub fn not_found(name: &str) -> Value {
    serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
        "message": format!("{name:?} not found"), "metadata": {},
    })
}
