//! The portal's integration tests, one binary: the portal in-process
//! (`oneshot`) against the stand-in services of `support`.
//!
//! - `api`: the JSON API's reads of grading, grading's bytes passed on;
//! - `freshness`: following grading's change feed;
//! - `hostile`: every route tried with hostile input;
//! - `support`: the stand-in services and the portals the tests run.
#![cfg(feature = "ssr")]

mod api;
mod freshness;
mod hostile;
mod logs_paging;
mod support;
