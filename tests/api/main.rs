//! Integration tests for the batch REST API (issue 3), live streaming (issue 4) and WebRTC ingest (issue 5): the real `whospoke serve` binary on
//! loopback, real audio (tests/data/sample.wav: 30 s, two speakers), no mocks.
//!
//! Every test starts its own server on a free port with a fresh data directory
//! (`server.rs`); `whospoke admin` makes its users.

mod audio;
mod checks;
mod client;
mod media;
mod pytest;
mod server;

mod auth;
mod downloads;
mod durability;
mod errors;
mod jobs;
mod ops;
mod python_client;
mod sdk;
mod storage;
mod stream;
mod url_ingest;
mod web;
mod whip;
