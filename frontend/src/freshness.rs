//! Whether what the portal kept of grading's answers is still current,
//! without asking grading: the portal subscribes to every grading
//! instance's change feed (the protocol is in
//! [`gradebook_shared::grading::changes`]), and grading answers a write
//! only once its subscribers have heard of it.
//!
//! This module owns the subscriptions and one number, the *epoch*, which
//! moves on with every change heard and whenever a subscription starts or
//! ends. What was fetched at an epoch is current while the epoch has not
//! moved and every grading instance known has a subscription whose lease
//! holds (see [`Freshness::trusted`]); otherwise the portal asks grading, as
//! it would without the feed. A grading that has no feed (the original's)
//! is simply always asked.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use bytes::BytesMut;
use futures::StreamExt;
use gradebook_runtime::Runtime;
use gradebook_shared::grading::changes::{LEASE, Line, MAX_LINE, PATH, PROTOCOL};
use gradebook_shared::names;
use parking_lot::{Mutex, MutexGuard};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tokio_util::codec::{Decoder, FramedRead, LinesCodec, LinesCodecError};
use tokio_util::sync::CancellationToken;

/// How often a subscription pings: well within [`LEASE`], so that a lease
/// runs out only when the feed has stalled.
const PING_EVERY: Duration = Duration::from_millis(100);
/// How often the subscriptions are matched against the grading instances
/// known (trust waits for it after every change of those).
const SYNC_EVERY: Duration = Duration::from_millis(50);
/// Longest wait for grading to take a subscription.
const SUBSCRIBE_LIMIT: Duration = Duration::from_secs(2);
/// Waits before subscribing again: 200 ms, doubling up to 10 s, for as
/// long as it takes.
const BACKOFF: ExponentialBuilder = ExponentialBuilder::new()
    .with_min_delay(Duration::from_millis(200))
    .with_max_delay(Duration::from_secs(10))
    .with_factor(2.0)
    .without_max_times();

/// The feed's lines, each at most [`MAX_LINE`] bytes with its `\n`. Only
/// whole lines count: what is left unended when the feed closes is an
/// error, as an overlong line is, and ends the subscription.
struct FeedLines(LinesCodec);

impl FeedLines {
    fn new() -> Self {
        Self(LinesCodec::new_with_max_length(MAX_LINE - 1))
    }
}

impl Decoder for FeedLines {
    type Item = String;
    type Error = LinesCodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<String>, LinesCodecError> {
        self.0.decode(buf)
    }
}

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
    start: std::sync::OnceLock<Instant>,
}

#[derive(Default)]
struct Subscription {
    /// Until when (milliseconds since `start`) what was kept may be trusted.
    lease_until: AtomicU64,
    cancel: CancellationToken,
}

impl Freshness {
    fn millis(&self) -> u64 {
        self.0.start.get_or_init(Instant::now).elapsed().as_millis() as u64
    }

    fn subscriptions(&self) -> MutexGuard<'_, HashMap<String, Arc<Subscription>>> {
        self.0.subscriptions.lock()
    }

    /// The epoch now: read it before a question to grading, and keep the
    /// answer under it.
    pub fn epoch(&self) -> u64 {
        self.0.epoch.load(Ordering::SeqCst)
    }

    fn moved(&self) {
        self.0.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Whether what was fetched at `epoch` is still current: nothing changed
    /// since, as far as every grading instance known can tell right now.
    pub fn trusted(&self, epoch: u64, runtime: &Runtime) -> bool {
        if epoch != self.epoch() || runtime.providers().version() != self.0.synced.load(Ordering::SeqCst) {
            return false;
        }
        let now = self.millis();
        let subscriptions = self.subscriptions();
        !subscriptions.is_empty() && subscriptions.values().all(|s| s.lease_until.load(Ordering::SeqCst) > now)
            // Read last: a change heard meanwhile shows here.
            && epoch == self.epoch()
    }

    /// Keeps a subscription to every grading instance known until `shutdown`.
    pub async fn follow(self, runtime: Runtime, shutdown: CancellationToken) {
        self.0.synced.store(u64::MAX, Ordering::SeqCst);
        loop {
            let version = runtime.providers().version();
            if version != self.0.synced.load(Ordering::SeqCst) {
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
                self.0.synced.store(version, Ordering::SeqCst);
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
        let mut delays = BACKOFF.build();
        while !subscription.cancel.is_cancelled() {
            let held = tokio::select! {
                () = subscription.cancel.cancelled() => None,
                held = self.hold(&runtime, &url, &subscription) => Some(held),
            };
            subscription.lease_until.store(0, Ordering::SeqCst);
            self.moved();
            match held {
                None => break,
                // It flowed: something went wrong since, so try again soon.
                Some(Ok(())) => delays = BACKOFF.build(),
                Some(Err(why)) => tracing::debug!(%url, %why, "no change feed from grading; asking it every time"),
            }
            let delay = delays.next().unwrap_or(Duration::from_secs(10));
            tokio::select! {
                () = subscription.cancel.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One subscription, while it lasts: `Ok` once it flowed, then ended.
    async fn hold(&self, runtime: &Runtime, url: &str, subscription: &Subscription) -> Result<(), String> {
        let subscribing = async {
            let response = runtime
                .open_ended_client()
                .get(format!("{url}{PATH}"))
                .header(reqwest::header::CONNECTION, "upgrade")
                .header(reqwest::header::UPGRADE, PROTOCOL)
                .send()
                .await
                .map_err(|e| gradebook_runtime::http::describe(&e))?;
            if response.status() != reqwest::StatusCode::SWITCHING_PROTOCOLS {
                return Err(format!("GET {PATH} answered {}", response.status()));
            }
            response.upgrade().await.map_err(|e| gradebook_runtime::http::describe(&e))
        };
        // The stream has no deadline; taking it does.
        let io = tokio::time::timeout(SUBSCRIBE_LIMIT, subscribing)
            .await
            .map_err(|_| format!("GET {PATH} was not answered within {SUBSCRIBE_LIMIT:?}"))??;
        let (read, mut write) = tokio::io::split(io);
        // What was kept before could have missed a change.
        self.moved();
        let mut lines = FramedRead::new(read, FeedLines::new());
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Bounded: a grading that never reads cannot hold the subscription.
        let mut send = async |line: Line| match tokio::time::timeout(LEASE, write.write_all(&line.to_bytes())).await {
            Ok(Ok(())) => Ok(()),
            _ => Err("grading does not read its change feed".to_owned()),
        };
        loop {
            tokio::select! {
                _ = ping.tick() => send(Line::Ping(self.millis())).await?,
                // Cancel-safe: what was read stays in the framed reader.
                line = lines.next() => {
                    // The end, a broken or an overlong line: over.
                    let Some(Ok(line)) = line else { return Ok(()) };
                    match Line::parse(line.as_bytes()) {
                        Some(Line::Changed(n)) => {
                            self.moved();
                            send(Line::Ack(n)).await?;
                        }
                        // Only a ping we sent (its time is not in the future)
                        // lends trust.
                        Some(Line::Pong(sent)) if sent <= self.millis() => {
                            let until = sent.saturating_add(LEASE.as_millis() as u64);
                            subscription.lease_until.fetch_max(until, Ordering::SeqCst);
                        }
                        _ => return Ok(()),
                    }
                }
            }
        }
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
