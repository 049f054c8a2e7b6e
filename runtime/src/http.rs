//! HTTP plumbing every service shares: JSON error bodies, a JSON extractor
//! whose rejections are JSON too, JSON 404/405 fallbacks, the finishing
//! middleware (request span, per-route metrics, JSON error bodies, body
//! limit), the cluster-token gate, and the outbound client with its
//! timeouts.

use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
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

/// Adds what every service's router needs: JSON 404/405 answers, a body
/// size limit (413 beyond it), JSON bodies on every error answer, a tracing
/// span per request, and `GET /metrics` with every routed request counted.
pub fn finish_router(router: Router, body_limit: usize) -> Router {
    crate::metrics::install();
    let router = router
        .route("/metrics", axum::routing::get(crate::metrics::render))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async { error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed") });
    finished(router, Finish { span: true, metrics: true }, body_limit)
}

/// Like [`finish_router`] but without the 404/405 fallbacks and metrics,
/// for a router that is merged into another one that has its own (the
/// portal's pages).
pub fn finish_api(router: Router, body_limit: usize) -> Router {
    finished(router, Finish { span: true, metrics: false }, body_limit)
}

/// Like [`finish_router`] without the request span, for hot paths that log
/// nothing; merge it into a finished router.
pub fn untraced(router: Router, body_limit: usize) -> Router {
    crate::metrics::install();
    finished(router, Finish { span: false, metrics: true }, body_limit)
}

/// What finishing does besides turning error answers into JSON.
#[derive(Debug, Clone, Copy)]
struct Finish {
    span: bool,
    metrics: bool,
}

/// Applies every finishing step as one hand-written layer: each
/// `Router::layer` call boxes every route once more, and each boxed level
/// clones everything beneath it on every request; `from_fn` adds a boxed
/// future per request besides.
fn finished(router: Router, how: Finish, body_limit: usize) -> Router {
    router.layer(FinishLayer { how, limit: DefaultBodyLimit::max(body_limit) })
}

#[derive(Debug, Clone, Copy)]
struct FinishLayer {
    how: Finish,
    limit: DefaultBodyLimit,
}

impl<S> tower::Layer<S> for FinishLayer {
    type Service = FinishService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FinishService { inner, how: self.how, limit: self.limit }
    }
}

#[derive(Debug, Clone)]
struct FinishService<S> {
    inner: S,
    how: Finish,
    limit: DefaultBodyLimit,
}

impl<S> tower::Service<Request> for FinishService<S>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = FinishFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let finishing = Finishing::start(self.how, self.limit, &mut request);
        let answer = finishing.span.in_scope(|| self.inner.call(request));
        FinishFuture::Answering { answer, finishing: Some(finishing) }
    }
}

enum FinishFuture<F> {
    Answering {
        answer: F,
        finishing: Option<Finishing>,
    },
    /// The rare error answer pays for reading its body.
    Converting(std::pin::Pin<Box<dyn Future<Output = Response> + Send>>),
}

impl<F> Future for FinishFuture<F>
where
    F: Future<Output = Result<Response, std::convert::Infallible>> + Unpin,
{
    type Output = Result<Response, std::convert::Infallible>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        loop {
            let converting = match &mut *self {
                FinishFuture::Answering { answer, finishing } => {
                    let polled = match finishing {
                        Some(f) => f.span.in_scope(|| std::pin::Pin::new(&mut *answer).poll(cx)),
                        None => std::pin::Pin::new(&mut *answer).poll(cx),
                    };
                    let Ok(response) = std::task::ready!(polled);
                    if !finishing.take().is_some_and(|f| f.end(&response)) {
                        return std::task::Poll::Ready(Ok(response));
                    }
                    Box::pin(json_errors(response))
                }
                FinishFuture::Converting(converting) => return converting.as_mut().poll(cx).map(Ok),
            };
            *self = FinishFuture::Converting(converting);
        }
    }
}

/// One request between its arrival and its answer.
struct Finishing {
    how: Finish,
    started: Instant,
    /// The route and method it is counted under.
    routed: Option<(MatchedPath, axum::http::Method)>,
    span: tracing::Span,
}

impl Finishing {
    fn start(how: Finish, limit: DefaultBodyLimit, request: &mut Request) -> Self {
        let started = Instant::now();
        // Only a body still to come needs a limit (for the extractors that
        // read it); most requests have none.
        if !axum::body::HttpBody::is_end_stream(request.body()) {
            limit.apply(request);
        }
        // Only routed requests are counted: the 404 fallback has no route to
        // count them under.
        let routed = match request.extensions().get::<MatchedPath>() {
            Some(route) if how.metrics => Some((route.clone(), request.method().clone())),
            _ => None,
        };
        // `&str` fields are kept as they are, and only when the span is
        // enabled: a disabled span costs a level check, no formatting.
        let span = if how.span {
            let span = tracing::info_span!("request", method = request.method().as_str(), path = request.uri().path());
            tracing::debug!(parent: &span, "started processing request");
            span
        } else {
            tracing::Span::none()
        };
        Self { how, started, routed, span }
    }

    /// Logs and counts the answer; says whether it is an error answer that
    /// may need a JSON body.
    fn end(self, response: &Response) -> bool {
        let latency = self.started.elapsed();
        let status = response.status();
        if self.how.span {
            if status.is_server_error() {
                tracing::error!(parent: &self.span, status = status.as_u16(), ?latency, "response failed");
            } else {
                tracing::debug!(parent: &self.span, status = status.as_u16(), ?latency, "finished processing request");
            }
        }
        if let Some((route, method)) = self.routed {
            crate::metrics::record(&method, route.as_str(), status, latency);
        }
        status.is_client_error() || status.is_server_error()
    }
}

/// Calls `service` once (the tests' client).
#[cfg(test)]
fn call<S: tower::Service<Request>>(service: &mut S, request: Request) -> S::Future {
    service.call(request)
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::{get, post};

    fn app() -> Router {
        let api = Router::new()
            .route(
                "/items/{id}",
                get(|axum::extract::Path(id): axum::extract::Path<u32>| async move { id.to_string() }),
            )
            .route("/echo", post(|body: String| async move { body }));
        finish_router(api, 16)
    }

    /// Sends `method uri` with `body` (and the bearer token, when given):
    /// status, `WWW-Authenticate`, body.
    async fn send(
        router: &mut Router,
        method: &str,
        uri: &str,
        body: &str,
        bearer: Option<&str>,
    ) -> (StatusCode, bool, String) {
        let mut request = axum::http::Request::builder().method(method).uri(uri);
        if let Some(token) = bearer {
            request = request.header(axum::http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Body::from(body.to_owned())).expect("a valid request");
        let Ok(response) = call(router, request).await;
        let status = response.status();
        let challenged = response.headers().contains_key(axum::http::header::WWW_AUTHENTICATE);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("the body arrives");
        (status, challenged, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn answers_pass_untouched_and_errors_get_json_bodies() {
        let mut app = app();
        assert_eq!(send(&mut app, "GET", "/items/7", "", None).await, (StatusCode::OK, false, "7".into()));
        assert_eq!(send(&mut app, "POST", "/echo", "short", None).await, (StatusCode::OK, false, "short".into()));
        for (method, uri, body, status) in [
            ("GET", "/items/x", "", StatusCode::BAD_REQUEST),
            ("POST", "/echo", "far more than sixteen bytes", StatusCode::PAYLOAD_TOO_LARGE),
            ("GET", "/nowhere", "", StatusCode::NOT_FOUND),
            ("DELETE", "/items/7", "", StatusCode::METHOD_NOT_ALLOWED),
        ] {
            let (answered, _, body) = send(&mut app, method, uri, body, None).await;
            assert_eq!(answered, status, "{method} {uri}");
            let error: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
            assert!(error["error"].is_string(), "{method} {uri}: {body}");
        }
    }

    #[tokio::test]
    async fn routed_requests_are_counted_by_method_route_and_status() {
        let mut app = app();
        send(&mut app, "GET", "/items/1", "", None).await;
        send(&mut app, "BREW", "/items/1", "", None).await;
        send(&mut app, "GET", "/unrouted", "", None).await;
        let (_, _, metrics) = send(&mut app, "GET", "/metrics", "", None).await;
        for series in [
            r#"http_requests_total{method="GET",route="/items/{id}",status="200"}"#,
            r#"http_request_duration_seconds_count{method="GET",route="/items/{id}",status="200"}"#,
            // Methods no route serves share one label.
            r#"http_requests_total{method="other",route="/items/{id}",status="405"}"#,
        ] {
            assert!(metrics.contains(series), "{series} missing from {metrics}");
        }
        assert!(!metrics.contains("/unrouted") && !metrics.contains("BREW"), "{metrics}");
    }

    #[tokio::test]
    async fn a_closed_router_answers_only_token_holders_and_open_paths() {
        let mut app = require_token(app(), Some("s3cret".into()), OPEN_PATHS);
        for bearer in [None, Some("wrong"), Some("s3cre"), Some("s3cret2")] {
            let (status, challenged, body) = send(&mut app, "GET", "/items/1", "", bearer).await;
            assert_eq!((status, challenged), (StatusCode::UNAUTHORIZED, true), "{bearer:?}");
            assert!(body.contains("bearer token"), "{body}");
        }
        assert_eq!(send(&mut app, "GET", "/nowhere", "", None).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(send(&mut app, "GET", "/items/1", "", Some("s3cret")).await.0, StatusCode::OK);
        assert_eq!(send(&mut app, "GET", "/metrics", "", None).await.0, StatusCode::OK);
    }
}
