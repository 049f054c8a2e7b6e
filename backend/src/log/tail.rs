//! `GET /log/stream`: a live tail of new records that match a filter, as
//! Server-Sent Events; a reader too slow to keep up is told how much it
//! missed, and every tail ends when shutdown begins.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::error::LogError;
use super::filter::Filter;
use super::{Log, MAX_TAILS};

/// `GET /log/stream`: new matching records as Server-Sent Events.
pub(super) async fn stream(
    State(log): State<Log>,
    Query(filter): Query<Filter>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, LogError> {
    let matcher = filter.matcher()?;
    let tail = log
        .tails
        .clone()
        .try_acquire_owned()
        .map_err(|_| LogError::Busy(format!("too many live tails are open (at most {MAX_TAILS})")))?;
    let events = BroadcastStream::new(log.store.subscribe()).filter_map(move |item| {
        let _held = &tail;
        let event = match item {
            Ok(r) if matcher.matches(&r) => Some(
                Event::default()
                    .event("log")
                    .id(r.seq.to_string())
                    .data(serde_json::to_string(&*r).unwrap_or_default()),
            ),
            Ok(_) => None,
            // A slow reader is told how much it missed rather than stalling writers.
            Err(BroadcastStreamRecvError::Lagged(n)) => Some(Event::default().event("lagged").data(n.to_string())),
        };
        futures::future::ready(event.map(Ok))
    });
    let events = events.take_until(log.streams_end.clone().cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
