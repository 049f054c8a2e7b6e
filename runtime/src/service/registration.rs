//! Registering with the registry (with backoff while it is away), staying
//! registered for as long as the service runs, and deregistering once.

use std::sync::atomic::Ordering;
use std::time::Duration;

use gradebook_shared::registry::{Patch, Registration};
use tokio_util::sync::CancellationToken;

use super::Runtime;
use super::routes::{HEARTBEAT_PATH, UPDATE_PATH};
use super::session::SessionEnd;
use crate::backoff::{Backoff, sleep_unless};

/// How often a service whose registry holds no sessions asks again.
const SESSION_RETRY: Duration = Duration::from_secs(60);

impl Runtime {
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

    async fn register_once(&self) -> Result<(), String> {
        let req = self.inner.client.post(self.registry("/services")).json(&self.registration());
        let req = self.authorize(req, crate::credential::REGISTRY);
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
        let req = self.inner.client.delete(self.registry("/services"));
        let req = self
            .authorize(req, crate::credential::REGISTRY)
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
