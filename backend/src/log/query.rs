//! `GET /log`: a page of the records that match a filter, from a cursor
//! (`after=`, `before=`, or the newest), bounded in count and bytes, read a
//! few at a time off the async runtime.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use gradebook_shared::log::LogRecord;

use super::error::LogError;
use super::filter::Filter;
use super::{Log, MAX_ANSWER_BYTES};

/// Header set when `after=` pointed before the oldest retained record: the
/// page starts from that record, whose seq the header carries.
pub const OLDEST_RETAINED: &str = "x-log-oldest-retained";

/// `GET /log`: the page of matching records, oldest first.
pub(super) async fn query(State(log): State<Log>, Query(filter): Query<Filter>) -> Result<Response, LogError> {
    let matcher = filter.matcher()?;
    let cursor = filter.cursor()?;
    let limit = filter.limit()?;
    let _turn = log.scans.acquire().await.map_err(|_| LogError::Busy("the log service is closing".into()))?;
    let store = log.store.clone();
    let range = matcher.range();
    let page =
        tokio::task::spawn_blocking(move || store.page(cursor, limit, MAX_ANSWER_BYTES, range, |r| matcher.matches(r)))
            .await
            .map_err(|_| LogError::Busy("the query failed".into()))?;
    let records: Vec<Arc<LogRecord>> = page.records;
    let mut response = Json(records).into_response();
    if let Some(oldest) = page.oldest_retained {
        response.headers_mut().insert(OLDEST_RETAINED, HeaderValue::from(oldest));
    }
    Ok(response)
}
