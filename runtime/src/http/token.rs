//! The gate that closes a router to every caller without a valid credential
//! (401), and to every caller its service's policy does not name (403); and
//! parsing the master secret from the command line.

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use super::json::error;
use crate::credential::{Caller, Credential, Policy};

/// Parses a cluster token from the command line: text a header can carry.
pub fn parse_token(token: &str) -> Result<String, String> {
    let printable = token.bytes().all(|b| b.is_ascii_graphic());
    if token.is_empty() || !printable {
        return Err("a token is printable ASCII without spaces".into());
    }
    Ok(token.to_owned())
}

/// Paths anyone may call even when the cluster is closed: liveness, which
/// says nothing private.
pub const OPEN_PATHS: &[&str] = &["/heartbeat", "/healthz"];

/// Closed, it takes the scrape credential (`--metrics-token`) or the
/// operator's key: its counts say who signs in and how often.
pub const METRICS_PATH: &str = "/metrics";

/// Closes `router` to every caller `credential` cannot verify (401 with a
/// JSON error) and to callers `policy` refuses (403), except the paths in
/// `open`. The verified [`Caller`] goes into the request's extensions. No
/// credential: open.
pub fn require_credential(
    router: Router,
    credential: Option<Credential>,
    policy: Policy,
    open: &'static [&'static str],
) -> Router {
    let Some(credential) = credential else { return router };
    let gate = Gate { credential: credential.into(), policy, open };
    router.layer(axum::middleware::from_fn_with_state(gate, check))
}

/// Closes only `/metrics` of `router` (to all but the scrape credential and
/// the operator), for an app whose other routes check their own callers.
pub fn guard_metrics(router: Router, credential: Option<Credential>) -> Router {
    let Some(credential) = credential else { return router };
    let credential = std::sync::Arc::new(credential);
    router.layer(axum::middleware::from_fn(move |request: Request, next: Next| {
        let credential = credential.clone();
        async move {
            if request.uri().path() != METRICS_PATH || may_scrape(request.headers(), &credential) {
                next.run(request).await
            } else {
                unauthorized()
            }
        }
    }))
}

/// Whether `headers` carry the scrape credential or the operator's key.
fn may_scrape(headers: &axum::http::HeaderMap, credential: &Credential) -> bool {
    let bearer = headers.get(axum::http::header::AUTHORIZATION).map(|v| v.as_bytes());
    let bearer = bearer.and_then(|b| b.strip_prefix(b"Bearer ")).unwrap_or_default();
    credential.accepts_scrape(bearer) || credential.verify(bearer).is_some_and(|c| c.is_operator())
}

/// What [`check`] lets through.
#[derive(Clone)]
struct Gate {
    credential: std::sync::Arc<Credential>,
    policy: Policy,
    open: &'static [&'static str],
}

async fn check(axum::extract::State(gate): axum::extract::State<Gate>, mut request: Request, next: Next) -> Response {
    if gate.open.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    if request.uri().path() == METRICS_PATH {
        if may_scrape(request.headers(), &gate.credential) {
            return next.run(request).await;
        }
        return unauthorized();
    }
    let Some(caller) = caller(request.headers(), &gate.credential) else { return unauthorized() };
    if !(gate.policy)(&caller, request.method(), request.uri().path()) {
        let what = format!("{} may not call {} {}", caller.0, request.method(), request.uri().path());
        return error(StatusCode::FORBIDDEN, &what);
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// 401 with a JSON error and the challenge.
fn unauthorized() -> Response {
    let mut refused = error(StatusCode::UNAUTHORIZED, "missing or wrong credential");
    refused.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
    refused
}

/// Who sent `headers`, if `credential` can verify their bearer.
pub fn caller(headers: &axum::http::HeaderMap, credential: &Credential) -> Option<Caller> {
    // The raw bytes: a header that is not text cannot be a credential.
    let given = headers.get(axum::http::header::AUTHORIZATION)?.as_bytes().strip_prefix(b"Bearer ")?;
    credential.verify(given)
}
