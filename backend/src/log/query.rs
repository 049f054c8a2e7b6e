//! `GET /log`: a page of the recent records in memory that match a filter,
//! bounded in count and bytes, scanned a few at a time off the async runtime.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use gradebook_shared::log::LogRecord;

use super::error::LogError;
use super::filter::Filter;
use super::{DEFAULT_LIMIT, Log, MAX_ANSWER_BYTES, MAX_LIMIT};

/// `GET /log`: the recent records that match, scanned off the async runtime.
pub(super) async fn query(
    State(log): State<Log>,
    Query(filter): Query<Filter>,
) -> Result<Json<Vec<Arc<LogRecord>>>, LogError> {
    let matcher = filter.matcher()?;
    let limit = filter.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let _turn = log.scans.acquire().await.map_err(|_| LogError::Busy("the log service is closing".into()))?;
    let store = log.store.clone();
    let found = tokio::task::spawn_blocking(move || store.query(limit, MAX_ANSWER_BYTES, |r| matcher.matches(r)))
        .await
        .map_err(|_| LogError::Busy("the query failed".into()))?;
    Ok(Json(found))
}
