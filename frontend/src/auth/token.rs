//! Personal API tokens (`Authorization: Bearer`): which tokens are worth
//! asking grading about, and who a token says is asking. An address that
//! keeps sending wrong tokens is refused like one that keeps failing to
//! sign in.

use std::net::IpAddr;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::setting::Security;
use crate::backends::Backends;
use crate::error::ApiError;
use crate::people::Viewer;

/// Whether `token` looks like a personal API token: `gb_<name>_<40 letters
/// and digits>`, names being at most 64 characters.
pub fn api_token_shaped(token: &str) -> bool {
    let Some((head, secret)) = token.rsplit_once('_') else { return false };
    let name = head.strip_prefix("gb_").unwrap_or("");
    secret.len() == 40
        && secret.bytes().all(|b| b.is_ascii_alphanumeric())
        && (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// The script `token` authenticates, or the answer refusing it.
pub async fn token_viewer(
    security: &Security,
    backends: &Backends,
    token: &str,
    address: Option<IpAddr>,
) -> Result<Viewer, Response> {
    // Only a token of the shape `gradebook accounts token` prints is asked
    // about (each question costs grading a slow hash).
    let by_address = &security.limits().by_address;
    let spent = address.is_some_and(|a| by_address.spent(&a));
    let checked = match (api_token_shaped(token), spent) {
        (true, false) => security.answers().api_token(backends, token).await,
        (true, true) => {
            let mut refused = ApiError::new(429, "Too many wrong API tokens. Please wait a minute.").into_response();
            refused.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            return Err(refused);
        }
        (false, _) => Ok(None),
    };
    if let (Ok(None), Some(address)) = (&checked, address) {
        by_address.count(address);
    }
    match checked {
        Ok(Some(account)) => Ok(Viewer::Person { account, csrf: String::new(), bearer: true }),
        Ok(None) => {
            let mut refused = ApiError::new(401, "The API token is not valid.").into_response();
            refused.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Err(refused)
        }
        Err(e) => Err(e.into_response()),
    }
}
