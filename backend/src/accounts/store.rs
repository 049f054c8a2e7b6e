//! Accounts in grading's database (table `accounts`, migration 0003): the
//! same SQL on SQLite and PostgreSQL, SQLite's writes under grading's write
//! lock. Only hashes are stored; hashing happens in the callers.

use sqlx::Row;

use super::{Account, Role};
use crate::db::Db;

/// Runs the same query code against whichever pool `pool` is; with
/// `writing`, under SQLite's write lock (shared with grading's writes).
macro_rules! on_pool {
    ($pool_:expr, |$pool:ident| $body:expr) => {
        match $pool_ {
            Db::Sqlite($pool, _) => $body,
            Db::Postgres($pool) => $body,
        }
    };
    ($pool_:expr, writing |$pool:ident| $body:expr) => {
        match $pool_ {
            Db::Sqlite($pool, lock) => {
                let _writing = lock.lock().await;
                $body
            }
            Db::Postgres($pool) => $body,
        }
    };
}

const COLUMNS: &str = "name, role, student_id, version, password_hash, token_hash, created_at";
const ADD: &str = "INSERT INTO accounts (name, role, student_id, password_hash, version, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6)";
/// Creates the first account, only while there is none (a concurrent second
/// caller inserts nothing, or hits the unique name).
const ADD_FIRST: &str = "INSERT INTO accounts (name, role, password_hash, version, created_at) \
                         SELECT $1, 'teacher', $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM accounts)";
/// The new version is past the old one and past the clock (see [`first_version`]).
const SET_PASSWORD: &str = "UPDATE accounts SET password_hash = $2, \
                            version = CASE WHEN version + 1 > $3 THEN version + 1 ELSE $3 END \
                            WHERE name = $1 RETURNING version";
const SET_TOKEN: &str = "UPDATE accounts SET token_hash = $2 WHERE name = $1";
const REMOVE: &str = "DELETE FROM accounts WHERE name = $1";
const COUNT: &str = "SELECT COUNT(*) FROM accounts";

/// One stored account with its secrets' hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub account: Account,
    pub password_hash: String,
    pub token_hash: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("there is already an account named {0:?}")]
    Exists(String),
    #[error("no account named {0:?}")]
    NoAccount(String),
    #[error("no student with ID {0}")]
    NoStudent(i64),
    #[error("a student account needs --student ID, and a teacher account takes none")]
    StudentMismatch,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The accounts table of grading's database: cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: Db,
}

/// The version a new account starts at, and the least a password change
/// moves it to: the current time in microseconds (below 2^53, exact in JSON,
/// until the year 2255). A change sets `max(version + 1, now)`, so versions
/// never run ahead of the clock by more than a burst of changes within a
/// microsecond, and a re-created account never reuses a version an earlier
/// account of the same name had: a session remembering one stays revoked.
pub fn first_version() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_micros()).unwrap_or(i64::MAX / 2)
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

fn stored(row: &impl RowLike) -> sqlx::Result<Stored> {
    row.stored()
}

/// Reads a [`Stored`] from either backend's row.
trait RowLike {
    fn stored(&self) -> sqlx::Result<Stored>;
}

macro_rules! row_like {
    ($row:ty) => {
        impl RowLike for $row {
            fn stored(&self) -> sqlx::Result<Stored> {
                let role: String = self.try_get(1)?;
                let role = Role::parse(&role).ok_or_else(|| sqlx::Error::ColumnDecode {
                    index: "role".into(),
                    source: format!("unknown role {role:?}").into(),
                })?;
                Ok(Stored {
                    account: Account {
                        name: self.try_get(0)?,
                        role,
                        student: self.try_get(2)?,
                        version: self.try_get(3)?,
                    },
                    password_hash: self.try_get(4)?,
                    token_hash: self.try_get(5)?,
                    created_at: self.try_get(6)?,
                })
            }
        }
    };
}
row_like!(sqlx::sqlite::SqliteRow);
row_like!(sqlx::postgres::PgRow);

/// Turns a constraint violation into what it means here.
fn refused(e: sqlx::Error, name: &str, student: Option<i64>) -> StoreError {
    if let sqlx::Error::Database(d) = &e {
        if d.is_unique_violation() {
            return StoreError::Exists(name.to_owned());
        }
        if d.is_foreign_key_violation()
            && let Some(id) = student
        {
            return StoreError::NoStudent(id);
        }
        if d.is_check_violation() {
            return StoreError::StudentMismatch;
        }
    }
    StoreError::Database(e)
}

impl Store {
    /// The accounts in `db`'s database.
    pub fn new(db: &Db) -> Self {
        Self { pool: db.clone() }
    }

    /// Adds an account whose password hashes to `password_hash`. A student
    /// account names an existing student; a teacher account none.
    pub async fn add(
        &self,
        name: &str,
        role: Role,
        student: Option<i64>,
        password_hash: &str,
    ) -> Result<Account, StoreError> {
        if (role == Role::Student) != student.is_some() {
            return Err(StoreError::StudentMismatch);
        }
        let version = first_version();
        let added = on_pool!(
            &self.pool,
            writing | pool | {
                sqlx::query(ADD)
                    .bind(name)
                    .bind(role.as_str())
                    .bind(student)
                    .bind(password_hash)
                    .bind(version)
                    .bind(now_rfc3339())
                    .execute(pool)
                    .await
                    .map(|_| ())
            }
        );
        added.map_err(|e| refused(e, name, student))?;
        Ok(Account { name: name.to_owned(), role, student, version })
    }

    /// Adds the teacher `name` only when there is no account at all; true
    /// when it did.
    pub async fn add_first(&self, name: &str, password_hash: &str) -> Result<bool, StoreError> {
        let added = on_pool!(
            &self.pool,
            writing | pool | {
                sqlx::query(ADD_FIRST)
                    .bind(name)
                    .bind(password_hash)
                    .bind(first_version())
                    .bind(now_rfc3339())
                    .execute(pool)
                    .await
                    .map(|done| done.rows_affected())
            }
        );
        match added {
            Ok(rows) => Ok(rows > 0),
            // Someone else created it at the same moment.
            Err(e) if matches!(&e, sqlx::Error::Database(d) if d.is_unique_violation()) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The account named `name` with its hashes, if any.
    pub async fn find(&self, name: &str) -> sqlx::Result<Option<Stored>> {
        let query = format!("SELECT {COLUMNS} FROM accounts WHERE name = $1");
        on_pool!(&self.pool, |pool| {
            sqlx::query(&query).bind(name).fetch_optional(pool).await?.as_ref().map(stored).transpose()
        })
    }

    /// Every account, by name.
    pub async fn list(&self) -> sqlx::Result<Vec<Stored>> {
        let query = format!("SELECT {COLUMNS} FROM accounts ORDER BY name");
        on_pool!(&self.pool, |pool| { sqlx::query(&query).fetch_all(pool).await?.iter().map(stored).collect() })
    }

    pub async fn count(&self) -> sqlx::Result<i64> {
        on_pool!(&self.pool, |pool| sqlx::query_scalar(COUNT).fetch_one(pool).await)
    }

    /// Replaces the password's hash and moves the version on; returns the
    /// new version.
    pub async fn set_password(&self, name: &str, password_hash: &str) -> Result<i64, StoreError> {
        let version: Option<i64> = on_pool!(
            &self.pool,
            writing | pool | {
                sqlx::query_scalar(SET_PASSWORD)
                    .bind(name)
                    .bind(password_hash)
                    .bind(first_version())
                    .fetch_optional(pool)
                    .await?
            }
        );
        version.ok_or_else(|| StoreError::NoAccount(name.to_owned()))
    }

    /// Replaces the account's personal API token's hash (one token per
    /// account: the previous one stops working).
    pub async fn set_token(&self, name: &str, token_hash: &str) -> Result<(), StoreError> {
        let affected = on_pool!(
            &self.pool,
            writing | pool | {
                sqlx::query(SET_TOKEN).bind(name).bind(token_hash).execute(pool).await?.rows_affected()
            }
        );
        if affected == 0 {
            return Err(StoreError::NoAccount(name.to_owned()));
        }
        Ok(())
    }

    /// Removes the account, its password and its token.
    pub async fn remove(&self, name: &str) -> Result<(), StoreError> {
        let affected =
            on_pool!(&self.pool, writing | pool | sqlx::query(REMOVE).bind(name).execute(pool).await?.rows_affected());
        if affected == 0 {
            return Err(StoreError::NoAccount(name.to_owned()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Temp(std::path::PathBuf);

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    async fn store() -> (Store, Temp) {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gradebook-accounts-unit-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let db = Db::connect(&format!("sqlite://{}/grading.db", dir.display())).await.unwrap();
        (Store::new(&db), Temp(dir))
    }

    #[tokio::test]
    async fn an_added_account_is_found_with_its_hash_and_listed_by_name() {
        let (store, _dir) = store().await;
        let zed = store.add("zed", Role::Teacher, None, "hash-z").await.unwrap();
        store.add("ada", Role::Student, Some(2), "hash-a").await.unwrap();

        let found = store.find("zed").await.unwrap().unwrap();
        assert_eq!(found.account, zed);
        assert_eq!(found.password_hash, "hash-z");
        assert_eq!(found.token_hash, None);
        assert!(found.created_at.ends_with('Z'), "{}", found.created_at);
        let names: Vec<String> = store.list().await.unwrap().into_iter().map(|s| s.account.name).collect();
        assert_eq!(names, ["ada", "zed"]);
        assert_eq!(store.find("nobody").await.unwrap(), None);
    }

    #[tokio::test]
    async fn names_are_unique_and_students_must_exist() {
        let (store, _dir) = store().await;
        store.add("ada", Role::Teacher, None, "h").await.unwrap();
        assert!(matches!(store.add("ada", Role::Teacher, None, "h").await, Err(StoreError::Exists(_))));
        assert!(matches!(store.add("bob", Role::Student, Some(999), "h").await, Err(StoreError::NoStudent(999))));
        assert!(matches!(store.add("bob", Role::Student, None, "h").await, Err(StoreError::StudentMismatch)));
        assert!(matches!(store.add("bob", Role::Teacher, Some(1), "h").await, Err(StoreError::StudentMismatch)));
        assert_eq!(store.count().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_password_change_moves_the_version_on_and_a_re_created_account_starts_past_it() {
        let (store, _dir) = store().await;
        let first = store.add("ada", Role::Teacher, None, "h1").await.unwrap().version;
        let second = store.set_password("ada", "h2").await.unwrap();
        let third = store.set_password("ada", "h3").await.unwrap();
        assert!(first < second && second < third, "{first} {second} {third}");
        assert_eq!(store.find("ada").await.unwrap().unwrap().password_hash, "h3");

        store.remove("ada").await.unwrap();
        let again = store.add("ada", Role::Teacher, None, "h4").await.unwrap().version;
        assert!(again > third, "{again} after {third}");
        assert!(matches!(store.set_password("nobody", "h").await, Err(StoreError::NoAccount(_))));
        assert!(matches!(store.remove("nobody").await, Err(StoreError::NoAccount(_))));
        assert!(matches!(store.set_token("nobody", "h").await, Err(StoreError::NoAccount(_))));
    }

    #[tokio::test]
    async fn the_first_account_is_added_only_into_an_empty_table() {
        let (store, _dir) = store().await;
        assert!(store.add_first("admin", "h").await.unwrap());
        assert!(!store.add_first("admin", "h").await.unwrap());
        assert!(!store.add_first("other", "h").await.unwrap());
        let admin = store.find("admin").await.unwrap().unwrap().account;
        assert_eq!((admin.role, admin.student), (Role::Teacher, None));
        assert_eq!(store.count().await.unwrap(), 1);
    }
}
