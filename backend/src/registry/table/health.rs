//! The health of each registration: probes and sessions recorded, the
//! changes they cause (removed, recovered, forgotten), and when its prober
//! probes next.

use std::time::{Duration, SystemTime};

use gradebook_shared::registry::HealthState;
use tokio::time::Instant;

use super::{Entry, Table};

/// A change in whether a service is handed out, with why.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// `silent_for`: since it was last known alive, i.e. how long the
    /// failure took to detect (at most).
    Removed {
        name: String,
        cause: String,
        silent_for: Duration,
    },
    Recovered {
        name: String,
    },
    /// Critical for longer than the retention: no longer probed or listed.
    Forgotten {
        name: String,
    },
}

impl Table {
    /// How long the prober of `url` waits before its next probe (the tests'
    /// view of [`Table::probe_delay`]).
    #[cfg(test)]
    pub fn next_probe_delay(&self, url: &str) -> Option<Duration> {
        self.entries.get(url).map(|e| self.probe_delay(e))
    }

    /// How long the prober of `e` waits before its next probe.
    pub fn probe_delay(&self, e: &Entry) -> Duration {
        let confirming = match e.state {
            HealthState::Passing => e.failures > 0 || e.suspect,
            HealthState::Critical => e.successes > 0,
        };
        if confirming {
            self.policy.retry_interval
        } else if e.sessions > 0 && e.state == HealthState::Passing {
            self.policy.interval.max(self.policy.session_interval)
        } else {
            self.policy.interval
        }
    }

    pub fn session_opened(&mut self, url: &str) {
        if let Some(e) = self.entries.get_mut(url) {
            e.sessions += 1;
        }
    }

    /// A session of registration `generation` closed; `lost` when its
    /// connection dropped (the service may have crashed) rather than being
    /// ended by us. Returns true when the service should be probed at once.
    /// Sessions of a registration since replaced were ended with it and no
    /// longer count.
    pub fn session_closed(&mut self, url: &str, generation: u64, lost: bool) -> bool {
        let Some(e) = self.entries.get_mut(url).filter(|e| e.generation == generation) else { return false };
        e.sessions = e.sessions.saturating_sub(1);
        e.suspect |= lost && e.sessions == 0;
        e.suspect
    }

    /// Records a probe of `url`, returning the change it causes, if any.
    pub fn probe_result(
        &mut self,
        url: &str,
        generation: u64,
        outcome: Result<Duration, String>,
        now: Instant,
    ) -> Option<Transition> {
        let policy = &self.policy;
        let e = self.entries.get_mut(url).filter(|e| e.generation == generation)?;
        e.last_probe = Some((SystemTime::now(), now));
        match outcome {
            Ok(latency) => {
                e.latency = Some(latency);
                e.last_ok = now;
                e.failures = 0;
                e.suspect = false;
                e.last_error = None;
                if e.state == HealthState::Critical {
                    e.successes += 1;
                    if e.successes >= policy.recovery_threshold {
                        e.state = HealthState::Passing;
                        e.critical_since = None;
                        e.successes = 0;
                        self.critical -= 1;
                        return Some(Transition::Recovered { name: e.reg.service_name.clone() });
                    }
                }
                None
            }
            Err(err) => {
                e.latency = None;
                e.successes = 0;
                e.failures = e.failures.saturating_add(1);
                e.last_error = Some(err.clone());
                match e.state {
                    HealthState::Passing if e.suspect || e.failures >= policy.failure_threshold => {
                        let cause = if e.suspect {
                            format!("session lost and heartbeat probe failed: {err}")
                        } else {
                            format!("{} consecutive failed heartbeat probes, last: {err}", e.failures)
                        };
                        e.state = HealthState::Critical;
                        e.critical_since = Some(now);
                        e.suspect = false;
                        self.critical += 1;
                        let name = e.reg.service_name.clone();
                        Some(Transition::Removed { name, cause, silent_for: now.duration_since(e.last_ok) })
                    }
                    HealthState::Critical
                        if e.critical_since.is_some_and(|t| now.duration_since(t) >= policy.retention) =>
                    {
                        let name = e.reg.service_name.clone();
                        self.remove(url);
                        Some(Transition::Forgotten { name })
                    }
                    _ => None,
                }
            }
        }
    }
}
