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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gradebook_shared::names;

use crate::backends::{Backends, Prefetched, human, interpret};
use crate::error::ApiError;

/// Pages kept at most; past that the cache starts over (it refills itself).
const MAX_PAGES: usize = 1024;
/// Largest page kept; a bigger one is served but rendered every time.
const MAX_PAGE_BYTES: usize = 32 << 20;

#[derive(Clone, Default)]
pub struct PageCache {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    pages: HashMap<String, Page>,
    flights: HashMap<String, Arc<Flights>>,
}

#[derive(Clone)]
struct Page {
    etag: HeaderValue,
    headers: HeaderMap,
    body: Bytes,
}

/// The questions asked about one page, one at a time.
#[derive(Default)]
struct Flights {
    /// How many have set off.
    started: AtomicU64,
    /// The last one's number and answer; held while one is in the air.
    last: tokio::sync::Mutex<Option<(u64, Outcome)>>,
}

#[derive(Clone)]
enum Outcome {
    /// The kept page with this tag is still current.
    Unchanged(HeaderValue),
    /// New data (tagged when grading tags it), or why there is none.
    Answer { etag: Option<HeaderValue>, answer: Result<Bytes, ApiError> },
}

impl PageCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn page(&self, path: &str, etag: &HeaderValue) -> Option<Page> {
        self.lock().pages.get(path).filter(|p| p.etag == etag).cloned()
    }

    fn keep(&self, path: String, page: Page) {
        let mut inner = self.lock();
        if inner.pages.len() >= MAX_PAGES && !inner.pages.contains_key(&path) {
            inner.pages.clear();
        }
        inner.pages.insert(path, page);
    }

    fn flights(&self, path: &str) -> Arc<Flights> {
        let mut inner = self.lock();
        if inner.flights.len() >= MAX_PAGES && !inner.flights.contains_key(path) {
            inner.flights.clear();
        }
        inner.flights.entry(path.to_owned()).or_default().clone()
    }

    /// Grading's current answer for `path`, from a question sent after this
    /// call began.
    async fn revalidate(&self, backends: &Backends, path: &str) -> Outcome {
        let flights = self.flights(path);
        let arrived = flights.started.load(Ordering::SeqCst);
        let mut last = flights.last.lock().await;
        if let Some((number, outcome)) = &*last
            && *number > arrived
        {
            return outcome.clone();
        }
        let number = flights.started.fetch_add(1, Ordering::SeqCst) + 1;
        let outcome = self.ask(backends, path).await;
        *last = Some((number, outcome.clone()));
        outcome
    }

    async fn ask(&self, backends: &Backends, path: &str) -> Outcome {
        let what = human(names::GRADING);
        let known = self.lock().pages.get(path).map(|p| p.etag.clone());
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
        let Ok(body) = response.bytes().await else {
            return Outcome::Answer { etag: None, answer: Err(ApiError::unavailable(what)) };
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

/// The grade-book pages whose whole data is grading's answer to the same path.
fn is_grading_page(path: &str) -> bool {
    path == "/students"
        || path.strip_prefix("/students/").is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
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
    let (etag, answer) = match pages.revalidate(&b, &path).await {
        Outcome::Unchanged(tag) => match pages.page(&path, &tag) {
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
    match axum::body::to_bytes(body, MAX_PAGE_BYTES).await {
        Ok(body) => {
            pages.keep(path, Page { etag, headers: parts.headers.clone(), body: body.clone() });
            Response::from_parts(parts, Body::from(body))
        }
        Err(e) => {
            tracing::warn!(%path, error = %e, "page too large to keep");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_grading_page;

    #[test]
    fn only_the_pages_made_of_one_grading_answer_are_kept() {
        assert!(is_grading_page("/students"));
        assert!(is_grading_page("/students/12"));
        for path in ["/students/", "/students/abc", "/students/1/grades", "/services", "/logs", "/"] {
            assert!(!is_grading_page(path), "{path}");
        }
    }
}
