//! The endpoints the portal calls, merged into grading's router:
//!
//! * `POST /accounts/verify` `{"name","password"}` → 200 [`Account`] or 401
//!   `{"error":"wrong name or password"}`. Every request runs exactly one
//!   Argon2 verification (against a dummy hash when the name is unknown or
//!   not even a valid name), so the time does not tell whether the account
//!   exists.
//! * `POST /accounts/verify-token` `{"token"}` → 200 [`Account`] or 401
//!   `{"error":"invalid token"}`, the same way.
//! * `GET /accounts/{name}` → 200 [`Account`] (no secrets) or 404: the
//!   portal compares `version` to drop sessions after a password change or
//!   a removal.
//!
//! Bodies that are not JSON of that shape get 400; a database that fails,
//! 503. Argon2 runs on blocking threads, as many at once as there are cores
//! (each takes 19 MiB).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gradebook_runtime::http::{ApiJson, error_response};
use gradebook_shared::ErrorBody;
use serde::Deserialize;
use tokio::sync::Semaphore;

use super::account::Account;
use super::secrets::{token_name, verify};
use super::store::Store;
use super::validate::validate_name;
use crate::db::Db;

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("wrong name or password")]
    WrongCredentials,
    #[error("invalid token")]
    InvalidToken,
    #[error("no account named {0:?}")]
    NoAccount(String),
    #[error("the database is unavailable")]
    Database(#[from] sqlx::Error),
    #[error("cannot verify now")]
    Internal(#[from] anyhow::Error),
}

impl IntoResponse for AccountsError {
    fn into_response(self) -> Response {
        let status = match &self {
            AccountsError::WrongCredentials | AccountsError::InvalidToken => StatusCode::UNAUTHORIZED,
            AccountsError::NoAccount(_) => StatusCode::NOT_FOUND,
            AccountsError::Database(e) => {
                tracing::error!(error = %e, "database error");
                StatusCode::SERVICE_UNAVAILABLE
            }
            AccountsError::Internal(e) => {
                tracing::error!(error = %e, "verification failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        error_response(status, ErrorBody::new(self.to_string()))
    }
}

#[derive(Clone)]
struct Accounts {
    store: Store,
    /// Argon2 verifications running at once, at most.
    hashing: Arc<Semaphore>,
}

impl Accounts {
    /// Whether `secret` matches `stored` (a dummy when `None`), waiting for
    /// a free core first.
    async fn verify(&self, secret: String, stored: Option<String>) -> Result<bool, AccountsError> {
        let _permit = self.hashing.acquire().await.map_err(anyhow::Error::from)?;
        Ok(verify(secret, stored).await?)
    }
}

/// The accounts endpoints on `db`, for merging into grading's router (any
/// state: they carry their own).
pub fn router<S: Clone + Send + Sync + 'static>(db: Db) -> Router<S> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let state = Accounts { store: Store::new(&db), hashing: Arc::new(Semaphore::new(cores)) };
    Router::new()
        .route("/accounts/verify", post(verify_password))
        .route("/accounts/verify-token", post(verify_token))
        .route("/accounts/{name}", get(get_account))
        .with_state(state)
}

#[derive(Deserialize)]
struct Credentials {
    name: String,
    password: String,
}

#[derive(Deserialize)]
struct TokenBody {
    token: String,
}

async fn verify_password(
    State(a): State<Accounts>,
    ApiJson(body): ApiJson<Credentials>,
) -> Result<ApiJson<Account>, AccountsError> {
    let found = match validate_name(&body.name) {
        Ok(()) => a.store.find(&body.name).await?,
        Err(_) => None,
    };
    let hash = found.as_ref().map(|s| s.password_hash.clone());
    match (a.verify(body.password, hash).await?, found) {
        (true, Some(stored)) => Ok(ApiJson(stored.account)),
        _ => {
            tracing::info!(name = %body.name.escape_debug(), "failed sign-in");
            Err(AccountsError::WrongCredentials)
        }
    }
}

async fn verify_token(
    State(a): State<Accounts>,
    ApiJson(body): ApiJson<TokenBody>,
) -> Result<ApiJson<Account>, AccountsError> {
    let found = match token_name(&body.token) {
        Some(name) => a.store.find(name).await?,
        None => None,
    };
    // An account without a token is checked against the dummy hash, which
    // never matches.
    let hash = found.as_ref().and_then(|s| s.token_hash.clone());
    match (a.verify(body.token, hash).await?, found) {
        (true, Some(stored)) => Ok(ApiJson(stored.account)),
        _ => Err(AccountsError::InvalidToken),
    }
}

async fn get_account(State(a): State<Accounts>, Path(name): Path<String>) -> Result<ApiJson<Account>, AccountsError> {
    if validate_name(&name).is_err() {
        return Err(AccountsError::NoAccount(name));
    }
    match a.store.find(&name).await? {
        Some(stored) => Ok(ApiJson(stored.account)),
        None => Err(AccountsError::NoAccount(name)),
    }
}
