//! Grading's persistence of students and grades in the shared [`Db`]:
//!
//! - [`queries`]: the SQL, the same on SQLite and PostgreSQL;
//! - [`writer`]: the group-commit writer of grades;
//! - [`coherence`]: on PostgreSQL, the notify/acknowledge/heartbeat
//!   protocol that keeps the instances' read snapshots coherent.
//!
//! This file owns [`Writes`], the handle through which grading writes.

pub mod coherence;
pub mod queries;
pub mod writer;

use std::future::Future;
use std::sync::{Arc, OnceLock};

use gradebook_shared::grading::{NewGrade, NewStudent, Student};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use coherence::listen::Change;
pub use queries::{student, students};
pub use writer::{Committed, GROUP};

use crate::db::Db;
use coherence::Changes;
use queries::Sql;
use writer::{Outcome, Pending};

/// Grading's writes to a [`Db`]: grades go to a writer task (started with
/// the first grade, it ends when the last clone of this is dropped), and on
/// PostgreSQL every write notifies the other instances.
#[derive(Clone, Debug)]
pub struct Writes {
    db: Db,
    grades: Arc<OnceLock<mpsc::Sender<Pending>>>,
    changes: Arc<Changes>,
}

impl Writes {
    pub fn new(db: Db) -> Self {
        Self { db, grades: Default::default(), changes: Arc::new(Changes::default()) }
    }

    /// Stores a grade, committed with whatever other grades queued beside
    /// it; `None` when the student does not exist. An error is its whole
    /// group's: shared by every request in it, none of them stored.
    pub async fn add_grade(&self, student_id: i64, grade: NewGrade) -> Outcome {
        let (reply, outcome) = oneshot::channel();
        // The writer stops only once every clone of this is dropped, or if
        // it panicked: either way nothing is stored.
        let gone = || Arc::new(sqlx::Error::PoolClosed);
        let grades = self.grades.get_or_init(|| {
            let (grades, queue) = mpsc::channel(writer::QUEUE);
            tokio::spawn(writer::write_grades(self.db.clone(), self.changes.clone(), queue));
            grades
        });
        grades.send(Pending { student_id, grade, reply }).await.map_err(|_| gone())?;
        outcome.await.map_err(|_| gone())?
    }

    /// Adds a student: on SQLite under the write lock; on PostgreSQL in a
    /// transaction that notifies the other instances, answered once they
    /// acknowledged it.
    pub async fn add_student(&self, s: &NewStudent) -> sqlx::Result<Student> {
        let id = match &self.db {
            Db::Sqlite(pool, lock) => {
                let _writing = lock.lock().await;
                Sql::add_student(pool, s).await?
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let id = Sql::add_student(&mut *tx, s).await?;
                self.changes.commit(pool, tx).await?;
                id
            }
        };
        Ok(queries::new_student(id, s.first_name.clone(), s.last_name.clone(), vec![]))
    }

    /// Removes a grade; false when the student has no such grade. Written
    /// as [`Writes::add_student`] is.
    pub async fn remove_grade(&self, student_id: i64, grade_id: i64) -> sqlx::Result<bool> {
        match &self.db {
            Db::Sqlite(pool, lock) => {
                let _writing = lock.lock().await;
                Sql::remove_grade(pool, student_id, grade_id).await
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let removed = Sql::remove_grade(&mut *tx, student_id, grade_id).await?;
                self.changes.commit(pool, tx).await?;
                Ok(removed)
            }
        }
    }

    /// Whether this instance knows, right now, that it has heard every write
    /// committed (see [`coherence`]): always on SQLite.
    pub fn hears_everything(&self) -> bool {
        match self.db {
            Db::Sqlite(..) => true,
            Db::Postgres(_) => self.changes.hears_everything(),
        }
    }

    /// On PostgreSQL, listens for every instance's writes (ours included)
    /// until `shutdown`, telling `report` of each (and acknowledging another
    /// instance's once the wait `report` gives back is over), and of when it
    /// starts and stops listening; a lost connection is made again, with
    /// backoff. On SQLite returns at once: this process is the only writer
    /// there.
    pub async fn watch_changes<F>(&self, report: impl Fn(Change) -> Option<F>, shutdown: CancellationToken)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if let Db::Postgres(pool) = &self.db {
            coherence::listen::listen(pool, &self.changes, report, shutdown).await;
        }
    }
}
