//! The writer thread: it takes everything that queued while it was busy,
//! writes it in one go and (with [`SyncMode::Ack`]) fsyncs it once (group
//! commit), then makes the records readable, publishes them and answers
//! their appends; a failed write or fsync fails exactly the appends in it.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::disk::{undo, write};
use super::segments::Segment;
use super::{Append, Store, SyncMode};

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
                if let Some(file) = disk.new_segment.take() {
                    self.start_segment(file);
                }
                if disk.torn {
                    self.soil_current();
                }
                match written {
                    Ok(w) if inner.config.sync == SyncMode::Ack => match (inner.sync)(&disk.file) {
                        Ok(()) => {
                            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
                            self.stats
                                .max_sync_delay_us
                                .fetch_max(since.elapsed().as_micros() as u64, Ordering::Relaxed);
                            *self.stats.sync_error.lock() = None;
                            Ok(w)
                        }
                        Err(e) => {
                            undo(&mut disk, w.offset);
                            if disk.torn {
                                self.soil_current();
                            }
                            self.stats.failed_syncs.fetch_add(1, Ordering::Relaxed);
                            *self.stats.sync_error.lock() = Some(e.to_string());
                            Err(std::io::Error::new(e.kind(), format!("fsync failed: {e}")))
                        }
                    },
                    Ok(w) => {
                        disk.unsynced_since.get_or_insert(since);
                        Ok(w)
                    }
                    Err(e) => {
                        self.stats.failed_writes.fetch_add(1, Ordering::Relaxed);
                        Err(e)
                    }
                }
            };
            bytes.clear();
            match written {
                Ok(w) => {
                    inner.has_unsynced.notify_one();
                    self.index(&appends, w.offset);
                    self.publish(appends);
                }
                Err(e) => {
                    tracing::error!(error = %e, "writing the log failed; refusing the records");
                    let why = e.to_string();
                    for append in appends {
                        let _ = append.done.send(Err(why.clone()));
                    }
                }
            }
        }
    }

    /// Makes the records just written from `offset` readable in the
    /// current segment.
    fn index(&self, appends: &[Append], mut offset: u64) {
        let segments = self.inner.segments.lock();
        let Some(current) = segments.last() else { return };
        for (record, size) in appends.iter().flat_map(|a| &a.records) {
            current.add(record.seq, offset, *size as u64, super::segments::nanos(&record.timestamp));
            offset += *size as u64;
        }
    }

    /// A failed write left bytes that are not a record in the current file.
    fn soil_current(&self) {
        if let Some(current) = self.inner.segments.lock().last() {
            current.soil();
        }
    }

    /// A rotation started a new file: it becomes the current segment, and
    /// the oldest beyond what is kept is dropped.
    fn start_segment(&self, file: std::fs::File) {
        let mut segments = self.inner.segments.lock();
        segments.push(Segment::new(file));
        let keep = self.inner.config.keep_files + 1;
        if segments.len() > keep {
            let extra = segments.len() - keep;
            segments.drain(..extra);
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
