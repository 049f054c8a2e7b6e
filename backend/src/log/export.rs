//! `GET /log/export`: every retained record that matches a filter, as
//! NDJSON, oldest first, streamed a chunk at a time from the files so memory
//! stays bounded whatever the size.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::error::LogError;
use super::filter::Filter;
use super::{Log, MAX_EXPORTS};

/// Bytes of records sent in one chunk of the answer.
const CHUNK_BYTES: usize = 1024 * 1024;
/// Chunks read ahead of a slow reader, at most.
const CHUNKS_AHEAD: usize = 4;

/// `GET /log/export`: matching records as NDJSON, oldest first.
pub(super) async fn export(State(log): State<Log>, Query(filter): Query<Filter>) -> Result<Response, LogError> {
    let matcher = filter.matcher()?;
    // Checked as for `GET /log`, though an export takes every record.
    filter.limit()?;
    let takes_all = filter.takes_all();
    let turn = log
        .exports
        .clone()
        .try_acquire_owned()
        .map_err(|_| LogError::Busy(format!("too many exports are running (at most {MAX_EXPORTS})")))?;
    let (send, receive) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(CHUNKS_AHEAD);
    let store = log.store.clone();
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let keep = |r: &gradebook_shared::log::LogRecord| matcher.matches(r);
        let keep: Option<&dyn Fn(&gradebook_shared::log::LogRecord) -> bool> =
            if takes_all { None } else { Some(&keep) };
        let read = store.export(matcher.after(), matcher.range(), CHUNK_BYTES, keep, |chunk| {
            send.blocking_send(Ok(Bytes::from(chunk))).is_ok()
        });
        if let Err(e) = read {
            tracing::error!(error = %e, "reading the log for an export failed");
            let _ = send.blocking_send(Err(e));
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(receive));
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}
