//! Gradebook's services: the registry, the log service and the grading
//! service, each a module with `router(state) -> Router` and
//! `serve(listener, state, shutdown)`, standing on `gradebook_runtime`. The
//! `gradebook` binary only parses configuration ([`cli`]) and calls them;
//! [`up`] runs the whole system as separate processes.
//!
//! - [`registry`]: registration, pushed discovery and health checks;
//! - [`log`]: the central log service;
//! - [`grading`]: students and grades, persisted, and the change feed;
//! - [`accounts`]: the portal's accounts, stored beside the grades;
//! - [`db`]: the database grading and the accounts share (SQLite or
//!   PostgreSQL), which knows neither of them;
//! - [`stub`]: a service that only registers (for tests and benchmarks);
//! - [`up`]: the whole system as supervised processes;
//! - [`credential_cli`]: a hand-run service's own credential, from the master secret;
//! - [`cli`]: the `gradebook` command, which only dispatches; each service's
//!   flags live beside it (`registry::args`, `log::args`, ...).

pub mod accounts;
pub mod cli;
pub mod credential_cli;
pub mod db;
pub mod grading;
pub mod log;
pub mod registry;
pub mod stub;
pub mod up;
