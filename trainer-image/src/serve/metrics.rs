//! The server's Prometheus metrics, prefixed `ocellus_serve_`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: u16,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<CodeLabel, Counter>,
    latency: Histogram,
    batch_rows: Histogram,
    rows: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ocellus_serve");
        let requests = Family::<CodeLabel, Counter>::default();
        // 1 ms to about 16 s.
        let latency = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let batch_rows = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        let rows = Counter::default();
        registry.register(
            "inference_requests",
            "Inference requests answered, by HTTP status",
            requests.clone(),
        );
        registry.register(
            "inference_request_duration_seconds",
            "Time from an inference request's arrival to its answer",
            latency.clone(),
        );
        registry.register("batch_size_rows", "Rows scored in one pass of the model", batch_rows.clone());
        registry.register("scored_rows", "Rows sent through the model", rows.clone());
        Self { registry, requests, latency, batch_rows, rows }
    }
}

impl Metrics {
    pub fn observe_request(&self, code: u16, seconds: f64) {
        self.requests.get_or_create(&CodeLabel { code }).inc();
        self.latency.observe(seconds);
    }

    pub fn observe_batch(&self, rows: usize) {
        self.batch_rows.observe(rows as f64);
        self.rows.inc_by(rows as u64);
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String");
        text
    }
}
