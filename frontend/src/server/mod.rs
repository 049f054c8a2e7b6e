//! The portal server: renders pages (leptos_axum), answers the JSON API by
//! forwarding to the services it discovers through the registry, takes the
//! no-JavaScript form post, and registers as `Portal`.
//!
//! - `api`: the JSON API's handlers that forward to the services;
//! - `form`: the add-grade form posted without JavaScript;
//! - `pages`: the app's route list and `/`;
//! - `errors`: the pages' error answers as HTML pages.
//!
//! [`router`] puts them together with `auth` and `page_cache`, around the
//! one [`AppState`].

mod api;
mod errors;
mod form;
mod pages;

use std::sync::Arc;

use axum::Router;
use axum::routing::{any, get, post};
use gradebook_runtime::Runtime;
use leptos::prelude::*;
use leptos_axum::LeptosRoutes;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::shell;
use crate::auth::{self, Gate, Security, SignIn};
use crate::backends::Backends;
use crate::error::ApiError;
use crate::page_cache;
use crate::state::AppState;

/// Most of a request body the API and the form post read.
const BODY_LIMIT: usize = 64 * 1024;

/// The whole portal: API, form handler, pages and the site's static files.
pub fn router(options: LeptosOptions, state: AppState) -> Router {
    let services = state.services.clone();
    // Pages and grading's answers through the API, within one budget.
    let from_grading = Router::new()
        .route("/api/students", get(page_cache::api_students))
        .route("/api/students/{id}", get(page_cache::api_student))
        .with_state(state.pages.clone());
    let api = Router::new()
        .route("/api/students/{id}/grades", post(api::add_grade))
        .route("/api/services", get(api::services))
        .route("/api/logs", get(api::logs))
        .route("/api/logs/stream", get(api::log_stream))
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/{*rest}", any(|| async { ApiError::new(404, "no such endpoint") }))
        .with_state(services.clone())
        .merge(from_grading);
    let gate = Arc::new(Gate {
        security: state.security.clone(),
        backends: services.clone(),
        static_prefix: format!("/{}/", options.site_pkg_dir),
    });
    // `/` is answered by `pages::root`, not by the app.
    let routes = pages::route_list().into_iter().filter(|r| r.path() != "/").collect::<Vec<_>>();
    let app_pages = Router::new()
        .route("/", get(pages::root))
        .leptos_routes_with_context(
            &options,
            routes,
            {
                let services = services.clone();
                move || provide_context(services.clone())
            },
            {
                let options = options.clone();
                move || shell(options.clone())
            },
        )
        .fallback(leptos_axum::file_and_error_handler(shell))
        .with_state(options.clone())
        .layer(axum::middleware::from_fn_with_state(state.pages.clone(), page_cache::serve_cached));
    // `auth` runs inside `html_errors`, so its refusals of pages become
    // HTML pages and its viewer reaches the error pages. The API's errors
    // stay JSON: it is not behind `html_errors` at all.
    let api = gradebook_runtime::http::finish_api(api, BODY_LIMIT)
        .layer(axum::middleware::from_fn_with_state(gate.clone(), auth::authenticate));
    // The form post without JavaScript answers a person: HTML errors too.
    let form = Router::new().route("/students/{id}/grades", post(form::add_grade)).with_state(services.clone());
    let form = gradebook_runtime::http::finish_api(form, BODY_LIMIT);
    let sign_in = SignIn { security: state.security, backends: services, options: options.clone() };
    let app_pages = app_pages
        .merge(form)
        .merge(auth::routes(sign_in))
        .layer(axum::middleware::from_fn_with_state(gate, auth::authenticate))
        .layer(axum::middleware::from_fn_with_state(Arc::new(options), errors::html_errors));
    api.merge(app_pages)
}

/// Serves the portal, registered as `Portal`, until `shutdown`; open or
/// closed to people as `security` says.
pub async fn serve(
    listener: TcpListener,
    runtime: Runtime,
    options: LeptosOptions,
    registry_url: String,
    security: Security,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let services = Backends::new(runtime.clone(), registry_url).with_shutdown(shutdown.clone());
    let state = AppState::new(services, security);
    state.follow_changes();
    gradebook_runtime::serve(listener, runtime, router(options, state), shutdown).await
}

#[cfg(test)]
mod tests;
