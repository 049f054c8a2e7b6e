//! The prober of one registration. Probes run concurrently, each with its
//! own deadline, so a hung service never delays anyone else's. It holds no
//! state of its own: it asks the [`Registry`] what to probe and when, and
//! reports back.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ProbeTarget, Registry};
use crate::registry::probe::Probe;

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

/// Probes `url` until its registration is gone or `cancel` is cancelled,
/// each probe with its own deadline, reporting every outcome to the registry.
pub(super) async fn prober(registry: Registry, url: String, cancel: CancellationToken, probe_now: Arc<Notify>) {
    let timeout = registry.config().policy.timeout;
    let credential = registry.config().credential();
    let metrics = ProbeMetrics::get();
    let Some(mut target) = registry.probe_target(&url) else { return };
    let new_probe = |target: &ProbeTarget| match &target.heartbeat {
        Ok(url) => {
            let proof = credential.as_ref().map(|c| c.probe_proof(&target.name, proof_time()));
            Ok(Probe::new(url, proof.as_deref(), registry.probe_connections()))
        }
        Err(why) => Err(why.clone()),
    };
    let mut probe = new_probe(&target);
    let mut made_at = proof_time();
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
        if generation != target.generation || proof_time() != made_at {
            // Registered again (perhaps with a new heartbeat URL).
            let Some(fresh) = registry.probe_target(&url) else { return };
            target = fresh;
            probe = new_probe(&target);
            made_at = proof_time();
        }
        next.as_mut().reset(Instant::now() + target.delay);
    }
}

/// The probe proof's time, in steps of a few seconds: a probe is made again
/// (with a fresh proof) only when it moves on, and a proof stays within the
/// window its receiver accepts.
fn proof_time() -> u64 {
    let now = gradebook_runtime::credential::unix_now();
    now - now % (gradebook_runtime::credential::PROBE_PROOF_SECS / 2)
}
