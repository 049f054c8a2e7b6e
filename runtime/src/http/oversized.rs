//! Answering a body declared larger than the route's limit with a 413 that
//! a plain client can read: one that writes its whole body before it reads
//! gets a reset instead if the connection closes on bytes still unread, so
//! the body is read and discarded first (a lingering close), up to a bound
//! and a deadline. A client that sent `Expect: 100-continue` is answered
//! before it sends anything.

use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::json::error;

/// Most bytes of a refused body read and discarded before the connection
/// closes anyway.
const DRAIN_BYTES: u64 = 64 * 1024 * 1024;
/// Longest time spent reading a refused body.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// The declared length of `request`'s body, when it is over `limit`.
pub(super) fn declared_over(request: &Request, limit: usize) -> Option<u64> {
    let length = request.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.parse::<u64>().ok()?;
    (length > limit as u64).then_some(length)
}

/// The 413 for `request`, its body drained first unless the client waits
/// for a go-ahead it will not get.
pub(super) async fn refuse(request: Request, length: u64, limit: usize) -> Response {
    let expects =
        request.headers().get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !expects && length <= DRAIN_BYTES {
        let _ = tokio::time::timeout(DRAIN_TIME, drain(request.into_body())).await;
    }
    let mut response = error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over the limit of {limit} bytes"));
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Reads `body` to its end (or its first error), keeping nothing.
async fn drain(mut body: Body) {
    let mut read = 0u64;
    while let Some(Ok(frame)) = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await {
        read += frame.data_ref().map_or(0, |d| d.len() as u64);
        if read > DRAIN_BYTES {
            return;
        }
    }
}
