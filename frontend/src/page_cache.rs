//! Rendered grade-book pages (`/students`, `/students/{id}`) and the JSON
//! API's copies of grading's answers, kept while the grading service says
//! their data has not changed.
//!
//! Rendering a page costs far more than asking grading "is it still this?"
//! (`If-None-Match` → a bodiless 304), and asking costs more than knowing:
//! while the portal hears grading's change feed (see [`crate::freshness`]),
//! a page kept since the last change heard is served without a question, and
//! no page is ever staler than grading itself. Otherwise every request asks.
//! Requests for the same page that
//! arrive together share one question: a request takes the answer of a
//! question sent after it arrived, or asks one itself ("flights", one at a
//! time per page). When grading answers with new data, the page is rendered
//! from exactly that answer (handed over as [`Prefetched`]) and kept under
//! its tag; a refusal or an outage is rendered the same way, without asking
//! a second time.
//!
//! A page is kept per viewer variant (see `Viewer::page_variant`: role,
//! account, the forms' CSRF token), never only per path: a teacher's page
//! (with its add-grade form and token) is never served to a student. Who may
//! see a page at all was decided before this layer (`auth::authenticate`).
//!
//! The JSON API's reads of grading (`/api/students`, `/api/students/{id}`)
//! are kept here too, as grading's own bytes under its tag: see
//! [`api_students`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use gradebook_shared::grading::Student;
use gradebook_shared::names;

use crate::api::student_id;
use crate::backends::{ANSWER_LIMIT, Backends, Prefetched, human, interpret, no_student, read_body};
use crate::error::ApiError;
use crate::people::Viewer;

/// Pages kept at most; past that the least recently used go.
const MAX_PAGES: usize = 1024;
/// Bytes of all kept pages together; past that the least recently used go.
const MAX_BYTES: usize = 32 << 20;
/// Largest page kept; a bigger one is served but rendered every time.
const MAX_PAGE_BYTES: usize = 4 << 20;
/// How often a request about to ask grading yields first (see
/// [`PageCache::revalidate`]).
const GATHER_YIELDS: usize = 4;

#[derive(Clone, Default)]
pub struct PageCache {
    inner: Arc<Mutex<Inner>>,
    limits: Limits,
}

/// How much the cache keeps.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Pages kept at most.
    pub pages: usize,
    /// Bytes of all kept pages together.
    pub bytes: usize,
    /// Largest page kept; a bigger one is served but rendered every time.
    pub page_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { pages: MAX_PAGES, bytes: MAX_BYTES, page_bytes: MAX_PAGE_BYTES }
    }
}

#[derive(Default)]
struct Inner {
    pages: HashMap<String, Page>,
    /// What the kept pages weigh together (see [`Page::weight`]).
    bytes: usize,
    /// Counts uses, so that the least recently used page can be found.
    clock: u64,
    flights: HashMap<String, Arc<Flights>>,
}

#[derive(Clone)]
struct Page {
    etag: HeaderValue,
    headers: HeaderMap,
    body: Bytes,
    /// The `clock` at its last use.
    used: u64,
    /// The freshness epoch its last question to grading set off in.
    epoch: u64,
}

impl Page {
    fn weight(&self, path: &str) -> usize {
        let headers: usize = self.headers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
        path.len() + headers + self.body.len()
    }
}

/// The questions asked about one page, one at a time.
#[derive(Default)]
struct Flights {
    /// How many have set off.
    started: AtomicU64,
    /// Requests waiting for an answer (not the one asking).
    waiting: AtomicU64,
    /// Whether a question is in the air.
    asking: AtomicBool,
    /// The last one's number and answer, kept only while requests wait for
    /// it (a request arriving later asks anew, so the answer, up to a whole
    /// student, is of no more use).
    last: Mutex<Option<(u64, Outcome)>>,
    /// Wakes every waiting request at once when a question lands: handing
    /// the answer from one to the next would add a wake-up per request to
    /// the last one's wait.
    landed: tokio::sync::Notify,
}

impl Flights {
    fn last(&self) -> std::sync::MutexGuard<'_, Option<(u64, Outcome)>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The answer of a question that set off after `arrived`, if one has
    /// landed; forgotten once no other request waits for it.
    fn answer_after(&self, arrived: u64, waiting: &mut Waiting<'_>) -> Option<Outcome> {
        let mut last = self.last();
        let outcome = last.as_ref().filter(|(number, _)| *number > arrived)?.1.clone();
        waiting.leave();
        if self.waiting.load(Ordering::SeqCst) == 0 {
            *last = None;
        }
        Some(outcome)
    }
}

/// Counts a request as waiting for a flight's answer until it leaves or is
/// dropped (also when the request is, its client gone).
struct Waiting<'a> {
    count: &'a AtomicU64,
    left: bool,
}

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicU64) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self { count, left: false }
    }

    fn leave(&mut self) {
        if !std::mem::replace(&mut self.left, true) {
            self.count.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.leave();
    }
}

/// The question in the air. Once it lands, or its request is dropped (its
/// client gone), the waiting requests wake to take its answer or ask anew.
struct Asking<'a>(&'a Flights);

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        // Free before waking: a woken request may have to ask next.
        self.0.asking.store(false, Ordering::SeqCst);
        self.0.landed.notify_waiters();
    }
}

#[derive(Clone)]
enum Outcome {
    /// The kept page, current without asking (the change feed says so).
    Kept(Page),
    /// The kept page with this tag is still current.
    Unchanged(HeaderValue),
    /// New data (tagged when grading tags it), or why there is none, and the
    /// epoch its question set off in.
    Answer { etag: Option<HeaderValue>, answer: Result<Bytes, ApiError>, epoch: u64 },
}

/// What a 200 from grading must be before it is kept or passed on.
type Check = fn(&[u8]) -> Result<(), ApiError>;

/// Pages read grading's answer themselves while rendering (and render an
/// unreadable one as an error), so the cache takes it as it comes.
fn unchecked(_: &[u8]) -> Result<(), ApiError> {
    Ok(())
}

impl PageCache {
    #[cfg(test)]
    pub fn with_limits(limits: Limits) -> Self {
        Self { limits, ..Self::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The page kept under `key` if nothing has changed since it was fetched
    /// or last confirmed, as far as the change feed can tell.
    fn current(&self, key: &str, backends: &Backends) -> Option<Page> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let page = inner.pages.get_mut(key).filter(|p| backends.fresh.trusted(p.epoch, &backends.runtime))?;
        page.used = now;
        Some(page.clone())
    }

    /// Grading confirmed the page kept under `key` with a question set off
    /// in `epoch`.
    fn confirmed(&self, key: &str, etag: &HeaderValue, epoch: u64) {
        if let Some(page) = self.lock().pages.get_mut(key).filter(|p| p.etag == etag) {
            page.epoch = page.epoch.max(epoch);
        }
    }

    fn page(&self, path: &str, etag: &HeaderValue) -> Option<Page> {
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        let page = inner.pages.get_mut(path).filter(|p| p.etag == etag)?;
        page.used = now;
        Some(page.clone())
    }

    /// Keeps `page`, making room by dropping the least recently used ones;
    /// a page over the size kept is not kept.
    fn keep(&self, path: String, mut page: Page) {
        let weight = page.weight(&path);
        let mut inner = self.lock();
        if let Some(old) = inner.pages.remove(&path) {
            inner.bytes -= old.weight(&path);
        }
        if weight > self.limits.page_bytes {
            return;
        }
        // A scan per eviction: the pages are few, evictions rare.
        while inner.pages.len() >= self.limits.pages || inner.bytes + weight > self.limits.bytes {
            let Some(oldest) = inner.pages.iter().min_by_key(|(_, p)| p.used).map(|(path, _)| path.clone()) else {
                break;
            };
            if let Some(gone) = inner.pages.remove(&oldest) {
                inner.bytes -= gone.weight(&oldest);
            }
        }
        inner.clock += 1;
        page.used = inner.clock;
        inner.bytes += weight;
        inner.pages.insert(path, page);
    }

    fn flights(&self, path: &str) -> Arc<Flights> {
        let mut inner = self.lock();
        if let Some(flights) = inner.flights.get(path) {
            return flights.clone();
        }
        // Each is a few bytes; dropping them all only costs a question that
        // is not shared.
        if inner.flights.len() >= self.limits.pages {
            inner.flights.clear();
        }
        inner.flights.entry(path.to_owned()).or_default().clone()
    }

    /// Grading's current answer for `path`, from a question sent after this
    /// call began; `key` is the page as kept for this viewer. A new body is
    /// passed through `check` once, by the request that fetched it, so that
    /// requests sharing the answer do not check it again.
    async fn revalidate(&self, backends: &Backends, path: &str, key: &str, check: Check) -> Outcome {
        if let Some(page) = self.current(key, backends) {
            return Outcome::Kept(page);
        }
        let flights = self.flights(key);
        let mut waiting = Waiting::new(&flights.waiting);
        let arrived = flights.started.load(Ordering::SeqCst);
        loop {
            // Listening before looking, so that a landing in between wakes it.
            let landed = flights.landed.notified();
            tokio::pin!(landed);
            landed.as_mut().enable();
            if let Some(outcome) = flights.answer_after(arrived, &mut waiting) {
                return outcome;
            }
            if flights.asking.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_err() {
                landed.await;
                continue;
            }
            let asking = Asking(&flights);
            waiting.leave();
            // Lets the requests this portal is already serving reach this
            // point first, so that one question answers them all: a few
            // polls cost far less than a question to grading.
            for _ in 0..GATHER_YIELDS {
                tokio::task::yield_now().await;
            }
            let number = flights.started.fetch_add(1, Ordering::SeqCst) + 1;
            let known = self.lock().pages.get(key).map(|p| p.etag.clone());
            let epoch = backends.fresh.epoch();
            let outcome = self.ask(backends, path, known, check).await;
            if let Outcome::Unchanged(tag) = &outcome {
                self.confirmed(key, tag, epoch);
            }
            // The requests waiting now arrived before it set off: theirs.
            *flights.last() = (flights.waiting.load(Ordering::SeqCst) > 0).then(|| (number, outcome.clone()));
            drop(asking);
            return outcome;
        }
    }

    /// Grading's answer for `path`; a bodiless one when `known` is still its tag.
    async fn ask(&self, backends: &Backends, path: &str, known: Option<HeaderValue>, check: Check) -> Outcome {
        let what = human(names::GRADING);
        let epoch = backends.fresh.epoch();
        let asked = backends
            .send(names::GRADING, |client, base| {
                let get = client.get(format!("{base}{path}"));
                match &known {
                    Some(tag) => get.header(header::IF_NONE_MATCH, tag.clone()),
                    None => get,
                }
            })
            .await;
        let response = match asked {
            Ok(response) => response,
            Err(unavailable) => return Outcome::Answer { etag: None, answer: Err(unavailable), epoch },
        };
        let status = response.status();
        if let (StatusCode::NOT_MODIFIED, Some(tag)) = (status, &known) {
            return Outcome::Unchanged(tag.clone());
        }
        let etag = response.headers().get(header::ETAG).cloned();
        let body = match read_body(response, what, ANSWER_LIMIT).await {
            Ok(body) => body,
            Err(e) => return Outcome::Answer { etag: None, answer: Err(e), epoch },
        };
        let answer = match status {
            StatusCode::OK => check(&body).map(|()| body),
            _ => Err(interpret::<serde::de::IgnoredAny>(status, &body, what)
                .err()
                .unwrap_or_else(|| ApiError::unavailable(what))),
        };
        Outcome::Answer { etag, answer, epoch }
    }
}

/// The grade-book pages whose whole data is grading's answer to the same
/// path; a student's only under its canonical ID, so that `/students/01`
/// cannot become a second copy of `/students/1` (it is a 404 page).
fn is_grading_page(path: &str) -> bool {
    path == "/students" || path.strip_prefix("/students/").and_then(student_id).is_some()
}

/// Middleware in front of the page renderer.
pub async fn serve_cached(
    State((b, pages)): State<(Backends, PageCache)>,
    mut request: Request,
    next: Next,
) -> Response {
    // A query carries a refused form's message and inputs: render those.
    let path = request.uri().path().to_owned();
    if request.method() != Method::GET || request.uri().query().is_some() || !is_grading_page(&path) {
        return next.run(request).await;
    }
    // Kept per viewer: what a page shows depends on who looks.
    let key = match request.extensions().get::<Viewer>() {
        Some(viewer) => format!("{path}\n{}", viewer.page_variant()),
        None => path.clone(),
    };
    let (etag, answer, epoch) = match pages.revalidate(&b, &path, &key, unchecked).await {
        Outcome::Kept(page) => return (page.headers, page.body).into_response(),
        Outcome::Unchanged(tag) => match pages.page(&key, &tag) {
            Some(page) => return (page.headers, page.body).into_response(),
            // Replaced meanwhile: render, asking for itself.
            None => return next.run(request).await,
        },
        Outcome::Answer { etag, answer, epoch } => (etag, answer, epoch),
    };
    request.extensions_mut().insert(Prefetched { path: path.clone(), answer });
    let response = next.run(request).await;
    let Some(etag) = etag.filter(|_| response.status() == StatusCode::OK) else { return response };
    let (parts, body) = response.into_parts();
    let mut rendered = body.into_data_stream();
    let (mut read, mut size) = (Vec::new(), 0);
    while let Some(chunk) = rendered.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                tracing::warn!(%path, error = %e, "rendering failed");
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
        };
        size += chunk.len();
        read.push(chunk);
        if size > pages.limits.page_bytes {
            // Too large to keep: served as it is rendered, what was read first.
            tracing::debug!(%path, "page too large to keep");
            let read = futures::stream::iter(read.into_iter().map(Ok));
            return Response::from_parts(parts, Body::from_stream(read.chain(rendered)));
        }
    }
    let body = Bytes::from(read.concat());
    pages.keep(key, Page { etag, headers: parts.headers.clone(), body: body.clone(), used: 0, epoch });
    Response::from_parts(parts, Body::from(body))
}

// ---- The JSON API's reads --------------------------------------------------
//
// `GET /api/students` and `/api/students/{id}` are grading's answers to
// `/students` and `/students/{id}`: their bytes are passed on as they came,
// with grading's ETag, revalidated on every request like the pages (so never
// staler than grading) and kept in the same cache, within the same bounds.
// They are kept per path, not per viewer: the bytes are the same whoever may
// see them, and who may was decided before (`auth::authenticate`; a student
// reaches only their own record). Grading's bytes are read as students once
// per new tag before they are kept or passed on, so clients never get a
// broken answer.

/// What the API's reads of grading need: shared, as handler state is cloned
/// for every request.
pub type ApiState = Arc<(Backends, PageCache)>;

/// Grading's answer to `path`, kept under `key`: its tag (when grading
/// tags it) and bytes that passed `check`.
async fn checked(
    b: &Backends,
    cache: &PageCache,
    path: &str,
    key: &str,
    check: Check,
) -> Result<(Option<HeaderValue>, Bytes), ApiError> {
    let (etag, answer, epoch) = match cache.revalidate(b, path, key, check).await {
        Outcome::Kept(kept) => return Ok((Some(kept.etag), kept.body)),
        Outcome::Unchanged(tag) => match cache.page(key, &tag) {
            Some(kept) => return Ok((Some(kept.etag), kept.body)),
            // Dropped meanwhile (replaced, or room was made): ask in full.
            None => match cache.ask(b, path, None, check).await {
                Outcome::Answer { etag, answer, epoch } => (etag, answer, epoch),
                Outcome::Kept(_) | Outcome::Unchanged(_) => {
                    return Err(ApiError::unavailable(human(names::GRADING)));
                }
            },
        },
        Outcome::Answer { etag, answer, epoch } => (etag, answer, epoch),
    };
    let body = answer?;
    if let Some(tag) = &etag {
        let page = Page { etag: tag.clone(), headers: HeaderMap::new(), body: body.clone(), used: 0, epoch };
        cache.keep(key.to_owned(), page);
    }
    Ok((etag, body))
}

fn students_check(body: &[u8]) -> Result<(), ApiError> {
    interpret::<Vec<Student>>(StatusCode::OK, body, human(names::GRADING)).map(drop)
}

fn student_check(body: &[u8]) -> Result<(), ApiError> {
    interpret::<Student>(StatusCode::OK, body, human(names::GRADING)).map(drop)
}

/// Grading's bytes as the answer, under its tag; a bodiless 304 when the
/// client already holds them.
fn pass_on(request: &HeaderMap, etag: Option<HeaderValue>, body: Bytes) -> Response {
    let json = (header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    match etag {
        Some(tag) if holds(request, &tag) => (StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response(),
        Some(tag) => ([json, (header::ETAG, tag)], body).into_response(),
        None => ([json], body).into_response(),
    }
}

/// Whether the client's `If-None-Match` names `tag` (or any, `*`), read as
/// grading reads it: a weak tag matches too, as RFC 9110 says for GET.
fn holds(request: &HeaderMap, tag: &HeaderValue) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|given| given == "*" || given.trim_start_matches("W/") == tag)
}

/// `GET /api/students`: grading's list as it came. A student is refused
/// before this (403); should that rule ever loosen, a student would still
/// get only their own record out of it, read and written anew.
pub async fn api_students(State(api): State<ApiState>, request: Request) -> Result<Response, ApiError> {
    let (b, cache) = &*api;
    let (etag, body) = checked(b, cache, "/students", "/api/students", students_check).await?;
    match request.extensions().get::<Viewer>() {
        Some(viewer) if !viewer.sees_everything() => {
            let students: Vec<Student> = interpret(StatusCode::OK, &body, human(names::GRADING))?;
            let own: Vec<Student> = students.into_iter().filter(|s| viewer.may_see_student(s.id)).collect();
            Ok(axum::Json(own).into_response())
        }
        // Open mode, a teacher (or no `auth` in front, as in unit tests).
        _ => Ok(pass_on(request.headers(), etag, body)),
    }
}

/// `GET /api/students/{id}`: grading's record as it came, to whoever may
/// see it (a student only their own, as `auth::authenticate` already said).
pub async fn api_student(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let id = crate::server::parse_id(&id)?;
    if !request.extensions().get::<Viewer>().is_none_or(|v| v.may_see_student(id)) {
        return Err(ApiError::new(403, "Your account may not see or do this."));
    }
    let (b, cache) = &*api;
    let (path, key) = (format!("/students/{id}"), format!("/api/students/{id}"));
    let (etag, body) = checked(b, cache, &path, &key, student_check).await.map_err(|e| no_student(id, e))?;
    Ok(pass_on(request.headers(), etag, body))
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::get;
    use gradebook_runtime::Runtime;
    use gradebook_shared::registry::PatchEntry;
    use tower::ServiceExt;

    use super::*;

    #[test]
    fn only_the_pages_made_of_one_grading_answer_are_kept() {
        assert!(is_grading_page("/students"));
        assert!(is_grading_page("/students/12"));
        for path in ["/students/", "/students/abc", "/students/1/grades", "/services", "/logs", "/"] {
            assert!(!is_grading_page(path), "{path}");
        }
    }

    #[test]
    fn a_student_page_is_kept_only_under_its_canonical_id() {
        for path in ["/students/01", "/students/001", "/students/+1", "/students/-1", "/students/99999999999999999999"]
        {
            assert!(!is_grading_page(path), "{path}");
        }
    }

    fn page_of(bytes: usize) -> Page {
        Page {
            etag: HeaderValue::from_static("\"v\""),
            headers: HeaderMap::new(),
            body: Bytes::from(vec![b'a'; bytes]),
            used: 0,
            epoch: 0,
        }
    }

    fn stored_bytes(cache: &PageCache) -> usize {
        cache.lock().pages.values().map(|p| p.body.len()).sum()
    }

    #[test]
    fn the_kept_pages_stay_within_their_byte_budget_dropping_the_least_recently_used() {
        let cache = PageCache::with_limits(Limits { pages: 100, bytes: 1000, page_bytes: 500 });
        let tag = HeaderValue::from_static("\"v\"");
        cache.keep("/students/1".into(), page_of(400));
        cache.keep("/students/2".into(), page_of(400));
        assert!(cache.page("/students/1", &tag).is_some(), "read, so used more recently than 2");

        for i in 3..10 {
            cache.keep(format!("/students/{i}"), page_of(400));
            assert!(stored_bytes(&cache) <= 1000, "{} bytes kept after page {i}", stored_bytes(&cache));
        }
        assert!(cache.page("/students/9", &tag).is_some(), "the newest page is kept");

        let cache = PageCache::with_limits(Limits { pages: 100, bytes: 1000, page_bytes: 500 });
        cache.keep("/students/1".into(), page_of(400));
        cache.keep("/students/2".into(), page_of(400));
        cache.page("/students/1", &tag);
        cache.keep("/students/3".into(), page_of(400));
        assert!(cache.page("/students/1", &tag).is_some(), "the page read last stays");
        assert!(cache.page("/students/2", &tag).is_none(), "the least recently used page went");
    }

    /// A grading stand-in on a real socket that tags every answer.
    async fn tagging_grading() -> String {
        let app = Router::new()
            .route("/students", get(|| async { ([(header::ETAG, "\"v1\"")], axum::Json(Vec::<()>::new())) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn backends_knowing_grading(url: String) -> Backends {
        let spec = gradebook_runtime::ServiceSpec::new(names::PORTAL, "http://127.0.0.1:9");
        let runtime = Runtime::new(spec, "127.0.0.1:5005".parse().unwrap());
        runtime.providers().merge(&[PatchEntry { name: names::GRADING.into(), url }]);
        Backends::new(runtime, "http://127.0.0.1:9".into())
    }

    #[tokio::test]
    async fn no_answer_from_grading_is_held_once_no_page_load_waits_for_it() {
        let backends = backends_knowing_grading(tagging_grading().await);
        let cache = PageCache::default();

        cache.revalidate(&backends, "/students", "/students", unchecked).await;

        let flights = cache.lock().flights.get("/students").cloned().unwrap();
        assert!(flights.last().is_none(), "a later load asks anew, so the answer is of no use");
    }

    #[tokio::test]
    async fn a_student_let_through_to_the_api_would_still_get_only_their_own_record() {
        let student = |id| Student { id, first_name: "F".into(), last_name: "L".into(), grades: vec![], average: None };
        let students = vec![student(1), student(2)];
        let app = Router::new()
            .route(
                "/students",
                get(move || std::future::ready(([(header::ETAG, "\"two\"")], axum::Json(students.clone())))),
            )
            .route("/students/{id}", get(move || async move { ([(header::ETAG, "\"one\"")], axum::Json(student(2))) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let account = crate::people::Account {
            name: "sam".into(),
            role: crate::people::Role::Student,
            student: Some(1),
            version: 1,
        };
        // Past `auth::authenticate`, which refuses these today.
        let api = Router::new()
            .route("/api/students", get(api_students))
            .route("/api/students/{id}", get(api_student))
            .with_state(Arc::new((backends_knowing_grading(url), PageCache::default())))
            .layer(axum::Extension(Viewer::Person { account, csrf: String::new(), bearer: true }));

        let list = api.clone().oneshot(Request::get("/api/students").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(list.status(), StatusCode::OK);
        assert!(list.headers().get(header::ETAG).is_none(), "not grading's answer, so not its tag");
        let body = axum::body::to_bytes(list.into_body(), 1 << 20).await.unwrap();
        let ids: Vec<i64> = serde_json::from_slice::<Vec<Student>>(&body).unwrap().iter().map(|s| s.id).collect();
        assert_eq!(ids, [1]);

        let other = api.oneshot(Request::get("/api/students/2").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(other.status(), StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn a_page_larger_than_what_is_kept_is_served_whole_and_not_kept() {
        let backends = backends_knowing_grading(tagging_grading().await);
        let cache = PageCache::with_limits(Limits { pages: 100, bytes: 100_000, page_bytes: 1000 });
        let big = "x".repeat(10_000);
        let app = Router::new()
            .route("/students", get(move || std::future::ready(big.clone())))
            .layer(axum::middleware::from_fn_with_state((backends, cache.clone()), serve_cached));

        let response = app.oneshot(Request::get("/students").body(Body::empty()).unwrap()).await.unwrap();

        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        assert_eq!(body.len(), 10_000);
        assert_eq!(stored_bytes(&cache), 0, "a page over the size kept is rendered every time");
    }
}
