//! The open/closed setting: without a cluster token the portal is open (no
//! sign-in); with one it is closed, and the cookie key is derived from the
//! token. [`Security`] carries the setting with what a closed portal needs
//! beside it: the idle timeout, the sign-in limits and the answer caches.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum_extra::extract::cookie::Key;

use super::answers::Answers;
use super::limits::{Attempt, SignInLimits};

/// How long a session may go unused by default.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(30 * 60);
/// The least cluster token a closed portal derives its cookie key from
/// (`Key::derive_from` needs 32 bytes of input).
pub const MIN_TOKEN_BYTES: usize = 32;

/// The portal's people-facing security: open, or closed with the cookie key,
/// the sign-in rate limits and short caches of grading's answers. Cheap to
/// clone.
#[derive(Clone)]
pub struct Security {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None`: open mode.
    key: Option<Key>,
    idle: Duration,
    limits: SignInLimits,
    answers: Answers,
}

impl Default for Security {
    fn default() -> Self {
        Self::open()
    }
}

impl Security {
    /// No cluster token: no sign-in.
    pub fn open() -> Self {
        Self::build(None, DEFAULT_IDLE)
    }

    /// Closed with `token`, sessions ending after `idle` unused. Refuses a
    /// token too short to derive the cookie key from.
    pub fn closed(token: &str, idle: Duration) -> Result<Self, String> {
        if token.len() < MIN_TOKEN_BYTES {
            return Err(format!(
                "the cluster token is {} bytes; the portal needs at least {MIN_TOKEN_BYTES} to derive its session key \
                 from it (for example: openssl rand -hex 32)",
                token.len()
            ));
        }
        Ok(Self::build(Some(Key::derive_from(token.as_bytes())), idle))
    }

    /// Open without a token, closed with one.
    pub fn new(token: Option<&str>, idle: Duration) -> Result<Self, String> {
        match token {
            Some(token) => Self::closed(token, idle),
            None => Ok(Self::open()),
        }
    }

    fn build(key: Option<Key>, idle: Duration) -> Self {
        Self { inner: Arc::new(Inner { key, idle, limits: SignInLimits::default(), answers: Answers::default() }) }
    }

    pub fn is_open(&self) -> bool {
        self.inner.key.is_none()
    }

    /// The cookie key of a closed portal; `None` when it is open.
    pub(super) fn key(&self) -> Option<Key> {
        self.inner.key.clone()
    }

    /// How long a session may go unused.
    pub(super) fn idle(&self) -> Duration {
        self.inner.idle
    }

    pub(super) fn limits(&self) -> &SignInLimits {
        &self.inner.limits
    }

    pub(super) fn answers(&self) -> &Answers {
        &self.inner.answers
    }

    /// A sign-in as `name` from `address`, if one may be tried now (see
    /// [`SignInLimits::may_try`]).
    pub(super) fn may_try(&self, name: &str, address: Option<IpAddr>) -> Option<Attempt<'_>> {
        self.inner.limits.may_try(name, address)
    }
}
