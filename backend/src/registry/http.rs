//! The registry's HTTP API, wire-compatible with the original design:
//! `POST`/`DELETE /services`, plus our `GET /services`, `GET /services/{name}`,
//! `POST /sessions` and `GET /healthz`. Handlers only authorize, parse and
//! call the [`Registry`].

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
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
        .with_state(registry.clone());
    // Closed with a token: only its holders register, deregister, hold
    // sessions or read the list, so the registry probes only what a holder
    // asked for.
    let token = registry.config().token.clone();
    gradebook_runtime::http::require_token(finish_router(api, BODY_LIMIT), token, gradebook_runtime::http::OPEN_PATHS)
}

/// Serves the registry on `listener` until `shutdown` is cancelled.
/// The registry lists itself (probed like anyone) so that the status
/// monitor shows it beside the services.
pub async fn serve(listener: TcpListener, registry: Registry, shutdown: CancellationToken) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "registry listening");
    let serving = axum::serve(listener, router(registry.clone()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
    let serving = gradebook_runtime::http::drained_within(serving, &shutdown, registry.config().drain_timeout);
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

async fn register(
    State(registry): State<Registry>,
    ApiJson(reg): ApiJson<Registration>,
) -> Result<Json<Patch>, RegistryError> {
    Ok(Json(registry.register(reg).await?))
}

async fn deregister(State(registry): State<Registry>, body: String) -> Result<Json<serde_json::Value>, RegistryError> {
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
    Query(q): Query<SessionQuery>,
    body: Body,
) -> Result<impl IntoResponse, RegistryError> {
    // Held while the session is open: past the cap, 429.
    let _open = registry.session_slot()?;
    let (generation, ended) = registry.session_opened(&q.url)?;
    tracing::debug!(url = %q.url, "session opened");
    let mut stream = body.into_data_stream();
    let shutdown = registry.shutdown().clone();
    loop {
        tokio::select! {
            chunk = stream.next() => match chunk {
                Some(Ok(_)) => continue,
                _ => break,
            },
            _ = shutdown.cancelled() => return Ok(StatusCode::NO_CONTENT),
            // Removed, replaced or deregistered by someone else: a JSON 404
            // tells our runtime to register again.
            _ = ended.cancelled() => return Err(RegistryError::SessionEnded),
        }
    }
    registry.session_lost(&q.url, generation);
    Ok(StatusCode::NO_CONTENT)
}
