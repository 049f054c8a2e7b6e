//! Who may call the registry: any service of the cluster (each then acts
//! only under its own name, which the handlers hold it to).

use axum::http::Method;
use gradebook_runtime::credential::Caller;

/// Any verified caller may register, deregister, hold a session and read
/// the lists; the handlers hold a registration to the caller's own name.
pub fn any_service(_caller: &Caller, _method: &Method, _path: &str) -> bool {
    true
}
