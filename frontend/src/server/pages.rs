//! The app's pages as the server routes them: the route list leptos
//! generates from the app, and `/`, which the server answers itself.

use std::sync::OnceLock;

use axum::Extension;
use axum::response::Redirect;
use leptos_axum::{AxumRouteListing, generate_route_list};

use crate::app::App;
use crate::people::Viewer;

/// The app's routes, generated once per process. Generating renders the app
/// with resource loading switched off by a process-wide flag (leptos#4773):
/// any page whose data starts loading meanwhile would wait forever. Once per
/// process, before the first router exists, no page can be rendering yet.
pub fn route_list() -> Vec<AxumRouteListing> {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

/// `/` is the grade book. The app's own `<Redirect>` can only answer a 200
/// with a `Location` header (a page without JavaScript stays blank), so the
/// server answers it with a real redirect; the app's route stays for the
/// client-only build.
pub async fn root(viewer: Option<Extension<Viewer>>) -> Redirect {
    // A student has one page to see: their own.
    match viewer.and_then(|Extension(v)| v.own_student()) {
        Some(id) => Redirect::to(&format!("/students/{id}")),
        None => Redirect::to("/students"),
    }
}
