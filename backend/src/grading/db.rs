//! Persistence of students and grades: SQLite (an embedded file, the
//! default) or PostgreSQL (shared by several instances), chosen by the URL.
//! The same SQL runs on both; each backend has its own migrations.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use gradebook_shared::grading::{Grade, NewGrade, NewStudent, Student};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Clone, Debug)]
pub enum Db {
    /// SQLite takes one writer at a time; the lock queues ours fairly in
    /// memory instead of letting them spin on SQLITE_BUSY with growing sleeps.
    Sqlite(SqlitePool, Arc<tokio::sync::Mutex<()>>),
    Postgres(PgPool),
}

/// Runs the same query code against whichever pool `db` holds.
macro_rules! on_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            Db::Sqlite($pool, _) => $body,
            Db::Postgres($pool) => $body,
        }
    };
}

/// Like `on_pool!`, holding SQLite's write lock.
macro_rules! writing {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            Db::Sqlite($pool, lock) => {
                let _writing = lock.lock().await;
                $body
            }
            Db::Postgres($pool) => $body,
        }
    };
}

const STUDENTS: &str = "SELECT id, first_name, last_name FROM students ORDER BY id";
const GRADES: &str = "SELECT id, student_id, title, kind, score FROM grades ORDER BY student_id, id";
const STUDENT: &str = "SELECT id, first_name, last_name FROM students WHERE id = $1";
const STUDENT_GRADES: &str = "SELECT id, student_id, title, kind, score FROM grades WHERE student_id = $1 ORDER BY id";
/// Inserts only when the student exists, in one statement (no race with a
/// concurrent removal, and nothing to roll back).
const ADD_GRADE: &str = "INSERT INTO grades (student_id, title, kind, score) SELECT id, $2, $3, $4 FROM students WHERE id = $1 RETURNING id";
const ADD_STUDENT: &str = "INSERT INTO students (first_name, last_name) VALUES ($1, $2) RETURNING id";
const REMOVE_GRADE: &str = "DELETE FROM grades WHERE student_id = $1 AND id = $2";

impl Db {
    /// Connects to `url` (`sqlite://path` or `postgres://...`), creating a
    /// SQLite file (and its folder) when needed, and migrates.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        let db = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool =
                PgPoolOptions::new().max_connections(16).acquire_timeout(Duration::from_secs(5)).connect(url).await?;
            POSTGRES_MIGRATIONS.run(&pool).await?;
            Db::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                // WAL lets reads proceed during a write; FULL makes every
                // commit durable before it is acknowledged.
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5));
            if let Some(dir) = options.get_filename().parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(options)
                .await?;
            SQLITE_MIGRATIONS.run(&pool).await?;
            Db::Sqlite(pool, Arc::default())
        } else {
            anyhow::bail!("unsupported database URL {url:?}: use sqlite://PATH or postgres://...");
        };
        Ok(db)
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, Db::Postgres(..))
    }

    pub async fn students(&self) -> sqlx::Result<Vec<Student>> {
        let (students, grades) = on_pool!(self, |pool| {
            let students = sqlx::query(STUDENTS).fetch_all(pool).await?;
            let students = students
                .iter()
                .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?, r.try_get::<String, _>(2)?)))
                .collect::<sqlx::Result<Vec<_>>>()?;
            let grades = sqlx::query(GRADES).fetch_all(pool).await?;
            let grades = grades
                .iter()
                .map(|r| {
                    Ok((r.try_get::<i64, _>(1)?, grade(r.try_get(0)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?)?))
                })
                .collect::<sqlx::Result<Vec<_>>>()?;
            (students, grades)
        });
        let mut grades = grades.into_iter().peekable();
        Ok(students
            .into_iter()
            .map(|(id, first_name, last_name)| {
                let mut mine = vec![];
                while let Some((_, g)) = grades.next_if(|(sid, _)| *sid == id) {
                    mine.push(g);
                }
                student(id, first_name, last_name, mine)
            })
            .collect())
    }

    pub async fn student(&self, id: i64) -> sqlx::Result<Option<Student>> {
        on_pool!(self, |pool| {
            let Some(row) = sqlx::query(STUDENT).bind(id).fetch_optional(pool).await? else { return Ok(None) };
            let rows = sqlx::query(STUDENT_GRADES).bind(id).fetch_all(pool).await?;
            let grades = rows
                .iter()
                .map(|r| grade(r.try_get(0)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?))
                .collect::<sqlx::Result<Vec<_>>>()?;
            Ok(Some(student(row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, grades)))
        })
    }

    /// Stores a grade; `None` when the student does not exist.
    pub async fn add_grade(&self, student_id: i64, g: &NewGrade) -> sqlx::Result<Option<Grade>> {
        let id: Option<i64> = writing!(self, |pool| {
            sqlx::query_scalar(ADD_GRADE)
                .bind(student_id)
                .bind(&g.title)
                .bind(g.kind.as_str())
                .bind(g.score)
                .fetch_optional(pool)
                .await?
        });
        Ok(id.map(|id| Grade { id, title: g.title.clone(), kind: g.kind.to_string(), score: g.score }))
    }

    pub async fn add_student(&self, s: &NewStudent) -> sqlx::Result<Student> {
        let id: i64 = writing!(self, |pool| {
            sqlx::query_scalar(ADD_STUDENT).bind(&s.first_name).bind(&s.last_name).fetch_one(pool).await?
        });
        Ok(student(id, s.first_name.clone(), s.last_name.clone(), vec![]))
    }

    /// Removes a grade; false when the student has no such grade.
    pub async fn remove_grade(&self, student_id: i64, grade_id: i64) -> sqlx::Result<bool> {
        let affected = writing!(self, |pool| {
            sqlx::query(REMOVE_GRADE).bind(student_id).bind(grade_id).execute(pool).await?.rows_affected()
        });
        Ok(affected > 0)
    }

    pub async fn close(&self) {
        on_pool!(self, |pool| pool.close().await)
    }
}

fn grade(id: i64, title: String, kind: String, score: f64) -> sqlx::Result<Grade> {
    Ok(Grade { id, title, kind, score })
}

fn student(id: i64, first_name: String, last_name: String, grades: Vec<Grade>) -> Student {
    Student { id, first_name, last_name, average: Student::average_of(&grades), grades }
}
