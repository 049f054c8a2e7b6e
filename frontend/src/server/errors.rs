//! Error answers of the pages (a wrong method, a refused form post) come as
//! an HTML page saying what went wrong, not an empty body or JSON: a browser
//! shows them to a person. The API and `/healthz` keep their JSON errors.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use gradebook_shared::ErrorBody;
use leptos::prelude::LeptosOptions;

use crate::people::Viewer;
use crate::standalone::error_page;

/// Most of an error body read for its message: error bodies are short; one
/// that is not says nothing a reader needs.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Middleware around the page routes.
pub async fn html_errors(State(options): State<Arc<LeptosOptions>>, request: Request, next: Next) -> Response {
    // Kept as they came (a copy of a URI shares its bytes): most answers
    // are not errors, and need neither.
    let (uri, method) = (request.uri().clone(), request.method().clone());
    let path = uri.path();
    let is_api = path == "/api" || path.starts_with("/api/") || path == "/healthz" || path == "/metrics";
    let response = next.run(request).await;
    let status = response.status();
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_html || is_api {
        return response;
    }
    // Set by `auth::authenticate`, inside this layer.
    let viewer = response.extensions().get::<Viewer>().cloned();
    let (parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, ERROR_BODY_LIMIT).await.unwrap_or_default();
    let message = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(said) if status != StatusCode::METHOD_NOT_ALLOWED => said.error,
        _ if status == StatusCode::METHOD_NOT_ALLOWED => format!("The page {path} does not take {method} requests."),
        _ => status.canonical_reason().unwrap_or("The request could not be answered.").to_owned(),
    };
    let mut page = (status, Html(error_page(&options, status, &message, viewer.as_ref()))).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            page.headers_mut().insert(name.clone(), value.clone());
        }
    }
    page
}
