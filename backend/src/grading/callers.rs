//! Who may call grading: the portal (and the operator) reads and changes
//! grades and checks passwords; the registry only posts patches. Any other
//! service, the log service included, is refused.

use axum::http::Method;
use gradebook_runtime::credential::{Caller, allow_only_registry_patches};
use gradebook_shared::names;

pub fn may_call(caller: &Caller, method: &Method, path: &str) -> bool {
    allow_only_registry_patches(caller, method, path)
        || (caller.0 == names::PORTAL && path != gradebook_runtime::UPDATE_PATH)
}
