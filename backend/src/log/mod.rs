//! The central log service: takes entries from every service (plain text as
//! in the original protocol, or structured JSON), stores them durably, and
//! serves queries and a live Server-Sent Events tail.
//!
//! - this module: the service's state, its routes and its serving;
//! - [`ingest`]: `POST /log`, entries checked and stored;
//! - [`callers`]: who may call which route (any service ships; the portal reads);
//! - [`query`]: `GET /log`, a page of entries that match a [`Filter`], by
//!   cursor;
//! - [`export`]: `GET /log/export`, every retained entry that matches, as
//!   NDJSON;
//! - [`tail`]: `GET /log/stream`, a live tail of new ones;
//! - [`filter`]: what a reader asks for;
//! - [`store`]: the durable, group-committed file and the window of recent
//!   entries;
//! - [`error`]: the one error type, as the one JSON error shape;
//! - [`args`]: `gradebook log`'s flags.

pub mod args;
pub mod callers;
mod error;
mod export;
mod filter;
mod ingest;
mod query;
pub mod store;
mod tail;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gradebook_runtime::Runtime;
use gradebook_runtime::http::{error_response, finish_router};
use gradebook_shared::ErrorBody;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::LogError;
pub use filter::Filter;
pub use query::OLDEST_RETAINED;
pub use store::{Cursor, Store, StoreConfig, SyncMode};

/// Largest `POST /log` body.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// Largest message of one record, and largest `fields` of one (as JSON).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Most records `GET /log` returns.
pub const MAX_LIMIT: usize = 1000;
/// Most bytes of records one `GET /log` answer carries; page on with
/// `after=` or `before=`.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// Records `GET /log` returns when no `limit` is given.
const DEFAULT_LIMIT: usize = 100;
/// Queries scanning at once; more wait their turn. Scans run off the async
/// runtime, so ingestion and `/healthz` never wait for them.
const CONCURRENT_SCANS: usize = 2;
/// Live tails (`/log/stream`) held open at once; more are refused.
pub const MAX_TAILS: usize = 256;
/// Exports (`/log/export`) running at once; more are refused.
pub const MAX_EXPORTS: usize = 2;

/// The log service's state: the store, and what bounds its readers.
#[derive(Clone)]
pub struct Log {
    store: Store,
    scans: Arc<tokio::sync::Semaphore>,
    tails: Arc<tokio::sync::Semaphore>,
    exports: Arc<tokio::sync::Semaphore>,
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
            exports: Arc::new(tokio::sync::Semaphore::new(MAX_EXPORTS)),
            streams_end,
        }
    }
}

pub fn router(log: Log) -> Router {
    let api = Router::new()
        .route("/log", get(query::query))
        .route("/log/stream", get(tail::stream))
        .route("/log/export", get(export::export))
        .route("/log/stats", get(stats))
        .route("/healthz", get(healthz))
        .with_state(log.clone());
    // Ingestion is the hot path and logs nothing itself: it gets no request
    // span, which would cost more than the work (and every service's logs
    // would otherwise echo here once more).
    let ingest = Router::new().route("/log", post(ingest::ingest)).with_state(log.store);
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
