//! The registry's background work: one prober and one patch deliverer per
//! registration. Probes run concurrently, each with its own deadline, so a
//! hung service never delays anyone else's; patches to one dependent go out
//! one at a time, in order, retried with backoff until they land.
//!
//! The tasks hold no state of their own: they ask the [`Registry`] what to do
//! next and report back, and stop when their registration's token is
//! cancelled (which the registry does in the same step that removes it).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use gradebook_shared::registry::PushedPatch;

use super::Registry;
use super::probe::Probe;
use super::state::ProbeTarget;

/// Handles on the tasks of one registration.
pub(super) struct Handles {
    pub cancel: CancellationToken,
    pub probe_now: Arc<Notify>,
    pub deliver: Arc<Notify>,
    /// Held for each send, so patches to one dependent never overlap.
    pub send_lock: Arc<tokio::sync::Mutex<()>>,
    /// Ends the registration's open sessions (a child of `cancel`): when it
    /// is removed or replaced, its service hears so at once and registers
    /// again, instead of holding a session to an entry that is gone.
    pub session_end: CancellationToken,
}

impl Handles {
    /// Ends the open sessions; later ones get a fresh token.
    pub fn end_sessions(&mut self) {
        self.session_end.cancel();
        self.session_end = self.cancel.child_token();
    }
}

/// Starts the prober and the deliverer of `url`.
pub(super) fn spawn(registry: &Registry, url: &str) -> Handles {
    let cancel = registry.shutdown().child_token();
    let handles = Handles {
        session_end: cancel.child_token(),
        cancel,
        probe_now: Arc::new(Notify::new()),
        deliver: Arc::new(Notify::new()),
        send_lock: Arc::new(tokio::sync::Mutex::new(())),
    };
    tokio::spawn(prober(registry.clone(), url.to_owned(), handles.cancel.clone(), handles.probe_now.clone()));
    tokio::spawn(deliverer(registry.clone(), url.to_owned(), handles.cancel.clone(), handles.deliver.clone()));
    handles
}

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
    let result = registry
        .client()
        .post(&pending.update_url)
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

async fn deliverer(registry: Registry, url: String, cancel: CancellationToken, wake: Arc<Notify>) {
    let max_backoff = registry.config().max_patch_backoff;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = wake.notified() => {}
        }
        let mut backoff = Duration::from_millis(50);
        loop {
            match deliver(&registry, &url).await {
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

/// The probe metrics, looked up once: with 10,000 services probed every
/// second, a lookup by name and labels per probe would show.
struct ProbeMetrics {
    ok: metrics::Counter,
    failed: metrics::Counter,
    duration: metrics::Histogram,
}

impl ProbeMetrics {
    fn get() -> &'static ProbeMetrics {
        static METRICS: std::sync::OnceLock<ProbeMetrics> = std::sync::OnceLock::new();
        METRICS.get_or_init(|| {
            // The recorder must exist before handles are taken from it.
            gradebook_runtime::metrics::install();
            ProbeMetrics {
                ok: metrics::counter!("gradebook_registry_probes_total", "outcome" => "ok"),
                failed: metrics::counter!("gradebook_registry_probes_total", "outcome" => "failed"),
                duration: metrics::histogram!("gradebook_registry_probe_duration_seconds"),
            }
        })
    }
}

async fn prober(registry: Registry, url: String, cancel: CancellationToken, probe_now: Arc<Notify>) {
    let timeout = registry.config().policy.timeout;
    let token = registry.config().token.clone();
    let metrics = ProbeMetrics::get();
    let Some(mut target) = registry.probe_target(&url) else { return };
    let new_probe = |target: &ProbeTarget| match &target.heartbeat {
        Ok(url) => Ok(Probe::new(url, token.as_deref(), registry.probe_connections())),
        Err(why) => Err(why.clone()),
    };
    let mut probe = new_probe(&target);
    // Made once, not once per wait: each one made is registered with the
    // token and unregistered again.
    let cancelled = cancel.cancelled();
    tokio::pin!(cancelled);
    // Set again after each probe (its deadline has a timer of its own: one
    // pushed later would be woken at the old time only to be put back).
    let next = tokio::time::sleep(target.delay);
    tokio::pin!(next);
    loop {
        tokio::select! {
            _ = &mut cancelled => return,
            _ = &mut next => {}
            _ = probe_now.notified() => {}
        }
        let started = Instant::now();
        let outcome = match &mut probe {
            Ok(probe) => tokio::select! {
                biased;
                _ = &mut cancelled => return,
                outcome = probe.run(registry.client()) => outcome,
                _ = tokio::time::sleep_until(started + timeout) => Err("timed out".to_owned()),
            },
            Err(why) => Err(format!("heartbeat URL does not parse: {why}")),
        };
        let outcome = outcome.map(|()| started.elapsed());
        match &outcome {
            Ok(latency) => {
                metrics.duration.record(latency.as_secs_f64());
                metrics.ok.increment(1);
            }
            Err(_) => metrics.failed.increment(1),
        }
        let Some((delay, generation)) = registry.probe_result(&url, target.generation, outcome) else { return };
        target.delay = delay;
        if generation != target.generation {
            // Registered again (perhaps with a new heartbeat URL).
            let Some(fresh) = registry.probe_target(&url) else { return };
            target = fresh;
            probe = new_probe(&target);
        }
        next.as_mut().reset(Instant::now() + target.delay);
    }
}
