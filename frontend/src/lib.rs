//! The portal: Gradebook's web app. One crate, three builds:
//! `ssr` (the portal server: leptos_axum rendering, the JSON API forwarding to
//! the services it discovers), `hydrate` (the WebAssembly client that takes
//! over the server-rendered page) and `csr` (a client-only build for
//! `trunk serve`).

pub mod api;
pub mod app;
#[cfg(feature = "ssr")]
mod page_cache;
mod pages;
#[cfg(feature = "ssr")]
pub mod server;

/// Entry point of the `hydrate` build, called by the page's script.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
    // Lets tests (and the curious) see that the client has taken over.
    if let Some(body) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.body()) {
        let _ = body.set_attribute("data-hydrated", "");
    }
}
