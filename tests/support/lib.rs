//! Helpers for the system tests: registries and services on real sockets
//! (port 0), each service on its own tokio runtime so that it can be crashed
//! (every socket closed at once, nothing deregistered) like a killed process;
//! a client that speaks only the original protocol; and real processes of
//! the `gradebook` binary.

pub mod plain;
pub mod process;

use std::future::Future;
use std::time::Duration;

use axum::Router;
use gradebook::registry::{self, Registry};
use gradebook_runtime::{Runtime, ServiceSpec};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Polls `check` until it holds, panicking with `what` after `limit`.
/// A deadline, not a delay: it returns as soon as the condition is true.
pub async fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Like [`eventually`] for an async check.
pub async fn eventually_async<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Something served on its own thread and tokio runtime.
struct Isolated {
    shutdown: CancellationToken,
    crash: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Isolated {
    /// Runs `serve(listener, shutdown)` on a fresh runtime bound to `addr`.
    fn start<F, Fut>(addr: std::net::SocketAddr, serve: F) -> (Self, std::net::SocketAddr)
    where
        F: FnOnce(TcpListener, CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let shutdown = CancellationToken::new();
        let (crash_tx, crash_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let token = shutdown.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = TcpListener::bind(addr).await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                tokio::select! {
                    _ = serve(listener, token) => {}
                    _ = crash_rx => {}
                }
            });
            // Shutting the runtime down drops every task and closes every
            // socket, as the kernel does for a killed process; waiting for it
            // lets the address be bound again at once.
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        });
        let addr = addr_rx.recv().expect("the server thread binds its listener");
        (Self { shutdown, crash: Some(crash_tx), thread: Some(thread) }, addr)
    }

    fn crash(&mut self) {
        if let Some(c) = self.crash.take() {
            let _ = c.send(());
        }
        self.join();
    }

    fn stop(&mut self) {
        self.shutdown.cancel();
        self.join();
    }

    fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        self.crash();
    }
}

/// A registry on a real socket.
pub struct TestRegistry {
    pub url: String,
    pub addr: std::net::SocketAddr,
    pub registry: Registry,
    server: Isolated,
}

impl TestRegistry {
    pub fn spawn(config: registry::Config) -> Self {
        Self::spawn_at("127.0.0.1:0".parse().unwrap(), config)
    }

    /// On a given address, e.g. the one a crashed registry had.
    pub fn spawn_at(addr: std::net::SocketAddr, config: registry::Config) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let (server, addr) = Isolated::start(addr, move |listener, shutdown| async move {
            let registry = Registry::new(config, shutdown.clone());
            tx.send(registry.clone()).unwrap();
            registry::serve(listener, registry, shutdown).await.unwrap();
        });
        let registry = rx.recv().unwrap();
        Self { url: format!("http://{addr}"), addr, registry, server }
    }

    /// Gone at once, state and all, like `kill -9`.
    pub fn crash(mut self) {
        self.server.crash();
    }

    /// Every registration but the registry's own entry.
    pub fn statuses(&self) -> Vec<gradebook_shared::registry::ServiceStatus> {
        self.registry.statuses().into_iter().filter(|s| s.service_name != gradebook_shared::names::REGISTRY).collect()
    }

    pub fn provider_urls(&self, name: &str) -> Vec<String> {
        self.registry.providers(name).into_iter().map(|p| p.url).collect()
    }
}

/// A service on the runtime, on a real socket.
pub struct TestService {
    pub runtime: Runtime,
    pub url: String,
    pub addr: std::net::SocketAddr,
    server: Isolated,
}

impl TestService {
    pub fn spawn(spec: ServiceSpec) -> Self {
        Self::spawn_app(spec, Router::new())
    }

    pub fn spawn_app(spec: ServiceSpec, app: Router) -> Self {
        Self::spawn_at("127.0.0.1:0".parse().unwrap(), spec, app)
    }

    pub fn spawn_at(addr: std::net::SocketAddr, spec: ServiceSpec, app: Router) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let (server, addr) = Isolated::start(addr, move |listener, shutdown| async move {
            let runtime = Runtime::new(spec, listener.local_addr().unwrap());
            tx.send(runtime.clone()).unwrap();
            gradebook_runtime::serve(listener, runtime, app, shutdown).await.unwrap();
        });
        let runtime = rx.recv().unwrap();
        Self { url: runtime.url().to_owned(), runtime, addr, server }
    }

    /// Killed: every socket closes, nothing is deregistered.
    pub fn crash(mut self) {
        self.server.crash();
    }

    /// SIGTERM-like: deregisters, drains, stops.
    pub fn stop(mut self) {
        self.server.stop();
    }

    pub fn providers(&self, name: &str) -> Vec<String> {
        self.runtime.providers().all(name)
    }
}

/// A log service on a real socket, storing in `dir`.
pub struct TestLog {
    pub url: String,
    pub addr: std::net::SocketAddr,
    server: Isolated,
}

impl TestLog {
    pub fn spawn(registry_url: &str, config: gradebook::log::StoreConfig) -> Self {
        Self::spawn_at("127.0.0.1:0".parse().unwrap(), registry_url, config)
    }

    pub fn spawn_at(addr: std::net::SocketAddr, registry_url: &str, config: gradebook::log::StoreConfig) -> Self {
        let spec = ServiceSpec::new(gradebook_shared::names::LOG, registry_url);
        let (server, addr) = Isolated::start(addr, move |listener, shutdown| async move {
            let runtime = Runtime::new(spec, listener.local_addr().unwrap());
            gradebook::log::serve(listener, runtime, config, shutdown).await.unwrap();
        });
        Self { url: format!("http://{addr}"), addr, server }
    }

    pub fn stop(mut self) {
        self.server.stop();
    }

    pub fn crash(mut self) {
        self.server.crash();
    }

    /// `GET /log?{query}`.
    pub async fn query(&self, query: &str) -> Vec<gradebook_shared::log::LogRecord> {
        let r = reqwest::get(format!("{}/log?{query}", self.url)).await.unwrap();
        assert!(r.status().is_success(), "query {query}: {}", r.status());
        r.json().await.unwrap()
    }
}

/// A grading service on a real socket.
pub struct TestGrading {
    pub url: String,
    pub addr: std::net::SocketAddr,
    pub runtime: Runtime,
    server: Isolated,
}

impl TestGrading {
    pub fn spawn(registry_url: &str, database_url: &str) -> Self {
        let spec = ServiceSpec::new(gradebook_shared::names::GRADING, registry_url).requires(&["LogService"]);
        let database_url = database_url.to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        let (server, addr) = Isolated::start("127.0.0.1:0".parse().unwrap(), move |listener, shutdown| async move {
            let db = gradebook::grading::Db::connect(&database_url).await.unwrap();
            let runtime = Runtime::new(spec, listener.local_addr().unwrap());
            tx.send(runtime.clone()).unwrap();
            gradebook::grading::serve(listener, runtime, gradebook::grading::Grading::new(db), shutdown).await.unwrap();
        });
        let runtime = rx.recv().unwrap();
        Self { url: format!("http://{addr}"), addr, runtime, server }
    }

    pub fn stop(mut self) {
        self.server.stop();
    }
}

/// A new, empty PostgreSQL database on the throwaway server that
/// `scripts/with-postgres.sh` (run by `make test`) provides, or `None` (the
/// caller then skips, saying so) when there is none.
pub async fn postgres_database(label: &str) -> Option<String> {
    let Ok(admin) = std::env::var("GRADEBOOK_TEST_POSTGRES_URL") else {
        eprintln!("skipped: GRADEBOOK_TEST_POSTGRES_URL is not set (make test starts a throwaway PostgreSQL)");
        return None;
    };
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("the throwaway PostgreSQL answers");
    let name = format!(
        "{label}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    );
    sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut conn).await.unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap();
    Some(format!("{base}/{name}"))
}

/// A fresh, empty temporary folder, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        let n = std::sync::atomic::AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "gradebook-{label}-{}-{}-{}",
            std::process::id(),
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A spec for a test service using `registry`.
pub fn spec(registry: &TestRegistry, name: &str, requires: &[&str]) -> ServiceSpec {
    ServiceSpec::new(name, registry.url.clone()).requires(requires)
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
