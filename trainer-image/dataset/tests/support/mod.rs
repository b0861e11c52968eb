//! Real servers for the integration tests, started on 127.0.0.1 and stopped on drop.
// Each test binary uses part of the support code.
#![allow(dead_code)]

pub mod fixtures;
pub mod http_server;
pub mod s3s;
