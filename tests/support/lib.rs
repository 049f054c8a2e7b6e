//! Helpers for the system tests (`tests/system`):
//!
//! - [`servers`]: registries and services on real sockets (port 0), each on
//!   its own tokio runtime ([`isolated`]) so it can be crashed like a killed
//!   process;
//! - [`ports`]: sockets bound ahead, free ports for child processes, stand-ins;
//! - [`wait`]: conditions awaited with a deadline;
//! - [`env`]: CI, a throwaway PostgreSQL, temporary folders;
//! - [`plain`]: a client that speaks only the original protocol;
//! - [`process`]: real processes of the `gradebook` binary, and signals;
//! - [`structure`]: the import graph between a crate's files.

pub mod env;
mod isolated;
pub mod plain;
pub mod ports;
pub mod process;
pub mod servers;
pub mod structure;
pub mod wait;

pub use env::{TempDir, in_ci, postgres_database, skip};
pub use ports::{Bind, Reserved, free_port, serve_app};
pub use servers::{TestGrading, TestLog, TestRegistry, TestService, spec};
pub use wait::{eventually, eventually_async};
