//! The page cache itself: the kept pages, the flights, and the question to
//! grading ("is it still this?", `If-None-Match` → a bodiless 304) that
//! revalidates them, skipped while the change feed says nothing changed.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use gradebook_shared::names;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use super::flights::{Asking, Flights, Outcome, Waiting};
use super::store::{Limits, Page, Store};
use crate::backends::{ANSWER_LIMIT, Backends, human, interpret, read_body};
use crate::error::ApiError;
use crate::freshness::Freshness;

/// How often a request about to ask grading yields first (see
/// [`PageCache::revalidate`]).
const GATHER_YIELDS: usize = 4;

/// What a 200 from grading must be before it is kept or passed on.
pub type Check = fn(&[u8]) -> Result<(), ApiError>;

/// Pages read grading's answer themselves while rendering (and render an
/// unreadable one as an error), so the cache takes it as it comes.
pub fn unchecked(_: &[u8]) -> Result<(), ApiError> {
    Ok(())
}

/// Grading's answers kept, with what it takes to revalidate them. Cheap to
/// clone: every field is shared.
#[derive(Clone)]
pub struct PageCache {
    pub(super) backends: Backends,
    fresh: Freshness,
    pub(super) store: Arc<Store>,
    /// Per key. Each is a few bytes; dropping one only costs a question
    /// that is not shared.
    pub(super) flights: Cache<String, Arc<Flights>>,
}

impl PageCache {
    /// A cache asking grading through `backends`, trusting what `fresh`
    /// says is current.
    pub fn new(backends: Backends, fresh: Freshness) -> Self {
        Self::with_limits(backends, fresh, Limits::default())
    }

    pub fn with_limits(backends: Backends, fresh: Freshness, limits: Limits) -> Self {
        let flights = Cache::builder().max_capacity(limits.pages as u64).eviction_policy(EvictionPolicy::lru()).build();
        Self { backends, fresh, store: Arc::new(Store::new(limits)), flights }
    }

    /// The page kept under `key` if nothing has changed since it was fetched
    /// or last confirmed, as far as the change feed can tell.
    fn current(&self, key: &str) -> Option<Arc<Page>> {
        self.store.get(key).filter(|p| self.fresh.trusted(p.epoch(), &self.backends.runtime))
    }

    /// Grading's current answer for `path`, from a question sent after this
    /// call began; `key` is the page as kept for this viewer. A new body is
    /// passed through `check` once, by the request that fetched it, so that
    /// requests sharing the answer do not check it again.
    pub async fn revalidate(&self, path: &str, key: &str, check: Check) -> Outcome {
        if let Some(page) = self.current(key) {
            return Outcome::Kept(page);
        }
        let flights = self.flights.get_with_by_ref(key, Arc::default);
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
            let known = self.store.get(key).map(|p| p.etag.clone());
            let epoch = self.fresh.epoch();
            let outcome = self.ask(path, known, check).await;
            if let Outcome::Unchanged(tag) = &outcome
                && let Some(page) = self.store.tagged(key, tag)
            {
                page.confirm(epoch);
            }
            // The requests waiting now arrived before it set off: theirs.
            *flights.last() = (flights.waiting.load(Ordering::SeqCst) > 0).then(|| (number, outcome.clone()));
            drop(asking);
            return outcome;
        }
    }

    /// Grading's answer for `path`; a bodiless one when `known` is still its tag.
    pub async fn ask(&self, path: &str, known: Option<HeaderValue>, check: Check) -> Outcome {
        let what = human(names::GRADING);
        let epoch = self.fresh.epoch();
        let asked = self
            .backends
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
        let answer: Result<Bytes, ApiError> = match status {
            StatusCode::OK => check(&body).map(|()| body),
            _ => Err(interpret::<serde::de::IgnoredAny>(status, &body, what)
                .err()
                .unwrap_or_else(|| ApiError::unavailable(what))),
        };
        Outcome::Answer { etag, answer, epoch }
    }
}
