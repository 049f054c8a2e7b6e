//! Ships a process's `tracing` events to the central log service: a layer
//! that queues records (never blocking the code that logs) and a shipper task
//! that delivers them in order, in batches, to a log service found through
//! discovery. While none is reachable, records wait in a bounded buffer; on
//! overflow the oldest are dropped, and how many is itself logged once
//! delivery resumes.
//!
//! A log service of the original design takes only text: one line per POST,
//! `[Service] - message`. Each destination is asked once whether it answers
//! queries (ours does, the original's answers 404/405); the original's then
//! gets its own text lines, one per record.
//!
//! - this module: [`LogBuffer`], the bounded queue between the two;
//! - [`layer`]: the `tracing` layer that turns events into records;
//! - [`ship`]: the shipper, and the two formats a log service may take.

mod layer;
mod ship;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gradebook_shared::log::{Level, NewLogRecord};
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::Notify;

/// Records per POST.
const BATCH: usize = 500;

/// The queue between the tracing layer and the shipper. Cheap to clone.
#[derive(Clone)]
pub struct LogBuffer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LogBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogBuffer").field("service", &self.inner.service).field("queued", &self.len()).finish()
    }
}

struct Inner {
    service: String,
    min_level: Level,
    capacity: usize,
    queue: Mutex<VecDeque<(u64, NewLogRecord)>>,
    next_id: AtomicU64,
    dropped: AtomicU64,
    wake: Notify,
}

/// Where logs go: the base URLs of the log services to try, best first.
pub type Destination = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

impl LogBuffer {
    pub fn new(service: impl Into<String>, min_level: Level, capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                service: service.into(),
                min_level,
                capacity: capacity.max(1),
                queue: Mutex::new(VecDeque::new()),
                next_id: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                wake: Notify::new(),
            }),
        }
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<(u64, NewLogRecord)>> {
        self.inner.queue.lock()
    }

    pub fn push(&self, record: NewLogRecord) {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut q = self.queue();
        if q.len() >= self.inner.capacity {
            q.pop_front();
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("gradebook_log_ship_dropped_total").increment(1);
        }
        q.push_back((id, record));
        metrics::gauge!("gradebook_log_ship_buffered").set(q.len() as f64);
        let wake = q.len() >= BATCH;
        drop(q);
        if wake {
            self.inner.wake.notify_one();
        }
    }

    pub fn len(&self) -> usize {
        self.queue().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// The next batch: the oldest queued records, preceded by a note of what
    /// was dropped since the last delivery. Returns the id of its last record.
    fn next_batch(&self) -> Option<(Vec<NewLogRecord>, u64, u64)> {
        let q = self.queue();
        let last = q.iter().take(BATCH).next_back()?.0;
        let dropped = self.inner.dropped.load(Ordering::Relaxed);
        let mut batch = Vec::with_capacity(BATCH + 1);
        if dropped > 0 {
            batch.push(NewLogRecord {
                service: self.inner.service.clone(),
                level: Level::Warn,
                message: format!("{dropped} log records were dropped while the log service was unreachable"),
                timestamp: None,
                fields: None,
            });
        }
        batch.extend(q.iter().take(BATCH).map(|(_, r)| r.clone()));
        Some((batch, last, dropped))
    }

    fn delivered(&self, last: u64, dropped: u64) {
        self.inner.dropped.fetch_sub(dropped, Ordering::Relaxed);
        let mut q = self.queue();
        while q.front().is_some_and(|(id, _)| *id <= last) {
            q.pop_front();
        }
        metrics::gauge!("gradebook_log_ship_buffered").set(q.len() as f64);
    }
}

#[cfg(test)]
mod tests;
