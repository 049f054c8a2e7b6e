//! Accounts in the shared database (table `accounts`, migration 0003): the
//! same SQL on SQLite and PostgreSQL (see [`queries`]), SQLite's writes
//! under the database's write lock, shared with grading's. Only hashes are
//! stored; hashing happens in the callers.
//!
//! - [`queries`]: the SQL.

pub mod queries;

use super::account::{Account, Role};
use crate::db::Db;
use queries::{AccountRow, NewAccount, Sql};

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

/// The accounts table of the shared database: cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
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

impl TryFrom<AccountRow> for Stored {
    type Error = sqlx::Error;

    fn try_from(row: AccountRow) -> sqlx::Result<Stored> {
        let role = Role::parse(&row.role).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "role".into(),
            source: format!("unknown role {:?}", row.role).into(),
        })?;
        Ok(Stored {
            account: Account { name: row.name, role, student: row.student_id, version: row.version },
            password_hash: row.password_hash,
            token_hash: row.token_hash,
            created_at: row.created_at,
        })
    }
}

impl Store {
    /// The accounts in `db`'s database.
    pub fn new(db: &Db) -> Self {
        Self { db: db.clone() }
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
        let created_at = now_rfc3339();
        let new = NewAccount { name, role: role.as_str(), student, password_hash, version, created_at: &created_at };
        let _writing = self.db.write_lock().await;
        let added = match &self.db {
            Db::Sqlite(pool, _) => Sql::add(pool, &new).await,
            Db::Postgres(pool) => Sql::add(pool, &new).await,
        };
        added.map_err(|e| refused(e, name, student))?;
        Ok(Account { name: name.to_owned(), role, student, version })
    }

    /// Adds the teacher `name` only when there is no account at all; true
    /// when it did.
    pub async fn add_first(&self, name: &str, password_hash: &str) -> Result<bool, StoreError> {
        let (version, created_at) = (first_version(), now_rfc3339());
        let _writing = self.db.write_lock().await;
        let added = match &self.db {
            Db::Sqlite(pool, _) => Sql::add_first(pool, name, password_hash, version, &created_at).await,
            Db::Postgres(pool) => Sql::add_first(pool, name, password_hash, version, &created_at).await,
        };
        match added {
            Ok(added) => Ok(added),
            // Someone else created it at the same moment.
            Err(e) if matches!(&e, sqlx::Error::Database(d) if d.is_unique_violation()) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The account named `name` with its hashes, if any.
    pub async fn find(&self, name: &str) -> sqlx::Result<Option<Stored>> {
        let row = match &self.db {
            Db::Sqlite(pool, _) => Sql::find(pool, name).await?,
            Db::Postgres(pool) => Sql::find(pool, name).await?,
        };
        row.map(Stored::try_from).transpose()
    }

    /// Every account, by name.
    pub async fn list(&self) -> sqlx::Result<Vec<Stored>> {
        let rows = match &self.db {
            Db::Sqlite(pool, _) => Sql::list(pool).await?,
            Db::Postgres(pool) => Sql::list(pool).await?,
        };
        rows.into_iter().map(Stored::try_from).collect()
    }

    pub async fn count(&self) -> sqlx::Result<i64> {
        match &self.db {
            Db::Sqlite(pool, _) => Sql::count(pool).await,
            Db::Postgres(pool) => Sql::count(pool).await,
        }
    }

    /// Replaces the password's hash and moves the version on; returns the
    /// new version.
    pub async fn set_password(&self, name: &str, password_hash: &str) -> Result<i64, StoreError> {
        let least = first_version();
        let _writing = self.db.write_lock().await;
        let version = match &self.db {
            Db::Sqlite(pool, _) => Sql::set_password(pool, name, password_hash, least).await?,
            Db::Postgres(pool) => Sql::set_password(pool, name, password_hash, least).await?,
        };
        version.ok_or_else(|| StoreError::NoAccount(name.to_owned()))
    }

    /// Replaces the account's personal API token's hash (one token per
    /// account: the previous one stops working).
    pub async fn set_token(&self, name: &str, token_hash: &str) -> Result<(), StoreError> {
        let _writing = self.db.write_lock().await;
        let found = match &self.db {
            Db::Sqlite(pool, _) => Sql::set_token(pool, name, token_hash).await?,
            Db::Postgres(pool) => Sql::set_token(pool, name, token_hash).await?,
        };
        found.then_some(()).ok_or_else(|| StoreError::NoAccount(name.to_owned()))
    }

    /// Removes the account, its password and its token.
    pub async fn remove(&self, name: &str) -> Result<(), StoreError> {
        let _writing = self.db.write_lock().await;
        let found = match &self.db {
            Db::Sqlite(pool, _) => Sql::remove(pool, name).await?,
            Db::Postgres(pool) => Sql::remove(pool, name).await?,
        };
        found.then_some(()).ok_or_else(|| StoreError::NoAccount(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store on a new SQLite database, in a folder removed when dropped.
    async fn store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let db = Db::connect(&format!("sqlite://{}/grading.db", dir.path().display())).await.unwrap();
        (Store::new(&db), dir)
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
