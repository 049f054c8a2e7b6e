//! The cluster token: parsing it from the command line, and the gate that
//! closes a router to everyone who does not send it.

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use super::client::bearer;
use super::json::error;

/// Parses a cluster token from the command line: text a header can carry.
pub fn parse_token(token: &str) -> Result<String, String> {
    if token.is_empty() || bearer(token).is_none() || token.chars().any(|c| c.is_whitespace()) {
        return Err("a token is printable ASCII without spaces".into());
    }
    Ok(token.to_owned())
}

/// Paths anyone may call even when the cluster is closed: liveness and
/// metrics, which say nothing private.
pub const OPEN_PATHS: &[&str] = &["/heartbeat", "/healthz", "/metrics"];

/// Closes `router` to everyone without `Authorization: Bearer <token>`
/// (401 with a JSON error), except the paths in `open`. No token: open.
pub fn require_token(router: Router, token: Option<String>, open: &'static [&'static str]) -> Router {
    let Some(token) = token else { return router };
    let gate = Gate { token: token.into(), open };
    router.layer(axum::middleware::from_fn_with_state(gate, check_token))
}

/// What [`check_token`] lets through.
#[derive(Clone)]
struct Gate {
    token: std::sync::Arc<str>,
    open: &'static [&'static str],
}

async fn check_token(axum::extract::State(gate): axum::extract::State<Gate>, request: Request, next: Next) -> Response {
    if token_matches(request.headers(), &gate.token) || gate.open.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let mut refused = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    refused.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
    refused
}

/// Whether the request carries `token`, compared in constant time.
pub fn token_matches(headers: &axum::http::HeaderMap, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    // The raw bytes: a header that is not text cannot match a token, which
    // is printable ASCII (see `parse_token`), so there is nothing to decode.
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    given.len() == token.len() && bool::from(given.ct_eq(token.as_bytes()))
}
