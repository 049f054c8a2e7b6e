//! Rendered grade-book pages (`/students`, `/students/{id}`) and the JSON
//! API's copies of grading's answers, kept while the grading service says
//! their data has not changed.
//!
//! Rendering a page costs far more than asking grading "is it still this?"
//! (`If-None-Match` → a bodiless 304), and asking costs more than knowing:
//! while the portal hears grading's change feed (see [`crate::freshness`]),
//! a page kept since the last change heard is served without a question, and
//! no page is ever staler than grading itself. Otherwise every request asks.
//! Requests for the same page that arrive together share one question. When
//! grading answers with new data, the page is rendered from exactly that
//! answer and kept under its tag; a refusal or an outage is rendered the
//! same way, without asking a second time.
//!
//! - `cache`: [`PageCache`], the revalidation with grading;
//! - `flights`: one question at a time per page, its answer shared;
//! - `store`: the kept pages, within their budget (moka);
//! - `pages`: the middleware in front of the page renderer;
//! - `api`: the JSON API's reads of grading, grading's bytes passed on.

mod api;
mod cache;
mod flights;
mod pages;
mod store;

pub use api::{api_student, api_students};
pub use cache::PageCache;
pub use pages::serve_cached;

#[cfg(test)]
mod tests;
