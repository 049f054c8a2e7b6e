//! What every Gradebook service runs on: it binds first, then registers with
//! the registry (retrying with backoff while the registry is away), holds a
//! session connection so its crash is noticed at once, keeps a provider cache
//! fed by patches, and on shutdown deregisters exactly once before draining.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use gradebook_shared::names;
use gradebook_shared::registry::{Patch, PushedPatch, Registration, session};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::backoff::{Backoff, sleep_unless};
use crate::logship;
use crate::providers::{NoProvider, Providers};

use crate::http::ApiJson;

/// Where the registry sends a service its patches.
pub const UPDATE_PATH: &str = "/registry/update";
/// What the registry probes.
pub const HEARTBEAT_PATH: &str = "/heartbeat";

/// Who a service is and what it needs.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    /// The URL others reach it at; by default `http://<bound address>`.
    pub advertise: Option<String>,
    pub required: Vec<String>,
    /// Base URL of the registry, e.g. `http://127.0.0.1:3000`.
    pub registry_url: String,
    pub token: Option<String>,
    /// Deadline of calls to the registry and to providers.
    pub call_timeout: Duration,
    /// Hold a session with the registry so a crash is noticed at once. Off,
    /// the service behaves like a client of the original protocol: probes
    /// alone decide its health.
    pub session: bool,
    /// Ship this process's logs to the log service (which it then requires).
    pub logs: Option<logship::LogBuffer>,
    /// After shutdown begins, how long in-flight requests may take before
    /// the server stops waiting for them.
    pub drain_timeout: Duration,
    /// With a session held, how long without a probe from the registry
    /// before registering again (the registry may have lost us without the
    /// session telling).
    pub reregister_after: Duration,
    /// The app's routes are for people, who prove themselves another way
    /// (the portal): only the runtime's own routes require the cluster token.
    pub people_facing: bool,
}

impl ServiceSpec {
    pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
    pub const DEFAULT_REREGISTER_AFTER: Duration = Duration::from_secs(5);

    pub fn new(name: impl Into<String>, registry_url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            advertise: None,
            required: vec![],
            registry_url: registry_url.into(),
            token: None,
            call_timeout: Self::DEFAULT_CALL_TIMEOUT,
            session: true,
            logs: None,
            drain_timeout: Self::DEFAULT_DRAIN_TIMEOUT,
            reregister_after: Self::DEFAULT_REREGISTER_AFTER,
            people_facing: false,
        }
    }

    pub fn requires(mut self, names: &[&str]) -> Self {
        self.required = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Ships logs from `buffer` to the log service.
    pub fn ship_logs(mut self, buffer: logship::LogBuffer) -> Self {
        if !self.required.iter().any(|r| r == names::LOG) {
            self.required.push(names::LOG.to_owned());
        }
        self.logs = Some(buffer);
        self
    }
}

/// A service's handle on the system: its identity, its providers and an HTTP
/// client to reach them. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    spec: ServiceSpec,
    url: String,
    providers: Providers,
    client: reqwest::Client,
    /// Sessions live as long as the service: no overall deadline.
    session_client: reqwest::Client,
    deregistered: AtomicBool,
    /// When the registry last showed it knows us (a probe, or a
    /// registration), in milliseconds since `epoch`.
    last_heard_ms: AtomicU64,
    epoch: tokio::time::Instant,
    /// The registry answered our registration as ours does (with the
    /// providers): it probes every half second, so silence means it lost
    /// us. A registry of the original design probes far more rarely (and
    /// Go 1.19 holds a session request unanswered), so silence says nothing.
    registry_is_ours: AtomicBool,
}

/// A call to a required service that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    NoProvider(#[from] NoProvider),
    #[error("{name} is unreachable: {reason}")]
    Unreachable { name: String, reason: String },
}

impl Runtime {
    /// A runtime for a service listening on `local_addr`.
    pub fn new(spec: ServiceSpec, local_addr: std::net::SocketAddr) -> Self {
        let url = spec.advertise.clone().unwrap_or_else(|| {
            let mut addr = local_addr;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        });
        let url = url.trim_end_matches('/').to_owned();
        // Every call carries the cluster token: to the registry, to providers
        // (found through the registry, which only token holders can join)
        // and to the log service.
        let token = spec.token.as_deref();
        let session_client = crate::http::open_ended_client(spec.call_timeout, token);
        Self {
            inner: Arc::new(Inner {
                client: crate::http::client(spec.call_timeout, token),
                session_client,
                url,
                spec,
                providers: Providers::default(),
                deregistered: AtomicBool::new(false),
                last_heard_ms: AtomicU64::new(0),
                epoch: tokio::time::Instant::now(),
                registry_is_ours: AtomicBool::new(false),
            }),
        }
    }

    /// The URL this service is registered under.
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    pub fn name(&self) -> &str {
        &self.inner.spec.name
    }

    pub fn providers(&self) -> &Providers {
        &self.inner.providers
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.inner.client
    }

    /// A client without an overall deadline (for streams), with the same
    /// credentials as [`Runtime::client`].
    pub fn open_ended_client(&self) -> &reqwest::Client {
        &self.inner.session_client
    }

    /// Sends a request built by `build(client, provider_base_url)` to a
    /// provider of `name`, moving on to another provider when one cannot be
    /// connected to (the request never left, so this is safe for any method).
    pub async fn call<F>(&self, name: &str, build: F) -> Result<reqwest::Response, CallError>
    where
        F: Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
    {
        let candidates = self.inner.providers.shuffled(name);
        if candidates.is_empty() {
            return Err(NoProvider(name.to_owned()).into());
        }
        let mut reason = String::new();
        for base in candidates {
            let request = build(&self.inner.client, &base);
            // A read may go to the next provider whatever happened to it: a
            // pooled connection to a provider that has just died fails only
            // once the request is on it. A write only when it never left.
            let idempotent = request
                .try_clone()
                .and_then(|r| r.build().ok())
                .is_some_and(|r| matches!(*r.method(), reqwest::Method::GET | reqwest::Method::HEAD));
            match request.send().await {
                Ok(response) => return Ok(response),
                Err(e) if e.is_connect() => reason = format!("cannot connect to {base}"),
                Err(e) if idempotent && !e.is_timeout() => reason = format!("{base}: {}", crate::http::describe(&e)),
                Err(e) => {
                    return Err(CallError::Unreachable { name: name.to_owned(), reason: crate::http::describe(&e) });
                }
            }
        }
        Err(CallError::Unreachable { name: name.to_owned(), reason })
    }

    /// The routes the runtime adds to every service.
    pub fn routes(&self) -> Router {
        Router::new()
            .route(HEARTBEAT_PATH, get(heartbeat))
            .route(UPDATE_PATH, post(receive_patch))
            .with_state(self.clone())
    }

    fn registration(&self) -> Registration {
        let spec = &self.inner.spec;
        Registration {
            service_name: spec.name.clone(),
            service_url: self.inner.url.clone(),
            required_services: spec.required.clone(),
            service_update_url: format!("{}{UPDATE_PATH}", self.inner.url),
            heartbeat_url: format!("{}{HEARTBEAT_PATH}", self.inner.url),
            known_providers: self.inner.providers.snapshot(),
        }
    }

    fn registry(&self, path: &str) -> String {
        format!("{}{path}", self.inner.spec.registry_url.trim_end_matches('/'))
    }

    async fn register_once(&self) -> Result<(), String> {
        let req = self.inner.client.post(self.registry("/services")).json(&self.registration());
        let response = req.send().await.map_err(|e| crate::http::describe(&e))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(format!("registry answered {status}: {body}"));
        }
        // Our registry answers with the providers; the original's answers 200
        // with an empty body (it has POSTed them to our update URL already).
        // Either way we are registered.
        let body = response.bytes().await.unwrap_or_default();
        let ours = serde_json::from_slice::<Patch>(&body).map(|patch| self.inner.providers.merge(&patch.added)).is_ok();
        self.inner.registry_is_ours.store(ours, Ordering::Relaxed);
        Ok(())
    }

    /// Holds the session open until the registry or `cancel` ends it. It is
    /// asked for upgraded off HTTP, which costs our registry a socket rather
    /// than an HTTP connection's buffers; any other answer is read as today's
    /// registries give it (see [`SessionEnd::answered`]).
    async fn hold_session(&self, cancel: &CancellationToken) -> SessionEnd {
        if !self.inner.spec.session {
            cancel.cancelled().await;
            return SessionEnd::Shutdown;
        }
        let session = async {
            let request = self
                .inner
                .session_client
                .post(self.registry("/sessions"))
                .query(&[("url", self.url())])
                .header(reqwest::header::CONNECTION, "upgrade")
                .header(reqwest::header::UPGRADE, session::PROTOCOL);
            let response = match request.send().await {
                Ok(r) if r.status() == reqwest::StatusCode::SWITCHING_PROTOCOLS => r,
                Ok(r) => return SessionEnd::answered(r).await,
                Err(e) => return SessionEnd::Lost(crate::http::describe(&e)),
            };
            let mut io = match response.upgrade().await {
                Ok(io) => io,
                Err(e) => return SessionEnd::Lost(crate::http::describe(&e)),
            };
            // Nothing comes until the end: the registry's last line, if it
            // ended the session itself.
            let mut said = Vec::new();
            let _ =
                tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::AsyncReadExt::take(&mut io, 64), &mut said).await;
            match said.as_slice() {
                session::ENDED => SessionEnd::NotRegistered,
                session::SHUTDOWN => SessionEnd::Lost("the registry is stopping".into()),
                _ => SessionEnd::Lost("the session's connection closed".into()),
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => SessionEnd::Shutdown,
            () = self.unheard_for(self.inner.spec.reregister_after), if self.inner.registry_is_ours.load(Ordering::Relaxed) => {
                SessionEnd::Unprobed
            }
            end = session => end,
        }
    }

    /// The registry has shown it knows us (it probed us, or we registered).
    fn heard(&self) {
        let now = self.inner.epoch.elapsed().as_millis() as u64;
        self.inner.last_heard_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// Resolves once the registry has not probed us for `silence`: it has
    /// lost us, though the session did not say so (a cut network, say).
    async fn unheard_for(&self, silence: Duration) {
        loop {
            let heard = Duration::from_millis(self.inner.last_heard_ms.load(Ordering::Relaxed));
            let quiet = self.inner.epoch.elapsed().saturating_sub(heard);
            if quiet >= silence {
                return;
            }
            tokio::time::sleep(silence - quiet).await;
        }
    }

    /// Keeps this service registered until `cancel`: registers (with backoff
    /// while the registry is unreachable), then holds a session, and
    /// registers again whenever the registry has forgotten it.
    pub async fn stay_registered(self, cancel: CancellationToken) {
        const MIN_BACKOFF: Duration = Duration::from_millis(50);
        const MAX_BACKOFF: Duration = Duration::from_secs(1);
        let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
        'register: loop {
            let mut failures = 0u32;
            loop {
                if cancel.is_cancelled() {
                    return;
                }
                match self.register_once().await {
                    Ok(()) => break,
                    Err(e) => {
                        failures += 1;
                        // Say it once, then quietly keep trying.
                        if failures == 1 {
                            tracing::warn!(registry = %self.inner.spec.registry_url, error = %e, "cannot register yet, retrying");
                        }
                        if !backoff.wait(&cancel).await {
                            return;
                        }
                    }
                }
            }
            tracing::info!(service = %self.name(), url = %self.url(), "registered with the registry");
            self.heard();
            backoff.reset();
            loop {
                let started = tokio::time::Instant::now();
                match self.hold_session(&cancel).await {
                    SessionEnd::Shutdown => return,
                    SessionEnd::NotRegistered => {
                        tracing::warn!("the registry has forgotten this service; registering again");
                        continue 'register;
                    }
                    SessionEnd::Unprobed => {
                        tracing::warn!(
                            silence = ?self.inner.spec.reregister_after,
                            "the registry has stopped probing this service; registering again"
                        );
                        continue 'register;
                    }
                    SessionEnd::Unsupported(status) => {
                        // A registry of the original design: its probes alone
                        // watch us. Registering again would only add a
                        // duplicate there, so ask for a session now and then.
                        tracing::info!(%status, "the registry holds no sessions; relying on its probes");
                        if !sleep_unless(&cancel, SESSION_RETRY).await {
                            return;
                        }
                    }
                    SessionEnd::Lost(why) => {
                        if started.elapsed() > MAX_BACKOFF {
                            tracing::warn!(%why, "lost the registry session; reconnecting");
                            backoff.reset();
                        }
                        if !backoff.wait(&cancel).await {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Removes this service from the registry; only the first call does
    /// anything.
    pub async fn deregister(&self) {
        if self.inner.deregistered.swap(true, Ordering::SeqCst) {
            return;
        }
        let req = self
            .inner
            .client
            .delete(self.registry("/services"))
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .timeout(Duration::from_secs(1))
            .body(self.url().to_owned());
        match req.send().await {
            Ok(r) if r.status().is_success() => tracing::info!(url = %self.url(), "deregistered"),
            Ok(r) => tracing::warn!(status = %r.status(), "deregistration refused"),
            Err(e) => tracing::warn!(error = %crate::http::describe(&e), "deregistration failed"),
        }
    }
}

/// How often a service whose registry holds no sessions asks again.
const SESSION_RETRY: Duration = Duration::from_secs(60);

enum SessionEnd {
    Shutdown,
    /// Our registry does not know this service (any more), or has just
    /// removed it.
    NotRegistered,
    /// The registry stopped probing us while the session looked alive.
    Unprobed,
    /// The registry has no sessions at all (the original design's).
    Unsupported(reqwest::StatusCode),
    Lost(String),
}

impl SessionEnd {
    /// What the registry's answer to a session means. Ours says a service is
    /// unknown with a JSON 404; a registry without `/sessions` answers a
    /// plain 404 (or 405, 501).
    async fn answered(response: reqwest::Response) -> Self {
        let status = response.status();
        let is_json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        match status {
            reqwest::StatusCode::NOT_FOUND if is_json => SessionEnd::NotRegistered,
            reqwest::StatusCode::NOT_FOUND
            | reqwest::StatusCode::METHOD_NOT_ALLOWED
            | reqwest::StatusCode::NOT_IMPLEMENTED => SessionEnd::Unsupported(status),
            _ => SessionEnd::Lost(format!("registry ended the session ({status})")),
        }
    }
}

/// Open to anyone; but only a probe carrying the cluster token (the
/// registry's) counts as the registry still knowing us, so a stranger's
/// polling cannot keep a forgotten service from registering again.
async fn heartbeat(State(rt): State<Runtime>, headers: axum::http::HeaderMap) -> &'static str {
    if rt.inner.spec.token.as_deref().is_none_or(|t| crate::http::token_matches(&headers, t)) {
        rt.heard();
    }
    "ok"
}

async fn receive_patch(State(rt): State<Runtime>, ApiJson(pushed): ApiJson<PushedPatch>) -> Json<serde_json::Value> {
    let patch = &pushed.patch;
    tracing::debug!(added = ?patch.added, removed = ?patch.removed, seq = ?pushed.seq, "patch received");
    let applied = rt.inner.providers.apply_pushed(&pushed);
    Json(serde_json::json!({ "applied": applied }))
}

/// Serves `app` (plus the runtime's routes) on `listener`, registered with
/// the registry, until `shutdown`: then deregisters, stops the background
/// work and lets in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    runtime: Runtime,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // Closed by default: with a cluster token, nothing but liveness and
    // metrics answers without it. A people-facing app (the portal) checks
    // its own callers; its patch endpoint still takes only the registry's.
    let token = runtime.inner.spec.token.clone();
    let app = if runtime.inner.spec.people_facing {
        crate::http::require_token(runtime.routes(), token, crate::http::OPEN_PATHS).merge(app)
    } else {
        crate::http::require_token(runtime.routes().merge(app), token, crate::http::OPEN_PATHS)
    };
    // The listener is already bound, so registering now cannot send anyone
    // to a service that does not answer yet.
    let background = shutdown.child_token();
    let registration = tokio::spawn(runtime.clone().stay_registered(background.clone()));
    // Stopped last, so what happens during shutdown is shipped too.
    let stop_shipping = CancellationToken::new();
    let shipper = runtime.inner.spec.logs.clone().map(|buffer| {
        let rt = runtime.clone();
        let destination: logship::Destination = Arc::new(move || rt.providers().shuffled(names::LOG));
        tokio::spawn(buffer.ship(destination, runtime.client().clone(), stop_shipping.clone()))
    });
    tracing::info!(service = %runtime.name(), url = %runtime.url(), "listening");
    let rt = runtime.clone();
    let stop = shutdown.clone();
    let graceful = async move {
        shutdown.cancelled().await;
        // Registration must be over before we deregister, or it could land
        // after and bring us back. Then dependents stop sending us work
        // before we stop taking it.
        background.cancel();
        let _ = registration.await;
        rt.deregister().await;
    };
    // The portal's handlers ask who connected (it limits sign-ins per
    // address); the services' never do, and spare every request carrying it.
    let drain = runtime.inner.spec.drain_timeout;
    // Answers go out whole in one write; what writes small lines on a kept
    // connection (sessions, grading's change feed) must not wait for the
    // other side's ACK of the previous one (Nagle).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut TcpStream| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let served = if runtime.inner.spec.people_facing {
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let served = axum::serve(listener, app).with_graceful_shutdown(graceful);
        crate::http::drained_within(served.into_future(), &stop, drain).await
    } else {
        let served = axum::serve(listener, app).with_graceful_shutdown(graceful);
        crate::http::drained_within(served.into_future(), &stop, drain).await
    };
    stop_shipping.cancel();
    if let Some(shipper) = shipper {
        let _ = shipper.await;
    }
    served
}
