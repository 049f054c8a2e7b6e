//! Calls to a required service: a random provider, and the next one when
//! the request never reached the first (or was a read).

use super::Runtime;
use crate::providers::NoProvider;

/// A call to a required service that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    NoProvider(#[from] NoProvider),
    #[error("{name} is unreachable: {reason}")]
    Unreachable { name: String, reason: String },
}

impl Runtime {
    /// Sends a request built by `build(client, provider_base_url)` to a
    /// provider of `name`, moving on to another provider when one cannot be
    /// connected to (the request never left, so this is safe for any method).
    pub async fn call<F>(&self, name: &str, build: F) -> Result<reqwest::Response, CallError>
    where
        F: Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    {
        let candidates = self.inner.providers.shuffled(name);
        if candidates.is_empty() {
            return Err(NoProvider(name.to_owned()).into());
        }
        let mut reason = String::new();
        for base in candidates {
            let request = self.authorize(build(&self.inner.client, &base), name);
            // A read may go to the next provider whatever happened to it: a
            // pooled connection to a provider that has just died fails only
            // once the request is on it. A write only when it never left.
            let idempotent = request
                .try_clone()
                .and_then(|r| r.build().ok())
                .is_some_and(|r| matches!(*r.method(), reqwest::Method::GET | reqwest::Method::HEAD));
            match request.send().await {
                Ok(response) => return Ok(response),
                Err(e) if e.is_connect() => reason = format!("cannot connect to {base}"),
                Err(e) if idempotent && !e.is_timeout() => reason = format!("{base}: {}", crate::http::describe(&e)),
                Err(e) => {
                    return Err(CallError::Unreachable { name: name.to_owned(), reason: crate::http::describe(&e) });
                }
            }
        }
        Err(CallError::Unreachable { name: name.to_owned(), reason })
    }
}
