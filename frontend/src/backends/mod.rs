//! What the portal talks to: the services it discovers through the
//! registry.
//!
//! - `client`: [`Backends`], the typed client of grading, the log service
//!   and the registry;
//! - `relay`: the live log tail, relayed until it goes quiet or shutdown;
//! - `answer`: how an answer is read (within a limit) and turned into data
//!   or an [`ApiError`](crate::error::ApiError).

mod answer;
mod client;
mod relay;

pub use answer::{ANSWER_LIMIT, LOG_ANSWER_LIMIT, Prefetched, human, interpret, no_student, read_body};
pub use client::Backends;
pub use relay::LogStream;
