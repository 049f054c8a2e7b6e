//! The finishing layer of every router: JSON 404/405 answers, the body
//! limit, JSON bodies on every error answer, a request span and per-route
//! metrics.

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::response::Response;

use super::json::{error, json_errors};

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
    router.layer(FinishLayer { how, limit: DefaultBodyLimit::max(body_limit), max: body_limit })
}

#[derive(Debug, Clone, Copy)]
struct FinishLayer {
    how: Finish,
    limit: DefaultBodyLimit,
    max: usize,
}

impl<S> tower::Layer<S> for FinishLayer {
    type Service = FinishService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FinishService { inner, how: self.how, limit: self.limit, max: self.max }
    }
}

#[derive(Debug, Clone)]
struct FinishService<S> {
    inner: S,
    how: Finish,
    limit: DefaultBodyLimit,
    /// The body limit in bytes: a body declared larger is refused before
    /// it is routed (see [`super::oversized`]).
    max: usize,
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
        if let Some(length) = super::oversized::declared_over(&request, self.max) {
            let max = self.max;
            return FinishFuture::Converting(Box::pin(super::oversized::refuse(request, length, max)));
        }
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
