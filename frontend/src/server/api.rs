//! The JSON API's handlers that forward to the services: adding a grade
//! (checked by grading's own rules first), the service list, log queries
//! and the live log tail. `GET /api/students` and `/api/students/{id}` pass
//! grading's bytes on: see `page_cache`.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gradebook_runtime::http::ApiJson;
use gradebook_shared::grading::NewGrade;
use gradebook_shared::log::LogRecord;
use gradebook_shared::registry::ServiceStatus;

use crate::backends::Backends;
use crate::error::ApiError;
use crate::ids::parse_id;

/// Checked by grading's own rules before it is forwarded, typed.
pub async fn add_grade(
    State(b): State<Backends>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<impl IntoResponse, ApiError> {
    let id = parse_id(&id)?;
    let grade = NewGrade::validate(&body).map_err(ApiError::invalid)?;
    Ok((StatusCode::CREATED, Json(b.add_grade(id, &grade).await?)))
}

pub async fn services(State(b): State<Backends>) -> Result<Json<Vec<ServiceStatus>>, ApiError> {
    Ok(Json(b.services().await?))
}

pub async fn logs(State(b): State<Backends>, RawQuery(q): RawQuery) -> Result<Json<Vec<LogRecord>>, ApiError> {
    Ok(Json(b.logs(q.as_deref().unwrap_or("")).await?))
}

/// Relays the log service's live tail.
pub async fn log_stream(State(b): State<Backends>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let upstream = b.log_stream(q.unwrap_or_default()).await?;
    let mut response = axum::body::Body::from_stream(upstream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}
