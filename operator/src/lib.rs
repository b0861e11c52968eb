//! The Ocellus operator: a controller per resource (Dataset, Experiment), each owning its
//! Jobs; the Job builders and the Job-state mapping are pure functions; trainer pods report
//! to a status server; metrics and health on their own port.

pub mod artifacts_cleanup;
pub mod config;
pub mod context;
pub mod dataset_controller;
pub mod error;
pub mod experiment_controller;
pub mod job_state;
pub mod jobs;
pub mod kueue;
pub mod metrics;
pub mod names;
pub mod results;
pub mod run;
pub mod status;
pub mod status_certificate;
pub mod status_server;
pub mod status_tls;
pub mod store;
mod trainer_pod;
pub mod validate;
pub mod web;

#[cfg(test)]
mod controller_tests;
#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod mock;
#[cfg(test)]
mod rbac_tests;
#[cfg(test)]
mod status_server_tests;
