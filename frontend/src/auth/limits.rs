//! Failure limits on sign-in: failed sign-ins counted per account name and
//! per client address (governor's keyed GCRA limiter), keys whose allowance
//! is used up (a moka cache that forgets them when it comes back), and one
//! sign-in at a time per name and address.

use std::collections::HashSet;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use parking_lot::Mutex;

/// Failed sign-ins per account name, and per client address, a minute.
pub const SIGNIN_FAILURES_PER_MINUTE: u32 = 5;
/// Keys kept in each limiter; past that the oldest go (each costs an
/// attempt that is not refused, nothing more).
const KEYS: u64 = 10_000;

/// The limits of one portal's sign-ins.
pub struct SignInLimits {
    pub by_name: Failures<String>,
    pub by_address: Failures<IpAddr>,
    /// Names and addresses with a sign-in being checked right now: one at a
    /// time each, or concurrent guesses would all pass the failure limit
    /// before any of them is counted.
    in_flight: Mutex<HashSet<String>>,
}

impl Default for SignInLimits {
    fn default() -> Self {
        Self {
            by_name: Failures::per_minute(SIGNIN_FAILURES_PER_MINUTE),
            by_address: Failures::per_minute(SIGNIN_FAILURES_PER_MINUTE),
            in_flight: Mutex::default(),
        }
    }
}

/// A sign-in being checked, for its name and address; ends on drop.
pub struct Attempt<'a> {
    limits: &'a SignInLimits,
    keys: Vec<String>,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.limits.in_flight.lock();
        for key in &self.keys {
            in_flight.remove(key);
        }
    }
}

impl SignInLimits {
    /// A sign-in as `name` from `address`, if one may be tried now: not when
    /// either has used up its failures, nor while another attempt for either
    /// is being checked. Asked before the password is checked, so a refused
    /// attempt costs grading nothing and tells nothing.
    pub fn may_try(&self, name: &str, address: Option<IpAddr>) -> Option<Attempt<'_>> {
        if self.by_name.spent(&limit_key(name)) || address.is_some_and(|a| self.by_address.spent(&a)) {
            return None;
        }
        let keys: Vec<String> = std::iter::once(format!("name {}", limit_key(name)))
            .chain(address.map(|a| format!("address {a}")))
            .collect();
        let mut in_flight = self.in_flight.lock();
        if keys.iter().any(|k| in_flight.contains(k)) {
            return None;
        }
        in_flight.extend(keys.iter().cloned());
        drop(in_flight);
        Some(Attempt { limits: self, keys })
    }

    /// Counts a failed sign-in against the name and the address.
    pub fn failed(&self, name: &str, address: Option<IpAddr>) {
        self.by_name.count(limit_key(name));
        if let Some(address) = address {
            self.by_address.count(address);
        }
    }
}

/// Names are short; a long one is cut so a key cannot grow without bound.
pub fn limit_key(name: &str) -> String {
    name.chars().take(64).collect::<String>().to_lowercase()
}

/// Failed sign-ins per key, as governor's keyed GCRA limiter counts them
/// (a burst of `n`, then one more every minute / `n`). Only failures are
/// counted, so people signing in from one school network do not use up
/// each other's allowance; a key whose allowance a failure has just used up
/// is marked spent until the next one comes, so the attempt after it is
/// refused without checking its password.
pub struct Failures<K: Hash + Eq + Clone + Send + Sync + 'static> {
    cells: DefaultKeyedRateLimiter<K, StateInformationMiddleware>,
    /// The keys marked spent, each forgotten once one failure's allowance
    /// has come back.
    spent: Cache<K, ()>,
}

impl<K: Hash + Eq + Clone + Send + Sync + 'static> Failures<K> {
    fn per_minute(n: u32) -> Self {
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let replenish = Duration::from_secs(60) / n.get();
        Self {
            cells: RateLimiter::keyed(Quota::per_minute(n)).with_middleware(),
            spent: Cache::builder()
                .max_capacity(KEYS)
                .time_to_live(replenish)
                // A key just spent is always kept: the oldest goes instead.
                .eviction_policy(EvictionPolicy::lru())
                .build(),
        }
    }

    pub fn spent(&self, key: &K) -> bool {
        self.spent.contains_key(key)
    }

    pub fn count(&self, key: K) {
        let used_up = match self.cells.check_key(&key) {
            Ok(state) => state.remaining_burst_capacity() == 0,
            Err(_) => true,
        };
        if used_up {
            self.spent.insert(key, ());
        }
        // Forgets the allowances that are whole again, so the map stays small.
        if self.cells.len() > KEYS as usize {
            self.cells.retain_recent();
        }
    }
}
