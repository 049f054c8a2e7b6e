//! The middleware in front of every route: says who is asking (open mode,
//! a session, an API token), sends an anonymous visitor to sign in, refuses
//! cross-site state changes and what the viewer's role does not allow, and
//! hands the [`Viewer`] on in the request's (and the response's) extensions.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::PrivateCookieJar;

use super::csrf::{FOREIGN, checked_csrf, cross_site};
use super::request::{bearer, changes_state, client_address, is_api};
use super::roles::allowed;
use super::session::session_viewer;
use super::setting::Security;
use super::token::token_viewer;
use crate::backends::Backends;
use crate::encoding::encode;
use crate::error::ApiError;
use crate::people::Viewer;

/// The state of [`authenticate`].
#[derive(Clone)]
pub struct Gate {
    pub security: Security,
    /// Asked about accounts and tokens.
    pub backends: Backends,
    /// `/pkg/`: the static files, open to anyone.
    pub static_prefix: String,
}

/// What the middleware answers for a refusal: JSON for the API; the page
/// routes' JSON errors become HTML pages (`server::html_errors`).
fn refuse(status: u16, message: &str) -> Response {
    ApiError::new(status, message).into_response()
}

/// Lets `request` through as `viewer`, or refuses it; see the module.
pub async fn authenticate(State(gate): State<Arc<Gate>>, mut request: Request, next: Next) -> Response {
    let security = &gate.security;
    let method = request.method().clone();
    let Some(key) = security.key() else {
        // Open: anyone may change grades, but a page of another site may
        // not make a visitor's browser do it.
        if changes_state(&method) && cross_site(request.headers()) {
            return refuse(403, FOREIGN);
        }
        request.extensions_mut().insert(Viewer::Open);
        let mut response = next.run(request).await;
        response.extensions_mut().insert(Viewer::Open);
        return response;
    };
    let path = request.uri().path().to_owned();
    if path == "/signin" || path == "/healthz" || path.starts_with(&gate.static_prefix) {
        return next.run(request).await;
    }

    let (viewer, set_cookies) = if let Some(token) = bearer(request.headers()) {
        let address = client_address(request.extensions());
        match token_viewer(security, &gate.backends, token, address).await {
            Ok(viewer) => (Some(viewer), None),
            Err(refused) => return refused,
        }
    } else {
        let jar = PrivateCookieJar::from_headers(request.headers(), key);
        match session_viewer(security, &gate.backends, &jar, request.headers()).await {
            Ok(seen) => seen,
            Err(refused) => return refused,
        }
    };
    let with_cookies = |response: Response| match &set_cookies {
        Some(jar) => (jar.clone(), response).into_response(),
        None => response,
    };

    let Some(viewer) = viewer else {
        if is_api(&path) {
            return with_cookies(refuse(401, "Sign in first, or send a personal API token as Authorization: Bearer."));
        }
        // Back to the page asked for once signed in (a GET; a form post
        // cannot be repeated by a redirect).
        let target = match (method == Method::GET, request.uri().path_and_query()) {
            (true, Some(asked)) => format!("/signin?next={}", encode(asked.as_str())),
            _ => "/signin".to_owned(),
        };
        return with_cookies(Redirect::to(&target).into_response());
    };

    if let Viewer::Person { csrf, bearer: false, .. } = &viewer
        && changes_state(&method)
    {
        request = match checked_csrf(request, csrf).await {
            Ok(request) => request,
            Err(refused) => return with_cookies(refused),
        };
    }
    if !allowed(&viewer, &method, &path) {
        let mut refused = refuse(403, "Your account may not see or do this.");
        // So the error page links to what this viewer may see.
        refused.extensions_mut().insert(viewer);
        return with_cookies(refused);
    }
    request.extensions_mut().insert(viewer.clone());
    let mut response = next.run(request).await;
    response.extensions_mut().insert(viewer);
    with_cookies(response)
}
