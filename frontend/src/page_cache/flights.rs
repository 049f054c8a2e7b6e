//! Questions to grading shared by the requests for one page that arrive
//! together: a request takes the answer of a question sent after it
//! arrived, or asks one itself ("flights", one at a time per page).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::body::Bytes;
use axum::http::HeaderValue;
use parking_lot::{Mutex, MutexGuard};

use super::store::Page;
use crate::error::ApiError;

/// What a question about a page came to.
#[derive(Clone)]
pub enum Outcome {
    /// The kept page, current without asking (the change feed says so).
    Kept(Arc<Page>),
    /// The kept page with this tag is still current.
    Unchanged(HeaderValue),
    /// New data (tagged when grading tags it), or why there is none, and the
    /// epoch its question set off in.
    Answer { etag: Option<HeaderValue>, answer: Result<Bytes, ApiError>, epoch: u64 },
}

/// The questions asked about one page, one at a time.
#[derive(Default)]
pub struct Flights {
    /// How many have set off.
    pub started: AtomicU64,
    /// Requests waiting for an answer (not the one asking).
    pub waiting: AtomicU64,
    /// Whether a question is in the air.
    pub asking: AtomicBool,
    /// The last one's number and answer, kept only while requests wait for
    /// it (a request arriving later asks anew, so the answer, up to a whole
    /// student, is of no more use).
    last: Mutex<Option<(u64, Outcome)>>,
    /// Wakes every waiting request at once when a question lands: handing
    /// the answer from one to the next would add a wake-up per request to
    /// the last one's wait.
    pub landed: tokio::sync::Notify,
}

impl Flights {
    pub fn last(&self) -> MutexGuard<'_, Option<(u64, Outcome)>> {
        self.last.lock()
    }

    /// The answer of a question that set off after `arrived`, if one has
    /// landed; forgotten once no other request waits for it.
    pub fn answer_after(&self, arrived: u64, waiting: &mut Waiting<'_>) -> Option<Outcome> {
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
pub struct Waiting<'a> {
    count: &'a AtomicU64,
    left: bool,
}

impl<'a> Waiting<'a> {
    pub fn new(count: &'a AtomicU64) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self { count, left: false }
    }

    pub fn leave(&mut self) {
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
pub struct Asking<'a>(pub &'a Flights);

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        // Free before waking: a woken request may have to ask next.
        self.0.asking.store(false, Ordering::SeqCst);
        self.0.landed.notify_waiters();
    }
}
