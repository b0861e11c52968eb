//! A real HTTP server on 127.0.0.1 (tiny_http) with the endpoints the fetch tests need, and a
//! count of the requests it received. Stops when dropped.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tiny_http::{Header, Request, Response, Server};

/// How long `/slow` waits before answering: longer than any test's timeout.
pub const SLOW_DELAY: Duration = Duration::from_secs(5);
/// How many 503s `/flaky` answers before it succeeds.
pub const FLAKY_FAILURES: usize = 2;
/// `/trickle` sends `big` in pieces of this size, pausing before each.
pub const TRICKLE_PIECE: usize = 8 * 1024;
pub const TRICKLE_PAUSE: Duration = Duration::from_millis(50);
/// The server stops by itself after this long, should a test never drop it.
const LIFETIME: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(10);

/// Endpoints:
/// - `/files/<name>`: a file with a truthful Content-Length, after `file_delay`;
/// - `/slow`: answers after [`SLOW_DELAY`];
/// - `/missing` (and anything unknown): 404;
/// - `/big`: `big` with a truthful Content-Length; `/big-chunked`: the same, chunked, no length;
/// - `/trickle`: `big`, [`TRICKLE_PIECE`] bytes per [`TRICKLE_PAUSE`], never idle for long;
/// - `/flaky`: 503 [`FLAKY_FAILURES`] times, then the file `flaky.png`;
/// - `/down`: always 503.
pub struct TestServer {
    base_url: String,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
pub struct Content {
    pub files: HashMap<String, Vec<u8>>,
    pub big: Vec<u8>,
    pub file_delay: Duration,
}

struct State {
    content: Content,
    requests: Mutex<HashMap<String, usize>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    stop: AtomicBool,
}

impl TestServer {
    pub fn start(content: Content) -> Self {
        let server = Server::http("127.0.0.1:0").expect("bind a test HTTP server on 127.0.0.1");
        let port = server.server_addr().to_ip().expect("an IP listener").port();
        let state = Arc::new(State {
            content,
            requests: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let thread = std::thread::spawn({
            let state = Arc::clone(&state);
            move || serve(&server, &state)
        });
        Self { base_url: format!("http://127.0.0.1:{port}"), state, thread: Some(thread) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Requests received for `path`.
    pub fn requests(&self, path: &str) -> usize {
        self.state.requests.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    pub fn total_requests(&self) -> usize {
        self.state.requests.lock().unwrap().values().sum()
    }

    /// The most `/files/` requests that were being answered at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(server: &Server, state: &Arc<State>) {
    let deadline = Instant::now() + LIFETIME;
    let mut handlers = Vec::new();
    while !state.stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        match server.recv_timeout(POLL) {
            Ok(Some(request)) => {
                let state = Arc::clone(state);
                handlers.push(std::thread::spawn(move || answer(request, &state)));
            }
            Ok(None) => {}
            Err(_) => break,
        }
    }
    state.stop.store(true, Ordering::SeqCst);
    for handler in handlers {
        let _ = handler.join();
    }
}

fn answer(request: Request, state: &Arc<State>) {
    let path = request.url().split('?').next().unwrap_or_default().to_owned();
    let seen = {
        let mut requests = state.requests.lock().unwrap();
        let count = requests.entry(path.clone()).or_default();
        *count += 1;
        *count
    };
    let content = &state.content;
    // The client may have given up already; a failed respond is expected then.
    let _ = match path.as_str() {
        "/slow" => {
            sleep_unless_stopped(SLOW_DELAY, state);
            request.respond(Response::from_string("too late"))
        }
        "/big" => request.respond(with_length(content.big.clone())),
        "/big-chunked" => {
            let length = None;
            request.respond(Response::new(200.into(), vec![], Cursor::new(content.big.clone()), length, None))
        }
        "/trickle" => {
            let trickle = Trickle { bytes: content.big.clone(), sent: 0, state: Arc::clone(state) };
            let length = Some(content.big.len());
            request.respond(Response::new(200.into(), vec![], trickle, length, None))
        }
        "/flaky" if seen <= FLAKY_FAILURES => request.respond(Response::empty(503)),
        "/flaky" => request.respond(with_length(content.files["flaky.png"].clone())),
        "/down" => request.respond(Response::empty(503)),
        _ => match path.strip_prefix("/files/").and_then(|name| content.files.get(name)) {
            Some(bytes) => {
                let _in_flight = InFlight::enter(state);
                sleep_unless_stopped(content.file_delay, state);
                request.respond(with_length(bytes.clone()))
            }
            None => request.respond(Response::empty(404)),
        },
    };
}

/// A response with a Content-Length header, however large (tiny_http would chunk past 32 KiB).
fn with_length(bytes: Vec<u8>) -> Response<Cursor<Vec<u8>>> {
    let content_type: Header = "Content-Type: application/octet-stream".parse().unwrap();
    Response::from_data(bytes).with_header(content_type).with_chunked_threshold(usize::MAX)
}

fn sleep_unless_stopped(duration: Duration, state: &State) {
    let until = Instant::now() + duration;
    while Instant::now() < until && !state.stop.load(Ordering::SeqCst) {
        std::thread::sleep(POLL);
    }
}

struct InFlight<'a>(&'a State);

impl<'a> InFlight<'a> {
    fn enter(state: &'a State) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A body that arrives slowly but steadily.
struct Trickle {
    bytes: Vec<u8>,
    sent: usize,
    state: Arc<State>,
}

impl std::io::Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.sent.is_multiple_of(TRICKLE_PIECE) && self.sent < self.bytes.len() {
            sleep_unless_stopped(TRICKLE_PAUSE, &self.state);
        }
        let piece_left = TRICKLE_PIECE - self.sent % TRICKLE_PIECE;
        let n = buf.len().min(piece_left).min(self.bytes.len() - self.sent);
        buf[..n].copy_from_slice(&self.bytes[self.sent..self.sent + n]);
        self.sent += n;
        Ok(n)
    }
}
