//! `gradebook registry`'s flags, each with an environment fallback and the
//! default of the configuration it feeds.

use std::net::SocketAddr;

use clap::Args;
use gradebook_runtime::cli::{Common, defaults, display};
use serde::Serialize;

use super::Config;
use super::policy::Policy;

#[derive(Debug, Clone, PartialEq, Args, Serialize)]
pub struct RegistryArgs {
    /// Address to listen on.
    #[arg(long, env = "GRADEBOOK_REGISTRY_ADDR", default_value = defaults::REGISTRY_ADDR)]
    pub addr: SocketAddr,
    /// Time between probes of a healthy service.
    #[arg(long, env = "GRADEBOOK_PROBE_INTERVAL", default_value_t = POLICY.interval.into())]
    #[serde(serialize_with = "display")]
    pub probe_interval: humantime::Duration,
    /// Deadline of one heartbeat probe.
    #[arg(long, env = "GRADEBOOK_PROBE_TIMEOUT", default_value_t = POLICY.timeout.into())]
    #[serde(serialize_with = "display")]
    pub probe_timeout: humantime::Duration,
    /// Time between probes while a failure or recovery is being confirmed.
    #[arg(long, env = "GRADEBOOK_PROBE_RETRY_INTERVAL", default_value_t = POLICY.retry_interval.into())]
    #[serde(serialize_with = "display")]
    pub probe_retry_interval: humantime::Duration,
    /// Time between probes of a healthy service that holds a session (its
    /// crash is reported by the session; probes only catch a hang). Keep it
    /// below the services' `--reregister-after`.
    #[arg(long, env = "GRADEBOOK_SESSION_PROBE_INTERVAL", default_value_t = POLICY.session_interval.into())]
    #[serde(serialize_with = "display")]
    pub session_probe_interval: humantime::Duration,
    /// Consecutive failed probes that remove a service.
    #[arg(long, env = "GRADEBOOK_FAILURE_THRESHOLD", default_value_t = POLICY.failure_threshold, value_parser = clap::value_parser!(u32).range(1..))]
    pub failure_threshold: u32,
    /// Consecutive good probes that re-add a removed service.
    #[arg(long, env = "GRADEBOOK_RECOVERY_THRESHOLD", default_value_t = POLICY.recovery_threshold, value_parser = clap::value_parser!(u32).range(1..))]
    pub recovery_threshold: u32,
    /// How long a removed service keeps being probed before it is forgotten.
    #[arg(long, env = "GRADEBOOK_RETENTION", default_value_t = POLICY.retention.into())]
    #[serde(serialize_with = "display")]
    pub retention: humantime::Duration,
    /// After start, how long removals of not-yet-re-registered providers are held back.
    #[arg(long, env = "GRADEBOOK_WARMUP", default_value_t = POLICY.warmup.into())]
    #[serde(serialize_with = "display")]
    pub warmup: humantime::Duration,
    /// Deadline of one patch delivery.
    #[arg(long, env = "GRADEBOOK_PATCH_TIMEOUT", default_value_t = Config::default().patch_timeout.into())]
    #[serde(serialize_with = "display")]
    pub patch_timeout: humantime::Duration,
    /// Accept heartbeat/update URLs on another host than the service URL.
    #[arg(long, env = "GRADEBOOK_ALLOW_FOREIGN_URLS")]
    pub allow_foreign_urls: bool,
    /// Registrations held at most (429 beyond).
    #[arg(long, env = "GRADEBOOK_MAX_REGISTRATIONS", default_value_t = Config::default().max_registrations)]
    pub max_registrations: usize,
    /// Sessions open at most (429 beyond).
    #[arg(long, env = "GRADEBOOK_MAX_SESSIONS", default_value_t = Config::default().max_sessions)]
    pub max_sessions: usize,
    #[command(flatten)]
    #[serde(flatten)]
    pub common: Common,
}

/// The registry's documented health-check policy.
const POLICY: Policy = Policy::DEFAULT;

impl RegistryArgs {
    pub fn config(&self) -> Config {
        Config {
            policy: Policy {
                interval: self.probe_interval.into(),
                timeout: self.probe_timeout.into(),
                retry_interval: self.probe_retry_interval.into(),
                failure_threshold: self.failure_threshold,
                recovery_threshold: self.recovery_threshold,
                retention: self.retention.into(),
                warmup: self.warmup.into(),
                session_interval: self.session_probe_interval.into(),
            },
            token: self.common.token.clone(),
            credential: self.common.credential.clone(),
            metrics_token: self.common.metrics_token.clone(),
            allow_foreign_urls: self.allow_foreign_urls,
            patch_timeout: self.patch_timeout.into(),
            drain_timeout: self.common.drain_timeout.into(),
            max_registrations: self.max_registrations,
            max_sessions: self.max_sessions,
            ..Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use gradebook_runtime::cli::defaults_of;

    use super::*;

    #[test]
    fn flag_defaults_are_the_configuration_defaults() {
        let registry: RegistryArgs = defaults_of();
        let config = registry.config();
        assert_eq!(config.policy, Policy::default());
        assert_eq!(config.patch_timeout, Config::default().patch_timeout);
    }
}
