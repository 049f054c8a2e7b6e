//! The patch deliverer of one registration: patches to one dependent go out
//! one at a time, in order, retried with backoff (the runtime's `Backoff`) until they
//! land. It holds no state of its own: it asks the [`Registry`] for the next
//! patch and reports how the send went.

use std::sync::Arc;
use std::time::Duration;

use gradebook_runtime::backoff::Backoff;
use gradebook_shared::registry::PushedPatch;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::Registry;

/// The wait before the first retry of a failed send; each further one waits
/// twice as long, up to the configured most.
const FIRST_RETRY: Duration = Duration::from_millis(50);

/// How a send went.
pub(super) enum Delivery {
    UpToDate,
    Sent,
    Failed,
}

/// Sends `url` the patch it needs, if any, waiting for any send already
/// under way to it first.
pub(super) async fn deliver(registry: &Registry, url: &str) -> Delivery {
    let Some(lock) = registry.send_lock(url) else { return Delivery::UpToDate };
    let _sending = lock.lock().await;
    let Some(pending) = registry.next_patch(url) else { return Delivery::UpToDate };
    let mut request = registry.client().post(&pending.update_url);
    if let Some(credential) = registry.config().credential() {
        request = request.bearer_auth(credential.registry_bearer_to(&pending.name));
    }
    let result = request
        .timeout(registry.config().patch_timeout)
        .json(&PushedPatch { patch: pending.patch.to_patch(), seq: Some(pending.seq) })
        .send()
        .await;
    match result {
        Ok(r) if r.status().is_success() => {
            metrics::counter!("gradebook_registry_patches_total", "outcome" => "delivered").increment(1);
            registry.delivered(url, &pending);
            tracing::debug!(%url, added = pending.patch.added.len(), removed = pending.patch.removed.len(), "patch delivered");
            Delivery::Sent
        }
        outcome => {
            // Refused (an answer that is not 2xx) or never connected: the
            // patch was not applied, and the next one repeats this diff. Only
            // a send cut off mid-way leaves it unknown whether it landed.
            let (why, unknown) = match outcome {
                Ok(r) => (format!("answered {}", r.status()), false),
                Err(e) => (gradebook_runtime::http::describe(&e), !e.is_connect()),
            };
            tracing::warn!(%url, %why, "patch delivery failed, will retry");
            metrics::counter!("gradebook_registry_patches_total", "outcome" => "failed").increment(1);
            if unknown {
                // It may have been applied: what it added counts as possibly held.
                registry.delivery_failed(url, &pending);
            }
            Delivery::Failed
        }
    }
}

/// Sends `url` every patch it needs, one at a time and in order, each
/// failed send retried with backoff until it lands or a change wakes it.
pub(super) async fn deliverer(registry: Registry, url: String, cancel: CancellationToken, wake: Arc<Notify>) {
    let max_backoff = registry.config().max_patch_backoff;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = wake.notified() => {}
        }
        let mut waits = Backoff::new(FIRST_RETRY, max_backoff);
        loop {
            match deliver(&registry, &url).await {
                Delivery::UpToDate => break,
                // Something may have changed while we were sending.
                Delivery::Sent => continue,
                Delivery::Failed => {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(waits.next_delay()) => {}
                        // A new change (e.g. it recovered): try again now.
                        _ = wake.notified() => {}
                    }
                }
            }
        }
    }
}
