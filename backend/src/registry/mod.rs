//! The registry: the hub where services register, declare what they require,
//! and are pushed patches whenever the healthy providers of those change.
//!
//! Owns the HTTP API (wire-compatible with the original design), one prober
//! and one patch deliverer task per registration, and session connections
//! through which services on our runtime report their own death instantly.

mod error;
pub mod table;
mod tasks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use gradebook_shared::registry::{Patch, PatchEntry, Registration, ServiceStatus};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use error::RegistryError;
pub use table::Policy;
use table::{Table, Transition};

use crate::http::{ApiJson, finish_router};

/// Registry settings beyond the listener.
#[derive(Debug, Clone)]
pub struct Config {
    pub policy: Policy,
    /// When set, `POST`/`DELETE /services` and sessions need `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Let heartbeat and update URLs point at another host than the service.
    pub allow_foreign_urls: bool,
    /// Deadline of a patch delivery.
    pub patch_timeout: Duration,
    /// Longest wait between retries of a failed patch delivery.
    pub max_patch_backoff: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            token: None,
            allow_foreign_urls: false,
            patch_timeout: Duration::from_millis(500),
            max_patch_backoff: Duration::from_secs(5),
        }
    }
}

/// The registry's shared state: cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    table: Mutex<Table>,
    /// Per-URL handles on the background tasks of each registration.
    tasks: Mutex<HashMap<String, tasks::Handles>>,
    client: reqwest::Client,
    shutdown: CancellationToken,
}

impl Registry {
    /// A registry whose background tasks stop when `shutdown` is cancelled.
    pub fn new(config: Config, shutdown: CancellationToken) -> Self {
        // Every probe and patch sets its own deadline.
        let client = crate::http::open_ended_client(config.policy.timeout);
        let table = Table::new(config.policy.clone(), Instant::now());
        let registry = Self {
            inner: Arc::new(Inner {
                config,
                table: Mutex::new(table),
                tasks: Mutex::new(HashMap::new()),
                client,
                shutdown,
            }),
        };
        registry.spawn_warmup_end();
        registry
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock cannot leave the table half-updated
        // in a way later readers would trip on, so poisoning is ignored.
        self.inner.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ships the registry's own logs to the log services it knows.
    pub fn ship_logs(&self, buffer: crate::runtime::logship::LogBuffer) {
        let registry = self.clone();
        let destination: crate::runtime::logship::Destination = Arc::new(move || {
            let mut urls: Vec<String> =
                registry.providers(gradebook_shared::names::LOG).into_iter().map(|p| p.url).collect();
            rand::seq::SliceRandom::shuffle(urls.as_mut_slice(), &mut rand::rng());
            urls
        });
        let client = crate::http::client(Duration::from_secs(5));
        tokio::spawn(buffer.ship(destination, client, self.inner.shutdown.clone()));
    }

    pub fn statuses(&self) -> Vec<ServiceStatus> {
        self.table().statuses(Instant::now())
    }

    pub fn providers(&self, name: &str) -> Vec<PatchEntry> {
        self.table().providers(name)
    }

    /// Registers (or re-registers) a service, delivers its first patch and
    /// returns the providers it requires.
    pub async fn register(&self, reg: Registration) -> Result<Patch, RegistryError> {
        validate(&reg, self.inner.config.allow_foreign_urls)?;
        let url = reg.service_url.clone();
        tracing::info!(service = %reg.service_name, %url, required = ?reg.required_services, "registered");
        let outcome = self.table().register(reg);
        if outcome.is_new {
            self.spawn_tasks(&url);
        }
        for name in &outcome.changed_names {
            self.poke_dependents(name);
        }
        // Clients of the original look their providers up right after
        // registering, so the first patch goes out before we answer.
        self.deliver_once(&url).await;
        let providers = {
            let mut table = self.table();
            let providers = table.providers_for(&url);
            table.answered(&url, outcome.generation, &providers);
            providers
        };
        self.poke(&url);
        Ok(Patch { added: providers, removed: vec![] })
    }

    pub fn deregister(&self, url: &str) -> Result<(), RegistryError> {
        let url = url.trim();
        let entry = self.table().deregister(url).ok_or_else(|| RegistryError::UnknownService(url.to_owned()))?;
        tracing::info!(service = %entry.name(), %url, "deregistered");
        self.stop_tasks(url);
        self.poke_dependents(entry.name());
        Ok(())
    }

    fn apply(&self, url: &str, transition: Transition) {
        match transition {
            Transition::Removed { name, cause, silent_for } => {
                tracing::warn!(service = %name, %url, %cause, "removed: service is critical");
                let via = if cause.starts_with("session") { "session" } else { "probes" };
                metrics::counter!("gradebook_registry_removals_total", "via" => via).increment(1);
                metrics::histogram!("gradebook_registry_detection_seconds", "via" => via)
                    .record(silent_for.as_secs_f64());
                self.poke_dependents(&name);
            }
            Transition::Recovered { name } => {
                tracing::info!(service = %name, %url, "recovered: heartbeat answers again, re-added");
                metrics::counter!("gradebook_registry_recoveries_total").increment(1);
                self.poke_dependents(&name);
            }
            Transition::Forgotten { name } => {
                tracing::info!(service = %name, %url, "forgotten: critical for longer than the retention");
                self.stop_tasks(url);
            }
        }
    }

    /// Publishes how many providers are passing and critical.
    fn publish_counts(&self) {
        let (passing, critical) = self.table().counts();
        metrics::gauge!("gradebook_registry_services", "state" => "passing").set(passing as f64);
        metrics::gauge!("gradebook_registry_services", "state" => "critical").set(critical as f64);
    }

    fn poke_dependents(&self, name: &str) {
        self.publish_counts();
        let dependents = self.table().dependents_of(name);
        for url in dependents {
            self.poke(&url);
        }
    }
}

fn validate(reg: &Registration, allow_foreign: bool) -> Result<(), RegistryError> {
    let bad = |field: &str, msg: String| RegistryError::Invalid { field: field.to_owned(), message: msg };
    let name = reg.service_name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(bad("ServiceName", "ServiceName must be 1 to 200 characters".into()));
    }
    if reg.required_services.iter().any(|r| r.trim().is_empty()) {
        return Err(bad("RequiredServices", "RequiredServices must not contain empty names".into()));
    }
    let service = parse_http_url("ServiceURL", &reg.service_url)?;
    let check_same_host = |field: &str, value: &str| -> Result<(), RegistryError> {
        let u = parse_http_url(field, value)?;
        if !allow_foreign
            && (u.host_str(), u.port_or_known_default()) != (service.host_str(), service.port_or_known_default())
        {
            return Err(bad(field, format!("{field} must be on the same host and port as ServiceURL")));
        }
        Ok(())
    };
    check_same_host("HeartbeatURL", &reg.heartbeat_url)?;
    if !reg.service_update_url.is_empty() {
        check_same_host("ServiceUpdateURL", &reg.service_update_url)?;
    } else if !reg.required_services.is_empty() {
        return Err(bad("ServiceUpdateURL", "ServiceUpdateURL is required when RequiredServices is not empty".into()));
    }
    Ok(())
}

fn parse_http_url(field: &str, value: &str) -> Result<url::Url, RegistryError> {
    let invalid = |message: String| RegistryError::Invalid { field: field.to_owned(), message };
    let u = url::Url::parse(value).map_err(|e| invalid(format!("{field} is not an absolute URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(invalid(format!("{field} must be an http or https URL with a host")));
    }
    Ok(u)
}

// ---- HTTP -----------------------------------------------------------------

/// Largest request body the registry reads.
pub const BODY_LIMIT: usize = 64 * 1024;

pub fn router(registry: Registry) -> Router {
    let api = Router::new()
        .route("/services", post(register).delete(deregister).get(list))
        .route("/services/{name}", get(providers))
        .route("/sessions", post(session))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(registry);
    finish_router(api, BODY_LIMIT)
}

/// Serves the registry on `listener` until `shutdown` is cancelled.
/// The registry lists itself (probed like anyone) so that the status
/// monitor shows it beside the services.
pub async fn serve(listener: TcpListener, registry: Registry, shutdown: CancellationToken) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "registry listening");
    let serving = axum::serve(listener, router(registry.clone()))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .into_future();
    let url = format!("http://{addr}");
    let me = Registration {
        service_name: gradebook_shared::names::REGISTRY.to_owned(),
        service_url: url.clone(),
        required_services: vec![],
        service_update_url: String::new(),
        heartbeat_url: format!("{url}/healthz"),
        known_providers: vec![],
    };
    // In the same task as the server, so the listener lives exactly as long
    // as this future.
    let list_myself = async {
        if let Err(e) = registry.register(me).await {
            tracing::warn!(error = %e, "cannot list the registry itself");
        }
    };
    let (served, ()) = tokio::join!(serving, list_myself);
    served
}

fn authorize(registry: &Registry, headers: &HeaderMap) -> Result<(), RegistryError> {
    let Some(token) = &registry.inner.config.token else { return Ok(()) };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
        _ => Err(RegistryError::Unauthorized),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn register(
    State(registry): State<Registry>,
    headers: HeaderMap,
    ApiJson(reg): ApiJson<Registration>,
) -> Result<Json<Patch>, RegistryError> {
    authorize(&registry, &headers)?;
    Ok(Json(registry.register(reg).await?))
}

async fn deregister(
    State(registry): State<Registry>,
    headers: HeaderMap,
    body: String,
) -> Result<Json<serde_json::Value>, RegistryError> {
    authorize(&registry, &headers)?;
    registry.deregister(&body)?;
    Ok(Json(serde_json::json!({ "removed": body.trim() })))
}

async fn list(State(registry): State<Registry>) -> Json<Vec<ServiceStatus>> {
    Json(registry.statuses())
}

async fn providers(State(registry): State<Registry>, Path(name): Path<String>) -> Json<Vec<PatchEntry>> {
    Json(registry.providers(&name))
}

#[derive(serde::Deserialize)]
struct SessionQuery {
    url: String,
}

/// A service's session: a request whose body never ends while the service
/// lives. When its connection closes without a deregistration, the service
/// has likely died, so it is probed at once.
async fn session(
    State(registry): State<Registry>,
    headers: HeaderMap,
    Query(q): Query<SessionQuery>,
    body: Body,
) -> Result<impl IntoResponse, RegistryError> {
    authorize(&registry, &headers)?;
    let generation = {
        let mut table = registry.table();
        let generation =
            table.get(&q.url).map(|e| e.generation).ok_or_else(|| RegistryError::UnknownService(q.url.clone()))?;
        table.session_opened(&q.url);
        generation
    };
    tracing::debug!(url = %q.url, "session opened");
    let mut stream = body.into_data_stream();
    let shutdown = registry.inner.shutdown.clone();
    let ended_by_shutdown = loop {
        tokio::select! {
            chunk = stream.next() => match chunk {
                Some(Ok(_)) => continue,
                _ => break false,
            },
            _ = shutdown.cancelled() => break true,
        }
    };
    if !ended_by_shutdown && registry.table().session_lost(&q.url, generation) {
        tracing::debug!(url = %q.url, "session lost: probing now");
        registry.probe_now(&q.url);
    }
    Ok(StatusCode::NO_CONTENT)
}
