//! The database that grading and the accounts share: SQLite (an embedded
//! file, the default) or PostgreSQL (shared by several instances), chosen by
//! the URL. The same SQL runs on both; each backend has its own migrations.
//!
//! - [`connect`]: opening a URL, creating a SQLite file when needed, and
//!   migrating.
//!
//! This module knows neither grading nor the accounts: both use it.

pub mod connect;

use std::sync::Arc;

use sqlx::postgres::{PgPool, PgQueryResult};
use sqlx::sqlite::{SqlitePool, SqliteQueryResult};

/// An open, migrated database: cheap to clone (the pools are shared).
#[derive(Clone, Debug)]
pub enum Db {
    /// SQLite takes one writer at a time; the lock queues ours (grading's
    /// and the accounts') fairly in memory instead of letting them spin on
    /// SQLITE_BUSY with growing sleeps.
    Sqlite(SqlitePool, Arc<tokio::sync::Mutex<()>>),
    Postgres(PgPool),
}

impl Db {
    /// Connects to `url` (`sqlite://path` or `postgres://...`) and migrates
    /// (see [`connect`]).
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        connect::connect(url).await
    }

    /// Whether several instances may share this database (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        matches!(self, Db::Postgres(..))
    }

    /// On SQLite, waits for the write lock and holds it while the guard
    /// lives; on PostgreSQL there is none to take.
    pub async fn write_lock(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self {
            Db::Sqlite(_, lock) => Some(lock.lock().await),
            Db::Postgres(_) => None,
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(pool, _) => pool.close().await,
            Db::Postgres(pool) => pool.close().await,
        }
    }
}

/// The rows a statement changed, on either backend (`sqlx::Database` does
/// not name it), so that one generic query function serves both.
pub trait RowsAffected {
    fn rows_affected(&self) -> u64;
}

impl RowsAffected for SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        SqliteQueryResult::rows_affected(self)
    }
}

impl RowsAffected for PgQueryResult {
    fn rows_affected(&self) -> u64 {
        PgQueryResult::rows_affected(self)
    }
}
