//! What may be trusted without asking grading: the epoch, which moves on
//! with every change heard and whenever a subscription starts or ends, and
//! the subscriptions' leases, which a `pong` to a recent `ping` extends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use gradebook_runtime::Runtime;
use parking_lot::{Mutex, MutexGuard};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
pub struct Freshness(Arc<Inner>);

#[derive(Default)]
struct Inner {
    epoch: AtomicU64,
    /// One per grading instance known, by its URL.
    subscriptions: Mutex<HashMap<String, Arc<Subscription>>>,
    /// The providers' version the subscriptions match (`u64::MAX`: none yet).
    synced: AtomicU64,
    /// What leases are counted from.
    start: OnceLock<Instant>,
}

/// One grading instance's subscription, as trust sees it.
#[derive(Default)]
pub struct Subscription {
    /// Until when (milliseconds since `start`) what was kept may be trusted.
    pub lease_until: AtomicU64,
    pub cancel: CancellationToken,
}

impl Freshness {
    /// Milliseconds since leases started being counted.
    pub(super) fn millis(&self) -> u64 {
        self.0.start.get_or_init(Instant::now).elapsed().as_millis() as u64
    }

    pub(super) fn subscriptions(&self) -> MutexGuard<'_, HashMap<String, Arc<Subscription>>> {
        self.0.subscriptions.lock()
    }

    /// The subscriptions match the providers' `version` (`u64::MAX`: none).
    pub(super) fn synced(&self, version: u64) {
        self.0.synced.store(version, Ordering::SeqCst);
    }

    pub(super) fn synced_version(&self) -> u64 {
        self.0.synced.load(Ordering::SeqCst)
    }

    /// The epoch now: read it before a question to grading, and keep the
    /// answer under it.
    pub fn epoch(&self) -> u64 {
        self.0.epoch.load(Ordering::SeqCst)
    }

    /// Something may have changed: what was kept before is not trusted.
    pub(super) fn moved(&self) {
        self.0.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether what was fetched at `epoch` is still current: nothing changed
    /// since, as far as every grading instance known can tell right now.
    pub fn trusted(&self, epoch: u64, runtime: &Runtime) -> bool {
        if epoch != self.epoch() || runtime.providers().version() != self.synced_version() {
            return false;
        }
        let now = self.millis();
        let subscriptions = self.subscriptions();
        !subscriptions.is_empty() && subscriptions.values().all(|s| s.lease_until.load(Ordering::SeqCst) > now)
            // Read last: a change heard meanwhile shows here.
            && epoch == self.epoch()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_trusted_before_a_subscription_flows() {
        let fresh = Freshness::default();
        let runtime = Runtime::new(
            gradebook_runtime::ServiceSpec::new("Portal", "http://127.0.0.1:9"),
            "127.0.0.1:1".parse().expect("an address"),
        );
        assert!(!fresh.trusted(fresh.epoch(), &runtime));
    }
}
