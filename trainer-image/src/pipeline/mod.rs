//! The two pipelines an Experiment can run.

pub mod auto_image;
pub mod embeddings;
