//! Rendered grade-book pages (`/students`, `/students/{id}`), kept while the
//! grading service says their data has not changed.
//!
//! Rendering a page costs far more than asking grading "is it still this?"
//! (`If-None-Match` → a bodiless 304), so every request still asks and no
//! page is ever staler than grading itself. Requests for the same page that
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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use gradebook_shared::names;

use crate::api::student_id;
use crate::backends::{ANSWER_LIMIT, Backends, Prefetched, human, interpret, read_body};
use crate::error::ApiError;
use crate::people::Viewer;

/// Pages kept at most; past that the least recently used go.
const MAX_PAGES: usize = 1024;
/// Bytes of all kept pages together; past that the least recently used go.
const MAX_BYTES: usize = 32 << 20;
/// Largest page kept; a bigger one is served but rendered every time.
const MAX_PAGE_BYTES: usize = 4 << 20;

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
    /// Requests waiting for `last`.
    waiting: AtomicU64,
    /// The last one's number and answer; held while one is in the air, and
    /// after it only while requests wait for it (a request arriving later
    /// asks anew, so the answer, up to a whole student, is of no more use).
    last: tokio::sync::Mutex<Option<(u64, Outcome)>>,
}

/// Counts a request as waiting for a flight's answer until dropped (also
/// when the request is, its client gone).
struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicU64) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Clone)]
enum Outcome {
    /// The kept page with this tag is still current.
    Unchanged(HeaderValue),
    /// New data (tagged when grading tags it), or why there is none.
    Answer { etag: Option<HeaderValue>, answer: Result<Bytes, ApiError> },
}

impl PageCache {
    #[cfg(test)]
    pub fn with_limits(limits: Limits) -> Self {
        Self { limits, ..Self::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
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
        // Each is a few bytes; dropping them all only costs a question that
        // is not shared.
        if inner.flights.len() >= self.limits.pages && !inner.flights.contains_key(path) {
            inner.flights.clear();
        }
        inner.flights.entry(path.to_owned()).or_default().clone()
    }

    /// Grading's current answer for `path`, from a question sent after this
    /// call began; `key` is the page as kept for this viewer.
    async fn revalidate(&self, backends: &Backends, path: &str, key: &str) -> Outcome {
        let flights = self.flights(key);
        let waiting = Waiting::new(&flights.waiting);
        let arrived = flights.started.load(Ordering::SeqCst);
        let mut last = flights.last.lock().await;
        drop(waiting);
        let others_wait = flights.waiting.load(Ordering::SeqCst) > 0;
        if let Some((number, outcome)) = &*last
            && *number > arrived
        {
            let outcome = outcome.clone();
            if !others_wait {
                *last = None;
            }
            return outcome;
        }
        let number = flights.started.fetch_add(1, Ordering::SeqCst) + 1;
        let outcome = self.ask(backends, path, key).await;
        // Those that came while it was in the air take this answer.
        if flights.waiting.load(Ordering::SeqCst) > 0 {
            *last = Some((number, outcome.clone()));
        } else {
            *last = None;
        }
        outcome
    }

    async fn ask(&self, backends: &Backends, path: &str, key: &str) -> Outcome {
        let what = human(names::GRADING);
        let known = self.lock().pages.get(key).map(|p| p.etag.clone());
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
            Err(unavailable) => return Outcome::Answer { etag: None, answer: Err(unavailable) },
        };
        let status = response.status();
        if let (StatusCode::NOT_MODIFIED, Some(tag)) = (status, &known) {
            return Outcome::Unchanged(tag.clone());
        }
        let etag = response.headers().get(header::ETAG).cloned();
        let body = match read_body(response, what, ANSWER_LIMIT).await {
            Ok(body) => body,
            Err(e) => return Outcome::Answer { etag: None, answer: Err(e) },
        };
        let answer = match status {
            StatusCode::OK => Ok(body),
            _ => Err(interpret::<serde::de::IgnoredAny>(status, &body, what)
                .err()
                .unwrap_or_else(|| ApiError::unavailable(what))),
        };
        Outcome::Answer { etag, answer }
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
    let (etag, answer) = match pages.revalidate(&b, &path, &key).await {
        Outcome::Unchanged(tag) => match pages.page(&key, &tag) {
            Some(page) => return (page.headers, page.body).into_response(),
            // Replaced meanwhile: render, asking for itself.
            None => return next.run(request).await,
        },
        Outcome::Answer { etag, answer } => (etag, answer),
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
    pages.keep(key, Page { etag, headers: parts.headers.clone(), body: body.clone(), used: 0 });
    Response::from_parts(parts, Body::from(body))
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

        cache.revalidate(&backends, "/students", "/students").await;

        let flights = cache.lock().flights.get("/students").cloned().unwrap();
        assert!(flights.last.try_lock().unwrap().is_none(), "a later load asks anew, so the answer is of no use");
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
