//! HTTP plumbing every service shares: JSON error bodies, a JSON extractor
//! whose rejections are JSON too, JSON 404/405 fallbacks, request spans, and
//! the outbound client with its timeouts.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use gradebook_shared::ErrorBody;
use tower_http::trace::TraceLayer;

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

/// Adds what every service's router needs: JSON 404/405 answers, a body
/// size limit (413 beyond it), JSON bodies on every error answer, and a
/// tracing span per request.
pub fn finish_router(router: Router, body_limit: usize) -> Router {
    measured(router)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async { error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed") })
        .layer(axum::middleware::map_response(json_errors))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TraceLayer::new_for_http().make_span_with(
            |req: &Request| tracing::info_span!("request", method = %req.method(), path = %req.uri().path()),
        ))
}

/// Adds `GET /metrics` and counts every routed request.
fn measured(router: Router) -> Router {
    crate::metrics::install();
    router
        .route("/metrics", axum::routing::get(crate::metrics::render))
        .route_layer(axum::middleware::from_fn(crate::metrics::track))
}

/// Like [`finish_router`] but without the 404/405 fallbacks, for a router
/// that is merged into another one that has its own (the portal's pages).
pub fn finish_api(router: Router, body_limit: usize) -> Router {
    router.layer(axum::middleware::map_response(json_errors)).layer(DefaultBodyLimit::max(body_limit)).layer(
        TraceLayer::new_for_http().make_span_with(
            |req: &Request| tracing::info_span!("request", method = %req.method(), path = %req.uri().path()),
        ),
    )
}

/// Like [`finish_router`] without the request span, for hot paths that log
/// nothing; merge it into a finished router.
pub fn untraced(router: Router, body_limit: usize) -> Router {
    router
        .route_layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(axum::middleware::map_response(json_errors))
        .layer(DefaultBodyLimit::max(body_limit))
}

/// Marks an error answer that must reach the client exactly as it is (for
/// example the original protocol's bodiless 404), not be given a JSON body.
#[derive(Debug, Clone, Copy)]
pub struct AsIs;

/// Turns the plain-text error answers of axum's extractors (a query string
/// that does not parse, a body over the limit, ...) into JSON ones, so every
/// error a client sees has the same shape.
async fn json_errors(response: Response) -> Response {
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

/// Waits for a graceful shutdown (`served`), but once `shutdown` has begun
/// at most `drain`: a client that never finishes (or never reads) cannot
/// keep the process from exiting and its last flush from running.
pub async fn drained_within(
    served: impl std::future::Future<Output = std::io::Result<()>>,
    shutdown: &tokio_util::sync::CancellationToken,
    drain: Duration,
) -> std::io::Result<()> {
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(drain).await;
    };
    tokio::select! {
        served = served => served,
        () = deadline => {
            tracing::warn!(?drain, "requests still open after the drain deadline; closing them");
            Ok(())
        }
    }
}

/// The outbound client shared by a process: pooled connections, no call
/// without a deadline, and the cluster token (when there is one) on every
/// call.
pub fn client(timeout: Duration, token: Option<&str>) -> reqwest::Client {
    builder(timeout.min(Duration::from_secs(2)), token).timeout(timeout).build().expect(BUILDS)
}

/// A client without an overall deadline, for calls that stream or that set
/// their own per request; connecting is still bounded.
pub fn open_ended_client(connect_timeout: Duration, token: Option<&str>) -> reqwest::Client {
    builder(connect_timeout, token).build().expect(BUILDS)
}

/// Like [`open_ended_client`], for calls to addresses that others chose
/// (the registry's probes and patches): redirects are never followed, so a
/// registration cannot aim them anywhere else.
pub fn unredirected_client(connect_timeout: Duration, token: Option<&str>) -> reqwest::Client {
    builder(connect_timeout, token).redirect(reqwest::redirect::Policy::none()).build().expect(BUILDS)
}

const BUILDS: &str = "a reqwest client with only timeouts set always builds";

fn builder(connect_timeout: Duration, token: Option<&str>) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .tcp_nodelay(true);
    match token.and_then(bearer) {
        Some(value) => {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert(axum::http::header::AUTHORIZATION, value);
            builder.default_headers(headers)
        }
        None => builder,
    }
}

/// `Bearer <token>` as a header value kept out of debug output, or None for
/// a token no header can carry (the command line refuses those).
fn bearer(token: &str) -> Option<axum::http::HeaderValue> {
    let mut value = axum::http::HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

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
    let token: std::sync::Arc<str> = token.into();
    router.layer(axum::middleware::from_fn(move |request: Request, next: axum::middleware::Next| {
        let token = token.clone();
        async move {
            if open.contains(&request.uri().path()) || token_matches(request.headers(), &token) {
                return next.run(request).await;
            }
            let mut refused = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
            refused
                .headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
            refused
        }
    }))
}

/// Whether the request carries `token`, compared in constant time.
pub fn token_matches(headers: &axum::http::HeaderMap, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    given.len() == token.len() && bool::from(given.as_bytes().ct_eq(token.as_bytes()))
}

/// A short, stable description of why an outbound call failed.
pub fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        let mut s = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(inner) = source {
            s = format!("{s}: {inner}");
            source = inner.source();
        }
        s
    }
}
