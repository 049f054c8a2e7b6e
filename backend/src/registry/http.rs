//! The registry's HTTP API, wire-compatible with the original design:
//! `POST`/`DELETE /services`, plus our `GET /services`, `GET /services/{name}`,
//! `POST /sessions` and `GET /healthz`. Handlers only authorize, parse and
//! call the [`Registry`].

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use gradebook_runtime::http::{ApiJson, finish_router};
use gradebook_shared::registry::{Patch, PatchEntry, Registration, ServiceStatus};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{Registry, RegistryError};

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
    let Some(token) = &registry.config().token else { return Ok(()) };
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
    let generation = registry.session_opened(&q.url)?;
    tracing::debug!(url = %q.url, "session opened");
    let mut stream = body.into_data_stream();
    let shutdown = registry.shutdown().clone();
    let ended_by_shutdown = loop {
        tokio::select! {
            chunk = stream.next() => match chunk {
                Some(Ok(_)) => continue,
                _ => break false,
            },
            _ = shutdown.cancelled() => break true,
        }
    };
    if !ended_by_shutdown {
        registry.session_lost(&q.url, generation);
    }
    Ok(StatusCode::NO_CONTENT)
}
