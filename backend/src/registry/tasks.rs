//! The registry's background work: one prober and one patch deliverer per
//! registration. Probes run concurrently, each with its own deadline, so a
//! hung service never delays anyone else's; patches to one dependent go out
//! one at a time, in order, retried with backoff until they land.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Registry;

/// Handles on the tasks of one registration.
pub(super) struct Handles {
    cancel: CancellationToken,
    probe_now: Arc<Notify>,
    deliver: Arc<Notify>,
    /// Held for each send, so patches to one dependent never overlap.
    send_lock: Arc<tokio::sync::Mutex<()>>,
}

enum Delivery {
    UpToDate,
    Sent,
    Failed,
}

impl Registry {
    pub(super) fn spawn_tasks(&self, url: &str) {
        let handles = Handles {
            cancel: self.inner.shutdown.child_token(),
            probe_now: Arc::new(Notify::new()),
            deliver: Arc::new(Notify::new()),
            send_lock: Arc::new(tokio::sync::Mutex::new(())),
        };
        let (cancel, probe_now, deliver) = (handles.cancel.clone(), handles.probe_now.clone(), handles.deliver.clone());
        if let Some(old) = self.tasks().insert(url.to_owned(), handles) {
            old.cancel.cancel();
        }
        tokio::spawn(self.clone().prober(url.to_owned(), cancel.clone(), probe_now));
        tokio::spawn(self.clone().deliverer(url.to_owned(), cancel, deliver));
    }

    pub(super) fn stop_tasks(&self, url: &str) {
        if let Some(h) = self.tasks().remove(url) {
            h.cancel.cancel();
        }
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Handles>> {
        self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the deliverer of `url` to bring it up to date.
    pub(super) fn poke(&self, url: &str) {
        if let Some(h) = self.tasks().get(url) {
            h.deliver.notify_one();
        }
    }

    pub(super) fn probe_now(&self, url: &str) {
        if let Some(h) = self.tasks().get(url) {
            h.probe_now.notify_one();
        }
    }

    /// After the warm-up, removals held back for providers that never came
    /// back are sent.
    pub(super) fn spawn_warmup_end(&self) {
        let registry = self.clone();
        let warmup = self.inner.config.policy.warmup;
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(warmup) => {
                    let dependents = registry.table().all_dependents();
                    for url in dependents {
                        registry.poke(&url);
                    }
                }
                _ = registry.inner.shutdown.cancelled() => {}
            }
        });
    }

    /// Sends `url` the patch it needs, if any, waiting for any send already
    /// under way to it first.
    pub(super) async fn deliver_once(&self, url: &str) -> bool {
        matches!(self.try_deliver(url).await, Delivery::UpToDate | Delivery::Sent)
    }

    async fn try_deliver(&self, url: &str) -> Delivery {
        let Some(lock) = self.tasks().get(url).map(|h| h.send_lock.clone()) else { return Delivery::UpToDate };
        let _sending = lock.lock().await;
        let next = {
            let table = self.table();
            table
                .next_patch(url, Instant::now())
                .and_then(|(patch, generation)| table.get(url).map(|e| (patch, generation, e.update_url().to_owned())))
        };
        let Some((patch, generation, update_url)) = next else { return Delivery::UpToDate };
        let result =
            self.inner.client.post(&update_url).timeout(self.inner.config.patch_timeout).json(&patch).send().await;
        match result {
            Ok(r) if r.status().is_success() => {
                metrics::counter!("gradebook_registry_patches_total", "outcome" => "delivered").increment(1);
                self.table().delivered(url, generation, &patch);
                tracing::debug!(%url, added = patch.added.len(), removed = patch.removed.len(), "patch delivered");
                Delivery::Sent
            }
            outcome => {
                let why = match outcome {
                    Ok(r) => format!("answered {}", r.status()),
                    Err(e) => crate::http::describe(&e),
                };
                tracing::warn!(%url, %why, "patch delivery failed, will retry");
                metrics::counter!("gradebook_registry_patches_total", "outcome" => "failed").increment(1);
                // It may still have been applied: what it added counts as possibly held.
                self.table().delivery_failed(url, generation, &patch);
                Delivery::Failed
            }
        }
    }

    async fn deliverer(self, url: String, cancel: CancellationToken, wake: Arc<Notify>) {
        let max_backoff = self.inner.config.max_patch_backoff;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = wake.notified() => {}
            }
            let mut backoff = Duration::from_millis(50);
            loop {
                match self.try_deliver(&url).await {
                    Delivery::UpToDate => break,
                    // Something may have changed while we were sending.
                    Delivery::Sent => continue,
                    Delivery::Failed => {
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(backoff) => {}
                            // A new change (e.g. it recovered): try again now.
                            _ = wake.notified() => {}
                        }
                        backoff = (backoff * 2).min(max_backoff);
                    }
                }
            }
        }
    }

    async fn prober(self, url: String, cancel: CancellationToken, probe_now: Arc<Notify>) {
        let timeout = self.inner.config.policy.timeout;
        loop {
            let Some(delay) = self.table().next_probe_delay(&url) else { return };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
                _ = probe_now.notified() => {}
            }
            let Some((heartbeat, generation)) =
                self.table().get(&url).map(|e| (e.heartbeat_url().to_owned(), e.generation))
            else {
                return;
            };
            let started = Instant::now();
            let outcome = tokio::select! {
                _ = cancel.cancelled() => return,
                outcome = probe(&self.inner.client, &heartbeat, timeout) => outcome,
            };
            let outcome = outcome.map(|()| started.elapsed());
            match &outcome {
                Ok(latency) => {
                    metrics::histogram!("gradebook_registry_probe_duration_seconds").record(latency.as_secs_f64());
                    metrics::counter!("gradebook_registry_probes_total", "outcome" => "ok").increment(1);
                }
                Err(_) => metrics::counter!("gradebook_registry_probes_total", "outcome" => "failed").increment(1),
            }
            let transition = self.table().probe_result(&url, generation, outcome, Instant::now());
            if let Some(t) = transition {
                let recovered = matches!(t, super::Transition::Recovered { .. });
                self.apply(&url, t);
                if recovered {
                    // It may have missed changes while it was down.
                    self.poke(&url);
                }
            }
        }
    }
}

async fn probe(client: &reqwest::Client, url: &str, timeout: Duration) -> Result<(), String> {
    let response = client.get(url).timeout(timeout).send().await.map_err(|e| crate::http::describe(&e))?;
    let status = response.status();
    // Reading the (tiny) body lets the connection go back to the pool.
    response.bytes().await.map_err(|e| crate::http::describe(&e))?;
    if status.is_success() { Ok(()) } else { Err(format!("heartbeat answered {status}")) }
}
