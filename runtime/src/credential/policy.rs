//! Which caller may call which route of a service: a service's policy, and
//! the pieces every policy shares. Default deny: a policy says yes only to
//! what it names.

use axum::http::Method;

use super::{Caller, REGISTRY};
use crate::service::UPDATE_PATH;

/// Whether `caller` may send `method path` to this service.
pub type Policy = fn(caller: &Caller, method: &Method, path: &str) -> bool;

/// The runtime's own routes: only the registry posts patches; the operator
/// may call anything. Everything else is refused.
pub fn allow_only_registry_patches(caller: &Caller, _method: &Method, path: &str) -> bool {
    caller.is_operator() || (path == UPDATE_PATH && caller.0 == REGISTRY)
}

/// Paths anyone may call even when the cluster is closed: liveness, which
/// says nothing private.
pub fn open_heartbeat_paths() -> &'static [&'static str] {
    &["/heartbeat", "/healthz"]
}
