//! Gradebook's services: the registry, the log service and the grading
//! service, each a module with `router(state) -> Router` and
//! `serve(listener, state, shutdown)`, standing on `gradebook_runtime`. The
//! `gradebook` binary only parses configuration ([`cli`]) and calls them;
//! [`up`] runs the whole system as separate processes.

pub mod accounts;
pub mod cli;
pub mod db;
pub mod grading;
pub mod log;
pub mod registry;
pub mod stub;
pub mod up;
