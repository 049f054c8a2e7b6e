//! The syncer thread: it fsyncs written data within the flush interval,
//! without holding up the writer, and keeps the last fsync failure for
//! `/healthz` until one succeeds again.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Store;

impl Store {
    /// Fsyncs written data by half the flush interval after it arrived,
    /// without holding up the writer.
    pub(super) fn syncer(self) {
        let inner = &self.inner;
        let half = inner.config.flush_interval / 2;
        loop {
            let mut disk = inner.disk.lock();
            while disk.unsynced_since.is_none() && !inner.writer_done.load(Ordering::SeqCst) {
                inner.has_unsynced.wait(&mut disk);
            }
            // Done: the writer wrote its last, and all of it is synced.
            let Some(since) = disk.unsynced_since else { return };
            let wait = half.saturating_sub(since.elapsed());
            if !wait.is_zero() && !inner.stopping.load(Ordering::SeqCst) {
                drop(disk);
                std::thread::sleep(wait);
                disk = inner.disk.lock();
            }
            let since = disk.unsynced_since.take().unwrap_or(since);
            // Another handle on the same open file: its fsync covers it all.
            let file = disk.file.try_clone();
            drop(disk);
            match file.and_then(|f| f.sync_data()) {
                Ok(()) => {
                    self.stats.syncs.fetch_add(1, Ordering::Relaxed);
                    self.stats.max_sync_delay_us.fetch_max(since.elapsed().as_micros() as u64, Ordering::Relaxed);
                    *self.stats.sync_error.lock() = None;
                }
                Err(e) => {
                    // Not synced: it stays owed, and /healthz says so.
                    tracing::error!(error = %e, "fsync of the log failed");
                    self.stats.failed_syncs.fetch_add(1, Ordering::Relaxed);
                    *self.stats.sync_error.lock() = Some(e.to_string());
                    inner.disk.lock().unsynced_since.get_or_insert(since);
                    if inner.writer_done.load(Ordering::SeqCst) {
                        // Closing: there is no one left to tell.
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}
