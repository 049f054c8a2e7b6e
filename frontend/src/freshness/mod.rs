//! Whether what the portal kept of grading's answers is still current,
//! without asking grading: the portal subscribes to every grading
//! instance's change feed (the protocol is in
//! [`gradebook_shared::grading::changes`]), and grading answers a write
//! only once its subscribers have heard of it.
//!
//! This module owns the subscriptions and one number, the *epoch*, which
//! moves on with every change heard and whenever a subscription starts or
//! ends. What was fetched at an epoch is current while the epoch has not
//! moved and every grading instance known has a subscription whose lease
//! holds (see [`Freshness::trusted`]); otherwise the portal asks grading, as
//! it would without the feed. A grading that has no feed (the original's)
//! is simply always asked.

//!
//! - `trust`: [`Freshness`], the epoch and the leases that say what may be
//!   trusted;
//! - `follow`: a subscription to every grading instance known, each taken
//!   again (with backoff) whenever it ends;
//! - `feed`: one subscription while it lasts, its lines framed by
//!   `LinesCodec`.

mod feed;
mod follow;
mod trust;

pub use trust::Freshness;
