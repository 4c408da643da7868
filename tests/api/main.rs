//! Integration tests for the batch REST API (issue 3), live streaming (issue 4) and WebRTC ingest (issue 5): the real `whospoke serve` binary on
//! loopback, real audio (tests/data/sample.wav: 30 s, two speakers), no mocks.
//!
//! Every test starts its own server on a free port with a fresh data directory
//! (`server.rs`); `whospoke admin` makes its users. `cluster.rs` runs several nodes on one
//! PostgreSQL database (`postgres.rs`) and one S3 bucket (`s3.rs`, moto).

mod audio;
mod checks;
mod client;
mod media;
mod postgres;
mod pytest;
mod s3;
mod server;

mod auth;
mod billing;
mod cancel;
mod cluster;
mod database;
mod downloads;
mod durability;
mod errors;
mod jobs;
mod openapi;
mod ops;
mod python_client;
mod sdk;
mod storage;
mod stream;
mod url_ingest;
mod web;
mod webhooks;
mod whip;
