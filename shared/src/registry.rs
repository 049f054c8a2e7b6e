//! The registry's wire protocol: registrations, patches and status listings.

use serde::{Deserialize, Serialize};

use crate::null_as_default;

/// `POST /services` body. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    #[serde(rename = "ServiceName")]
    pub service_name: String,
    #[serde(rename = "ServiceURL")]
    pub service_url: String,
    #[serde(rename = "RequiredServices", default, deserialize_with = "null_as_default")]
    pub required_services: Vec<String>,
    /// Where patches are POSTed. May be empty when nothing is required.
    #[serde(rename = "ServiceUpdateURL", default, deserialize_with = "null_as_default")]
    pub service_update_url: String,
    #[serde(rename = "HeartbeatURL")]
    pub heartbeat_url: String,
    /// Extension: the providers this service already knows (when it registers
    /// again, e.g. after a registry restart). The registry diffs against them,
    /// so stale ones are removed without ever emptying a warm cache.
    #[serde(
        rename = "KnownProviders",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub known_providers: Vec<PatchEntry>,
}

/// One provider: a service name and the URL it serves at.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PatchEntry {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "URL")]
    pub url: String,
}

impl PatchEntry {
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self { name: name.into(), url: url.into() }
    }
}

/// A change in the providers of the services someone requires. Pushed to
/// `ServiceUpdateURL`, and also the body of a successful registration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patch {
    #[serde(rename = "Added", default, deserialize_with = "null_as_default")]
    pub added: Vec<PatchEntry>,
    #[serde(rename = "Removed", default, deserialize_with = "null_as_default")]
    pub removed: Vec<PatchEntry>,
}

/// A patch as the registry pushes it: with a sequence number (an extension
/// that clients of the original ignore), increasing across everything one
/// registry sends and across its restarts, so a dependent can drop a patch
/// that arrives after a newer one (a delivery that timed out, say, but
/// still landed later).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedPatch {
    #[serde(flatten)]
    pub patch: Patch,
    #[serde(rename = "Seq", default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

impl Patch {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// Health of a registration as the registry sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Healthy: handed out to dependents.
    Passing,
    /// Failed its health checks: withheld from dependents, still probed for a
    /// while in case it recovers.
    Critical,
}

/// One row of `GET /services`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    #[serde(rename = "ServiceName")]
    pub service_name: String,
    #[serde(rename = "ServiceURL")]
    pub service_url: String,
    #[serde(rename = "RequiredServices")]
    pub required_services: Vec<String>,
    #[serde(rename = "HeartbeatURL")]
    pub heartbeat_url: String,
    #[serde(rename = "ServiceUpdateURL")]
    pub service_update_url: String,
    #[serde(rename = "State")]
    pub state: HealthState,
    /// RFC 3339 time of the last completed probe.
    #[serde(rename = "LastProbe")]
    pub last_probe: Option<String>,
    /// Milliseconds since the last completed probe.
    #[serde(rename = "LastProbeAgeMs")]
    pub last_probe_age_ms: Option<u64>,
    /// Round trip of the last probe, in milliseconds.
    #[serde(rename = "LatencyMs")]
    pub latency_ms: Option<f64>,
    #[serde(rename = "ConsecutiveFailures")]
    pub consecutive_failures: u32,
    /// RFC 3339 time of the (latest) registration.
    #[serde(rename = "RegisteredAt")]
    pub registered_at: String,
    /// Whether the service holds a session connection to the registry.
    #[serde(rename = "Session")]
    pub session: bool,
}

/// Our registry's sessions (an extension; see the registry's `POST
/// /sessions`): asked for with `Upgrade: gradebook-session`, then held off
/// HTTP until one side closes. The registry writes one of these lines before
/// it closes a session itself.
pub mod session {
    pub const PROTOCOL: &str = "gradebook-session";
    /// The registration is gone or replaced: register again.
    pub const ENDED: &[u8] = b"ended\n";
    /// The registry is stopping.
    pub const SHUTDOWN: &[u8] = b"shutdown\n";
}
