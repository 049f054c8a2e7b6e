//! Outbound calls: the clients every process builds (each call with a
//! deadline, and a fixed bearer when one is given) and how a failed call is
//! told.

use std::time::Duration;

/// An outbound client: pooled connections, no call without a deadline, and
/// `token` (when given) as the bearer of every call.
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
pub fn bearer(token: &str) -> Option<axum::http::HeaderValue> {
    let mut value = axum::http::HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
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
