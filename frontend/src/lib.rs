//! The portal: Gradebook's web app. One crate, three builds:
//! `ssr` (the portal server: leptos_axum rendering, the JSON API forwarding to
//! the services it discovers), `hydrate` (the WebAssembly client that takes
//! over the server-rendered page) and `csr` (a client-only build for
//! `trunk serve`).
//!
//! Inside, dependencies point one way: `server` (routes, handlers) → `app`
//! (shell, routes) → `pages` → `api` (where a page's data comes from) and
//! `page_cache` → `freshness` (grading's change feeds) and `backends` (the
//! typed client of the services) → `error`.
//! `auth` (sign-in, sessions, roles, CSRF) sits between `server` and the
//! rest: every request passes it, and pages read who they are rendered for
//! from `people::Viewer`.

pub mod api;
pub mod app;
#[cfg(feature = "ssr")]
pub mod auth;
#[cfg(feature = "ssr")]
pub mod backends;
pub mod error;
#[cfg(feature = "ssr")]
mod freshness;
#[cfg(feature = "ssr")]
mod page_cache;
mod pages;
pub mod people;
#[cfg(feature = "ssr")]
pub mod server;

/// Entry point of the `hydrate` build, called by the page's script before it
/// hydrates the page's islands (the only interactive parts; the rest of each
/// page stays as the server rendered it).
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    // Sets up the executor and the root owner the islands hydrate under.
    leptos::mount::hydrate_islands();
    // The script hydrates the islands right after this returns, within the
    // same task; a timer lets tests (and the curious) see when that is done.
    gloo_timers::callback::Timeout::new(0, || {
        if let Some(body) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.body()) {
            let _ = body.set_attribute("data-hydrated", "");
        }
    })
    .forget();
}
