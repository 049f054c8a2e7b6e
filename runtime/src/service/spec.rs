//! Who a service is and what it needs: its name, address, required
//! services, registry, credential, caller policy and deadlines.

use std::time::Duration;

use gradebook_shared::names;

use crate::logship;

/// Who a service is and what it needs.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    /// The URL others reach it at; by default `http://<bound address>`.
    pub advertise: Option<String>,
    pub required: Vec<String>,
    /// Base URL of the registry, e.g. `http://127.0.0.1:3000`.
    pub registry_url: String,
    /// The master secret K, for a process started with `--token` (tests,
    /// hand runs): it derives its own credential from it.
    pub token: Option<String>,
    /// This service's own credential (what `up` hands a child); wins over
    /// `token`.
    pub credential: Option<crate::credential::Credential>,
    /// The scrape credential `/metrics` takes when closed.
    pub metrics_token: Option<String>,
    /// Which callers may call which of its routes (default deny).
    pub policy: crate::credential::Policy,
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
            credential: None,
            metrics_token: None,
            policy: crate::credential::allow_only_registry_patches,
            call_timeout: Self::DEFAULT_CALL_TIMEOUT,
            session: true,
            logs: None,
            drain_timeout: Self::DEFAULT_DRAIN_TIMEOUT,
            reregister_after: Self::DEFAULT_REREGISTER_AFTER,
            people_facing: false,
        }
    }

    /// Sets the caller policy of the service's routes.
    pub fn policy(mut self, policy: crate::credential::Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The credential this service runs with: its own, or one derived from
    /// the master secret; None when open.
    pub fn effective_credential(&self) -> Option<crate::credential::Credential> {
        let credential = self
            .credential
            .clone()
            .or_else(|| self.token.as_deref().map(|k| crate::credential::Credential::from_master(k, &self.name)));
        credential.map(|c| c.with_scrape_token(self.metrics_token.clone()))
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
