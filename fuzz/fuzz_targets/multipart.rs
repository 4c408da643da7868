//! A submit request's multipart body through the reader the submit routes
//! use: the file streamed to disk within the upload limit, text fields capped.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Request, header};
use libfuzzer_sys::fuzz_target;
use whospoke::server::routes::read_multipart;

/// The boundary the seeds use.
const BOUNDARY: &str = "whospoke-fuzz";
/// The server's default upload limit.
const MAX_UPLOAD_BYTES: u64 = 2 << 30;

struct Harness {
    runtime: tokio::runtime::Runtime,
    uploads: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| Harness {
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime"),
        uploads: tempfile::tempdir().expect("an upload directory"),
    })
}

fuzz_target!(|data: &[u8]| {
    let harness = harness();
    let request = Request::post("/api/v1/speaker/extract")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .header(header::CONTENT_LENGTH, data.len())
        .body(Body::from(data.to_vec()))
        .expect("a request");
    let mut fields = HashMap::new();
    let upload = harness.runtime.block_on(read_multipart(
        request,
        MAX_UPLOAD_BYTES,
        harness.uploads.path(),
        &mut fields,
    ));
    // Dropping the upload deletes its file, as a refused submit does.
    drop(upload);
});
