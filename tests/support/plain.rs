//! A service that speaks only the original protocol: hand-written JSON with
//! the original field names, a patch endpoint and a heartbeat whose answer
//! the test controls. It holds no session.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use gradebook_shared::registry::Patch;
use serde_json::json;
use tokio::net::TcpListener;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heartbeat {
    Healthy,
    Failing,
    /// Accepts the connection, never answers.
    Hang,
}

/// How the patch endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Updates {
    /// 200, and the patch is applied.
    Accept,
    /// 503, and the patch is not applied (as a dependent that is failing).
    Refuse,
}

#[derive(Clone)]
struct Shared {
    patches: Arc<Mutex<Vec<(std::time::Instant, Patch)>>>,
    /// Every patch body as it arrived, accepted or not, with whether it was.
    bodies: Arc<Mutex<Vec<(String, bool)>>>,
    heartbeat: Arc<Mutex<Heartbeat>>,
    updates: Arc<Mutex<Updates>>,
}

pub struct PlainService {
    pub name: String,
    pub url: String,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl PlainService {
    pub async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Shared {
            patches: Default::default(),
            bodies: Default::default(),
            heartbeat: Arc::new(Mutex::new(Heartbeat::Healthy)),
            updates: Arc::new(Mutex::new(Updates::Accept)),
        };
        let app = Router::new()
            .route(
                "/update",
                post(|State(s): State<Shared>, body: String| async move {
                    let accept = *s.updates.lock().unwrap() == Updates::Accept;
                    s.bodies.lock().unwrap().push((body.clone(), accept));
                    if !accept {
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    // Parsed loosely, as the original client does.
                    let patch: Patch = serde_json::from_str(&body).unwrap();
                    s.patches.lock().unwrap().push((std::time::Instant::now(), patch));
                    StatusCode::OK
                }),
            )
            .route(
                "/heartbeat",
                get(|State(s): State<Shared>| async move {
                    let mode = *s.heartbeat.lock().unwrap();
                    match mode {
                        Heartbeat::Healthy => StatusCode::OK,
                        Heartbeat::Failing => StatusCode::SERVICE_UNAVAILABLE,
                        Heartbeat::Hang => std::future::pending().await,
                    }
                }),
            )
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { name: name.to_owned(), url, shared, task }
    }

    /// Registers with hand-written JSON; returns the status.
    pub async fn register(&self, registry: &str, required: serde_json::Value) -> reqwest::StatusCode {
        self.register_with(registry, required, None).await.status()
    }

    /// Registers with hand-written JSON, with `Authorization: Bearer
    /// <token>` when given; returns the whole answer.
    pub async fn register_with(
        &self,
        registry: &str,
        required: serde_json::Value,
        token: Option<&str>,
    ) -> reqwest::Response {
        let body = json!({
            "ServiceName": self.name,
            "ServiceURL": self.url,
            "RequiredServices": required,
            "ServiceUpdateURL": format!("{}/update", self.url),
            "HeartbeatURL": format!("{}/heartbeat", self.url),
        });
        let mut request = reqwest::Client::new().post(format!("{registry}/services")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    /// Deregisters its URL; returns the status.
    pub async fn deregister(&self, registry: &str) -> reqwest::StatusCode {
        let request = reqwest::Client::new().delete(format!("{registry}/services")).body(self.url.clone());
        request.header("content-type", "text/plain").send().await.unwrap().status()
    }

    pub fn set_updates(&self, mode: Updates) {
        *self.shared.updates.lock().unwrap() = mode;
    }

    /// Every patch body as it arrived, accepted or refused, in order.
    pub fn patch_bodies(&self) -> Vec<String> {
        self.shared.bodies.lock().unwrap().iter().map(|(b, _)| b.clone()).collect()
    }

    /// How many patches were refused (see [`Updates::Refuse`]).
    pub fn refused(&self) -> usize {
        self.shared.bodies.lock().unwrap().iter().filter(|(_, accepted)| !accepted).count()
    }

    pub fn set_heartbeat(&self, mode: Heartbeat) {
        *self.shared.heartbeat.lock().unwrap() = mode;
    }

    pub fn patches(&self) -> Vec<Patch> {
        self.shared.patches.lock().unwrap().iter().map(|(_, p)| p.clone()).collect()
    }

    /// Patches with the moment each arrived.
    pub fn timed_patches(&self) -> Vec<(std::time::Instant, Patch)> {
        self.shared.patches.lock().unwrap().clone()
    }

    /// The providers of `name` after applying every patch in order, as the
    /// original client does, duplicates included.
    pub fn providers(&self, name: &str) -> Vec<String> {
        let mut urls: Vec<String> = vec![];
        for p in self.patches() {
            for a in p.added.iter().filter(|a| a.name == name) {
                urls.push(a.url.clone());
            }
            for r in p.removed.iter().filter(|r| r.name == name) {
                if let Some(i) = urls.iter().position(|u| u == &r.url) {
                    urls.remove(i);
                }
            }
        }
        urls
    }
}

impl Drop for PlainService {
    fn drop(&mut self) {
        self.task.abort();
    }
}
