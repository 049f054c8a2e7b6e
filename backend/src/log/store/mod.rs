//! The log's storage: an append-only file of JSON lines (one record per line,
//! so a message with newlines can never forge another entry), rotated by
//! size, plus an in-memory window of recent records for queries and a
//! broadcast for live tails.
//!
//! By default ([`SyncMode::Ack`]) an append is answered only once the
//! fdatasync that covers its bytes has returned: a machine crash or power
//! cut loses nothing acknowledged. A writer thread takes everything that
//! queued while it was busy, writes it in one go and fsyncs it once, so
//! concurrent requests share writes and fsyncs (group commit). With
//! [`SyncMode::Interval`] an append is answered once its bytes are in the
//! file and a syncer thread fsyncs within the flush interval: a `kill -9`
//! loses nothing, a power cut may lose what was acknowledged since.
//!
//! Only what was made durable is acknowledged, queried or streamed: a failed
//! write or fsync (a full disk, EIO) fails exactly the requests in it, with
//! nothing of them left behind — their bytes are cut off again, so they can
//! never swallow the record after them. What waits to be written is bounded
//! in bytes, and so is the window of recent records.
//!
//! - this module: the handle, opening (and recovering) the store, and
//!   appends;
//! - [`writer`] and [`syncer`]: the two threads;
//! - [`disk`]: the files, written in whole lines and rotated;
//! - [`segments`]: the retained files with their sparse indexes;
//! - [`read`]: pages by cursor and the export;
//! - [`window`]: the recent records kept in memory, a cache of the newest.

mod disk;
mod read;
mod segments;
mod syncer;
mod window;
mod writer;

pub use read::{Cursor, Page};
pub use segments::TimeRange;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gradebook_shared::log::{LogRecord, NewLogRecord};
use parking_lot::{Condvar, Mutex};
use tokio::sync::{broadcast, oneshot};

use disk::{CURRENT, Disk, ends_whole, rotated};
use segments::Segment;
use window::Window;

/// When an append is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// After the fdatasync that covers it: nothing acknowledged is lost.
    #[default]
    Ack,
    /// Once written, fsync'd within the flush interval: a machine crash or
    /// power cut loses what was acknowledged in that interval, and a failed
    /// fsync is reported only by `/healthz`.
    Interval,
}

/// How the store makes a file durable; a test can make it fail.
pub type SyncFn = Arc<dyn Fn(&File) -> std::io::Result<()> + Send + Sync>;

#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub dir: PathBuf,
    /// Rotate the current file once it would grow past this.
    pub max_file_bytes: u64,
    /// Rotated files kept besides the current one.
    pub keep_files: usize,
    /// When an append is answered.
    pub sync: SyncMode,
    /// With [`SyncMode::Interval`], the longest time written data waits for
    /// its fsync.
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
            sync: SyncMode::Ack,
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
    /// The retained files, oldest first.
    segments: Mutex<Vec<Arc<Segment>>>,
    disk: Mutex<Disk>,
    sync: SyncFn,
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
fn refused(message: &str) -> std::io::Error {
    std::io::Error::other(message.to_owned())
}

impl Store {
    /// Opens (creating if needed) the store in `config.dir` and starts its
    /// writer and syncer threads.
    pub fn open(config: StoreConfig) -> std::io::Result<(Self, Closer)> {
        Self::open_with(config, Arc::new(|file: &File| file.sync_data()))
    }

    /// [`Store::open`], making files durable with `sync`.
    pub fn open_with(config: StoreConfig, sync: SyncFn) -> std::io::Result<(Self, Closer)> {
        std::fs::create_dir_all(&config.dir)?;
        let mut window = Window::default();
        let mut segments = Vec::new();
        let mut last_seq = 0;
        let mut had_current = false;
        // Oldest first, so the window ends with the newest records.
        for n in (1..=config.keep_files).rev().map(Some).chain([None]) {
            let path = n.map_or_else(|| config.dir.join(CURRENT), |n| rotated(&config.dir, n));
            let Ok(file) = File::open(&path) else { continue };
            had_current = n.is_none();
            let segment = Segment::new(file.try_clone()?);
            let mut offset = 0u64;
            let mut reader = BufReader::new(file);
            let mut line = Vec::new();
            loop {
                line.clear();
                let Ok(read) = reader.read_until(b'\n', &mut line) else { break };
                // A torn last line (crash or full disk mid-write) is left out.
                if read == 0 || line.last() != Some(&b'\n') {
                    break;
                }
                match serde_json::from_slice::<LogRecord>(&line[..read - 1]) {
                    Ok(r) => {
                        last_seq = last_seq.max(r.seq);
                        segment.add(r.seq, offset, read as u64, segments::nanos(&r.timestamp));
                        window.push(Arc::new(r), read, &config);
                    }
                    Err(_) => segment.soil(),
                }
                offset += read as u64;
            }
            segments.push(segment);
        }
        let current = config.dir.join(CURRENT);
        let torn = !ends_whole(&current);
        if torn && let Some(current) = segments.last().filter(|_| had_current) {
            // The next write starts with a newline that isolates the torn part.
            current.soil();
        }
        let file = OpenOptions::new().create(true).append(true).open(&current)?;
        if !had_current {
            segments.push(Segment::new(File::open(&current)?));
        }
        let size = file.metadata()?.len();
        let (live, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner {
            config,
            queue: Mutex::new(Queue { next_seq: last_seq + 1, ..Queue::default() }),
            has_pending: Condvar::new(),
            window: Mutex::new(window),
            segments: Mutex::new(segments),
            // A file that does not end with a newline was torn by a crash.
            disk: Mutex::new(Disk { torn, file, size, unsynced_since: None, new_segment: None }),
            sync,
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

    /// Stores `records` and returns the last sequence number, once they are
    /// as durable as the [`SyncMode`] promises. Refused when too much
    /// already waits, or when the write or fsync fails.
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
}

#[cfg(test)]
mod tests;
