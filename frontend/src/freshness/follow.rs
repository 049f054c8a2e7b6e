//! Following grading: a subscription to every grading instance known,
//! matched to the providers as they change, each taken again (with backoff)
//! whenever it ends.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use gradebook_runtime::Runtime;
use gradebook_runtime::backoff::Backoff;
use gradebook_shared::names;
use tokio_util::sync::CancellationToken;

use super::feed::hold;
use super::trust::{Freshness, Subscription};

/// How often the subscriptions are matched against the grading instances
/// known (trust waits for it after every change of those).
const SYNC_EVERY: Duration = Duration::from_millis(50);
/// Waits before subscribing again: 200 ms, doubling up to 10 s, for as
/// long as it takes.
fn backoff() -> Backoff {
    Backoff::new(Duration::from_millis(200), Duration::from_secs(10))
}

impl Freshness {
    /// Keeps a subscription to every grading instance known until `shutdown`.
    pub async fn follow(self, runtime: Runtime, shutdown: CancellationToken) {
        self.synced(u64::MAX);
        loop {
            let version = runtime.providers().version();
            if version != self.synced_version() {
                let known = runtime.providers().all(names::GRADING);
                let mut subscriptions = self.subscriptions();
                subscriptions.retain(|url, s| {
                    let keep = known.contains(url);
                    if !keep {
                        s.cancel.cancel();
                    }
                    keep
                });
                for url in known {
                    if let std::collections::hash_map::Entry::Vacant(new) = subscriptions.entry(url) {
                        let subscription = Arc::new(Subscription::default());
                        let (this, rt) = (self.clone(), runtime.clone());
                        tokio::spawn(this.subscribe(rt, new.key().clone(), subscription.clone()));
                        new.insert(subscription);
                    }
                }
                self.synced(version);
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(SYNC_EVERY) => {}
            }
        }
        for s in self.subscriptions().drain() {
            s.1.cancel.cancel();
        }
    }

    /// Holds the subscription to the grading at `url` until it is cancelled,
    /// subscribing again (with backoff) whenever it ends.
    async fn subscribe(self, runtime: Runtime, url: String, subscription: Arc<Subscription>) {
        let mut delays = backoff();
        while !subscription.cancel.is_cancelled() {
            let held = tokio::select! {
                () = subscription.cancel.cancelled() => None,
                held = hold(&self, &runtime, &url, &subscription) => Some(held),
            };
            subscription.lease_until.store(0, Ordering::SeqCst);
            self.moved();
            match held {
                None => break,
                // It flowed: something went wrong since, so try again soon.
                Some(Ok(())) => delays.reset(),
                Some(Err(why)) => tracing::debug!(%url, %why, "no change feed from grading; asking it every time"),
            }
            if !delays.wait(&subscription.cancel).await {
                break;
            }
        }
    }
}
