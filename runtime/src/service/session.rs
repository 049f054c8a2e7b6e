//! The session with the registry: one upgraded connection whose end tells
//! the service at once why it ended, and the watch on the registry's probes
//! that tells when it has lost us without the session saying so.

use std::sync::atomic::Ordering;
use std::time::Duration;

use gradebook_shared::registry::session;
use tokio_util::sync::CancellationToken;

use super::Runtime;

impl Runtime {
    /// Holds the session open until the registry or `cancel` ends it. It is
    /// asked for upgraded off HTTP, which costs our registry a socket rather
    /// than an HTTP connection's buffers; any other answer is read as today's
    /// registries give it (see [`SessionEnd::answered`]).
    pub(super) async fn hold_session(&self, cancel: &CancellationToken) -> SessionEnd {
        if !self.inner.spec.session {
            cancel.cancelled().await;
            return SessionEnd::Shutdown;
        }
        let session = async {
            let request = self.inner.session_client.post(self.registry("/sessions"));
            let request = self
                .authorize(request, crate::credential::REGISTRY)
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
    pub(super) fn heard(&self) {
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
}

pub(super) enum SessionEnd {
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
