//! The portal: Gradebook's web app. One crate, three builds:
//! `ssr` (the portal server: leptos_axum rendering, the JSON API forwarding to
//! the services it discovers), `hydrate` (the WebAssembly client that takes
//! over the server-rendered page) and `csr` (a client-only build for
//! `trunk serve`).
//!
//! Modules, from the top down (each uses only those below it):
//! - `server` (server): the router and `serve`, the API and form handlers,
//!   the pages' HTML error answers;
//! - `state` (server): [`state::AppState`], the one application state;
//! - `auth` (server): sign-in, sessions, roles, CSRF, failure limits;
//! - `standalone` (server): the error and sign-in pages, as Leptos
//!   components outside the app;
//! - `page_cache` (server): grading's answers and the pages made of them,
//!   kept while grading says nothing changed;
//! - `freshness` (server): grading's change feeds;
//! - `app`: the app's shell, layout and routes, and `pages`, its pages;
//! - `api`: where a page's data comes from (the services on the server,
//!   the portal's JSON API in the browser);
//! - `backends` (server): the typed client of the services;
//! - `people`: accounts and the viewer a page is rendered for;
//! - `ids`, `encoding`, `error`: leaves (student IDs, percent-encoding,
//!   the one error type).

pub mod api;
pub mod app;
#[cfg(feature = "ssr")]
pub mod auth;
#[cfg(feature = "ssr")]
pub mod backends;
pub mod encoding;
pub mod error;
#[cfg(feature = "ssr")]
mod freshness;
pub mod ids;
#[cfg(feature = "ssr")]
mod page_cache;
mod pages;
pub mod people;
#[cfg(feature = "ssr")]
pub mod server;
#[cfg(feature = "ssr")]
mod standalone;
#[cfg(feature = "ssr")]
pub mod state;

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
