//! Reading and dropping what a client is still sending before answering early.
//!
//! hyper closes a connection whose request body was left unread; a client still
//! uploading then sees a reset instead of our 401, 413 or 429. Like a web
//! server's lingering close, we read on (within bounds) and then answer.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

/// What a refused request may still send before we answer anyway.
const MAX_DRAIN_BYTES: u64 = 64 << 20;
const MAX_DRAIN_TIME: Duration = Duration::from_secs(10);

/// Drains the rest of a body stream (a request body, a multipart field).
pub async fn discard<E>(mut rest: impl Stream<Item = Result<Bytes, E>> + Unpin) {
    let drain = async {
        let mut drained = 0u64;
        while let Some(Ok(chunk)) = rest.next().await {
            drained += chunk.len() as u64;
            if drained > MAX_DRAIN_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(MAX_DRAIN_TIME, drain).await;
}

pub async fn discard_body(body: Body) {
    discard(body.into_data_stream()).await;
}
