//! The registry's HTTP API, wire-compatible with the original design:
//! `POST`/`DELETE /services`, plus our `GET /services`, `GET /services/{name}`,
//! `POST /sessions` and `GET /healthz`. Handlers only authorize, parse and
//! call the [`Registry`].

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use gradebook_runtime::credential::Caller;
use gradebook_runtime::http::{ApiJson, finish_router};
use gradebook_shared::registry::{Patch, PatchEntry, Registration, ServiceStatus, session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::error::RegistryError;
use super::state::Registry;

/// Largest request body the registry reads.
pub const BODY_LIMIT: usize = 64 * 1024;

pub fn router(registry: Registry) -> Router {
    let api = Router::new()
        .route("/services", post(register).delete(deregister).get(list))
        .route("/services/{name}", get(providers))
        .route("/sessions", post(session))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(registry.clone());
    // Closed with a credential: only services of the cluster register,
    // deregister, hold sessions or read the list, so the registry probes
    // only what one of them asked for; each under its own name (below).
    let credential = registry.config().credential();
    gradebook_runtime::http::require_credential(
        finish_router(api, BODY_LIMIT),
        credential,
        super::callers::any_service,
        gradebook_runtime::http::OPEN_PATHS,
    )
}

/// Serves the registry on `listener` until `shutdown` is cancelled.
/// The registry lists itself (probed like anyone) so that the status
/// monitor shows it beside the services.
pub async fn serve(listener: TcpListener, registry: Registry, shutdown: CancellationToken) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "registry listening");
    let app = router(registry.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let serving = axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned()).into_future();
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
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    caller: Option<axum::Extension<Caller>>,
    ApiJson(reg): ApiJson<Registration>,
) -> Result<Json<Patch>, RegistryError> {
    may_act_as(caller.as_ref(), &reg.service_name)?;
    // Without a known peer (a router served without connect info) there is
    // no address to hold the URL to.
    if let (false, Some(axum::Extension(axum::extract::ConnectInfo(peer)))) =
        (registry.config().allow_foreign_urls, peer)
    {
        super::peer::own_address(&reg.service_url, peer.ip()).await?;
    }
    Ok(Json(registry.register(reg).await?))
}

/// A caller acts only under the name its credential is for (the operator
/// under any); an open registry has no callers to hold to a name.
fn may_act_as(caller: Option<&axum::Extension<Caller>>, name: &str) -> Result<(), RegistryError> {
    match caller {
        Some(axum::Extension(c)) if !c.is_operator() && c.0 != name => {
            Err(RegistryError::NotYourName { caller: c.0.clone(), name: name.to_owned() })
        }
        _ => Ok(()),
    }
}

async fn deregister(
    State(registry): State<Registry>,
    caller: Option<axum::Extension<Caller>>,
    body: String,
) -> Result<Json<serde_json::Value>, RegistryError> {
    if let Some(name) = registry.registered_name(body.trim()) {
        may_act_as(caller.as_ref(), &name)?;
    }
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

/// A service's session. When its connection closes without a
/// deregistration, the service has likely died, so it is probed at once.
///
/// Asked with `Upgrade: gradebook-session` (our runtime does), the
/// connection is taken off HTTP after a 101, so an open session costs a
/// socket and a small task rather than an HTTP connection's buffers (about
/// 25 KB each: 10,000 sessions held 250 MB). Without it, the session is a
/// request whose body never ends, answered when the session ends.
async fn session(
    State(registry): State<Registry>,
    Query(q): Query<SessionQuery>,
    caller: Option<axum::Extension<Caller>>,
    mut request: Request,
) -> Result<Response, RegistryError> {
    if let Some(name) = registry.registered_name(&q.url) {
        may_act_as(caller.as_ref(), &name)?;
    }
    // Held while the session is open: past the cap, 429.
    let slot = registry.session_slot()?;
    let (generation, ended) = registry.session_opened(&q.url)?;
    // Counted until it ends, however it ends (a dropped connection may drop
    // the handler itself).
    let mut open = OpenSession { registry: registry.clone(), url: q.url, generation, lost: true };
    tracing::debug!(url = %open.url, "session opened");
    let shutdown = registry.shutdown().clone();
    let upgrade = request
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(session::PROTOCOL.as_bytes()));
    if upgrade {
        let upgrading = hyper::upgrade::on(&mut request);
        tokio::spawn(async move {
            let _slot = slot;
            let Ok(upgraded) = upgrading.await else { return };
            let mut io = hyper_util::rt::TokioIo::new(upgraded);
            // Nothing is expected from the service: any read that ends or
            // fails is the connection closing.
            let mut scratch = [0u8; 16];
            let farewell = loop {
                tokio::select! {
                    read = io.read(&mut scratch) => match read {
                        Ok(n) if n > 0 => continue,
                        _ => break None,
                    },
                    _ = shutdown.cancelled() => break Some(session::SHUTDOWN),
                    _ = ended.cancelled() => break Some(session::ENDED),
                }
            };
            if let Some(farewell) = farewell {
                open.lost = false;
                // Bounded: a service that never reads cannot hold the task.
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
                    io.write_all(farewell).await?;
                    io.shutdown().await
                })
                .await;
            }
            drop(open);
        });
        let switching = [(header::CONNECTION, "upgrade"), (header::UPGRADE, session::PROTOCOL)];
        return Ok((StatusCode::SWITCHING_PROTOCOLS, switching).into_response());
    }
    let _slot = slot;
    let mut stream = request.into_body().into_data_stream();
    loop {
        tokio::select! {
            chunk = stream.next() => match chunk {
                Some(Ok(_)) => continue,
                _ => break,
            },
            _ = shutdown.cancelled() => {
                open.lost = false;
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
            // Removed, replaced or deregistered by someone else: a JSON 404
            // tells our runtime to register again.
            _ = ended.cancelled() => {
                open.lost = false;
                return Err(RegistryError::SessionEnded);
            }
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// An open session, counted by the registry until it is dropped.
struct OpenSession {
    registry: Registry,
    url: String,
    generation: u64,
    /// Whether its close means the service may have died: true unless the
    /// registry itself ended it.
    lost: bool,
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.registry.session_closed(&self.url, self.generation, self.lost);
    }
}
