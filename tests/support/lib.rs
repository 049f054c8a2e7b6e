//! Helpers for the system tests: registries and services on real sockets
//! (port 0), each service on its own tokio runtime so that it can be crashed
//! (every socket closed at once, nothing deregistered) like a killed process;
//! a client that speaks only the original protocol; and real processes of
//! the `gradebook` binary.

pub mod plain;
pub mod process;
pub mod structure;

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

/// Where a server listens: an address it binds itself, or a socket bound
/// already and handed over, so that no one can take its port in between.
pub enum Bind {
    Addr(std::net::SocketAddr),
    /// Bound, not yet listening (see [`Reserved`]).
    Reserved(tokio::net::TcpSocket),
    /// Listening already; connections it queued are served too.
    Listener(std::net::TcpListener),
}

impl From<std::net::SocketAddr> for Bind {
    fn from(addr: std::net::SocketAddr) -> Self {
        Bind::Addr(addr)
    }
}

impl From<Reserved> for Bind {
    fn from(reserved: Reserved) -> Self {
        Bind::Reserved(reserved.socket)
    }
}

impl From<std::net::TcpListener> for Bind {
    fn from(listener: std::net::TcpListener) -> Self {
        Bind::Listener(listener)
    }
}

impl From<TcpListener> for Bind {
    fn from(listener: TcpListener) -> Self {
        Bind::Listener(listener.into_std().expect("a tokio listener converts back"))
    }
}

impl Bind {
    async fn listen(self) -> std::io::Result<TcpListener> {
        match self {
            Bind::Addr(addr) => TcpListener::bind(addr).await,
            Bind::Reserved(socket) => socket.listen(1024),
            Bind::Listener(listener) => {
                listener.set_nonblocking(true)?;
                TcpListener::from_std(listener)
            }
        }
    }
}

/// Something served on its own thread and tokio runtime.
struct Isolated {
    shutdown: CancellationToken,
    crash: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Isolated {
    /// Runs `serve(listener, shutdown)` on a fresh runtime listening on `bind`.
    fn start<F, Fut>(bind: impl Into<Bind>, serve: F) -> (Self, std::net::SocketAddr)
    where
        F: FnOnce(TcpListener, CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let shutdown = CancellationToken::new();
        let (crash_tx, crash_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let token = shutdown.clone();
        let bind = bind.into();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = bind.listen().await.unwrap();
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
        Self::spawn_on(addr, config)
    }

    /// On a socket bound already: a [`Reserved`] address, or the listener of
    /// a stand-in that held a crashed registry's address.
    pub fn spawn_on(bind: impl Into<Bind>, config: registry::Config) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let (server, addr) = Isolated::start(bind, move |listener, shutdown| async move {
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
        let (server, addr) = Isolated::start(
            "127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap(),
            move |listener, shutdown| async move {
                let db = gradebook::grading::Db::connect(&database_url).await.unwrap();
                let runtime = Runtime::new(spec, listener.local_addr().unwrap());
                tx.send(runtime.clone()).unwrap();
                gradebook::grading::serve(listener, runtime, gradebook::grading::Grading::new(db), shutdown)
                    .await
                    .unwrap();
            },
        );
        let runtime = rx.recv().unwrap();
        Self { url: format!("http://{addr}"), addr, runtime, server }
    }

    pub fn stop(mut self) {
        self.server.stop();
    }
}

/// True under `CI=true`, where every test must run.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Says that a test is skipped because `why`, and returns so the caller can
/// return; under `CI=true` fails instead: there a skipped test would pass
/// while proving nothing.
pub fn skip(why: &str) {
    assert!(!in_ci(), "cannot run under CI=true: {why}");
    eprintln!("skipped: {why}");
}

/// A new, empty PostgreSQL database on the throwaway server that
/// `scripts/with-postgres.sh` (run by `make test`) provides, or `None` (the
/// caller then skips, saying so) when there is none. Under `CI=true` a
/// missing server fails the test instead.
pub async fn postgres_database(label: &str) -> Option<String> {
    let Ok(admin) = std::env::var("GRADEBOOK_TEST_POSTGRES_URL") else {
        skip("GRADEBOOK_TEST_POSTGRES_URL is not set (make test starts a throwaway PostgreSQL)");
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
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// A new empty folder under the system's temporary folder, removed on
    /// drop (a failing test's too), named after `label` to tell whose it is.
    pub fn new(label: &str) -> Self {
        let dir = tempfile::Builder::new().prefix(&format!("gradebook-{label}-")).tempdir();
        Self(dir.expect("a temporary folder can be made"))
    }

    pub fn path(&self) -> &std::path::Path {
        self.0.path()
    }
}

/// A spec for a test service using `registry`.
pub fn spec(registry: &TestRegistry, name: &str, requires: &[&str]) -> ServiceSpec {
    ServiceSpec::new(name, registry.url.clone()).requires(requires)
}

/// A port on 127.0.0.1 for a server that binds it itself later (a child
/// process): free when returned, never returned twice by this process, and
/// outside the kernel's ephemeral range, so that neither a listener on port 0
/// nor the source port of an outgoing connection (parallel tests make many)
/// can be handed it in between. Another process can still take it: start
/// processes with [`process::Proc::start_listening`], which tries another
/// port then. In-process servers take a [`Reserved`] socket instead.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    /// Ports the browser tests and the Go original use, whatever the range.
    const TAKEN: [u16; 4] = [3000, 4000, 5005, 6000];
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, high) = non_ephemeral_range();
    let span = u32::from(high - low);
    if span == 0 {
        // Every port is ephemeral here: the kernel's choice is all there is.
        return std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    }
    // Each process starts somewhere else, so concurrent test runs rarely meet.
    let _ = NEXT.compare_exchange(
        0,
        std::process::id().wrapping_mul(7919) ^ std::time::UNIX_EPOCH.elapsed().unwrap().subsec_nanos(),
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let port = low + (NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if !TAKEN.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {low} and {high}");
}

/// The larger stretch of ports (from 10,000 up) beside the kernel's
/// ephemeral range (`ip_local_port_range`, Linux's default 32768–60999).
fn non_ephemeral_range() -> (u16, u16) {
    let range: Vec<u16> = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .map(|s| s.split_whitespace().filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    let (low, high) = match range[..] {
        [low, high] => (low, high),
        _ => (32768, 60999),
    };
    let below = (10_000, low.max(10_000));
    let above = (high.saturating_add(1).max(10_000), u16::MAX);
    if below.1 - below.0 >= above.1 - above.0 { below } else { above }
}

/// An address on 127.0.0.1 bound but not yet listening: connections to it
/// are refused, as if nothing were there, yet no one else can take it. Hand
/// it to a server (e.g. [`TestRegistry::spawn_on`]) to start listening.
pub struct Reserved {
    socket: tokio::net::TcpSocket,
    pub addr: std::net::SocketAddr,
}

impl Reserved {
    pub fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        socket.set_reuseaddr(true).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).expect("port 0 binds");
        let addr = socket.local_addr().unwrap();
        Self { socket, addr }
    }
}

impl Default for Reserved {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves `app` on a port of its own, on the calling runtime, and returns
/// its base URL: for stand-ins (a registry of the original, a heartbeat
/// that misbehaves, ...).
pub async fn serve_app(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port on loopback");
    let url = format!("http://{}", listener.local_addr().expect("a bound listener has an address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}
