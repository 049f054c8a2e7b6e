//! What every Gradebook service runs on: it binds first, then registers with
//! the registry (retrying with backoff while the registry is away), holds a
//! session connection so its crash is noticed at once, keeps a provider cache
//! fed by patches, and on shutdown deregisters exactly once before draining.
//!
//! - this module: [`Runtime`], a service's handle on the system;
//! - [`spec`]: who a service is and what it needs ([`ServiceSpec`]);
//! - [`call`]: calls to providers, with failover;
//! - [`registration`]: registering, staying registered, deregistering;
//! - [`session`]: the session with the registry, and whether it still knows us;
//! - [`routes`]: the heartbeat and patch endpoints every service has;
//! - [`serve`]: serving an app registered, until shutdown, then draining.

mod call;
mod registration;
mod routes;
mod serve;
mod session;
mod spec;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

pub use call::CallError;
pub use routes::{HEARTBEAT_PATH, UPDATE_PATH};
pub use serve::serve;
pub use spec::ServiceSpec;

use crate::providers::Providers;

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
    /// What this service proves itself with, and checks its callers by.
    credential: Option<crate::credential::Credential>,
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
        // The clients carry no credential: each call is given the key for
        // its receiver (see `authorize`), which opens that receiver only.
        let session_client = crate::http::open_ended_client(spec.call_timeout, None);
        Self {
            inner: Arc::new(Inner {
                client: crate::http::client(spec.call_timeout, None),
                credential: spec.effective_credential(),
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

    /// A client whose every call carries this service's key for `receiver`
    /// (for code that builds its own requests, like the log shipper).
    pub fn client_to(&self, receiver: &str) -> reqwest::Client {
        let bearer = self.inner.credential.as_ref().and_then(|c| c.bearer_to(receiver));
        crate::http::client(self.inner.spec.call_timeout, bearer.as_deref())
    }

    /// A client without an overall deadline (for streams), with the same
    /// credentials as [`Runtime::client`].
    pub fn open_ended_client(&self) -> &reqwest::Client {
        &self.inner.session_client
    }

    /// The credential this service runs with (None when open).
    pub fn credential(&self) -> Option<&crate::credential::Credential> {
        self.inner.credential.as_ref()
    }

    /// `request` with this service's key for `receiver`: every outbound
    /// call goes through here, so a key only ever reaches its receiver.
    pub fn authorize(&self, request: reqwest::RequestBuilder, receiver: &str) -> reqwest::RequestBuilder {
        match self.inner.credential.as_ref().and_then(|c| c.bearer_to(receiver)).and_then(|b| crate::http::bearer(&b)) {
            Some(value) => request.header(reqwest::header::AUTHORIZATION, value),
            None => request,
        }
    }

    /// The registry's URL for `path` (for registering and the session).
    fn registry(&self, path: &str) -> String {
        format!("{}{path}", self.inner.spec.registry_url.trim_end_matches('/'))
    }
}
