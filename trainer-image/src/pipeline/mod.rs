//! The two pipelines an Experiment can run.

pub mod embeddings;
