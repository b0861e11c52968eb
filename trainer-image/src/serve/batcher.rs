//! Dynamic batching: one thread owns the scoring bundle and scores the rows of every request
//! that arrived within the latency cap (or until a batch is full) in one pass, so concurrent
//! single-row requests share a forward pass of the network.

use std::ops::Range;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use ocellus_tabular::metrics::Predictions;
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::metrics::Metrics;
use crate::Error;
use crate::bundle::ScoringBundle;
use crate::embed::EmbedOptions;
use crate::error::EXIT_FAILURE;
use crate::image_cells::ImageCells;

/// The rows of one request, and where their predictions go.
pub struct Job {
    pub rows: Vec<Map<String, Value>>,
    pub queued: Instant,
    pub reply: oneshot::Sender<Result<Predictions, ScoreError>>,
}

/// Why a request's rows could not be scored.
#[derive(Debug, Clone)]
pub enum ScoreError {
    /// The request's fault (a cell that is no image, an unreachable URL): a 400.
    BadRequest(String),
    /// The server's fault: a 500.
    Internal(String),
}

impl From<Error> for ScoreError {
    fn from(error: Error) -> Self {
        if error.exit_code() == EXIT_FAILURE {
            Self::Internal(error.to_string())
        } else {
            Self::BadRequest(error.to_string())
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct BatchPolicy {
    /// Rows per pass; a request with more rows is scored alone.
    pub max_rows: usize,
    /// How long the first request of a batch may wait for others.
    pub max_wait: Duration,
}

pub struct Batcher<'a> {
    pub bundle: &'a ScoringBundle,
    pub cells: &'a ImageCells,
    pub policy: BatchPolicy,
    pub metrics: &'a Metrics,
}

impl Batcher<'_> {
    /// Scores jobs until every sender is dropped and the queue is empty (graceful shutdown).
    pub fn run(&self, jobs: &Receiver<Job>) {
        let mut held: Option<Job> = None;
        loop {
            let first = match held.take() {
                Some(job) => job,
                None => match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                },
            };
            let deadline = first.queued + self.policy.max_wait;
            let mut rows = first.rows.len();
            let mut batch = vec![first];
            while rows < self.policy.max_rows {
                let wait = deadline.saturating_duration_since(Instant::now());
                let job = match jobs.recv_timeout(wait) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                };
                if rows + job.rows.len() > self.policy.max_rows {
                    held = Some(job);
                    break;
                }
                rows += job.rows.len();
                batch.push(job);
            }
            self.score(batch);
        }
    }

    fn score(&self, batch: Vec<Job>) {
        let mut ranges: Vec<Range<usize>> = Vec::with_capacity(batch.len());
        let mut rows = Vec::new();
        let mut replies = Vec::with_capacity(batch.len());
        for job in batch {
            ranges.push(rows.len()..rows.len() + job.rows.len());
            rows.extend(job.rows);
            replies.push(job.reply);
        }
        match self.predict(&rows) {
            Ok(predictions) => {
                for (range, reply) in ranges.into_iter().zip(replies) {
                    let _ = reply.send(Ok(slice(&predictions, range)));
                }
            }
            Err(error) if replies.len() == 1 => {
                let _ = replies.pop().expect("one").send(Err(error));
            }
            // One bad request must not fail the others: each is scored again alone.
            Err(_) => {
                for (range, reply) in ranges.into_iter().zip(replies) {
                    let _ = reply.send(self.predict(&rows[range]));
                }
            }
        }
    }

    fn predict(&self, rows: &[Map<String, Value>]) -> Result<Predictions, ScoreError> {
        self.metrics.observe_batch(rows.len());
        let options = EmbedOptions { batch_size: self.policy.max_rows.max(1), ..EmbedOptions::default() };
        Ok(self.bundle.predict(rows, self.cells, &options, &ProgressBar::hidden())?)
    }
}

fn slice(predictions: &Predictions, range: Range<usize>) -> Predictions {
    match predictions {
        Predictions::Regression(values) => Predictions::Regression(values[range].to_vec()),
        Predictions::Probabilities { classes, data } => Predictions::Probabilities {
            classes: *classes,
            data: data[range.start * classes..range.end * classes].to_vec(),
        },
    }
}
