//! The registry: the hub where services register, declare what they require,
//! and are pushed patches whenever the healthy providers of those change.
//!
//! - [`args`]: `gradebook registry`'s flags;
//! - [`http`]: the API (wire-compatible with the original design) and the
//!   session connections through which services on our runtime report their
//!   own death instantly;
//! - [`state`]: the [`Registry`], the single owner of the table and of each
//!   registration's background tasks (its prober and patch deliverer);
//! - [`policy`]: the health-check policy;
//! - [`table`]: the state machine, free of I/O (health, and what each
//!   dependent has been told);
//! - [`probe`]: one heartbeat probe, over a connection its prober keeps;
//! - [`validate`]: what a registration must look like;
//! - [`peer`]: that a registration names its caller's own address;
//! - [`error`]: the one error type, as the one JSON error shape.

pub mod args;
mod callers;
mod error;
mod http;
mod peer;
mod policy;
mod probe;
mod state;
mod table;
mod validate;

use std::time::Duration;

pub use error::RegistryError;
pub use http::{BODY_LIMIT, router, serve};
pub use policy::Policy;
pub use state::Registry;

/// Registry settings beyond the listener.
#[derive(Debug, Clone)]
pub struct Config {
    pub policy: Policy,
    /// The master secret K (a registry run by hand or in tests): the
    /// registry derives its own credential from it.
    pub token: Option<String>,
    /// The registry's own credential (what `up` hands it); wins over `token`.
    pub credential: Option<gradebook_runtime::credential::Credential>,
    /// The scrape credential `/metrics` takes when closed.
    pub metrics_token: Option<String>,
    /// Let heartbeat and update URLs point at another host than the service.
    pub allow_foreign_urls: bool,
    /// Deadline of a patch delivery.
    pub patch_timeout: Duration,
    /// Longest wait between retries of a failed patch delivery.
    pub max_patch_backoff: Duration,
    /// After shutdown begins, how long open requests may take.
    pub drain_timeout: Duration,
    /// Registrations held at most (429 beyond).
    pub max_registrations: usize,
    /// Sessions open at most (429 beyond).
    pub max_sessions: usize,
}

impl Config {
    /// The credential the registry runs with, None when open.
    pub fn credential(&self) -> Option<gradebook_runtime::credential::Credential> {
        use gradebook_runtime::credential::{Credential, REGISTRY};
        let credential =
            self.credential.clone().or_else(|| self.token.as_deref().map(|k| Credential::from_master(k, REGISTRY)));
        credential.map(|c| c.with_scrape_token(self.metrics_token.clone()))
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            token: None,
            credential: None,
            metrics_token: None,
            allow_foreign_urls: false,
            patch_timeout: Duration::from_millis(500),
            max_patch_backoff: Duration::from_secs(5),
            drain_timeout: gradebook_runtime::ServiceSpec::DEFAULT_DRAIN_TIMEOUT,
            max_registrations: 10_000,
            max_sessions: 10_000,
        }
    }
}
