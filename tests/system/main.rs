//! The system tests, in one binary: real registries, services and processes on
//! real sockets. Each module is one part of the system, tried as its users and
//! its bad luck would; the shared set-up is the `gradebook_tests` library
//! (`tests/support/`).
//!
//! - [`registry`]: registration, pushed discovery, health checks, crash and recovery;
//! - [`log`]: the central log service and log shipping;
//! - [`log_durability`]: the log read back by cursor and export, and a full disk;
//! - [`grading`]: the grading API, its validation and its durability;
//! - [`accounts`]: the `accounts` commands and the sign-in endpoints;
//! - [`oversized`]: a body over the limit, sent whole, on every service;
//! - [`original`]: our services against answers measured on the original Go program;
//! - [`hostile`]: every route tried the way a hostile or careless client would;
//! - [`robustness`]: bad luck and strangers against a running system;
//! - [`drills`]: failure drills across real processes;
//! - [`up`]: `gradebook up` as a real process;
//! - [`trust`]: least privilege: what probes carry, what a credential opens;
//! - [`structure`]: the code's shape: no import circle between files.

mod accounts;
mod drills;
mod grading;
mod hostile;
mod log;
mod log_durability;
mod original;
mod oversized;
mod registry;
mod robustness;
mod structure;
mod trust;
mod up;
