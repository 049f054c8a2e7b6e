//! Waiting between tries: exponential backoff on `backon`'s policy, with the
//! two things every retry loop of the system needs beside it — a wait that
//! ends early on shutdown, and a reset once a try succeeds.
//!
//! Loops here reconnect or redeliver for as long as the process runs, so the
//! delays never run out: they double from `min` and stay at `max`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio_util::sync::CancellationToken;

/// The delays of one retry loop.
#[derive(Debug)]
pub struct Backoff {
    policy: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    /// Delays of `min`, `2 × min`, … up to `max`, then `max` for ever.
    pub fn new(min: Duration, max: Duration) -> Self {
        let policy =
            ExponentialBuilder::default().with_min_delay(min).with_max_delay(max).with_factor(2.0).without_max_times();
        Backoff { policy, delays: policy.build(), max }
    }

    /// The next delay (the first after a [`reset`](Self::reset) is `min`).
    pub fn next_delay(&mut self) -> Duration {
        // Without a limit on tries the policy never ends; `max` stands in
        // should it ever do so.
        self.delays.next().unwrap_or(self.max)
    }

    /// Starts again from `min`: a try succeeded.
    pub fn reset(&mut self) {
        self.delays = self.policy.build();
    }

    /// Sleeps for the next delay. False when `cancel` fired first: the loop
    /// should stop.
    pub async fn wait(&mut self, cancel: &CancellationToken) -> bool {
        let delay = self.next_delay();
        sleep_unless(cancel, delay).await
    }
}

/// Sleeps for `delay`. False when `cancel` fired first.
pub async fn sleep_unless(cancel: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_double_from_the_minimum_and_stay_at_the_maximum() {
        let mut backoff = Backoff::new(50 * MS, 400 * MS);

        // backon computes in floating point: whole milliseconds are exact enough.
        let delays: Vec<_> = (0..6).map(|_| backoff.next_delay().as_millis()).collect();

        assert_eq!(delays, [50, 100, 200, 400, 400, 400]);
    }

    #[test]
    fn a_reset_starts_again_from_the_minimum() {
        let mut backoff = Backoff::new(50 * MS, 400 * MS);
        for _ in 0..5 {
            backoff.next_delay();
        }

        backoff.reset();

        assert_eq!(backoff.next_delay(), 50 * MS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_once_when_cancelled() {
        let cancel = CancellationToken::new();
        let mut backoff = Backoff::new(Duration::from_secs(60), Duration::from_secs(60));
        cancel.cancel();

        let started = tokio::time::Instant::now();
        let slept = backoff.wait(&cancel).await;

        assert!(!slept);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}
