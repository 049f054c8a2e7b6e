//! Who may do what in the portal.
//!
//! * **Open** (the cluster has no token): no sign-in, every page carries a
//!   banner saying so; only a request that shows it comes from another site
//!   is refused.
//! * **Closed** (a cluster token is set): every page but `/signin` and the
//!   static files needs a signed-in person, every `/api/*` call a person or a
//!   script with a personal API token (`Authorization: Bearer`), each held to
//!   the account's role. Accounts live in grading (`/accounts/*`).
//!
//! Sessions are private cookies (encrypted and authenticated by
//! `axum-extra`/`cookie`, no crypto here) under a key derived from the
//! cluster token, so every portal instance reads every session. A session
//! holds the account's name and `version`: grading moves the version on with
//! every password change (and a removed account has none), so a session is
//! dropped within [`ACCOUNT_TTL`] of either. It also holds the time it was
//! last used, for the idle timeout, and the CSRF token its forms carry.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Form, Router};
use axum_extra::extract::cookie::{Cookie, Key, PrivateCookieJar, SameSite};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use leptos::prelude::LeptosOptions;
use serde::{Deserialize, Serialize};

use crate::api::{encode, student_id};
use crate::backends::Backends;
use crate::error::ApiError;
use crate::people::{Account, Role, Viewer};

/// The session: name, account version, last use, CSRF token (encrypted).
pub const SESSION_COOKIE: &str = "gradebook_session";
/// The sign-in form's CSRF token, before there is a session (encrypted).
pub const SIGNIN_COOKIE: &str = "gradebook_signin";
/// How long a session may go unused by default.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(30 * 60);
/// The least cluster token a closed portal derives its cookie key from
/// (`Key::derive_from` needs 32 bytes of input).
pub const MIN_TOKEN_BYTES: usize = 32;
/// How long an account's answer from grading is trusted: a changed password
/// or a removed account ends its sessions within this.
pub const ACCOUNT_TTL: Duration = Duration::from_secs(2);
/// How long a personal API token's answer from grading is trusted.
pub const API_TOKEN_TTL: Duration = Duration::from_secs(5);
/// Failed sign-ins per account name, and per client address, a minute.
pub const SIGNIN_FAILURES_PER_MINUTE: u32 = 5;
/// While grading cannot be reached, its last answer about an account or an
/// API token stands for this long: the rest of the portal (the services and
/// logs pages) keeps working, and grades cannot change meanwhile anyway.
const STALE_LIMIT: Duration = Duration::from_secs(5 * 60);
/// A session's "last used" is rewritten at most this often (a `Set-Cookie`
/// on every answer would be noise).
const REFRESH_AFTER: Duration = Duration::from_secs(15);
/// Entries kept in each answer cache; past that it starts over (each entry
/// costs a question to grading, nothing more).
const CACHE_ENTRIES: usize = 10_000;
/// Most of a form body read to find its CSRF token.
const FORM_LIMIT: usize = 64 * 1024;
/// The one message for a failed sign-in: it must not tell whether the
/// account exists.
pub const WRONG: &str = "Wrong name or password.";

/// The portal's people-facing security: open, or closed with the cookie key,
/// the sign-in rate limits and short caches of grading's answers. Cheap to
/// clone.
#[derive(Clone)]
pub struct Security {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None`: open mode.
    key: Option<Key>,
    idle: Duration,
    by_name: Failures<String>,
    by_address: Failures<IpAddr>,
    accounts: Mutex<HashMap<String, (Instant, Option<Account>)>>,
    api_tokens: Mutex<HashMap<String, (Instant, Option<Account>)>>,
    /// Names and addresses with a sign-in being checked right now: one at a
    /// time each, or concurrent guesses would all pass the failure limit
    /// before any of them is counted.
    in_flight: Mutex<std::collections::HashSet<String>>,
}

/// A sign-in being checked, for its name and address; ends on drop.
struct Attempt<'a> {
    security: &'a Security,
    keys: Vec<String>,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.security.inner.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        for key in &self.keys {
            in_flight.remove(key);
        }
    }
}

impl Default for Security {
    fn default() -> Self {
        Self::open()
    }
}

impl Security {
    /// No cluster token: no sign-in.
    pub fn open() -> Self {
        Self::build(None, DEFAULT_IDLE)
    }

    /// Closed with `token`, sessions ending after `idle` unused. Refuses a
    /// token too short to derive the cookie key from.
    pub fn closed(token: &str, idle: Duration) -> Result<Self, String> {
        if token.len() < MIN_TOKEN_BYTES {
            return Err(format!(
                "the cluster token is {} bytes; the portal needs at least {MIN_TOKEN_BYTES} to derive its session key \
                 from it (for example: openssl rand -hex 32)",
                token.len()
            ));
        }
        Ok(Self::build(Some(Key::derive_from(token.as_bytes())), idle))
    }

    /// Open without a token, closed with one.
    pub fn new(token: Option<&str>, idle: Duration) -> Result<Self, String> {
        match token {
            Some(token) => Self::closed(token, idle),
            None => Ok(Self::open()),
        }
    }

    fn build(key: Option<Key>, idle: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                key,
                idle,
                by_name: Failures::per_minute(SIGNIN_FAILURES_PER_MINUTE),
                by_address: Failures::per_minute(SIGNIN_FAILURES_PER_MINUTE),
                accounts: Mutex::default(),
                api_tokens: Mutex::default(),
                in_flight: Mutex::default(),
            }),
        }
    }

    pub fn is_open(&self) -> bool {
        self.inner.key.is_none()
    }

    /// Grading's account `name`, asked at most every [`ACCOUNT_TTL`].
    async fn account(&self, b: &Backends, name: &str) -> Result<Option<Account>, ApiError> {
        cached(&self.inner.accounts, name, ACCOUNT_TTL, b.account(name)).await
    }

    /// The account a personal API token belongs to, asked at most every
    /// [`API_TOKEN_TTL`].
    async fn api_token(&self, b: &Backends, token: &str) -> Result<Option<Account>, ApiError> {
        cached(&self.inner.api_tokens, token, API_TOKEN_TTL, b.verify_token(token)).await
    }

    /// A sign-in as `name` from `address`, if one may be tried now: not when
    /// either has used up its failures, nor while another attempt for either
    /// is being checked. Asked before the password is checked, so a refused
    /// attempt costs grading nothing and tells nothing.
    fn may_try(&self, name: &str, address: Option<IpAddr>) -> Option<Attempt<'_>> {
        if self.inner.by_name.spent(&limit_key(name)) || address.is_some_and(|a| self.inner.by_address.spent(&a)) {
            return None;
        }
        let keys: Vec<String> = std::iter::once(format!("name {}", limit_key(name)))
            .chain(address.map(|a| format!("address {a}")))
            .collect();
        let mut in_flight = self.inner.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if keys.iter().any(|k| in_flight.contains(k)) {
            return None;
        }
        in_flight.extend(keys.iter().cloned());
        drop(in_flight);
        Some(Attempt { security: self, keys })
    }

    /// Counts a failed sign-in against the name and the address.
    fn failed(&self, name: &str, address: Option<IpAddr>) {
        self.inner.by_name.count(limit_key(name));
        if let Some(address) = address {
            self.inner.by_address.count(address);
        }
    }
}

/// Whether `token` looks like a personal API token: `gb_<name>_<40 letters
/// and digits>`, names being at most 64 characters.
fn api_token_shaped(token: &str) -> bool {
    let Some((head, secret)) = token.rsplit_once('_') else { return false };
    let name = head.strip_prefix("gb_").unwrap_or("");
    secret.len() == 40
        && secret.bytes().all(|b| b.is_ascii_alphanumeric())
        && (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Names are short; a long one is cut so a key cannot grow without bound.
fn limit_key(name: &str) -> String {
    name.chars().take(64).collect::<String>().to_lowercase()
}

/// Failed sign-ins per key, as governor's keyed GCRA limiter counts them
/// (a burst of `n`, then one more every minute / `n`). Only failures are
/// counted, so people signing in from one school network do not use up
/// each other's allowance; a key whose allowance a failure has just used up
/// is marked spent until the next one comes, so the attempt after it is
/// refused without checking its password.
struct Failures<K: std::hash::Hash + Eq + Clone> {
    cells: DefaultKeyedRateLimiter<K, StateInformationMiddleware>,
    /// How long one failure's allowance takes to come back.
    replenish: Duration,
    spent: Mutex<HashMap<K, Instant>>,
}

impl<K: std::hash::Hash + Eq + Clone> Failures<K> {
    fn per_minute(n: u32) -> Self {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Self {
            cells: RateLimiter::keyed(Quota::per_minute(n)).with_middleware(),
            replenish: Duration::from_secs(60) / n.get(),
            spent: Mutex::default(),
        }
    }

    fn spent(&self, key: &K) -> bool {
        let mut spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        match spent.get(key) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                spent.remove(key);
                false
            }
            None => false,
        }
    }

    fn count(&self, key: K) {
        let used_up = match self.cells.check_key(&key) {
            Ok(state) => state.remaining_burst_capacity() == 0,
            Err(_) => true,
        };
        if used_up {
            let mut spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
            if spent.len() >= CACHE_ENTRIES {
                let now = Instant::now();
                spent.retain(|_, until| *until > now);
            }
            spent.insert(key, Instant::now() + self.replenish);
        }
        // Forgets the allowances that are whole again, so the map stays small.
        if self.cells.len() > CACHE_ENTRIES {
            self.cells.retain_recent();
        }
    }
}

fn fresh(
    cache: &Mutex<HashMap<String, (Instant, Option<Account>)>>,
    key: &str,
    ttl: Duration,
) -> Option<Option<Account>> {
    let cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    cache.get(key).filter(|(at, _)| at.elapsed() < ttl).map(|(_, account)| account.clone())
}

/// Grading's answer for `key`: kept for `ttl`, else asked (`ask` is only
/// polled then) and kept; while grading is unavailable, a kept answer up to
/// [`STALE_LIMIT`] old stands in.
async fn cached(
    cache: &Mutex<HashMap<String, (Instant, Option<Account>)>>,
    key: &str,
    ttl: Duration,
    ask: impl std::future::Future<Output = Result<Option<Account>, ApiError>>,
) -> Result<Option<Account>, ApiError> {
    if let Some(known) = fresh(cache, key, ttl) {
        return Ok(known);
    }
    match ask.await {
        Ok(answer) => {
            remember(cache, key, answer.clone());
            Ok(answer)
        }
        Err(e) if e.status == 503 => fresh(cache, key, STALE_LIMIT).ok_or(e),
        Err(e) => Err(e),
    }
}

fn remember(cache: &Mutex<HashMap<String, (Instant, Option<Account>)>>, key: &str, account: Option<Account>) {
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() >= CACHE_ENTRIES {
        cache.clear();
    }
    cache.insert(key.to_owned(), (Instant::now(), account));
}

/// What the session cookie holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Session {
    name: String,
    version: i64,
    /// Last used, in milliseconds since the Unix epoch.
    seen: u64,
    /// Signed in, likewise: however busy, a session ends after
    /// [`MAX_SESSION`], so a copied cookie cannot be kept alive for ever.
    #[serde(default)]
    since: u64,
    csrf: String,
}

/// The longest a session lasts, used or not.
const MAX_SESSION: Duration = Duration::from_secs(12 * 60 * 60);

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// 128 random bits, hex: a CSRF token.
fn random_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A cookie as the portal sets them: HttpOnly, SameSite=Lax, for the whole
/// site, Secure when the browser reached us over https.
fn cookie(name: &'static str, value: String, headers: &HeaderMap) -> Cookie<'static> {
    Cookie::build((name, value)).path("/").http_only(true).same_site(SameSite::Lax).secure(over_https(headers)).build()
}

fn removal(name: &'static str) -> Cookie<'static> {
    Cookie::build((name, "")).path("/").build()
}

/// The request reached the portal (or the proxy in front of it) over https.
fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// The origin this request was addressed to, as a browser would write it in
/// `Origin`.
fn own_origin(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let scheme = if over_https(headers) { "https" } else { "http" };
    Some(format!("{scheme}://{host}").to_ascii_lowercase())
}

/// The browser says the request comes from one of our own pages.
fn same_origin(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site == Some("same-origin") {
        return true;
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    matches!((origin, own_origin(headers)), (Some(origin), Some(own)) if origin.to_ascii_lowercase() == own)
}

/// The browser says the request comes from another site (open mode refuses
/// only these: a request saying nothing, such as curl's, goes through).
fn cross_site(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let foreign_fetch = fetch_site.is_some_and(|s| s != "same-origin" && s != "none");
    let foreign_origin = headers.get(header::ORIGIN).is_some() && !same_origin(headers);
    foreign_fetch || foreign_origin
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

/// `Authorization: Bearer <token>`, if the request carries one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim).filter(|t| !t.is_empty())
}

/// The client's address, when the server was started to tell it.
fn client_address(request_extensions: &axum::http::Extensions) -> Option<IpAddr> {
    request_extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip())
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

fn first_page(account: &Account) -> String {
    match (account.role, account.student) {
        (Role::Student, Some(id)) => format!("/students/{id}"),
        _ => "/students".to_owned(),
    }
}

/// What the middleware answers for a refusal: JSON for the API; the page
/// routes' JSON errors become HTML pages in `server::html_errors`.
fn refuse(status: u16, message: &str) -> Response {
    ApiError::new(status, message).into_response()
}

/// The state of [`authenticate`].
#[derive(Clone)]
pub struct Gate {
    pub backends: Backends,
    /// `/pkg/`: the static files, open to anyone.
    pub static_prefix: String,
}

/// In front of every route: says who is asking (open mode, a session, an
/// API token), sends an anonymous visitor to sign in, refuses cross-site
/// state changes and what the viewer's role does not allow, and hands the
/// [`Viewer`] on in the request's (and the response's) extensions.
pub async fn authenticate(State(gate): State<Arc<Gate>>, mut request: Request, next: Next) -> Response {
    let security = gate.backends.security.clone();
    let method = request.method().clone();
    let Some(key) = security.inner.key.clone() else {
        // Open: anyone may change grades, but a page of another site may
        // not make a visitor's browser do it.
        if changes_state(&method) && cross_site(request.headers()) {
            return refuse(403, "This request came from another site; it was not carried out.");
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

    let jar = PrivateCookieJar::from_headers(request.headers(), key);
    let mut set_cookies: Option<PrivateCookieJar> = None;
    let viewer = if let Some(token) = bearer(request.headers()) {
        // Only a token of the shape `gradebook accounts token` prints is
        // asked about (each question costs grading a slow hash), and an
        // address that keeps sending wrong ones is refused like sign-ins.
        let address = client_address(request.extensions());
        let spent = address.is_some_and(|a| security.inner.by_address.spent(&a));
        let checked = match (api_token_shaped(token), spent) {
            (true, false) => security.api_token(&gate.backends, token).await,
            (true, true) => {
                let mut refused = refuse(429, "Too many wrong API tokens. Please wait a minute.");
                refused.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
                return refused;
            }
            (false, _) => Ok(None),
        };
        if let (Ok(None), Some(address)) = (&checked, address) {
            security.inner.by_address.count(address);
        }
        match checked {
            Ok(Some(account)) => Some(Viewer::Person { account, csrf: String::new(), bearer: true }),
            Ok(None) => {
                let mut refused = refuse(401, "The API token is not valid.");
                refused.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return refused;
            }
            Err(e) => return e.into_response(),
        }
    } else {
        let session = jar.get(SESSION_COOKIE).and_then(|c| serde_json::from_str::<Session>(c.value()).ok());
        match session {
            None => {
                // A cookie that no longer decrypts or reads (another key, an
                // old shape) is dropped rather than sent again and again.
                let sent = axum_extra::extract::cookie::CookieJar::from_headers(request.headers());
                if sent.get(SESSION_COOKIE).is_some() {
                    set_cookies = Some(jar.clone().remove(removal(SESSION_COOKIE)));
                }
                None
            }
            Some(session)
                if now_ms().saturating_sub(session.seen) > security.inner.idle.as_millis() as u64
                    || now_ms().saturating_sub(session.since) > MAX_SESSION.as_millis() as u64 =>
            {
                set_cookies = Some(jar.clone().remove(removal(SESSION_COOKIE)));
                None
            }
            Some(session) => match security.account(&gate.backends, &session.name).await {
                Err(e) => return e.into_response(),
                Ok(Some(account)) if account.version == session.version => {
                    if now_ms().saturating_sub(session.seen) > REFRESH_AFTER.as_millis() as u64 {
                        let renewed = Session { seen: now_ms(), ..session.clone() };
                        if let Ok(value) = serde_json::to_string(&renewed) {
                            set_cookies = Some(jar.clone().add(cookie(SESSION_COOKIE, value, request.headers())));
                        }
                    }
                    Some(Viewer::Person { account, csrf: session.csrf, bearer: false })
                }
                // The password changed, or the account is gone.
                Ok(_) => {
                    set_cookies = Some(jar.clone().remove(removal(SESSION_COOKIE)));
                    None
                }
            },
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

/// Lets a state-changing request through when the browser says it comes
/// from our own pages, or when its form carries the session's CSRF token;
/// a 403 otherwise, before anything is stored.
async fn checked_csrf(request: Request, expected: &str) -> Result<Request, Response> {
    let refused = || refuse(403, "This request came from another site; it was not carried out.");
    if same_origin(request.headers()) {
        return Ok(request);
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form || expected.is_empty() {
        return Err(refused());
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, FORM_LIMIT).await else {
        return Err(refuse(413, "The form is too large."));
    };
    let given = form_field(&bytes, "csrf").await.unwrap_or_default();
    if !tokens_match(&given, expected) {
        return Err(refused());
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// One field of a urlencoded form body.
async fn form_field(body: &axum::body::Bytes, name: &str) -> Option<String> {
    let request = Request::builder()
        .method(Method::POST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.clone()))
        .ok()?;
    let Form(form) = Form::<HashMap<String, String>>::from_request(request, &()).await.ok()?;
    form.get(name).cloned()
}

/// Compared in constant time: how much of a token matched must not show.
fn tokens_match(given: &str, expected: &str) -> bool {
    use subtle::ConstantTimeEq;
    !expected.is_empty() && given.len() == expected.len() && bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

/// What each role may ask for: a teacher anything; a student only their own
/// student page and record (reading), the way home and signing out.
fn allowed(viewer: &Viewer, method: &Method, path: &str) -> bool {
    let Some(account) = viewer.account() else { return true };
    if account.role == Role::Teacher {
        return true;
    }
    if path == "/signout" {
        return *method == Method::POST;
    }
    let reading = matches!(*method, Method::GET | Method::HEAD);
    let asked = path.strip_prefix("/api/students/").or_else(|| path.strip_prefix("/students/")).and_then(student_id);
    reading && (path == "/" || (asked.is_some() && asked == account.student))
}

// ---- Sign-in and sign-out --------------------------------------------------

/// The state of the sign-in routes.
#[derive(Clone)]
pub struct SignIn {
    pub backends: Backends,
    pub options: LeptosOptions,
}

/// `GET/POST /signin`, `POST /signout`.
pub fn routes(backends: Backends, options: LeptosOptions) -> Router {
    use axum::routing::{get, post};
    Router::new()
        .route("/signin", get(signin_page).post(signin))
        .route("/signout", post(signout))
        .with_state(SignIn { backends, options })
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

/// The sign-in form: a plain form post, no JavaScript needed.
async fn signin_page(
    State(s): State<SignIn>,
    headers: HeaderMap,
    axum::extract::Query(NextPage { next }): axum::extract::Query<NextPage>,
) -> Response {
    let Some(key) = s.backends.security.inner.key.clone() else {
        // Open: nobody signs in.
        return Redirect::to(local_path(&next).unwrap_or("/")).into_response();
    };
    let jar = PrivateCookieJar::from_headers(&headers, key);
    let (jar, csrf) = signin_token(jar, &headers);
    (jar, Html(signin_html(&s.options, &next, "", &csrf, None))).into_response()
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
    let Some(key) = s.backends.security.inner.key.clone() else {
        return Redirect::to("/").into_response();
    };
    let headers = request.headers().clone();
    let address = client_address(request.extensions());
    let jar = PrivateCookieJar::from_headers(&headers, key);
    let Ok(Form(form)) = Form::<Credentials>::from_request(request, &()).await else {
        return (StatusCode::BAD_REQUEST, Html(signin_html(&s.options, "", "", "", Some(WRONG)))).into_response();
    };
    let expected = jar.get(SIGNIN_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
    if !same_origin(&headers) && !tokens_match(&form.csrf, &expected) {
        return refuse(403, "This sign-in came from another site; it was not carried out.");
    }
    let (jar, csrf) = signin_token(jar, &headers);
    let again = |status: StatusCode, message: &str| {
        (status, jar.clone(), Html(signin_html(&s.options, &form.next, &form.name, &csrf, Some(message))))
            .into_response()
    };
    let Some(_attempt) = s.backends.security.may_try(&form.name, address) else {
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
            s.backends.security.failed(&form.name, address);
            return again(StatusCode::UNAUTHORIZED, WRONG);
        }
        Err(e) => return again(StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_GATEWAY), &e.error),
    };
    let session = Session {
        name: account.name.clone(),
        version: account.version,
        seen: now_ms(),
        since: now_ms(),
        csrf: random_token(),
    };
    let Ok(value) = serde_json::to_string(&session) else {
        return again(StatusCode::INTERNAL_SERVER_ERROR, "The session could not be made.");
    };
    tracing::info!(name = %account.name, "signed in");
    // Grading's freshest word on the account: the next page need not ask.
    remember(&s.backends.security.inner.accounts, &account.name, Some(account.clone()));
    let target = local_path(&form.next).map_or_else(|| first_page(&account), str::to_owned);
    let jar = jar.remove(removal(SIGNIN_COOKIE)).add(cookie(SESSION_COOKIE, value, &headers));
    (jar, Redirect::to(&target)).into_response()
}

/// Ends the session (the middleware has checked it is one, and same-site).
async fn signout(State(s): State<SignIn>, headers: HeaderMap) -> Response {
    let Some(key) = s.backends.security.inner.key.clone() else {
        return Redirect::to("/").into_response();
    };
    let jar = PrivateCookieJar::from_headers(&headers, key).remove(removal(SESSION_COOKIE));
    (jar, Redirect::to("/signin")).into_response()
}

fn signin_html(options: &LeptosOptions, next: &str, name: &str, csrf: &str, problem: Option<&str>) -> String {
    let esc = crate::server::escape;
    let problem = problem.map_or_else(String::new, |p| format!(r#"<p class="error" role="alert">{}</p>"#, esc(p)));
    let main = format!(
        r#"<section class="signin"><h1>Sign in</h1>{problem}
<form method="post" action="/signin">
<label>Name <input name="name" type="text" autocomplete="username" required autofocus value="{name}"/></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required/></label>
<input type="hidden" name="next" value="{next}"/><input type="hidden" name="csrf" value="{csrf}"/>
<button type="submit">Sign in</button>
</form></section>"#,
        name = esc(name),
        next = esc(next),
        csrf = esc(csrf),
    );
    crate::server::document(options, "Sign in", "", &main)
}

#[cfg(test)]
mod tests;
