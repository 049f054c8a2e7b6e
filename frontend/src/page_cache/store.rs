//! The kept pages: a moka cache with least-recently-used eviction, within a
//! budget of pages and of bytes. Moka bounds one total weight, so a page
//! weighs `max(bytes of it × pages, bytes)` (its bytes: path, headers,
//! body) against a capacity of `bytes × pages`: the weights' sum bounds
//! both, never more than `pages` pages and never more than `bytes` bytes. A
//! page larger than `page_bytes` is not kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue};
use moka::policy::EvictionPolicy;
use moka::sync::Cache;

/// Pages kept at most; past that the least recently used go.
const MAX_PAGES: usize = 1024;
/// Bytes of all kept pages together; past that the least recently used go.
const MAX_BYTES: usize = 32 << 20;
/// Largest page kept; a bigger one is served but rendered every time.
const MAX_PAGE_BYTES: usize = 4 << 20;

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

/// A rendered page, or grading's bytes for the API, under grading's tag.
pub struct Page {
    pub etag: HeaderValue,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The freshness epoch its last question to grading set off in.
    epoch: AtomicU64,
}

impl Page {
    pub fn new(etag: HeaderValue, headers: HeaderMap, body: Bytes, epoch: u64) -> Self {
        Self { etag, headers, body, epoch: AtomicU64::new(epoch) }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Grading confirmed the page with a question set off in `epoch`.
    pub fn confirm(&self, epoch: u64) {
        self.epoch.fetch_max(epoch, Ordering::SeqCst);
    }

    fn weight(&self, path: &str) -> usize {
        let headers: usize = self.headers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
        path.len() + headers + self.body.len()
    }
}

/// The kept pages, by key.
pub struct Store {
    pages: Cache<String, Arc<Page>>,
    limits: Limits,
}

impl Store {
    pub fn new(limits: Limits) -> Self {
        let (count, budget) = (limits.pages.max(1) as u64, limits.bytes as u64);
        let pages = Cache::builder()
            .max_capacity(budget.saturating_mul(count))
            .weigher(move |path: &String, page: &Arc<Page>| {
                // At most `page_bytes` × `pages` (4 MiB × 1024 = 2^32 at the
                // most): where that is cut to `u32::MAX`, the sum still keeps
                // the byte budget to the byte, weights being whole bytes.
                let weight = (page.weight(path) as u64).saturating_mul(count).max(budget);
                u32::try_from(weight).unwrap_or(u32::MAX)
            })
            .eviction_policy(EvictionPolicy::lru())
            .build();
        Self { pages, limits }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The page kept under `key`, counted as used.
    pub fn get(&self, key: &str) -> Option<Arc<Page>> {
        self.pages.get(key)
    }

    /// The page kept under `key` if it still has the tag `etag`.
    pub fn tagged(&self, key: &str, etag: &HeaderValue) -> Option<Arc<Page>> {
        self.get(key).filter(|p| p.etag == etag)
    }

    /// Keeps `page` under `key`, making room by dropping the least recently
    /// used ones; a page over the size kept is not kept (and one kept
    /// before under `key` goes).
    pub fn keep(&self, key: String, page: Page) {
        if page.weight(&key) > self.limits.page_bytes {
            self.pages.invalidate(&key);
        } else {
            self.pages.insert(key, Arc::new(page));
        }
        // Evicts now, so the budget holds when this returns.
        self.pages.run_pending_tasks();
    }

    /// What the kept pages' bodies weigh together.
    #[cfg(test)]
    pub fn body_bytes(&self) -> usize {
        self.pages.iter().map(|(_, p)| p.body.len()).sum()
    }
}
