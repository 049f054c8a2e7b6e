//! Cross-site request forgery: whether the browser says a request comes
//! from the portal's own pages, and the CSRF token a form carries when it
//! says nothing. A state-changing request passes one or the other, or is
//! refused before anything is stored.

use std::collections::HashMap;

use axum::Form;
use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};

use super::request::over_https;
use crate::error::ApiError;

/// Most of a form body read to find its CSRF token.
const FORM_LIMIT: usize = 64 * 1024;
/// Why a state change from elsewhere is refused.
pub const FOREIGN: &str = "This request came from another site; it was not carried out.";

/// The origin this request was addressed to, as a browser would write it in
/// `Origin`.
fn own_origin(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let scheme = if over_https(headers) { "https" } else { "http" };
    Some(format!("{scheme}://{host}").to_ascii_lowercase())
}

/// The browser says the request comes from one of our own pages.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site == Some("same-origin") {
        return true;
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    matches!((origin, own_origin(headers)), (Some(origin), Some(own)) if origin.to_ascii_lowercase() == own)
}

/// The browser says the request comes from another site (open mode refuses
/// only these: a request saying nothing, such as curl's, goes through).
pub fn cross_site(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let foreign_fetch = fetch_site.is_some_and(|s| s != "same-origin" && s != "none");
    let foreign_origin = headers.get(header::ORIGIN).is_some() && !same_origin(headers);
    foreign_fetch || foreign_origin
}

/// Lets a state-changing request through when the browser says it comes
/// from our own pages, or when its form carries the session's CSRF token;
/// a 403 otherwise, before anything is stored.
pub async fn checked_csrf(request: Request, expected: &str) -> Result<Request, Response> {
    let refused = || ApiError::new(403, FOREIGN).into_response();
    if same_origin(request.headers()) {
        return Ok(request);
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form || expected.is_empty() {
        return Err(refused());
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, FORM_LIMIT).await else {
        return Err(ApiError::new(413, "The form is too large.").into_response());
    };
    let given = form_field(&bytes, "csrf").await.unwrap_or_default();
    if !tokens_match(&given, expected) {
        return Err(refused());
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// One field of a urlencoded form body.
async fn form_field(body: &axum::body::Bytes, name: &str) -> Option<String> {
    let request = Request::builder()
        .method(Method::POST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.clone()))
        .ok()?;
    let Form(form) = Form::<HashMap<String, String>>::from_request(request, &()).await.ok()?;
    form.get(name).cloned()
}

/// Compared in constant time: how much of a token matched must not show.
pub fn tokens_match(given: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    !expected.is_empty() && given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}
