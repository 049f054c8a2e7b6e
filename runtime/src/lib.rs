//! What every Gradebook process stands on — the three services in `backend`
//! and the portal in `frontend` alike:
//!
//! - [`service`]: registration, the session with the registry, the provider
//!   cache fed by patches, calls to providers with failover, and a `serve`
//!   that deregisters and drains on shutdown;
//! - [`logship`]: shipping the process's `tracing` events to the log service;
//! - [`http`]: JSON errors and extractors, router finishing layers, outbound
//!   clients with deadlines;
//! - [`metrics`] and [`telemetry`]: Prometheus metrics and console logging;
//! - [`cli`]: the command-line arguments every process shares, and rendering
//!   typed arguments back to a command line (for `gradebook up`);
//! - [`backoff`]: the delays between tries of every retry loop;
//! - [`signal`] and [`time`]: SIGINT/SIGTERM handling and timestamps.
//!
//! Dependencies point one way: `gradebook-shared` ← this crate ← services and
//! portal. Nothing here knows any particular service.

pub mod backoff;
pub mod cli;
pub mod credential;
pub mod http;
pub mod logship;
pub mod metrics;
mod providers;
pub mod service;
pub mod signal;
pub mod telemetry;
pub mod time;

pub use providers::{NoProvider, Providers};
pub use service::{CallError, HEARTBEAT_PATH, Runtime, ServiceSpec, UPDATE_PATH, serve};
