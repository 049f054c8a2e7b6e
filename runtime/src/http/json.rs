//! The one JSON error shape on every answer: error answers, a JSON extractor
//! whose rejections are JSON too, and the rewriting of axum's plain-text
//! error answers into JSON ones.

use axum::Json;
use axum::extract::FromRequest;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gradebook_shared::ErrorBody;

/// A JSON error answer: `{"error": "..."}` with the given status.
pub fn error_response(status: StatusCode, body: ErrorBody) -> Response {
    (status, Json(body)).into_response()
}

pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    error_response(status, ErrorBody::new(message))
}

/// `axum::Json`, but a body that is not valid JSON (or is too large, or has
/// the wrong content type) is answered with a JSON error, not plain text.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(JsonError))]
pub struct ApiJson<T>(pub T);

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

/// The rejection of [`ApiJson`].
#[derive(Debug)]
pub struct JsonError(JsonRejection);

impl From<JsonRejection> for JsonError {
    fn from(r: JsonRejection) -> Self {
        Self(r)
    }
}

impl IntoResponse for JsonError {
    fn into_response(self) -> Response {
        let status = match self.0.status() {
            // A body that parses but has the wrong shape is a plain bad request.
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            s => s,
        };
        error(status, self.0.body_text())
    }
}

/// Marks an error answer that must reach the client exactly as it is (for
/// example the original protocol's bodiless 404), not be given a JSON body.
#[derive(Debug, Clone, Copy)]
pub struct AsIs;

/// Turns the plain-text error answers of axum's extractors (a query string
/// that does not parse, a body over the limit, ...) into JSON ones, so every
/// error a client sees has the same shape.
pub(super) async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error())
        || is_json
        || response.extensions().get::<AsIs>().is_some()
    {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) if !b.is_empty() => String::from_utf8_lossy(&b).into_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let mut json = error(status, text);
    for (name, value) in parts.headers.iter() {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            json.headers_mut().insert(name.clone(), value.clone());
        }
    }
    json
}
