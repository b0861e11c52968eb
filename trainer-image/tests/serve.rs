//! `ocellus serve` as a client sees it: the KServe v2 REST protocol over real HTTP, on the
//! bundles of real runs (photo-prices regression, digits classification), checked against the
//! predictions the runs wrote.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{repo, run, test_set, text};
use ocellus_trainer::error::EXIT_BAD_INPUT;
use serde_json::{Map, Value, json};

/// A running `ocellus serve` on a free loopback port.
struct Server {
    child: Child,
    stdout: BufReader<ChildStdout>,
    address: SocketAddr,
}

impl Server {
    fn start(bundle: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ocellus"))
            .args(["serve", "--bundle", bundle.to_str().unwrap(), "--address", "127.0.0.1:0", "--cpu"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let address = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("first line {line:?}"))
            .parse()
            .unwrap();
        let server = Server { child, stdout, address };
        // Liveness answers while the bundle loads; readiness once it is loaded.
        assert_eq!(server.get("/v2/health/live").0, 200);
        let started = Instant::now();
        while server.get("/v2/health/ready").0 != 200 {
            assert!(started.elapsed() < Duration::from_secs(120), "not ready within 2 minutes");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    fn get(&self, path: &str) -> (u16, String) {
        http(self.address, "GET", path, &[], b"")
    }

    fn infer(&self, model: &str, body: &Value) -> (u16, Value) {
        let path = format!("/v2/models/{model}/infer");
        let (code, body) = http(self.address, "POST", &path, &[], body.to_string().as_bytes());
        (code, serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")))
    }

    /// SIGTERM, as Kubernetes stops a pod: the server must exit 0 and say so.
    fn terminate(mut self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "exit {exit:?} after SIGTERM; stdout: {rest}");
        assert!(rest.contains("stopped"), "{rest}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 exchange (`Connection: close`): the status code and the body.
fn http(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or_else(|| panic!("{response}"));
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding: chunked"), "{head}");
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_owned())
}

/// The test rows of an imported dataset as v2 inputs named by the model's metadata, images as
/// base64 of their files: what a client holding the files sends.
fn request_for(dataset: &Path, metadata: &Value, rows: std::ops::Range<usize>) -> Value {
    let table = std::fs::read_to_string(dataset.join("table.jsonl")).unwrap();
    let table: Vec<Map<String, Value>> =
        table.lines().map(|l| serde_json::from_str(l).unwrap()).collect::<Vec<_>>()[rows].to_vec();
    let inputs: Vec<Value> = metadata["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|input| {
            let name = input["name"].as_str().unwrap();
            let datatype = input["datatype"].as_str().unwrap();
            let data: Vec<Value> = table
                .iter()
                .map(|row| match &row[name] {
                    Value::String(path) if is_image(dataset, path) => Value::String(
                        base64::engine::general_purpose::STANDARD
                            .encode(std::fs::read(dataset.join(path)).unwrap()),
                    ),
                    other => other.clone(),
                })
                .collect();
            json!({"name": name, "datatype": datatype, "shape": [data.len()], "data": data})
        })
        .collect();
    json!({"id": "test-rows", "inputs": inputs})
}

fn is_image(dataset: &Path, cell: &str) -> bool {
    (cell.ends_with(".png") || cell.ends_with(".jpg")) && dataset.join(cell).is_file()
}

/// predictions.csv of a run, as columns.
fn predictions_csv(out: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_path(out.join("predictions.csv")).unwrap();
    let header = reader.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = reader.records().map(|r| r.unwrap().iter().map(str::to_owned).collect()).collect();
    (header, rows)
}

fn output<'a>(response: &'a Value, name: &str) -> &'a Vec<Value> {
    let outputs = response["outputs"].as_array().unwrap_or_else(|| panic!("{response}"));
    let found = outputs.iter().find(|o| o["name"] == name).unwrap_or_else(|| panic!("no {name}: {response}"));
    found["data"].as_array().unwrap()
}

/// A score within 1e-6 (relative) of the run's: the server batches rows differently.
fn assert_close(served: f64, written: &str, what: &str) {
    let written: f64 = written.parse().unwrap();
    assert!(
        (served - written).abs() <= 1e-6 * written.abs().max(1.0),
        "{what}: served {served}, run wrote {written}"
    );
}

fn error_of(response: &Value) -> &str {
    response["error"].as_str().unwrap_or_else(|| panic!("no error message: {response}"))
}

fn metric_value(metrics: &str, series: &str) -> f64 {
    let line = metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{metrics}"));
    line[series.len()..].trim().parse().unwrap()
}

#[test]
fn a_regression_bundle_answers_the_v2_protocol_as_predict_would() {
    test_set("photo-prices");
    let out = tempfile::tempdir().unwrap();
    run(&repo().join("examples/local/photo-prices.yaml"), out.path());
    // A long latency cap, so that the concurrent requests below are certain to share batches.
    let server =
        Server::start(&out.path().join("scoring"), &["--max-latency-ms", "300", "--max-batch-size", "8"]);

    let (code, body) = server.get("/v2");
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["name"], "ocellus");
    assert_eq!(server.get("/v2/models/photo-prices/ready").0, 200);
    let (code, body) = server.get("/v2/models/photo-prices");
    assert_eq!(code, 200, "{body}");
    let metadata: Value = serde_json::from_str(&body).unwrap();
    let inputs: Vec<(&str, &str)> = metadata["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["name"].as_str().unwrap(), i["datatype"].as_str().unwrap()))
        .collect();
    assert_eq!(
        inputs,
        [("photo", "BYTES"), ("mileage", "FP64"), ("color", "BYTES"), ("description", "BYTES")]
    );
    assert_eq!(metadata["outputs"], json!([{"name": "prediction", "datatype": "FP64", "shape": [-1]}]));

    // The whole test set in one request: the run's predictions, in order, id echoed.
    let dataset = out.path().join("datasets/photo-prices-test");
    let (_, written) = predictions_csv(out.path());
    let (code, response) = server.infer("photo-prices", &request_for(&dataset, &metadata, 0..written.len()));
    assert_eq!(code, 200, "{response}");
    assert_eq!(response["id"], "test-rows");
    assert_eq!(response["model_name"], "photo-prices");
    let served = output(&response, "prediction");
    assert_eq!(served.len(), written.len());
    for (row, (served, written)) in served.iter().zip(&written).enumerate() {
        assert_close(served.as_f64().unwrap(), &written[0], &format!("row {row}"));
    }

    // Single-row requests from concurrent clients are batched together and each gets its own row.
    let concurrent = 8;
    let batches_before = metric_value(&server.get("/metrics").1, "ocellus_serve_batch_size_rows_count");
    let answers: Vec<(usize, u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..concurrent)
            .map(|row| {
                let request = request_for(&dataset, &metadata, row..row + 1);
                let server = &server;
                scope.spawn(move || {
                    let (code, response) = server.infer("photo-prices", &request);
                    (row, code, response)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (row, code, response) in &answers {
        assert_eq!(*code, 200, "{response}");
        let served = output(response, "prediction");
        assert_eq!(served.len(), 1);
        assert_close(served[0].as_f64().unwrap(), &written[*row][0], &format!("row {row} alone"));
    }
    let metrics = server.get("/metrics").1;
    let batches = metric_value(&metrics, "ocellus_serve_batch_size_rows_count") - batches_before;
    assert!(batches < concurrent as f64, "{concurrent} concurrent requests scored in {batches} batches");

    // Bad requests: 400 with a message that says what to send; nothing is scored.
    let good = request_for(&dataset, &metadata, 0..2);
    let with_input = |index: usize, change: &dyn Fn(&mut Value)| {
        let mut request = good.clone();
        change(&mut request["inputs"][index]);
        request
    };
    let photo_path = dataset.join(
        serde_json::from_str::<Value>(
            std::fs::read_to_string(dataset.join("table.jsonl")).unwrap().lines().next().unwrap(),
        )
        .unwrap()["photo"]
            .as_str()
            .unwrap(),
    );
    let mut unknown = good.clone();
    unknown["inputs"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "price", "datatype": "FP64", "shape": [2], "data": [1, 2]}));
    let mut twice = good.clone();
    let mileage = twice["inputs"][1].clone();
    twice["inputs"].as_array_mut().unwrap().push(mileage);
    let mut missing = good.clone();
    missing["inputs"].as_array_mut().unwrap().remove(2);
    let mut unknown_output = good.clone();
    unknown_output["outputs"] = json!([{"name": "p_cat"}]);
    let mut unknown_field = good.clone();
    unknown_field["parameterz"] = json!({});
    let empty = json!({"inputs": [
        {"name": "photo", "datatype": "BYTES", "shape": [0], "data": []},
        {"name": "mileage", "datatype": "FP64", "shape": [0], "data": []},
        {"name": "color", "datatype": "BYTES", "shape": [0], "data": []},
        {"name": "description", "datatype": "BYTES", "shape": [0], "data": []},
    ]});
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "an input that is not a column",
            unknown,
            "input \"price\" is not a column of this model; its inputs are photo, mileage, color, description",
        ),
        ("an input given twice", twice, "input \"mileage\" is given twice"),
        ("a missing input", missing, "missing input(s) color"),
        (
            "a wrong datatype",
            with_input(1, &|i| i["datatype"] = json!("BYTES")),
            "input \"mileage\" has datatype BYTES, but column \"mileage\" is Numeric: send it as FP64",
        ),
        (
            "a shape of two dimensions",
            with_input(1, &|i| i["shape"] = json!([1, 2])),
            "send one element per row, shape [rows] or [rows, 1]",
        ),
        (
            "fewer elements than the shape",
            with_input(1, &|i| i["shape"] = json!([3])),
            "input \"mileage\" has 2 elements but shape [3] says 3",
        ),
        (
            "rows that disagree",
            with_input(1, &|i| {
                i["shape"] = json!([1]);
                i["data"] = json!([5]);
            }),
            "every input needs one element per row",
        ),
        (
            "a string for a number",
            with_input(1, &|i| i["data"] = json!(["far", 1])),
            "input \"mileage\", row 0: \"far\" is not a number",
        ),
        ("no rows", empty, "the request has no rows"),
        (
            "an unknown output",
            unknown_output,
            "output \"p_cat\" is not an output of this model; its outputs are prediction",
        ),
        ("an unknown request field", unknown_field, "not a KServe v2 inference request"),
        (
            "an image that is not an image",
            with_input(0, &|i| {
                i["data"][1] =
                    json!(base64::engine::general_purpose::STANDARD.encode(b"not a picture at all"))
            }),
            "not a readable image",
        ),
        (
            "a path on the server",
            with_input(0, &|i| i["data"][0] = json!(photo_path.display().to_string())),
            "a server never reads its own files",
        ),
    ];
    for (what, request, message) in &cases {
        let (code, response) = server.infer("photo-prices", request);
        assert_eq!(code, 400, "{what}: {response}");
        assert!(error_of(&response).contains(message), "{what}: {:?} lacks {message:?}", error_of(&response));
    }
    let (code, body) = http(server.address, "POST", "/v2/models/photo-prices/infer", &[], b"{not json");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("not a KServe v2 inference request"), "{body}");
    let (code, body) = http(
        server.address,
        "POST",
        "/v2/models/photo-prices/infer",
        &[("Inference-Header-Content-Length", "10")],
        good.to_string().as_bytes(),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("binary tensor extension is not supported"), "{body}");
    let (code, response) = server.infer("digits", &good);
    assert_eq!(code, 404, "{response}");
    assert!(error_of(&response).contains("this server serves \"photo-prices\""), "{response}");

    // A bad image does not fail the good request batched beside it.
    let bad = with_input(0, &|i| i["data"][1] = json!("aGVsbG8="));
    let (good_answer, bad_answer) = std::thread::scope(|scope| {
        let good = scope.spawn(|| server.infer("photo-prices", &request_for(&dataset, &metadata, 0..1)));
        let bad = scope.spawn(|| server.infer("photo-prices", &bad));
        (good.join().unwrap(), bad.join().unwrap())
    });
    assert_eq!(good_answer.0, 200, "{}", good_answer.1);
    assert_close(
        output(&good_answer.1, "prediction")[0].as_f64().unwrap(),
        &written[0][0],
        "row 0 beside a bad one",
    );
    assert_eq!(bad_answer.0, 400, "{}", bad_answer.1);

    // The repository's client (examples/serving/client.py) on the test rows as a CSV.
    let rows_csv = out.path().join("test-rows.csv");
    common::rows_as_csv(&dataset, &rows_csv, false);
    let client = Command::new("python3")
        .arg(repo().join("examples/serving/client.py"))
        .arg(format!("http://{}", server.address))
        .args(["photo-prices", rows_csv.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(client.status.success(), "{}", text(&client));
    let printed = String::from_utf8(client.stdout).unwrap();
    let mut lines = printed.lines();
    assert_eq!(lines.next(), Some("prediction"));
    let printed: Vec<&str> = lines.collect();
    assert_eq!(printed.len(), written.len());
    for (row, (printed, written)) in printed.iter().zip(&written).enumerate() {
        assert_close(printed.parse().unwrap(), &written[0], &format!("client, row {row}"));
    }

    let metrics = server.get("/metrics").1;
    assert!(
        metric_value(&metrics, "ocellus_serve_inference_requests_total{code=\"200\"}")
            >= (3 + concurrent) as f64
    );
    assert!(
        metric_value(&metrics, "ocellus_serve_inference_requests_total{code=\"400\"}")
            >= (cases.len() + 3) as f64
    );
    assert!(metric_value(&metrics, "ocellus_serve_scored_rows_total") >= (written.len() + concurrent) as f64);
    assert!(metrics.contains("ocellus_serve_inference_request_duration_seconds_bucket"), "{metrics}");
    server.terminate();
}

#[test]
fn a_classification_bundle_answers_labels_and_the_probabilities_asked_for() {
    test_set("digits");
    let out = tempfile::tempdir().unwrap();
    run(&repo().join("examples/local/digits.yaml"), out.path());
    let server = Server::start(
        &out.path().join("scoring"),
        &["--model-name", "digits-v1", "--max-request-bytes", "300000"],
    );
    let (code, body) = server.get("/v2/models/digits-v1");
    assert_eq!(code, 200, "{body}");
    let metadata: Value = serde_json::from_str(&body).unwrap();
    let outputs: Vec<&str> =
        metadata["outputs"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(outputs, ["prediction", "p_0", "p_1", "p_2", "p_3", "p_4", "p_5", "p_6", "p_7", "p_8", "p_9"]);
    assert_eq!(metadata["outputs"][0]["datatype"], "BYTES");

    let dataset = out.path().join("datasets/digits-test");
    let (header, written) = predictions_csv(out.path());
    let (code, response) = server.infer("digits-v1", &request_for(&dataset, &metadata, 0..written.len()));
    assert_eq!(code, 200, "{response}");
    for (column, name) in header.iter().enumerate() {
        let served = output(&response, name);
        for (row, (served, written)) in served.iter().zip(&written).enumerate() {
            match served {
                Value::String(label) => assert_eq!(label, &written[column], "{name}, row {row}"),
                number => {
                    assert_close(number.as_f64().unwrap(), &written[column], &format!("{name}, row {row}"))
                }
            }
        }
    }

    // Only the outputs asked for.
    let mut request = request_for(&dataset, &metadata, 0..3);
    request["outputs"] = json!([{"name": "p_7"}, {"name": "prediction"}]);
    let (code, response) = server.infer("digits-v1", &request);
    assert_eq!(code, 200, "{response}");
    let names: Vec<&str> =
        response["outputs"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["prediction", "p_7"]);
    assert_eq!(server.get("/v2/models/digits/ready").0, 404, "the name given replaces the experiment's");

    // A body over --max-request-bytes: 413, in the protocol's error shape.
    let big = json!({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["A".repeat(400_000)]}]});
    let (code, response) = server.infer("digits-v1", &big);
    assert_eq!(code, 413, "{response}");
    assert!(error_of(&response).contains("send fewer rows per request"), "{response}");
    server.terminate();
}

#[test]
fn a_bundle_that_cannot_be_loaded_stops_the_server_with_what_to_pass() {
    let missing = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ocellus"))
        .args(["serve", "--bundle", missing.path().to_str().unwrap(), "--address", "127.0.0.1:0", "--cpu"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(EXIT_BAD_INPUT), "{}", text(&output));
    assert!(text(&output).contains("is not a scoring bundle (no bundle.json)"), "{}", text(&output));

    let output = Command::new(env!("CARGO_BIN_EXE_ocellus"))
        .args(["serve", "--bundle", missing.path().to_str().unwrap(), "--max-batch-size", "0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(EXIT_BAD_INPUT), "{}", text(&output));
    assert!(text(&output).contains("--max-batch-size must be at least 1"), "{}", text(&output));
}
