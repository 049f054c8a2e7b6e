//! Short caches of grading's answers about accounts and personal API
//! tokens (moka, bounded, entries expiring): asked at most once per time to
//! live, and standing in for a while when grading cannot be reached.

use std::future::Future;
use std::time::{Duration, Instant};

use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use crate::backends::Backends;
use crate::error::ApiError;
use crate::people::Account;

/// How long an account's answer from grading is trusted: a changed password
/// or a removed account ends its sessions within this.
pub const ACCOUNT_TTL: Duration = Duration::from_secs(2);
/// How long a personal API token's answer from grading is trusted.
pub const API_TOKEN_TTL: Duration = Duration::from_secs(5);
/// While grading cannot be reached, its last answer about an account or an
/// API token stands for this long: the rest of the portal (the services and
/// logs pages) keeps working, and grades cannot change meanwhile anyway.
const STALE_LIMIT: Duration = Duration::from_secs(5 * 60);
/// Entries kept in each answer cache; past that the oldest go (each entry
/// costs a question to grading, nothing more).
const CACHE_ENTRIES: u64 = 10_000;

/// An answer and when grading gave it.
type Answer = (Instant, Option<Account>);

/// Grading's answers, by account name and by API token.
pub struct Answers {
    accounts: Cache<String, Answer>,
    api_tokens: Cache<String, Answer>,
}

fn cache() -> Cache<String, Answer> {
    Cache::builder()
        .max_capacity(CACHE_ENTRIES)
        .time_to_live(STALE_LIMIT)
        .eviction_policy(EvictionPolicy::lru())
        .build()
}

impl Default for Answers {
    fn default() -> Self {
        Self { accounts: cache(), api_tokens: cache() }
    }
}

impl Answers {
    /// Grading's account `name`, asked at most every [`ACCOUNT_TTL`].
    pub async fn account(&self, b: &Backends, name: &str) -> Result<Option<Account>, ApiError> {
        cached(&self.accounts, name, ACCOUNT_TTL, b.account(name)).await
    }

    /// The account a personal API token belongs to, asked at most every
    /// [`API_TOKEN_TTL`].
    pub async fn api_token(&self, b: &Backends, token: &str) -> Result<Option<Account>, ApiError> {
        cached(&self.api_tokens, token, API_TOKEN_TTL, b.verify_token(token)).await
    }

    /// Grading's freshest word on `account`, just heard another way (a
    /// sign-in): the next page need not ask.
    pub fn remember(&self, account: &Account) {
        self.accounts.insert(account.name.clone(), (Instant::now(), Some(account.clone())));
    }
}

fn fresh(cache: &Cache<String, Answer>, key: &str, ttl: Duration) -> Option<Option<Account>> {
    cache.get(key).filter(|(at, _)| at.elapsed() < ttl).map(|(_, account)| account)
}

/// Grading's answer for `key`: kept for `ttl`, else asked (`ask` is only
/// polled then) and kept; while grading is unavailable, a kept answer up to
/// [`STALE_LIMIT`] old stands in.
async fn cached(
    cache: &Cache<String, Answer>,
    key: &str,
    ttl: Duration,
    ask: impl Future<Output = Result<Option<Account>, ApiError>>,
) -> Result<Option<Account>, ApiError> {
    if let Some(known) = fresh(cache, key, ttl) {
        return Ok(known);
    }
    match ask.await {
        Ok(answer) => {
            cache.insert(key.to_owned(), (Instant::now(), answer.clone()));
            Ok(answer)
        }
        Err(e) if e.status == 503 => fresh(cache, key, STALE_LIMIT).ok_or(e),
        Err(e) => Err(e),
    }
}
