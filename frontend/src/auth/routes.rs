//! The sign-in routes: `GET/POST /signin` (a plain form post, no JavaScript
//! needed) and `POST /signout`.

use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use axum_extra::extract::cookie::PrivateCookieJar;
use leptos::prelude::LeptosOptions;
use serde::Deserialize;

use super::csrf::{same_origin, tokens_match};
use super::limits::limit_key;
use super::request::client_address;
use super::roles::first_page;
use super::session::{SESSION_COOKIE, SIGNIN_COOKIE, Session, cookie, random_token, removal};
use super::setting::Security;
use crate::backends::Backends;
use crate::error::ApiError;
use crate::standalone::{SignInForm, sign_in_page};

/// The one message for a failed sign-in: it must not tell whether the
/// account exists.
pub const WRONG: &str = "Wrong name or password.";

/// The state of the sign-in routes.
#[derive(Clone)]
pub struct SignIn {
    pub security: Security,
    /// Asked whether a name and password sign in.
    pub backends: Backends,
    pub options: LeptosOptions,
}

/// `GET/POST /signin`, `POST /signout`.
pub fn routes(state: SignIn) -> Router {
    Router::new().route("/signin", get(signin_page).post(signin)).route("/signout", post(signout)).with_state(state)
}

#[derive(Deserialize, Default)]
struct NextPage {
    #[serde(default)]
    next: String,
}

#[derive(Deserialize, Default)]
struct Credentials {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
    #[serde(default)]
    csrf: String,
}

/// The sign-in form.
async fn signin_page(
    State(s): State<SignIn>,
    headers: HeaderMap,
    Query(NextPage { next }): Query<NextPage>,
) -> Response {
    let Some(key) = s.security.key() else {
        // Open: nobody signs in.
        return Redirect::to(local_path(&next).unwrap_or("/")).into_response();
    };
    let jar = PrivateCookieJar::from_headers(&headers, key);
    let (jar, csrf) = signin_token(jar, &headers);
    let form = SignInForm { next, csrf, ..SignInForm::default() };
    (jar, Html(sign_in_page(&s.options, form))).into_response()
}

/// The sign-in form's CSRF token, made (and set as a cookie) when the
/// browser has none yet.
fn signin_token(jar: PrivateCookieJar, headers: &HeaderMap) -> (PrivateCookieJar, String) {
    match jar.get(SIGNIN_COOKIE) {
        Some(token) if !token.value().is_empty() => {
            let value = token.value().to_owned();
            (jar, value)
        }
        _ => {
            let token = random_token();
            (jar.add(cookie(SIGNIN_COOKIE, token.clone(), headers)), token)
        }
    }
}

async fn signin(State(s): State<SignIn>, request: Request) -> Response {
    let Some(key) = s.security.key() else {
        return Redirect::to("/").into_response();
    };
    let headers = request.headers().clone();
    let address = client_address(request.extensions());
    let jar = PrivateCookieJar::from_headers(&headers, key);
    let Ok(Form(form)) = Form::<Credentials>::from_request(request, &()).await else {
        let page = sign_in_page(&s.options, SignInForm { problem: Some(WRONG.to_owned()), ..SignInForm::default() });
        return (StatusCode::BAD_REQUEST, Html(page)).into_response();
    };
    let expected = jar.get(SIGNIN_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
    if !same_origin(&headers) && !tokens_match(&form.csrf, &expected) {
        return ApiError::new(403, "This sign-in came from another site; it was not carried out.").into_response();
    }
    let (jar, csrf) = signin_token(jar, &headers);
    let again = |status: StatusCode, message: &str| {
        let shown = SignInForm {
            next: form.next.clone(),
            name: form.name.clone(),
            csrf: csrf.clone(),
            problem: Some(message.to_owned()),
        };
        (status, jar.clone(), Html(sign_in_page(&s.options, shown))).into_response()
    };
    let Some(_attempt) = s.security.may_try(&form.name, address) else {
        tracing::warn!(name = %limit_key(&form.name), ?address, "sign-in refused: too many failures");
        let mut answer =
            again(StatusCode::TOO_MANY_REQUESTS, "Too many sign-in attempts. Please wait a minute and try again.");
        answer.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return answer;
    };
    let account = match s.backends.verify(&form.name, &form.password).await {
        Ok(Some(account)) => account,
        Ok(None) => {
            // Who tried, for whoever reads the logs; never the password.
            tracing::warn!(name = %limit_key(&form.name), ?address, "sign-in refused: wrong name or password");
            s.security.limits().failed(&form.name, address);
            return again(StatusCode::UNAUTHORIZED, WRONG);
        }
        Err(e) => return again(StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_GATEWAY), &e.error),
    };
    let Ok(value) = serde_json::to_string(&Session::start(&account)) else {
        return again(StatusCode::INTERNAL_SERVER_ERROR, "The session could not be made.");
    };
    tracing::info!(name = %account.name, "signed in");
    // Grading's freshest word on the account: the next page need not ask.
    s.security.answers().remember(&account);
    let target = local_path(&form.next).map_or_else(|| first_page(&account), str::to_owned);
    let jar = jar.remove(removal(SIGNIN_COOKIE)).add(cookie(SESSION_COOKIE, value, &headers));
    (jar, Redirect::to(&target)).into_response()
}

/// Ends the session (the middleware has checked it is one, and same-site).
async fn signout(State(s): State<SignIn>, headers: HeaderMap) -> Response {
    let Some(key) = s.security.key() else {
        return Redirect::to("/").into_response();
    };
    let jar = PrivateCookieJar::from_headers(&headers, key).remove(removal(SESSION_COOKIE));
    (jar, Redirect::to("/signin")).into_response()
}

/// Where a successful sign-in goes: `next` when it is a path on this site
/// (never `//host` or `/\host`, which browsers take as another site), else
/// the viewer's first page.
fn local_path(next: &str) -> Option<&str> {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control());
    local.then_some(next)
}
