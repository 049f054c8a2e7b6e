//! The log's storage: an append-only file of JSON lines (one record per line,
//! so a message with newlines can never forge another entry), rotated by
//! size, plus an in-memory window of recent records for queries and a
//! broadcast for live tails.
//!
//! The request path only serializes into memory. A writer thread moves what
//! accumulated to the file within `write_delay` (so a `kill -9` loses nothing
//! acknowledged longer ago than that), and a syncer thread fsyncs within the
//! flush interval (so the same holds for power loss). Batching both is what
//! makes ingestion cheaper than a write per line.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gradebook_shared::log::{LogRecord, NewLogRecord};
use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub dir: PathBuf,
    /// Rotate the current file once it would grow past this.
    pub max_file_bytes: u64,
    /// Rotated files kept besides the current one.
    pub keep_files: usize,
    /// Longest time written data waits for its fsync.
    pub flush_interval: Duration,
    /// Recent records kept in memory for queries.
    pub memory_records: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data/log"),
            max_file_bytes: 16 * 1024 * 1024,
            keep_files: 4,
            flush_interval: Duration::from_millis(50),
            memory_records: 100_000,
        }
    }
}

/// Counters of the store, for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub records_written: AtomicU64,
    pub syncs: AtomicU64,
    /// Longest time written data has waited for its fsync to complete, in
    /// microseconds.
    pub max_sync_delay_us: AtomicU64,
}

/// Handle on the store: cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    pub stats: Arc<StoreStats>,
}

struct Inner {
    config: StoreConfig,
    mem: Mutex<Mem>,
    /// Signalled when `mem.pending` becomes non-empty, and on stop.
    has_pending: Condvar,
    disk: Mutex<Disk>,
    /// Signalled when unsynced data is written, and on stop.
    has_unsynced: Condvar,
    stopping: AtomicBool,
    live: broadcast::Sender<Arc<LogRecord>>,
}

/// What appends change, under one lock so that sequence numbers, file
/// order, the memory window and the live tail always agree.
struct Mem {
    next_seq: u64,
    recent: VecDeque<Arc<LogRecord>>,
    /// Serialized records not yet handed to the file.
    pending: Vec<u8>,
    /// When the oldest of them was acknowledged.
    pending_since: Option<Instant>,
}

struct Disk {
    file: File,
    size: u64,
    /// When the oldest written but not yet fsync'd record was acknowledged.
    unsynced_since: Option<Instant>,
}

/// Stops the store's threads after a last write and fsync.
pub struct Closer {
    inner: Arc<Inner>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Closer {
    /// Blocks until everything acknowledged is written and fsync'd.
    pub fn close(self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.has_pending.notify_all();
        self.inner.has_unsynced.notify_all();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// How long the writer lets appends accumulate before writing them.
const WRITE_DELAY: Duration = Duration::from_millis(2);
/// Pending bytes beyond which the writer does not wait.
const WRITE_EARLY_BYTES: usize = 256 * 1024;

const CURRENT: &str = "log.jsonl";

fn rotated(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("log.{n}.jsonl"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    /// Opens (creating if needed) the store in `config.dir` and starts its
    /// writer and syncer threads.
    pub fn open(config: StoreConfig) -> std::io::Result<(Self, Closer)> {
        std::fs::create_dir_all(&config.dir)?;
        let mut recent = VecDeque::with_capacity(config.memory_records.min(1 << 16));
        let mut last_seq = 0;
        // Oldest first, so the window ends with the newest records.
        for n in (1..=config.keep_files).rev().map(Some).chain([None]) {
            let path = n.map_or_else(|| config.dir.join(CURRENT), |n| rotated(&config.dir, n));
            let Ok(file) = File::open(&path) else { continue };
            for line in BufReader::new(file).lines() {
                let Ok(line) = line else { break };
                // A torn last line (crash mid-write) is skipped, not fatal.
                if let Ok(r) = serde_json::from_str::<LogRecord>(&line) {
                    last_seq = last_seq.max(r.seq);
                    if recent.len() == config.memory_records {
                        recent.pop_front();
                    }
                    recent.push_back(Arc::new(r));
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(config.dir.join(CURRENT))?;
        let size = file.metadata()?.len();
        let (live, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner {
            config,
            mem: Mutex::new(Mem { next_seq: last_seq + 1, recent, pending: Vec::new(), pending_since: None }),
            has_pending: Condvar::new(),
            disk: Mutex::new(Disk { file, size, unsynced_since: None }),
            has_unsynced: Condvar::new(),
            stopping: AtomicBool::new(false),
            live,
        });
        let store = Store { inner: inner.clone(), stats: Arc::default() };
        let threads = vec![
            std::thread::Builder::new().name("log-writer".into()).spawn({
                let store = store.clone();
                move || store.writer()
            })?,
            std::thread::Builder::new().name("log-syncer".into()).spawn({
                let store = store.clone();
                move || store.syncer()
            })?,
        ];
        Ok((store, Closer { inner, threads }))
    }

    /// Stores `records`, returning the last sequence number. They are in
    /// queries and the live tail at once, in the file within a few
    /// milliseconds and fsync'd within the flush interval.
    pub fn append(&self, records: Vec<NewLogRecord>) -> std::io::Result<u64> {
        let inner = &self.inner;
        if inner.stopping.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("the log store is closing"));
        }
        let mut guard = lock(&inner.mem);
        let mem = &mut *guard;
        let was_empty = mem.pending.is_empty();
        for r in records {
            let record = Arc::new(LogRecord {
                seq: mem.next_seq,
                service: r.service,
                level: r.level,
                message: r.message,
                timestamp: r.timestamp.unwrap_or_else(gradebook_runtime::time::now_rfc3339),
                fields: r.fields,
            });
            mem.next_seq += 1;
            // Serializing our own struct into memory cannot fail.
            serde_json::to_writer(&mut mem.pending, &*record).expect("a log record serializes");
            mem.pending.push(b'\n');
            if mem.recent.len() >= inner.config.memory_records {
                mem.recent.pop_front();
            }
            mem.recent.push_back(record.clone());
            self.stats.records_written.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("gradebook_log_records_ingested_total").increment(1);
            let _ = inner.live.send(record);
        }
        mem.pending_since.get_or_insert_with(Instant::now);
        metrics::gauge!("gradebook_log_pending_bytes").set(mem.pending.len() as f64);
        let last = mem.next_seq - 1;
        let wake = was_empty || mem.pending.len() >= WRITE_EARLY_BYTES;
        drop(guard);
        if wake {
            inner.has_pending.notify_one();
        }
        Ok(last)
    }

    /// The records in memory that `keep` accepts, the last `limit` of them,
    /// oldest first.
    pub fn query(&self, limit: usize, keep: impl Fn(&LogRecord) -> bool) -> Vec<Arc<LogRecord>> {
        let mem = lock(&self.inner.mem);
        let mut found: Vec<Arc<LogRecord>> = mem.recent.iter().rev().filter(|r| keep(r)).take(limit).cloned().collect();
        drop(mem);
        found.reverse();
        found
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogRecord>> {
        self.inner.live.subscribe()
    }

    /// Moves pending records to the file, a batch at a time.
    fn writer(self) {
        let inner = &self.inner;
        let mut batch = Vec::new();
        loop {
            let mut mem = lock(&inner.mem);
            while mem.pending.is_empty() && !inner.stopping.load(Ordering::SeqCst) {
                mem = inner.has_pending.wait(mem).unwrap_or_else(|p| p.into_inner());
            }
            let stopping = inner.stopping.load(Ordering::SeqCst);
            if !stopping && mem.pending.len() < WRITE_EARLY_BYTES {
                // Let more appends join this write.
                drop(mem);
                std::thread::sleep(WRITE_DELAY);
                mem = lock(&inner.mem);
            }
            std::mem::swap(&mut batch, &mut mem.pending);
            let since = mem.pending_since.take();
            drop(mem);
            metrics::gauge!("gradebook_log_pending_bytes").set(0.0);
            if !batch.is_empty() {
                let mut disk = lock(&inner.disk);
                if let Err(e) = write(&mut disk, &inner.config, &batch) {
                    tracing::error!(error = %e, "writing the log failed; retrying");
                    // Put the batch back in front of what came since.
                    drop(disk);
                    let mut mem = lock(&inner.mem);
                    batch.extend_from_slice(&mem.pending);
                    std::mem::swap(&mut batch, &mut mem.pending);
                    mem.pending_since = since.or(mem.pending_since);
                    drop(mem);
                    batch.clear();
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                if let Some(since) = since {
                    disk.unsynced_since.get_or_insert(since);
                }
                drop(disk);
                inner.has_unsynced.notify_one();
                batch.clear();
            }
            if stopping && lock(&inner.mem).pending.is_empty() {
                return;
            }
        }
    }

    /// Fsyncs written data by half the flush interval after it was
    /// acknowledged, without holding up the writer.
    fn syncer(self) {
        let inner = &self.inner;
        let half = inner.config.flush_interval / 2;
        loop {
            let mut disk = lock(&inner.disk);
            while disk.unsynced_since.is_none() && !inner.stopping.load(Ordering::SeqCst) {
                disk = inner.has_unsynced.wait(disk).unwrap_or_else(|p| p.into_inner());
            }
            let Some(since) = disk.unsynced_since else { return };
            let wait = half.saturating_sub(since.elapsed());
            if !wait.is_zero() && !inner.stopping.load(Ordering::SeqCst) {
                drop(disk);
                std::thread::sleep(wait);
                disk = lock(&inner.disk);
            }
            let since = disk.unsynced_since.take().unwrap_or(since);
            // Another handle on the same open file: its fsync covers it all.
            let file = disk.file.try_clone();
            drop(disk);
            match file.and_then(|f| f.sync_data()) {
                Ok(()) => {
                    self.stats.syncs.fetch_add(1, Ordering::Relaxed);
                    self.stats.max_sync_delay_us.fetch_max(since.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
                Err(e) => tracing::error!(error = %e, "fsync of the log failed"),
            }
            if inner.stopping.load(Ordering::SeqCst) && lock(&inner.disk).unsynced_since.is_none() {
                // The writer may still hand over its last batch.
                if lock(&inner.mem).pending.is_empty() {
                    return;
                }
            }
        }
    }
}

fn write(disk: &mut Disk, config: &StoreConfig, bytes: &[u8]) -> std::io::Result<()> {
    if disk.size > 0 && disk.size + bytes.len() as u64 > config.max_file_bytes {
        rotate(disk, config)?;
    }
    disk.file.write_all(bytes)?;
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
    Ok(())
}
