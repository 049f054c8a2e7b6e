//! The log service's live tail as the portal relays it: chunk by chunk,
//! ending when the log service goes quiet for longer than its keep-alives
//! allow, or when the portal shuts down.

use std::pin::Pin;
use std::time::Duration;

use axum::body::Bytes;
use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;

/// The log service sends a keep-alive every 15 s on a quiet tail; three
/// missed in a row means it hangs.
pub const STREAM_IDLE: Duration = Duration::from_secs(45);

/// The live log tail as the portal passes it on.
pub type LogStream = Pin<Box<dyn Stream<Item = Result<Bytes, reqwest::Error>> + Send>>;

/// `upstream` until it ends, stays quiet for `idle`, or `shutdown` comes.
pub fn relay(
    upstream: impl Stream<Item = Result<Bytes, reqwest::Error>> + Send + 'static,
    idle: Duration,
    shutdown: CancellationToken,
) -> LogStream {
    Box::pin(futures::stream::unfold((Box::pin(upstream), shutdown), move |(mut upstream, shutdown)| async move {
        tokio::select! {
            next = tokio::time::timeout(idle, upstream.next()) => match next {
                Ok(Some(chunk)) => Some((chunk, (upstream, shutdown))),
                Ok(None) => None,
                Err(_) => {
                    tracing::warn!(?idle, "the log service's live tail went quiet; ending the relay");
                    None
                }
            },
            () = shutdown.cancelled() => None,
        }
    }))
}
