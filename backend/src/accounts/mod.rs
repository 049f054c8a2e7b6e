//! Accounts of the people who sign in to the portal: teachers, and students
//! linked to one student record. They live in the database grading uses
//! ([`crate::db`], see [`store`]), so every portal instance shares them, on
//! SQLite as on PostgreSQL.
//!
//! Passwords and personal API tokens are kept only as Argon2id hashes,
//! made and checked by `password-auth` off the async threads ([`secrets`]).
//! A personal token reads `gb_<name>_<random>`: the server finds its account
//! by name and verifies one hash, never scanning.
//!
//! Each account has a `version` that moves on with every password change;
//! the portal keeps it in a session and drops the session once
//! `GET /accounts/{name}` answers another version, or 404 ([`http`]).
//!
//! - [`account`]: an account as answered, and its role;
//! - [`validate`]: what names and passwords may be;
//! - [`secrets`]: generated passwords, tokens, and their hashes;
//! - [`store`]: the accounts table;
//! - [`admin`]: the first account;
//! - [`http`]: the endpoints the portal calls;
//! - [`cli`]: `gradebook accounts`.

pub mod account;
pub mod admin;
pub mod cli;
pub mod http;
pub mod secrets;
pub mod store;
pub mod validate;

pub use account::{Account, Role};
pub use admin::{ensure_admin, ensure_admin_in};
pub use cli::AccountsArgs;
pub use http::{AccountsError, router};
pub use secrets::{TOKEN_PREFIX, hash, new_token, random_password, token_name, verify};
pub use store::Store;
pub use validate::{MAX_NAME, MAX_PASSWORD, MIN_PASSWORD, validate_name, validate_password};
