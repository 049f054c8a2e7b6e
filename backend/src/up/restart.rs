//! When `up` starts a child that exited on its own again, and when it gives
//! up on it: waits that double from a first one up to a most (the
//! runtime's `Backoff`), starting over after a good run, and a count of exits within a
//! window beyond which the child is given up on.

use std::collections::VecDeque;
use std::time::Duration;

use gradebook_runtime::backoff::Backoff;
use tokio::time::Instant;

/// When a child that exited on its own is started again, and when `up`
/// gives up on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Wait before the first restart; each further one waits twice as long...
    pub first_delay: Duration,
    /// ...up to this.
    pub max_delay: Duration,
    /// A run at least this long was a good one: the wait starts over.
    pub stable_after: Duration,
    /// This many exits within `window` make `up` give up...
    pub max_exits: usize,
    /// ...rather than restart the child yet again.
    pub window: Duration,
}

impl RestartPolicy {
    pub const DEFAULT: Self = Self {
        first_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(30),
        stable_after: Duration::from_secs(10),
        max_exits: 5,
        window: Duration::from_secs(60),
    };
}

impl RestartPolicy {
    /// The waits before each restart: `first_delay`, then twice as long each
    /// time, up to `max_delay`, without jitter and without end.
    fn waits(&self) -> Backoff {
        Backoff::new(self.first_delay, self.max_delay)
    }
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What to do about a child that has just exited on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after this wait.
    Restart { after: Duration },
    /// It exited this many times within the policy's window: stop everything.
    GiveUp { exits: usize },
}

/// The restart history of one child: pure (the caller says what time it
/// is), so the policy is tested without waiting.
#[derive(Debug)]
pub struct Restarts {
    policy: RestartPolicy,
    /// The waits before the next restarts, doubling up to the policy's most.
    waits: Backoff,
    /// When it exited, within the last `window`.
    exits: VecDeque<Instant>,
}

impl Restarts {
    pub fn new(policy: RestartPolicy) -> Self {
        Self { policy, waits: policy.waits(), exits: VecDeque::new() }
    }

    /// The run that began at `started` ended by itself at `now`.
    pub fn exited(&mut self, started: Instant, now: Instant) -> Decision {
        if now.saturating_duration_since(started) >= self.policy.stable_after {
            self.waits.reset();
        }
        while self.exits.front().is_some_and(|&t| now.saturating_duration_since(t) >= self.policy.window) {
            self.exits.pop_front();
        }
        self.exits.push_back(now);
        if self.exits.len() >= self.policy.max_exits {
            return Decision::GiveUp { exits: self.exits.len() };
        }
        // Never exhausted (no most of times): the fallback is only for form.
        let after = self.waits.next_delay();
        Decision::Restart { after }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    /// Drives `restarts` on a clock of its own: each run lasts `run`, then
    /// the wait it asked for passes before the next run begins.
    struct Clock {
        restarts: Restarts,
        now: Instant,
    }

    impl Clock {
        fn new(policy: RestartPolicy) -> Self {
            Self { restarts: Restarts::new(policy), now: Instant::now() }
        }

        fn run_and_exit(&mut self, run: Duration) -> Decision {
            let started = self.now;
            self.now += run;
            let decision = self.restarts.exited(started, self.now);
            if let Decision::Restart { after } = decision {
                self.now += after;
            }
            decision
        }
    }

    fn restart_after(ms: u64) -> Decision {
        Decision::Restart { after: Duration::from_millis(ms) }
    }

    #[test]
    fn restarts_wait_half_a_second_first_then_twice_as_long_each_time_up_to_thirty_seconds() {
        // Never give up here: only the waits are under test.
        let mut clock = Clock::new(RestartPolicy { max_exits: usize::MAX, ..RestartPolicy::DEFAULT });

        let waits: Vec<Decision> = (0..9).map(|_| clock.run_and_exit(SECOND)).collect();

        let expected = [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000];
        assert_eq!(waits, expected.map(restart_after));
    }

    #[test]
    fn a_run_that_lasted_a_while_starts_the_waits_over() {
        let mut clock = Clock::new(RestartPolicy { max_exits: usize::MAX, ..RestartPolicy::DEFAULT });
        for _ in 0..3 {
            clock.run_and_exit(SECOND);
        }

        assert_eq!(clock.run_and_exit(Duration::from_secs(10)), restart_after(500));
        assert_eq!(clock.run_and_exit(SECOND), restart_after(1_000));
    }

    #[test]
    fn a_child_failing_fast_is_given_up_on_at_its_fifth_exit_within_a_minute() {
        let mut clock = Clock::new(RestartPolicy::DEFAULT);

        let decisions: Vec<Decision> = (0..5).map(|_| clock.run_and_exit(Duration::from_millis(100))).collect();

        assert_eq!(&decisions[..4], &[500, 1_000, 2_000, 4_000].map(restart_after));
        assert_eq!(decisions[4], Decision::GiveUp { exits: 5 });
    }

    #[test]
    fn a_child_that_exits_now_and_then_is_restarted_forever() {
        let mut clock = Clock::new(RestartPolicy::DEFAULT);

        // Every 16 s: never five exits within one minute.
        for i in 0..50 {
            assert_eq!(clock.run_and_exit(Duration::from_millis(15_500)), restart_after(500), "exit {i}");
        }
    }

    #[test]
    fn exits_older_than_the_window_no_longer_count_towards_giving_up() {
        let mut clock = Clock::new(RestartPolicy::DEFAULT);
        for _ in 0..4 {
            clock.run_and_exit(Duration::from_millis(100));
        }

        clock.now += Duration::from_secs(60);

        assert!(matches!(clock.run_and_exit(Duration::from_millis(100)), Decision::Restart { .. }));
    }
}
