//! The registry's health-check policy: how often services are probed, how
//! many failures remove one and how many good probes bring it back, how long
//! a removed one is remembered, and the warm-up after start.

use std::time::Duration;

/// How health checks behave. Defaults are the documented ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Time between probes of a healthy service.
    pub interval: Duration,
    /// Deadline of one probe.
    pub timeout: Duration,
    /// Time between probes while a failure or a recovery is being confirmed.
    pub retry_interval: Duration,
    /// Consecutive failed probes that make a passing service critical.
    pub failure_threshold: u32,
    /// Consecutive good probes that make a critical service passing again.
    pub recovery_threshold: u32,
    /// How long a critical service keeps being probed before it is forgotten.
    pub retention: Duration,
    /// After start, removals of providers the registry has not heard of yet
    /// are held back this long, so its own empty state is never pushed.
    pub warmup: Duration,
    /// Time between probes of a healthy service that holds a session. Its
    /// crash is reported by the session at once, so probes only have to
    /// catch a hang, and can come less often (never more often than
    /// `interval`).
    pub session_interval: Duration,
}

impl Policy {
    /// The documented defaults (the flags of `gradebook registry` read them here).
    pub const DEFAULT: Policy = Policy {
        interval: Duration::from_millis(500),
        timeout: Duration::from_millis(500),
        retry_interval: Duration::from_millis(100),
        failure_threshold: 3,
        recovery_threshold: 2,
        retention: Duration::from_secs(60),
        warmup: Duration::from_secs(2),
        session_interval: Duration::from_secs(2),
    };
}

impl Default for Policy {
    fn default() -> Self {
        Self::DEFAULT
    }
}
