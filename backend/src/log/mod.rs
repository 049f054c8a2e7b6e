//! The central log service: takes entries from every service (plain text as
//! in the original protocol, or structured JSON), stores them durably, and
//! serves queries and a live Server-Sent Events tail.
//!
//! - this module: the HTTP API and its serving;
//! - [`store`]: the durable, group-committed file and the window of recent
//!   entries;
//! - [`args`]: `gradebook log`'s flags.

pub mod args;
pub mod store;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use gradebook_shared::ErrorBody;
use gradebook_shared::log::{Level, LogAck, LogBatch, LogRecord, NewLogRecord};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpListener;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_util::sync::CancellationToken;

pub use store::{Store, StoreConfig};

use gradebook_runtime::Runtime;
use gradebook_runtime::http::{error_response, finish_router};

/// Largest `POST /log` body.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// Largest message of one record, and largest `fields` of one (as JSON).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Most records `GET /log` returns.
pub const MAX_LIMIT: usize = 1000;
/// Most bytes of records one `GET /log` answer carries; page on with `after=`.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
const DEFAULT_LIMIT: usize = 100;
/// Queries scanning at once; more wait their turn. Scans run off the async
/// runtime, so ingestion and `/healthz` never wait for them.
const CONCURRENT_SCANS: usize = 2;
/// Live tails (`/log/stream`) held open at once; more are refused.
pub const MAX_TAILS: usize = 256;

/// The log service's state: the store, and what bounds its readers.
#[derive(Clone)]
pub struct Log {
    store: Store,
    scans: Arc<tokio::sync::Semaphore>,
    tails: Arc<tokio::sync::Semaphore>,
    /// Cancelled when shutdown begins: live tails end then, so draining
    /// never waits for a reader that would never leave.
    streams_end: CancellationToken,
}

impl Log {
    pub fn new(store: Store, streams_end: CancellationToken) -> Self {
        Self {
            store,
            scans: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_SCANS)),
            tails: Arc::new(tokio::sync::Semaphore::new(MAX_TAILS)),
            streams_end,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{message}")]
    BadField { field: &'static str, message: String },
    #[error("{message}")]
    TooLarge { field: &'static str, message: String },
    #[error("POST /log takes text/plain or application/json, not {0:?}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Busy(String),
    #[error("the log could not be written: {0}")]
    Storage(#[from] std::io::Error),
}

impl IntoResponse for LogError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match self {
            LogError::BadRequest(_) => error_response(StatusCode::BAD_REQUEST, ErrorBody::new(message)),
            LogError::BadField { field, .. } => {
                error_response(StatusCode::BAD_REQUEST, ErrorBody { error: message, field: Some(field.into()) })
            }
            LogError::TooLarge { field, .. } => {
                error_response(StatusCode::PAYLOAD_TOO_LARGE, ErrorBody { error: message, field: Some(field.into()) })
            }
            LogError::UnsupportedMediaType(_) => {
                error_response(StatusCode::UNSUPPORTED_MEDIA_TYPE, ErrorBody::new(message))
            }
            LogError::Busy(_) => error_response(StatusCode::SERVICE_UNAVAILABLE, ErrorBody::new(message)),
            LogError::Storage(e) => {
                tracing::error!(error = %e, "log write failed");
                error_response(StatusCode::SERVICE_UNAVAILABLE, ErrorBody::new(message))
            }
        }
    }
}

pub fn router(log: Log) -> Router {
    let api = Router::new()
        .route("/log", get(query))
        .route("/log/stream", get(stream))
        .route("/log/stats", get(stats))
        .route("/healthz", get(healthz))
        .with_state(log.clone());
    // Ingestion is the hot path and logs nothing itself: it gets no request
    // span, which would cost more than the work (and every service's logs
    // would otherwise echo here once more).
    let ingest = Router::new().route("/log", post(ingest)).with_state(log.store);
    finish_router(api, BODY_LIMIT).merge(gradebook_runtime::http::untraced(ingest, BODY_LIMIT))
}

/// Serves the log service, registered as `LogService`, until `shutdown`;
/// then finishes in-flight requests and flushes the store.
pub async fn serve(
    listener: TcpListener,
    runtime: Runtime,
    config: StoreConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (store, closer) = Store::open(config.clone())
        .map_err(|e| anyhow::anyhow!("cannot open the log in {}: {e}", config.dir.display()))?;
    tracing::info!(dir = %config.dir.display(), "log store open");
    let log = Log::new(store, shutdown.child_token());
    let served = gradebook_runtime::serve(listener, runtime, router(log), shutdown).await;
    // Everything acknowledged reaches the disk before we exit.
    let _ = tokio::task::spawn_blocking(move || closer.close()).await;
    Ok(served?)
}

/// The writer's counters: what was written, how long data waited for
/// fsync, and what failed.
async fn stats(State(log): State<Log>) -> Json<serde_json::Value> {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &log.store.stats;
    Json(serde_json::json!({
        "records_written": s.records_written.load(Relaxed),
        "syncs": s.syncs.load(Relaxed),
        "max_sync_delay_ms": s.max_sync_delay_us.load(Relaxed) as f64 / 1000.0,
        "failed_writes": s.failed_writes.load(Relaxed),
        "failed_syncs": s.failed_syncs.load(Relaxed),
    }))
}

/// Healthy while the log can keep its promise: 503 after a failed fsync,
/// until one succeeds again.
async fn healthz(State(log): State<Log>) -> Response {
    match log.store.health() {
        Ok(()) => "ok".into_response(),
        Err(why) => error_response(StatusCode::SERVICE_UNAVAILABLE, ErrorBody::new(why)),
    }
}

async fn ingest(State(store): State<Store>, headers: HeaderMap, body: Bytes) -> Result<impl IntoResponse, LogError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("text/plain");
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let records = match mime.as_str() {
        "application/json" => parse_json(&body)?,
        // curl's default form type is taken as text too: people test with it.
        "text/plain" | "" | "application/x-www-form-urlencoded" => vec![parse_text(&body)?],
        other => return Err(LogError::UnsupportedMediaType(other.to_owned())),
    };
    let accepted = records.len();
    let last_seq = store.append(records).await?;
    Ok((StatusCode::OK, Json(LogAck { accepted, last_seq })))
}

/// A line of the original protocol: `[ServiceName] - message` (or any text).
fn parse_text(body: &[u8]) -> Result<NewLogRecord, LogError> {
    let text = std::str::from_utf8(body).map_err(|_| LogError::BadRequest("the body is not UTF-8 text".into()))?;
    let text = text.trim_end_matches(['\r', '\n']);
    if text.trim().is_empty() {
        return Err(LogError::BadRequest("empty log entry".into()));
    }
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(too_large("message", "a log line"));
    }
    let (service, message) = text
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .filter(|(name, _)| !name.is_empty() && !name.contains('\n'))
        .map(|(name, rest)| (name.to_owned(), rest.trim_start().strip_prefix("- ").unwrap_or(rest.trim_start())))
        .unwrap_or_else(|| ("unknown".to_owned(), text));
    Ok(NewLogRecord { service, level: Level::Info, message: message.to_owned(), timestamp: None, fields: None })
}

fn parse_json(body: &[u8]) -> Result<Vec<NewLogRecord>, LogError> {
    let records = serde_json::from_slice::<LogBatch>(body)
        .map_err(|_| {
            // The untagged enum's own message says nothing useful: find out
            // what is wrong with the first bad record.
            let value: serde_json::Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return LogError::BadRequest(format!("malformed JSON: {e}")),
            };
            let first_bad = match &value {
                serde_json::Value::Array(items) => items
                    .iter()
                    .enumerate()
                    .find_map(|(i, v)| serde_json::from_value::<NewLogRecord>(v.clone()).err().map(|e| (Some(i), e))),
                v => serde_json::from_value::<NewLogRecord>(v.clone()).err().map(|e| (None, e)),
            };
            match first_bad {
                Some((Some(i), e)) => LogError::BadRequest(format!("record {i}: {e}")),
                Some((None, e)) => LogError::BadRequest(format!("invalid record: {e}")),
                None => LogError::BadRequest("expected a record or an array of records".into()),
            }
        })?
        .into_vec();
    if records.is_empty() {
        return Err(LogError::BadRequest("no records".into()));
    }
    for r in &records {
        if r.service.trim().is_empty() {
            return Err(LogError::BadField { field: "service", message: "service must not be empty".into() });
        }
        if r.message.is_empty() {
            return Err(LogError::BadField { field: "message", message: "message must not be empty".into() });
        }
        if r.message.len() > MAX_MESSAGE_BYTES {
            return Err(too_large("message", "message"));
        }
        if r.service.len() > 200 {
            return Err(LogError::BadField { field: "service", message: "service must be at most 200 bytes".into() });
        }
        gradebook_shared::printable("service", &r.service)
            .map_err(|e| LogError::BadField { field: "service", message: e.error })?;
        if r.fields.as_ref().is_some_and(|f| serde_json::to_vec(f).map_or(true, |b| b.len() > MAX_MESSAGE_BYTES)) {
            return Err(too_large("fields", "fields"));
        }
        if let Some(ts) = &r.timestamp
            && OffsetDateTime::parse(ts, &Rfc3339).is_err()
        {
            return Err(LogError::BadField {
                field: "timestamp",
                message: format!("timestamp {ts:?} is not an RFC 3339 time"),
            });
        }
    }
    Ok(records)
}

fn too_large(field: &'static str, what: &str) -> LogError {
    LogError::TooLarge { field, message: format!("{what} is over {} KiB", MAX_MESSAGE_BYTES / 1024) }
}

/// Filters shared by `GET /log` and `GET /log/stream`.
#[derive(Debug, Default, Deserialize)]
pub struct Filter {
    service: Option<String>,
    /// Minimum level.
    level: Option<String>,
    /// RFC 3339 time: only records at or after it.
    since: Option<String>,
    /// Only records whose message contains this (case-insensitive).
    contains: Option<String>,
    /// Only records with a larger sequence number (for paging).
    after: Option<u64>,
    limit: Option<usize>,
}

/// A parsed [`Filter`].
struct Matcher {
    service: Option<String>,
    level: Option<Level>,
    since: Option<OffsetDateTime>,
    contains: Option<String>,
    after: u64,
}

impl Filter {
    fn matcher(&self) -> Result<Matcher, LogError> {
        let level = match self.level.as_deref().filter(|l| !l.is_empty()) {
            Some(l) => {
                Some(l.parse::<Level>().map_err(|e| LogError::BadField { field: "level", message: e.to_string() })?)
            }
            None => None,
        };
        let since = match self.since.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(OffsetDateTime::parse(s, &Rfc3339).map_err(|_| LogError::BadField {
                field: "since",
                message: format!("since {s:?} is not an RFC 3339 time"),
            })?),
            None => None,
        };
        Ok(Matcher {
            service: self.service.clone().filter(|s| !s.is_empty()),
            level,
            since,
            contains: self.contains.as_ref().filter(|s| !s.is_empty()).map(|s| s.to_lowercase()),
            after: self.after.unwrap_or(0),
        })
    }
}

impl Matcher {
    fn matches(&self, r: &LogRecord) -> bool {
        r.seq > self.after
            && self.service.as_ref().is_none_or(|s| &r.service == s)
            && self.level.is_none_or(|l| r.level >= l)
            && self.since.is_none_or(|since| OffsetDateTime::parse(&r.timestamp, &Rfc3339).is_ok_and(|t| t >= since))
            && self.contains.as_ref().is_none_or(|c| r.message.to_lowercase().contains(c))
    }
}

async fn query(State(log): State<Log>, Query(filter): Query<Filter>) -> Result<Json<Vec<Arc<LogRecord>>>, LogError> {
    let matcher = filter.matcher()?;
    let limit = filter.limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let _turn = log.scans.acquire().await.map_err(|_| LogError::Busy("the log service is closing".into()))?;
    let store = log.store.clone();
    let found = tokio::task::spawn_blocking(move || store.query(limit, MAX_ANSWER_BYTES, |r| matcher.matches(r)))
        .await
        .map_err(|_| LogError::Busy("the query failed".into()))?;
    Ok(Json(found))
}

async fn stream(
    State(log): State<Log>,
    Query(filter): Query<Filter>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, LogError> {
    let matcher = filter.matcher()?;
    let tail = log
        .tails
        .clone()
        .try_acquire_owned()
        .map_err(|_| LogError::Busy(format!("too many live tails are open (at most {MAX_TAILS})")))?;
    let events = BroadcastStream::new(log.store.subscribe()).filter_map(move |item| {
        let _held = &tail;
        let event = match item {
            Ok(r) if matcher.matches(&r) => Some(
                Event::default()
                    .event("log")
                    .id(r.seq.to_string())
                    .data(serde_json::to_string(&*r).unwrap_or_default()),
            ),
            Ok(_) => None,
            // A slow reader is told how much it missed rather than stalling writers.
            Err(BroadcastStreamRecvError::Lagged(n)) => Some(Event::default().event("lagged").data(n.to_string())),
        };
        futures::future::ready(event.map(Ok))
    });
    let events = events.take_until(log.streams_end.clone().cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
