//! The log's storage: an append-only file of JSON lines (one record per line,
//! so a message with newlines can never forge another entry), rotated by
//! size, plus an in-memory window of recent records for queries and a
//! broadcast for live tails.
//!
//! An append is answered once its bytes are in the file: a `kill -9` right
//! after the answer loses nothing. A writer thread takes everything that
//! queued while it was busy and writes it in one go, so concurrent requests
//! share writes (group commit) and a busy log costs few syscalls. A syncer
//! thread fsyncs within the flush interval, so power loss is bounded too.
//!
//! Only what was written is acknowledged, queried or streamed: a failed write
//! (a full disk) fails exactly the requests in it, with nothing of them left
//! behind — a partial line is cut off again, so it can never swallow the
//! record after it. What waits to be written is bounded in bytes, and so is
//! the window of recent records.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gradebook_shared::log::{LogRecord, NewLogRecord};
use parking_lot::{Condvar, Mutex};
use tokio::sync::{broadcast, oneshot};

#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub dir: PathBuf,
    /// Rotate the current file once it would grow past this.
    pub max_file_bytes: u64,
    /// Rotated files kept besides the current one.
    pub keep_files: usize,
    /// Longest time written data waits for its fsync.
    pub flush_interval: Duration,
    /// Recent records kept in memory for queries, at most.
    pub memory_records: usize,
    /// Bytes of recent records kept in memory, at most (as serialized).
    pub memory_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data/log"),
            max_file_bytes: 16 * 1024 * 1024,
            keep_files: 4,
            flush_interval: Duration::from_millis(50),
            memory_records: 100_000,
            memory_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Bytes waiting for the writer beyond which appends are refused (503)
/// rather than queued: memory stays bounded when the disk cannot keep up.
pub const MAX_PENDING_BYTES: usize = 16 * 1024 * 1024;

/// Counters of the store, for metrics, `/log/stats` and `/healthz`.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub records_written: AtomicU64,
    pub syncs: AtomicU64,
    /// Longest time written data has waited for its fsync to complete, in
    /// microseconds.
    pub max_sync_delay_us: AtomicU64,
    pub failed_writes: AtomicU64,
    pub failed_syncs: AtomicU64,
    /// Why the last fsync failed, while no fsync has succeeded since.
    pub sync_error: Mutex<Option<String>>,
}

/// Handle on the store: cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    pub stats: Arc<StoreStats>,
}

struct Inner {
    config: StoreConfig,
    queue: Mutex<Queue>,
    /// Signalled when the queue becomes non-empty, and on stop.
    has_pending: Condvar,
    window: Mutex<Window>,
    disk: Mutex<Disk>,
    /// Signalled when unsynced data is written, and on stop.
    has_unsynced: Condvar,
    stopping: AtomicBool,
    /// Set once the writer has written its last batch: the syncer then
    /// fsyncs what is left and stops.
    writer_done: AtomicBool,
    live: broadcast::Sender<Arc<LogRecord>>,
}

/// What waits for the writer, in the order it will be written.
#[derive(Default)]
struct Queue {
    next_seq: u64,
    bytes: Vec<u8>,
    appends: Vec<Append>,
    /// When the oldest of them arrived.
    since: Option<Instant>,
}

/// One append waiting for its bytes to be written.
struct Append {
    records: Vec<(Arc<LogRecord>, usize)>,
    done: oneshot::Sender<Result<u64, String>>,
}

/// The most recent written records, bounded in count and bytes.
#[derive(Default)]
struct Window {
    records: VecDeque<(Arc<LogRecord>, usize)>,
    bytes: usize,
}

impl Window {
    fn push(&mut self, record: Arc<LogRecord>, size: usize, config: &StoreConfig) {
        self.records.push_back((record, size));
        self.bytes += size;
        while self.records.len() > config.memory_records || (self.bytes > config.memory_bytes && self.records.len() > 1)
        {
            if let Some((_, size)) = self.records.pop_front() {
                self.bytes -= size;
            }
        }
    }
}

struct Disk {
    file: File,
    size: u64,
    /// A failed write may have left part of a line that could not be cut
    /// off: the next write starts with a newline so it stands alone.
    torn: bool,
    /// When the oldest written but not yet fsync'd record arrived.
    unsynced_since: Option<Instant>,
}

/// Stops the store's threads after a last write and fsync.
pub struct Closer {
    inner: Arc<Inner>,
    writer: std::thread::JoinHandle<()>,
    syncer: std::thread::JoinHandle<()>,
}

impl Closer {
    /// Blocks until everything queued is written and fsync'd: the writer
    /// finishes first, then the syncer covers all it wrote.
    pub fn close(self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        notify(&self.inner.queue, &self.inner.has_pending);
        let _ = self.writer.join();
        self.inner.writer_done.store(true, Ordering::SeqCst);
        notify(&self.inner.disk, &self.inner.has_unsynced);
        let _ = self.syncer.join();
    }
}

/// Wakes the waiter on `condvar` (taking its lock first, so a waiter that
/// just checked its condition cannot miss the wake-up).
fn notify<T>(mutex: &Mutex<T>, condvar: &Condvar) {
    drop(mutex.lock());
    condvar.notify_all();
}

/// True when the file at `path` is empty or ends with a newline.
fn ends_whole(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = File::open(path) else { return true };
    let mut last = [0u8; 1];
    match file.seek(SeekFrom::End(-1)) {
        Ok(_) => file.read_exact(&mut last).is_ok() && last[0] == b'\n',
        Err(_) => true,
    }
}

const CURRENT: &str = "log.jsonl";

fn rotated(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("log.{n}.jsonl"))
}

fn refused(message: &str) -> std::io::Error {
    std::io::Error::other(message.to_owned())
}

impl Store {
    /// Opens (creating if needed) the store in `config.dir` and starts its
    /// writer and syncer threads.
    pub fn open(config: StoreConfig) -> std::io::Result<(Self, Closer)> {
        std::fs::create_dir_all(&config.dir)?;
        let mut window = Window::default();
        let mut last_seq = 0;
        // Oldest first, so the window ends with the newest records.
        for n in (1..=config.keep_files).rev().map(Some).chain([None]) {
            let path = n.map_or_else(|| config.dir.join(CURRENT), |n| rotated(&config.dir, n));
            let Ok(file) = File::open(&path) else { continue };
            for line in BufReader::new(file).lines() {
                let Ok(line) = line else { break };
                // A torn line (crash or full disk mid-write) is skipped, not fatal.
                if let Ok(r) = serde_json::from_str::<LogRecord>(&line) {
                    last_seq = last_seq.max(r.seq);
                    window.push(Arc::new(r), line.len() + 1, &config);
                }
            }
        }
        let current = config.dir.join(CURRENT);
        let torn = !ends_whole(&current);
        let file = OpenOptions::new().create(true).append(true).open(&current)?;
        let size = file.metadata()?.len();
        let (live, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner {
            config,
            queue: Mutex::new(Queue { next_seq: last_seq + 1, ..Queue::default() }),
            has_pending: Condvar::new(),
            window: Mutex::new(window),
            // A file that does not end with a newline was torn by a crash.
            disk: Mutex::new(Disk { torn, file, size, unsynced_since: None }),
            has_unsynced: Condvar::new(),
            stopping: AtomicBool::new(false),
            writer_done: AtomicBool::new(false),
            live,
        });
        let store = Store { inner: inner.clone(), stats: Arc::default() };
        let writer = std::thread::Builder::new().name("log-writer".into()).spawn({
            let store = store.clone();
            move || store.writer()
        })?;
        let syncer = std::thread::Builder::new().name("log-syncer".into()).spawn({
            let store = store.clone();
            move || store.syncer()
        })?;
        Ok((store, Closer { inner, writer, syncer }))
    }

    /// Stores `records` and returns the last sequence number, once their
    /// bytes are in the file (fsync'd within the flush interval). Refused
    /// when too much already waits, or when the write fails.
    pub async fn append(&self, records: Vec<NewLogRecord>) -> std::io::Result<u64> {
        let written = self.enqueue(records)?;
        match written.await {
            Ok(Ok(last)) => Ok(last),
            Ok(Err(why)) => Err(refused(&why)),
            Err(_) => Err(refused("the log store closed before writing")),
        }
    }

    fn enqueue(&self, records: Vec<NewLogRecord>) -> std::io::Result<oneshot::Receiver<Result<u64, String>>> {
        let inner = &self.inner;
        let (done, written) = oneshot::channel();
        let mut queue = inner.queue.lock();
        // Checked under the queue's lock, as the writer checks before it
        // leaves: nothing can be queued after its last batch.
        if inner.stopping.load(Ordering::SeqCst) {
            return Err(refused("the log store is closing"));
        }
        if queue.bytes.len() >= MAX_PENDING_BYTES {
            return Err(refused("the log service cannot write fast enough right now"));
        }
        let was_empty = queue.appends.is_empty();
        let mut stored = Vec::with_capacity(records.len());
        for r in records {
            let record = Arc::new(LogRecord {
                seq: queue.next_seq,
                service: r.service,
                level: r.level,
                message: r.message,
                timestamp: r.timestamp.unwrap_or_else(gradebook_runtime::time::now_rfc3339),
                fields: r.fields,
            });
            queue.next_seq += 1;
            let before = queue.bytes.len();
            // Serializing our own struct into memory cannot fail.
            serde_json::to_writer(&mut queue.bytes, &*record).expect("a log record serializes");
            queue.bytes.push(b'\n');
            stored.push((record, queue.bytes.len() - before));
        }
        queue.appends.push(Append { records: stored, done });
        queue.since.get_or_insert_with(Instant::now);
        metrics::gauge!("gradebook_log_pending_bytes").set(queue.bytes.len() as f64);
        drop(queue);
        if was_empty {
            inner.has_pending.notify_one();
        }
        Ok(written)
    }

    /// The records in memory that `keep` accepts, the last `limit` of them
    /// and at most `max_bytes` of them (as serialized), oldest first.
    ///
    /// The window is copied (as cheap handles) under its lock and filtered
    /// outside it, so a slow filter never holds up writes. Call it off the
    /// async runtime (`spawn_blocking`): a scan of the whole window is work.
    pub fn query(&self, limit: usize, max_bytes: usize, keep: impl Fn(&LogRecord) -> bool) -> Vec<Arc<LogRecord>> {
        let window: Vec<(Arc<LogRecord>, usize)> = self.inner.window.lock().records.iter().cloned().collect();
        let mut bytes = 0;
        let mut found: Vec<Arc<LogRecord>> = window
            .into_iter()
            .rev()
            .filter(|(r, _)| keep(r))
            .take(limit)
            .take_while(|(_, size)| {
                bytes += size;
                bytes <= max_bytes
            })
            .map(|(r, _)| r)
            .collect();
        found.reverse();
        found
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogRecord>> {
        self.inner.live.subscribe()
    }

    /// Why the log cannot promise durability right now, if it cannot.
    pub fn health(&self) -> Result<(), String> {
        match &*self.stats.sync_error.lock() {
            Some(e) => Err(format!("fsync of the log failed: {e}")),
            None => Ok(()),
        }
    }

    /// Writes whatever queued, all of it at once, and answers its appends.
    fn writer(self) {
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

    /// Fsyncs written data by half the flush interval after it arrived,
    /// without holding up the writer.
    fn syncer(self) {
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

/// Appends `bytes` (whole lines) to the current file, rotating first when
/// it would grow past its limit. On failure nothing of them stays: a
/// partial line is cut off, or, if even that fails, isolated by a newline.
fn write(disk: &mut Disk, config: &StoreConfig, bytes: &[u8]) -> std::io::Result<()> {
    if disk.size > 0 && disk.size + bytes.len() as u64 > config.max_file_bytes {
        rotate(disk, config)?;
    }
    if disk.torn {
        disk.file.write_all(b"\n")?;
        disk.size += 1;
        disk.torn = false;
    }
    let before = disk.size;
    if let Err(e) = disk.file.write_all(bytes) {
        disk.torn = disk.file.set_len(before).is_err();
        disk.size = disk.file.metadata().map_or(before, |m| m.len());
        return Err(e);
    }
    disk.size += bytes.len() as u64;
    Ok(())
}

/// Moves the current file aside (keeping `keep_files` older ones) and starts
/// a new one. The old file is fsync'd first: the syncer only knows the new.
fn rotate(disk: &mut Disk, config: &StoreConfig) -> std::io::Result<()> {
    disk.file.sync_data()?;
    let dir = &config.dir;
    if config.keep_files == 0 {
        std::fs::remove_file(dir.join(CURRENT))?;
    } else {
        let _ = std::fs::remove_file(rotated(dir, config.keep_files));
        for n in (1..config.keep_files).rev() {
            let _ = std::fs::rename(rotated(dir, n), rotated(dir, n + 1));
        }
        std::fs::rename(dir.join(CURRENT), rotated(dir, 1))?;
    }
    disk.file = OpenOptions::new().create(true).append(true).open(dir.join(CURRENT))?;
    disk.size = 0;
    disk.torn = false;
    Ok(())
}
