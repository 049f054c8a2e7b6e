//! The services under test, each isolated on its own runtime: a registry, a
//! service on the runtime, the log service, grading.

use axum::Router;
use gradebook::registry::{self, Registry};
use gradebook_runtime::{Runtime, ServiceSpec};

use crate::isolated::Isolated;
use crate::ports::Bind;

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

/// A spec for a test service using `registry`.
pub fn spec(registry: &TestRegistry, name: &str, requires: &[&str]) -> ServiceSpec {
    ServiceSpec::new(name, registry.url.clone()).requires(requires)
}
