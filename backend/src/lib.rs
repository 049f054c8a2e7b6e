//! Gradebook's backend: the registry, the services and the runtime they
//! share. Each service is a module with `router(state) -> Router` and
//! `serve(listener, state, shutdown)`; the `gradebook` binary only parses
//! configuration (see [`cli`]) and calls them.

pub mod cli;
pub mod grading;
pub mod http;
pub mod log;
pub mod metrics;
pub mod registry;
pub mod runtime;
pub mod telemetry;
pub mod up;
