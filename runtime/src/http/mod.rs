//! HTTP plumbing every service shares:
//!
//! - [`json`]: the one JSON error shape, a JSON extractor whose rejections
//!   are JSON too;
//! - [`finish`]: the finishing layer of every router (JSON 404/405, body
//!   limit, JSON error bodies, request span, per-route metrics);
//! - [`token`]: the gate that requires a credential and applies a policy;
//! - [`client`]: outbound clients with deadlines, and why a call failed;
//! - [`drain`]: graceful shutdown with a deadline.

mod client;
mod drain;
mod finish;
mod json;
mod oversized;
mod token;

pub use client::{bearer, client, describe, open_ended_client, unredirected_client};
pub use drain::drained_within;
pub use finish::{finish_api, finish_router, untraced};
pub use json::{ApiJson, AsIs, JsonError, error, error_response};
pub use token::{METRICS_PATH, OPEN_PATHS, caller, guard_metrics, parse_token, require_credential};

#[cfg(test)]
mod tests;
