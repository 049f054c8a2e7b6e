//! The writer thread: it takes everything that queued while it was busy and
//! writes it in one go (group commit), then publishes the written records
//! and answers their appends; a failed write fails exactly the appends in it.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::disk::write;
use super::{Append, Store};

impl Store {
    /// Writes whatever queued, all of it at once, and answers its appends.
    pub(super) fn writer(self) {
        let inner = &self.inner;
        let mut bytes = Vec::new();
        loop {
            let mut queue = inner.queue.lock();
            while queue.appends.is_empty() && !inner.stopping.load(Ordering::SeqCst) {
                inner.has_pending.wait(&mut queue);
            }
            if queue.appends.is_empty() {
                return;
            }
            std::mem::swap(&mut bytes, &mut queue.bytes);
            let appends = std::mem::take(&mut queue.appends);
            let since = queue.since.take().unwrap_or_else(Instant::now);
            drop(queue);
            metrics::gauge!("gradebook_log_pending_bytes").set(0.0);
            let written = {
                let mut disk = inner.disk.lock();
                let written = write(&mut disk, &inner.config, &bytes);
                if written.is_ok() {
                    disk.unsynced_since.get_or_insert(since);
                }
                written
            };
            bytes.clear();
            match written {
                Ok(()) => {
                    inner.has_unsynced.notify_one();
                    self.publish(appends);
                }
                Err(e) => {
                    tracing::error!(error = %e, "writing the log failed; refusing the records");
                    self.stats.failed_writes.fetch_add(1, Ordering::Relaxed);
                    let why = format!("the log could not be written: {e}");
                    for append in appends {
                        let _ = append.done.send(Err(why.clone()));
                    }
                }
            }
        }
    }

    /// Written records join the window and the live tail, then their
    /// appends are answered.
    fn publish(&self, appends: Vec<Append>) {
        let inner = &self.inner;
        let mut window = inner.window.lock();
        for append in &appends {
            for (record, size) in &append.records {
                window.push(record.clone(), *size, &inner.config);
            }
        }
        drop(window);
        for append in appends {
            let count = append.records.len() as u64;
            let last = append.records.last().map_or(0, |(r, _)| r.seq);
            for (record, _) in append.records {
                let _ = inner.live.send(record);
            }
            self.stats.records_written.fetch_add(count, Ordering::Relaxed);
            metrics::counter!("gradebook_log_records_ingested_total").increment(count);
            let _ = append.done.send(Ok(last));
        }
    }
}
