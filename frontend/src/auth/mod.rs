//! Who may do what in the portal.
//!
//! * **Open** (the cluster has no token): no sign-in, every page carries a
//!   banner saying so; only a request that shows it comes from another site
//!   is refused.
//! * **Closed** (a cluster token is set): every page but `/signin` and the
//!   static files needs a signed-in person, every `/api/*` call a person or a
//!   script with a personal API token (`Authorization: Bearer`), each held to
//!   the account's role. Accounts live in grading (`/accounts/*`).
//!
//! Sessions are private cookies under a key derived from the cluster token,
//! so every portal instance reads every session.
//!
//! Modules, from the request in:
//! - `middleware`: [`authenticate`], in front of every route;
//! - `routes`: the sign-in and sign-out handlers;
//! - `session`: the session cookie and who it says is asking;
//! - `token`: personal API tokens and who they say is asking;
//! - `csrf`: same-origin checks and the forms' CSRF token;
//! - `roles`: what each role may ask for;
//! - `setting`: the open/closed [`Security`] the others read;
//! - `limits`: failed sign-ins counted per name and address;
//! - `answers`: short caches of grading's answers about accounts;
//! - `request`: what a request says about itself (scheme, address, token).

mod answers;
mod csrf;
mod limits;
mod middleware;
mod request;
mod roles;
mod routes;
mod session;
mod setting;
mod token;

pub use answers::{ACCOUNT_TTL, API_TOKEN_TTL};
pub use limits::SIGNIN_FAILURES_PER_MINUTE;
pub use middleware::{Gate, authenticate};
pub use routes::{SignIn, WRONG, routes};
pub use session::{SESSION_COOKIE, SIGNIN_COOKIE};
pub use setting::{DEFAULT_IDLE, MIN_TOKEN_BYTES, Security};

#[cfg(test)]
mod tests;
