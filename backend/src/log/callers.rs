//! Who may call the log service: every service ships its records to it;
//! only the portal (and the operator) reads them; the registry posts patches.

use axum::http::Method;
use gradebook_runtime::credential::{Caller, allow_only_registry_patches};
use gradebook_shared::names;

pub fn may_call(caller: &Caller, method: &Method, path: &str) -> bool {
    allow_only_registry_patches(caller, method, path)
        || (method == Method::POST && path == "/log")
        || (caller.0 == names::PORTAL && method == Method::GET && (path == "/log" || path.starts_with("/log/")))
}
