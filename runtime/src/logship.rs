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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};

use gradebook_shared::log::{Level, NewLogRecord};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

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

    /// The tracing layer that fills this buffer. Its own filter keeps
    /// callsites below the ship level (sqlx's per-query debug lines, the
    /// per-request ones) switched off, so they cost nothing when the console
    /// does not want them either.
    pub fn layer<S>(&self) -> impl Layer<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        let level = match self.inner.min_level {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error => tracing::Level::ERROR,
        };
        // Events of the HTTP stack itself would feed back into shipping.
        let quiet = ["hyper", "hyper_util", "reqwest", "h2", "tower", "axum"]
            .map(|target| (target, tracing_subscriber::filter::LevelFilter::OFF));
        let filter = tracing_subscriber::filter::Targets::new().with_default(level).with_targets(quiet);
        ShipLayer { buffer: self.clone() }.with_filter(filter)
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

    /// Delivers queued records until `cancel`, then makes a last attempt
    /// (bounded by `client`'s timeout) to deliver what remains.
    pub async fn ship(self, destination: Destination, client: reqwest::Client, cancel: CancellationToken) {
        let mut formats = Formats::default();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        loop {
            let cancelled = tokio::select! {
                _ = cancel.cancelled() => true,
                _ = self.inner.wake.notified() => false,
                _ = tokio::time::sleep(Duration::from_millis(100)) => false,
            };
            match self.deliver_all(&destination, &client, &mut formats).await {
                Ok(()) => backoff.reset(),
                Err(()) if !cancelled => {
                    backoff.wait(&cancel).await;
                }
                Err(()) => {}
            }
            if cancelled || cancel.is_cancelled() {
                let _ = self.deliver_all(&destination, &client, &mut formats).await;
                return;
            }
        }
    }

    async fn deliver_all(
        &self,
        destination: &Destination,
        client: &reqwest::Client,
        formats: &mut Formats,
    ) -> Result<(), ()> {
        while let Some((batch, last, dropped)) = self.next_batch() {
            let mut sent = false;
            for base in destination() {
                let delivered = match formats.of(client, &base).await {
                    Some(Format::Json) => post(client.post(format!("{base}/log")).json(&batch)).await,
                    Some(Format::Text) => deliver_as_text(client, &base, &batch).await,
                    None => false,
                };
                if delivered {
                    sent = true;
                    break;
                }
            }
            if !sent {
                return Err(());
            }
            self.delivered(last, dropped);
        }
        Ok(())
    }
}

/// What a log service takes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    /// Ours: batches of JSON records.
    Json,
    /// The original design's: one text line per POST.
    Text,
}

/// The format of each destination, asked once.
#[derive(Default)]
struct Formats(HashMap<String, Format>);

impl Formats {
    /// None when the destination cannot be reached right now.
    async fn of(&mut self, client: &reqwest::Client, base: &str) -> Option<Format> {
        if let Some(format) = self.0.get(base) {
            return Some(*format);
        }
        let status = client.get(format!("{base}/log?limit=1")).send().await.ok()?.status();
        let format = match status {
            reqwest::StatusCode::NOT_FOUND | reqwest::StatusCode::METHOD_NOT_ALLOWED => Format::Text,
            _ => Format::Json,
        };
        if format == Format::Text {
            tracing::info!(log_service = %base, "the log service takes only text; shipping text lines");
        }
        self.0.insert(base.to_owned(), format);
        Some(format)
    }
}

async fn post(request: reqwest::RequestBuilder) -> bool {
    request.send().await.is_ok_and(|r| r.status().is_success())
}

/// One POST per record. A failure part-way retries the whole batch, so the
/// original's log may see a line twice, never lose one.
async fn deliver_as_text(client: &reqwest::Client, base: &str, batch: &[NewLogRecord]) -> bool {
    for record in batch {
        let line = text_line(record);
        let request = client.post(format!("{base}/log")).header(reqwest::header::CONTENT_TYPE, "text/plain").body(line);
        if !post(request).await {
            return false;
        }
    }
    true
}

/// `[Service] - message key=value ...`: the original's line, with the
/// structured fields after the message so nothing is lost.
fn text_line(record: &NewLogRecord) -> String {
    let mut line = format!("[{}] - {}", record.service, record.message);
    for (key, value) in record.fields.iter().flatten() {
        match value {
            serde_json::Value::String(s) => line.push_str(&format!(" {key}={s}")),
            v => line.push_str(&format!(" {key}={v}")),
        }
    }
    // A record is one line there, whatever its message holds.
    line.replace(['\n', '\r'], " ")
}

struct ShipLayer {
    buffer: LogBuffer,
}

impl<S: tracing::Subscriber> Layer<S> for ShipLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let level = match *meta.level() {
            tracing::Level::ERROR => Level::Error,
            tracing::Level::WARN => Level::Warn,
            tracing::Level::INFO => Level::Info,
            tracing::Level::DEBUG => Level::Debug,
            tracing::Level::TRACE => Level::Trace,
        };
        let mut visitor = Fields::default();
        event.record(&mut visitor);
        self.buffer.push(NewLogRecord {
            service: self.buffer.inner.service.clone(),
            level,
            message: visitor.message,
            timestamp: Some(crate::time::now_rfc3339()),
            fields: (!visitor.fields.is_empty()).then_some(visitor.fields),
        });
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    fields: serde_json::Map<String, serde_json::Value>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        if field.name() == "message" {
            self.message = match value {
                serde_json::Value::String(s) => s,
                v => v.to_string(),
            };
        } else {
            self.fields.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, serde_json::Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(message: &str) -> NewLogRecord {
        NewLogRecord { service: "T".into(), level: Level::Info, message: message.into(), timestamp: None, fields: None }
    }

    #[test]
    fn overflow_drops_the_oldest_and_says_so_in_the_next_batch() {
        let buffer = LogBuffer::new("T", Level::Info, 3);
        for i in 0..5 {
            buffer.push(record(&i.to_string()));
        }
        let (batch, last, dropped) = buffer.next_batch().unwrap();
        let messages: Vec<&str> = batch.iter().map(|r| r.message.as_str()).collect();
        assert_eq!(dropped, 2);
        assert!(messages[0].starts_with("2 log records were dropped"));
        assert_eq!(&messages[1..], ["2", "3", "4"]);
        buffer.delivered(last, dropped);
        assert!(buffer.is_empty());
        assert_eq!(buffer.dropped(), 0);
    }

    #[test]
    fn a_record_for_the_original_log_service_is_one_line_with_its_fields() {
        let mut fields = serde_json::Map::new();
        fields.insert("n".into(), 3.into());
        fields.insert("url".into(), "http://127.0.0.1:1".into());
        let r = NewLogRecord { fields: Some(fields), ..record("two\nlines") };
        assert_eq!(text_line(&r), "[T] - two lines n=3 url=http://127.0.0.1:1");
    }

    #[test]
    fn records_pushed_during_a_delivery_are_kept() {
        let buffer = LogBuffer::new("T", Level::Info, 10);
        buffer.push(record("a"));
        let (_, last, dropped) = buffer.next_batch().unwrap();
        buffer.push(record("b"));
        buffer.delivered(last, dropped);
        assert_eq!(buffer.next_batch().unwrap().0[0].message, "b");
    }
}
