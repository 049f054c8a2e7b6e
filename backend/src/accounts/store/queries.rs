//! The accounts' SQL: one function per query, the same text and the same
//! code on SQLite and PostgreSQL (generic over the backend, which
//! [`crate::db::Db`]'s variant picks), rows mapped by column name with
//! `sqlx::FromRow`.

use std::marker::PhantomData;

use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type};

use crate::db::RowsAffected;

const COLUMNS: &str = "name, role, student_id, version, password_hash, token_hash, created_at";
const ADD: &str = "INSERT INTO accounts (name, role, student_id, password_hash, version, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6)";
/// Creates the first account, only while there is none (a concurrent second
/// caller inserts nothing, or hits the unique name).
const ADD_FIRST: &str = "INSERT INTO accounts (name, role, password_hash, version, created_at) \
                         SELECT $1, 'teacher', $2, $3, $4 WHERE NOT EXISTS (SELECT 1 FROM accounts)";
/// The new version is past the old one and past the clock (see
/// [`super::first_version`]).
const SET_PASSWORD: &str = "UPDATE accounts SET password_hash = $2, \
                            version = CASE WHEN version + 1 > $3 THEN version + 1 ELSE $3 END \
                            WHERE name = $1 RETURNING version";
const SET_TOKEN: &str = "UPDATE accounts SET token_hash = $2 WHERE name = $1";
const REMOVE: &str = "DELETE FROM accounts WHERE name = $1";
const COUNT: &str = "SELECT COUNT(*) AS count FROM accounts";

/// A row of `accounts`, as stored.
#[derive(FromRow)]
pub struct AccountRow {
    pub name: String,
    pub role: String,
    pub student_id: Option<i64>,
    pub version: i64,
    pub password_hash: String,
    pub token_hash: Option<String>,
    pub created_at: String,
}

#[derive(FromRow)]
pub struct CountRow {
    count: i64,
}

#[derive(FromRow)]
pub struct VersionRow {
    version: i64,
}

/// A new account's columns.
pub struct NewAccount<'a> {
    pub name: &'a str,
    pub role: &'a str,
    pub student: Option<i64>,
    pub password_hash: &'a str,
    pub version: i64,
    pub created_at: &'a str,
}

/// The accounts' queries on backend `DB` (inferred from the executor each
/// is given); the bounds every query needs are named once, here.
pub struct Sql<DB>(PhantomData<DB>);

impl<DB> Sql<DB>
where
    DB: Database,
    DB::QueryResult: RowsAffected,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    Option<i64>: for<'q> Encode<'q, DB> + Type<DB>,
    AccountRow: for<'r> FromRow<'r, DB::Row>,
    CountRow: for<'r> FromRow<'r, DB::Row>,
    VersionRow: for<'r> FromRow<'r, DB::Row>,
{
    pub async fn add<'e, E: Executor<'e, Database = DB>>(conn: E, new: &NewAccount<'_>) -> sqlx::Result<()> {
        sqlx::query(ADD)
            .bind(new.name)
            .bind(new.role)
            .bind(new.student)
            .bind(new.password_hash)
            .bind(new.version)
            .bind(new.created_at)
            .execute(conn)
            .await
            .map(drop)
    }

    /// Adds the teacher `name` only into an empty table: whether it did.
    pub async fn add_first<'e, E: Executor<'e, Database = DB>>(
        conn: E,
        name: &str,
        password_hash: &str,
        version: i64,
        created_at: &str,
    ) -> sqlx::Result<bool> {
        let done =
            sqlx::query(ADD_FIRST).bind(name).bind(password_hash).bind(version).bind(created_at).execute(conn).await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn find<'e, E: Executor<'e, Database = DB>>(conn: E, name: &str) -> sqlx::Result<Option<AccountRow>> {
        let query = format!("SELECT {COLUMNS} FROM accounts WHERE name = $1");
        sqlx::query_as(&query).bind(name).fetch_optional(conn).await
    }

    /// Every account, by name.
    pub async fn list<'e, E: Executor<'e, Database = DB>>(conn: E) -> sqlx::Result<Vec<AccountRow>> {
        let query = format!("SELECT {COLUMNS} FROM accounts ORDER BY name");
        sqlx::query_as(&query).fetch_all(conn).await
    }

    pub async fn count<'e, E: Executor<'e, Database = DB>>(conn: E) -> sqlx::Result<i64> {
        let row: CountRow = sqlx::query_as(COUNT).fetch_one(conn).await?;
        Ok(row.count)
    }

    /// Replaces the password's hash and moves the version on, at least to
    /// `least`: the new version, `None` for no such account.
    pub async fn set_password<'e, E: Executor<'e, Database = DB>>(
        conn: E,
        name: &str,
        password_hash: &str,
        least: i64,
    ) -> sqlx::Result<Option<i64>> {
        let row: Option<VersionRow> =
            sqlx::query_as(SET_PASSWORD).bind(name).bind(password_hash).bind(least).fetch_optional(conn).await?;
        Ok(row.map(|r| r.version))
    }

    /// Replaces the token's hash: whether the account exists.
    pub async fn set_token<'e, E: Executor<'e, Database = DB>>(
        conn: E,
        name: &str,
        token_hash: &str,
    ) -> sqlx::Result<bool> {
        let done = sqlx::query(SET_TOKEN).bind(name).bind(token_hash).execute(conn).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Removes the account: whether it existed.
    pub async fn remove<'e, E: Executor<'e, Database = DB>>(conn: E, name: &str) -> sqlx::Result<bool> {
        let done = sqlx::query(REMOVE).bind(name).execute(conn).await?;
        Ok(done.rows_affected() > 0)
    }
}
