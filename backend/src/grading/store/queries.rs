//! Grading's SQL: one function per query, the same text and the same code on
//! SQLite and PostgreSQL (generic over the backend, which [`Db`]'s variant
//! picks), rows mapped by column name with `sqlx::FromRow`.

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;

use gradebook_shared::grading::{Grade, NewGrade, NewStudent, Student};
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Postgres, QueryBuilder, Sqlite, Type};

use crate::db::{Db, RowsAffected};

const STUDENTS: &str = "SELECT id, first_name, last_name FROM students ORDER BY id";
const GRADES: &str = "SELECT id, student_id, title, kind, score FROM grades ORDER BY student_id, id";
const STUDENT: &str = "SELECT id, first_name, last_name FROM students WHERE id = $1";
const STUDENT_GRADES: &str = "SELECT id, student_id, title, kind, score FROM grades WHERE student_id = $1 ORDER BY id";
const ADD_STUDENT: &str = "INSERT INTO students (first_name, last_name) VALUES ($1, $2) RETURNING id";
const REMOVE_GRADE: &str = "DELETE FROM grades WHERE student_id = $1 AND id = $2";

#[derive(FromRow)]
pub(super) struct StudentRow {
    id: i64,
    first_name: String,
    last_name: String,
}

#[derive(FromRow)]
pub(super) struct GradeRow {
    id: i64,
    student_id: i64,
    title: String,
    kind: String,
    score: f64,
}

#[derive(FromRow)]
pub(super) struct IdRow {
    id: i64,
}

/// A grade waiting to be inserted: its student and its content.
pub(super) struct NewRow<'a> {
    pub student_id: i64,
    pub grade: &'a NewGrade,
}

/// Every student with their grades, by ID.
pub async fn students(db: &Db) -> sqlx::Result<Vec<Student>> {
    match db {
        Db::Sqlite(pool, _) => Sql::students_on(pool).await,
        Db::Postgres(pool) => Sql::students_on(pool).await,
    }
}

/// One student with their grades, if there is one.
pub async fn student(db: &Db, id: i64) -> sqlx::Result<Option<Student>> {
    match db {
        Db::Sqlite(pool, _) => Sql::student_on(pool, id).await,
        Db::Postgres(pool) => Sql::student_on(pool, id).await,
    }
}

/// Grading's queries on backend `DB` (inferred from the executor each is
/// given); the bounds every query needs are named once, here.
pub(super) struct Sql<DB>(PhantomData<DB>);

impl<DB> Sql<DB>
where
    DB: Database,
    DB::QueryResult: RowsAffected,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    StudentRow: for<'r> FromRow<'r, DB::Row>,
    GradeRow: for<'r> FromRow<'r, DB::Row>,
    IdRow: for<'r> FromRow<'r, DB::Row>,
{
    async fn students_on<'e, E: Executor<'e, Database = DB> + Copy>(conn: E) -> sqlx::Result<Vec<Student>> {
        let students: Vec<StudentRow> = sqlx::query_as(STUDENTS).fetch_all(conn).await?;
        let grades: Vec<GradeRow> = sqlx::query_as(GRADES).fetch_all(conn).await?;
        let mut grades = grades.into_iter().peekable();
        Ok(students
            .into_iter()
            .map(|s| {
                let mut mine = vec![];
                while let Some(g) = grades.next_if(|g| g.student_id == s.id) {
                    mine.push(g.into());
                }
                s.with(mine)
            })
            .collect())
    }

    async fn student_on<'e, E: Executor<'e, Database = DB> + Copy>(conn: E, id: i64) -> sqlx::Result<Option<Student>> {
        let Some(s) = sqlx::query_as::<_, StudentRow>(STUDENT).bind(id).fetch_optional(conn).await? else {
            return Ok(None);
        };
        let grades: Vec<GradeRow> = sqlx::query_as(STUDENT_GRADES).bind(id).fetch_all(conn).await?;
        Ok(Some(s.with(grades.into_iter().map(Grade::from).collect())))
    }

    /// Adds a student: the new student's ID.
    pub(super) async fn add_student<'e, E: Executor<'e, Database = DB>>(conn: E, s: &NewStudent) -> sqlx::Result<i64> {
        let row: IdRow = sqlx::query_as(ADD_STUDENT).bind(&*s.first_name).bind(&*s.last_name).fetch_one(conn).await?;
        Ok(row.id)
    }

    /// Removes a grade: whether the student had it.
    pub(super) async fn remove_grade<'e, E: Executor<'e, Database = DB>>(
        conn: E,
        student_id: i64,
        grade_id: i64,
    ) -> sqlx::Result<bool> {
        let done = sqlx::query(REMOVE_GRADE).bind(student_id).bind(grade_id).execute(conn).await?;
        Ok(done.rows_affected() > 0)
    }
}

/// Inserts the grades of `group` in one statement (on SQLite a transaction
/// of its own: one trip to the connection's thread and one commit for the
/// whole group): the grades' IDs, `None` for a student that does not exist
/// (looked up by the same statement, so the answer holds at the commit).
pub(super) async fn insert_group_sqlite(
    conn: &mut SqliteConnection,
    group: &[NewRow<'_>],
) -> sqlx::Result<Vec<Option<i64>>> {
    let rows = insert_group::<Sqlite>(group).build_query_as().fetch_all(conn).await?;
    match_returned(group, &rows)
}

/// [`insert_group_sqlite`] on PostgreSQL, in the caller's transaction. (The
/// execution is written per backend: a builder's arguments are only
/// shortened to the query's borrow on a named backend.)
pub(super) async fn insert_group_postgres(
    conn: &mut PgConnection,
    group: &[NewRow<'_>],
) -> sqlx::Result<Vec<Option<i64>>> {
    let rows = insert_group::<Postgres>(group).build_query_as().fetch_all(conn).await?;
    match_returned(group, &rows)
}

/// The statement that inserts `group`, for either backend.
fn insert_group<'a, DB>(group: &'a [NewRow<'a>]) -> QueryBuilder<'a, DB>
where
    DB: Database,
    DB::Arguments<'a>: Default,
    i64: Encode<'a, DB> + Type<DB>,
    f64: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::<DB>::new("INSERT INTO grades (student_id, title, kind, score) SELECT * FROM (");
    query.push_values(group, |mut row, p| {
        row.push_bind(p.student_id)
            .push_bind(p.grade.title.as_str())
            .push_bind(p.grade.kind.as_str())
            .push_bind(p.grade.score);
    });
    query.push(") AS given WHERE column1 IN (SELECT id FROM students) RETURNING id, student_id, title, kind, score");
    query
}

/// Gives each request of `group` the ID of its row among `rows` (what
/// RETURNING gave, in no promised order): each row goes to a request with
/// the same content (equal requests are interchangeable), the lowest ID to
/// the earliest. Every row must find its request.
fn match_returned(group: &[NewRow<'_>], rows: &[GradeRow]) -> sqlx::Result<Vec<Option<i64>>> {
    // `+ 0.0` makes -0 and 0 one key.
    let key = |student: i64, title: &str, kind: &str, score: f64| {
        (student, title.to_owned(), kind.to_owned(), (score + 0.0).to_bits())
    };
    let mut stored: HashMap<_, VecDeque<i64>> = HashMap::new();
    for row in rows {
        stored.entry(key(row.student_id, &row.title, &row.kind, row.score)).or_default().push_back(row.id);
    }
    for ids in stored.values_mut() {
        ids.make_contiguous().sort_unstable();
    }
    let ids: Vec<Option<i64>> = group
        .iter()
        .map(|p| {
            let key = key(p.student_id, &p.grade.title, p.grade.kind.as_str(), p.grade.score);
            stored.get_mut(&key).and_then(|ids| ids.pop_front())
        })
        .collect();
    let matched = ids.iter().flatten().count();
    if matched != rows.len() {
        return Err(sqlx::Error::Protocol(format!("{} grades stored, {matched} matched", rows.len())));
    }
    Ok(ids)
}

impl From<GradeRow> for Grade {
    fn from(g: GradeRow) -> Grade {
        Grade { id: g.id, title: g.title, kind: g.kind, score: g.score }
    }
}

impl StudentRow {
    fn with(self, grades: Vec<Grade>) -> Student {
        new_student(self.id, self.first_name, self.last_name, grades)
    }
}

/// A student as answered, with the average of `grades`.
pub(super) fn new_student(id: i64, first_name: String, last_name: String, grades: Vec<Grade>) -> Student {
    Student { id, first_name, last_name, average: Student::average_of(&grades), grades }
}
