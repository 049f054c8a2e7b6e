//! The log's storage: an append-only file of JSON lines (one record per line,
//! so a message with newlines can never forge another entry), rotated by
//! size, plus an in-memory window of recent records for queries and a
//! broadcast for live tails.
//!
//! One writer task owns the file. Appenders hand it batches and are answered
//! once their records are written (so a `kill -9` cannot lose them); the
//! writer fsyncs dirty data within the flush interval, so an acknowledged
//! record is durable against power loss within that interval too.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gradebook_shared::log::{LogRecord, NewLogRecord};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
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

struct Append {
    records: Vec<NewLogRecord>,
    done: oneshot::Sender<std::io::Result<u64>>,
}

/// Handle on the store: cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<Append>,
    recent: Arc<Mutex<VecDeque<Arc<LogRecord>>>>,
    live: broadcast::Sender<Arc<LogRecord>>,
}

const CURRENT: &str = "log.jsonl";

fn rotated(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("log.{n}.jsonl"))
}

impl Store {
    /// Opens (creating if needed) the store in `config.dir` and starts its
    /// writer, which stops (after writing what is queued and a final fsync)
    /// when `stop` is cancelled.
    pub fn open(config: StoreConfig, stop: CancellationToken) -> std::io::Result<(Self, tokio::task::JoinHandle<()>)> {
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
        let (tx, rx) = mpsc::channel(1024);
        let (live, _) = broadcast::channel(4096);
        let store = Store { tx, recent: Arc::new(Mutex::new(recent)), live };
        let writer = Writer { config, file, size, next_seq: last_seq + 1, store: store.clone() };
        let handle = tokio::task::spawn_blocking(move || writer.run(rx, stop));
        Ok((store, handle))
    }

    /// Stores `records`; answers with the last sequence number once they are
    /// written.
    pub async fn append(&self, records: Vec<NewLogRecord>) -> std::io::Result<u64> {
        let (done, answer) = oneshot::channel();
        let closed = || std::io::Error::other("the log store is shutting down");
        self.tx.send(Append { records, done }).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// The records in memory that `keep` accepts, the last `limit` of them,
    /// oldest first.
    pub fn query(&self, limit: usize, keep: impl Fn(&LogRecord) -> bool) -> Vec<Arc<LogRecord>> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let mut found: Vec<Arc<LogRecord>> = recent.iter().rev().filter(|r| keep(r)).take(limit).cloned().collect();
        found.reverse();
        found
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogRecord>> {
        self.live.subscribe()
    }
}

struct Writer {
    config: StoreConfig,
    file: File,
    size: u64,
    next_seq: u64,
    store: Store,
}

impl Writer {
    /// Runs on a blocking thread: file I/O here never stalls the async
    /// workers. Ends when `stop` is cancelled (after writing what is queued)
    /// or every handle is gone.
    fn run(mut self, mut rx: mpsc::Receiver<Append>, stop: CancellationToken) {
        let handle = tokio::runtime::Handle::current();
        let mut buf = Vec::with_capacity(64 * 1024);
        // When written data must be fsync'd by.
        let mut sync_by: Option<tokio::time::Instant> = None;
        loop {
            let next = handle.block_on(async {
                let deadline = async {
                    match sync_by {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    a = rx.recv() => Next::Append(a),
                    _ = deadline => Next::Sync,
                    _ = stop.cancelled() => Next::Append(None),
                }
            });
            match next {
                Next::Sync => {}
                Next::Append(Some(first)) => {
                    // Group commit: everything queued goes out in one write.
                    let mut batch = vec![first];
                    while batch.len() < 256 {
                        match rx.try_recv() {
                            Ok(a) => batch.push(a),
                            Err(_) => break,
                        }
                    }
                    self.write_batch(batch, &mut buf);
                    sync_by.get_or_insert_with(|| tokio::time::Instant::now() + self.config.flush_interval);
                }
                Next::Append(None) => {
                    rx.close();
                    while let Ok(a) = rx.try_recv() {
                        self.write_batch(vec![a], &mut buf);
                    }
                    self.sync();
                    return;
                }
            }
            if sync_by.is_some_and(|t| t <= tokio::time::Instant::now()) {
                self.sync();
                sync_by = None;
            }
        }
    }

    fn write_batch(&mut self, batch: Vec<Append>, buf: &mut Vec<u8>) {
        buf.clear();
        let mut stored = Vec::new();
        let mut answers = Vec::with_capacity(batch.len());
        for append in batch {
            for r in append.records {
                let record = LogRecord {
                    seq: self.next_seq,
                    service: r.service,
                    level: r.level,
                    message: r.message,
                    timestamp: r.timestamp.unwrap_or_else(now_rfc3339),
                    fields: r.fields,
                };
                self.next_seq += 1;
                // Serializing our own struct cannot fail.
                serde_json::to_writer(&mut *buf, &record).expect("a log record serializes");
                buf.push(b'\n');
                stored.push(Arc::new(record));
            }
            answers.push((append.done, self.next_seq - 1));
        }
        let result = self.write(buf);
        if result.is_ok() {
            let mut recent = self.store.recent.lock().unwrap_or_else(|p| p.into_inner());
            for r in &stored {
                if recent.len() >= self.config.memory_records {
                    recent.pop_front();
                }
                recent.push_back(r.clone());
            }
            drop(recent);
            for r in stored {
                let _ = self.store.live.send(r);
            }
        }
        for (done, last) in answers {
            let _ = done.send(match &result {
                Ok(()) => Ok(last),
                Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
            });
        }
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + bytes.len() as u64 > self.config.max_file_bytes {
            self.rotate()?;
        }
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.sync_data()?;
        let dir = &self.config.dir;
        if self.config.keep_files == 0 {
            std::fs::remove_file(dir.join(CURRENT))?;
        } else {
            let _ = std::fs::remove_file(rotated(dir, self.config.keep_files));
            for n in (1..self.config.keep_files).rev() {
                let _ = std::fs::rename(rotated(dir, n), rotated(dir, n + 1));
            }
            std::fs::rename(dir.join(CURRENT), rotated(dir, 1))?;
        }
        self.file = OpenOptions::new().create(true).append(true).open(dir.join(CURRENT))?;
        self.size = 0;
        Ok(())
    }

    fn sync(&mut self) {
        if let Err(e) = self.file.sync_data() {
            tracing::error!(error = %e, "fsync of the log failed");
        }
    }
}

enum Next {
    Append(Option<Append>),
    Sync,
}

pub fn now_rfc3339() -> String {
    crate::registry::table::rfc3339(std::time::SystemTime::now())
}
