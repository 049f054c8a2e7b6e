//! The services' answers as the portal reads them: bodies read within a
//! limit, data or the service's own 4xx message or "unavailable", said for
//! the portal's readers; and grading's answer handed from the page cache to
//! the page it renders.

use axum::body::Bytes;
use axum::http::StatusCode;
use gradebook_shared::ErrorBody;
use gradebook_shared::names;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Grading's answer to the page being rendered, fetched by the page cache
/// and read by the page's data calls instead of asking again (so the page
/// matches the tag it is kept under). Travels in the request's extensions.
#[derive(Clone)]
pub struct Prefetched {
    pub path: String,
    /// The body of a 200, or what the page should say instead.
    pub answer: Result<Bytes, ApiError>,
}

/// How readers call a service.
pub fn human(service: &str) -> &str {
    match service {
        names::GRADING => "grading service",
        names::LOG => "log service",
        _ => "service",
    }
}

/// Most the portal reads of one answer from grading or the registry.
pub const ANSWER_LIMIT: usize = 32 << 20;
/// Most the portal reads of one answer to a log query.
pub const LOG_ANSWER_LIMIT: usize = 8 << 20;

pub const NO_SERVICE_LIST: &str =
    "This registry does not list its services: it speaks only the original protocol (registration and patches).";
pub const NO_LOG_QUERIES: &str =
    "This log service does not answer queries: it speaks only the original protocol (it stores what it is sent).";

/// A service of the original design has no route for what ours can list or
/// query (it answers 404 or 405): say so, rather than "something went wrong".
pub fn original_cannot(e: ApiError, what: &str) -> ApiError {
    if matches!(e.status, 404 | 405) { ApiError::new(501, what) } else { e }
}

/// Grading's 404 for a student, said for the portal's readers.
pub fn no_student(id: i64, e: ApiError) -> ApiError {
    if e.status == 404 { ApiError::new(404, format!("There is no student with ID {id}.")) } else { e }
}

pub async fn read<T: DeserializeOwned>(response: reqwest::Response, what: &str, limit: usize) -> Result<T, ApiError> {
    let status = response.status();
    let body = read_body(response, what, limit).await?;
    interpret(status, &body, what)
}

/// A service's answer body, refused past `limit` bytes (the rest is never
/// read: the connection is dropped).
pub async fn read_body(mut response: reqwest::Response, what: &str, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            502,
            format!(
                "The {what}'s answer is larger than the {} MB the portal reads; ask for less (a narrower filter, a smaller limit).",
                limit >> 20
            ),
        )
    };
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(|_| ApiError::unavailable(what))? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A service's answer as the portal passes it on: its data, its own 4xx
/// message, or "unavailable" for anything else.
pub fn interpret<T: DeserializeOwned>(status: StatusCode, body: &[u8], what: &str) -> Result<T, ApiError> {
    if status.is_success() {
        return serde_json::from_slice(body)
            .map_err(|e| ApiError::new(502, format!("The {what} gave an unreadable answer: {e}")));
    }
    if status.is_client_error() {
        let body = serde_json::from_slice::<ErrorBody>(body)
            .unwrap_or_else(|_| ErrorBody::new(format!("The {what} answered {status}")));
        return Err(ApiError { status: status.as_u16(), error: body.error, field: body.field });
    }
    Err(ApiError::unavailable(what))
}
