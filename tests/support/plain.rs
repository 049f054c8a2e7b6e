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

#[derive(Clone)]
struct Shared {
    patches: Arc<Mutex<Vec<(std::time::Instant, Patch)>>>,
    heartbeat: Arc<Mutex<Heartbeat>>,
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
        let shared = Shared { patches: Default::default(), heartbeat: Arc::new(Mutex::new(Heartbeat::Healthy)) };
        let app = Router::new()
            .route(
                "/update",
                post(|State(s): State<Shared>, body: String| async move {
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
        let body = json!({
            "ServiceName": self.name,
            "ServiceURL": self.url,
            "RequiredServices": required,
            "ServiceUpdateURL": format!("{}/update", self.url),
            "HeartbeatURL": format!("{}/heartbeat", self.url),
        });
        reqwest::Client::new().post(format!("{registry}/services")).json(&body).send().await.unwrap().status()
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
