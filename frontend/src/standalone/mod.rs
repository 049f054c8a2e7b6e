//! Whole pages the server renders outside the app (no router, no scripts):
//! the error pages and the sign-in form, with the portal's look. Leptos
//! components, rendered to a string with leptos' SSR.
//!
//! - `document`: the page around them (head, stylesheet, top bar), and
//!   rendering one to a string;
//! - `error_page`: what went wrong, and the way back;
//! - `sign_in`: the sign-in form.

mod document;
mod error_page;
mod sign_in;

pub use error_page::error_page;
pub use sign_in::{SignInForm, sign_in_page};

#[cfg(test)]
mod tests;
