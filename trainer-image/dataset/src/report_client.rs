//! The client that sends a pod's reports to the operator's status server (see
//! `ocellus_crds::contract::report`).
//!
//! In a cluster the operator sets `OCELLUS_STATUS_URL` and `OCELLUS_STATUS_TOKEN_FILE` (a
//! projected token with the object's own audience), and `OCELLUS_STATUS_CA_FILE` when the server
//! speaks TLS with a private CA. Without them (a laptop) [`Reporter::from_env`] gives a reporter
//! that does nothing.
//!
//! Reports never block the work: [`Reporter::send`] merges the report into the one waiting to
//! go and returns; a background thread posts it, at most every [`MIN_INTERVAL`] unless the
//! stage changed, again every [`HEARTBEAT`] while nothing changes, and retries failures with
//! backoff. Reports that pile up while the server is away are merged, so nothing but
//! intermediate progress is lost. Only [`Reporter::finish`] waits, and for a bounded time: a dead
//! status server never fails a run that trained fine (the operator then reads `result.json`).

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use ocellus_crds::report::{merge_dataset_report, merge_experiment_report};
use ocellus_crds::{DatasetReport, TrainerReport};
use serde::Serialize;

/// Progress within one stage goes out at most this often.
pub const MIN_INTERVAL: Duration = Duration::from_secs(5);
/// The last report is sent again this often, so the operator knows the pod is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(60);
/// How long [`Reporter::finish`] keeps trying by default (`OCELLUS_FINAL_REPORT_SECONDS`).
const FINAL_REPORT_SECONDS: u64 = 120;
/// Backoff between failed attempts.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// How often a reporter sends and retries.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub min_interval: Duration,
    pub heartbeat: Duration,
    pub first_retry: Duration,
    pub max_retry: Duration,
    /// How long [`Reporter::finish`] keeps trying.
    pub final_wait: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        let seconds = std::env::var("OCELLUS_FINAL_REPORT_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(FINAL_REPORT_SECONDS);
        Self {
            min_interval: MIN_INTERVAL,
            heartbeat: HEARTBEAT,
            first_retry: FIRST_RETRY,
            max_retry: MAX_RETRY,
            final_wait: Duration::from_secs(seconds),
        }
    }
}
/// One request's limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// A report kind: how a newer one merges into one waiting to be sent.
pub trait Report: Serialize + Clone + Default + Send + 'static {
    /// `/experiments` or `/datasets`: the collection in the report URL.
    const COLLECTION: &'static str;
    fn merge(&mut self, newer: &Self);
    /// What a change of forces an immediate send.
    fn stage(&self) -> Option<String>;
    fn is_final(&self) -> bool {
        false
    }
}

impl Report for TrainerReport {
    const COLLECTION: &'static str = "experiments";

    fn merge(&mut self, newer: &Self) {
        merge_experiment_report(&mut self.status, &newer.status);
        self.final_ |= newer.final_;
    }

    fn stage(&self) -> Option<String> {
        self.status.progress.as_ref().map(|p| p.stage.clone())
    }

    fn is_final(&self) -> bool {
        self.final_
    }
}

impl Report for DatasetReport {
    const COLLECTION: &'static str = "datasets";

    fn merge(&mut self, newer: &Self) {
        merge_dataset_report(self, newer);
    }

    fn stage(&self) -> Option<String> {
        None
    }
}

/// Where reports go, read from the environment the operator gives trainer pods.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The status server's base URL.
    pub base: String,
    pub token_file: PathBuf,
    /// PEM file of the CA that signed the status server's certificate.
    pub ca_file: Option<PathBuf>,
}

impl Endpoint {
    pub fn from_env() -> Option<Self> {
        let base = std::env::var("OCELLUS_STATUS_URL").ok().filter(|u| !u.is_empty())?;
        let token_file = std::env::var_os("OCELLUS_STATUS_TOKEN_FILE")?.into();
        let ca_file = std::env::var_os("OCELLUS_STATUS_CA_FILE").map(PathBuf::from);
        Some(Self { base: base.trim_end_matches('/').to_owned(), token_file, ca_file })
    }
}

/// Sends reports of one object; cheap to clone. A reporter without an endpoint does nothing.
pub struct Reporter<R: Report> {
    shared: Option<Arc<Shared<R>>>,
}

impl<R: Report> Clone for Reporter<R> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

struct Shared<R> {
    url: String,
    timing: Timing,
    endpoint: Endpoint,
    state: Mutex<State<R>>,
    wake: Condvar,
}

#[derive(Default)]
struct State<R> {
    /// Merged reports not sent yet.
    pending: Option<R>,
    /// Everything sent so far, merged: what a heartbeat sends again.
    sent: Option<R>,
    last_sent: Option<Instant>,
    last_stage: Option<String>,
    /// `finish` was called: what is pending now is the last report, whatever its kind (a
    /// Dataset's report has no `final` flag of its own).
    finishing: bool,
    /// The final report went through, or was refused.
    done: bool,
    delivered: bool,
    stop: bool,
}

impl<R: Report> Reporter<R> {
    /// A reporter that does nothing: local runs.
    pub fn disabled() -> Self {
        Self { shared: None }
    }

    /// The reporter for `namespace/name` from the environment, or a disabled one outside a cluster.
    pub fn from_env(namespace: Option<&str>, name: &str) -> Self {
        match (Endpoint::from_env(), namespace) {
            (Some(endpoint), Some(namespace)) => Self::new(endpoint, namespace, name),
            _ => Self::disabled(),
        }
    }

    pub fn new(endpoint: Endpoint, namespace: &str, name: &str) -> Self {
        Self::with_timing(endpoint, namespace, name, Timing::default())
    }

    pub fn with_timing(endpoint: Endpoint, namespace: &str, name: &str, timing: Timing) -> Self {
        let url = format!("{}/v1/namespaces/{namespace}/{}/{name}/report", endpoint.base, R::COLLECTION);
        let shared = Arc::new(Shared {
            url,
            timing,
            endpoint,
            state: Mutex::new(State { pending: None, sent: None, ..Default::default() }),
            wake: Condvar::new(),
        });
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("ocellus-report".into())
            .spawn(move || worker.run())
            .expect("a thread can be started");
        Self { shared: Some(shared) }
    }

    pub fn is_enabled(&self) -> bool {
        self.shared.is_some()
    }

    /// Queues a report; returns at once.
    pub fn send(&self, report: R) {
        self.queue(report, false);
    }

    /// Merges `report` into what is pending; `last`: it is the final one (under the same lock,
    /// so a report already on its way is never taken for it).
    fn queue(&self, report: R, last: bool) {
        let Some(shared) = &self.shared else { return };
        let mut state = shared.state.lock().expect("report lock is never poisoned");
        match state.pending.as_mut() {
            Some(pending) => pending.merge(&report),
            None => state.pending = Some(report),
        }
        state.finishing |= last;
        shared.wake.notify_all();
    }

    /// Queues the final report and waits until it is delivered, for at most
    /// `OCELLUS_FINAL_REPORT_SECONDS` (120 by default). Returns whether it was delivered.
    pub fn finish(&self, report: R) -> bool {
        let Some(shared) = &self.shared else { return true };
        let wait = shared.timing.final_wait;
        self.queue(report, true);
        let deadline = Instant::now() + wait;
        let mut state = shared.state.lock().expect("report lock is never poisoned");
        while !state.done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                eprintln!(
                    "warning: the final report did not reach {} within {}s; the operator reads result.json instead",
                    shared.url,
                    wait.as_secs()
                );
                state.stop = true;
                shared.wake.notify_all();
                return false;
            }
            state = shared.wake.wait_timeout(state, left).expect("report lock is never poisoned").0;
        }
        state.delivered
    }
}

impl<R: Report> Shared<R> {
    /// The sender thread: waits for something to send, throttles, posts, retries.
    fn run(self: Arc<Self>) {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => return eprintln!("warning: reports are off: no runtime: {error}"),
        };
        let client = match self.client() {
            Ok(client) => client,
            Err(error) => return eprintln!("warning: reports are off: {error}"),
        };
        let mut backoff = self.timing.first_retry;
        loop {
            let Some((report, is_final)) = self.next_report() else { return };
            match runtime.block_on(self.post(&client, &report)) {
                Ok(()) => {
                    backoff = self.timing.first_retry;
                    let mut state = self.state.lock().expect("report lock is never poisoned");
                    match state.sent.as_mut() {
                        Some(sent) => sent.merge(&report),
                        None => state.sent = Some(report),
                    }
                    state.last_sent = Some(Instant::now());
                    if is_final {
                        state.done = true;
                        state.delivered = true;
                        self.wake.notify_all();
                        return;
                    }
                }
                Err(Failure::Refused(why)) => {
                    // Sending it again cannot help; later reports may still be fine.
                    eprintln!("warning: the status server refused a report: {why}");
                    if is_final {
                        let mut state = self.state.lock().expect("report lock is never poisoned");
                        state.done = true;
                        self.wake.notify_all();
                        return;
                    }
                }
                Err(Failure::Retry(why)) => {
                    eprintln!(
                        "warning: a report did not go through ({why}); retrying in {:.1}s",
                        backoff.as_secs_f64()
                    );
                    let mut state = self.state.lock().expect("report lock is never poisoned");
                    let mut report = report;
                    if let Some(newer) = state.pending.take() {
                        report.merge(&newer);
                    }
                    state.pending = Some(report);
                    let (state, _) = self
                        .wake
                        .wait_timeout_while(state, backoff, |s| !s.stop)
                        .expect("lock never poisoned");
                    if state.stop {
                        return;
                    }
                    backoff = (backoff * 2).min(self.timing.max_retry);
                }
            }
        }
    }

    /// Blocks until a report is due: a new stage or a final report at once, other changes after
    /// [`MIN_INTERVAL`], and the last report again after [`HEARTBEAT`] of quiet.
    fn next_report(&self) -> Option<(R, bool)> {
        let mut state = self.state.lock().expect("report lock is never poisoned");
        loop {
            if state.stop {
                return None;
            }
            let since = state.last_sent.map(|t| t.elapsed());
            if let Some(pending) = &state.pending {
                let is_final = pending.is_final() || state.finishing;
                let urgent = is_final
                    || since.is_none()
                    || (pending.stage().is_some() && pending.stage() != state.last_stage);
                if urgent || since.is_some_and(|s| s >= self.timing.min_interval) {
                    let report = state.pending.take().expect("checked above");
                    if let Some(stage) = report.stage() {
                        state.last_stage = Some(stage);
                    }
                    return Some((report, is_final));
                }
            } else if since.is_some_and(|s| s >= self.timing.heartbeat)
                && let Some(sent) = state.sent.clone()
            {
                return Some((sent, false));
            }
            let wait = match (&state.pending, since) {
                (Some(_), Some(since)) => self.timing.min_interval.saturating_sub(since),
                (None, Some(since)) => self.timing.heartbeat.saturating_sub(since),
                _ => self.timing.heartbeat,
            };
            state = self.wake.wait_timeout(state, wait.max(Duration::from_millis(50))).expect("lock").0;
        }
    }

    fn client(&self) -> Result<reqwest::Client, String> {
        let mut builder = reqwest::Client::builder().timeout(REQUEST_TIMEOUT);
        if let Some(ca_file) = &self.endpoint.ca_file {
            let pem =
                std::fs::read(ca_file).map_err(|e| format!("cannot read {}: {e}", ca_file.display()))?;
            let certificate = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("{} is not a PEM certificate: {e}", ca_file.display()))?;
            builder = builder.add_root_certificate(certificate);
        }
        builder.build().map_err(|e| format!("cannot build the HTTP client: {e}"))
    }

    async fn post(&self, client: &reqwest::Client, report: &R) -> Result<(), Failure> {
        // Read each time: the kubelet rotates projected tokens.
        let token = std::fs::read_to_string(&self.endpoint.token_file).map_err(|e| {
            Failure::Retry(format!("cannot read the token {}: {e}", self.endpoint.token_file.display()))
        })?;
        let body = serde_json::to_vec(report).map_err(|e| Failure::Refused(e.to_string()))?;
        let response = client
            .post(&self.url)
            .bearer_auth(token.trim())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| Failure::Retry(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let why = format!("{status}: {}", text.chars().take(500).collect::<String>());
        if status.is_server_error() || status.as_u16() == 429 {
            Err(Failure::Retry(why))
        } else {
            Err(Failure::Refused(why))
        }
    }
}

enum Failure {
    Retry(String),
    Refused(String),
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use ocellus_crds::experiment::Progress;

    use super::*;

    fn progress(stage: &str, percent: i32) -> TrainerReport {
        let mut report = TrainerReport::default();
        report.status.progress = Some(Progress { stage: stage.into(), percent, ..Default::default() });
        report
    }

    #[test]
    fn a_disabled_reporter_does_nothing_and_finishes_at_once() {
        let reporter = Reporter::<TrainerReport>::disabled();
        reporter.send(progress("Embedding", 3));
        assert!(reporter.finish(TrainerReport { final_: true, ..Default::default() }));
        assert!(!reporter.is_enabled());
    }

    #[test]
    fn waiting_reports_merge_so_results_are_never_dropped() {
        let mut waiting = progress("Embedding", 3);
        waiting.status.best_model = Some(Default::default());
        waiting.merge(&progress("Fitting", 50));
        assert_eq!(waiting.stage().as_deref(), Some("Fitting"));
        assert!(waiting.status.best_model.is_some(), "the earlier result survives");
        waiting.merge(&TrainerReport { final_: true, ..Default::default() });
        assert!(waiting.is_final());
    }

    /// A real HTTP server on loopback answering with `codes` in turn (then 202), handing each
    /// request's path, Authorization header and body to the test.
    fn server<T: serde::de::DeserializeOwned + Send + 'static>(
        codes: Vec<u16>,
    ) -> (String, mpsc::Receiver<(String, String, T)>) {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let base = format!("http://{}", server.server_addr().to_ip().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut codes = codes.into_iter();
            for mut request in server.incoming_requests() {
                let mut body = String::new();
                request.as_reader().read_to_string(&mut body).unwrap();
                let auth = request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Authorization"))
                    .map(|h| h.value.to_string())
                    .unwrap_or_default();
                let report = serde_json::from_str(&body).unwrap();
                let _ = tx.send((request.url().to_owned(), auth, report));
                let code = codes.next().unwrap_or(202);
                request.respond(tiny_http::Response::empty(code)).unwrap();
            }
        });
        (base, rx)
    }

    fn reporter(base: &str, token: &tempfile::NamedTempFile) -> Reporter<TrainerReport> {
        let endpoint = Endpoint { base: base.into(), token_file: token.path().into(), ca_file: None };
        Reporter::with_timing(endpoint, "ml", "cats-exp", test_timing())
    }

    fn test_timing() -> Timing {
        Timing {
            min_interval: Duration::from_millis(300),
            heartbeat: Duration::from_millis(900),
            first_retry: Duration::from_millis(50),
            max_retry: Duration::from_millis(200),
            final_wait: Duration::from_secs(1),
        }
    }

    fn token() -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "projected-token\n").unwrap();
        file
    }

    #[test]
    fn reports_carry_the_token_and_retry_until_the_server_takes_the_final_one() {
        let (base, requests) = server::<TrainerReport>(vec![503, 503]);
        let token = token();
        let reporter = reporter(&base, &token);
        let mut last = progress("Trial", 99);
        last.status.best_model =
            Some(ocellus_crds::experiment::BestModel { score: Some(0.9), ..Default::default() });
        last.final_ = true;
        assert!(reporter.finish(last));
        let seen: Vec<_> = requests.try_iter().collect();
        assert_eq!(seen.len(), 3, "two refusals, then accepted");
        let (path, auth, report) = &seen[2];
        assert_eq!(path, "/v1/namespaces/ml/experiments/cats-exp/report");
        assert_eq!(auth, "Bearer projected-token");
        assert!(report.final_ && report.status.best_model.as_ref().unwrap().score == Some(0.9));
    }

    /// A Dataset's report has no `final` flag: `finish` returns once it is delivered, not after
    /// the whole wait (every import used to take two minutes longer in a cluster).
    #[test]
    fn finish_returns_once_a_datasets_report_is_delivered() {
        let (base, requests) = server::<DatasetReport>(vec![]);
        let token = token();
        let endpoint = Endpoint { base, token_file: token.path().into(), ca_file: None };
        let timing = Timing { final_wait: Duration::from_secs(60), ..test_timing() };
        let reporter = Reporter::<DatasetReport>::with_timing(endpoint, "ml", "photos", timing);
        let started = Instant::now();
        assert!(reporter.finish(DatasetReport { rows: Some(12), ..Default::default() }));
        assert!(started.elapsed() < Duration::from_secs(10), "finish waited {:?}", started.elapsed());
        let (path, _, report) = requests.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(path, "/v1/namespaces/ml/datasets/photos/report");
        assert_eq!(report.rows, Some(12));
    }

    #[test]
    fn progress_within_a_stage_is_throttled_and_a_new_stage_goes_at_once() {
        let (base, requests) = server::<TrainerReport>(vec![]);
        let token = token();
        let reporter = reporter(&base, &token);
        for percent in 0..20 {
            reporter.send(progress("Embedding", percent));
        }
        std::thread::sleep(Duration::from_millis(100));
        reporter.send(progress("Fitting", 50));
        let first = requests.recv_timeout(Duration::from_secs(5)).unwrap().2;
        let second = requests.recv_timeout(Duration::from_secs(5)).unwrap().2;
        assert_eq!(first.stage().as_deref(), Some("Embedding"));
        assert_eq!(second.stage().as_deref(), Some("Fitting"), "the new stage did not wait for the interval");
        // Then quiet: the heartbeat repeats what was sent.
        let heartbeat = requests.recv_timeout(Duration::from_secs(5)).unwrap().2;
        assert_eq!(heartbeat.status.progress.unwrap().percent, 50);
        assert!(requests.try_iter().count() <= 1, "no more than the heartbeat");
    }

    #[test]
    fn a_dead_server_never_blocks_the_work_and_finish_gives_up_in_time() {
        let token = token();
        // Nothing listens on this port (it was just free).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let reporter = reporter(&format!("http://127.0.0.1:{port}"), &token);
        let started = Instant::now();
        for percent in 0..1000 {
            reporter.send(progress("Embedding", percent % 100));
        }
        assert!(started.elapsed() < Duration::from_millis(500), "send must not wait for the network");
        let delivered = reporter.finish(TrainerReport { final_: true, ..Default::default() });
        assert!(!delivered && started.elapsed() < Duration::from_secs(5));
    }
}
